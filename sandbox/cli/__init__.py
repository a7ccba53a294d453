"""``sandbox``, the command: its entry point (the commands: :mod:`sandbox.cli.commands`).

``sandbox run`` first offers its job to `sandbox serve` (:mod:`sandbox.cli.daemon`),
importing only the C module ``_socket`` to do so; everything
else, and ``sandbox run`` without a server, goes to :func:`sandbox.cli.commands.main`.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sandbox`` command."""
    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["run"] and not {"-h", "--help"} & set(raw):
        from sandbox.cli import daemon

        forwarded = daemon.forward(raw)  # a warm runtime, nothing imported
        if forwarded is not None:
            if argv is None:  # the command itself: nothing of ours to finalise
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(forwarded)  # skips the interpreter's teardown (a few ms)
            return forwarded
    from sandbox.cli import commands

    return commands.main(raw)
