"""Namespaces (namespaces(7), unshare(2)): what the job sees of the host.

Each job gets new mount, pid, ipc, uts and network namespaces (unshared by
the container's parent, so its first child is pid 1), and a new cgroup
namespace unshared by the job itself once it sits in its cgroup, so that
/proc/self/cgroup shows "/". A new network namespace holds only a loopback
interface, which is brought up here: nothing of the host, not even its
127.0.0.1, is reachable.
"""

from __future__ import annotations

import fcntl
import socket
import struct

from sandbox.syscalls import LINUX, Syscalls

__all__ = ["bring_up_loopback", "enter_new_namespaces", "set_hostname"]

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def enter_new_namespaces(flags: int, *, sys: Syscalls = LINUX) -> None:
    """Unshare the namespaces in ``flags`` (``CLONE_NEW*``).

    Raises:
        OSError: the kernel refused (e.g. EPERM without CAP_SYS_ADMIN).
    """
    sys.unshare(flags)


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
