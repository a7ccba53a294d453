"""The warm pool: ready containers, each used by exactly one job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import JobSpec, Runtime, Status
from sandbox.settings import Settings

pytestmark = [pytest.mark.root, pytest.mark.overlay]

SANDBOX = str(Path(sys.executable).with_name("sandbox"))


async def test_jobs_hit_the_pool(runtime):
    """After the first job, jobs take ready containers (hits), and the pool refills."""
    await runtime.execute(JobSpec(code="pass"))
    await runtime.pool_settled()
    before = runtime.pool_stats()
    assert before is not None
    for _ in range(3):
        result = await runtime.execute(JobSpec(code="print('hi')"))
        assert result.stdout == "hi\n"
        await runtime.pool_settled()  # back to back, a refill may not be ready: a miss
    after = runtime.pool_stats()
    assert after is not None
    assert after.hits == before.hits + 3
    assert after.misses == before.misses
    assert after.ready >= runtime.pool_size
    assert after.build_ms_avg > 0


LEAVE_TRACES = """
import os, subprocess
open('/tmp/secret', 'w').write('job one')
open('/dev/shm/secret', 'w').write('job one')
open('/box/secret', 'w').write('job one')
subprocess.Popen(['sleep', '30'], start_new_session=True)
print(os.getpid())
"""

LOOK_FOR_TRACES = """
import os
for path in ('/tmp/secret', '/dev/shm/secret', '/box/secret'):
    print(path, os.path.exists(path))
print('procs', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
print('env', 'LEAK' in os.environ)
"""


async def test_consecutive_jobs_see_nothing_of_each_other(runtime):
    """A job's files, /tmp, /dev/shm, processes and environment are gone for the next job."""
    first = await runtime.execute(JobSpec(code=LEAVE_TRACES, env={"LEAK": "1"}))
    assert first.status is Status.OK, first
    second = await runtime.execute(JobSpec(code=LOOK_FOR_TRACES))
    lines = second.stdout.splitlines()
    assert lines[:3] == ["/tmp/secret False", "/dev/shm/secret False", "/box/secret False"]
    procs = json.loads(lines[3].split(" ", 1)[1])
    assert procs == [1, 2]  # its init and itself: no sleeper of the first job
    assert lines[4] == "env False"


async def test_dead_ready_container_is_never_handed_out(runtime):
    """A ready container killed while waiting is skipped; the job still runs."""
    await runtime.execute(JobSpec(code="pass"))
    await runtime.pool_settled()
    victims = runtime.pool_containers()
    assert victims
    for container in victims:
        signal.pidfd_send_signal(container.init_pidfd, signal.SIGKILL)
    for container in victims:
        await container.done
    result = await runtime.execute(JobSpec(code="print('fine')"))
    assert result.stdout == "fine\n"


async def test_drain_on_close_leaves_nothing(settings):
    """Closing a runtime dismisses its ready containers: no process or cgroup remains."""
    rt = Runtime(settings)
    rt.open()
    await rt.execute(JobSpec(code="pass"))
    await rt.pool_settled()
    pids = [c.pid for c in rt.pool_containers()]
    names = [c.cgroup.name for c in rt.pool_containers()]
    assert len(pids) == rt.pool_size
    await rt.aclose()
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)
    root, parent = settings.cgroup_root, settings.cgroup_parent
    for name in names:
        assert not list(root.glob(f"*/{parent}/{name}")) + list(root.glob(f"{parent}/{name}"))


async def test_pool_disabled_still_works(settings):
    """pool_size=0: every job builds its container (a cold start)."""
    async with Runtime(settings, pool_size=0) as rt:
        result = await rt.execute(JobSpec(code="print(1)"))
        assert result.stdout == "1\n"
        assert rt.pool_stats() is None
        assert rt.pool_containers() == []


async def test_pool_status_command(runtime):
    """`sandbox pool status --json` shows this runtime's counters."""
    await runtime.execute(JobSpec(code="pass"))
    runtime._stats_written = 0.0  # publish now, not at most once a second
    await runtime.execute(JobSpec(code="pass"))
    env = {**os.environ, "SANDBOX_RUN_DIR": str(runtime.settings.run_dir)}
    out = subprocess.run(
        [SANDBOX, "pool", "status", "--json"], capture_output=True, text=True, env=env, check=True
    )
    rows = {row["owner"]: row for row in json.loads(out.stdout)}
    assert rows[runtime.owner]["hits"] >= 1
    assert rows[runtime.owner]["size"] == runtime.pool_size


def test_gc_command_reports_nothing_on_a_clean_host(settings: Settings):
    """`sandbox gc` beside a live runtime touches nothing of it."""
    env = {
        **os.environ,
        "SANDBOX_RUN_DIR": str(settings.run_dir),
        "SANDBOX_CGROUP_PARENT": settings.cgroup_parent,
    }
    out = subprocess.run(
        [SANDBOX, "gc", "--json"], capture_output=True, text=True, env=env, check=True
    )
    report = json.loads(out.stdout)
    assert report["errors"] == []


async def test_pool_size_per_image(settings):
    """SANDBOX_POOL_SIZES sets the pool per image: here none for busybox, 1 for host."""
    tuned = settings.model_copy(update={"pool_sizes": {"busybox": 0}, "pool_size": 1})
    async with Runtime(tuned) as rt:
        for _ in range(2):
            await rt.execute(JobSpec(code="echo hi", language="sh", image="busybox"))
            await rt.execute(JobSpec(code="print('hi')"))
            await rt.pool_settled()
        stats = rt.pool_stats()
        assert stats is not None
        assert stats.ready == 1  # one host container, no busybox one
        assert (stats.hits, stats.misses) == (1, 3)  # host hit once; busybox always cold


async def test_misses_grow_the_pool_and_quiet_shrinks_it(settings, monkeypatch):
    """Each miss adds a container to its plan's pool, up to pool_max; a quiet spell gives back."""
    from sandbox.runtime import pool

    true = JobSpec(code="exec true\n", language="sh")
    async with Runtime(settings, pool_size=1) as rt:
        await rt.execute(true)  # the first: a miss, and the pool is made
        await rt.pool_settled()
        burst = rt.pool_max + 1
        results = await asyncio.gather(*(rt.execute(true) for _ in range(burst)))
        assert all(r.status is Status.OK for r in results)
        await rt.pool_settled()
        grown = rt.pool_stats()
        assert grown is not None
        assert grown.target == rt.pool_max, grown  # bounded
        assert grown.ready == rt.pool_max, grown
        hits = grown.hits
        await asyncio.gather(*(rt.execute(true) for _ in range(rt.pool_max)))
        await rt.pool_settled()
        after = rt.pool_stats()
        assert after is not None
        assert after.hits == hits + rt.pool_max, after  # the same burst again: all ready
        monkeypatch.setattr(pool, "SHRINK_AFTER", 0.0)
        await rt.execute(true)
        await rt.pool_settled()
        quiet = rt.pool_stats()
        assert quiet is not None
        assert quiet.target == rt.pool_max - 1, quiet
