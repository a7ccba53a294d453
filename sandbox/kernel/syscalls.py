"""The only module that calls libc directly: one typed function per syscall.

No policy lives here: each function passes its arguments to the kernel, checks
``errno`` and raises ``OSError(errno, message, path)``. Feature modules
(:mod:`sandbox.rootfs`, :mod:`sandbox.kernel.caps`...) take a :class:`Syscalls`
object, :data:`LINUX` by default, so that unit tests can record the order and
arguments of the calls with a fake. A fake never proves isolation: the
integration tests on the real kernel do.

Python 3.11's :mod:`os` lacks ``unshare``, ``setns``, ``mount``, ``pivot_root``,
``capset`` and ``prctl``, hence ctypes. Everything else (fork, setresuid,
setrlimit, pidfd_open) uses :mod:`os`, :mod:`resource` and :mod:`signal`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Protocol

# clone(2) flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

# prctl(2) options
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# filesystem magics (statfs f_type)
CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_SUPER_MAGIC = 0x27E0EB
TMPFS_MAGIC = 0x01021994

_SYS_PIVOT_ROOT = 155  # x86_64
_SYS_OPENAT2 = 437
# openat2(2) resolve flags
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 112)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str, path: str | None = None) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


class Syscalls(Protocol):
    """The kernel calls the container setup needs, as a seam for tests."""

    def unshare(self, flags: int) -> None: ...
    def setns(self, fd: int, nstype: int) -> None: ...
    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None: ...
    def umount2(self, target: str, flags: int) -> None: ...
    def pivot_root(self, new_root: str, put_old: str) -> None: ...
    def prctl(self, option: int, arg2: int = 0, arg3: int = 0) -> int: ...
    def capset(self, effective: int, permitted: int, inheritable: int) -> None: ...
    def sethostname(self, name: str) -> None: ...


class LinuxSyscalls:
    """The real kernel, through libc."""

    def unshare(self, flags: int) -> None:
        _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")

    def setns(self, fd: int, nstype: int) -> None:
        _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns({nstype:#x})")

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        _check(
            _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
            f"mount {fstype or 'bind'} {source or ''} on {target}",
            target,
        )

    def umount2(self, target: str, flags: int) -> None:
        _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}", target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        _check(
            _libc.syscall(ctypes.c_long(_SYS_PIVOT_ROOT), _b(new_root), _b(put_old)),
            "pivot_root",
            new_root,
        )

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0) -> int:
        return _check(
            _libc.prctl(
                ctypes.c_int(option),
                ctypes.c_ulong(arg2),
                ctypes.c_ulong(arg3),
                ctypes.c_ulong(0),
                ctypes.c_ulong(0),
            ),
            f"prctl({option})",
        )

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        for i in range(2):
            shift = 32 * i
            data[i].effective = (effective >> shift) & 0xFFFFFFFF
            data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
            data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
        _check(_libc.capset(ctypes.byref(header), data), "capset")

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), f"sethostname {name}")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    """openat2(2) (Linux 5.6): open ``path`` under ``dirfd`` with ``resolve`` rules.

    Raises:
        OSError: the kernel refused.
    """
    how = _OpenHow(flags, 0, resolve)
    return _check(
        _libc.syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dirfd),
            _b(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        ),
        "openat2",
        path,
    )


def fs_magic(path: str) -> int:
    """Return the filesystem type magic of ``path`` (``statfs(2)`` ``f_type``)."""
    buf = _Statfs()
    _check(_libc.statfs(_b(path), ctypes.byref(buf)), "statfs", path)
    return int(buf.f_type) & 0xFFFFFFFF


def capget_self() -> tuple[int, int, int]:
    """Return this process's (effective, permitted, inheritable) capability masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    eff = data[0].effective | (data[1].effective << 32)
    perm = data[0].permitted | (data[1].permitted << 32)
    inh = data[0].inheritable | (data[1].inheritable << 32)
    return eff, perm, inh


def set_process_title(title: str) -> None:
    """Overwrite this process's command line as ``ps`` and /proc/PID/cmdline show it.

    Writes into the original argv area (its bounds from /proc/self/stat), as
    setproctitle does; Python keeps its own copy of argv. The container's init
    shows "sandbox-init" to the job, not the host's path to our interpreter.
    """
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # fields 48 and 49: arg_start, arg_end
    size = end - start
    if size <= 0:
        return
    data = title.encode()[: size - 1].ljust(size, b"\0")
    ctypes.memmove(start, data, size)
    name = ctypes.create_string_buffer(title.encode()[:15])
    _libc.prctl(
        ctypes.c_int(PR_SET_NAME), name, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)
    )


LINUX: Syscalls = LinuxSyscalls()
