"""The runtime of this worker process: one, on a loop of its own thread."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.runtime.shared import RuntimeThread

__all__ = ["runtime_host"]

_host: RuntimeThread | None = None


def runtime_host() -> RuntimeThread:
    """The runtime of this worker process, on a loop of its own thread.

    Made on first use: a client that only sends tasks never imports the runtime.
    """
    global _host
    if _host is None:
        from sandbox.runtime.shared import RuntimeThread

        _host = RuntimeThread()
    return _host
