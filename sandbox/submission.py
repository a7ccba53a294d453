"""A submission sent as an archive (zip, or tar with any compression), safely unpacked.

:func:`unpack` turns the archive's bytes into the files of a job's working
directory, refusing what could hurt or mislead: anything but regular files
(links, devices, FIFOs), names that are not plain file names (a path, ``..``,
a hidden absolute name), more than :data:`MAX_FILES` files, and more than
:data:`MAX_BYTES` unpacked, counted as the data is read (an archive's own
size headers are not trusted: a zip bomb stops at the cap). Archives that put
everything in one top folder (``solution/main.cpp``) are taken from inside
it; other folders are refused. Pure: bytes in, files out, nothing written.
"""

from __future__ import annotations

import io
import lzma
import re
import stat
import tarfile
import zipfile
import zlib
from typing import IO

__all__ = ["MAX_BYTES", "MAX_FILES", "unpack"]

MAX_FILES = 64  # as JobSpec.files
MAX_BYTES = 16 * 2**20
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def unpack(data: bytes) -> dict[str, bytes]:
    """The files of a zip or tar archive, by name.

    Raises:
        ValueError: not an archive, or one with something refused (named).
    """
    members = _members(data)
    for raw, _ in members:
        if raw.startswith("/") or ".." in raw.split("/"):
            raise ValueError(f"archive: {raw!r} is not a plain file name (folders are not taken)")
    names = [name.strip("/") for name, _ in members]
    tops = {name.split("/", 1)[0] for name in names}
    strip = len(tops) == 1 and all("/" in name for name in names)  # one top folder: inside it
    files: dict[str, bytes] = {}
    for (raw, content), name in zip(members, names, strict=True):
        inner = name.split("/", 1)[1] if strip else name
        if not _NAME.match(inner) or inner in (".", ".."):
            raise ValueError(f"archive: {raw!r} is not a plain file name (folders are not taken)")
        if inner in files:
            raise ValueError(f"archive: {inner} is in it twice")
        files[inner] = content
    if not files:
        raise ValueError("archive: no files in it")
    return files


def _members(data: bytes) -> list[tuple[str, bytes]]:
    """(name, content) of each regular file, read under the caps; folders skipped,
    anything else refused."""
    found: list[tuple[str, bytes]] = []
    total = 0

    def add(name: str, stream: IO[bytes]) -> None:
        nonlocal total
        if len(found) >= MAX_FILES:
            raise ValueError(f"archive: more than {MAX_FILES} files")
        content = _read(stream, MAX_BYTES - total, name)
        total += len(content)
        found.append((name, content))

    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no type said, a plain file
                if kind and kind != stat.S_IFREG:
                    raise ValueError(f"archive: {info.filename!r} is not a regular file")
                with archive.open(info) as stream:
                    add(info.filename, stream)
        return found
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isreg():
                    raise ValueError(f"archive: {member.name!r} is not a regular file")
                extracted = tar.extractfile(member)
                assert extracted is not None  # a regular file's
                with extracted:
                    add(member.name, extracted)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        raise ValueError(f"not an archive (zip, or tar with gzip, bzip2 or xz): {exc}") from None
    return found


def _read(stream: IO[bytes], room: int, name: str) -> bytes:
    chunks, size = [], 0
    while chunk := stream.read(65536):
        size += len(chunk)
        if size > room:
            raise ValueError(f"archive: more than {MAX_BYTES} bytes unpacked (at {name})")
        chunks.append(chunk)
    return b"".join(chunks)
