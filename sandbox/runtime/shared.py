"""The process-wide runtime that every synchronous entry point shares.

:func:`execute_sync` (and :func:`execute` without a runtime) run on one warm
runtime per process, started on first use: in a thread of its own with its
event loop (:class:`RuntimeThread`, which each Celery worker process also
uses: worker/tasks.py), closed at exit, forgotten in a forked child (its
descriptors closed, nothing killed: the containers are the parent's). A
script that calls ``execute_sync`` in a loop pays a warm job's cost, not a
runtime's start (docs/adr/0008).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sandbox.result import JobResult
from sandbox.runtime.host import Check
from sandbox.runtime.pool import PoolStats
from sandbox.runtime.runner import Runtime
from sandbox.settings import Settings
from sandbox.spec import JobSpec

__all__ = ["RuntimeThread", "default_runtime", "execute", "execute_sync", "try_a_job"]

log = logging.getLogger("sandbox")
T = TypeVar("T")

_defaults: dict[bool, Runtime] = {}


def default_runtime(*, warm: bool = True) -> Runtime:
    """The process-wide runtime used by :func:`execute` when none is given.

    Args:
        warm: with the warm pool; a runtime without one suits a single job
            (the ``sandbox run`` command), which would not use what it built.
    """
    runtime = _defaults.get(warm)
    if runtime is None:
        runtime = Runtime(pool_size=None if warm else 0)
        runtime.open()
        _defaults[warm] = runtime
        atexit.register(runtime.close)
    return runtime


class RuntimeThread:
    """A runtime on an event loop of its own thread, for synchronous callers.

    The loop lives until :meth:`stop`, so the runtime's warm pool does too;
    callers hand it coroutines and wait for their results. :func:`execute_sync`
    has one per process; each Celery worker process has one (worker/tasks.py).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.runtime: Runtime | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Open the runtime and start its loop (once).

        Raises:
            UnsupportedError: the host cannot run sandboxes.
        """
        with self._lock:
            if self.runtime is not None:
                return
            runtime = Runtime(self._settings)
            runtime.open()
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="sandbox-loop", daemon=True)
            thread.start()
            self.loop, self._thread, self.runtime = loop, thread, runtime
            # Stopped at exit (its pool's containers and cgroups with it),
            # forgotten in a forked child (_forget_after_fork).
            atexit.register(self.stop)
            _started.add(self)

    def call(self, work: Callable[[Runtime], Coroutine[Any, Any, T]]) -> T:
        """Run ``work(runtime)`` on the runtime's loop; wait for its result."""
        self.start()
        assert self.loop is not None
        assert self.runtime is not None
        return asyncio.run_coroutine_threadsafe(work(self.runtime), self.loop).result()

    def execute(self, spec: JobSpec, task_id: str | None = None) -> JobResult:
        """:meth:`Runtime.execute`, blocking."""
        return self.call(lambda runtime: runtime.execute(spec, task_id=task_id))

    def pool_stats(self) -> PoolStats | None:
        """The warm pool's counters, if the runtime has started."""
        return self.runtime.pool_stats() if self.runtime is not None else None

    def stop(self) -> None:
        """Close the runtime (its teardowns and pool first), stop the loop."""
        with self._lock:
            atexit.unregister(self.stop)
            _started.discard(self)
            if self.runtime is None or self.loop is None or self._thread is None:
                return
            try:
                asyncio.run_coroutine_threadsafe(self.runtime.aclose(), self.loop).result(30)
            except Exception:
                log.exception("closing the sandbox runtime")
            finally:
                self.runtime.close()
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(10)
                if not self.loop.is_running():
                    self.loop.close()
                self.runtime = self.loop = self._thread = None

    def forget(self) -> None:
        """In a forked child: drop the parent's runtime without touching it."""
        atexit.unregister(self.stop)
        _started.discard(self)
        if self.runtime is not None:
            self.runtime.forget()
        self.runtime = self.loop = self._thread = None
        self._lock = threading.Lock()


_background: RuntimeThread | None = None
_background_lock = threading.Lock()
_started: weakref.WeakSet[RuntimeThread] = weakref.WeakSet()  # every started RuntimeThread


def _forget_after_fork() -> None:
    """In a forked child: let go of the parent's runtimes without touching their
    containers (they are the parent's), and start afresh on the next call."""
    global _background
    for runtime in _defaults.values():
        atexit.unregister(runtime.close)
        runtime.forget()
    for thread in list(_started):
        thread.forget()
    _defaults.clear()
    _background = None


os.register_at_fork(after_in_child=_forget_after_fork)


async def _execute_and_settle(runtime: Runtime, spec: JobSpec) -> JobResult:
    """A job on a loop that ends with it: its container's teardown is awaited too."""
    try:
        return await runtime.execute(spec)
    finally:
        await runtime.pool_settled()


async def execute(spec: JobSpec, *, runtime: Runtime | None = None) -> JobResult:
    """Run one job and return its result (asyncio).

    Args:
        spec: the job.
        runtime: an open runtime; by default a process-wide one, opened on first use.

    Raises:
        SpecError, UnsupportedError, SetupError: see :meth:`Runtime.execute`.
    """
    return await (runtime or default_runtime()).execute(spec)


def execute_sync(spec: JobSpec, *, runtime: Runtime | None = None, pool: bool = True) -> JobResult:
    """Run one job and return its result, blocking. Not for use inside an event loop.

    Without ``runtime``, jobs run on a process-wide warm runtime started on
    first use (in a thread of its own), shut down at exit, and started anew
    in a forked child. ``pool=False`` is for a process that runs one job
    (``sandbox run``): no warm pool is built for jobs that will not come.
    """
    if runtime is None and not pool:
        runtime = default_runtime(warm=False)
    if runtime is not None:
        return asyncio.run(_execute_and_settle(runtime, spec))
    global _background
    with _background_lock:
        if _background is None:
            _background = RuntimeThread()
            _background.start()
        background = _background
    return background.execute(spec)


def try_a_job(settings: Settings) -> Check:
    """The proof that this host can sandbox: one real job, end to end, with ``settings``.

    `sandbox doctor` runs it after its checks, `sandbox health` (the deploy
    files' probe) after the worker's and Redis's.
    """
    from sandbox.errors import SandboxError
    from sandbox.result import Status

    async def probe() -> JobResult:
        async with Runtime(settings, pool_size=0) as runtime:
            return await runtime.execute(JobSpec(code="echo ok", language="sh"))

    start = time.monotonic()
    try:
        result = asyncio.run(probe())
    except SandboxError as exc:
        return Check("container", False, str(exc), "run `sandbox doctor` as root for each check")
    elapsed = (time.monotonic() - start) * 1000
    if result.status is not Status.OK or result.stdout != "ok\n":
        detail = f"a test job ended {result.status} ({result.stdout!r}): {result.error}"
        return Check("container", False, detail)
    return Check("container", True, f"ran a test job in {elapsed:.0f} ms")
