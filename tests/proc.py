"""Looking at the host's process table from tests: /proc, read-only."""

from __future__ import annotations

import os

__all__ = ["alive", "descendants", "pids_with"]


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
