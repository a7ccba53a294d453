"""Cleanup on the failure paths: cancellation, daemons, setup errors, concurrency.

The autouse ``no_leaks`` fixture (tests/conftest.py) checks every test for
left-over mounts, cgroups, processes and descriptors; the tests here add the
paths a plain job does not take, and check the job's own processes directly.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from sandbox import JobSpec, Limits, Runtime, Status
from sandbox.errors import NamespaceError, SetupError, SpecError
from tests.conftest import snapshot
from tests.proc import alive, pids_with

pytestmark = [pytest.mark.root, pytest.mark.overlay]


def _job_cgroup_dirs(rt: Runtime) -> list[Path]:
    """The cgroups of ``rt``'s jobs, in every hierarchy (v1) or the unified one (v2).

    Only this runtime's (named ``<owner>.<n>``): another test session may share the
    parent. The warm pool's ready containers have cgroups too, and emptied ones
    kept for reuse (Runtime.idle_cgroups); they are no job's.
    """
    root, parent = rt.settings.cgroup_root, rt.settings.cgroup_parent
    mine = f"{rt.owner}.*"
    pool = {c.cgroup.name for c in rt.pool_containers()} | set(rt.idle_cgroups())
    found = [*root.glob(f"*/{parent}/{mine}/"), *root.glob(f"{parent}/{mine}/")]
    return [d for d in found if d.name not in pool]


def _job_pids(rt: Runtime) -> set[int]:
    pids: set[int] = set()
    for d in _job_cgroup_dirs(rt):
        for procs in d.rglob("cgroup.procs"):  # the job sits in the cgroup's leaf
            pids.update(int(p) for p in procs.read_text().split())
    return pids


def _host_processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    return pids_with(marker)


async def _wait_for_job_pids(rt: Runtime, count: int) -> set[int]:
    deadline = time.monotonic() + 10
    while len(pids := _job_pids(rt)) < count:
        assert time.monotonic() < deadline, "the job never started"
        await asyncio.sleep(0.02)
    return pids


def _children_of(ppid: int) -> list[str]:
    """``pid state`` of each process whose parent is ``ppid`` (zombies included)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid:
            found.append(f"{entry} {fields[0]}")
    return found


async def test_container_processes_are_reaped_when_execute_returns(runtime):
    """When execute() returns, the container's own processes are gone, not exiting or zombies.

    The launcher forks each container; a child of it still listed after the
    result came back is a process of that job left behind.
    """
    launcher = runtime.launcher_pid
    left = []
    for _ in range(20):
        await runtime.execute(JobSpec(code="pass"))
        await runtime.pool_settled()
        pool = {str(c.pid) for c in runtime.pool_containers()}
        left += [p for p in _children_of(launcher) if p.split()[0] not in pool]
    assert left == []


async def test_cancellation_mid_job_kills_everything(runtime):
    """Cancelling execute() mid-job raises CancelledError; the job's processes are gone."""
    code = "import os, time\nos.fork()\ntime.sleep(60)\n"
    spec = JobSpec(code=code, limits=Limits(wall_time=60, cpu_time=60))
    await runtime.pool_settled()
    task = asyncio.create_task(runtime.execute(spec))
    pids = await _wait_for_job_pids(runtime, 2)
    task.cancel()
    start = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - start < 2
    assert [pid for pid in pids if alive(pid)] == []
    await runtime.pool_settled()  # its cgroup's teardown runs after the caller's answer
    assert _job_cgroup_dirs(runtime) == []


async def test_cancellation_during_setup(runtime):
    """Cancelling right after the request, before the job runs, leaves nothing either."""
    task = asyncio.create_task(runtime.execute(JobSpec(code="import time; time.sleep(60)")))
    await asyncio.sleep(0)  # the request is sent; the container is being built
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _job_cgroup_dirs(runtime) == []
    # The runtime is still usable afterwards.
    result = await runtime.execute(JobSpec(code="print('after')"))
    assert result.stdout == "after\n"


DAEMON = """
import os, sys
r, w = os.pipe()
if os.fork() == 0:
    if os.fork() == 0:
        os.setsid()
        os.write(w, b'x')
        os.execv('/bin/sleep', ['sleep', sys.argv[1]])
    os._exit(0)
os.close(w)
os.read(r, 1)
os.wait()
print('daemon started', flush=True)
"""


async def test_double_forked_daemon_dies_with_the_job(runtime):
    """A daemon that outlives its parent (and holds stdout) is killed; the result is prompt."""
    marker = f"{os.getpid()}.{time.monotonic_ns() % 10**6}"
    spec = JobSpec(code=DAEMON, argv=(marker,), limits=Limits(wall_time=20, cpu_time=20))
    start = time.monotonic()
    result = await runtime.execute(spec)
    assert time.monotonic() - start < 2
    assert result.status is Status.OK, result
    assert result.stdout == "daemon started\n"
    assert _host_processes_with(marker) == []


async def test_setup_failure_raises_and_leaves_nothing(settings):
    """A container that fails during setup (an invalid hostname) raises SetupError, cleanly."""
    bad = settings.model_copy(update={"hostname": "x" * 100})  # sethostname: EINVAL
    async with Runtime(bad) as rt:
        with pytest.raises(NamespaceError) as info:
            await rt.execute(JobSpec(code="print('never')"))
        assert info.value.step == "hostname"
        assert _job_cgroup_dirs(rt) == []


async def test_setup_timeout_raises_and_leaves_nothing(settings):
    """A container not ready within setup_timeout is killed and SetupError raised."""
    slow = settings.model_copy(update={"setup_timeout": 0.000_001})
    async with Runtime(slow) as rt:
        with pytest.raises(SetupError, match="setup"):
            await rt.execute(JobSpec(code="print('never')"))
        assert _job_cgroup_dirs(rt) == []


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(JobSpec(code="", limits=Limits(memory="64G")), id="memory-above-max"),
        pytest.param(JobSpec(code="", capabilities=["CAP_SYS_ADMIN"]), id="cap-not-allowed"),
        pytest.param(JobSpec(code="", network=True), id="network-not-allowed"),
    ],
)
async def test_refused_spec_raises_spec_error_and_leaves_nothing(runtime, spec):
    """A spec beyond what the host allows is refused before anything is built."""
    with pytest.raises(SpecError):
        await runtime.execute(spec)
    assert _job_cgroup_dirs(runtime) == []


async def test_concurrent_jobs_from_one_loop(runtime):
    """Eight jobs at once all get their own correct results, and the loop stays free."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    code = (  # the host's monotonic clock: a job has no time namespace
        "import sys, time\n"
        "began = time.monotonic()\n"
        "time.sleep(0.5)\n"
        "print(sys.argv[1], sys.stdin.read())\n"
        "print(began, time.monotonic(), file=sys.stderr)\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    specs = [
        JobSpec(code=code, argv=(str(i),), stdin=f"in{i}", limits=Limits(wall_time=20))
        for i in range(8)
    ]
    tick_task = asyncio.create_task(ticker())
    start = time.monotonic()
    try:
        results = await asyncio.gather(*(runtime.execute(s) for s in specs))
    finally:
        tick_task.cancel()
    elapsed = time.monotonic() - start
    for i, result in enumerate(results):
        assert result.stdout == f"{i} in{i}\n", result
        assert result.exit_code == i
    # They ran side by side, not one after another: seen from the jobs' own
    # clocks, not from a wall-time bound that a slow machine would break.
    spans = [tuple(map(float, r.stderr.split())) for r in results]
    most_at_once = max(sum(b <= t < e for b, e in spans) for t, _ in spans)
    assert most_at_once >= 2, spans
    assert ticks >= elapsed / 0.01 / 4  # the event loop was not blocked


async def test_many_jobs_leave_no_descriptors(runtime, settings):
    """Twenty jobs in a row, including limit hits, keep our fd count flat.

    The warm pool holds a few descriptors per ready container, and each
    cgroup kept for reuse its own files (join, counters, OOM eventfd); the
    pool is let settle (refill) before counting, and those are spared. The
    cgroups kept are capped, so what they hold is too.
    """
    await runtime.pool_settled()
    before = snapshot(settings, runtime)["fds"]
    for i in range(20):
        code = "print('x' * 10**6)" if i % 2 else "import sys; sys.exit(1)"
        await runtime.execute(JobSpec(code=code, limits=Limits(output=1000)))
    await runtime.pool_settled()
    assert snapshot(settings, runtime)["fds"] == before
    assert len(runtime.idle_cgroups()) <= runtime.idle_cgroup_cap
