"""The supervisor's handle on one container, from the spawn request to its exit.

A container is asked of the launcher with its :class:`~sandbox.plan.ContainerPlan`
and a cgroup of its own (created here, joined by the job's process while the
container is built). It reports over its own job socket (a SOCK_SEQPACKET
pair, one message per event): ``spawned`` (with a pidfd of process C, from
the launcher), ``init`` (with a pidfd of the container's init, from C),
``ready`` (waiting for a job), ``started``, ``exit``, or ``error``. EOF on the
socket means every process of the container has exited and been reaped.
:meth:`Container.kill` takes the whole container down in any phase (see
:mod:`sandbox.init`); :meth:`Container.remove` waits for the end and removes
the cgroup.

All waiting is done by the event loop (``add_reader``); nothing here blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sandbox.errors import CleanupError, SandboxError, SetupError, setup_error_for
from sandbox.kernel.cgroups import Cgroup
from sandbox.kernel.netns import NetNamespace
from sandbox.kernel.slots import Slot
from sandbox.plan import ContainerPlan

log = logging.getLogger("sandbox")

__all__ = ["Container", "destroy_cgroup", "destroy_cgroup_now", "memfd", "within"]


async def within(awaitable: asyncio.Future[Any], seconds: float) -> bool:
    """Wait for ``awaitable`` (shielded) for at most ``seconds``; False on time-out.

    Uses ``asyncio.timeout``: unlike ``wait_for`` on Python 3.11, it never
    swallows a cancellation that arrives as the awaited thing completes.
    """
    if awaitable.done():  # the usual case on a job's path: no timer to make
        return True
    try:
        async with asyncio.timeout(seconds):
            await asyncio.shield(awaitable)
    except TimeoutError:
        return False
    return True


def memfd(name: str, data: bytes) -> int:
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


class Container:
    """One container, as seen from the supervisor. Create with :meth:`spawn`."""

    def __init__(
        self,
        sock: socket.socket,
        plan: ContainerPlan,
        cgroup: Cgroup,
        dispose: Callable[[Container], Awaitable[None]] | None = None,
        root_owner: int | None = None,
        netns: NetNamespace | None = None,
    ) -> None:
        self.plan = plan
        self.cgroup = cgroup
        # Its shared network namespace (plan.shared_net): handed in, or made by C.
        self.netns = netns
        # Host uid of root inside: its own id range's (None without a user namespace).
        if root_owner is None and plan.userns:
            root_owner = plan.root_owner
        self.root_owner = root_owner
        self._dispose = dispose or _destroy
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.started: asyncio.Future[int] = self.loop.create_future()
        self.done: asyncio.Future[None] = self.loop.create_future()
        # The job's main process is gone (exit event), or the whole container is.
        self.exited: asyncio.Future[None] = self.loop.create_future()
        self.spawned_at = time.monotonic()
        self.ready_at: float | None = None
        self.pidfd = -1
        self.init_pidfd = -1
        self.pid: int | None = None  # of process C, for diagnostics; kill via pidfd only
        self.init_pid: int | None = None  # of process I, host pid ns; alive until released
        self.exit: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.ended_ns: int | None = None
        self.kill_reason: str | None = None
        self._kill_pending = False
        self._cgroup_kill: asyncio.Future[None] | None = None
        self.id_range: Slot | None = None  # its host id range, released when it is removed
        self.events: list[str] = []
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def spawn(
        cls,
        control: socket.socket,
        plan: ContainerPlan,
        cgroup: Cgroup,
        dispose: Callable[[Container], Awaitable[None]] | None = None,
        root_owner: int | None = None,
        netns: NetNamespace | None = None,
    ) -> Container:
        """Ask the launcher for a new container in ``cgroup``; it builds in the background.

        The returned container owns the cgroup and its network namespace (
        ``netns`` to join, or the one C makes for a shared-net plan):
        :meth:`remove` hands itself to ``dispose`` once every process of the
        container is gone (by default both are destroyed; the runtime keeps
        them for other jobs).

        Raises:
            SetupError: the launcher is gone, or the cgroup cannot be opened.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds: list[int] = []
        container = cls(ours, plan, cgroup, dispose, root_owner, netns)
        try:
            wire = plan.to_wire(container.root_owner, netns=netns is not None)
            fds.append(memfd("container-plan", wire))
            held = [netns.fd] if netns is not None else []  # its own: not closed here
            held += cgroup.join_fds()
            await _send_fds(control, b"prepare", [theirs.fileno(), *fds, *held])
        except OSError as exc:
            container.kill("setup")
            container.close()
            container.close_netns()
            raise SetupError(f"cannot start a container: {exc}", step="spawn") from exc
        except BaseException:
            container.kill("setup")
            container.close()
            container.close_netns()
            raise
        finally:
            theirs.close()
            for fd in fds:
                os.close(fd)
        return container

    # -- events --------------------------------------------------------------

    def _readable(self) -> None:
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(self.sock, 4096, 8)
            except BlockingIOError:
                return
            except OSError:
                msg, fds = b"", []
            if not msg:
                self._eof()
                return
            self._event(json.loads(msg), fds)

    def _eof(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        for future in (self.done, self.ready, self.exited):
            if not future.done():
                future.set_result(None)
        if not self.started.done():
            self.started.set_result(0)

    def _event(self, event: dict[str, Any], fds: list[int]) -> None:
        kind = event.get("event")
        self.events.append(str(kind))
        if kind == "spawned" and fds:
            self.pidfd = fds.pop(0)
            self.pid = int(event.get("pid", 0)) or None
            if self._kill_pending:
                self.kill(self.kill_reason)
        elif kind == "init" and fds:
            self.init_pidfd = fds.pop(0)
            self.init_pid = int(event.get("pid", 0)) or None
            if self._kill_pending:
                self.kill(self.kill_reason)
        elif kind == "netns" and self.netns is None:
            try:
                self.netns = NetNamespace.from_event(str(event.get("files", "")), fds)
            except (OSError, ValueError) as exc:  # its fds are closed: it is just not kept
                log.warning("cannot keep a container's network namespace: %s", exc)
            fds = []
        elif kind == "ready" and not self.ready.done():
            self.ready_at = time.monotonic()
            self.ready.set_result(None)
        elif kind == "started" and not self.started.done():
            self.started.set_result(int(event["t"]))
        elif kind == "exit":
            self.exit = event
            self.ended_ns = int(event["t"])
            if not self.exited.done():
                self.exited.set_result(None)
            if not self.started.done():  # the job failed before its execve
                self.started.set_result(0)
        elif kind == "error" and self.error is None:
            self.error = event
            if not self.ready.done():  # a failed setup: wait_ready raises it now
                self.ready.set_result(None)
        for fd in fds:
            os.close(fd)

    @property
    def alive(self) -> bool:
        """True while the container may still run a job."""
        return not self.done.done() and self.error is None and self.kill_reason is None

    def raise_setup_error(self) -> None:
        """Raise the container's reported setup failure, if any.

        Raises:
            SetupError: the subclass for the failed step, with its errno and path.
        """
        if self.error is None:
            return
        err = self.error
        step = str(err.get("step", "setup"))
        raise setup_error_for(step)(
            str(err.get("message", "container setup failed")),
            step=step,
            path=err.get("path"),
            errno=err.get("errno"),
        )

    async def wait_ready(self, limit: float) -> None:
        """Wait until the container waits for its job.

        Raises:
            SetupError: setup failed, took longer than ``limit`` seconds, or
                the container died.
        """
        if not await within(self.ready, limit):
            self.kill("setup")
            raise SetupError(f"container setup took longer than {limit:g} s", step="setup")
        self.raise_setup_error()
        if self.done.done():
            raise SetupError(f"container exited before its job (events: {self.events})")

    async def run(self, fds: list[int]) -> None:
        """Hand the container its job: the ``run`` message and its descriptors."""
        await _send_fds(self.sock, b"run", fds)

    def root_fd(self) -> int:
        """An O_PATH descriptor of the container's root, while its init waits for release.

        Raises:
            OSError: the init is gone.
        """
        if self.init_pid is None or self.init_pidfd < 0:
            raise OSError(errno.ESRCH, "the container's init is not known")
        fd = os.open(f"/proc/{self.init_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            signal.pidfd_send_signal(self.init_pidfd, 0)  # still ours: the pid was not reused
        except OSError:
            os.close(fd)
            raise
        return fd

    def release(self) -> None:
        """Let the init exit after the job's exit: the container ends."""
        with contextlib.suppress(OSError):
            self.sock.send(b"release")

    # -- ending ----------------------------------------------------------------

    def kill(self, reason: str | None) -> None:
        """SIGKILL the container: its init if known (the pid namespace dies with
        it, then C reaps it and exits), else C (its children follow by PDEATHSIG).
        """
        if self.kill_reason is None:
            self.kill_reason = reason
        target = self.init_pidfd if self.init_pidfd >= 0 else self.pidfd
        if target < 0:
            self._kill_pending = True
        else:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(target, signal.SIGKILL)
        # Also through the cgroup: a job that froze its own cgroup (root in a
        # nested user namespace can) ignores SIGKILL until thawed; this thaws.
        # On v1 that is freeze, kill, thaw, polling the freeze: in a thread,
        # so that the event loop (other jobs' timers and output) never waits.
        if self._cgroup_kill is not None and not self._cgroup_kill.done():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            try:
                self._cgroup_kill = running.run_in_executor(None, self._kill_cgroup)
                return
            except RuntimeError:  # the interpreter is exiting: no new threads
                pass
        self._kill_cgroup()

    def _kill_cgroup(self) -> None:
        with contextlib.suppress(SandboxError, OSError):
            self.cgroup.kill()

    async def remove(self, grace: float = 10.0) -> None:
        """Wait for the container to be gone (killing it after ``grace`` s), then
        dispose of its cgroup (recycled or removed).

        Raises:
            CleanupError: the cgroup stayed busy; the next start reclaims it.
        """
        try:
            if not await within(self.done, grace):
                self.kill("cleanup")
                await within(self.done, grace)
            if self._cgroup_kill is not None:
                await within(self._cgroup_kill, grace)  # it thaws what it froze
        finally:
            self.close()
            self._release_ids()
        if self.error is not None or self.kill_reason in ("setup", "cleanup"):
            self.close_netns()  # never reuse what a failure left
            await destroy_cgroup(self.cgroup)
        else:
            await self._dispose(self)

    def remove_sync(self) -> None:
        """Kill the container and remove its cgroup, blocking (no event loop needed)."""
        self.kill("discard")
        pidfd = self.pidfd
        if pidfd >= 0:
            with contextlib.suppress(OSError):
                poll = select.poll()  # not select(): our descriptors may pass FD_SETSIZE
                poll.register(pidfd, select.POLLIN)
                poll.poll(5000)  # readable once C has exited
        self.close()
        self.close_netns()
        self._release_ids()
        destroy_cgroup_now(self.cgroup)

    def _release_ids(self) -> None:
        if self.id_range is not None:
            self.id_range.release()
            self.id_range = None

    def close_netns(self) -> None:
        """Let go of its network namespace (not kept for another container)."""
        if self.netns is not None:
            self.netns.close()
            self.netns = None

    def dismiss(self) -> None:
        """Tell a ready container that no job is coming: its init exits."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Release our descriptors (the processes are the launcher's to reap)."""
        for fd in (self.pidfd, self.init_pidfd):
            if fd >= 0:
                os.close(fd)
        self.pidfd = self.init_pidfd = -1
        if self.sock.fileno() >= 0:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


async def _destroy(container: Container) -> None:
    """The default disposal: nothing of a container is kept."""
    container.close_netns()
    await destroy_cgroup(container.cgroup)


def destroy_cgroup_now(cgroup: Cgroup) -> None:
    """:func:`destroy_cgroup`, blocking (no event loop): a failure is logged, not raised."""
    for _ in range(100):
        try:
            cgroup.destroy()
            return
        except OSError:
            with contextlib.suppress(SandboxError):
                cgroup.kill()
            time.sleep(0.01)
        except SandboxError as exc:
            log.error("cannot remove cgroup %s: %s", cgroup.name, exc)
            return
    log.error("cgroup %s still busy; the next start reclaims it", cgroup.name)


async def destroy_cgroup(cgroup: Cgroup) -> None:
    """Remove an empty job cgroup, waiting out the moment it takes the kernel to
    let go of exited processes (and killing through it if some remain).

    Raises:
        CleanupError: the cgroup stayed busy; the next start reclaims it.
    """
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


async def _send_fds(sock: socket.socket, message: bytes, fds: list[int]) -> None:
    """Send one message with descriptors on a non-blocking SEQPACKET socket.

    Raises:
        SetupError: the peer is gone.
    """
    loop = asyncio.get_running_loop()
    while True:
        try:
            socket.send_fds(sock, [message], fds)
            return
        except BlockingIOError:
            writable: asyncio.Future[None] = loop.create_future()
            loop.add_writer(sock.fileno(), _set_once, writable)
            try:
                await writable
            finally:
                loop.remove_writer(sock.fileno())
        except OSError as exc:
            raise SetupError(f"cannot reach the container's peer: {exc.strerror}") from exc


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
