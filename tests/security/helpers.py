"""Shared pieces of the attack suite: running a hostile job, and checking the host after.

Every attack test runs one hostile program as a job, asserts that the attack
failed and that the result says so, then that the host is still healthy: the
supervisor's launcher is alive, and a normal job still runs, promptly.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

from sandbox import JobResult, JobSpec, Limits, Runtime, Status
from tests.conftest import TEST_SETTINGS
from tests.proc import alive, descendants, pids_with

__all__ = [
    "JOB_UID",
    "SPIN",
    "MiB",
    "alive",
    "assert_host_healthy",
    "host_pids_with",
    "job_uid_descendants",
    "limits",
    "marker",
    "probe",
    "run",
]

MiB = 2**20
JOB_UID = TEST_SETTINGS.job_uid  # as the job sees itself (on the host: its range's)

# argv[1] processes, each spinning for one second of wall time, then exiting.
SPIN = """
import os, sys, time
n = int(sys.argv[1])
for _ in range(n - 1):
    if os.fork() == 0:
        break
end = time.monotonic() + 1.0
while time.monotonic() < end:
    pass
"""

# Bounded limits, so that the whole suite stays short on a 2-core host.
DEFAULT_LIMITS: dict[str, Any] = {"wall_time": 5, "cpu_time": 5, "memory": "128M", "pids": 32}


def limits(**overrides: Any) -> Limits:
    """The suite's default limits with ``overrides``."""
    return Limits(**{**DEFAULT_LIMITS, **overrides})


async def run(runtime: Runtime, code: str, **spec: Any) -> tuple[JobResult, float]:
    """Run ``code`` as a job; return its result and the seconds ``execute`` took."""
    if "limits" not in spec:
        spec["limits"] = limits()
    elif isinstance(spec["limits"], dict):
        spec["limits"] = limits(**spec["limits"])
    start = time.monotonic()
    result = await runtime.execute(JobSpec(code=code, **spec))
    return result, time.monotonic() - start


async def probe(runtime: Runtime, code: str, **spec: Any) -> Any:
    """Run ``code``, which must succeed and print one JSON document; return it."""
    result, _ = await run(runtime, code, **spec)
    assert result.status is Status.OK, result
    return json.loads(result.stdout)


async def assert_host_healthy(runtime: Runtime) -> None:
    """The launcher lives and a normal job still runs, and quickly."""
    assert runtime.launcher_pid is not None
    assert alive(runtime.launcher_pid), "the launcher died"
    start = time.monotonic()
    result = await runtime.execute(JobSpec(code="print('alive')", limits=limits()))
    elapsed = time.monotonic() - start
    assert result.status is Status.OK, result
    assert result.stdout == "alive\n"
    assert elapsed < 3, f"a normal job took {elapsed:.2f} s after the attack"


def marker() -> str:
    """A token unique to one test, to find its processes on the host by command line."""
    return f"sandbox-attack-{secrets.token_hex(6)}"


def host_pids_with(token: str) -> list[int]:
    """Live host processes whose command line contains ``token``."""
    return pids_with(token)


def _uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def job_uid_descendants(root_pid: int | None = None) -> list[int]:
    """Our live descendants running as the job user, in a pid namespace not ours.

    Our warm pool's containers run as root until a job is handed to them, so
    after a job has returned, any such process is a survivor of a job.
    """
    root_pid = os.getpid() if root_pid is None else root_pid
    ours = os.readlink("/proc/self/ns/pid")
    found = []
    for child in sorted(descendants(root_pid)):
        try:
            foreign = os.readlink(f"/proc/{child}/ns/pid") != ours
        except OSError:
            continue
        uid = _uid(child)
        job_user = uid is not None and TEST_SETTINGS.inside_id(uid) == JOB_UID
        if foreign and job_user and alive(child):
            found.append(child)
    return found
