"""seccomp-bpf (seccomp(2), libseccomp): the syscalls a job never needs.

The filter is built with libseccomp (through ctypes; Debian's libseccomp2 is
on every host), compiled to BPF once per profile by the supervisor
(:func:`compiled`), and loaded by the job's process last, after its
capabilities are dropped and ``no_new_privs`` is set, just before execve
(the native launcher, ``sandbox/kernel/native/launch.c``). Policy, in the
spirit of Docker's default profile, allow by default and refuse with EPERM:

- namespaces: unshare, setns, and clone with any CLONE_NEW* flag (so no
  nested user namespace, the door to most kernel attack surface); clone3 is
  answered ENOSYS, so libc falls back to clone, whose flags can be checked;
- mounts: mount, umount2, pivot_root, and the new mount API;
- kernel keyring, BPF, perf events, userfaultfd, io_uring;
- tracing and other processes' memory: ptrace, process_vm_readv/writev;
- the machine: kexec, modules, reboot, swap, acct, quotactl, clock setting,
  open_by_handle_at, syslog;
- personalities that turn address randomisation off or READ_IMPLIES_EXEC on
  (which also refuses the 0xffffffff query; nothing a judged program needs).

Other architectures (x32, i386 through int 0x80) kill the process: a filter
only checks the native syscall numbers. EPERM elsewhere, not a kill: a
program that probes a feature (many runtimes try io_uring, clone3, keyrings)
falls back instead of dying, and the job's result shows an ordinary error.

The program is a binary tree over the syscall numbers (libseccomp's
``SCMP_FLTATR_CTL_OPTIMIZE``), not the rules tried in order. As it loads a
filter, the kernel runs it for every syscall number of both architectures
(its cache of the calls always allowed), under the process's signal lock:
the rules in order cost each container ~0.1 ms of CPU there, the tree about
a tenth of it (docs/performance.md). Both decide every call alike
(tests/unit/test_seccomp_filter.py); libseccomp before 2.5 makes the list.

A job may ask for another named profile (``JobSpec.seccomp_profile``), never
for a list of syscalls; the operator chooses which names a job may ask for
(``SANDBOX_ALLOWED_SECCOMP_PROFILES``). :data:`PROFILES`:

- ``default``: the filter above;
- ``strict``: the default, and no sockets but Unix ones (a judged program
  computes; it has no network to reach anyway);
- ``ptrace``: the default, less ptrace, process_vm_readv/writev and turning
  address randomisation off: what gdb and strace need, for teaching sites.
  The job traces only its own processes (its pid namespace, its uids).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_codes
import functools
import os
from dataclasses import dataclass

from sandbox.kernel.syscalls import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)

__all__ = [
    "DENIED",
    "PROFILES",
    "Filter",
    "Profile",
    "SeccompUnavailable",
    "build_filter",
    "compiled",
    "preload",
]

CLONE_NEWTIME = 0x00000080
NAMESPACE_FLAGS = (
    CLONE_NEWNS,
    CLONE_NEWCGROUP,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
    CLONE_NEWTIME,
)
DENIED = (
    "unshare", "setns", "mount", "umount2", "pivot_root",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "ptrace", "process_vm_readv", "process_vm_writev",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    "open_by_handle_at", "name_to_handle_at", "syslog", "lookup_dcookie",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "vhangup", "nfsservctl",
)  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """A named variation of the default filter."""

    description: str
    allow: frozenset[str] = frozenset()  # taken off DENIED
    unix_sockets_only: bool = False
    allow_no_randomize: bool = False


PROFILES = {
    "default": Profile("no namespaces, mounts, keyrings, BPF, tracing, machine control"),
    "strict": Profile("default, and no sockets but Unix ones", unix_sockets_only=True),
    "ptrace": Profile(
        "default, but ptrace and process_vm_* allowed (gdb, strace)",
        allow=frozenset({"ptrace", "process_vm_readv", "process_vm_writev"}),
        allow_no_randomize=True,
    ),
}

_SCMP_ACT_KILL_PROCESS = 0x80000000
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_FLTATR_ACT_BADARCH = 2
_SCMP_FLTATR_CTL_OPTIMIZE = 8
_OPTIMIZE_BINARY_TREE = 2
_SCMP_CMP_NE = 1
_SCMP_CMP_MASKED_EQ = 7
_AF_UNIX = 1
_ADDR_NO_RANDOMIZE = 0x0040000
_READ_IMPLIES_EXEC = 0x0400000


class SeccompUnavailable(Exception):
    """libseccomp cannot be loaded on this host."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


@functools.cache
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"cannot load libseccomp ({name}): {exc}") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


@dataclass
class Filter:
    """A built, not yet loaded, filter. :meth:`load` applies it to this process."""

    _lib: ctypes.CDLL
    _ctx: int

    def load(self) -> None:
        """Load the filter into the calling process (needs no_new_privs or CAP_SYS_ADMIN).

        Raises:
            OSError: the kernel refused it.
        """
        rc = self._lib.seccomp_load(self._ctx)
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: {errno_codes.errorcode.get(-rc, rc)}")

    def bpf(self) -> bytes:
        """The filter as the kernel takes it: an array of ``struct sock_filter``.

        Raises:
            OSError: libseccomp could not generate it.
        """
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            rc = self._lib.seccomp_export_bpf(self._ctx, fd)
            if rc < 0:
                raise OSError(-rc, f"seccomp_export_bpf: {errno_codes.errorcode.get(-rc, rc)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)


def preload() -> None:
    """Load libseccomp now: `sandbox exec` builds a filter inside the job's
    root, where the host's library directory may be out of sight."""
    _lib()


@functools.cache
def compiled(profile: str = "default") -> bytes:
    """The BPF program of a named profile, built once per process.

    Raises:
        KeyError: no such profile.
        SeccompUnavailable: libseccomp is missing.
        OSError: libseccomp refused a rule.
    """
    return build_filter(profile).bpf()


def _errno(code: int) -> int:
    return _SCMP_ACT_ERRNO | (code & 0xFFFF)


def build_filter(profile: str = "default", *, optimize: bool = True) -> Filter:
    """Build the filter of a named profile (see the module doc) for the native architecture.

    Args:
        profile: a name in :data:`PROFILES`.
        optimize: a binary tree over the syscall numbers (False: the rules
            tried in order, as libseccomp before 2.5 makes them).

    Raises:
        KeyError: no such profile.
        SeccompUnavailable: libseccomp is missing.
        OSError: libseccomp refused a rule.
    """
    chosen = PROFILES[profile]
    lib = _lib()
    ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not ctx:
        raise OSError(errno_codes.ENOMEM, "seccomp_init failed")

    def rule(action: int, name: str, *cmps: _ArgCmp) -> None:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # this architecture or libseccomp has no such syscall
        array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
        rc = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
        if rc < 0:
            raise OSError(-rc, f"seccomp rule for {name}")

    lib.seccomp_attr_set(ctx, _SCMP_FLTATR_ACT_BADARCH, _SCMP_ACT_KILL_PROCESS)
    if optimize:  # refused (EINVAL) before libseccomp 2.5: the rules in order, as good
        lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_OPTIMIZE, _OPTIMIZE_BINARY_TREE)
    for name in DENIED:
        if name not in chosen.allow:
            rule(_errno(errno_codes.EPERM), name)
    for flag in NAMESPACE_FLAGS:  # clone(flags, ...): flags is argument 0 on x86_64
        rule(_errno(errno_codes.EPERM), "clone", _ArgCmp(0, _SCMP_CMP_MASKED_EQ, flag, flag))
    rule(_errno(errno_codes.ENOSYS), "clone3")
    # personality: refuse turning address randomisation off or READ_IMPLIES_EXEC on.
    bits = (
        (_READ_IMPLIES_EXEC,)
        if chosen.allow_no_randomize
        else (_ADDR_NO_RANDOMIZE, _READ_IMPLIES_EXEC)
    )
    for bit in bits:
        rule(_errno(errno_codes.EPERM), "personality", _ArgCmp(0, _SCMP_CMP_MASKED_EQ, bit, bit))
    if chosen.unix_sockets_only:  # socket(domain, ...): domain is argument 0
        rule(_errno(errno_codes.EACCES), "socket", _ArgCmp(0, _SCMP_CMP_NE, _AF_UNIX, 0))
    return Filter(lib, ctx)
