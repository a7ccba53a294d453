"""Step order of the mechanism modules, through the recording fake syscall layer.

The fake proves the order and arguments of the calls; that the kernel then
isolates anything is proven by the integration tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox import caps, rootfs
from sandbox import syscalls as sc
from sandbox.plan import MountOp
from tests.unit.fakes import RecordingSyscalls


def test_mount_overlay_makes_everything_private_first(tmp_path: Path):
    fake = RecordingSyscalls()
    root = rootfs.mount_overlay(str(tmp_path), ("/img",), 1 << 20, 256, sys=fake)
    assert root == f"{tmp_path}/root"
    first, tmpfs, lower, overlay = fake.named("mount")
    flags, data = int(tmpfs[4]), str(tmpfs[5])
    assert first == ("mount", None, "/", None, sc.MS_REC | sc.MS_PRIVATE, None)
    assert tmpfs[1:4] == ("tmpfs", str(tmp_path), "tmpfs")
    assert flags & sc.MS_NOSUID
    assert flags & sc.MS_NODEV
    assert "size=1048576" in data
    assert "nr_inodes=256" in data
    assert lower == ("mount", "/img", f"{tmp_path}/lower0", None, sc.MS_BIND, None)
    assert overlay[1:4] == ("overlay", root, "overlay")
    # Relative to base: the job's mountinfo names no host path.
    assert overlay[5] == "lowerdir=lower0,upperdir=upper,workdir=work"
    assert all((tmp_path / d).is_dir() for d in ("upper", "work", "root", "lower0"))


def test_mount_overlay_gives_the_root_to_the_container_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With a user namespace, the merged root (the upper dir) and /dev/shm are its root's."""
    chowned: list[tuple[str, int, int]] = []
    monkeypatch.setattr(os, "chown", lambda path, uid, gid: chowned.append((path, uid, gid)))
    rootfs.mount_overlay(str(tmp_path), ("/img",), 1 << 20, 256, 5000, sys=RecordingSyscalls())
    assert chowned == [(f"{tmp_path}/upper", 5000, 5000), (f"{tmp_path}/shm", 5000, 5000)]


def test_readonly_bind_is_a_bind_then_a_remount(tmp_path: Path):
    fake = RecordingSyscalls()
    (tmp_path / "usr").mkdir()
    op = MountOp("bind", "/usr", source="/usr", flags=sc.MS_NOSUID | sc.MS_NODEV, readonly=True)
    rootfs.apply_mounts(str(tmp_path), (op,), sys=fake)
    bind, remount = fake.named("mount")
    assert bind == ("mount", "/usr", f"{tmp_path}/usr", None, sc.MS_BIND | sc.MS_REC, None)
    assert remount[4] == (sc.MS_BIND | sc.MS_REMOUNT | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_RDONLY)


def test_files_dirs_links_and_masks(tmp_path: Path):
    fake = RecordingSyscalls()
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/kcore").touch()
    (tmp_path / "proc/acpi").mkdir()
    ops = (
        MountOp("mkdir", "/dev", mode=0o755),
        MountOp("file", "/dev/null", mode=0o666),
        MountOp("symlink", "/dev/fd", source="/proc/self/fd"),
        MountOp("mask", "/proc/kcore"),
        MountOp("mask", "/proc/acpi"),
        MountOp("mask", "/proc/not-on-this-kernel"),
        MountOp("rebind", "/proc/sys", readonly=True),  # absent: skipped
    )
    rootfs.apply_mounts(str(tmp_path), ops, sys=fake)
    assert (tmp_path / "dev/null").is_file()
    assert os.readlink(tmp_path / "dev/fd") == "/proc/self/fd"
    mounts = fake.named("mount")
    assert mounts[0] == ("mount", "/dev/null", f"{tmp_path}/proc/kcore", None, sc.MS_BIND, None)
    assert mounts[1][2] == f"{tmp_path}/proc/kcore"  # the bind made read-only
    assert int(mounts[1][4]) & sc.MS_RDONLY
    assert mounts[2][1:4] == ("tmpfs", f"{tmp_path}/proc/acpi", "tmpfs")
    assert int(mounts[2][4]) & sc.MS_RDONLY
    assert len(mounts) == 3


def test_unknown_mount_step_is_an_error(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown mount step"):
        rootfs.apply_mounts(str(tmp_path), (MountOp("teleport", "/x"),), sys=RecordingSyscalls())


def test_pivot_root_detaches_the_old_root(monkeypatch: pytest.MonkeyPatch):
    fake = RecordingSyscalls()
    dirs: list[str] = []
    monkeypatch.setattr(os, "chdir", dirs.append)
    rootfs.pivot_into("/new", sys=fake)
    assert dirs == ["/new", "/"]
    assert fake.calls == [("pivot_root", ".", "."), ("umount2", ".", sc.MNT_DETACH)]


def test_capability_names_and_mask():
    assert caps.CAPABILITIES[0] == "CAP_CHOWN"
    assert caps.CAPABILITIES[10] == "CAP_NET_BIND_SERVICE"
    assert caps.CAPABILITIES[21] == "CAP_SYS_ADMIN"
    assert caps.capability_mask({"CAP_CHOWN", "CAP_KILL"}) == 0b100001
    assert caps.capability_mask(set()) == 0


@pytest.mark.parametrize(("keep", "uid"), [(0, 65534), (1 << 10, 0)])
def test_drop_capabilities_order(monkeypatch: pytest.MonkeyPatch, keep: int, uid: int):
    """Bounding set first (needs CAP_SETPCAP), then ids, capset, ambient, no_new_privs last."""
    fake = RecordingSyscalls()
    ids: list[tuple[object, ...]] = []
    monkeypatch.setattr(os, "setgroups", lambda groups: ids.append(("setgroups", tuple(groups))))
    monkeypatch.setattr(os, "setresgid", lambda *a: ids.append(("setresgid", *a)))

    def setresuid(*uids: int) -> None:
        ids.append(("setresuid", *uids))
        fake.calls.append(("ids",))

    monkeypatch.setattr(os, "setresuid", setresuid)
    caps.drop_capabilities(keep, uid, uid, last_cap=40, sys=fake)
    dropped = [c[2] for c in fake.calls if c[:2] == ("prctl", sc.PR_CAPBSET_DROP)]
    assert dropped == [c for c in range(41) if not keep & (1 << c)]
    assert ids == [("setgroups", ()), ("setresgid", uid, uid, uid), ("setresuid", uid, uid, uid)]
    names = [c[0] if c[0] != "prctl" else (c[0], c[1]) for c in fake.calls]
    tail = names[names.index("ids") :]
    assert tail == [
        "ids",
        "capset",
        ("prctl", sc.PR_CAP_AMBIENT),
        ("prctl", sc.PR_SET_NO_NEW_PRIVS),
    ]
    assert fake.named("capset") == [("capset", keep, keep, 0)]  # inheritable stays empty
