"""The precedence of statuses (sandbox/verdict.py), every combination of its inputs;
and what makes a memory verdict prompt: the cgroup side on fixture trees, the
supervisor's watch (sandbox/runtime/runner.py) against a fake kernel."""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import os
import select
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from sandbox.errors import CgroupError
from sandbox.kernel.cgroups import Cgroup
from sandbox.kernel.cgroups.v1 import CgroupV1
from sandbox.kernel.cgroups.v2 import SetupV2
from sandbox.result import Status
from sandbox.runtime import watch as watches
from sandbox.verdict import CPU_TIME, MEMORY, OUTPUT, WALL_TIME, decide_status, time_limit_hit

CPU_LIMIT = 2.0
KILL_REASONS = (None, MEMORY, OUTPUT, WALL_TIME, CPU_TIME, "cleanup")
OOM_KILLS = (0, 1, 5)
EXIT_CODES = (0, 1, 137, None)  # None: ended by a signal
CPU_TIMES = (0.0, CPU_LIMIT - 0.001, CPU_LIMIT, CPU_LIMIT + 1.5)

# The docstring's order, stated once more in the words: first match wins.
RULES: list[tuple[str, Callable[[dict[str, Any]], bool], Status]] = [
    ("an operator asked for the kill", lambda c: c["operator_kill"], Status.KILLED),
    (
        "the memory cgroup killed a process (or ran out and we ended the job), "
        "and the job did not exit normally afterwards",
        lambda c: (c["oom_kills"] > 0 or c["kill_reason"] == MEMORY) and c["exit_code"] != 0,
        Status.MEMORY_LIMIT,
    ),
    ("we killed it for its output", lambda c: c["kill_reason"] == OUTPUT, Status.OUTPUT_LIMIT),
    (
        "we killed it at a time limit",
        lambda c: c["kill_reason"] in (WALL_TIME, CPU_TIME),
        Status.TIMEOUT,
    ),
    ("its CPU counter reached the limit", lambda c: c["cpu_time"] >= CPU_LIMIT, Status.TIMEOUT),
    ("it exited with 0", lambda c: c["exit_code"] == 0, Status.OK),
    ("anything else", lambda c: True, Status.RUNTIME_ERROR),
]

COMBINATIONS = [
    {
        "operator_kill": operator_kill,
        "kill_reason": kill_reason,
        "oom_kills": oom_kills,
        "exit_code": exit_code,
        "cpu_time": cpu_time,
    }
    for operator_kill, kill_reason, oom_kills, exit_code, cpu_time in itertools.product(
        (False, True), KILL_REASONS, OOM_KILLS, EXIT_CODES, CPU_TIMES
    )
]


def _expected(case: dict[str, Any]) -> Status:
    return next(status for _, applies, status in RULES if applies(case))


def _id(case: dict[str, Any]) -> str:
    return "-".join(f"{key}={value}" for key, value in case.items())


@pytest.mark.parametrize("case", COMBINATIONS, ids=[_id(c) for c in COMBINATIONS])
def test_every_combination_follows_the_precedence(case: dict[str, Any]):
    assert decide_status(**case, cpu_time_limit=CPU_LIMIT) is _expected(case)


def test_every_rule_decides_some_combination():
    """No rule of the table is shadowed by the ones before it."""
    deciding = {
        next(i for i, (_, applies, _) in enumerate(RULES) if applies(c)) for c in COMBINATIONS
    }
    assert deciding == set(range(len(RULES)))


@pytest.mark.parametrize(
    ("story", "inputs", "status"),
    [
        # The issue: thrashing at the cap until the time limit, one process OOM-killed.
        (
            "oom kill, then the wall limit",
            {"kill_reason": WALL_TIME, "oom_kills": 1, "exit_code": None},
            Status.MEMORY_LIMIT,
        ),
        (
            "oom kill, then the CPU limit",
            {"kill_reason": CPU_TIME, "oom_kills": 1, "exit_code": None, "cpu_time": 3.0},
            Status.MEMORY_LIMIT,
        ),
        (
            "oom kill, exited 0 by itself, CPU over the limit",
            {"oom_kills": 1, "exit_code": 0, "cpu_time": 3.0},
            Status.TIMEOUT,
        ),
        ("the main process OOM-killed", {"oom_kills": 1, "exit_code": None}, Status.MEMORY_LIMIT),
        (
            "a child OOM-killed, the parent exits 1",
            {"oom_kills": 1, "exit_code": 1},
            Status.MEMORY_LIMIT,
        ),
        ("a child OOM-killed, the parent exits 0", {"oom_kills": 1, "exit_code": 0}, Status.OK),
        (
            "v1: the supervisor ended it at the cap",
            {"kill_reason": MEMORY, "oom_kills": 1, "exit_code": None},
            Status.MEMORY_LIMIT,
        ),
        (
            "v1: ended at the cap before the kernel counted a kill",
            {"kill_reason": MEMORY, "exit_code": None},
            Status.MEMORY_LIMIT,
        ),
        (
            "oom kill, then an output flood",
            {"kill_reason": OUTPUT, "oom_kills": 2, "exit_code": None},
            Status.MEMORY_LIMIT,
        ),
        ("an output flood", {"kill_reason": OUTPUT, "exit_code": None}, Status.OUTPUT_LIMIT),
        (
            "an output flood that exited 0 as it was killed",
            {"kill_reason": OUTPUT, "exit_code": 0},
            Status.OUTPUT_LIMIT,
        ),
        (
            "a sleeper at the wall limit",
            {"kill_reason": WALL_TIME, "exit_code": None},
            Status.TIMEOUT,
        ),
        (
            "a spinner that exited as it reached the CPU limit",
            {"exit_code": 0, "cpu_time": CPU_LIMIT},
            Status.TIMEOUT,
        ),
        (
            "an operator kill of a thrashing job",
            {"operator_kill": True, "oom_kills": 3, "exit_code": None},
            Status.KILLED,
        ),
        ("a segfault", {"exit_code": None}, Status.RUNTIME_ERROR),
        ("exit 3", {"exit_code": 3}, Status.RUNTIME_ERROR),
        ("ended in cleanup", {"kill_reason": "cleanup", "exit_code": None}, Status.RUNTIME_ERROR),
        ("hello world", {"exit_code": 0}, Status.OK),
    ],
)
def test_stories(story: str, inputs: dict[str, Any], status: Status):
    case = {"operator_kill": False, "kill_reason": None, "oom_kills": 0, "cpu_time": 0.1} | inputs
    assert decide_status(**case, cpu_time_limit=CPU_LIMIT) is status, story


@pytest.mark.parametrize(
    ("kill_reason", "cpu_time", "hit"),
    [
        (WALL_TIME, 0.0, True),
        (CPU_TIME, 0.0, True),
        (None, CPU_LIMIT, True),
        (MEMORY, CPU_LIMIT + 1, True),
        (None, CPU_LIMIT - 0.001, False),
        (MEMORY, 0.0, False),
        (OUTPUT, 0.0, False),
    ],
)
def test_time_limit_hit(kill_reason: str | None, cpu_time: float, hit: bool):
    assert (
        time_limit_hit(kill_reason=kill_reason, cpu_time=cpu_time, cpu_time_limit=CPU_LIMIT) is hit
    )


# -- the mechanism: the whole job ends at its first OOM kill ---------------------------------


def _v1_memory(tmp_path: Path) -> CgroupV1:
    mem = tmp_path / "memory" / "sandbox" / "a.1"
    (mem / "job").mkdir(parents=True)
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    (mem / "cgroup.event_control").write_text("")
    return CgroupV1("a.1", {"memory": mem})


def _fds() -> dict[int, str]:
    """Our open descriptors and what they are, less the one that lists them."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the listing's own, closed by now
            continue
    return fds


def test_v1_registers_one_eventfd_per_cgroup_drained_for_each_job(tmp_path: Path):
    cg = _v1_memory(tmp_path)
    before = _fds()
    efd = cg.watch_oom()
    # One new descriptor, an eventfd: the oom_control one is closed.
    assert {fd: target for fd, target in _fds().items() if fd not in before} == {
        efd: "anon_inode:[eventfd]"
    }
    assert not os.get_blocking(efd)
    assert fcntl.fcntl(efd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert efd in cg.held_fds()
    # "<eventfd> <memory.oom_control>", written where the limit is.
    registered, target = (tmp_path / "memory/sandbox/a.1/cgroup.event_control").read_text().split()
    assert registered == str(efd)
    assert int(target) != efd
    # The last job's OOM (or one of a pool container's) does not reach the next job.
    os.eventfd_write(efd, 1)
    assert cg.watch_oom() == efd
    assert not _readable(efd)
    assert (tmp_path / "memory/sandbox/a.1/cgroup.event_control").read_text() == (
        f"{registered} {target}"
    )  # registered once
    with pytest.raises(OSError, match="not empty"):  # a plain directory: rmdir fails after
        cg.destroy()  # closing it, which unregisters the kernel's event
    assert _fds() == before


def test_v1_refused_registration_leaves_no_descriptor(tmp_path: Path):
    cg = _v1_memory(tmp_path)
    (tmp_path / "memory/sandbox/a.1/cgroup.event_control").unlink()  # e.g. PREEMPT_RT: refused
    before = _fds()
    with pytest.raises(CgroupError, match=r"cgroup\.event_control"):
        cg.watch_oom()
    (tmp_path / "memory/sandbox/a.1/memory.oom_control").unlink()
    with pytest.raises(CgroupError, match=r"memory\.oom_control"):
        cg.watch_oom()
    assert _fds() == before


@pytest.mark.parametrize("has_oom_group", [True, False], ids=["linux-4.19+", "older"])
def test_v2_job_cgroup_is_one_oom_workload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has_oom_group: bool
):
    """memory.oom.group = 1 on the job's cgroup, written once at its creation; no watch."""
    parent = tmp_path / "sandbox"
    parent.mkdir()
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:  # cgroupfs makes the files
        real_mkdir(self, *args, **kwargs)
        if has_oom_group and self.parent == parent:
            (self / "memory.oom.group").write_text("0\n")

    monkeypatch.setattr(Path, "mkdir", mkdir)
    cg = SetupV2(tmp_path, "sandbox").create("a.1")
    monkeypatch.undo()
    oom_group = parent / "a.1" / "memory.oom.group"
    if has_oom_group:
        assert oom_group.read_text() == "1"
    else:
        assert not oom_group.exists()
    assert not (parent / "a.1" / "job" / "memory.oom.group").exists()
    assert cg.watch_oom() == -1


class FakeCgroup:
    """The two methods the supervisor's watch uses; the test plays the kernel."""

    def __init__(self, refuse: bool = False) -> None:
        self.kills = 0
        self.refuse = refuse
        self.efd = -1

    def watch_oom(self) -> int:
        if self.refuse:
            raise CgroupError("cannot write to cgroup.event_control: Operation not supported")
        self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        return self.efd

    def oom_kills(self) -> int:
        return self.kills

    def __del__(self) -> None:  # the cgroup's destroy()
        if self.efd >= 0:
            os.close(self.efd)


async def _watch(cgroup: FakeCgroup) -> tuple[watches.OomWatch, list[str], asyncio.Future[None]]:
    killed: list[str] = []
    exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    watch = watches.OomWatch(cast(Cgroup, cgroup), lambda: killed.append("memory"), exited)
    return watch, killed, exited


async def _settle(seconds: float = 0.03) -> None:
    """Let the watch's callbacks run (for what must not happen)."""
    await asyncio.sleep(seconds)


async def _until(happened: Callable[[], bool]) -> None:
    """Wait for what must happen, for 5 s at most."""
    for _ in range(5000):
        if happened():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("it did not happen")


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


async def test_supervisor_kills_the_job_once_the_kernel_has_counted_its_kill(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(watches, "_OOM_KILL_WAIT", 60.0)
    cg = FakeCgroup()
    watch, killed, _ = await _watch(cg)
    try:
        os.eventfd_write(cg.efd, 1)  # the notification, before the kernel's kill
        await _until(lambda: not _readable(cg.efd))
        await _settle()
        assert killed == []  # it waits for the kernel to kill (and count) its victim
        cg.kills = 1
        await _until(lambda: killed == ["memory"])
    finally:
        watch.close()
    os.fstat(cg.efd)  # left open: the cgroup's, for its next job
    os.eventfd_write(cg.efd, 1)
    await _settle()
    assert killed == ["memory"]  # no longer watched


async def test_an_oom_without_a_kill_does_not_end_the_job(monkeypatch: pytest.MonkeyPatch):
    """Memory freed as the kernel looked (a process exiting): the job goes on, watched."""
    monkeypatch.setattr(watches, "_OOM_KILL_WAIT", 0.01)
    cg = FakeCgroup()
    watch, killed, _ = await _watch(cg)
    try:
        os.eventfd_write(cg.efd, 1)
        await _until(lambda: not _readable(cg.efd))  # drained: a later one is a new one
        await _settle()  # past the wait for a kill
        assert killed == []
        cg.kills = 1
        os.eventfd_write(cg.efd, 1)
        await _until(lambda: killed == ["memory"])
    finally:
        watch.close()


async def test_after_the_main_process_exits_nothing_is_killed():
    cg = FakeCgroup()
    watch, killed, exited = await _watch(cg)
    try:
        exited.set_result(None)  # e.g. the main process was the kernel's victim
        cg.kills = 1
        os.eventfd_write(cg.efd, 1)
        await _settle()
        assert killed == []
    finally:
        watch.close()


async def test_refused_notification_polls_the_counter_until_closed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(watches, "_OOM_FALLBACK_POLL", 0.002)
    monkeypatch.setattr(watches, "_oom_unnotified", False)
    first, killed, _ = await _watch(FakeCgroup(refuse=True))
    await _settle()
    assert killed == []
    first.close()
    cg = FakeCgroup(refuse=True)
    second, killed, _ = await _watch(cg)
    cg.kills = 1
    await _until(lambda: killed == ["memory"])
    second.close()
    assert caplog.text.count("polling OOM-kill counters") == 1  # once, not per job
    closed = FakeCgroup(refuse=True)
    third, killed, _ = await _watch(closed)
    third.close()  # its timer is cancelled: nothing polls a recycled cgroup
    closed.kills = 1
    await _settle()
    assert killed == []


async def test_v2_watch_watches_nothing():
    class KernelKills(FakeCgroup):
        def watch_oom(self) -> int:
            return -1

    watch, killed, _ = await _watch(KernelKills())
    watch.close()
    assert killed == []


def test_every_status_has_one_outcome():
    """Adding a Status without its outcome (judge verdict, message) fails here."""
    from sandbox.judging import Verdict
    from sandbox.verdict import OUTCOMES

    assert set(OUTCOMES) == set(Status)
    for status, outcome in OUTCOMES.items():
        assert outcome.verdict is None or Verdict(outcome.verdict), status
    assert OUTCOMES[Status.OK].verdict is None  # its output is judged


def test_an_outcome_says_the_results_figures():
    from sandbox.result import JobResult
    from sandbox.verdict import OUTCOMES

    result = JobResult(status=Status.TIMEOUT, wall_time=2.5, cpu_time=1.25)
    assert OUTCOMES[Status.TIMEOUT].describe(result) == (
        "time limit exceeded (wall 2.50 s, cpu 1.25 s)"
    )
    assert OUTCOMES[Status.INTERNAL_ERROR].describe(JobResult(status=Status.INTERNAL_ERROR)) == ""
    assert OUTCOMES[Status.OK].describe(JobResult(status=Status.OK)) == ""
