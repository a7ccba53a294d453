"""Host-wide slots: numbered resources that at most one holder has at a time.

A slot is held with an exclusive ``flock`` on ``<directory>/<n>``; every
runtime of the host (whatever worker process) shares the directory, and the
kernel releases the lock if its holder dies, so a killed worker leaks no
slot. Used for pinned CPUs (sandbox/kernel/cpus.py) and the user namespace id
ranges of containers.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import os
from pathlib import Path

__all__ = ["Slot", "Slots"]


class Slot:
    """One slot held; :meth:`release` gives it back."""

    def __init__(self, slot_id: int, fd: int) -> None:
        self.id = slot_id
        self._fd = fd

    def fileno(self) -> int:
        """The locked file's descriptor (-1 once released)."""
        return self._fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # drops the flock
            self._fd = -1


class Slots:
    """Numbered slots, shared by every runtime of the host through flock files."""

    def __init__(self, directory: Path, ids: tuple[int, ...], poll: float = 0.005) -> None:
        self.ids = ids
        self._dir = directory
        self._poll = poll
        self._start = itertools.cycle(range(len(ids)))
        directory.mkdir(parents=True, exist_ok=True)

    def try_acquire(self) -> Slot | None:
        """A free slot, or None if every one is held."""
        first = next(self._start)  # rotate, so that slots wear evenly
        for slot_id in self.ids[first:] + self.ids[:first]:
            fd = os.open(self._dir / str(slot_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            return Slot(slot_id, fd)
        return None

    async def acquire(self) -> Slot:
        """Wait for a free slot (cancellable)."""
        # flock has no asynchronous wait: poll, a few milliseconds apart.
        while (slot := self.try_acquire()) is None:  # noqa: ASYNC110
            await asyncio.sleep(self._poll)
        return slot
