"""Entering a running job: the walk-through's ``nsenter --pid=/proc/PID/ns/pid`` step.

:func:`run_in_job` runs a command inside a running job's container, as
``docker exec`` does: it joins the job's cgroup (so its memory and processes
count against the job's limits), its ipc, uts, network, cgroup, pid and mount
namespaces (so its root is the container's, and ``ps`` shows the job's
processes), then its user namespace, becomes the job's user, and takes the
job's rlimits, capabilities, no_new_privs and seccomp filter before execve.

As nsenter does, it forks twice: the first child enters the namespaces (a
pid namespace applies to children only), the second becomes the command.
The caller must be single-threaded (setns of a user namespace requires it)
and root on the host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import NoReturn

from sandbox.kernel import caps, limits, seccomp
from sandbox.kernel.namespaces import NAMESPACES
from sandbox.kernel.syscalls import CLONE_NEWUSER, LINUX, PR_SET_PDEATHSIG
from sandbox.runtime.jobs import JobRecord

__all__ = ["JobGone", "run_in_job"]


class JobGone(Exception):
    """The job ended (or was never there) before we could enter it."""


def _a_job_process(procs_files: tuple[str, ...]) -> int:
    for path in procs_files:
        with contextlib.suppress(OSError), open(path) as f:
            pids = [int(p) for p in f.read().split()]
            if pids:
                return min(pids)
    raise JobGone("the job has no process left")


def run_in_job(record: JobRecord, procs_files: tuple[str, ...], argv: list[str]) -> int:
    """Run ``argv`` inside the job's container; return its exit status (128+N for signal N).

    Raises:
        JobGone: the job has no process to take namespaces from, or they vanished.
    """
    pid = _a_job_process(procs_files)
    fds: dict[str, int] = {}
    try:
        for name in (*NAMESPACES, "user"):
            fds[name] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        for fd in fds.values():
            os.close(fd)
        raise JobGone(f"the job's process {pid} is gone ({exc.strerror})") from exc
    if record.seccomp_profile:
        seccomp.preload()  # the host's libseccomp is out of sight once inside
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        _enter(record, procs_files, fds, argv)
    for fd in fds.values():
        os.close(fd)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _enter(
    record: JobRecord, procs_files: tuple[str, ...], fds: dict[str, int], argv: list[str]
) -> NoReturn:
    """The first child: join, enter, fork the command, pass its status on."""
    try:
        for path in procs_files:
            with open(path, "w") as f:
                f.write("0")
        for name in NAMESPACES:
            LINUX.setns(fds.pop(name), 0)
        LINUX.setns(fds.pop("user"), CLONE_NEWUSER)
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        command = os.fork()
        if command == 0:
            _become_the_job(record, argv)
        _, status = os.waitpid(command, 0)
        if os.WIFSIGNALED(status):
            os._exit(128 + os.WTERMSIG(status))
        os._exit(os.WEXITSTATUS(status))
    except BaseException as exc:
        print(f"sandbox exec: {exc}", file=sys.stderr, flush=True)
        os._exit(125)


def _become_the_job(record: JobRecord, argv: list[str]) -> NoReturn:
    try:
        LINUX.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        try:
            os.chdir(record.workdir)
        except OSError:
            os.chdir("/")
        limits.apply_rlimits(record.rlimits)
        syscall_filter = (
            seccomp.build_filter(record.seccomp_profile) if record.seccomp_profile else None
        )
        caps.drop_capabilities(
            record.capabilities, record.uid, record.gid, last_cap=record.last_cap
        )
        if syscall_filter is not None:
            syscall_filter.load()
        env = dict(item.split("=", 1) for item in record.env)
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        print(f"sandbox exec: {argv[0]}: not found in the container", file=sys.stderr, flush=True)
        os._exit(127)
    except BaseException as exc:
        print(f"sandbox exec: {exc}", file=sys.stderr, flush=True)
        os._exit(126)
