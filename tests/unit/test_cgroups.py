"""cgroups without a kernel: detection with a fake root, files on fixture trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import CgroupError, UnsupportedError
from sandbox.kernel import syscalls as sc
from sandbox.kernel.cgroups import detect_setup
from sandbox.kernel.cgroups.base import CgroupLimits, read_file, write_file
from sandbox.kernel.cgroups.v1 import CgroupV1, SetupV1
from sandbox.kernel.cgroups.v2 import CgroupV2, SetupV2


def _magic(value: int):
    return lambda path: value


def test_detects_unified(tmp_path: Path):
    setup = detect_setup(tmp_path, "sbx", fs_magic=_magic(sc.CGROUP2_SUPER_MAGIC))
    assert isinstance(setup, SetupV2)
    assert setup.version == 2


def test_detects_legacy_and_hybrid(tmp_path: Path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "unified").mkdir()  # hybrid: an empty cgroup2 beside v1 controllers
    setup = detect_setup(tmp_path, "sbx", fs_magic=_magic(sc.TMPFS_MAGIC))
    assert isinstance(setup, SetupV1)
    assert setup.version == 1


def test_no_cgroups_says_how_to_fix(tmp_path: Path):
    with pytest.raises(UnsupportedError) as info:
        detect_setup(tmp_path, "sbx", fs_magic=_magic(sc.TMPFS_MAGIC))
    assert "mount" in info.value.hint

    def missing(path: str) -> int:
        raise OSError(2, "no such file")

    with pytest.raises(UnsupportedError, match="no cgroup filesystem"):
        detect_setup(tmp_path / "nope", "sbx", fs_magic=missing)


def _v1_tree(root: Path, name: str = "job") -> dict[str, Path]:
    files = {
        "memory": {
            "memory.limit_in_bytes": "",
            "memory.memsw.limit_in_bytes": "",
            "memory.swappiness": "60",
            "memory.max_usage_in_bytes": "12345678",
            "memory.usage_in_bytes": "4096",
            "memory.force_empty": "",
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        },
        "pids": {"pids.max": "max", "pids.events": "max 7\n", "pids.current": "0"},
        "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1"},
        "cpuacct": {"cpuacct.usage": "1500000000"},
        "freezer": {"freezer.state": "THAWED"},
        "cpuset": {"cpuset.cpus": "0-1", "job/cpuset.cpus": "0-1"},
    }
    dirs = {}
    for controller, entries in files.items():
        d = root / controller / "sandbox" / name
        d.mkdir(parents=True)
        (d / "cgroup.procs").write_text("")
        for fname, text in entries.items():
            (d / fname).parent.mkdir(exist_ok=True)
            (d / fname).write_text(text)
        dirs[controller] = d
    return dirs


def test_v1_limits_stats_and_reset(tmp_path: Path):
    dirs = _v1_tree(tmp_path)
    cg = CgroupV1("job", dirs)
    cg.set_limits(CgroupLimits(memory_bytes=64 << 20, files={"pids.max": 16}))
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (dirs["memory"] / "memory.memsw.limit_in_bytes").read_text() == str(64 << 20)
    assert (dirs["memory"] / "memory.swappiness").read_text() == "0"
    assert (dirs["pids"] / "pids.max").read_text() == "16"
    stats = cg.stats()
    assert (stats.cpu_ns, stats.memory_peak, stats.oom_kills, stats.pids_limit_hits) == (
        1_500_000_000,
        12345678,
        2,
        7,
    )
    cg.reset_accounting()
    assert (dirs["cpuacct"] / "cpuacct.usage").read_text() == "0"
    assert (dirs["memory"] / "memory.max_usage_in_bytes").read_text() == "0"
    assert cg.cpu_base_ns() == 0  # v1 resets the counter itself
    assert cg.is_empty()
    assert len(cg.procs_files()) == 6


def _with_leaves(dirs: dict[str, Path]) -> None:
    for d in dirs.values():
        (d / "job").mkdir(exist_ok=True)


def test_v1_recycle_starts_the_next_job_from_zero(tmp_path: Path):
    dirs = _v1_tree(tmp_path)
    _with_leaves(dirs)
    cg = CgroupV1("job", dirs)
    assert cg.recycle()
    stats = cg.stats()
    assert (stats.oom_kills, stats.pids_limit_hits) == (0, 0)  # the last job's 2 and 7
    (dirs["memory"] / "memory.oom_control").write_text("oom_kill 3\n")
    assert cg.stats().oom_kills == 1
    assert (dirs["memory"] / "memory.force_empty").read_text() == ""  # 4 KiB: not worth it
    (dirs["memory"] / "memory.usage_in_bytes").write_text(str(64 << 20))
    assert cg.recycle()
    assert (dirs["memory"] / "memory.force_empty").read_text() == "0"


def test_v1_recycle_refuses_what_the_job_touched(tmp_path: Path):
    dirs = _v1_tree(tmp_path)
    _with_leaves(dirs)
    (dirs["freezer"] / "job" / "mine").mkdir()
    assert not CgroupV1("job", dirs).recycle()  # a cgroup of the job's own below its leaf
    (dirs["freezer"] / "job" / "mine").rmdir()
    (dirs["pids"] / "pids.current").write_text("1")
    assert not CgroupV1("job", dirs).recycle()  # a process left


def test_v1_memory_stays_below_memory_and_swap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A recycled cgroup's next limit may be higher: memory+swap is raised first."""
    dirs = _v1_tree(tmp_path)
    cg = CgroupV1("job", dirs)
    cg.set_limits(CgroupLimits(memory_bytes=64 << 20, files={"pids.max": 1}))
    writes: list[str] = []

    def spy(path: Path, data: str) -> None:
        writes.append(path.name)
        write_file(path, data)

    monkeypatch.setattr("sandbox.kernel.cgroups.base.write_file", spy)
    cg.set_limits(CgroupLimits(memory_bytes=256 << 20, files={"pids.max": 1}))
    cg.set_limits(CgroupLimits(memory_bytes=32 << 20, files={"pids.max": 1}))
    memory = [w for w in writes if "limit" in w]
    assert memory == [
        "memory.memsw.limit_in_bytes",
        "memory.limit_in_bytes",
        "memory.limit_in_bytes",
        "memory.memsw.limit_in_bytes",
    ]


def test_v1_cpu_quota_and_pinning(tmp_path: Path):
    dirs = _v1_tree(tmp_path)
    cg = CgroupV1("job", dirs)
    cg.set_limits(CgroupLimits(memory_bytes=1 << 20, files={"pids.max": 1}))
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "-1"  # no cpus: no cap
    cg.set_limits(CgroupLimits(memory_bytes=1 << 20, files={"pids.max": 1}, cpus=1.5, cpuset="1"))
    assert (dirs["cpu"] / "cpu.cfs_period_us").read_text() == "100000"
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "150000"
    # The leaf is pinned (v1 wants a child's CPUs within its parent's).
    assert (dirs["cpuset"] / "job/cpuset.cpus").read_text() == "1"
    assert (dirs["cpuset"] / "cpuset.cpus").read_text() == "0-1"
    cg.set_limits(CgroupLimits(memory_bytes=1 << 20, files={"pids.max": 1}, cpus=0.001))
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "1000"  # the kernel's minimum


def test_v1_pinning_without_a_cpuset_hierarchy_is_an_error(tmp_path: Path):
    dirs = _v1_tree(tmp_path)
    del dirs["cpuset"]
    with pytest.raises(CgroupError, match="cpuset"):
        CgroupV1("job", dirs).set_limits(
            CgroupLimits(memory_bytes=1 << 20, files={"pids.max": 1}, cpuset="0")
        )


def test_v1_without_swap_accounting(tmp_path: Path):
    dirs = _v1_tree(tmp_path)
    (dirs["memory"] / "memory.memsw.limit_in_bytes").unlink()
    CgroupV1("job", dirs).set_limits(CgroupLimits(memory_bytes=1 << 20, files={"pids.max": 1}))
    assert not (dirs["memory"] / "memory.memsw.limit_in_bytes").exists()


def test_v1_children_and_missing_controllers(tmp_path: Path):
    _v1_tree(tmp_path, "a.1")
    _v1_tree(tmp_path, "b.2")
    setup = SetupV1(tmp_path, "sandbox")
    assert setup.children() == ["a.1", "b.2"]
    # no root procs files
    assert setup.missing() == ["memory", "pids", "cpu", "cpuacct", "freezer"]


def _v2_tree(root: Path) -> Path:
    d = root / "sandbox" / "job"
    d.mkdir(parents=True)
    for fname, text in {
        "memory.max": "max",
        "memory.swap.max": "max",
        "pids.max": "max",
        "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
        "cpu.max": "max 100000",
        "memory.peak": "7654321",
        "memory.current": "4096",
        "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        "pids.events": "max 0\n",
        "cgroup.events": "populated 0\nfrozen 0\n",
        "cgroup.procs": "",
    }.items():
        (d / fname).write_text(text)
    return d


def test_v2_cpu_quota_and_pinning(tmp_path: Path):
    d = _v2_tree(tmp_path)
    cg = CgroupV2("job", d)
    with pytest.raises(CgroupError, match="cpuset controller is not enabled"):
        cg.set_limits(CgroupLimits(memory_bytes=1 << 20, files={"pids.max": 1}, cpuset="0"))
    (d / "cpuset.cpus").write_text("")
    cg.set_limits(CgroupLimits(memory_bytes=1 << 20, files={"pids.max": 1}, cpus=2, cpuset="3"))
    assert (d / "cpu.max").read_text() == "200000 100000"
    assert (d / "cpuset.cpus").read_text() == "3"


def test_v2_limits_stats_and_cpu_baseline(tmp_path: Path):
    d = _v2_tree(tmp_path)
    cg = CgroupV2("job", d)
    cg.set_limits(CgroupLimits(memory_bytes=32 << 20, files={"pids.max": 8}))
    assert (d / "memory.max").read_text() == str(32 << 20)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "pids.max").read_text() == "8"
    stats = cg.stats()
    assert (stats.cpu_ns, stats.memory_peak, stats.oom_kills, stats.pids_limit_hits) == (
        2_500_000_000,
        7654321,
        1,
        0,
    )
    cg.reset_accounting()  # cpu.stat cannot be reset: a baseline is kept
    assert cg.cpu_usage_ns() == 0
    (d / "cpu.stat").write_text("usage_usec 3000000\n")
    assert cg.cpu_usage_ns() == 500_000_000
    # What `sandbox ps` reads: the raw counter less the base the runtime recorded.
    assert cg.cpu_base_ns() == 2_500_000_000
    assert cg.cpu_total_ns() - cg.cpu_base_ns() == cg.cpu_usage_ns()
    assert cg.is_empty()


def test_v2_needs_controllers_delegated_by_the_root(tmp_path: Path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("cpu\n")
    with pytest.raises(UnsupportedError) as info:
        SetupV2(tmp_path, "sandbox").ensure_parent()
    assert "echo +memory" in info.value.hint
    (tmp_path / "cgroup.controllers").write_text("cpu\n")
    with pytest.raises(UnsupportedError, match="not available"):
        SetupV2(tmp_path, "sandbox").ensure_parent()


def test_file_helpers_name_the_path(tmp_path: Path):
    with pytest.raises(CgroupError) as info:
        read_file(tmp_path / "missing")
    assert info.value.path == str(tmp_path / "missing")
    with pytest.raises(CgroupError, match="cannot write '1'"):
        write_file(tmp_path / "no" / "file", "1")


def test_a_recycled_cgroup_writes_only_the_limits_that_change(tmp_path: Path):
    """Only we write a job cgroup's limit files (the job's cgroup namespace starts
    below), so the same value is not written again; a changed one always is."""
    dirs = _v1_tree(tmp_path)
    _with_leaves(dirs)
    v2 = _v2_tree(tmp_path / "v2")
    for cg, pids in ((CgroupV1("job", dirs), dirs["pids"]), (CgroupV2("job", v2), v2)):
        cg.set_limits(CgroupLimits(memory_bytes=64 << 20, files={"pids.max": 16}, cpus=1))
        (pids / "pids.max").write_text("untouched")
        cg.set_limits(
            CgroupLimits(memory_bytes=64 << 20, files={"pids.max": 16}, cpus=1)
        )  # the next job, same limits
        assert (pids / "pids.max").read_text() == "untouched"
        cg.set_limits(CgroupLimits(memory_bytes=32 << 20, files={"pids.max": 8}, cpus=2))
        assert (pids / "pids.max").read_text() == "8"
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text() == str(32 << 20)
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "200000"
    assert (v2 / "memory.max").read_text() == str(32 << 20)
    assert (v2 / "cpu.max").read_text() == "200000 100000"


def test_counters_of_cgroups_a_job_made_below_its_leaf_still_count(tmp_path: Path):
    """Two stats find the usual leaf-only case; a cgroup of the job's own below the
    leaf is walked, so a kill or a refused fork there cannot go uncounted."""
    dirs = _v1_tree(tmp_path)
    _with_leaves(dirs)
    cg = CgroupV1("job", dirs)
    assert cg.recycle()
    assert (cg.stats().oom_kills, cg.stats().pids_limit_hits) == (0, 0)
    for controller, name, text in (
        ("memory", "memory.oom_control", "oom_kill 4\n"),
        ("pids", "pids.events", "max 5\n"),
    ):
        nested = dirs[controller] / "job" / "mine"
        nested.mkdir()
        (nested / name).write_text(text)
    stats = cg.stats()
    assert (stats.oom_kills, stats.pids_limit_hits) == (4, 5)
    assert not cg.recycle()  # and such a cgroup is never reused
