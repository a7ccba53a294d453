"""rootfs: a whole plan's mount list carried out on tmp_path through the recording fake.

The mkdir, file and symlink steps really happen under ``tmp_path``; only the
mount calls are recorded instead of made.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from sandbox import rootfs
from sandbox import syscalls as sc
from sandbox.plan import DEVICES, MountOp, rootfs_mounts
from tests.unit.fakes import Call, RecordingSyscalls

BIND = sc.MS_BIND | sc.MS_REC
REMOUNT = sc.MS_BIND | sc.MS_REMOUNT


def _apply(root: Path, ops: tuple[MountOp, ...]) -> RecordingSyscalls:
    fake = RecordingSyscalls()
    rootfs.apply_mounts(str(root), ops, sys=fake)
    return fake


def _whole(binds: tuple[str, ...]) -> tuple[MountOp, ...]:
    """A plan's mount steps in the order they run: the root's, then /proc's."""
    mounts, proc = rootfs_mounts(binds, "/run/sandbox/mnt")
    return mounts + proc


def _relative(root: Path, calls: list[Call]) -> list[tuple[object, ...]]:
    """(source, target under root, fstype) of each mount call."""
    prefix = str(root)
    out: list[tuple[object, ...]] = []
    for _, source, target, fstype, _, _ in calls:
        assert isinstance(target, str)
        assert target.startswith(prefix)
        out.append((source, target[len(prefix) :], fstype))
    return out


def test_a_whole_plan_mounts_in_order(tmp_path: Path):
    fake = _apply(tmp_path, _whole(("/usr",)))
    expected: list[tuple[object, ...]] = [
        ("/usr", "/usr", None),
        (None, "/usr", None),
        ("tmpfs", "/dev", "tmpfs"),
    ]
    for name in DEVICES:
        expected += [(f"/dev/{name}", f"/dev/{name}", None), (None, f"/dev/{name}", None)]
    expected += [("devpts", "/dev/pts", "devpts")]
    expected += [("/run/sandbox/mnt/shm", "/dev/shm", None), (None, "/dev/shm", None)]
    expected += [("proc", "/proc", "proc")]
    # /proc of tmp_path holds nothing to mask: those steps are skipped.
    assert _relative(tmp_path, fake.calls) == expected


def test_a_whole_plan_builds_dev_and_tmp(tmp_path: Path):
    _apply(tmp_path, _whole(()))
    for name in DEVICES:
        assert (tmp_path / "dev" / name).is_file()  # bind targets for the device nodes
    assert (tmp_path / "dev/pts").is_dir()
    assert os.readlink(tmp_path / "dev/ptmx") == "pts/ptmx"
    assert os.readlink(tmp_path / "dev/stderr") == "/proc/self/fd/2"
    for sticky in ("tmp", "dev/shm"):
        assert stat.S_IMODE((tmp_path / sticky).stat().st_mode) == 0o1777


def test_binds_remount_with_their_flags(tmp_path: Path):
    fake = _apply(tmp_path, _whole(("/usr",)))
    flags = {(c[1], c[2]): c[4] for c in fake.named("mount")}
    usr = str(tmp_path / "usr")
    null = str(tmp_path / "dev/null")
    assert flags[("/usr", usr)] == BIND
    assert flags[(None, usr)] == REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV
    assert flags[("/dev/null", null)] == BIND
    # a device stays writable: no MS_RDONLY on its remount
    assert flags[(None, null)] == REMOUNT | sc.MS_NOSUID | sc.MS_NOEXEC


def test_fresh_filesystems_get_their_type_flags_and_data(tmp_path: Path):
    fake = _apply(tmp_path, _whole(()))
    by_target = {c[2]: c for c in fake.named("mount") if c[3] is not None}
    nosuid_nodev_noexec = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    assert by_target[f"{tmp_path}/proc"][4] == nosuid_nodev_noexec
    dev = by_target[f"{tmp_path}/dev"]
    assert dev[4] == nosuid_nodev_noexec
    assert dev[5] == "mode=0755,size=64k,nr_inodes=64"


def test_with_a_user_namespace_the_container_root_owns_what_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """/dev's tmpfs, the mount points and links belong to the container's root (a host uid)."""
    chowned: list[tuple[str, int]] = []
    monkeypatch.setattr(os, "chown", lambda path, uid, gid: chowned.append((path, uid)))
    monkeypatch.setattr(os, "lchown", lambda path, uid, gid: chowned.append((path, uid)))
    mounts, _ = rootfs_mounts((), "/run/sandbox/mnt")
    fake = RecordingSyscalls()
    rootfs.apply_mounts(str(tmp_path), mounts, 7000, sys=fake)
    dev = next(c for c in fake.named("mount") if c[2] == f"{tmp_path}/dev")
    assert dev[5] == "mode=0755,size=64k,nr_inodes=64,uid=7000,gid=7000"
    owned = {path[len(str(tmp_path)) :] for path, uid in chowned if uid == 7000}
    assert {"/proc", "/dev", "/tmp", "/box", "/dev/shm", "/dev/ptmx"} <= owned


def test_proc_files_present_on_the_kernel_are_masked_and_rebound(tmp_path: Path):
    (tmp_path / "proc/sys").mkdir(parents=True)
    (tmp_path / "proc/acpi").mkdir()
    (tmp_path / "proc/keys").touch()
    fake = _apply(tmp_path, _whole(()))
    proc = [c for c in fake.named("mount") if str(c[2]).startswith(f"{tmp_path}/proc/")]
    sys_dir = str(tmp_path / "proc/sys")
    assert proc == [
        (
            "mount",
            "tmpfs",
            str(tmp_path / "proc/acpi"),
            "tmpfs",
            sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV,
            "size=0",
        ),
        ("mount", "/dev/null", str(tmp_path / "proc/keys"), None, sc.MS_BIND, None),
        (
            "mount",
            None,
            str(tmp_path / "proc/keys"),
            None,
            REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NOEXEC,
            None,
        ),
        ("mount", sys_dir, sys_dir, None, BIND, None),
        (
            "mount",
            None,
            sys_dir,
            None,
            REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
            None,
        ),
    ]


def test_mkdir_sets_the_mode_even_on_an_existing_dir(tmp_path: Path):
    (tmp_path / "tmp").mkdir(mode=0o700)
    _apply(tmp_path, (MountOp("mkdir", "/tmp", mode=0o1777), MountOp("mkdir", "/a/b", mode=0o711)))
    assert stat.S_IMODE((tmp_path / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((tmp_path / "a/b").stat().st_mode) == 0o711


def test_a_refused_mount_stops_the_steps(tmp_path: Path):
    class Refusing(RecordingSyscalls):
        def mount(
            self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
        ) -> None:
            super().mount(source, target, fstype, flags, data)
            raise OSError(errno.EPERM, "mount refused", target)

    fake = Refusing()
    ops = (MountOp("mount", "/proc", source="proc", fstype="proc"), MountOp("mkdir", "/later"))
    with pytest.raises(PermissionError):
        rootfs.apply_mounts(str(tmp_path), ops, sys=fake)
    assert len(fake.calls) == 1
    assert not (tmp_path / "later").exists()


def test_overlay_dirs_are_made_inside_the_tmpfs(tmp_path: Path):
    """upper/ and work/ are created after the tmpfs is mounted over base, not hidden under it."""
    seen: list[bool] = []

    class Watching(RecordingSyscalls):
        def mount(
            self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
        ) -> None:
            seen.append((tmp_path / "upper").is_dir())
            super().mount(source, target, fstype, flags, data)

    fake = Watching()
    root = rootfs.mount_overlay(str(tmp_path), ("/a", "/b"), 2**20, 1024, sys=fake)
    assert seen == [False, False, True, True, True]
    overlay = fake.named("mount")[-1]
    assert overlay == (
        "mount",
        "overlay",
        root,
        "overlay",
        sc.MS_NOSUID | sc.MS_NODEV,
        "lowerdir=lower0:lower1,upperdir=upper,workdir=work",
    )


def test_pivot_into_steps_in_one_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    log: list[Call] = []
    monkeypatch.setattr(os, "chdir", lambda path: log.append(("chdir", path)))
    rootfs.pivot_into(str(tmp_path), sys=RecordingSyscalls(log))
    assert log == [
        ("chdir", str(tmp_path)),
        ("pivot_root", ".", "."),
        ("umount2", ".", sc.MNT_DETACH),
        ("chdir", "/"),
    ]
