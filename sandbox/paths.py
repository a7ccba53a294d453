"""Where a runtime keeps its host state, for code that must not import the settings.

The ``sandbox run`` client looks for `sandbox serve`'s socket before it
imports anything heavy (pydantic, the runtime, even :mod:`pathlib`);
:class:`~sandbox.settings.Settings` takes its default from here too, so the
two never disagree.
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_RUN_DIR", "SERVE_SOCKET", "serve_socket"]

DEFAULT_RUN_DIR = "/run/sandbox"
SERVE_SOCKET = "sandbox.sock"  # `sandbox serve`, in the run dir


def serve_socket(run_dir: str | os.PathLike[str] | None = None) -> str:
    """`sandbox serve`'s socket: in ``run_dir``, else SANDBOX_RUN_DIR's, else the default."""
    if run_dir is None:
        run_dir = os.environ.get("SANDBOX_RUN_DIR") or DEFAULT_RUN_DIR
    return os.path.join(run_dir, SERVE_SOCKET)
