"""Files in and out of a job's working directory.

In: the JobSpec's files travel to the container in one sealed memfd, back to
back; the JobPlan lists their names, sizes and modes, and the job's process
writes them into /box (O_EXCL, O_NOFOLLOW) before it execs.

Out: after the job's main process exits, its init waits while the supervisor
reads the files the job asked for through the init's root, with openat2's
RESOLVE_IN_ROOT: a symlink the job planted (to /etc/shadow, to ../..)
resolves inside the container, never on the host. Only regular files, each
at most ``cap`` bytes, are returned; the others are named with the reason.
"""

from __future__ import annotations

import errno
import os
import stat

from sandbox.kernel.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

__all__ = ["collect"]


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def collect(
    root_fd: int, workdir: str, names: tuple[str, ...], cap: int
) -> tuple[dict[str, bytes], dict[str, str]]:
    """Read ``names`` from ``workdir`` under the container root ``root_fd``.

    Returns:
        The files read, and for each name not returned, why.
    """
    found: dict[str, bytes] = {}
    skipped: dict[str, str] = {}
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    for name in names:
        try:
            fd = openat2(
                root_fd,
                f"{workdir.strip('/')}/{name}",
                flags,
                RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
            )
        except OSError as exc:
            skipped[name] = (
                "missing" if exc.errno == errno.ENOENT else f"unreadable: {exc.strerror}"
            )
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                skipped[name] = "not a regular file"
            elif info.st_size > cap:
                skipped[name] = f"larger than {cap} bytes (limits.output)"
            else:
                data = _read_at_most(fd, cap + 1)
                if len(data) > cap:
                    skipped[name] = f"larger than {cap} bytes (limits.output)"
                else:
                    found[name] = data
        except OSError as exc:
            skipped[name] = f"unreadable: {exc.strerror}"
        finally:
            os.close(fd)
    return found, skipped
