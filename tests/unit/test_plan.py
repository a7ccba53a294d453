"""build_plan: the pure function from what is asked and what is allowed to a plan."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from sandbox.errors import SpecError
from sandbox.image.store import Image
from sandbox.kernel import syscalls as sc
from sandbox.kernel.caps import CAPABILITIES, NETWORK_CAPABILITIES
from sandbox.plan import PROC_MASKED, PROC_READONLY, build_plan
from sandbox.settings import Settings
from sandbox.spec import JobSpec, Limits

IMAGE = Image(name="host", root=Path("/images/host/rootfs"), binds=("/usr",), id="host:1")


def _settings(**changes: object) -> Settings:
    return Settings(**changes)  # type: ignore[arg-type]


def plan(spec: JobSpec, **settings: object):
    return build_plan(spec, _settings(**settings), IMAGE)


@pytest.mark.parametrize(
    ("limits", "field", "setting"),
    [
        ({"memory": "8G"}, "limits.memory", "SANDBOX_MAX_MEMORY"),
        ({"wall_time": 301}, "limits.wall_time", "SANDBOX_MAX_WALL_TIME"),
        ({"cpu_time": 301}, "limits.cpu_time", "SANDBOX_MAX_CPU_TIME"),
        ({"pids": 5000}, "limits.pids", "SANDBOX_MAX_PIDS"),
        ({"output": "1G"}, "limits.output", "SANDBOX_MAX_OUTPUT"),
        ({"disk": "2G"}, "limits.disk", "SANDBOX_MAX_DISK"),
        ({"open_files": 5000}, "limits.open_files", "SANDBOX_MAX_OPEN_FILES"),
    ],
)
def test_limits_beyond_the_maximum_are_refused(limits, field, setting):
    with pytest.raises(SpecError) as info:
        plan(JobSpec(code="x", limits=Limits(**limits)))
    assert info.value.field == field
    assert setting in str(info.value)
    assert isinstance(info.value, ValueError)


def test_maximum_is_configurable():
    spec = JobSpec(code="x", limits=Limits(memory="8G"))
    assert plan(spec, max_memory="16G").container.disk_bytes == spec.limits.disk


def test_unknown_and_disallowed_capabilities_are_refused():
    with pytest.raises(SpecError, match="unknown capability CAP_MAGIC"):
        plan(JobSpec(code="x", capabilities=["CAP_MAGIC"]))
    with pytest.raises(SpecError, match="CAP_SYS_ADMIN is not allowed") as info:
        plan(JobSpec(code="x", capabilities=["CAP_SYS_ADMIN"]))
    assert info.value.field == "capabilities"
    allowed = plan(
        JobSpec(code="x", capabilities=["CAP_SYS_ADMIN"]),
        allowed_capabilities=frozenset({"CAP_SYS_ADMIN"}),
    )
    assert allowed.job.capabilities == 1 << CAPABILITIES.index("CAP_SYS_ADMIN")


def test_network_needs_the_operator():
    with pytest.raises(SpecError, match="SANDBOX_ALLOW_NETWORK"):
        plan(JobSpec(code="x", network=True))
    egress = plan(JobSpec(code="x", network=True), allow_network=True).container
    assert egress.namespaces & sc.CLONE_NEWNET  # its own, with a network stack
    assert egress.loopback
    assert egress.netstack[0] == "/usr/bin/pasta"
    assert "--no-map-gw" in egress.netstack  # the host's loopback is not the gateway
    assert not egress.shared_net
    isolated = plan(JobSpec(code="x")).container
    assert not isolated.namespaces & sc.CLONE_NEWNET  # the host's shared loopback one (ADR 0013)
    assert isolated.shared_net
    assert not isolated.loopback  # up already
    assert isolated.netstack == ()
    assert egress != isolated  # never each other's pooled container


@pytest.mark.parametrize("cap", sorted(NETWORK_CAPABILITIES))
def test_a_network_capability_gets_a_network_namespace_of_its_own(cap):
    """Its root must own the namespace for the capability to act on it."""
    own = plan(JobSpec(code="x", capabilities=[cap]), allowed_capabilities=frozenset({cap}))
    assert own.container.namespaces & sc.CLONE_NEWNET
    assert own.container.loopback
    assert not own.container.shared_net
    other = plan(
        JobSpec(code="x", capabilities=["CAP_CHOWN"]),
        allowed_capabilities=frozenset({"CAP_CHOWN"}),
    )
    assert other.container.shared_net


def test_shared_network_namespaces_can_be_turned_off():
    own = plan(JobSpec(code="x"), reuse_netns=False).container
    assert own.namespaces & sc.CLONE_NEWNET
    assert own.loopback
    assert not own.shared_net


def test_a_handed_network_namespace_is_said_in_the_wire_form():
    container = plan(JobSpec(code="x")).container
    assert b"netns\0" not in container.to_wire()
    assert container.to_wire(netns=True).count(b"netns\0") == 1
    assert container.to_wire(netns=True).endswith(container.to_wire()[-200:])


def test_network_egress_needs_user_namespaces():
    with pytest.raises(SpecError, match="SANDBOX_USERNS"):
        plan(JobSpec(code="x", network=True), allow_network=True, userns=False)


def test_input_size_is_bounded():
    with pytest.raises(SpecError, match="bytes"):
        plan(JobSpec(code="x" * 2000, stdin="y"), max_input=1000)


def test_namespaces():
    ns = plan(JobSpec(code="x")).container.namespaces
    for flag in (sc.CLONE_NEWNS, sc.CLONE_NEWPID, sc.CLONE_NEWUTS, sc.CLONE_NEWIPC):
        assert ns & flag
    # The job unshares its cgroup namespace itself, once it sits in its cgroup.
    assert not ns & sc.CLONE_NEWCGROUP


def test_user_and_capabilities():
    unprivileged = plan(JobSpec(code="x")).job
    assert (unprivileged.uid, unprivileged.gid, unprivileged.capabilities) == (65534, 65534, 0)
    root = plan(JobSpec(code="x", capabilities=["CAP_NET_BIND_SERVICE", "CAP_CHOWN"])).job
    assert (root.uid, root.gid) == (0, 0)
    assert root.capabilities == (1 << 10) | (1 << 0)


def test_rlimits():
    spec = JobSpec(code="x", limits=Limits(cpu_time=2.5, disk="8M", open_files=32))
    limits = {res: (soft, hard) for res, soft, hard in plan(spec).job.rlimits}
    assert limits[resource.RLIMIT_CORE] == (0, 0)
    assert limits[resource.RLIMIT_FSIZE] == (8 * 2**20, 8 * 2**20)
    assert limits[resource.RLIMIT_NOFILE] == (32, 32)
    assert limits[resource.RLIMIT_CPU] == (4, 5)  # a backstop above the supervisor's limit


def test_environment_is_ours_plus_the_spec(monkeypatch):
    monkeypatch.setenv("WORKER_SECRET", "hunter2")
    env = dict(e.split("=", 1) for e in plan(JobSpec(code="x", env={"A": "1"})).job.env)
    assert "WORKER_SECRET" not in env
    assert env["A"] == "1"
    assert env["HOME"] == "/box"
    assert env["LANG"] == "C.UTF-8"
    assert "/usr/bin" in env["PATH"]
    override = dict(e.split("=", 1) for e in plan(JobSpec(code="x", env={"LANG": "C"})).job.env)
    assert override["LANG"] == "C"


def test_commands_per_language():
    py = plan(JobSpec(code="x", argv=("a", "b"))).job
    assert py.argv == ("/usr/bin/python3", "main.py", "a", "b")
    assert py.source_file == "/box/main.py"
    sh = plan(JobSpec(code="x", language="sh")).job
    assert sh.argv == ("/bin/sh", "main.sh")
    assert sh.workdir == "/box"


def test_mount_order():
    container = plan(JobSpec(code="x")).container
    ops = container.mounts + container.proc_mounts
    steps = [(op.op, op.target) for op in ops]
    index = {step: i for i, step in enumerate(steps)}
    assert steps[0] == ("bind", "/usr")
    assert ops[0].readonly
    assert ops[0].flags & sc.MS_NOSUID
    assert ops[0].flags & sc.MS_NODEV
    # /proc is mounted from inside the new pid namespace, after the rest.
    assert steps[len(container.mounts)] == ("mount", "/proc")
    assert all(op.target.startswith("/proc") for op in container.proc_mounts)
    assert index[("mount", "/dev")] < index[("bind", "/dev/null")]
    assert index[("file", "/dev/null")] < index[("bind", "/dev/null")]
    assert index[("mount", "/dev")] < index[("mount", "/dev/pts")]
    # /proc is masked and made read-only after /dev exists (masks bind /dev/null)
    for path in PROC_MASKED:
        assert index[("mask", path)] > index[("bind", "/dev/null")]
    for path in PROC_READONLY:
        assert index[("rebind", path)] > index[("mount", "/proc")]
    devices = {t for op, t in steps if op == "bind" and t.startswith("/dev/") and t != "/dev/shm"}
    assert devices == {f"/dev/{n}" for n in ("null", "zero", "full", "random", "urandom", "tty")}


def test_container_plan_is_the_pool_key():
    a = plan(JobSpec(code="print(1)", stdin="a")).container
    b = plan(JobSpec(code="other", language="sh", env={"X": "1"})).container
    assert a == b
    assert hash(a) == hash(b)
    assert plan(JobSpec(code="x", limits=Limits(disk="8M"))).container != a


def test_the_job_plan_carries_its_blobs_after_the_tokens():
    full = plan(JobSpec(code="x", capabilities=["CAP_CHOWN"], argv=("a b", "")))
    raw = full.job.to_wire(b"CODE", b"FILES", b"F" * 8)
    head, blobs = raw.split(b"end\0", 1)
    assert blobs == b"F" * 8 + b"CODE" + b"FILES"
    tokens = head.split(b"\0")
    assert tokens[tokens.index(b"seccomp") + 1] == b"8"
    assert tokens[tokens.index(b"code") + 1] == b"4"
    assert [tokens[i + 1] for i, t in enumerate(tokens) if t == b"argv"][-2:] == [b"a b", b""]
