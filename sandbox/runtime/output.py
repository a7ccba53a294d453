"""A job's output: its two streams, capped as they arrive, and the files it gives back.

The supervisor reads stdout and stderr on the event loop as the job writes
them, keeping at most ``limits.output`` bytes of each (a stream past its cap
calls ``on_overflow``: the runner kills the job, docs/adr/0003); the result
returns once the job's main process has exited and both streams are at EOF
(:func:`wait_drained`). Files the job asked back are read through its init's
root after it exited (:func:`collect_files`, :mod:`sandbox.kernel.files`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from sandbox.errors import CleanupError
from sandbox.kernel import files
from sandbox.plan import JobPlan
from sandbox.runtime.container import Container, within

__all__ = ["KILL_GRACE", "Stream", "collect_files", "wait_drained"]

CHUNK = 65536
KILL_GRACE = 10.0  # seconds to wait for a killed container to be gone


class Stream:
    """Collects one output stream, keeping at most ``cap`` bytes in memory."""

    def __init__(self, fd: int, cap: int, on_overflow: Callable[[], None]) -> None:
        self.fd = fd
        self.cap = cap
        self.data = bytearray()
        self.truncated = False
        self._on_overflow = on_overflow
        self._loop = asyncio.get_running_loop()
        self.eof: asyncio.Future[None] = self._loop.create_future()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        room = self.cap - len(self.data)
        if len(chunk) > room:
            self.data += chunk[: max(room, 0)]
            if not self.truncated:
                self.truncated = True
                self._on_overflow()
        else:
            self.data += chunk

    def close(self) -> None:
        if self.fd >= 0:
            self._loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        if not self.eof.done():
            self.eof.set_result(None)


def collect_files(
    container: Container, job: JobPlan, cap: int
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The files the job asked back, read through its init's root (:mod:`sandbox.kernel.files`)."""
    if container.exit is None or container.kill_reason is not None:
        return {}, dict.fromkeys(job.collect, "the job did not exit by itself")
    try:
        root = container.root_fd()
    except OSError as exc:
        return {}, dict.fromkeys(job.collect, f"unreadable: {exc.strerror}")
    try:
        return files.collect(root, job.workdir, job.collect, cap)
    finally:
        os.close(root)


async def wait_drained(end: asyncio.Future[None], streams: list[Stream], job: Container) -> None:
    """Wait for ``end`` and both output EOFs; kill the container if they take too long.

    ``end`` is ``job.exited`` on success (a daemon that keeps the output open
    dies when the released init exits) or ``job.done`` after an error.
    """
    waits = asyncio.gather(end, *(s.eof for s in streams))
    if not await within(waits, KILL_GRACE):
        job.kill("cleanup")
        if not await within(waits, KILL_GRACE):
            raise CleanupError("a killed container did not end within its grace period")
