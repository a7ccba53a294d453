"""Watches on a running job's cgroup: its CPU time and its first OOM kill.

The supervisor (``sandbox.runtime.runner``) arms one of each per job, on
its event loop, and closes them when the job ends; each calls ``kill``
when its limit is reached. The CPU watch looks only when the limit could
first be reached; the OOM watch waits on the v1 eventfd (v2 kills the whole
job itself) and falls back to polling where the kernel will not notify.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Callable

from sandbox.errors import CgroupError
from sandbox.kernel.cgroups import Cgroup

__all__ = ["CpuWatch", "OomWatch"]

log = logging.getLogger("sandbox")

# After a v1 OOM notification: how long the kernel may take to kill its victim
# (microseconds, unless it is preempted), and how often we look.
_OOM_KILL_WAIT = 0.05
_OOM_POLL = 0.001
_OOM_FALLBACK_POLL = 0.01  # where the kernel refuses to notify (v1 on PREEMPT_RT)
_oom_unnotified = False  # said so once
_CPUS = os.cpu_count() or 1  # glibc reads /sys for it: once, not per job


class CpuWatch:
    """Kills the job when its cgroup's CPU time reaches the limit.

    It looks at the earliest moment the limit can be reached (all CPUs busy),
    then again at the next such moment: a job that ends sooner is never read.
    """

    def __init__(self, cgroup: Cgroup, limit_ns: int, kill: Callable[[], None]) -> None:
        self._cgroup = cgroup
        self._limit_ns = limit_ns
        self._kill = kill
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(self._wait(0), self._check)

    def _wait(self, used_ns: int) -> float:
        return max(0.005, (self._limit_ns - used_ns) / 1e9 / _CPUS)

    def _check(self) -> None:
        self._timer = None
        try:
            used = self._cgroup.cpu_usage_ns()
        except CgroupError as exc:  # its cgroup is gone: the job with it
            log.debug("cpu watch stopped: %s", exc)
            return
        if used >= self._limit_ns:
            self._kill()
        else:
            self._timer = self._loop.call_later(self._wait(used), self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class OomWatch:
    """Kills the job at its memory cgroup's first OOM kill, where the kernel kills
    only one process of it (v1: see :meth:`~sandbox.kernel.cgroups.base.Cgroup.watch_oom`;
    on v2 the kernel kills the whole job and this watches nothing).

    One per job, armed before the job can allocate, closed after it.
    """

    def __init__(self, cgroup: Cgroup, kill: Callable[[], None], exited: asyncio.Future[None]):
        global _oom_unnotified
        self._cgroup = cgroup
        self._kill = kill
        self._exited = exited
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._fd = -1
        try:
            self._fd = cgroup.watch_oom()
        except CgroupError as exc:
            if not _oom_unnotified:
                _oom_unnotified = True
                log.warning("no OOM notification (%s): polling OOM-kill counters instead", exc)
            self._timer = self._loop.call_later(
                _OOM_FALLBACK_POLL, self._check, _OOM_FALLBACK_POLL, math.inf
            )
            return
        if self._fd >= 0:
            self._loop.add_reader(self._fd, self._notified)

    def _notified(self) -> None:
        self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.read(self._fd, 8)  # the eventfd's count, back to 0
        # The notification comes as the kernel sets out to kill a process: let
        # it kill (and count) its victim first, else our SIGKILL pre-empts it
        # and the job would end uncounted (oom_killed false).
        self._check(_OOM_POLL, self._loop.time() + _OOM_KILL_WAIT)

    def _check(self, interval: float, deadline: float) -> None:
        self._timer = None
        if self._exited.done():  # the main process was the victim, or exited: release ends the rest
            return
        if self._cgroup.oom_kills() > 0:
            self._kill()
        elif self._loop.time() < deadline:
            self._timer = self._loop.call_later(interval, self._check, interval, deadline)
        elif self._fd >= 0:  # memory was freed without a kill (a process exiting): watch on
            self._loop.add_reader(self._fd, self._notified)

    def close(self) -> None:
        """Stop watching (the eventfd is the cgroup's: it stays open for the next job)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._fd = -1
