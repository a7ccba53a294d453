"""The job-shaped cgroup interface shared by the v1 and v2 implementations.

Man page: cgroups(7); kernel docs admin-guide/cgroup-v1 and cgroup-v2.
Every cgroup we create lives under our own parent (``sandbox`` by default)
and is named ``<owner>.<n>`` (the job itself in its ``job`` leaf), the owner
being the runtime that made it, so a restarted runtime can find and reclaim
exactly what is ours. cgroupfs is read
and written through :func:`read_file` and :func:`write_file` only, which put
the path in every error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sandbox.errors import CgroupError

__all__ = [
    "CPU_PERIOD_US",
    "LEAF",
    "Cgroup",
    "CgroupLimits",
    "CgroupSetup",
    "CgroupStats",
    "counter_sum",
    "cpu_quota_us",
    "for_each",
    "freeze_and_kill",
    "has_no_children",
    "read_file",
    "remove_tree",
    "subtree",
    "write_file",
]

# A job's cgroup is two levels: <parent>/<name> holds the limits, the job runs
# in <parent>/<name>/job and its cgroup namespace is rooted there. A job that
# mounts cgroupfs (root inside, a nested user namespace) sees only the leaf:
# the limits above it are out of its reach, and whatever it creates below is
# removed with the rest.
LEAF = "job"
# The CFS bandwidth period: a job with ``cpus`` = 1 runs at most 100 ms per 100 ms.
CPU_PERIOD_US = 100_000


def cpu_quota_us(cpus: float) -> int:
    """The CFS quota for ``cpus`` CPUs per :data:`CPU_PERIOD_US` (the kernel's minimum is 1 ms)."""
    return max(1000, round(cpus * CPU_PERIOD_US))


@dataclass(frozen=True)
class CgroupLimits:
    """What a job's cgroup is set to (:meth:`Cgroup.set_limits`)."""

    memory_bytes: int  # RAM, no swap
    # CPU bandwidth, in CPUs (CFS quota per CPU_PERIOD_US); None: no cap.
    cpus: float | None = None
    # CPUs the job may run on, in cpuset list syntax ("3", "0-1"); empty: all of ours.
    cpuset: str = ""
    # Each limit that is one cgroup file (sandbox/resources.py cgroup_file), by
    # its v2 name ({"pids.max": 64}); on v1 the controller is the part before the dot.
    files: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CgroupStats:
    """What a job used, from the kernel's accounting of its cgroup."""

    cpu_ns: int
    memory_peak: int
    oom_kills: int
    pids_limit_hits: int


class Cgroup(Protocol):
    """One job's cgroup (one directory per hierarchy on v1, one on v2)."""

    name: str

    def procs_files(self) -> tuple[str, ...]:
        """The ``cgroup.procs`` files a process writes ``0`` to, to join."""
        ...

    def join_fds(self) -> tuple[int, ...]:
        """:meth:`procs_files`, opened for writing once and held (closed by :meth:`destroy`).

        Each container of a recycled cgroup joins it through these: no opens per job.

        Raises:
            OSError: a file cannot be opened.
        """
        ...

    def set_limits(self, limits: CgroupLimits) -> None:
        """Cap memory (swap disabled); share and pin CPUs; write the other limit files.

        Only a value that changed since the last call is written (a
        recycled cgroup keeps what the last job set).
        """
        ...

    def reset_accounting(self) -> None:
        """Start the CPU and memory-peak figures afresh, as the job begins.

        The cgroup is joined before its job is known (off the critical path),
        so what our own code used in it until now must not count.
        """
        ...

    def cpu_usage_ns(self) -> int:
        """CPU time used by the cgroup's processes since the last reset, in nanoseconds."""
        ...

    def cpu_total_ns(self) -> int:
        """The cgroup's CPU counter as the kernel keeps it (v1: since the last reset)."""
        ...

    def cpu_base_ns(self) -> int:
        """Where :meth:`cpu_total_ns` stood at the last reset (no read: v1 resets to 0)."""
        ...

    def memory_current(self) -> int:
        """Bytes of memory the cgroup uses now."""
        ...

    def stats(self) -> CgroupStats:
        """CPU, memory peak, OOM kills and pids-limit hits."""
        ...

    def is_empty(self) -> bool:
        """True when no process is left in the cgroup."""
        ...

    def kill(self) -> None:
        """SIGKILL every process of the cgroup, without racing forks."""
        ...

    def destroy(self) -> None:
        """Remove the cgroup; raises OSError(EBUSY) while processes remain."""
        ...

    def held_fds(self) -> tuple[int, ...]:
        """Descriptors this object keeps open (closed by :meth:`destroy`)."""
        ...

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer killed in the cgroup since the last recycle."""
        ...

    def watch_oom(self) -> int:
        """Ask to be told when the job's memory runs out, for one job.

        At its memory cap a job can thrash for seconds (reclaim refaulting
        the pages its processes need) and, after one OOM kill, go on doing
        so; the whole job ends at the first one instead. On v2 the kernel
        does it (``memory.oom.group``, set when the cgroup is created); on v1
        the supervisor must, when this descriptor says so.

        Returns:
            A non-blocking, close-on-exec descriptor that becomes readable
            when the kernel's OOM killer acts on the job's memory limit (v1:
            an eventfd registered on ``memory.oom_control``, once per cgroup
            and drained at each call, so that it tells of this job only). It
            is the cgroup's: the caller watches it during the job and leaves
            it open; :meth:`destroy` closes it, which unregisters the event.
            -1 if the kernel ends the whole job by itself.

        Raises:
            CgroupError: the kernel refused the registration.
        """
        ...

    def recycle(self) -> bool:
        """Make the cgroup of a finished job ready for another one, if it can be.

        It can when no process is left, the job made no cgroup below its leaf,
        and every figure the next job reads can start from zero: memory the
        last job left charged (page cache) is reclaimed, and counters the
        kernel cannot reset (OOM kills, refused forks; CPU on v2) get a
        baseline that :meth:`stats` subtracts. Limits are set per job anyway.

        Returns:
            False if it must be destroyed instead.
        """
        ...


class CgroupSetup(Protocol):
    """A host's cgroup hierarchy as we use it: our parent and its children."""

    version: int
    parent: str

    def ensure_parent(self) -> None:
        """Create our parent cgroup and enable the controllers we need."""
        ...

    def create(self, name: str) -> Cgroup:
        """Create a job cgroup under our parent."""
        ...

    def open(self, name: str) -> Cgroup:
        """Open an existing job cgroup under our parent."""
        ...

    def children(self) -> list[str]:
        """Names of the cgroups under our parent."""
        ...

    def missing(self) -> list[str]:
        """Controllers we need that this host does not offer."""
        ...

    def can_pin(self) -> bool:
        """True if job cgroups can be pinned to CPUs (a cpuset controller of ours)."""
        ...


@contextlib.contextmanager
def _naming(path: Path, doing: str) -> Iterator[None]:
    """Turn an OSError on a cgroupfs file into a CgroupError naming it."""
    try:
        yield
    except OSError as exc:
        message = f"cannot {doing}: {exc.strerror}"
        raise CgroupError(message, path=str(path), errno=exc.errno) from exc


def read_file(path: Path) -> str:
    """Read a cgroupfs file.

    Raises:
        CgroupError: naming the path.
    """
    with _naming(path, f"read {path}"):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = [os.read(fd, 65536)]  # one read, for all but a long cgroup.procs
            while len(chunks[-1]) == 65536:
                chunks.append(os.read(fd, 65536))
            return b"".join(chunks).decode()
        finally:
            os.close(fd)


def write_file(path: Path, data: str) -> None:
    """Write a cgroupfs file (one write, as the kernel expects).

    Raises:
        CgroupError: naming the path and the value.
    """
    with _naming(path, f"write {data!r} to {path}"):
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)


def parse_keyed(text: str) -> dict[str, int]:
    """Parse ``key value`` lines (memory.events, pids.events, cpu.stat...)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def keyed_value(text: str, key: str) -> int:
    """``key``'s value in ``key value`` lines, or 0: :func:`parse_keyed` for one key."""
    prefix = key + " "
    if text.startswith(prefix):
        at = len(prefix)
    else:
        at = text.find("\n" + prefix)
        if at < 0:
            return 0
        at += len(prefix) + 1
    value = text[at:].partition("\n")[0].strip()
    return int(value) if value.lstrip("-").isdigit() else 0


def remove_dir(path: Path) -> None:
    """rmdir a cgroup directory; a missing one is already gone.

    Raises:
        OSError: EBUSY while processes remain.
    """
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return
        raise


def freeze_and_kill(
    freeze: Callable[[bool], None], frozen: Callable[[], bool], pids: Callable[[], Iterable[int]]
) -> None:
    """SIGKILL every member of a cgroup that has no ``cgroup.kill``.

    Frozen tasks can neither fork nor exit, so the pids read while frozen are
    stable and a fork bomb cannot outrun the kill; SIGKILL takes effect on thaw.
    """
    freeze(True)
    try:
        deadline = time.monotonic() + 1.0
        while not frozen() and time.monotonic() < deadline:
            time.sleep(0.001)
        for pid in pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    finally:
        freeze(False)


def open_for_writing(paths: Iterable[str]) -> tuple[int, ...]:
    """Each path opened write-only, close-on-exec; none left open if one fails.

    Raises:
        OSError: naming the path that failed.
    """
    fds: list[int] = []
    try:
        fds.extend(os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in paths)
    except OSError:
        close_all(fds)
        raise
    return tuple(fds)


def close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def has_no_children(path: Path | str) -> bool:
    """True if the cgroup directory has no cgroup below it (kernfs: nlink is 2 + subdirs)."""
    try:
        return os.stat(path).st_nlink == 2
    except OSError:
        return False


def counter_sum(
    dirs: Iterable[Path], filename: str, key: str, read: Callable[[Path, str], str] | None = None
) -> int:
    """The sum of ``key`` in ``filename`` of each cgroup that has the file.

    ``read(directory, filename)`` reads it (by default, opened afresh).
    """
    total = 0
    for d in dirs:
        try:
            text = read(d, filename) if read is not None else read_file(d / filename)
        except CgroupError:
            continue
        total += keyed_value(text, key)
    return total


class HeldFiles:
    """A job cgroup's descriptors, each opened on its first use and held until :meth:`close`.

    A recycled cgroup serves job after job. Its counters are read through
    the same descriptors (kernfs makes a file's content afresh on a read at
    offset 0), each container joins it through the same ``cgroup.procs``
    descriptors, and a few more are kept by name (v1's OOM eventfd, v2's
    ``memory.peak``): no path walk, open and close for each job.
    """

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}
        self._in: dict[tuple[Path, str], int] = {}  # read_in's, by directory and name
        self._join: tuple[int, ...] = ()
        self._named: dict[str, int] = {}

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return fd

    def join(self, paths: Iterable[str]) -> tuple[int, ...]:
        """``paths`` (the cgroup.procs files) opened for writing, once.

        Raises:
            OSError: one cannot be opened (none is left open).
        """
        if not self._join:
            self._join = open_for_writing(paths)
        return self._join

    def named(self, name: str) -> int:
        """The descriptor kept as ``name``, or -1."""
        return self._named.get(name, -1)

    def keep(self, name: str, fd: int) -> None:
        """Hold ``fd`` as ``name`` (closed by :meth:`close`)."""
        self._named[name] = fd

    def read(self, path: Path) -> str:
        """Read a cgroupfs file of at most 64 KiB (not cgroup.procs).

        Raises:
            CgroupError: naming the path.
        """
        try:
            return os.pread(self._fd(path), 65536, 0).decode()
        except OSError as exc:
            raise CgroupError(
                f"cannot read {path}: {exc.strerror}", path=str(path), errno=exc.errno
            ) from exc

    def read_in(self, directory: Path, filename: str) -> str:
        """:meth:`read` of ``directory / filename``, without making the path
        again on every read (the counters a recycled cgroup's jobs all read).

        Raises:
            CgroupError: naming the path.
        """
        try:
            fd = self._in.get((directory, filename))
            if fd is None:
                fd = self._in[directory, filename] = self._fd(directory / filename)
            return os.pread(fd, 65536, 0).decode()
        except OSError as exc:
            path = directory / filename
            raise CgroupError(
                f"cannot read {path}: {exc.strerror}", path=str(path), errno=exc.errno
            ) from exc

    def fds(self) -> tuple[int, ...]:
        return (*self._fds.values(), *self._join, *self._named.values())

    def close(self) -> None:
        close_all(self.fds())
        self._fds.clear()
        self._in.clear()
        self._join = ()
        self._named.clear()


def counted(top: Path, leaf: Path) -> list[Path]:
    """The cgroups whose counters are a job's: ``top`` and its ``leaf``, or, when
    the job made cgroups of its own below the leaf, every one below ``top``.

    Two stats in the usual case (kernfs: nlink is 2 + subdirectories), not a walk.
    """
    try:
        if os.stat(top).st_nlink == 3 and os.stat(leaf).st_nlink == 2:
            return [leaf, top]
    except OSError:
        pass
    return subtree(top)


def subtree(path: Path) -> list[Path]:
    """``path`` and every cgroup below it, deepest first (the order rmdir needs)."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                found += subtree(Path(entry.path))
    if path.is_dir():
        found.append(path)
    return found


def remove_tree(path: Path) -> None:
    """rmdir a cgroup and everything the job may have created below it.

    Raises:
        OSError: EBUSY while processes remain (after trying every directory).
    """
    with contextlib.suppress(OSError):  # the usual case, without walking: leaf, then top
        remove_dir(path / LEAF)
        remove_dir(path)
        return
    # The job made cgroups below its leaf, or it is busy: every directory, deepest first.
    for_each(remove_dir, subtree(path))


def for_each(action: Callable[[Path], None], paths: Iterable[Path]) -> None:
    """Apply ``action`` to every path, then raise the first OSError if any failed."""
    failed: OSError | None = None
    for path in paths:
        try:
            action(path)
        except OSError as exc:
            failed = failed or exc
    if failed is not None:
        raise failed
