"""`sandbox ps`, `exec` and `kill` on a real running job of this process's runtime."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import JobResult, JobSpec, Status

pytestmark = [pytest.mark.root, pytest.mark.overlay]

SANDBOX = str(Path(sys.executable).with_name("sandbox"))
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"


def _cli(settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SANDBOX_RUN_DIR": str(settings.run_dir),
        "SANDBOX_CGROUP_PARENT": settings.cgroup_parent,
    }
    return subprocess.run(
        [SANDBOX, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


async def _ps(settings) -> list[dict[str, Any]]:
    out = await asyncio.to_thread(_cli, settings, "ps", "--json")
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


@pytest.fixture
async def running(
    runtime, settings
) -> AsyncIterator[tuple[asyncio.Task[JobResult], dict[str, Any]]]:
    """A job that sleeps, started with a task id, and its `sandbox ps` row."""
    spec = JobSpec(code=SLEEPER, limits={"wall_time": 30, "memory": "64M"})
    task = asyncio.create_task(runtime.execute(spec, task_id="task-1234"))
    for _ in range(200):
        rows = [r for r in await _ps(settings) if r["task_id"] == "task-1234"]
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows, "the job never showed in sandbox ps"
    yield task, rows[0]
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_ps_shows_the_job(running, settings):
    _, row = running
    assert row["language"] == "python"
    assert row["image"] == "host"
    assert row["init_pid"] > 1
    assert settings.inside_id(row["host_uid"]) == settings.job_uid
    assert row["limits"]["memory"] == 64 * 2**20
    assert row["memory"] > 0
    assert 0 <= row["age"] < 30


EXEC_PROBE = """
import json, os
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
procs = {}
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            procs[pid] = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')[0].decode()
        except OSError:
            pass
print(json.dumps({
    'uid': os.getuid(),
    'cwd': os.getcwd(),
    'hostname': os.uname().nodename,
    'cgroup': open('/proc/self/cgroup').read().split(),
    'caps': status['CapEff'].strip(),
    'seccomp': status['Seccomp'].strip(),
    'nnp': status['NoNewPrivs'].strip(),
    'procs': sorted(procs.values()),
}))
"""


async def test_exec_runs_inside_the_job(running, settings):
    _, row = running
    out = await asyncio.to_thread(
        _cli, settings, "exec", row["job"], "--", "/usr/bin/python3", "-c", EXEC_PROBE
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["uid"] == 65534
    assert seen["cwd"] == "/box"
    assert seen["hostname"] == "sandbox"
    assert all(line.endswith(":/") for line in seen["cgroup"])  # the job's cgroup namespace
    assert seen["caps"] == "0000000000000000"
    assert seen["seccomp"] == "2"
    assert seen["nnp"] == "1"
    assert "sandbox-init" in seen["procs"]  # the job's pid namespace: its init, its sleeper
    assert "/usr/bin/python3" in seen["procs"]


async def test_ps_inside_shows_the_jobs_processes(running, settings):
    """The walk-through's nsenter step: `ps` in the job's pid namespace."""
    _, row = running
    out = await asyncio.to_thread(_cli, settings, "exec", row["job"], "ps", "-e", "-o", "pid,comm")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")[1:]
    comms = {line.split()[1] for line in lines if line.strip()}
    assert {"sandbox-init", "python3", "ps"} <= comms, out.stdout
    assert "1 sandbox-init" in " ".join(line.strip() for line in lines)


async def test_exec_exit_status_and_a_missing_command(running, settings):
    _, row = running
    out = await asyncio.to_thread(_cli, settings, "exec", row["job"], "/bin/sh", "-c", "exit 7")
    assert out.returncode == 7
    out = await asyncio.to_thread(_cli, settings, "exec", row["job"], "--", "no-such-tool")
    assert out.returncode == 127
    assert "not found in the container" in out.stderr


async def test_kill_ends_the_job_with_killed(running, settings):
    task, row = running
    out = await asyncio.to_thread(_cli, settings, "kill", "task-1234")
    assert out.returncode == 0, out.stderr
    result = await asyncio.wait_for(task, 10)
    assert result.status is Status.KILLED
    assert result.stdout == "up\n"
    assert [r for r in await _ps(settings) if r["job"] == row["job"]] == []


async def test_unknown_or_finished_jobs_are_clear_errors(runtime, settings):
    for command in (["exec", "nope", "--", "true"], ["kill", "nope"]):
        out = await asyncio.to_thread(_cli, settings, *command)
        assert out.returncode == 1
        assert "no running job 'nope'" in out.stderr
    result = await runtime.execute(JobSpec(code="print(1)"), task_id="task-done")
    assert result.status is Status.OK
    out = await asyncio.to_thread(_cli, settings, "kill", "task-done")
    assert out.returncode == 1
