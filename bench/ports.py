"""What the service benchmarks share: a free loopback port, and a redis-server of their
own on one (never a Redis that happens to run on the host)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["free_port", "start_redis", "wait_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, process: subprocess.Popen[bytes] | None = None, seconds: float = 30
) -> None:
    """Until something accepts connections on ``port`` (``process`` must not exit first)."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
            return
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited at start")
        if time.monotonic() > deadline:
            raise SystemExit(f"nothing listens on port {port} after {seconds:g} s")
        time.sleep(0.05)


def start_redis(
    port: int, directory: Path | str, *, durable: bool = False
) -> subprocess.Popen[bytes]:
    """redis-server on loopback ``port``, its files in ``directory``; ``durable``:
    append-only with fsync always (what a restart that keeps queued jobs needs)."""
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (scripts/install installs it)")
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    argv += ["--appendonly", "yes", "--appendfsync", "always"] if durable else []
    process = subprocess.Popen([*argv, "--save", ""], stdout=subprocess.DEVNULL)
    wait_port(port, process)
    return process
