"""The job's root filesystem: one overlay on a size-capped tmpfs, entered with pivot_root.

Man pages: mount(2), pivot_root(2), mount_namespaces(7), overlayfs docs.

Everything here runs in a new mount namespace of the container's own, so
every mount is private to the job and vanishes with the namespace: the kernel
itself guarantees that nothing of a job stays mounted on the host, even if the
supervisor is killed. The root is built with the host's privileges (the
overlay's copy-up then works whoever owns the image's files), before the
container enters its user namespace, whose copy of these mounts is locked:
the job cannot unmount one to see what lies beneath.

Layout, built under ``mount_base`` (the same empty host directory for every
job; each job mounts over it in its own namespace)::

    mount_base/           tmpfs, size=limits.disk: all the job can write
      lower0/             the image (a bind: the overlay's options name no host path)
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
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    Syscalls,
)

# A file is masked by a read-only bind of /dev/null: it reads empty, takes no write.
MASK_FLAGS = MS_RDONLY | MS_NOSUID | MS_NOEXEC

__all__ = ["apply_mounts", "mount_overlay", "pivot_into", "root_of", "unlock_root"]


def mount_overlay(
    base: str,
    lower_dirs: tuple[str, ...],
    disk_bytes: int,
    disk_inodes: int,
    owner: int = 0,
    *,
    sys: Syscalls = LINUX,
) -> str:
    """Make mounts private, then mount a tmpfs at ``base`` and the overlay inside it.

    ``owner`` (host uid and gid of the container's root) owns the new root
    directory and /dev/shm, so that root inside a user namespace may write there.

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
    if owner:
        os.chown(f"{base}/upper", owner, owner)  # the merged root takes the upper's owner
        os.chown(f"{base}/shm", owner, owner)
    # Relative names, so the job's /proc/self/mountinfo shows no host path:
    # the image directories are bound into the tmpfs as lower0, lower1...
    lowers = []
    for i, lower in enumerate(lower_dirs):
        os.mkdir(f"{base}/lower{i}", 0o755)
        sys.mount(lower, f"{base}/lower{i}", None, MS_BIND, None)
        lowers.append(f"lower{i}")
    root = root_of(base)
    cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
    os.chdir(base)
    try:
        sys.mount(
            "overlay",
            root,
            "overlay",
            MS_NOSUID | MS_NODEV,
            f"lowerdir={':'.join(lowers)},upperdir=upper,workdir=work",
        )
    finally:
        os.fchdir(cwd)
        os.close(cwd)
    return root


def root_of(base: str) -> str:
    """Where :func:`mount_overlay` mounts the new root."""
    return f"{base}/root"


def apply_mounts(
    root: str, ops: tuple[MountOp, ...], owner: int = 0, *, sys: Syscalls = LINUX
) -> None:
    """Carry out the plan's mount steps, in order, under ``root``.

    What the steps create (directories, files, links, tmpfs roots) belongs to ``owner``.

    Raises:
        OSError: a step was refused.
    """
    for op in ops:
        target = root + op.target
        if op.op == "mkdir":
            os.makedirs(target, exist_ok=True)
            os.chmod(target, op.mode)
            if owner:
                os.chown(target, owner, owner)
        elif op.op == "file":
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, op.mode))
        elif op.op == "symlink":
            assert op.source is not None
            os.symlink(op.source, target)
            if owner:
                os.lchown(target, owner, owner)
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
                sys.mount(None, target, None, MS_BIND | MS_REMOUNT | MASK_FLAGS, None)
        elif op.op == "mount":
            data = op.data
            if owner and op.fstype == "tmpfs":  # its root directory: the container root's
                data = f"{data},uid={owner},gid={owner}" if data else f"uid={owner},gid={owner}"
            sys.mount(op.source, target, op.fstype, op.flags, data)
        else:
            raise ValueError(f"unknown mount step {op.op!r}")


def unlock_root(root: str, *, sys: Syscalls = LINUX) -> None:
    """Bind ``root`` onto itself, so that it can become the root of a user namespace's mounts.

    Mounts copied into a less privileged mount namespace are locked, and a
    locked mount cannot be pivot_root's new root; a bind made inside is not
    locked itself (what is under it stays locked to it).
    """
    sys.mount(root, root, None, MS_BIND | MS_REC, None)


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
