"""What the `sandbox` commands share when they turn arguments into specs.

A :class:`UsageError` is bad command-line input: the command prints it on
stderr and exits with status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = ["EXIT_SANDBOX", "EXIT_USAGE", "UsageError", "invalid", "read_file"]

EXIT_USAGE = 2  # bad usage, or a spec the host refuses
EXIT_SANDBOX = 125  # the sandbox failed, not the program


class UsageError(Exception):
    """Bad command-line input: reported on stderr, exit status 2."""


def read_file(
    path: str, what: str, *, cwd: str | None = None, stdin: BinaryIO | None = None
) -> str:
    """The text of ``path`` (``-``: standard input), invalid UTF-8 replaced.

    Args:
        path: the file, relative to ``cwd`` (default: ours).
        what: what it is, for the message.
        cwd: the directory relative paths start from (`sandbox serve`: the client's).
        stdin: what ``-`` reads (default: our standard input).

    Raises:
        UsageError: it cannot be read (``what`` names it in the message).
    """
    if path == "-":
        return (stdin or sys.stdin.buffer).read().decode(errors="replace")
    try:
        return (Path(cwd or ".") / path).read_bytes().decode(errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc


def invalid(exc: ValidationError) -> UsageError:
    """pydantic's first complaint, naming the field, as a usage error."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return UsageError(f"invalid {where}: {first['msg']}")
