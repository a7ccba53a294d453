"""build_plan in detail: refusals, the container part, the job part, JSON.

test_plan.py covers the main rules; these pin the fields a refusal carries,
the exact namespace set, the plan's constant parts and the mount list.
"""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox.errors import SpecError
from sandbox.image.store import Image
from sandbox.kernel import syscalls as sc
from sandbox.kernel.caps import CAPABILITIES
from sandbox.plan import DEVICES, PATH, MountOp, Plan, build_plan, wire
from sandbox.settings import Settings
from sandbox.spec import JobSpec, Limits

ISOLATED = sc.CLONE_NEWNS | sc.CLONE_NEWPID | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWNET


@pytest.fixture
def image(tmp_path: Path) -> Image:
    return Image("host", root=tmp_path / "rootfs", binds=("/usr",))


def _plan(image: Image, spec: JobSpec | None = None, **settings: object) -> Plan:
    return build_plan(spec or JobSpec(code="x"), Settings(**settings), image)  # type: ignore[arg-type]


def _env(plan: Plan) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in plan.job.env)


def _ops(plan: Plan) -> tuple[MountOp, ...]:
    """Every mount step, in order: the root's, then /proc's."""
    return plan.container.mounts + plan.container.proc_mounts


def _steps(plan: Plan) -> list[tuple[str, str]]:
    return [(op.op, op.target) for op in _ops(plan)]


# -- refusals ----------------------------------------------------------------


def test_a_refused_limit_carries_field_value_and_the_fix(image: Image):
    spec = JobSpec(code="x", limits=Limits(memory="128M"))
    with pytest.raises(SpecError) as info:
        _plan(image, spec, max_memory="64M")
    err = info.value
    assert err.field == "limits.memory"
    assert err.value == 128 * 2**20
    assert "limits.memory" in str(err)
    assert "SANDBOX_MAX_MEMORY" in str(err)
    assert "raise" in str(err)


def test_a_limit_at_the_maximum_is_allowed(image: Image):
    spec = JobSpec(code="x", limits=Limits(memory="64M", wall_time=5, pids=8))
    plan = _plan(image, spec, max_memory="64M", max_wall_time=5, max_pids=8)
    assert plan.container.disk_bytes == spec.limits.disk


def test_default_limits_fit_the_default_maxima(image: Image):
    assert _plan(image).job.uid == 65534


def test_unknown_capability_names_field_and_value(image: Image):
    spec = JobSpec(code="x", capabilities=["fly"])
    with pytest.raises(SpecError) as info:
        _plan(image, spec, allowed_capabilities=frozenset({"CAP_FLY"}))
    assert (info.value.field, info.value.value) == ("capabilities", "CAP_FLY")
    assert "unknown capability CAP_FLY" in str(info.value)


def test_capability_outside_the_allowed_set(image: Image):
    spec = JobSpec(code="x", capabilities=["chown", "sys_ptrace"])
    with pytest.raises(SpecError) as info:
        _plan(image, spec)
    assert (info.value.field, info.value.value) == ("capabilities", "CAP_SYS_PTRACE")
    assert "SANDBOX_ALLOWED_CAPABILITIES" in str(info.value)
    with pytest.raises(SpecError, match="CAP_CHOWN"):
        _plan(image, spec, allowed_capabilities=frozenset({"CAP_SYS_PTRACE"}))


def test_refused_network_names_the_field(image: Image):
    with pytest.raises(SpecError) as info:
        _plan(image, JobSpec(code="x", network=True))
    assert info.value.field == "network"
    assert isinstance(info.value, ValueError)


def test_input_is_measured_in_utf8_bytes(image: Image):
    at_limit = JobSpec(code="é" * 4, stdin="ab")  # 8 + 2 bytes, 6 characters
    assert _plan(image, at_limit, max_input=10).job.argv
    with pytest.raises(SpecError) as info:
        _plan(image, JobSpec(code="é" * 4, stdin="abc"), max_input=10)
    assert (info.value.field, info.value.value) == ("code", 11)


# -- the container part ------------------------------------------------------


def test_namespaces_are_exactly_these(image: Image):
    # The network namespace is the host's shared loopback one, joined (ADR 0013).
    assert _plan(image).container.namespaces == ISOLATED & ~sc.CLONE_NEWNET
    assert _plan(image).container.shared_net
    egress = _plan(image, JobSpec(code="x", network=True), allow_network=True)
    assert egress.container.namespaces == ISOLATED  # a network of its own, with egress


def test_container_fields_come_from_settings_and_image(tmp_path: Path):
    image = Image("alpine", root=tmp_path / "alpine" / "rootfs", binds=(), id="alpine:42:t")
    spec = JobSpec(code="x", limits=Limits(disk="8M"))
    container = _plan(image, spec, run_dir=tmp_path / "run", hostname="box").container
    assert container.image_id == "alpine:42:t"
    assert container.hostname == "box"
    assert container.mount_base == str(tmp_path / "run" / "mnt")
    assert container.lower_dirs == (str(tmp_path / "alpine" / "rootfs"),)
    assert container.disk_bytes == 8 * 2**20
    assert container.disk_inodes == 8 * 2**20 // 4096


def test_image_without_id_is_keyed_by_name_and_small_disks_get_enough_inodes(image: Image):
    container = _plan(image, JobSpec(code="x", limits=Limits(disk="1M"))).container
    assert container.image_id == "host"
    assert container.disk_inodes == 1024


def test_binds_come_first_and_are_read_only(tmp_path: Path):
    image = Image("host", root=tmp_path, binds=("/usr", "/lib", "/lib64"))
    ops = _plan(image).container.mounts
    assert [op.target for op in ops[:3]] == ["/usr", "/lib", "/lib64"]
    for op in ops[:3]:
        assert (op.op, op.source, op.readonly) == ("bind", op.target, True)
        assert op.flags == sc.MS_NOSUID | sc.MS_NODEV
    assert (ops[3].op, ops[3].target) == ("mountpoint", "/proc")


def test_an_image_without_binds_starts_with_proc(tmp_path: Path):
    ops = _plan(Image("busybox", root=tmp_path, binds=())).container.mounts
    assert (ops[0].op, ops[0].target) == ("mountpoint", "/proc")


def test_proc_and_dev_are_fresh_nosuid_noexec_filesystems(image: Image):
    mounts = {op.target: op for op in _ops(_plan(image)) if op.op == "mount"}
    assert list(mounts) == ["/dev", "/dev/pts", "/proc"]
    for target in ("/proc", "/dev"):
        assert mounts[target].flags & sc.MS_NOSUID
        assert mounts[target].flags & sc.MS_NODEV
        assert mounts[target].flags & sc.MS_NOEXEC
    assert (mounts["/proc"].fstype, mounts["/dev"].fstype) == ("proc", "tmpfs")
    assert mounts["/dev/pts"].fstype == "devpts"
    assert "newinstance" in (mounts["/dev/pts"].data or "")


def test_shm_shares_the_disk_tmpfs(image: Image):
    """/dev/shm is bound from the job's disk tmpfs: limits.disk covers it too."""
    ops = build_plan(JobSpec(code="x"), Settings(), image).container.mounts
    (shm,) = [op for op in ops if op.target == "/dev/shm" and op.op == "bind"]
    assert shm.source == "/run/sandbox/mnt/shm"
    assert not shm.readonly
    assert shm.flags & sc.MS_NOSUID
    assert shm.flags & sc.MS_NODEV


def test_each_device_is_a_file_then_a_bind_after_the_dev_tmpfs(image: Image):
    steps = _steps(_plan(image))
    dev = steps.index(("mount", "/dev"))
    pts = steps.index(("mount", "/dev/pts"))
    for name in DEVICES:
        file = steps.index(("file", f"/dev/{name}"))
        assert steps[file + 1] == ("bind", f"/dev/{name}")
        assert dev < file < pts


def test_devices_are_bound_from_the_host_without_suid_or_exec(image: Image):
    binds = [op for op in _plan(image).container.mounts if op.op == "bind"]
    devices = [op for op in binds if op.target.startswith("/dev/") and op.target != "/dev/shm"]
    assert [op.target for op in devices] == [f"/dev/{n}" for n in DEVICES]
    for op in devices:
        assert op.source == op.target
        assert op.flags == sc.MS_NOSUID | sc.MS_NOEXEC
        assert not op.readonly


def test_dev_links_follow_their_targets(image: Image):
    ops = _plan(image).container.mounts
    links = {op.target: op.source for op in ops if op.op == "symlink"}
    assert links == {
        "/dev/ptmx": "pts/ptmx",
        "/dev/fd": "/proc/self/fd",
        "/dev/stdin": "/proc/self/fd/0",
        "/dev/stdout": "/proc/self/fd/1",
        "/dev/stderr": "/proc/self/fd/2",
    }
    steps = _steps(_plan(image))
    assert steps.index(("mount", "/dev/pts")) < steps.index(("symlink", "/dev/ptmx"))


def test_world_writable_dirs_are_sticky(image: Image):
    ops = _plan(image).container.mounts
    modes = {op.target: op.mode for op in ops if op.op in ("mkdir", "mountpoint")}
    assert modes["/tmp"] == 0o1777
    assert modes["/dev/shm"] == 0o1777
    assert modes["/proc"] == 0o755  # when the image lacks it


def test_mount_points_are_left_as_the_image_has_them(image: Image):
    """A chmod or chown there would copy the image's directory up into the
    overlay's upper layer, under a mount that hides it."""
    ops: dict[str, str] = {}
    for op in _plan(image).container.mounts:  # the first step on each path
        ops.setdefault(op.target, op.op)
    assert ops["/proc"] == ops["/dev"] == "mountpoint"
    assert ops["/tmp"] == ops["/box"] == "mkdir"  # the job's: owned by the container's root


def test_proc_is_masked_and_made_read_only_last(image: Image):
    ops = _ops(_plan(image))
    first_proc_step = min(i for i, op in enumerate(ops) if op.op in ("mask", "rebind"))
    assert all(op.op in ("mask", "rebind") for op in ops[first_proc_step:])
    assert {op.target for op in ops if op.op == "mask"} >= {"/proc/kcore", "/proc/keys"}
    for op in ops:
        if op.op == "rebind":
            assert op.target.startswith("/proc/")
            assert op.readonly
            assert op.flags & sc.MS_NOSUID


# -- the job part ------------------------------------------------------------


def test_user_ids_come_from_settings(image: Image):
    job = _plan(image, job_uid=1000, job_gid=2000).job
    assert (job.uid, job.gid) == (1000, 2000)
    privileged = _plan(image, JobSpec(code="x", capabilities=["kill"]), job_uid=1000).job
    assert (privileged.uid, privileged.gid) == (0, 0)


def test_capability_mask_and_last_cap(image: Image):
    spec = JobSpec(code="x", capabilities=["net_bind_service", "setuid", "setgid"])
    job = build_plan(spec, Settings(), image, last_cap=37).job
    assert job.capabilities == (1 << 10) | (1 << 7) | (1 << 6)
    assert job.last_cap == 37
    assert _plan(image).job.last_cap == len(CAPABILITIES) - 1


@pytest.mark.parametrize(("cpu_time", "soft", "hard"), [(1, 2, 3), (0.1, 2, 3), (10, 11, 12)])
def test_cpu_rlimit_is_a_backstop_above_the_limit(
    image: Image, cpu_time: float, soft: int, hard: int
):
    spec = JobSpec(code="x", limits=Limits(cpu_time=cpu_time))
    rlimits = {res: (s, h) for res, s, h in _plan(image, spec).job.rlimits}
    assert rlimits[resource.RLIMIT_CPU] == (soft, hard)


def test_exactly_these_rlimits(image: Image):
    resources = [res for res, _, _ in _plan(image).job.rlimits]
    assert sorted(resources) == sorted(
        [
            resource.RLIMIT_CORE,
            resource.RLIMIT_FSIZE,
            resource.RLIMIT_NOFILE,
            resource.RLIMIT_CPU,
            resource.RLIMIT_STACK,
        ]
    )


def test_the_stack_is_the_memory_limit_unless_asked(image: Image):
    """Never the worker's own (inherited) stack limit: contest judges' default."""

    def stack(spec: JobSpec, **settings: object) -> tuple[int, int]:
        rlimits = _plan(image, spec, **settings).job.rlimits
        return next((s, h) for res, s, h in rlimits if res == resource.RLIMIT_STACK)

    assert stack(JobSpec(code="x", limits={"memory": "512M"})) == (512 * 2**20, 512 * 2**20)
    assert stack(JobSpec(code="x", limits={"stack": "16M"})) == (16 * 2**20, 16 * 2**20)
    with pytest.raises(SpecError, match=r"limits\.stack .* SANDBOX_MAX_STACK"):
        stack(JobSpec(code="x", limits={"stack": "8G"}))  # above max_memory
    with pytest.raises(SpecError, match=r"limits\.stack"):
        stack(JobSpec(code="x", limits={"stack": "64M"}), max_stack="32M")
    with pytest.raises(ValidationError, match="stack"):
        Limits(stack=1024)  # below 64 KiB: no program starts


def test_environment_is_built_from_nothing(image: Image, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WORKER_MARKER", "leaked")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "leaked")
    plan = _plan(image)
    assert _env(plan) == {
        "PATH": PATH,
        "HOME": "/box",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    assert not any("leaked" in entry for entry in plan.job.env)


def test_the_spec_env_overrides_without_duplicates(image: Image):
    spec = JobSpec(code="x", env={"PATH": "/bin", "HOME": "/tmp", "EXTRA": "a=b"})
    plan = _plan(image, spec)
    names = [entry.split("=", 1)[0] for entry in plan.job.env]
    assert len(names) == len(set(names))
    env = _env(plan)
    assert (env["PATH"], env["HOME"], env["EXTRA"]) == ("/bin", "/tmp", "a=b")


def test_sh_job(image: Image):
    job = _plan(image, JobSpec(code="echo hi", language="sh", argv=("x y",))).job
    assert job.argv == ("/bin/sh", "main.sh", "x y")
    assert job.source_file == "/box/main.sh"


# -- the wire format of the launcher ----------------------------------------------


def test_plans_are_tokens_with_none_as_empty(image: Image):
    plan = _plan(image, JobSpec(code="x", env={"A": "ü"}, argv=("é",)))
    tokens = plan.container.to_wire().split(b"\0")
    at = tokens.index(b"mount")
    assert tokens[at : at + 9] == [
        b"mount",
        b"bind",
        b"/usr",
        b"/usr",
        b"",
        str(sc.MS_NOSUID | sc.MS_NODEV).encode(),
        b"",
        str(0o755).encode(),
        b"1",
    ]
    assert tokens[-2:] == [b"end", b""]
    job = plan.job.to_wire(b"", b"").split(b"\0")
    assert "é".encode() in job
    assert "A=ü".encode() in job


def test_a_nul_byte_never_reaches_the_launcher():
    with pytest.raises(ValueError, match="NUL"):
        wire([("argv", "a\0b")])
