"""The default image: a tiny root directory plus read-only binds of the host's /usr.

An image is a read-only directory (the overlay's lower layer) and a list of
host directories bound read-only at the same path inside. The built-in
``host`` image works on any Debian host with python3 and needs no network and
no Docker: it holds our own minimal /etc (no host passwd or shadow), empty
mount points, and the merged-/usr symlinks (/bin -> usr/bin...); /usr comes
from the host. Image import and pooling build on this shape.

Invariant: an image directory is never modified once published (overlayfs
forbids changing a lower layer under a live mount); a new version is built
beside it and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HOST_IMAGE", "Image", "ensure_host_image"]

HOST_IMAGE = "host"
_VERSION = 1
_TOP_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")

_PASSWD = """\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
_GROUP = """\
root:x:0:
nogroup:x:65534:
"""
_HOSTS = """\
127.0.0.1\tlocalhost sandbox
::1\tlocalhost ip6-localhost ip6-loopback
"""
_NSSWITCH = """\
passwd: files
group: files
hosts: files
"""


@dataclass(frozen=True)
class Image:
    """A root filesystem: a read-only lower directory and host binds."""

    name: str
    root: Path
    binds: tuple[str, ...]


def _host_layout(host_root: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """Symlinks to replicate and directories to bind, from the host's top level."""
    links: dict[str, str] = {}
    binds = ["/usr"]
    for name in _TOP_DIRS:
        path = host_root / name
        if path.is_symlink():
            links[name] = os.readlink(path)
        elif path.is_dir():
            binds.append(f"/{name}")
    return links, tuple(binds)


def _build(dest: Path, host_root: Path, links: dict[str, str]) -> None:
    for name in ("usr", "proc", "dev", "etc", "box", "root", "run", "home", "var"):
        (dest / name).mkdir(mode=0o755)
    (dest / "tmp").mkdir()
    (dest / "tmp").chmod(0o1777)
    (dest / "root").chmod(0o700)
    for name, target in links.items():
        (dest / name).symlink_to(target)
    for name in _TOP_DIRS:
        if name not in links and (host_root / name).is_dir():
            (dest / name).mkdir(mode=0o755, exist_ok=True)
    etc = dest / "etc"
    for name, text in {
        "passwd": _PASSWD,
        "group": _GROUP,
        "hosts": _HOSTS,
        "nsswitch.conf": _NSSWITCH,
        "hostname": "sandbox\n",
    }.items():
        (etc / name).write_text(text)
    # Not secrets: the loader cache, and the alternatives symlinks that some of
    # /usr/bin points through (awk -> /etc/alternatives/awk -> mawk).
    cache = host_root / "etc/ld.so.cache"
    if cache.is_file():
        shutil.copyfile(cache, etc / "ld.so.cache")
    alternatives = host_root / "etc/alternatives"
    (etc / "alternatives").mkdir()
    if alternatives.is_dir():
        for entry in alternatives.iterdir():
            if entry.is_symlink():
                (etc / "alternatives" / entry.name).symlink_to(os.readlink(entry))
    for path in (dest, *dest.rglob("*")):
        if not path.is_symlink():
            os.chown(path, 0, 0)


def ensure_host_image(state_dir: Path, host_root: Path = Path("/")) -> Image:
    """Return the built-in ``host`` image, building it first if missing or stale.

    Args:
        state_dir: the image store's parent (``/var/lib/sandbox``).
        host_root: the host filesystem to take /usr and the loader cache from.

    Returns:
        The image.
    """
    links, binds = _host_layout(host_root)
    base = state_dir / "images" / HOST_IMAGE
    rootfs = base / "rootfs"
    manifest = base / "manifest.json"
    want = {"name": HOST_IMAGE, "version": _VERSION, "links": links, "binds": list(binds)}
    try:
        have = json.loads(manifest.read_text())
    except (OSError, ValueError):
        have = None
    if have != want or not rootfs.is_dir():
        base.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{HOST_IMAGE}-", dir=base.parent))
        try:
            (staging / "rootfs").mkdir()
            _build(staging / "rootfs", host_root, links)
            (staging / "manifest.json").write_text(json.dumps(want, indent=2) + "\n")
            staging.chmod(0o755)
            if base.exists():
                # Published images are never changed in place: move the old one
                # aside; running overlays keep their reference to it.
                old = Path(tempfile.mkdtemp(prefix=f".{HOST_IMAGE}-old-", dir=base.parent))
                base.rename(old / "image")
            try:
                staging.rename(base)
            except OSError:
                if not base.is_dir():
                    raise
                shutil.rmtree(staging)  # another runtime published it first
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return Image(name=HOST_IMAGE, root=rootfs, binds=binds)
