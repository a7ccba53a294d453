"""The child side of a container: from a fork of the spawner to the job's execve.

Synchronous, no event loop, no pydantic: it runs in forks of the spawner
(:mod:`sandbox.spawner`) and reads its plans from inherited file descriptors,
like ``runc init``. Three processes::

    spawner ── C (host pid ns)  user ns; unshare(mnt); rootfs, /dev, binds (as host
                │               root); join the user ns; unshare(mnt, pid, ipc, uts,
                │               net); fork; wait for I
                └── I (pid 1)   /proc, hostname, lo, pivot_root; fork;
                     │          reap everything; report the job's exit
                     └── J      join the cgroup; unshare(cgroup); build the seccomp
                                filter; "ready"; wait for the job; write /box; rlimits;
                                drop caps; load seccomp; "started"; execve

Two phases, so that the warm pool can build containers before their jobs
exist: C, I and J carry out the :class:`~sandbox.plan.ContainerPlan`, and J
reports ``ready`` once it sits in the job's cgroup. Then J waits on the job
socket for one ``run`` message carrying the :class:`~sandbox.plan.JobPlan`,
the code, stdin, stdout and stderr. EOF instead means "not needed": J exits,
and with it the container.

Why three processes: after unshare(CLONE_NEWPID) only the *next* child is
pid 1 of the new namespace, and /proc must be mounted from inside it. I stays
our code as pid 1: it reaps zombies and, when it exits after the job's main
process, the kernel kills every process left in the namespace (daemons
included) before C sees I exit. Only J's tree is in the job's cgroup, so
memory and CPU figures are the job's own, not our Python's.

Life lines: C and I die with SIGKILL if their parent dies (PR_SET_PDEATHSIG).
The supervisor holds a pidfd of C (from the spawner) and one of I (from C).
Killing I ends the pid namespace, then C reaps I and exits: an orderly end.
Before I exists, killing C does it (I follows by PDEATHSIG). Events go to
the supervisor over the job socket as small JSON messages: ``init`` from C,
``ready`` and ``started`` from J, ``exit`` from I, ``error`` from any. The
spawner closes its copy of the socket when it has reaped C, so EOF means
every process of the container is gone.
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

from sandbox import caps, limits, namespaces, rootfs, seccomp
from sandbox.plan import ContainerPlan, JobPlan
from sandbox.syscalls import (
    CLONE_NEWCGROUP,
    CLONE_NEWNS,
    LINUX,
    PR_SET_DUMPABLE,
    PR_SET_PDEATHSIG,
    set_process_title,
)

__all__ = ["JOB_FDS", "run_container"]

# The run message's descriptors: job plan, code, files, stdin, stdout, stderr.
JOB_FDS = 6


class _StepFailed(Exception):
    pass


def _send(sock: socket.socket, event: str, **fields: object) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps({"event": event, **fields}).encode())


def _send_error(sock: socket.socket, step: str, exc: BaseException) -> None:
    """Report a failed setup step, with its errno and path, to the supervisor."""
    _send(
        sock,
        "error",
        step=step,
        message=f"{step}: {exc}",
        errno=getattr(exc, "errno", None),
        path=getattr(exc, "filename", None),
    )


@contextlib.contextmanager
def _step(sock: socket.socket, name: str) -> Iterator[None]:
    """Report a failure of this setup step to the supervisor, then give up."""
    try:
        yield
    except Exception as exc:
        _send_error(sock, name, exc)
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


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def run_container(job_fd: int, plan_fd: int, cgroup_fds: list[int], spawner_pid: int) -> NoReturn:
    """Process C: enter new namespaces, fork the container's init, wait for it."""
    sock = socket.socket(fileno=job_fd)
    try:
        LINUX.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != spawner_pid:
            os._exit(1)  # the spawner died before prctl
        set_process_title("sandbox-container")
        with _step(sock, "plan"):
            os.lseek(plan_fd, 0, os.SEEK_SET)
            plan = ContainerPlan.from_json(_read_all(plan_fd))
            os.close(plan_fd)
        _build_root(plan, sock, spawner_pid)
        with _step(sock, "unshare"):
            namespaces.enter_new_namespaces(plan.namespaces)
        lifeline, keep = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(keep)
            _container_init(plan, sock, cgroup_fds, lifeline)
        os.close(lifeline)
        for fd in cgroup_fds:
            os.close(fd)
        # A pidfd of I, opened while I is our unreaped child: the supervisor
        # kills the container through it, and we reap I before we exit, so
        # when the spawner has reaped us every process of the container is gone.
        init_pidfd = os.pidfd_open(pid)
        with contextlib.suppress(OSError):
            socket.send_fds(
                sock, [json.dumps({"event": "init", "pid": pid}).encode()], [init_pidfd]
            )
        os.close(init_pidfd)
        _, status = os.waitpid(pid, 0)
        os._exit(0 if os.waitstatus_to_exitcode(status) == 0 else 1)
    except _StepFailed:
        os._exit(1)
    except BaseException as exc:  # never unwind into the spawner's loop
        _send(sock, "error", step="container", message=f"container: {exc!r}")
        os._exit(1)


def _build_root(plan: ContainerPlan, sock: socket.socket, spawner_pid: int) -> None:
    """In C, with the host's privileges: the root filesystem, then the user namespace.

    The mounts are made in a mount namespace of C's own; C then joins the
    container's user namespace, and its next unshare copies them into one
    owned by that namespace (``plan.namespaces`` has CLONE_NEWNS then).
    """
    userns = None
    if plan.userns:
        with _step(sock, "userns"):
            userns = namespaces.new_user_namespace(*plan.userns)
    with _step(sock, "unshare"):
        namespaces.enter_new_namespaces(CLONE_NEWNS)
    with _step(sock, "rootfs"):
        root = rootfs.mount_overlay(
            plan.mount_base, plan.lower_dirs, plan.disk_bytes, plan.disk_inodes, plan.root_owner
        )
    with _step(sock, "mount"):
        rootfs.apply_mounts(root, plan.mounts, plan.root_owner)
    if userns is not None:
        with _step(sock, "userns"):
            namespaces.enter_user_namespace(userns)
            LINUX.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != spawner_pid:
                os._exit(1)  # the spawner died while the signal was off


def _container_init(
    plan: ContainerPlan, sock: socket.socket, cgroup_fds: list[int], lifeline: int
) -> NoReturn:
    """Process I, pid 1 of the container: build the root, fork the job's process, reap, report."""
    try:
        _die_with_parent(lifeline)
        set_process_title("sandbox-init")  # what the job sees as pid 1, not a host path
        root = rootfs.root_of(plan.mount_base)
        if plan.userns:
            with _step(sock, "rootfs"):
                rootfs.unlock_root(root)
        with _step(sock, "mount"):
            rootfs.apply_mounts(root, plan.proc_mounts)
        with _step(sock, "hostname"):
            namespaces.set_hostname(plan.hostname)
        if plan.loopback:
            with _step(sock, "loopback"):
                namespaces.bring_up_loopback()
        with _step(sock, "pivot_root"):
            rootfs.pivot_into(root)
        pid = os.fork()
        if pid == 0:
            _job_process(sock, cgroup_fds, plan.seccomp)
        for fd in cgroup_fds:
            os.close(fd)
        with _step(sock, "user"):
            _become_unprivileged(plan.init_uid)
        while True:  # reap everything; stop when the job's main process is gone
            reaped, status = os.waitpid(-1, 0)
            if reaped == pid:
                break
        ended = time.monotonic_ns()
        if os.WIFSIGNALED(status):
            _send(sock, "exit", signal=os.WTERMSIG(status), t=ended)
        else:
            _send(sock, "exit", exit_code=os.WEXITSTATUS(status), t=ended)
        # The supervisor may read the job's files through our root before it
        # lets us go: "release", or EOF.
        with contextlib.suppress(OSError):
            sock.recv(16)
        os._exit(0)  # the kernel now kills whatever is left in the namespace
    except _StepFailed:
        os._exit(1)
    except BaseException as exc:
        _send(sock, "error", step="init", message=f"init: {exc!r}")
        os._exit(1)


def _become_unprivileged(uid: int) -> None:
    """Init needs no privilege to reap and report: it becomes a uid of its own.

    A job running as root (granted capabilities) then cannot prlimit, ptrace
    or retune (oom_score_adj) its init, as it could a uid-0 process. Changing
    uid clears the parent-death signal and the dumpable flag; both are set
    again (dumpable keeps /proc/1 owned by ``uid``, not by root).
    """
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    LINUX.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    LINUX.prctl(PR_SET_DUMPABLE, 1)


def _job_process(sock: socket.socket, cgroup_fds: list[int], with_seccomp: bool) -> NoReturn:
    """Process J: join the cgroup, report ready, wait for the job, become it.

    Joining a cgroup (a write to cgroup.procs) can wait for an RCU grace
    period, milliseconds on an idle host; done here, before the job is
    known, it costs the job nothing when the container comes from the pool.
    """
    step = "cgroup"
    try:
        for fd in cgroup_fds:
            os.write(fd, b"0")
            os.close(fd)
        step = "unshare"
        LINUX.unshare(CLONE_NEWCGROUP)
        step = "seccomp"
        syscall_filter = seccomp.build_filter() if with_seccomp else None  # loaded last
        _send(sock, "ready")
        msg, fds, _, _ = socket.recv_fds(sock, 16, JOB_FDS)
        if msg != b"run" or len(fds) != JOB_FDS:
            os._exit(0)  # not needed after all (the pool drains)
        job_fd, code_fd, files_fd, stdin, stdout, stderr = fds
        step = "plan"
        job = JobPlan.from_json(_read_all(job_fd))
        os.close(job_fd)
        if syscall_filter is not None and job.seccomp_profile != "default":
            step = "seccomp"
            syscall_filter = seccomp.build_filter(job.seccomp_profile)
        step = "workdir"
        _write_source(job, code_fd)
        os.close(code_fd)
        step = "files"
        _write_files(job, files_fd)
        os.close(files_fd)
        _exec_job(job, sock, stdin, stdout, stderr, syscall_filter)
    except BaseException as exc:
        _send_error(sock, step, exc)
        os._exit(127)


def _copy(src: int, dst: int, offset: int, size: int) -> None:
    end = offset + size
    while offset < end:
        sent = os.sendfile(dst, src, offset, end - offset)
        if sent == 0:
            raise OSError(f"short input: {end - offset} bytes missing")
        offset += sent


def _write_files(job: JobPlan, files_fd: int) -> None:
    """The job's extra files, from one memfd holding them back to back, into the workdir."""
    offset = 0
    for name, size, executable in job.files:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(f"{job.workdir}/{name}", flags, 0o755 if executable else 0o644)
        try:
            _copy(files_fd, out, offset, size)
            os.fchown(out, job.uid, job.gid)
        finally:
            os.close(out)
        offset += size


def _write_source(job: JobPlan, code_fd: int) -> None:
    os.makedirs(job.workdir, exist_ok=True)
    os.chown(job.workdir, job.uid, job.gid)
    os.chmod(job.workdir, 0o755)
    out = os.open(job.source_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        size = os.fstat(code_fd).st_size
        offset = 0
        while offset < size:
            sent = os.sendfile(out, code_fd, offset, size - offset)
            if sent == 0:
                break
            offset += sent
        os.fchown(out, job.uid, job.gid)
    finally:
        os.close(out)


def _exec_job(
    job: JobPlan,
    sock: socket.socket,
    stdin: int,
    stdout: int,
    stderr: int,
    syscall_filter: seccomp.Filter | None,
) -> NoReturn:
    """Set up the job's process and execve. A failure is reported on the job socket."""
    step = "session"
    try:
        os.setsid()
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGXCPU, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        step = "stdio"
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        # The job socket moves to fd 3, closed by execve: the job never holds it.
        if sock.fileno() != 3:
            os.dup2(sock.fileno(), 3, inheritable=False)
            sock.detach()
            sock = socket.socket(fileno=3)
        os.set_inheritable(3, False)
        os.closerange(4, 1 << 20)
        step = "workdir"
        os.chdir(job.workdir)
        step = "rlimits"
        limits.apply_rlimits(job.rlimits)
        step = "capabilities"
        caps.drop_capabilities(job.capabilities, job.uid, job.gid, last_cap=job.last_cap)
        if syscall_filter is not None:
            step = "seccomp"
            syscall_filter.load()  # last: from here on, only what the job may do
        step = "execve"
        env = dict(item.split("=", 1) for item in job.env)
        _send(sock, "started", t=time.monotonic_ns())
        os.execve(job.argv[0], list(job.argv), env)
    except BaseException as exc:
        _send_error(sock, step, exc)
    os._exit(127)
