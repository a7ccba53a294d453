"""The jobs running on this host, as files: what `sandbox ps`, `exec` and `kill` read.

A runtime writes ``<run_dir>/jobs/<job>.json`` once a job has run for 50 ms
(``runner.PUBLISH_AFTER``: shorter jobs never show) and removes it when the
job ends; the job's id is ``<owner>-<n>`` (its cgroup, named in
the record, is recycled for later jobs), so a record whose owner's lock is
free belongs to a dead runtime and is stale (`sandbox gc` removes it). An
operator's kill leaves ``<job>.kill`` beside the record before it kills the
job's cgroup: the runtime then reports ``killed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.paths import JOBS, write_atomically

__all__ = [
    "JobRecord",
    "is_running",
    "jobs_dir",
    "kill_requested",
    "read_all",
    "remove",
    "request_kill",
    "write",
]


@dataclass(frozen=True)
class JobRecord:
    """One running job, as its runtime describes it."""

    id: str
    cgroup: str  # the cgroup it runs in, under our parent
    owner: str
    task_id: str | None
    image: str
    language: str
    started: float  # Unix time of its start
    init_pid: int | None  # on the host
    uid: int  # inside its user namespace
    gid: int
    capabilities: int
    last_cap: int
    rlimits: tuple[tuple[int, int, int], ...]
    seccomp_profile: str | None  # None: no filter (SANDBOX_SECCOMP=false)
    env: tuple[str, ...]
    workdir: str
    cpu_base_ns: int  # the cgroup's CPU counter when the job started
    host_uid_base: int | None = None  # host uid of root inside (None: no user namespace)
    limits: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: str) -> JobRecord:
        data = json.loads(raw)
        data["rlimits"] = tuple(tuple(r) for r in data["rlimits"])
        data["env"] = tuple(data["env"])
        return cls(**data)


def jobs_dir(run_dir: Path) -> Path:
    return run_dir / JOBS


def write(run_dir: Path, record: JobRecord) -> None:
    """Publish a record (atomically: a reader sees all of it or nothing)."""
    path = jobs_dir(run_dir) / f"{record.id}.json"
    text = json.dumps(record.__dict__)  # fields are JSON values; asdict deep-copies
    # Root only: a record holds the job's environment, which its submitter chose.
    try:
        write_atomically(path, text, 0o600)
    except FileNotFoundError:  # the first record
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text, 0o600)


def remove(run_dir: Path, job_id: str) -> None:
    for suffix in (".json", ".kill"):
        with contextlib.suppress(FileNotFoundError):
            (jobs_dir(run_dir) / f"{job_id}{suffix}").unlink()


def read_all(run_dir: Path) -> list[JobRecord]:
    """Every record, oldest first (stale ones included: check the owner)."""
    records = []
    directory = jobs_dir(run_dir)
    if not directory.is_dir():
        return []
    for path in directory.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            records.append(JobRecord.from_json(path.read_text()))
    return sorted(records, key=lambda r: r.started)


def request_kill(run_dir: Path, job_id: str) -> None:
    """Mark the job as killed by an operator (before killing it)."""
    path = jobs_dir(run_dir) / f"{job_id}.kill"
    path.write_text(json.dumps({"at": time.time(), "by": os.getuid()}))


def is_running(run_dir: Path, job_id: str) -> bool:
    """True while the job's record is published (its runtime removes it at the end)."""
    return (jobs_dir(run_dir) / f"{job_id}.json").exists()


def kill_requested(run_dir: Path, job_id: str) -> bool:
    return (jobs_dir(run_dir) / f"{job_id}.kill").exists()
