"""Images: read-only root filesystems in the image store, and the built-in ones.

An image is a directory ``<store>/<name>/rootfs`` (the overlay's lower layer)
plus ``manifest.json`` (name, source, layers, digest, created, size, host
binds). Images are flattened at import: layers are applied in order, so a job
mounts one lower directory. Built-in images need no network and no Docker:

- ``host``: our own minimal /etc (no host passwd or shadow; the host's
  loader cache, alternatives links and the language runtimes' configuration,
  copied, and rebuilt when they change), empty mount points, the merged-/usr
  symlinks, and the host's /usr bound read-only at run time: Debian's
  python3, coreutils and the languages' compilers, as on the host.
- ``busybox``: Debian's busybox-static and its applet links, as in the
  walk-through (``sh``, ``ps``, ``nc``...); nothing of the host.

Invariant: a published image directory is never modified (overlayfs forbids
changing a lower layer under a live mount). Builds and imports go to a
staging directory beside it and are renamed into place; removal renames the
image away before deleting it, and running jobs keep their reference.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxError, SpecError, UnsupportedError
from sandbox.image.archive import ArchiveError, Limits, Progress, extract_image

__all__ = [
    "BUSYBOX_IMAGE",
    "HOST_IMAGE",
    "Image",
    "ImageError",
    "ImageStore",
]

HOST_IMAGE = "host"
BUSYBOX_IMAGE = "busybox"
BUILTIN = (HOST_IMAGE, BUSYBOX_IMAGE)
_VERSION = 2
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TOP_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_BUSYBOX = Path("/bin/busybox")

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


class ImageError(SandboxError):
    """An image cannot be found, built, imported or removed."""


@dataclass(frozen=True)
class Image:
    """A root filesystem: a read-only lower directory and host binds."""

    name: str
    root: Path
    binds: tuple[str, ...]
    id: str = ""  # changes whenever the image is replaced (a new directory)


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid image name.

    Raises:
        SpecError: naming the rule.
    """
    if not _NAME.match(name):
        raise SpecError(
            f"invalid image name {name!r} (lowercase letters, digits, '.', '_', '-'; "
            "up to 64 characters)",
            field="image",
            value=name,
        )
    return name


def _skeleton(rootfs: Path) -> None:
    """The directories and /etc files every built-in image has."""
    for name in ("proc", "dev", "etc", "box", "root", "run", "home", "var", "tmp"):
        (rootfs / name).mkdir(mode=0o755, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "root").chmod(0o700)
    etc = rootfs / "etc"
    for name, text in {
        "passwd": _PASSWD,
        "group": _GROUP,
        "hosts": _HOSTS,
        "nsswitch.conf": _NSSWITCH,
        "hostname": "sandbox\n",
    }.items():
        (etc / name).write_text(text)


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


def _build_host(rootfs: Path, host_root: Path, links: dict[str, str]) -> None:
    _skeleton(rootfs)
    (rootfs / "usr").mkdir(mode=0o755)
    for name, target in links.items():
        (rootfs / name).symlink_to(target)
    for name in _TOP_DIRS:
        if name not in links and (host_root / name).is_dir():
            (rootfs / name).mkdir(mode=0o755, exist_ok=True)
    etc = rootfs / "etc"
    # Not secrets: the loader cache, and the alternatives symlinks that some of
    # /usr/bin points through (awk -> /etc/alternatives/awk -> mawk).
    cache = host_root / "etc/ld.so.cache"
    if cache.is_file():
        shutil.copyfile(cache, etc / "ld.so.cache")
    (etc / "alternatives").mkdir()
    alternatives = host_root / "etc/alternatives"
    if alternatives.is_dir():
        for entry in alternatives.iterdir():
            if entry.is_symlink():
                (etc / "alternatives" / entry.name).symlink_to(os.readlink(entry))
    for config in _runtime_configs(host_root):
        shutil.copytree(config, etc / config.name, symlinks=True)


# What language runtimes read from /etc and fail without (no secrets): the
# JVM's security and logging configuration, Mono's library map.
_RUNTIME_CONFIGS = ("java-*-openjdk", "mono")


def _runtime_configs(host_root: Path) -> list[Path]:
    return sorted(
        path
        for pattern in _RUNTIME_CONFIGS
        for path in (host_root / "etc").glob(pattern)
        if path.is_dir() and not path.is_symlink()
    )


def _etc_digest(host_root: Path) -> str:
    """What the host image copies of the host's /etc: its loader cache, alternatives
    and the runtimes' configuration (by name, size and time)."""
    digest = hashlib.sha256()
    with contextlib.suppress(OSError):
        digest.update((host_root / "etc/ld.so.cache").read_bytes())
    for config in _runtime_configs(host_root):
        for path in sorted(config.rglob("*")):
            info = path.lstat()
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    alternatives = host_root / "etc/alternatives"
    if alternatives.is_dir():
        for entry in sorted(alternatives.iterdir()):
            if entry.is_symlink():
                digest.update(f"{entry.name}\0{os.readlink(entry)}\0".encode())
    return digest.hexdigest()


def _build_busybox(rootfs: Path, busybox: Path) -> None:
    _skeleton(rootfs)
    for name in ("bin", "sbin", "usr/bin", "usr/sbin"):
        (rootfs / name).mkdir(mode=0o755, parents=True, exist_ok=True)
    shutil.copyfile(busybox, rootfs / "bin/busybox")
    (rootfs / "bin/busybox").chmod(0o755)
    applets = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        path = rootfs / applet
        if applet != "bin/busybox" and not path.exists() and ".." not in applet:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to("/bin/busybox")


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _chown_root(root: Path) -> None:
    for dirpath, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            os.lchown(os.path.join(dirpath, name), 0, 0)
    os.chown(root, 0, 0)


class ImageStore:
    """The images of this host, under ``<state_dir>/images``."""

    def __init__(self, state_dir: Path, *, host_root: Path = Path("/")) -> None:
        self.root = state_dir / "images"
        self.host_root = host_root

    def _dir(self, name: str) -> Path:
        return self.root / check_name(name)

    @contextlib.contextmanager
    def _staging(self, name: str) -> Iterator[Path]:
        """A fresh directory to build ``name`` in; published by :meth:`_publish`, else removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-{name}-", dir=self.root))
        try:
            (staging / "rootfs").mkdir()
            yield staging
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _publish(self, staging: Path, name: str, manifest: dict[str, Any], replace: bool) -> None:
        manifest = {
            "name": name,
            "version": _VERSION,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "size": _tree_size(staging / "rootfs"),
            **manifest,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (staging / "rootfs").chmod(0o755)
        staging.chmod(0o755)
        dest = self._dir(name)
        if dest.exists():
            if not replace:
                raise ImageError(f"image {name} exists (remove it first: sandbox image rm {name})")
            self._retire(dest)
        try:
            staging.rename(dest)
        except OSError as exc:
            if not dest.is_dir():
                raise ImageError(f"cannot publish image {name}: {exc.strerror}") from exc
            # Another runtime published it first: theirs is as good as ours.

    def _retire(self, path: Path) -> None:
        """Move an image out of the way, then delete it (running jobs keep their mounts)."""
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=self.root))
        try:
            path.rename(trash / "image")
        except OSError as exc:
            # EXDEV: an overlayfs root without redirect_dir cannot rename a
            # directory of its lower layer; delete in place instead.
            if exc.errno != errno.EXDEV:
                shutil.rmtree(trash, ignore_errors=True)
                raise
            shutil.rmtree(path)
        shutil.rmtree(trash, ignore_errors=True)

    # -- reading -----------------------------------------------------------

    def manifest(self, name: str) -> dict[str, Any]:
        """The manifest of image ``name``.

        Raises:
            ImageError: there is no such image.
        """
        path = self._dir(name) / "manifest.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise ImageError(
                f"no image {name!r} (see: sandbox image ls; import one: sandbox image import)"
            ) from None
        except (OSError, ValueError) as exc:
            raise ImageError(f"unreadable manifest {path}: {exc}") from exc
        return data

    def manifests(self) -> list[dict[str, Any]]:
        """Manifests of every published image, by name."""
        if not self.root.is_dir():
            return []
        out = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            with contextlib.suppress(ImageError, SpecError):
                out.append(self.manifest(entry.name))
        return out

    def get(self, name: str) -> Image:
        """The image ``name``, building a built-in one on first use.

        Raises:
            ImageError: no such image.
            UnsupportedError: a built-in image cannot be built on this host.
        """
        if name == HOST_IMAGE:
            self.ensure_host()
        elif name == BUSYBOX_IMAGE:
            self.ensure_busybox()
        manifest = self.manifest(name)
        inode = os.stat(self._dir(name)).st_ino
        return Image(
            name=name,
            root=self._dir(name) / "rootfs",
            binds=tuple(manifest.get("binds", ())),
            id=f"{name}:{inode}:{manifest.get('created', '')}",
        )

    # -- built-in images ---------------------------------------------------

    def ensure_host(self) -> None:
        """Build the ``host`` image if it is missing or the host's layout changed."""
        links, binds = _host_layout(self.host_root)
        want = {
            "source": "host",
            "links": links,
            "binds": list(binds),
            "etc": _etc_digest(self.host_root),  # packages installed since add both
        }
        with contextlib.suppress(ImageError):
            have = self.manifest(HOST_IMAGE)
            if have.get("version") == _VERSION and all(have.get(k) == v for k, v in want.items()):
                return
        with self._staging(HOST_IMAGE) as staging:
            _build_host(staging / "rootfs", self.host_root, links)
            _chown_root(staging / "rootfs")
            self._publish(staging, HOST_IMAGE, want, replace=True)

    def ensure_busybox(self, busybox: Path = _BUSYBOX) -> None:
        """Build the ``busybox`` image from Debian's busybox-static if it is missing.

        Raises:
            UnsupportedError: busybox-static is not installed.
        """
        with contextlib.suppress(ImageError):
            if self.manifest(BUSYBOX_IMAGE).get("version") == _VERSION:
                return
        if not busybox.is_file():
            raise UnsupportedError(
                f"no {busybox} for the busybox image", hint="apt-get install busybox-static"
            )
        digest = hashlib.sha256(busybox.read_bytes()).hexdigest()
        with self._staging(BUSYBOX_IMAGE) as staging:
            _build_busybox(staging / "rootfs", busybox)
            _chown_root(staging / "rootfs")
            self._publish(
                staging,
                BUSYBOX_IMAGE,
                {"source": "busybox-static", "digest": f"sha256:{digest}", "binds": []},
                replace=True,
            )

    # -- import, build, remove ---------------------------------------------

    def import_archive(
        self,
        name: str,
        archive: Path,
        *,
        limits: Limits | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Import a ``docker export`` / ``docker save`` / OCI archive as image ``name``.

        Returns:
            The new image's manifest.

        Raises:
            SpecError: bad name.
            ImageError: the image exists, or the archive cannot be read.
            ArchiveError: the archive is refused (nothing is left behind).
        """
        check_name(name)
        if name in BUILTIN:
            raise ImageError(f"{name} is a built-in image name")
        if self._dir(name).exists():
            raise ImageError(f"image {name} exists (remove it first: sandbox image rm {name})")
        try:
            digest = _sha256(archive)
        except OSError as exc:
            raise ImageError(f"cannot read {archive}: {exc.strerror}", path=str(archive)) from exc
        with self._staging(name) as staging:
            report = extract_image(archive, staging / "rootfs", limits=limits, progress=progress)
            for mountpoint in ("proc", "dev", "tmp", "box"):
                target = staging / "rootfs" / mountpoint
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    raise ArchiveError(f"/{mountpoint} in the image is not a directory")
                target.mkdir(mode=0o755, exist_ok=True)
            (staging / "rootfs" / "tmp").chmod(0o1777)
            self._publish(
                staging,
                name,
                {
                    "source": report.kind,
                    "digest": f"sha256:{digest}",
                    "layers": report.layers,
                    "binds": [],
                    "files": report.files,
                    "dropped_devices": len(report.dropped_devices),
                    "stripped_setid": report.stripped_setid[:100],
                    "env": report.config.get("Env") or [],
                },
                replace=False,
            )
        return self.manifest(name)

    def build_debootstrap(
        self,
        name: str,
        suite: str,
        *,
        include: tuple[str, ...] = (),
        variant: str = "minbase",
        mirror: str | None = None,
        output: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Build image ``name`` with debootstrap: independent of the host's /usr.

        Raises:
            UnsupportedError: debootstrap is not installed.
            ImageError: debootstrap failed (its last output lines say why).
        """
        check_name(name)
        if name in BUILTIN:
            raise ImageError(f"{name} is a built-in image name")
        if self._dir(name).exists():
            raise ImageError(f"image {name} exists (remove it first: sandbox image rm {name})")
        tool = shutil.which("debootstrap")
        if tool is None:
            raise UnsupportedError(
                "debootstrap is not installed", hint="apt-get install debootstrap"
            )
        with self._staging(name) as staging:
            argv = [tool, f"--variant={variant}"]
            if include:
                argv.append(f"--include={','.join(include)}")
            argv += [suite, str(staging / "rootfs")]
            if mirror:
                argv.append(mirror)
            tail: list[str] = []
            with subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    tail = [*tail[-19:], line.rstrip()]
                    if output is not None:
                        output(line.rstrip())
            if proc.returncode != 0:
                raise ImageError(
                    f"debootstrap failed with status {proc.returncode}:\n" + "\n".join(tail)
                )
            rootfs = staging / "rootfs"
            for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for entry in (rootfs / sub).glob("*.deb"):
                    entry.unlink()
            (rootfs / "box").mkdir(mode=0o755, exist_ok=True)
            self._publish(
                staging,
                name,
                {
                    "source": "debootstrap",
                    "suite": suite,
                    "include": list(include),
                    "variant": variant,
                    "binds": [],
                },
                replace=False,
            )
        return self.manifest(name)

    def remove(self, name: str) -> None:
        """Remove image ``name``; running jobs keep using it until they end.

        Raises:
            ImageError: there is no such image.
        """
        path = self._dir(name)
        if not path.is_dir():
            raise ImageError(f"no image {name!r}")
        self._retire(path)

    def collect_garbage(self) -> list[str]:
        """Remove staging and retired directories of dead processes. Returns their names."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        for entry in self.root.iterdir():
            if not entry.is_dir() or not entry.name.startswith("."):
                continue
            if entry.name.startswith(".staging-"):
                pid = entry.name.split("-")[1]
                if pid.isdigit() and Path(f"/proc/{pid}").exists():
                    continue  # an import or build in progress
            elif not entry.name.startswith((".trash-", ".host-old-")):  # .host-old-: 0.1's
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        return removed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
