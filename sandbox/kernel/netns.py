"""A loopback-only network namespace kept from job to job (docs/adr/0013).

The design and its attack tests: docs/adr/0013-shared-network-namespaces.md,
tests/security/test_reuse.py.

A fresh network namespace is the largest single item of a trivial job's
kernel work: ~1.2 ms of CPU here, its setup and its teardown in a kernel
worker (docs/performance.md). A job with neither egress nor a network
capability therefore runs in one the host owns: the container's process C
makes it as host root (``unshare(CLONE_NEWNET)``, ``lo`` up) when the runtime
has none to hand, or joins one the runtime kept, before it enters the
container's user namespace (sandbox/kernel/native/launch.c).

Owned by the host's user namespace, the namespace cannot be changed from a
container: an address, a route, a firewall rule, a qdisc or a sysctl needs
CAP_NET_ADMIN over that owner. What a job can leave is sockets and counters,
so a namespace serves a next job only when, after every process of the last
one is gone (never two containers at once):

- no socket is open in it (``sockets: used`` in ``/proc/net/sockstat``
  counts every family's, per namespace), none waits in TIME_WAIT (``tw``),
  no IP fragment is queued (``FRAG``, ``FRAG6``);
- no counter moved: ``snmp``, ``snmp6``, ``netstat`` (what the IP, ICMP,
  TCP and UDP code counts, a refused route included) and ``dev`` (lo's
  packets and bytes) read byte for byte as when it was made.

Anything else closes it (the kernel tears it down when the last reference
goes), and the next container makes a new one. The counter files are opened
by C inside the namespace (a /proc/net file stays bound to the namespace it
was opened in) and read here with ``pread``.
"""

from __future__ import annotations

import os
import re

__all__ = ["NetNamespace"]

_STATE_FILES = ("snmp", "snmp6", "netstat", "dev")  # compared byte for byte
# sockstat fields that must be 0: every open socket, TIME_WAIT, fragment queues
_LEFT = re.compile(rb"sockets: used (\d+)|\btw (\d+)|FRAG6?: inuse (\d+)")


class NetNamespace:
    """A network namespace held open by descriptor, with its counter files.

    Args:
        fds: descriptors by name, as C sends them: ``ns`` (the namespace),
            ``sockstat``, ``sockstat6``, ``snmp``, ``snmp6``, ``netstat``,
            ``dev`` (the IPv6 ones are missing on a host without IPv6). The
            object owns them.

    Raises:
        ValueError: ``ns`` or ``sockstat`` is missing (the descriptors are closed).
        OSError: a counter file cannot be read (the descriptors are closed).
    """

    def __init__(self, fds: dict[str, int]) -> None:
        self._fds = dict(fds)
        try:
            if "ns" not in fds or "sockstat" not in fds:
                raise ValueError(f"a network namespace needs ns and sockstat, got {sorted(fds)}")
            self.fd = fds["ns"]
            self._baseline = self._counters()
        except BaseException:
            self.close()
            raise
        self.jobs = 0  # containers that ran in it before the current one

    @classmethod
    def from_event(cls, names: str, fds: list[int]) -> NetNamespace:
        """From C's ``netns`` event: space-separated names, one per descriptor."""
        keys = names.split()
        if len(keys) != len(fds):
            for fd in fds:
                os.close(fd)
            raise ValueError(f"netns event names {len(keys)} files but holds {len(fds)}")
        return cls(dict(zip(keys, fds, strict=True)))

    def _read(self, name: str) -> bytes:
        return os.pread(self._fds[name], 1 << 16, 0)

    def _counters(self) -> tuple[bytes, ...]:
        return tuple(self._read(name) for name in _STATE_FILES if name in self._fds)

    def untouched(self) -> bool:
        """True if no socket is left in the namespace and no counter moved since it was made."""
        if not self._fds:
            return False
        try:
            for name in ("sockstat", "sockstat6"):
                if name in self._fds:
                    for match in _LEFT.finditer(self._read(name)):
                        if any(group not in (None, b"0") for group in match.groups()):
                            return False
            return self._counters() == self._baseline
        except OSError:
            return False

    def held_fds(self) -> set[int]:
        """The descriptors this object holds open."""
        return set(self._fds.values())

    def close(self) -> None:
        """Close every descriptor: the kernel frees the namespace once no process is in it."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)
