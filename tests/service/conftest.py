"""A real redis-server and real Celery worker processes, started by the tests.

Never a Redis that happens to run on the host: each session starts its own
on a free loopback port, with append-only persistence in a temp dir (what a
Redis restart needs to keep queued jobs). Workers are ``celery worker``
subprocesses with their own cgroup parent and run dir, stopped with SIGTERM
(warm shutdown) by their fixture, which then checks they left nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CELERY = str(Path(sys.executable).with_name("celery"))
PARENT = "sandbox-test-svc"
RUN_DIR = Path("/run/sandbox-test-svc")


def wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    """Until ``process`` accepts connections on ``port`` (10 s at most, or it exits)."""
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
            return
        assert process.poll() is None, f"{what} exited at start"
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Redis:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_listening(self.port, self.process, "redis-server")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)  # flushes the append-only file
            self.process.wait(10)
            self.process = None

    def llen(self, queue: str) -> int:
        import redis

        return int(redis.Redis.from_url(self.url).llen(queue))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (scripts/install installs it)")
    server = Redis(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def client(redis_server: Redis) -> object:
    """The Celery app of this (client) process, aimed at the test Redis."""
    from worker.app import app

    app.conf.update(broker_url=redis_server.url, result_backend=redis_server.url)
    return app


def _job_cgroups() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    return [p for p in [*root.glob(f"*/{PARENT}/*"), *root.glob(f"{PARENT}/*")] if p.is_dir()]


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def launch_worker(
    name: str,
    log: Path,
    redis_server: Redis,
    scratch: Path,
    concurrency: int = 2,
    wait: bool = True,
    env: dict[str, str] | None = None,
    *,
    parent: str = PARENT,
    run_dir: Path = RUN_DIR,
) -> Worker:
    """A `celery worker` of the real app in a process group of its own (a host's loss is
    killpg), logging to ``log``, its temp files in ``scratch``; with ``wait``, once ready."""
    full_env = {
        **os.environ,
        "TMPDIR": str(scratch),
        "SANDBOX_REDIS_URL": redis_server.url,
        "SANDBOX_CGROUP_PARENT": parent,
        "SANDBOX_RUN_DIR": str(run_dir),
        "SANDBOX_POOL_SIZE": "1",
        **(env or {}),
    }
    with log.open("w") as out:  # the worker keeps its own copy
        process = subprocess.Popen(
            [
                CELERY, "-A", "worker.app:app", "worker",
                "-n", f"{name}@%h", "--concurrency", str(concurrency),
                "--loglevel", "INFO", "--without-mingle", "--without-gossip",
                "--without-heartbeat",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            text=True,
            start_new_session=True,
        )  # fmt: skip
    worker = Worker(name, process, log, full_env)
    if wait:
        deadline = time.monotonic() + 60
        while " ready." not in worker.text():
            assert process.poll() is None, f"worker {name} died:\n{worker.text()}"
            assert time.monotonic() < deadline, f"worker {name} never ready:\n{worker.text()}"
            time.sleep(0.1)
    return worker


@pytest.fixture
def start_worker(redis_server: Redis, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start `celery worker` subprocesses; at the end stop them and check for leftovers."""
    workers: list[Worker] = []
    # Their temp files (billiard's pymp-* directories) stay there, also when a
    # test SIGKILLs a worker, and go with it at the end.
    scratch = tmp_path / "worker-tmp"
    scratch.mkdir()

    def start(name: str = "w1", concurrency: int = 2, wait: bool = True, **env: str) -> Worker:
        worker = launch_worker(
            name, tmp_path / f"{name}.log", redis_server, scratch, concurrency, wait, env
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            worker.stop()
    shutil.rmtree(scratch, ignore_errors=True)
    deadline = time.monotonic() + 10
    while _job_cgroups() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _job_cgroups() == [], "a worker left job cgroups behind"
