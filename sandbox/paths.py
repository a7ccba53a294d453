"""Where a runtime keeps its host state, for code that must not import the settings.

The ``sandbox run`` client looks for `sandbox serve`'s socket before it
imports anything heavy (pydantic, the runtime, even :mod:`pathlib`);
:class:`~sandbox.settings.Settings` takes its default from here too, so the
two never disagree.
"""

from __future__ import annotations

import os

__all__ = [
    "CPUS",
    "DEFAULT_RUN_DIR",
    "JOBS",
    "MOUNTS",
    "OWNERS",
    "POOLS",
    "SERVE_SOCKET",
    "USERNS",
    "WORKERS",
    "serve_socket",
    "write_atomically",
]

DEFAULT_RUN_DIR = "/run/sandbox"
SERVE_SOCKET = "sandbox.sock"  # `sandbox serve`, in the run dir
# The run dir's folders, one name each:
OWNERS = "owners"  # each live runtime's lock file (sandbox/runtime/reclaim.py)
POOLS = "pools"  # each runtime's pool counters (`sandbox pool status`)
JOBS = "jobs"  # the records of running jobs (`sandbox ps`, sandbox/runtime/jobs.py)
MOUNTS = "mnt"  # where containers' roots are built
CPUS = "cpus"  # slot locks of pinned CPUs (sandbox/kernel/slots.py)
USERNS = "userns"  # slot locks of the user namespaces' host id ranges
WORKERS = "workers"  # worker processes' heartbeats (worker/health.py)


def serve_socket(run_dir: str | os.PathLike[str] | None = None) -> str:
    """`sandbox serve`'s socket: in ``run_dir``, else SANDBOX_RUN_DIR's, else the default."""
    if run_dir is None:
        run_dir = os.environ.get("SANDBOX_RUN_DIR") or DEFAULT_RUN_DIR
    return os.path.join(run_dir, SERVE_SOCKET)


def write_atomically(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
    """Replace the file ``path`` with ``text`` at once: a reader sees all of it or none.

    Written to a temporary file beside it, then renamed over it.

    Raises:
        OSError: as os.open and os.write do (FileNotFoundError: no such directory).
    """
    directory, name = os.path.split(os.fspath(path))
    tmp = os.path.join(directory, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
