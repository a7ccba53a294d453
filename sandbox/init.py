"""The child side of a container: from a fork of the spawner to the job's execve.

Synchronous, no event loop, no pydantic: it runs in forks of the spawner
(:mod:`sandbox.spawner`) and reads its :class:`~sandbox.plan.Plan` from an
inherited file descriptor, like ``runc init``. Three processes::

    spawner ── C (host pid ns)  unshare(mnt, pid, ipc, uts, net); fork; wait for I
                └── I (pid 1)   rootfs, /proc, /dev, hostname, lo; fork; reap all; report
                     └── J      join cgroup; unshare(cgroup); rlimits; drop caps; execve

Why three: after unshare(CLONE_NEWPID) only the *next* child is pid 1 of the
new namespace, and /proc must be mounted from inside it. I stays our code as
pid 1: it reaps zombies and, when it exits after the job's main process, the
kernel kills every process left in the namespace (daemons included) before C
sees I exit. Only J's tree is in the job's cgroup, so memory and CPU figures
are the job's own, not our Python's.

Life lines: C and I die with SIGKILL if their parent dies (PR_SET_PDEATHSIG),
so killing C (the supervisor holds a pidfd of it) tears down the whole
container, in any phase. Events go to the supervisor over the job socket as
small JSON messages: ``started`` and ``exit`` from I, ``error`` from C or I.
The socket's EOF means C, and so everything, has exited.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import NoReturn

from sandbox import caps, limits, namespaces, rootfs
from sandbox.plan import Plan
from sandbox.syscalls import CLONE_NEWCGROUP, LINUX, PR_SET_PDEATHSIG

__all__ = ["ContainerFds", "run_container"]


class _StepFailed(Exception):
    pass


class ContainerFds:
    """The descriptors a container receives from the supervisor."""

    def __init__(
        self, job: int, plan: int, code: int, stdin: int, stdout: int, stderr: int
    ) -> None:
        self.job = job
        self.plan = plan
        self.code = code
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr


def _send(sock: socket.socket, event: str, **fields: object) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps({"event": event, **fields}).encode())


@contextlib.contextmanager
def _step(sock: socket.socket, name: str) -> Iterator[None]:
    """Report a failure of this setup step to the supervisor, then give up."""
    try:
        yield
    except Exception as exc:
        _send(
            sock,
            "error",
            step=name,
            message=f"{name}: {exc}",
            errno=getattr(exc, "errno", None),
            path=getattr(exc, "filename", None),
        )
        raise _StepFailed from exc


def _die_with_parent(lifeline: int) -> None:
    """SIGKILL this process when its parent dies, even if it already has.

    The parent may die between our fork and prctl; then no signal would come.
    ``lifeline`` is the read end of a pipe whose write end only the parent
    holds: at EOF, the parent is gone. (getppid() cannot tell: it is 0 in a
    new pid namespace.)
    """
    LINUX.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.set_blocking(lifeline, False)
    try:
        parent_gone = os.read(lifeline, 1) == b""
    except BlockingIOError:
        parent_gone = False
    os.close(lifeline)
    if parent_gone:
        os._exit(1)


def run_container(fds: ContainerFds, spawner_pid: int) -> NoReturn:
    """Process C: enter new namespaces, fork the container's init, wait for it."""
    sock = socket.socket(fileno=fds.job)
    try:
        LINUX.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != spawner_pid:
            os._exit(1)  # the spawner died before prctl
        with _step(sock, "plan"):
            plan = Plan.from_json(_read_all(fds.plan))
        with _step(sock, "unshare"):
            namespaces.enter_new_namespaces(plan.namespaces)
        lifeline, keep = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(keep)
            _container_init(plan, fds, sock, lifeline)
        os.close(lifeline)
        for fd in (fds.plan, fds.code, fds.stdin, fds.stdout, fds.stderr):
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        os._exit(0 if os.waitstatus_to_exitcode(status) == 0 else 1)
    except _StepFailed:
        os._exit(1)
    except BaseException as exc:  # never unwind into the spawner's loop
        _send(sock, "error", step="container", message=f"container: {exc!r}")
        os._exit(1)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _container_init(plan: Plan, fds: ContainerFds, sock: socket.socket, lifeline: int) -> NoReturn:
    """Process I, pid 1 of the container: build the root, start the job, reap, report."""
    try:
        _die_with_parent(lifeline)
        with _step(sock, "rootfs"):
            root = rootfs.mount_overlay(
                plan.mount_base, plan.lower_dirs, plan.disk_bytes, plan.disk_inodes
            )
        with _step(sock, "mount"):
            rootfs.apply_mounts(root, plan.mounts)
        with _step(sock, "workdir"):
            _write_source(root, plan, fds.code)
        with _step(sock, "cgroup"):
            # Opened now, while the host's cgroupfs is still in view.
            cgroup_fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in plan.cgroup_procs]
        with _step(sock, "hostname"):
            namespaces.set_hostname(plan.hostname)
        if plan.loopback:
            with _step(sock, "loopback"):
                namespaces.bring_up_loopback()
        with _step(sock, "pivot_root"):
            rootfs.pivot_into(root)
        exec_r, exec_w = os.pipe2(os.O_CLOEXEC)
        job = os.fork()
        if job == 0:
            os.close(exec_r)
            _exec_job(plan, fds, cgroup_fds, exec_w)
        started = time.monotonic_ns()
        os.close(exec_w)
        for fd in (*cgroup_fds, fds.plan, fds.code, fds.stdin, fds.stdout, fds.stderr):
            os.close(fd)
        failure = _read_all_pipe(exec_r)
        os.close(exec_r)
        if failure:
            _send(sock, "error", **json.loads(failure))
        else:
            _send(sock, "started", t=started)
        while True:  # reap everything; stop when the job's main process is gone
            pid, status = os.waitpid(-1, 0)
            if pid == job:
                break
        ended = time.monotonic_ns()
        if os.WIFSIGNALED(status):
            _send(sock, "exit", signal=os.WTERMSIG(status), t=ended)
        else:
            _send(sock, "exit", exit_code=os.WEXITSTATUS(status), t=ended)
        os._exit(0)  # the kernel now kills whatever is left in the namespace
    except _StepFailed:
        os._exit(1)
    except BaseException as exc:
        _send(sock, "error", step="init", message=f"init: {exc!r}")
        os._exit(1)


def _read_all_pipe(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_source(root: str, plan: Plan, code_fd: int) -> None:
    workdir = root + plan.workdir
    os.makedirs(workdir, exist_ok=True)
    os.chown(workdir, plan.uid, plan.gid)
    os.chmod(workdir, 0o755)
    path = root + plan.source_file
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        size = os.fstat(code_fd).st_size
        offset = 0
        while offset < size:
            sent = os.sendfile(out, code_fd, offset, size - offset)
            if sent == 0:
                break
            offset += sent
        os.fchown(out, plan.uid, plan.gid)
    finally:
        os.close(out)


def _exec_job(plan: Plan, fds: ContainerFds, cgroup_fds: list[int], exec_w: int) -> NoReturn:
    """Process J: the job. Anything that fails is written to ``exec_w`` as JSON."""
    step = "cgroup"
    try:
        # Join the cgroup first: everything the job does from here is accounted.
        for fd in cgroup_fds:
            os.write(fd, b"0")
            os.close(fd)
        step = "unshare"
        LINUX.unshare(CLONE_NEWCGROUP)
        step = "session"
        os.setsid()
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGXCPU, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        step = "stdio"
        os.dup2(fds.stdin, 0)
        os.dup2(fds.stdout, 1)
        os.dup2(fds.stderr, 2)
        if exec_w != 3:
            os.dup2(exec_w, 3, inheritable=False)
            exec_w = 3
        os.closerange(4, 1 << 20)
        step = "workdir"
        os.chdir(plan.workdir)
        step = "rlimits"
        limits.apply_rlimits(plan.rlimits)
        step = "capabilities"
        caps.drop_capabilities(plan.capabilities, plan.uid, plan.gid, last_cap=plan.last_cap)
        step = "execve"
        env = dict(item.split("=", 1) for item in plan.env)
        os.execve(plan.argv[0], list(plan.argv), env)
    except BaseException as exc:
        message = {
            "step": step,
            "message": f"{step}: {exc}",
            "errno": getattr(exc, "errno", None),
            "path": getattr(exc, "filename", None),
        }
        with contextlib.suppress(OSError):
            os.write(exec_w, json.dumps(message).encode())
    os._exit(127)
