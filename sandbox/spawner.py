"""The spawner: a small single-threaded process that forks containers.

Forking from a process that has other threads is unsafe (a lock held by
another thread stays locked forever in the child), and the supervisor is an
asyncio program whose loop, executor and libraries may run threads. So the
runtime starts this process once (``python -m sandbox.spawner FD``), before
any job, and asks it for each container over a SOCK_SEQPACKET socket. A
forked Python process costs well under a millisecond; re-executing an
interpreter per job would cost 15 ms or more (docs/adr/0002).

Protocol: each request is one message ``prepare`` carrying the container's
job socket, a memfd holding its :class:`~sandbox.plan.ContainerPlan`, and the
``cgroup.procs`` descriptors of its cgroup (one per hierarchy). The spawner forks process C, opens a
pidfd of it while it is still an unreaped child (so the pid cannot have been
reused), and sends ``spawned`` with that pidfd on the job socket. Everything
else (the job itself) goes over the job socket, not through the spawner,
which never waits for a container. It reaps its children (and, as a child subreaper, any
orphaned container init) from a SIGCHLD handler.

It exits when the supervisor's end of the control socket closes, killing the
containers it started; each container dies with its parent in turn
(PR_SET_PDEATHSIG), so a killed supervisor leaves no process behind.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import sys

from sandbox.init import run_container
from sandbox.seccomp import SeccompUnavailable, preload
from sandbox.syscalls import LINUX, PR_SET_CHILD_SUBREAPER, set_process_title

__all__ = ["main"]

MIN_FDS = 2
MAX_FDS = 32  # job socket, plan, one cgroup.procs per hierarchy
# Each live child C and our copy of its job socket. We close the copy only
# once C is reaped, so the supervisor's EOF means "C is gone, not a zombie".
_children: dict[int, int] = {}


def _reap(_signum: int = 0, _frame: object = None) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        job_fd = _children.pop(pid, None)  # None: an orphaned init we adopted
        if job_fd is not None:
            os.close(job_fd)


def _spawn(fds: list[int], me: int, control: socket.socket) -> None:
    job = socket.socket(fileno=fds[0])
    keep = False
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                control.close()
                for other in _children.values():  # other containers' sockets
                    os.close(other)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                job.detach()  # run_container owns the descriptor now
                run_container(fds[0], fds[1], fds[2:], me)
            _children[pid] = fds[0]
            keep = True
            pidfd = os.pidfd_open(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        try:
            socket.send_fds(job, [json.dumps({"event": "spawned", "pid": pid}).encode()], [pidfd])
        finally:
            os.close(pidfd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            job.send(
                json.dumps({"event": "error", "step": "fork", "message": f"fork: {exc}"}).encode()
            )
    finally:
        if keep:
            job.detach()  # closed by _reap once C is reaped
        else:
            job.close()
        for fd in fds[1:]:
            os.close(fd)


def main(argv: list[str]) -> int:
    """Serve container requests on the control socket given as ``argv[1]``."""
    control = socket.socket(fileno=int(argv[1]))
    me = os.getpid()
    set_process_title("sandbox-spawner")
    with contextlib.suppress(SeccompUnavailable):
        preload()  # a container that needs it and lacks it reports the error
    # Forked children touch as few pages as possible: no collector runs in
    # them (each run would write to every object header, copying the pages).
    gc.collect()
    gc.freeze()
    gc.disable()
    LINUX.prctl(PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while True:
            msg, fds, _, _ = socket.recv_fds(control, 16, MAX_FDS)
            if not msg:
                break  # the supervisor is gone
            if msg != b"prepare" or len(fds) < MIN_FDS:
                for fd in fds:
                    os.close(fd)
                continue
            _spawn(fds, me, control)
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        for pid in list(_children):  # unreaped children: the pids are still theirs
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
