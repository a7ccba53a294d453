"""Looking at the host's process table from tests: /proc, read-only; and removing the
cgroup parents and run dirs a test session made, once they are empty."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

__all__ = ["alive", "descendants", "made", "pids_with", "remove_made"]

CGROUPS = Path("/sys/fs/cgroup")


def made(parent: str, run_dir: Path) -> bool:
    """True if the cgroup parent or the run dir exists (before a session: not its own)."""
    return run_dir.exists() or any(CGROUPS.glob(f"*/{parent}")) or (CGROUPS / parent).is_dir()


def remove_made(parent: str, run_dir: Path) -> None:
    """The cgroup parent (every hierarchy) and the run dir, removed if empty.

    Raises:
        AssertionError: a mount is left in the run dir (a leak).
    """
    for directory in [*CGROUPS.glob(f"*/{parent}"), CGROUPS / parent]:
        if directory.is_dir():
            with contextlib.suppress(OSError):  # not empty: a leak the tests report
                directory.rmdir()
    if run_dir.exists():
        with open("/proc/self/mounts") as f:
            assert f" {run_dir}/" not in f.read(), f"a mount is left in {run_dir}"
        shutil.rmtree(run_dir)


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, ...


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        return _stat_fields(pid)[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def descendants(root_pid: int) -> set[int]:
    """Every process below ``root_pid`` (children, their children...), zombies included."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    todo = [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def pids_with(token: str) -> list[int]:
    """Live processes (other than this one) whose command line contains ``token``."""
    found = []
    needle = token.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read() and alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found
