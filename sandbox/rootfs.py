"""The job's root filesystem: one overlay on a size-capped tmpfs, entered with pivot_root.

Man pages: mount(2), pivot_root(2), mount_namespaces(7), overlayfs docs.

Everything here runs in the container's init, inside its new mount namespace,
so every mount is private to the job and vanishes with the namespace: the
kernel itself guarantees that nothing of a job stays mounted on the host, even
if the supervisor is killed.

Layout, built under ``mount_base`` (the same empty host directory for every
job; each job mounts over it in its own namespace)::

    mount_base/           tmpfs, size=limits.disk: all the job can write
      upper/ work/        the overlay's writable layer
      shm/                bound at /dev/shm
      root/               overlay: image (read-only) + upper -> the new /

Invariants: / is made recursively private first, so nothing propagates to the
host; every filesystem the job can write is nosuid and nodev; the old root is
detached after pivot_root (not a bare chroot, which a root process can leave).
"""

from __future__ import annotations

import os

from sandbox.plan import MountOp
from sandbox.syscalls import (
    LINUX,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    Syscalls,
)

__all__ = ["apply_mounts", "mount_overlay", "pivot_into"]


def mount_overlay(
    base: str,
    lower_dirs: tuple[str, ...],
    disk_bytes: int,
    disk_inodes: int,
    *,
    sys: Syscalls = LINUX,
) -> str:
    """Make mounts private, then mount a tmpfs at ``base`` and the overlay inside it.

    Returns:
        The path of the new root.

    Raises:
        OSError: a mount was refused.
    """
    sys.mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    sys.mount(
        "tmpfs",
        base,
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={disk_bytes},nr_inodes={disk_inodes},mode=0755",
    )
    for name in ("upper", "work", "root"):
        os.mkdir(f"{base}/{name}", 0o755)
    os.mkdir(f"{base}/shm")  # bound at /dev/shm: the same size cap as the rest
    os.chmod(f"{base}/shm", 0o1777)
    root = f"{base}/root"
    sys.mount(
        "overlay",
        root,
        "overlay",
        MS_NOSUID | MS_NODEV,
        f"lowerdir={':'.join(lower_dirs)},upperdir={base}/upper,workdir={base}/work",
    )
    return root


def apply_mounts(root: str, ops: tuple[MountOp, ...], *, sys: Syscalls = LINUX) -> None:
    """Carry out the plan's mount steps, in order, under ``root``.

    Raises:
        OSError: a step was refused.
    """
    for op in ops:
        target = root + op.target
        if op.op == "mkdir":
            os.makedirs(target, exist_ok=True)
            os.chmod(target, op.mode)
        elif op.op == "file":
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, op.mode))
        elif op.op == "symlink":
            assert op.source is not None
            os.symlink(op.source, target)
        elif op.op == "bind":
            sys.mount(op.source, target, None, MS_BIND | MS_REC, None)
            # Bind flags only take effect on a remount of the bind.
            flags = op.flags | (MS_RDONLY if op.readonly else 0)
            sys.mount(None, target, None, MS_BIND | MS_REMOUNT | flags, None)
        elif op.op == "rebind":
            if not os.path.lexists(target):
                continue  # this kernel has no such file
            sys.mount(target, target, None, MS_BIND | MS_REC, None)
            sys.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | op.flags, None)
        elif op.op == "mask":
            if os.path.isdir(target):
                sys.mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=0")
            elif os.path.lexists(target):
                sys.mount("/dev/null", target, None, MS_BIND, None)
        elif op.op == "mount":
            sys.mount(op.source, target, op.fstype, op.flags, op.data)
        else:
            raise ValueError(f"unknown mount step {op.op!r}")


def pivot_into(root: str, *, sys: Syscalls = LINUX) -> None:
    """Make ``root`` the root directory and detach the old one.

    Uses runc's ``pivot_root(".", ".")`` so the image needs no put_old
    directory: the old root is stacked under the new one, then lazily unmounted.

    Raises:
        OSError: pivot_root or the unmount was refused.
    """
    os.chdir(root)
    sys.pivot_root(".", ".")
    sys.umount2(".", MNT_DETACH)
    os.chdir("/")
