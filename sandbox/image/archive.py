"""Safe extraction of image archives: docker export, docker save, OCI layouts.

An image archive is hostile input. Every member is checked before anything
is written, and nothing is ever written outside the destination directory:

- absolute member names, ``..`` components, and names that go through a
  symlink already extracted are refused;
- relative symlinks whose target leaves the image are refused (absolute
  symlinks are kept: inside the container they resolve in its own root);
- hardlinks must name a regular file already extracted in the image;
- device nodes and FIFOs are dropped (counted in the report); setuid and
  setgid bits are stripped; ownership is kept (there is no user namespace
  yet: uid 0 in the image is root's files, as in the host's /usr);
- sizes are bounded (per member, in total, and in member count);
- a truncated or corrupt archive is an error.

Layers are applied in order onto one directory (the image is flattened), with
whiteouts honoured: ``.wh.NAME`` deletes NAME, ``.wh..wh..opq`` empties its
directory of what earlier layers put there.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sandbox.errors import SandboxError

__all__ = ["ArchiveError", "ExtractReport", "Limits", "extract_image"]

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_CHUNK = 1 << 20


class ArchiveError(SandboxError, ValueError):
    """The archive is refused; ``member`` names the offending entry, if any."""

    def __init__(self, message: str, *, member: str | None = None) -> None:
        super().__init__(message, path=member)
        self.member = member


@dataclass(frozen=True)
class Limits:
    """Bounds on what one import may write."""

    max_total_bytes: int = 16 * 2**30
    max_member_bytes: int = 8 * 2**30
    max_members: int = 2_000_000


@dataclass
class ExtractReport:
    """What an import did, for the manifest and the user."""

    kind: str = "rootfs"
    layers: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    dropped_devices: list[str] = field(default_factory=list)
    stripped_setid: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


Progress = Callable[[int, int], None]


def _clean_name(name: str) -> PurePosixPath:
    """The member's path relative to the image root, or ArchiveError."""
    if name.startswith("/"):
        raise ArchiveError(f"absolute path in archive: {name!r}", member=name)
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"'..' in archive path: {name!r}", member=name)
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _inside(link_dir: PurePosixPath, target: str) -> bool:
    """True if a relative symlink target, seen from ``link_dir``, stays in the image."""
    depth = len(link_dir.parts)
    for part in PurePosixPath(target).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


class _Writer:
    """Applies checked members under ``root``, never following a symlink."""

    def __init__(self, root: Path, limits: Limits, report: ExtractReport) -> None:
        self.root = root
        self.limits = limits
        self.report = report
        self.layer_paths: set[PurePosixPath] = set()

    def _parent_dir(self, rel: PurePosixPath, member: str) -> Path:
        """Create the parents of ``rel`` as real directories; refuse symlinks on the way."""
        current = self.root
        for part in rel.parts[:-1]:
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current, 0o755)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise ArchiveError(
                    f"archive path goes through a symlink: {member!r}", member=member
                )
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(current)
                os.mkdir(current, 0o755)
        return current

    def _clear(self, path: Path, keep_dir: bool) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not keep_dir:
                shutil.rmtree(path)
        else:
            os.unlink(path)

    def whiteout(self, rel: PurePosixPath, member: str) -> None:
        parent = self._parent_dir(rel, member)
        name = rel.name
        if name == OPAQUE:
            prefix = rel.parent
            for child in os.listdir(parent):
                if prefix / child not in self.layer_paths:
                    self._clear(parent / child, keep_dir=False)
            return
        target = name[len(WHITEOUT) :]
        if target in ("", ".", ".."):
            raise ArchiveError(f"bad whiteout {member!r}", member=member)
        self._clear(parent / target, keep_dir=False)

    def add(self, info: tarfile.TarInfo, data: IO[bytes] | None) -> None:
        name = info.name
        rel = _clean_name(name)
        if rel == PurePosixPath("."):
            return
        if rel.name.startswith(WHITEOUT):
            self.whiteout(rel, name)
            return
        self.report.files += 1
        if self.report.files > self.limits.max_members:
            raise ArchiveError(f"more than {self.limits.max_members} entries")
        parent = self._parent_dir(rel, name)
        dest = parent / rel.name
        mode = info.mode & 0o7777
        if mode & 0o6000 and not info.isdir():
            self.report.stripped_setid.append(str(rel))
        mode &= ~0o6000
        if info.ischr() or info.isblk() or info.isfifo():
            self.report.dropped_devices.append(str(rel))
            return
        self.layer_paths.add(rel)
        if info.isdir():
            self._clear(dest, keep_dir=True)
            if not dest.is_dir() or dest.is_symlink():
                os.mkdir(dest, 0o755)
            os.chown(dest, info.uid, info.gid)
            os.chmod(dest, mode)
            return
        self._clear(dest, keep_dir=False)
        if info.issym():
            target = info.linkname
            if not target.startswith("/") and not _inside(rel.parent, target):
                raise ArchiveError(
                    f"symlink {name!r} -> {target!r} points outside the image", member=name
                )
            os.symlink(target, dest)
            os.lchown(dest, info.uid, info.gid)
        elif info.islnk():
            source_rel = _clean_name(info.linkname)
            source = self.root / source_rel
            for prefix in [self.root / p for p in source_rel.parents if str(p) != "."]:
                if prefix.is_symlink():
                    raise ArchiveError(f"hardlink {name!r} goes through a symlink", member=name)
            try:
                st = os.lstat(source)
            except FileNotFoundError:
                raise ArchiveError(
                    f"hardlink {name!r} -> {info.linkname!r}: no such file in the image",
                    member=name,
                ) from None
            if not stat.S_ISREG(st.st_mode):
                raise ArchiveError(f"hardlink {name!r} to a non-regular file", member=name)
            os.link(source, dest)
        elif info.isreg():
            if info.size > self.limits.max_member_bytes:
                raise ArchiveError(f"{name!r} is {info.size} bytes, too large", member=name)
            self.report.bytes += info.size
            if self.report.bytes > self.limits.max_total_bytes:
                raise ArchiveError(f"image larger than {self.limits.max_total_bytes} bytes")
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                remaining = info.size
                while remaining > 0 and data is not None:
                    chunk = data.read(min(_CHUNK, remaining))
                    if not chunk:
                        raise ArchiveError(f"archive truncated inside {name!r}", member=name)
                    os.write(fd, chunk)
                    remaining -= len(chunk)
                os.fchown(fd, info.uid, info.gid)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        else:
            raise ArchiveError(f"unsupported archive entry type for {name!r}", member=name)


def _apply_layer(stream: tarfile.TarFile, writer: _Writer, progress: Callable[[], None]) -> None:
    writer.layer_paths = set()
    try:
        for info in stream:
            data = stream.extractfile(info) if info.isreg() else None
            writer.add(info, data)
            progress()
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"corrupt or truncated archive: {exc}") from exc


def _members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    return {_clean_name(m.name).as_posix(): m for m in tar.getmembers()}


def _read_json(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Any:
    f = tar.extractfile(member)
    if f is None or member.size > 16 * 2**20:
        raise ArchiveError(f"bad metadata file {member.name!r}", member=member.name)
    try:
        return json.loads(f.read())
    except ValueError as exc:
        raise ArchiveError(f"bad JSON in {member.name!r}: {exc}", member=member.name) from exc


def _layers(tar: tarfile.TarFile, report: ExtractReport) -> Iterator[str] | None:
    """The layer member names in order, for docker save / OCI archives; None for a rootfs."""
    members = _members(tar)
    if "manifest.json" in members:  # docker save, old format or OCI-based
        manifest = _read_json(tar, members["manifest.json"])
        if not isinstance(manifest, list) or not manifest or "Layers" not in manifest[0]:
            raise ArchiveError("manifest.json is not a docker save manifest")
        report.kind = "docker-save"
        config_name = manifest[0].get("Config")
        if isinstance(config_name, str) and config_name in members:
            report.config = _read_json(tar, members[config_name]).get("config") or {}
        return iter([str(layer) for layer in manifest[0]["Layers"]])
    if "index.json" in members and "oci-layout" in members:
        index = _read_json(tar, members["index.json"])
        try:
            digest = index["manifests"][0]["digest"]
            manifest = _read_json(tar, members[_blob(digest)])
            layers = [layer["digest"] for layer in manifest["layers"]]
            config = _read_json(tar, members[_blob(manifest["config"]["digest"])])
        except (KeyError, IndexError, TypeError) as exc:
            raise ArchiveError(f"bad OCI layout: missing {exc}") from exc
        report.kind = "oci"
        report.config = config.get("config") or {}
        return iter([_blob(d) for d in layers])
    return None


def _blob(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    if not algorithm.isalnum() or not hexdigest.isalnum():
        raise ArchiveError(f"bad digest {digest!r}")
    return f"blobs/{algorithm}/{hexdigest}"


def extract_image(
    archive: Path, dest: Path, *, limits: Limits | None = None, progress: Progress | None = None
) -> ExtractReport:
    """Extract an image archive into the empty directory ``dest``.

    Args:
        archive: a ``docker export`` rootfs tar(.gz), a ``docker save`` tar,
            or an OCI image layout tar.
        dest: an empty directory; on error its contents are undefined (the
            caller removes it).
        limits: size bounds.
        progress: called with (bytes read, archive size) as extraction goes.

    Returns:
        What was extracted, dropped and stripped.

    Raises:
        ArchiveError: the archive is refused (the message names the member).
    """
    limits = limits or Limits()
    report = ExtractReport()
    writer = _Writer(dest, limits, report)
    total = archive.stat().st_size
    with open(archive, "rb") as raw:

        def tick() -> None:
            if progress is not None:
                progress(raw.tell(), total)

        try:
            tar = tarfile.open(fileobj=raw, mode="r:*")  # noqa: SIM115 (closed by with below)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveError(f"not a tar archive: {exc}") from exc
        with tar:
            try:
                layers = _layers(tar, report)
            except (tarfile.TarError, EOFError, OSError) as exc:
                if isinstance(exc, ArchiveError):
                    raise
                raise ArchiveError(f"corrupt or truncated archive: {exc}") from exc
            if layers is None:  # a plain rootfs: read it again, streaming
                raw.seek(0)
                with tarfile.open(fileobj=raw, mode="r|*") as stream:
                    _apply_layer(stream, writer, tick)
            else:
                members = _members(tar)
                for name in layers:
                    member = members.get(_clean_name(name).as_posix())
                    if member is None:
                        raise ArchiveError(f"layer {name!r} is missing from the archive")
                    report.layers.append(name)
                    blob = tar.extractfile(member)
                    if blob is None:
                        raise ArchiveError(f"layer {name!r} is not a file", member=name)
                    try:
                        stream = tarfile.open(fileobj=blob, mode="r|*")  # noqa: SIM115
                    except tarfile.TarError as exc:
                        raise ArchiveError(f"layer {name!r} is not a tar: {exc}") from exc
                    with stream:
                        _apply_layer(stream, writer, tick)
    if progress is not None:
        progress(total, total)
    return report
