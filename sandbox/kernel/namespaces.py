"""Namespaces (namespaces(7), unshare(2)): what the job sees of the host.

Each job gets its own user namespace, then new mount, pid, ipc, uts and
network namespaces owned by it (unshared by the container's parent, so its
first child is pid 1), and a new cgroup namespace unshared by the job itself
once it sits in its cgroup, so that /proc/self/cgroup shows "/". A new network
namespace holds only a loopback interface, which is brought up here: nothing
of the host, not even its 127.0.0.1, is reachable.

The user namespace maps container uids and gids ``0..size-1`` to a host range
reserved for jobs (user_namespaces(7)): root inside, if a job is granted
capabilities, is an unprivileged uid outside, and every capability it holds
is over its own namespaces only. Host files owned by unmapped ids (the
image's, the host's) show as ``nobody`` and their owner's rights never apply.
Only a process of the parent namespace with CAP_SETUID may write a map that
is not its own uid, so :func:`new_user_namespace` forks a short-lived holder
that unshares, has its maps written by us, and is gone once we hold the
namespace by a file descriptor.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from sandbox.kernel.syscalls import CLONE_NEWUSER, LINUX, Syscalls

__all__ = [
    "NAMESPACES",
    "bring_up_loopback",
    "enter_new_namespaces",
    "enter_user_namespace",
    "new_user_namespace",
    "set_hostname",
]

# A job's namespaces but its user namespace, in the order nsenter joins them
# for a privileged caller (the user namespace comes last, so that the others
# are joined with the host's privileges): `sandbox exec` (sandbox/runtime/enter.py)
# and `sandbox doctor`'s check that the kernel has each (sandbox/runtime/host.py).
NAMESPACES = ("ipc", "uts", "net", "cgroup", "pid", "mnt")

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def enter_new_namespaces(flags: int, *, sys: Syscalls = LINUX) -> None:
    """Unshare the namespaces in ``flags`` (``CLONE_NEW*``).

    Raises:
        OSError: the kernel refused (e.g. EPERM without CAP_SYS_ADMIN).
    """
    sys.unshare(flags)


def new_user_namespace(host_base: int, size: int, *, sys: Syscalls = LINUX) -> int:
    """Create a user namespace mapping ids ``0..size-1`` to ``host_base..``.

    Must be called by a single-threaded process with CAP_SETUID and
    CAP_SETGID (root on the host).

    Returns:
        A file descriptor of the namespace (close-on-exec), for
        :func:`enter_user_namespace`.

    Raises:
        OSError: the kernel refused to create it or to write its maps.
    """
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the holder: unshare, say so, wait until the parent lets go
        status = 0
        try:
            os.close(ready_r)
            os.close(hold_w)
            sys.unshare(CLONE_NEWUSER)
            os.write(ready_w, b"0")
            os.read(hold_r, 1)
        except OSError as exc:
            os.write(ready_w, str(exc.errno or 1).encode())
            status = 1
        finally:
            os._exit(status)
    os.close(ready_w)
    os.close(hold_r)
    try:
        answer = os.read(ready_r, 16)
        if answer != b"0":
            err = int(answer or b"0") or 1
            raise OSError(err, f"unshare(CLONE_NEWUSER): {os.strerror(err)}")
        mapping = f"0 {host_base} {size}\n".encode()
        for name in ("uid_map", "gid_map"):
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, mapping)
            finally:
                os.close(fd)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)


def enter_user_namespace(fd: int, *, sys: Syscalls = LINUX) -> None:
    """Join the user namespace ``fd`` (from :func:`new_user_namespace`) and close it.

    The caller gets every capability inside it and none outside: the
    namespaces it creates next are owned by it. It then becomes uid and gid 0
    of the namespace (it was the host's root, which is not mapped there), so
    what it creates is owned by the container's root. Changing uid clears the
    parent-death signal: the caller sets it again.
    """
    try:
        sys.setns(fd, CLONE_NEWUSER)
    finally:
        os.close(fd)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def set_hostname(name: str, *, sys: Syscalls = LINUX) -> None:
    """Set the hostname of the current UTS namespace."""
    sys.sethostname(name)


def bring_up_loopback() -> None:
    """Set ``lo`` up in the current network namespace (ioctl SIOCSIFFLAGS).

    Raises:
        OSError: the ioctl failed.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
