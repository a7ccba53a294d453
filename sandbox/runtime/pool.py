"""The warm pool: containers built ahead of demand, each used by one job only.

For each :class:`~sandbox.plan.ContainerPlan` in use (an image, network off,
a disk size), the pool keeps up to ``size`` containers ready (``size_for``
may set it per plan, e.g. per image): namespaces made,
overlay and /proc and /dev mounted, pivoted, waiting for a job (go-sandbox's
pre-forked containers; go-judge's ``env/pool``). :meth:`RootfsPool.take`
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
        max_plans: int = 8,
        setup_timeout: float = 30.0,
    ) -> None:
        self._spawn = spawn
        self.size = size
        self._size_for = size_for or (lambda plan: size)
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
        )

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
            container = await self._spawn(plan)
        return container

    def refill(self, plan: ContainerPlan) -> None:
        """Build containers until ``size`` are ready for ``plan``, in the background.

        Called when a job ends rather than when it starts, so that building
        does not compete with the job for CPU (it would slow it down and
        perturb its timing, which judges care about).
        """
        size = self._size_for(plan)
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
                with contextlib.suppress(SandboxError):
                    await container.remove()
            return
        except asyncio.CancelledError:
            if container is not None:
                container.kill("drain")
                with contextlib.suppress(SandboxError):
                    await asyncio.shield(container.remove())
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


async def _quietly_remove(container: Container) -> None:
    try:
        await container.remove(grace=5.0)
    except SandboxError as exc:
        log.error("could not remove an evicted container: %s", exc)
