"""The parent side: asyncio orchestration of jobs.

A :class:`Runtime` owns the host-wide pieces (settings, cgroup setup, the
default image, the spawner process, an owner lock). :meth:`Runtime.execute`
runs one job: build the plan, create the cgroup, ask the spawner for a
container, then watch it (events, output, wall and CPU time) and collect the
result. Whatever happens (success, a limit, an exception, a timeout,
cancellation) the container is killed if still running, awaited, and its
cgroup removed before ``execute`` returns or raises.

Nothing here blocks the event loop for long: descriptors are non-blocking and
watched with ``loop.add_reader``; cgroupfs reads are in-memory and short.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import host
from sandbox.caps import last_capability
from sandbox.cgroups import Cgroup, CgroupSetup, detect_setup
from sandbox.errors import CleanupError, SandboxError, SetupError, setup_error_for
from sandbox.image import Image, ensure_host_image
from sandbox.plan import build_plan
from sandbox.result import JobResult, Status
from sandbox.settings import Settings
from sandbox.spec import JobSpec

__all__ = ["Runtime", "execute", "execute_sync"]

log = logging.getLogger("sandbox")

_CHUNK = 65536
_KILL_GRACE = 10.0  # seconds to wait for a killed container to be gone


class _Stream:
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
            chunk = os.read(self.fd, _CHUNK)
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


@dataclass
class _Job:
    """What the supervisor knows of one running container."""

    sock: socket.socket
    loop: asyncio.AbstractEventLoop
    started: asyncio.Future[int]
    done: asyncio.Future[None]
    pidfd: int = -1
    exit: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    ended_ns: int | None = None
    kill_reason: str | None = None
    kill_pending: bool = False
    events: list[str] = field(default_factory=list)

    def readable(self) -> None:
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(self.sock, 4096, 1)
            except BlockingIOError:
                return
            except OSError:
                msg, fds = b"", []
            if not msg:
                self.loop.remove_reader(self.sock.fileno())
                if not self.done.done():
                    self.done.set_result(None)
                if not self.started.done():
                    self.started.set_result(0)
                return
            self._event(json.loads(msg), fds)

    def _event(self, event: dict[str, Any], fds: list[int]) -> None:
        kind = event.get("event")
        self.events.append(str(kind))
        if kind == "spawned" and fds:
            self.pidfd = fds[0]
            if self.kill_pending:
                self.kill(self.kill_reason)
        elif kind == "started" and not self.started.done():
            self.started.set_result(int(event["t"]))
        elif kind == "exit":
            self.exit = event
            self.ended_ns = int(event["t"])
        elif kind == "error" and self.error is None:
            self.error = event
        for fd in fds[1:] if kind == "spawned" else fds:
            os.close(fd)

    def kill(self, reason: str | None) -> None:
        """SIGKILL process C; its children follow it (PR_SET_PDEATHSIG)."""
        if self.kill_reason is None:
            self.kill_reason = reason
        if self.pidfd < 0:
            self.kill_pending = True
            return
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


def _memfd(name: str, data: bytes) -> int:
    """An immutable in-memory file holding ``data``, positioned at its start.

    Sealed against writes, growth and shrinking: the job reads its stdin from
    one, and must not be able to change what another process reads.
    """
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


class Runtime:
    """Runs jobs on this host. Open it once, run many jobs, close it.

    Usage::

        async with Runtime() as rt:
            result = await rt.execute(JobSpec(code="print(1)"))

    Jobs from one event loop may run concurrently.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.owner = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._counter = itertools.count(1)
        self._cgroups: CgroupSetup | None = None
        self._image: Image | None = None
        self._lock_fd = -1
        self._control: socket.socket | None = None
        self._spawner: subprocess.Popen[bytes] | None = None
        self._last_cap = last_capability()

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> None:
        """Check the host, claim our state, reclaim a crashed runtime's leftovers.

        Raises:
            UnsupportedError: the host cannot run sandboxes (says how to fix it).
        """
        if self._control is not None:
            return
        host.require_capable(self.settings)
        s = self.settings
        for path in (s.run_dir, s.run_dir / "mnt", s.run_dir / "owners", s.state_dir):
            path.mkdir(parents=True, exist_ok=True)
        self._cgroups = detect_setup(s.cgroup_root, s.cgroup_parent)
        self._cgroups.ensure_parent()
        self._lock_fd = _claim_lock(s.run_dir / "owners" / f"{self.owner}.lock")
        reclaim(self.settings, self._cgroups)
        self._image = ensure_host_image(s.state_dir)
        self._start_spawner()

    def close(self) -> None:
        """Stop the spawner and release the owner lock."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._spawner is not None:
            try:
                self._spawner.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._spawner.kill()
                self._spawner.wait()
            self._spawner = None
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self.settings.run_dir / "owners" / f"{self.owner}.lock")
            os.close(self._lock_fd)
            self._lock_fd = -1

    async def __aenter__(self) -> Runtime:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _start_spawner(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._spawner = subprocess.Popen(
                [sys.executable, "-m", "sandbox.spawner", str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # terminal signals are the supervisor's to handle
                env={
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "PYTHONPATH": _package_root(),
                },
            )
        finally:
            child.close()
        parent.setblocking(False)
        self._control = parent

    def _control_socket(self) -> socket.socket:
        if self._control is None:
            self.open()
        elif self._spawner is not None and self._spawner.poll() is not None:
            log.error("sandbox spawner exited with %s; restarting it", self._spawner.returncode)
            self._control.close()
            self._start_spawner()
        assert self._control is not None
        return self._control

    # -- one job -----------------------------------------------------------

    async def execute(self, spec: JobSpec) -> JobResult:
        """Run one job in a fresh container and return its result.

        Args:
            spec: the job.

        Returns:
            The result; limits hit are statuses, not exceptions.

        Raises:
            SpecError: the spec exceeds what this host allows.
            UnsupportedError: the host cannot run sandboxes.
            SetupError: the container could not be built.
        """
        control = self._control_socket()
        assert self._cgroups is not None
        assert self._image is not None
        name = f"{self.owner}.{next(self._counter)}"
        plan = build_plan(
            spec,
            self.settings,
            self._image,
            cgroup_procs=self._cgroups.open(name).procs_files(),
            last_cap=self._last_cap,
        )
        cgroup = self._cgroups.create(name)
        try:
            cgroup.set_limits(memory_bytes=spec.limits.memory, pids_max=spec.limits.pids)
            return await self._run(control, plan.to_json(), spec, cgroup)
        finally:
            await asyncio.shield(_remove_cgroup(cgroup))

    async def _run(
        self, control: socket.socket, plan: bytes, spec: JobSpec, cgroup: Cgroup
    ) -> JobResult:
        loop = asyncio.get_running_loop()
        lim = spec.limits
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        child_fds: list[int] = []
        streams: list[_Stream] = []
        job: _Job | None = None
        cpu_task: asyncio.Task[None] | None = None
        try:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            child_fds.append(out_w)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            child_fds.append(err_w)
            child_fds += [
                _memfd("plan", plan),
                _memfd("code", spec.code.encode()),
                _memfd("stdin", spec.stdin.encode()),
            ]
            ours.setblocking(False)
            job = _Job(ours, loop, loop.create_future(), loop.create_future())
            loop.add_reader(ours.fileno(), job.readable)
            kill_job = job.kill
            streams = [
                _Stream(out_r, lim.output, lambda: kill_job("output")),
                _Stream(err_r, lim.output, lambda: kill_job("output")),
            ]
            await _send_request(control, [theirs.fileno(), *child_fds[2:], out_w, err_w])
            for fd in child_fds:
                os.close(fd)
            child_fds.clear()
            theirs.close()

            try:
                started_ns = await asyncio.wait_for(
                    asyncio.shield(job.started), self.settings.setup_timeout
                )
            except TimeoutError:
                job.kill("setup")
                started_ns = 0
            if started_ns:
                cpu_task = asyncio.create_task(
                    _watch_cpu(cgroup, int(lim.cpu_time * 1e9), lambda: kill_job("cpu_time"))
                )
                remaining = lim.wall_time - (time.monotonic_ns() - started_ns) / 1e9
                try:
                    await asyncio.wait_for(asyncio.shield(job.done), max(remaining, 0))
                except TimeoutError:
                    job.kill("wall_time")
            await _wait_gone(job, streams)
        except BaseException:
            if job is not None:
                job.kill("cancelled")
                with contextlib.suppress(Exception):
                    await asyncio.shield(_wait_gone(job, streams))
            raise
        finally:
            if cpu_task is not None:
                cpu_task.cancel()
            for fd in child_fds:
                os.close(fd)
            theirs.close()
            for stream in streams:
                stream.close()
            if job is not None:
                job.close()
            else:
                ours.close()

        return self._result(job, streams, cgroup, spec)

    def _result(
        self, job: _Job, streams: list[_Stream], cgroup: Cgroup, spec: JobSpec
    ) -> JobResult:
        if job.kill_reason == "setup":
            raise SetupError(
                f"container setup took longer than {self.settings.setup_timeout:g} s", step="setup"
            )
        if job.error is not None and job.exit is None:
            err = job.error
            step = str(err.get("step", "setup"))
            raise setup_error_for(step)(
                str(err.get("message", "container setup failed")),
                step=step,
                path=err.get("path"),
                errno=err.get("errno"),
            )
        if job.exit is None and job.kill_reason is None:
            raise SetupError(f"container ended without a result (events: {job.events})")
        stats = cgroup.stats()
        lim = spec.limits
        exit_code = job.exit.get("exit_code") if job.exit else None
        sig = job.exit.get("signal") if job.exit else signal.SIGKILL
        cpu_time = stats.cpu_ns / 1e9
        started = job.started.result() if job.started.done() else 0
        ended = job.ended_ns or time.monotonic_ns()
        wall_time = (ended - started) / 1e9 if started else 0.0
        oom = stats.oom_kills > 0
        timed_out = job.kill_reason in ("wall_time", "cpu_time") or cpu_time >= lim.cpu_time
        truncated = any(s.truncated for s in streams)
        if job.kill_reason == "output":
            status = Status.OUTPUT_LIMIT
        elif job.kill_reason in ("wall_time", "cpu_time"):
            status = Status.TIMEOUT
        elif oom:
            status = Status.MEMORY_LIMIT
        elif timed_out:
            status = Status.TIMEOUT
        elif exit_code == 0:
            status = Status.OK
        else:
            status = Status.RUNTIME_ERROR
        return JobResult(
            status=status,
            stdout=streams[0].data.decode(errors="replace"),
            stderr=streams[1].data.decode(errors="replace"),
            exit_code=exit_code,
            signal=sig,
            oom_killed=oom,
            timed_out=timed_out,
            pids_limit_hit=stats.pids_limit_hits > 0,
            output_truncated=truncated,
            wall_time=round(wall_time, 6),
            cpu_time=round(cpu_time, 6),
            memory_peak=stats.memory_peak,
        )


async def _send_request(control: socket.socket, fds: list[int]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            socket.send_fds(control, [b"run"], fds)
            return
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_writer(control.fileno(), ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_writer(control.fileno())
        except OSError as exc:
            raise SetupError(f"the spawner is gone: {exc.strerror}", step="spawn") from exc


async def _wait_gone(job: _Job, streams: list[_Stream]) -> None:
    """Wait until the container has exited and its output is drained."""
    waits = [job.done, *(s.eof for s in streams)]
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.gather(*waits)), _KILL_GRACE)
    except TimeoutError:
        job.kill("cleanup")
        await asyncio.wait_for(asyncio.shield(asyncio.gather(*waits)), _KILL_GRACE)


async def _watch_cpu(cgroup: Cgroup, limit_ns: int, kill: Callable[[], None]) -> None:
    """Kill the job when its cgroup's CPU time reaches the limit."""
    cpus = os.cpu_count() or 1
    while True:
        used = cgroup.cpu_usage_ns()
        if used >= limit_ns:
            kill()
            return
        # The earliest moment the limit can be reached, all CPUs busy.
        await asyncio.sleep(max(0.005, (limit_ns - used) / 1e9 / cpus))


async def _remove_cgroup(cgroup: Cgroup) -> None:
    delay = 0.001
    for attempt in range(12):
        try:
            cgroup.destroy()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise CleanupError(f"cannot remove cgroup {cgroup.name}: {exc}") from exc
        if attempt == 4:
            with contextlib.suppress(SandboxError):
                cgroup.kill()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    log.error("cgroup %s still busy; the next start reclaims it", cgroup.name)
    raise CleanupError(f"cannot remove cgroup {cgroup.name}: still busy")


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _claim_lock(path: Path) -> int:
    """Create and lock our owner file; a live lock marks our cgroups as ours."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # a reclaimer removed it between open and lock; retry


def _owner_alive(owners: Path, owner: str) -> bool:
    path = owners / f"{owner}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return True
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # stale: remove it while we hold its lock
    os.close(fd)
    return False


def reclaim(settings: Settings, cgroups: CgroupSetup) -> list[str]:
    """Remove the cgroups and lock files of runtimes that died.

    Only names under our parent whose owner's lock is not held are touched.

    Returns:
        The names of the cgroups removed.
    """
    owners = settings.run_dir / "owners"
    alive: dict[str, bool] = {}
    removed = []
    for name in cgroups.children():
        owner = name.rsplit(".", 1)[0]
        if owner not in alive:
            alive[owner] = _owner_alive(owners, owner)
        if alive[owner]:
            continue
        cgroup = cgroups.open(name)
        for _ in range(100):
            if cgroup.is_empty():
                break
            cgroup.kill()
            time.sleep(0.01)
        try:
            cgroup.destroy()
            removed.append(name)
        except OSError as exc:
            log.error("cannot reclaim cgroup %s: %s", name, exc)
    if owners.is_dir():
        for lock in owners.glob("*.lock"):
            owner = lock.name[: -len(".lock")]
            if owner not in alive:
                _owner_alive(owners, owner)
    if removed:
        log.warning("reclaimed %d cgroup(s) of dead runtimes: %s", len(removed), ", ".join(removed))
    return removed


_default: Runtime | None = None


def default_runtime() -> Runtime:
    """The process-wide runtime used by :func:`execute` when none is given."""
    global _default
    if _default is None:
        runtime = Runtime()
        runtime.open()
        _default = runtime
        import atexit

        atexit.register(runtime.close)
    return _default


async def execute(spec: JobSpec, *, runtime: Runtime | None = None) -> JobResult:
    """Run one job and return its result (asyncio).

    Args:
        spec: the job.
        runtime: an open runtime; by default a process-wide one, opened on first use.

    Raises:
        SpecError, UnsupportedError, SetupError: see :meth:`Runtime.execute`.
    """
    return await (runtime or default_runtime()).execute(spec)


def execute_sync(spec: JobSpec, *, runtime: Runtime | None = None) -> JobResult:
    """Run one job and return its result, blocking. Not for use inside an event loop."""
    return asyncio.run(execute(spec, runtime=runtime))
