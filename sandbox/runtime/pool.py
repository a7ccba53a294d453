"""The warm pool: containers built ahead of demand, each used by one job only.

For each :class:`~sandbox.plan.ContainerPlan` in use (an image, network off,
a disk size), the pool keeps up to ``size`` containers ready (``size_for``
may set it per plan, e.g. per image): namespaces made, overlay and /proc
and /dev mounted, pivoted, waiting for a job (go-sandbox's pre-forked
containers; go-judge's ``env/pool``). Each miss but a plan's first adds one
to its size, up to ``max_size``, so that a steady stream of jobs finds one
ready; ``SHRINK_AFTER`` seconds without a miss take one back. :meth:`RootfsPool.take`
hands one out (a hit) or spawns one on the spot (a miss, still correct), and
a background task builds a replacement. A container is never handed out
twice: after its job it exits and its mounts die with its namespace.

The pool belongs to the event loop that created it. Draining it (shutdown)
closes each ready container's job socket, which tells its init to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sandbox.errors import SandboxError
from sandbox.plan import ContainerPlan
from sandbox.runtime.container import Container

__all__ = ["PoolStats", "RootfsPool"]

log = logging.getLogger("sandbox.pool")

SHRINK_AFTER = 30.0  # seconds without a miss before a grown plan's pool gives one back


@dataclass(frozen=True)
class PoolStats:
    """Counters of the warm pool since it was opened."""

    hits: int
    misses: int
    builds: int
    build_failures: int
    build_seconds_total: float
    ready: int
    building: int
    plans: int
    target: int = 0  # containers the pool keeps ready now, all plans: grown by misses

    @property
    def build_ms_avg(self) -> float:
        """Mean time from spawn request to ready, in milliseconds."""
        return 1000 * self.build_seconds_total / self.builds if self.builds else 0.0


class RootfsPool:
    """Ready containers per container plan."""

    def __init__(
        self,
        spawn: Callable[[ContainerPlan], Awaitable[Container]],
        size: int,
        *,
        size_for: Callable[[ContainerPlan], int] | None = None,
        max_size: int = 0,
        max_plans: int = 8,
        setup_timeout: float = 30.0,
    ) -> None:
        self._spawn = spawn
        self.size = size
        self.max_size = max_size
        self._size_for = size_for or (lambda plan: size)
        # Containers added to a plan's size by its misses, and when it last missed.
        self._grown: dict[ContainerPlan, int] = {}
        self._last_miss: dict[ContainerPlan, float] = {}
        self.max_plans = max_plans
        self.setup_timeout = setup_timeout
        self._ready: dict[ContainerPlan, list[Container]] = {}
        self._building: dict[ContainerPlan, int] = {}
        self._in_flight: set[Container] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # builds
        self._removals: set[asyncio.Task[None]] = set()  # evicted containers going away
        self._closed = False
        self.hits = self.misses = self.builds = self.build_failures = 0
        self.build_seconds_total = 0.0

    def stats(self) -> PoolStats:
        """The pool's counters now."""
        return PoolStats(
            hits=self.hits,
            misses=self.misses,
            builds=self.builds,
            build_failures=self.build_failures,
            build_seconds_total=round(self.build_seconds_total, 6),
            ready=sum(len(v) for v in self._ready.values()),
            building=sum(self._building.values()),
            plans=len(self._ready),
            target=sum(self._target(plan) for plan in self._ready),
        )

    def _target(self, plan: ContainerPlan) -> int:
        """Containers to keep ready for ``plan``: its size, and what its misses added."""
        base = self._size_for(plan)
        return base + self._grown.get(plan, 0) if base > 0 else 0

    async def settled(self) -> None:
        """Wait until no container is being built (for tests and orderly shutdowns)."""
        while self._tasks or self._removals:
            await asyncio.gather(*self._tasks, *self._removals, return_exceptions=True)

    def containers(self) -> list[Container]:
        """Every container the pool holds now, ready or still being built."""
        return [*(c for ready in self._ready.values() for c in ready), *self._in_flight]

    async def take(self, plan: ContainerPlan) -> Container:
        """A container for ``plan`` that nobody used: ready if possible.

        Raises:
            SetupError: the launcher is gone.
        """
        ready = self._ready.get(plan)
        container = None
        while ready:
            candidate = ready.pop(0)
            if candidate.alive:
                container = candidate
                break
            await candidate.remove()  # died while waiting: never hand it out
        if container is not None:
            self.hits += 1
        else:
            self.misses += 1
            base = self._size_for(plan)
            # A plan's first job is a cold start, not a sign of a pool too small.
            if plan in self._ready and 0 < base < self.max_size:
                self._grown[plan] = min(self._grown.get(plan, 0) + 1, self.max_size - base)
                self._last_miss[plan] = time.monotonic()
            container = await self._spawn(plan)
        return container

    def refill(self, plan: ContainerPlan) -> None:
        """Build containers until ``size`` are ready for ``plan``, in the background.

        Called when a job ends rather than when it starts, so that building
        does not compete with the job for CPU (it would slow it down and
        perturb its timing, which judges care about).
        """
        grown = self._grown.get(plan, 0)
        if grown and time.monotonic() - self._last_miss[plan] > SHRINK_AFTER:
            self._grown[plan] = grown - 1  # the ready one beyond it is used, not replaced
            self._last_miss[plan] = time.monotonic()
        size = self._target(plan)
        if self._closed or size <= 0:
            return
        if plan not in self._ready and len(self._ready) >= self.max_plans:
            self._evict_oldest()
        ready = self._ready.pop(plan, [])
        self._ready[plan] = ready  # most recently used last
        missing = size - len(ready) - self._building.get(plan, 0)
        for _ in range(missing):
            self._building[plan] = self._building.get(plan, 0) + 1
            task = asyncio.create_task(self._build(plan))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _evict_oldest(self) -> None:
        """Dismiss the containers of the least recently used plan (a bounded pool)."""
        plan = next(iter(self._ready))
        self._grown.pop(plan, None)
        self._last_miss.pop(plan, None)
        for container in self._ready.pop(plan):
            container.dismiss()
            task = asyncio.create_task(_quietly_remove(container))
            self._removals.add(task)
            task.add_done_callback(self._removals.discard)

    async def _build(self, plan: ContainerPlan) -> None:
        start = time.monotonic()
        container: Container | None = None
        try:
            container = await self._spawn(plan)
            self._in_flight.add(container)
            await container.wait_ready(self.setup_timeout)
        except (SandboxError, OSError) as exc:
            self.build_failures += 1
            log.warning("warm container failed to build: %s", exc)
            if container is not None:
                container.kill("setup")
                await _remove_whatever_happens(container)
            return
        except asyncio.CancelledError:
            if container is not None:
                container.kill("drain")
                await _remove_whatever_happens(container)
            raise
        finally:
            self._building[plan] -= 1
            if container is not None:
                self._in_flight.discard(container)
        self.builds += 1
        self.build_seconds_total += time.monotonic() - start
        if self._closed:
            container.dismiss()
            await container.remove()
            return
        self._ready.setdefault(plan, []).append(container)

    async def drain(self) -> None:
        """Stop refilling and dismiss every ready container."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*self._removals, return_exceptions=True)
        containers = [c for ready in self._ready.values() for c in ready]
        self._ready.clear()
        for container in containers:
            container.dismiss()  # EOF on its socket: its job process exits, then all
        for container in containers:
            with contextlib.suppress(SandboxError):
                await container.remove(grace=5.0)

    def discard(self) -> None:
        """Forget every container without awaiting (the loop is gone): kill them."""
        self._closed = True
        for ready in self._ready.values():
            for container in ready:
                container.remove_sync()
        self._ready.clear()


async def _remove_whatever_happens(container: Container) -> None:
    """Remove a killed container to the end, even if cancelled meanwhile (a drain):
    its cgroup and namespace are gone before the cancellation goes on.

    Raises:
        CancelledError: it was cancelled while waiting (once the removal is done).
    """
    removal = asyncio.ensure_future(container.remove())
    cancelled = False
    while not removal.done():
        try:
            await asyncio.shield(removal)
        except asyncio.CancelledError:
            cancelled = True
        except SandboxError:
            break
    if not removal.cancelled() and isinstance(removal.exception(), SandboxError):
        log.error("could not remove a failed warm container: %s", removal.exception())
    if cancelled:
        raise asyncio.CancelledError


async def _quietly_remove(container: Container) -> None:
    try:
        await container.remove(grace=5.0)
    except SandboxError as exc:
        log.error("could not remove an evicted container: %s", exc)
