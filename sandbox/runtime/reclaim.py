"""Reclaiming what a crashed runtime left behind, and nothing else.

A runtime killed with SIGKILL leaves no process (its launcher sees the control
socket close and kills its containers, which die with their parents) and no
mount (every job's mounts live in the job's own mount namespace). What can
remain: empty job cgroups, its owner lock file, its pool status file, the
records of its running jobs (sandbox/runtime/jobs.py), and an image import's staging
directory.

Ownership is precise, never a broad name match: each runtime holds an
exclusive ``flock`` on ``<run_dir>/owners/<owner>.lock`` for its whole life
and names its cgroups ``<parent>/<owner>.<n>``. A cgroup whose owner's lock
can be taken belongs to a dead runtime; a live runtime's cgroups are never
touched, so gc can run beside working supervisors. A dead owner's lock file
goes only once all its cgroups are gone. A cgroup whose owner has no lock
file here is not ours to judge: the runtime of another run dir made it
(two workers that share a host's cgroup tree but not its run dir, e.g.
containers with a run dir each). It is left alone and reported, never
taken for a dead runtime's, which would end that runtime's running jobs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.image.store import ImageStore
from sandbox.kernel.cgroups import CgroupSetup, detect_setup
from sandbox.paths import OWNERS, POOLS
from sandbox.runtime import jobs
from sandbox.settings import Settings

__all__ = ["GcReport", "claim_owner", "collect", "owner_alive"]

log = logging.getLogger("sandbox.gc")


@dataclass
class GcReport:
    """What one collection removed."""

    cgroups: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # cgroups with no owner here: left alone
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
    path = run_dir / OWNERS / f"{owner}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def owner_alive(run_dir: Path, owner: str) -> bool | None:
    """True if the runtime ``owner`` holds its lock, False if its lock is free (it died),
    None if it has no lock file in ``run_dir`` (not a runtime of this run dir, or gone)."""
    path = run_dir / OWNERS / f"{owner}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        return False
    finally:
        os.close(fd)


def _remove_dead_owner(run_dir: Path, owner: str) -> None:
    """Remove a dead runtime's lock file, holding its lock (no runtime can be claiming it)."""
    path = run_dir / OWNERS / f"{owner}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    except BlockingIOError:
        pass  # alive after all: a lock is never taken twice, but never assume
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
    alive: dict[str, bool | None] = {}
    unfinished: set[str] = set()  # dead owners with a cgroup that would not go

    def state(owner: str) -> bool | None:
        if owner not in alive:
            alive[owner] = owner_alive(run_dir, owner)
            if alive[owner] is False:
                report.owners.append(owner)
        return alive[owner]

    for name in cgroups.children():
        owner = name.rsplit(".", 1)[0]
        known = state(owner)
        if known is None:
            report.foreign.append(name)
            continue
        if known:
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
            unfinished.add(owner)
    # Files in our run dir: an owner with no lock file here is gone too.
    for directory, suffix in ((run_dir / OWNERS, ".lock"), (run_dir / POOLS, ".json")):
        if not directory.is_dir():
            continue
        for path in directory.glob(f"*{suffix}"):
            owner = path.name[: -len(suffix)]
            if state(owner) or suffix == ".lock":
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                report.pool_files.append(path.name)
    for record in jobs.read_all(run_dir):
        if not state(record.owner):
            jobs.remove(run_dir, record.id)
            report.job_records.append(record.id)
    for owner, known in alive.items():
        if known is False and owner not in unfinished:
            _remove_dead_owner(run_dir, owner)
    report.image_dirs = ImageStore(settings.state_dir).collect_garbage()
    report.owners = sorted(set(report.owners))
    if not report.empty:
        log.warning(
            "reclaimed from dead runtimes: %d cgroup(s), %d owner(s), %d image dir(s)",
            len(report.cgroups),
            len(report.owners),
            len(report.image_dirs),
        )
    if report.foreign:
        log.warning(
            "left alone %d cgroup(s) under %s whose runtime has no owner lock in %s: another "
            "run dir's? Runtimes that share a cgroup parent must share SANDBOX_RUN_DIR",
            len(report.foreign),
            settings.cgroup_parent,
            run_dir,
        )
    for error in report.errors:
        log.error("cannot reclaim %s", error)
    return report
