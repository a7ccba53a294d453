"""Capabilities (capabilities(7)): the job keeps only what it was granted.

A job without capabilities runs as an unprivileged uid with empty effective,
permitted, inheritable, ambient and bounding sets and ``no_new_privs``. A job
granted capabilities runs as root inside with exactly those in its bounding,
permitted and effective sets (inheritable stays empty), like ``docker run --cap-drop ALL
--cap-add ...`` (the walk-through's ``capsh --drop``).

Invariant: the bounding set is cut before the uid changes (dropping needs
CAP_SETPCAP), and ``no_new_privs`` is set last, so execve can never gain a
capability: with it, the kernel caps the new permitted set at the old one.
"""

from __future__ import annotations

import os

from sandbox.kernel.syscalls import (
    LINUX,
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    PR_SET_NO_NEW_PRIVS,
    Syscalls,
)

__all__ = [
    "CAPABILITIES",
    "NETWORK_CAPABILITIES",
    "capability_mask",
    "drop_capabilities",
    "last_capability",
]

# capability.h, in number order
CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

# What acts on a network namespace, through the user namespace that owns it:
# a job granted one gets a namespace of its own root's, not the host's shared
# loopback one (sandbox/plan.py).
NETWORK_CAPABILITIES = frozenset(
    {"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_RAW"}
)


def capability_mask(names: frozenset[str] | set[str]) -> int:
    """Return the bit mask of capability names.

    Raises:
        KeyError: a name is not a capability.
    """
    mask = 0
    for name in names:
        try:
            mask |= 1 << CAPABILITIES.index(name)
        except ValueError:
            raise KeyError(name) from None
    return mask


def last_capability() -> int:
    """Return the highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITIES) - 1


def drop_capabilities(
    keep: int, uid: int, gid: int, *, last_cap: int, sys: Syscalls = LINUX
) -> None:
    """Reduce this process to the capabilities in ``keep`` and become ``uid``.

    Args:
        keep: bit mask of capabilities to keep (0 for none).
        uid: user to become; 0 keeps root (only sensible with ``keep``).
        gid: group to become.
        last_cap: highest capability number of the running kernel.
        sys: the syscall layer.

    Raises:
        OSError: the kernel refused a step.
    """
    for cap in range(last_cap + 1):
        if not keep & (1 << cap):
            sys.prctl(PR_CAPBSET_DROP, cap)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # to a non-zero uid, this clears permitted and effective
    sys.capset(keep, keep, 0)  # inheritable empty, as runc since CVE-2022-24769
    sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    sys.prctl(PR_SET_NO_NEW_PRIVS, 1)
