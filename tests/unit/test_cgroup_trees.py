"""cgroups on fixture trees in tmp_path: detection, v1, v2, and the file helpers.

Files are created as cgroupfs would show them; the helpers open them without
O_CREAT, so a file the kernel would not offer stays absent.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.errors import CgroupError, SandboxError, SetupError, UnsupportedError
from sandbox.kernel import syscalls as sc
from sandbox.kernel.cgroups import detect_setup
from sandbox.kernel.cgroups.base import (
    CgroupLimits,
    CgroupStats,
    freeze_and_kill,
    parse_keyed,
    read_file,
    write_file,
)
from sandbox.kernel.cgroups.v1 import SetupV1
from sandbox.kernel.cgroups.v2 import SetupV2

V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")


def _files(base: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _magic(value: int) -> Callable[[str], int]:
    return lambda path: value


# -- detection ---------------------------------------------------------------


def test_unified_host_gives_v2_at_root_and_parent(tmp_path: Path):
    seen: list[str] = []

    def magic(path: str) -> int:
        seen.append(path)
        return sc.CGROUP2_SUPER_MAGIC

    setup = detect_setup(tmp_path, "judge", fs_magic=magic)
    assert isinstance(setup, SetupV2)
    assert (setup.root, setup.parent, setup.version) == (tmp_path, "judge", 2)
    assert seen == [str(tmp_path)]


@pytest.mark.parametrize("magic", [sc.TMPFS_MAGIC, sc.CGROUP_SUPER_MAGIC])
def test_memory_controller_dir_gives_v1(tmp_path: Path, magic: int):
    (tmp_path / "memory").mkdir()
    setup = detect_setup(tmp_path, "judge", fs_magic=_magic(magic))
    assert isinstance(setup, SetupV1)
    assert (setup.root, setup.parent, setup.version) == (tmp_path, "judge", 1)


def test_cgroup2_wins_over_a_memory_dir(tmp_path: Path):
    (tmp_path / "memory").mkdir()
    assert detect_setup(tmp_path, fs_magic=_magic(sc.CGROUP2_SUPER_MAGIC)).version == 2


def test_nothing_usable_is_unsupported_with_a_hint(tmp_path: Path):
    (tmp_path / "memory").touch()  # a file, not a controller directory
    with pytest.raises(UnsupportedError) as info:
        detect_setup(tmp_path, fs_magic=_magic(sc.TMPFS_MAGIC))
    assert str(tmp_path) in str(info.value)
    assert "cgroup2" in info.value.hint
    assert info.value.hint in str(info.value)


def test_no_filesystem_at_all_is_unsupported_and_chained(tmp_path: Path):
    def missing(path: str) -> int:
        raise FileNotFoundError(errno.ENOENT, "statfs", path)

    with pytest.raises(UnsupportedError) as info:
        detect_setup(tmp_path / "nowhere", fs_magic=missing)
    assert "mount cgroupfs" in info.value.hint
    assert isinstance(info.value.__cause__, FileNotFoundError)


# -- v1 ----------------------------------------------------------------------


def _v1_root(root: Path, parent: str = "sandbox") -> SetupV1:
    """Controllers mounted, our parent created: as after ensure_parent."""
    for c in V1_CONTROLLERS:
        _files(root / c, {"cgroup.procs": ""})
        (root / c / parent).mkdir()
    return SetupV1(root, parent)


def test_v1_stats_from_a_fixture_tree(tmp_path: Path):
    cg = _v1_root(tmp_path).open("job")
    _files(
        tmp_path,
        {
            "memory/sandbox/job/memory.max_usage_in_bytes": "52428800\n",
            "memory/sandbox/job/memory.oom_control": (
                "oom_kill_disable 0\nunder_oom 1\noom_kill 2\n"
            ),
            "pids/sandbox/job/pids.events": "max 5\n",
            "cpuacct/sandbox/job/cpuacct.usage": "123456789\n",
            "freezer/sandbox/job/freezer.state": "THAWED\n",
        },
    )
    assert cg.stats() == CgroupStats(
        cpu_ns=123456789, memory_peak=52428800, oom_kills=2, pids_limit_hits=5
    )
    assert cg.cpu_usage_ns() == 123456789


def test_v1_kernel_without_oom_kill_counter(tmp_path: Path):
    """Before Linux 4.13 memory.oom_control has no oom_kill line: no count, not an error."""
    cg = _v1_root(tmp_path).open("job")
    _files(
        tmp_path,
        {
            "memory/sandbox/job/memory.max_usage_in_bytes": "4096",
            "memory/sandbox/job/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n",
            "pids/sandbox/job/pids.events": "max 0\n",
            "cpuacct/sandbox/job/cpuacct.usage": "0",
        },
    )
    assert cg.stats().oom_kills == 0


def test_v1_stats_of_a_missing_file_is_a_cgroup_error(tmp_path: Path):
    cg = _v1_root(tmp_path).open("job")
    with pytest.raises(CgroupError) as info:
        cg.stats()
    assert info.value.path == str(tmp_path / "cpuacct/sandbox/job/cpuacct.usage")


def test_v1_limits_without_swap_files(tmp_path: Path):
    cg = _v1_root(tmp_path).open("job")
    _files(
        tmp_path,
        {"memory/sandbox/job/memory.limit_in_bytes": "", "pids/sandbox/job/pids.max": ""},
    )
    cg.set_limits(CgroupLimits(memory_bytes=5 * 2**20, files={"pids.max": 3}))
    mem = tmp_path / "memory/sandbox/job"
    assert (mem / "memory.limit_in_bytes").read_text() == str(5 * 2**20)
    assert (tmp_path / "pids/sandbox/job/pids.max").read_text() == "3"
    assert sorted(p.name for p in mem.iterdir()) == ["memory.limit_in_bytes"]


def test_v1_limits_overwrite_the_old_value(tmp_path: Path):
    cg = _v1_root(tmp_path).open("job")
    _files(
        tmp_path,
        {
            "memory/sandbox/job/memory.limit_in_bytes": "9223372036854771712\n",
            "memory/sandbox/job/memory.memsw.limit_in_bytes": "9223372036854771712\n",
            "pids/sandbox/job/pids.max": "max\n",
        },
    )
    cg.set_limits(CgroupLimits(memory_bytes=4096, files={"pids.max": 64}))
    mem = tmp_path / "memory/sandbox/job"
    assert (mem / "memory.limit_in_bytes").read_text() == "4096"
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == "4096"
    assert (tmp_path / "pids/sandbox/job/pids.max").read_text() == "64"


def test_v1_create_makes_one_dir_per_hierarchy(tmp_path: Path):
    setup = _v1_root(tmp_path)
    cg = setup.create("owner.1")
    for c in V1_CONTROLLERS:
        assert (tmp_path / c / "sandbox/owner.1").is_dir()
    assert cg.procs_files() == tuple(
        str(tmp_path / c / "sandbox/owner.1/job/cgroup.procs") for c in V1_CONTROLLERS
    )
    assert setup.children() == ["owner.1"]


def test_v1_co_mounted_controllers_are_one_directory(tmp_path: Path):
    """As cpu,cpuacct on Debian: two controller names, one hierarchy (symlinks)."""
    _files(tmp_path, {"memory,pids/cgroup.procs": "", "memory,pids/sandbox/.keep": ""})
    os.symlink("memory,pids", tmp_path / "memory")
    os.symlink("memory,pids", tmp_path / "pids")
    _files(tmp_path, {"cpu,cpuacct/cgroup.procs": "", "cpu,cpuacct/sandbox/.keep": ""})
    os.symlink("cpu,cpuacct", tmp_path / "cpu")
    os.symlink("cpu,cpuacct", tmp_path / "cpuacct")
    _files(tmp_path, {"freezer/cgroup.procs": "", "freezer/sandbox/.keep": ""})
    setup = SetupV1(tmp_path, "sandbox")
    assert setup.missing() == []
    cg = setup.create("job")  # mkdir once, not EEXIST on the second name
    assert len(cg.procs_files()) == 3
    assert cg.procs_files()[0] == str(tmp_path / "memory,pids/sandbox/job/job/cgroup.procs")


def test_v1_create_undoes_a_half_made_cgroup(tmp_path: Path):
    setup = _v1_root(tmp_path)
    (tmp_path / "freezer/sandbox").rmdir()  # the last hierarchy cannot take it
    with pytest.raises(CgroupError) as info:
        setup.create("job")
    assert info.value.path == str(tmp_path / "freezer/sandbox/job")
    for c in ("memory", "pids", "cpu", "cpuacct"):
        assert not (tmp_path / c / "sandbox/job").exists()


def test_v1_ensure_parent_names_a_missing_controller(tmp_path: Path):
    for c in ("memory", "pids", "cpu", "freezer"):
        _files(tmp_path / c, {"cgroup.procs": ""})
    setup = SetupV1(tmp_path, "sandbox")
    assert setup.missing() == ["cpuacct"]
    with pytest.raises(UnsupportedError) as info:
        setup.ensure_parent()
    assert "cpuacct" in str(info.value)
    assert f"mount -t cgroup -o cpuacct cgroup {tmp_path / 'cpuacct'}" in info.value.hint
    assert not (tmp_path / "memory/sandbox").exists()


def test_v1_ensure_parent_creates_our_parent_everywhere(tmp_path: Path):
    for c in V1_CONTROLLERS:
        _files(tmp_path / c, {"cgroup.procs": ""})
    SetupV1(tmp_path, "judge").ensure_parent()
    SetupV1(tmp_path, "judge").ensure_parent()  # idempotent
    for c in V1_CONTROLLERS:
        assert (tmp_path / c / "judge").is_dir()


def test_v1_destroy_removes_every_dir_and_tolerates_missing_ones(tmp_path: Path):
    setup = _v1_root(tmp_path)
    cg = setup.create("job")
    (tmp_path / "pids/sandbox/job/job").rmdir()
    (tmp_path / "pids/sandbox/job").rmdir()
    cg.destroy()
    assert setup.children() == []


# -- v2 ----------------------------------------------------------------------


def _v2_job(root: Path, files: dict[str, str]) -> Path:
    job = root / "sandbox" / "job"
    job.mkdir(parents=True)
    _files(job, files)
    return job


def test_v2_stats_from_a_fixture_tree(tmp_path: Path):
    _v2_job(
        tmp_path,
        {
            "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n",
            "memory.peak": "3145728\n",
            "memory.current": "1024\n",
            "memory.events": "low 0\nhigh 0\nmax 9\noom 3\noom_kill 2\noom_group_kill 0\n",
            "pids.events": "max 6\n",
        },
    )
    cg = SetupV2(tmp_path, "sandbox").open("job")
    assert cg.stats() == CgroupStats(
        cpu_ns=1_500_000, memory_peak=3145728, oom_kills=2, pids_limit_hits=6
    )


def test_v2_peak_falls_back_to_current_on_old_kernels(tmp_path: Path):
    _v2_job(
        tmp_path,
        {
            "cpu.stat": "usage_usec 0\n",
            "memory.current": "8192\n",
            "memory.events": "oom_kill 0\n",
            "pids.events": "max 0\n",
        },
    )
    assert SetupV2(tmp_path, "sandbox").open("job").stats().memory_peak == 8192


def test_v2_limits_without_swap_file(tmp_path: Path):
    job = _v2_job(tmp_path, {"memory.max": "max\n", "pids.max": "max\n"})
    SetupV2(tmp_path, "sandbox").open("job").set_limits(
        CgroupLimits(memory_bytes=2**23, files={"pids.max": 10})
    )
    assert (job / "memory.max").read_text() == str(2**23)
    assert (job / "pids.max").read_text() == "10"
    assert not (job / "memory.swap.max").exists()


def test_v2_reset_makes_cpu_relative_and_tolerates_an_old_peak(tmp_path: Path):
    job = _v2_job(tmp_path, {"cpu.stat": "usage_usec 700\n"})  # no memory.peak: Linux < 5.19
    cg = SetupV2(tmp_path, "sandbox").open("job")
    cg.reset_accounting()
    (job / "cpu.stat").write_text("usage_usec 1000\n")
    assert cg.cpu_usage_ns() == 300_000


@pytest.mark.parametrize(
    ("events", "empty"),
    [("populated 0\nfrozen 0\n", True), ("populated 1\nfrozen 0\n", False), (None, True)],
)
def test_v2_is_empty(tmp_path: Path, events: str | None, empty: bool):
    _v2_job(tmp_path, {} if events is None else {"cgroup.events": events})
    assert SetupV2(tmp_path, "sandbox").open("job").is_empty() is empty


def test_v2_kill_writes_cgroup_kill(tmp_path: Path):
    job = _v2_job(tmp_path, {"cgroup.kill": ""})
    SetupV2(tmp_path, "sandbox").open("job").kill()
    assert (job / "cgroup.kill").read_text() == "1"


def _v2_root(root: Path, controllers: str, subtree: str) -> SetupV2:
    _files(root, {"cgroup.controllers": controllers, "cgroup.subtree_control": subtree})
    return SetupV2(root, "sandbox")


def test_v2_memory_not_delegated_by_the_root(tmp_path: Path):
    setup = _v2_root(tmp_path, "cpuset cpu io memory pids\n", "cpu pids\n")
    with pytest.raises(UnsupportedError) as info:
        setup.ensure_parent()
    assert "memory" in str(info.value)
    assert info.value.hint == f"run: echo +memory > {tmp_path / 'cgroup.subtree_control'}"
    assert not (tmp_path / "sandbox").exists()


def test_v2_controller_missing_from_the_kernel(tmp_path: Path):
    setup = _v2_root(tmp_path, "cpu memory\n", "cpu memory\n")
    assert setup.missing() == ["pids"]
    with pytest.raises(UnsupportedError, match="pids is not available"):
        setup.ensure_parent()


def test_v2_unreadable_root_misses_everything(tmp_path: Path):
    assert SetupV2(tmp_path, "sandbox").missing() == ["memory", "pids", "cpu"]


def test_v2_ensure_parent_enables_controllers_for_jobs(tmp_path: Path):
    setup = _v2_root(tmp_path, "cpuset cpu io memory pids\n", "cpu io memory pids\n")
    _files(tmp_path, {"sandbox/cgroup.subtree_control": ""})
    setup.ensure_parent()
    assert (tmp_path / "sandbox/cgroup.subtree_control").read_text() == "+memory +pids +cpu"


def test_v2_cpu_not_delegated_by_the_root_is_refused(tmp_path: Path):
    """Without the cpu controller a job could starve its neighbours: no silent fallback."""
    setup = _v2_root(tmp_path, "cpu memory pids\n", "memory pids\n")
    with pytest.raises(UnsupportedError, match="cpu is not enabled"):
        setup.ensure_parent()


def test_v2_ensure_parent_enables_cpuset_when_the_root_does(tmp_path: Path):
    setup = _v2_root(tmp_path, "cpuset cpu memory pids\n", "cpuset cpu memory pids\n")
    _files(tmp_path, {"sandbox/cgroup.subtree_control": "memory pids cpu\n"})
    setup.ensure_parent()
    assert (tmp_path / "sandbox/cgroup.subtree_control").read_text() == "+cpuset"


def test_v2_ensure_parent_writes_nothing_when_all_is_enabled(tmp_path: Path):
    setup = _v2_root(tmp_path, "cpu memory pids\n", "cpu memory pids\n")
    _files(tmp_path, {"sandbox/cgroup.subtree_control": "cpu memory pids\n"})
    setup.ensure_parent()
    assert (tmp_path / "sandbox/cgroup.subtree_control").read_text() == "cpu memory pids\n"


def test_v2_create_twice_is_a_cgroup_error(tmp_path: Path):
    (tmp_path / "sandbox").mkdir()
    setup = SetupV2(tmp_path, "sandbox")
    cg = setup.create("a.1")
    assert cg.procs_files() == (str(tmp_path / "sandbox/a.1/job/cgroup.procs"),)
    with pytest.raises(CgroupError) as info:
        setup.create("a.1")
    assert info.value.path == str(tmp_path / "sandbox/a.1")
    setup.create("b.2")
    assert setup.children() == ["a.1", "b.2"]
    cg.destroy()
    cg.destroy()  # already gone: fine
    assert setup.children() == ["b.2"]


def test_v2_no_parent_no_children(tmp_path: Path):
    assert SetupV2(tmp_path, "sandbox").children() == []


# -- file helpers --------------------------------------------------------------


def test_read_error_carries_path_and_errno(tmp_path: Path):
    path = tmp_path / "memory.peak"
    with pytest.raises(CgroupError) as info:
        read_file(path)
    err = info.value
    assert (err.path, err.errno) == (str(path), errno.ENOENT)
    assert str(path) in str(err)
    assert isinstance(err, SetupError)
    assert isinstance(err.__cause__, FileNotFoundError)


def test_write_error_carries_path_value_and_errno(tmp_path: Path):
    with pytest.raises(CgroupError) as info:
        write_file(tmp_path, "+memory")  # a directory
    err = info.value
    assert (err.path, err.errno) == (str(tmp_path), errno.EISDIR)
    assert "'+memory'" in str(err)
    assert str(tmp_path) in str(err)


def test_write_does_not_create_files(tmp_path: Path):
    with pytest.raises(CgroupError):
        write_file(tmp_path / "pids.max", "1")
    assert not (tmp_path / "pids.max").exists()


def test_parse_keyed_takes_key_value_lines_only():
    text = "usage_usec 10\nbad line here\nnegative -3\nword word\n\nsingle\nmax 0\n"
    assert parse_keyed(text) == {"usage_usec": 10, "negative": -3, "max": 0}


def test_freeze_and_kill_kills_while_frozen_then_thaws(monkeypatch: pytest.MonkeyPatch):
    log: list[tuple[str, object]] = []

    def kill(pid: int, sig: int) -> None:
        log.append(("kill", pid))
        if pid == 222:
            raise ProcessLookupError(pid)  # exited meanwhile: fine

    monkeypatch.setattr(os, "kill", kill)  # never signal real processes
    freeze_and_kill(
        lambda on: log.append(("freeze", on)),
        lambda: True,
        lambda: [111, 222, 333],
    )
    assert log == [
        ("freeze", True),
        ("kill", 111),
        ("kill", 222),
        ("kill", 333),
        ("freeze", False),
    ]


def test_freeze_and_kill_thaws_even_on_error(monkeypatch: pytest.MonkeyPatch):
    states: list[bool] = []

    def pids() -> list[int]:
        raise CgroupError("cannot read cgroup.procs")

    monkeypatch.setattr(os, "kill", lambda pid, sig: pytest.fail("nothing to kill"))
    with pytest.raises(CgroupError):
        freeze_and_kill(states.append, lambda: True, pids)
    assert states == [True, False]


def test_cgroup_errors_are_sandbox_errors():
    assert issubclass(CgroupError, SetupError)
    assert issubclass(UnsupportedError, SandboxError)
    assert not issubclass(UnsupportedError, SetupError)


def test_can_pin_only_with_a_cpuset_controller_of_ours(tmp_path: Path):
    setup = _v2_root(tmp_path / "a", "cpuset cpu memory pids\n", "cpu memory pids\n")
    _files(tmp_path / "a", {"sandbox/cgroup.subtree_control": "memory pids cpu\n"})
    assert not setup.can_pin()  # the root does not delegate cpuset: pinning is refused
    setup = _v2_root(tmp_path / "b", "cpuset cpu memory pids\n", "cpuset cpu memory pids\n")
    _files(tmp_path / "b", {"sandbox/cgroup.subtree_control": "memory pids cpu cpuset\n"})
    assert setup.can_pin()
    assert not SetupV2(tmp_path / "none", "sandbox").can_pin()
