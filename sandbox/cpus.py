"""CPU pinning: each running job gets a CPU of its own, host-wide.

Judges want a job's timing to be stable: with ``SANDBOX_PIN_CPUS=2-3`` every
job runs pinned to one of those CPUs, and no two jobs of this host (whatever
worker process runs them) share one at a time. A CPU is held with an
exclusive ``flock`` on ``<run_dir>/cpus/<n>``; the kernel releases it if the
holder dies, so a killed worker leaks no slot. A job waits for a free CPU
before it starts; its wall clock starts after.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import os
import re
from pathlib import Path

__all__ = ["CpuSlot", "CpuSlots", "parse_cpu_list"]

_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """``"0-2,5"`` -> ``(0, 1, 2, 5)``, the kernel's cpu list syntax (cpuset(7)).

    Raises:
        ValueError: not a cpu list, or a range that runs backwards.
    """
    text = text.strip()
    if not text:
        return ()
    if not _LIST.match(text):
        raise ValueError(f"not a CPU list: {text!r} (use e.g. '2-3' or '0,2,4')")
    cpus: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        start, end = int(first), int(last or first)
        if end < start:
            raise ValueError(f"CPU range {part} runs backwards")
        cpus.extend(range(start, end + 1))
    return tuple(dict.fromkeys(cpus))


class CpuSlot:
    """One CPU held for one job; :meth:`release` gives it back."""

    def __init__(self, cpu: int, fd: int) -> None:
        self.cpu = cpu
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # drops the flock
            self._fd = -1


class CpuSlots:
    """The CPUs jobs are pinned to, shared by every runtime of the host through flock files."""

    def __init__(self, directory: Path, cpus: tuple[int, ...], poll: float = 0.005) -> None:
        self.cpus = cpus
        self._dir = directory
        self._poll = poll
        self._start = itertools.cycle(range(len(cpus)))
        directory.mkdir(parents=True, exist_ok=True)

    def try_acquire(self) -> CpuSlot | None:
        """A free CPU, or None if every one is held."""
        first = next(self._start)  # rotate, so that CPUs wear evenly
        for cpu in self.cpus[first:] + self.cpus[:first]:
            fd = os.open(self._dir / str(cpu), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            return CpuSlot(cpu, fd)
        return None

    async def acquire(self) -> CpuSlot:
        """Wait for a free CPU (cancellable)."""
        # flock has no asynchronous wait: poll, a few milliseconds apart.
        while (slot := self.try_acquire()) is None:  # noqa: ASYNC110
            await asyncio.sleep(self._poll)
        return slot
