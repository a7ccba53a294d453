"""The native launcher: the child side of every container, in C (``launch.c``).

The runtime starts one launcher process per :class:`~sandbox.runtime.runner.Runtime`
and asks it for containers (docs/adr/0008-native-launcher.md). It is built
from the source shipped in this package by the project's install step
(``scripts/install``, the worker image) with the host's C compiler, into
this package's directory; :func:`path` finds it, :func:`build` makes it.

    python -m sandbox.kernel.native      # build (or rebuild a stale) launcher
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sandbox.errors import UnsupportedError

__all__ = ["SOURCE", "build", "path"]

SOURCE = Path(__file__).with_name("launch.c")
BINARY = Path(__file__).with_name("sandbox-launch")
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong")


def _stale(binary: Path) -> bool:
    try:
        return binary.stat().st_mtime < SOURCE.stat().st_mtime
    except FileNotFoundError:
        return True


def path() -> str:
    """The launcher binary, built and up to date.

    Raises:
        UnsupportedError: it was never built, or its source is newer.
    """
    override = os.environ.get("SANDBOX_LAUNCHER")
    binary = Path(override) if override else BINARY
    if not os.access(binary, os.X_OK) or (not override and _stale(binary)):
        raise UnsupportedError(
            f"the native launcher {binary} is missing or older than {SOURCE.name}",
            hint="run scripts/install (or: python -m sandbox.kernel.native) to build it",
        )
    return str(binary)


def build(*, force: bool = False) -> Path:
    """Compile ``launch.c`` into the package directory if missing or stale.

    Raises:
        UnsupportedError: no C compiler, or the build failed.
    """
    if not force and not _stale(BINARY):
        return BINARY
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise UnsupportedError("no C compiler to build the launcher", hint="apt-get install gcc")
    tmp = BINARY.with_name(f".{BINARY.name}.{os.getpid()}")
    result = subprocess.run(
        [cc, *CFLAGS, "-o", str(tmp), str(SOURCE)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise UnsupportedError(
            f"building the launcher failed:\n{result.stderr.strip()}",
            hint=f"{cc} {' '.join(CFLAGS)} -o {BINARY} {SOURCE}",
        )
    tmp.chmod(0o755)
    tmp.rename(BINARY)
    return BINARY
