"""Reclaiming what a crashed runtime left behind, and nothing else.

A runtime killed with SIGKILL leaves no process (its launcher sees the control
socket close and kills its containers, which die with their parents) and no
mount (every job's mounts live in the job's own mount namespace). What can
remain: empty job cgroups, its owner lock file, its pool status file, the
records of its running jobs (sandbox/jobs.py), and an image import's staging
directory.

Ownership is precise, never a broad name match: each runtime holds an
exclusive ``flock`` on ``<run_dir>/owners/<owner>.lock`` for its whole life
and names its cgroups ``<parent>/<owner>.<n>``. A cgroup whose owner's lock
can be taken belongs to a dead runtime; a live runtime's cgroups are never
touched, so gc can run beside working supervisors.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import jobs
from sandbox.cgroups import CgroupSetup, detect_setup
from sandbox.errors import SandboxError
from sandbox.image import ImageStore
from sandbox.settings import Settings

__all__ = ["GcReport", "claim_owner", "collect", "owner_alive"]

log = logging.getLogger("sandbox.gc")


@dataclass
class GcReport:
    """What one collection removed."""

    cgroups: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    pool_files: list[str] = field(default_factory=list)
    job_records: list[str] = field(default_factory=list)
    image_dirs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True if nothing was found to remove."""
        return not (
            self.cgroups or self.owners or self.pool_files or self.job_records or self.image_dirs
        )


def claim_owner(run_dir: Path, owner: str) -> int:
    """Create and lock our owner file; returns its descriptor (keep it open).

    Retries if a collector removed the file between our open and our lock.
    """
    path = run_dir / "owners" / f"{owner}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def owner_alive(run_dir: Path, owner: str, *, remove_stale: bool = True) -> bool:
    """True if the runtime ``owner`` holds its lock; a stale lock file is removed."""
    path = run_dir / "owners" / f"{owner}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        if remove_stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # while we hold its lock: no owner can be claiming it
        return False
    finally:
        os.close(fd)


def collect(settings: Settings, cgroups: CgroupSetup | None = None) -> GcReport:
    """Remove everything of ours that belongs to dead runtimes.

    Args:
        settings: where our state lives.
        cgroups: the host's cgroup setup (detected if not given).

    Returns:
        What was removed.
    """
    report = GcReport()
    run_dir = settings.run_dir
    if cgroups is None:
        cgroups = detect_setup(settings.cgroup_root, settings.cgroup_parent)
    alive: dict[str, bool] = {}

    def is_alive(owner: str) -> bool:
        if owner not in alive:
            alive[owner] = owner_alive(run_dir, owner)
            if not alive[owner]:
                report.owners.append(owner)
        return alive[owner]

    for name in cgroups.children():
        if is_alive(name.rsplit(".", 1)[0]):
            continue
        cgroup = cgroups.open(name)
        try:
            for _ in range(100):
                if cgroup.is_empty():
                    break
                cgroup.kill()
                time.sleep(0.01)
            cgroup.destroy()
            report.cgroups.append(name)
        except (OSError, SandboxError) as exc:
            report.errors.append(f"cgroup {name}: {exc}")
    for directory, suffix in ((run_dir / "owners", ".lock"), (run_dir / "pools", ".json")):
        if not directory.is_dir():
            continue
        for path in directory.glob(f"*{suffix}"):
            owner = path.name[: -len(suffix)]
            if is_alive(owner) or suffix == ".lock":
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                report.pool_files.append(path.name)
    for record in jobs.read_all(run_dir):
        if not is_alive(record.owner):
            jobs.remove(run_dir, record.id)
            report.job_records.append(record.id)
    report.image_dirs = ImageStore(settings.state_dir).collect_garbage()
    report.owners = sorted(set(report.owners))
    if not report.empty:
        log.warning(
            "reclaimed from dead runtimes: %d cgroup(s), %d owner(s), %d image dir(s)",
            len(report.cgroups),
            len(report.owners),
            len(report.image_dirs),
        )
    for error in report.errors:
        log.error("cannot reclaim %s", error)
    return report
