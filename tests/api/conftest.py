"""The real stack for the API's tests: redis-server, Celery workers, `sandbox api` servers.

Each is a process of its own on a free loopback port, started here and
stopped by its fixture, which then checks that nothing is left: the
workers' job cgroups (under a parent of ours, ``sandbox-test-api``, apart
from tests/service's), their run dir, and the processes themselves.
The classes are tests/service's (Redis, Worker).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.proc import remove_made
from tests.service.conftest import Redis, Worker, free_port, launch_worker, wait_listening

PARENT = "sandbox-test-api"
RUN_DIR = Path("/run/sandbox-test-api")
SANDBOX = str(Path(sys.executable).with_name("sandbox"))
WORKER_NAMES = iter(f"api{n}" for n in range(1000))


def job_cgroups() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    return [p for p in [*root.glob(f"*/{PARENT}/*"), *root.glob(f"{PARENT}/*")] if p.is_dir()]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    server = Redis(free_port(), tmp_path_factory.mktemp("api-redis"))
    server.start()
    yield server
    server.stop()


@dataclass
class Stack:
    """What a test talks to: Redis and the workers behind the API servers it starts."""

    redis: Redis
    scratch: Path
    workers: list[Worker]
    servers: list[subprocess.Popen[bytes]]

    def worker(self, concurrency: int = 2, wait: bool = True, **env: str) -> Worker:
        name = next(WORKER_NAMES)
        worker = launch_worker(
            name, self.scratch / f"{name}.log", self.redis, self.scratch, concurrency, wait,
            env, parent=PARENT, run_dir=RUN_DIR,
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    def api(self, environ: dict[str, str] | None = None, **env: str) -> str:
        """Start `sandbox api` on a free port with ``SANDBOX_API_*`` = ``env``; its URL.

        Args:
            environ: more of its environment (``SANDBOX_QUEUE``...).
        """
        port = free_port()
        full_env = {
            **os.environ,
            "TMPDIR": str(self.scratch),
            "SANDBOX_REDIS_URL": self.redis.url,
            **(environ or {}),
            **{f"SANDBOX_API_{k.upper()}": v for k, v in env.items()},
        }
        log = (self.scratch / f"api-{port}.log").open("wb")
        process = subprocess.Popen(
            [SANDBOX, "api", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        log.close()
        self.servers.append(process)
        wait_listening(port, process, "sandbox api")
        return f"http://127.0.0.1:{port}"


def _stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def stack(redis_server: Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A module's stack; at the end every process of it is stopped and nothing is left."""
    scratch = tmp_path_factory.mktemp("api-stack")
    made = Stack(redis_server, scratch, [], [])
    yield made
    for server in made.servers:
        _stop(server)
    for worker in made.workers:
        _stop(worker.process)
        # A worker's process group (its pool) ends with it; a SIGKILLed one's too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while job_cgroups() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job_cgroups() == [], "a worker left job cgroups behind"
    for server in made.servers:
        # uvicorn ends a graceful shutdown by raising the signal it caught again.
        assert server.returncode in (0, -signal.SIGTERM), server.args
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _nothing_left() -> Iterator[None]:
    """After the API tests: our cgroup parent and run dir are gone too."""
    yield
    remove_made(PARENT, RUN_DIR)


Poll = Callable[..., dict[str, object]]


def poll(base: str, token: str, timeout: float = 60, **params: str) -> dict[str, object]:
    """GET the submission until it is neither In Queue nor Processing."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(f"{base}/submissions/{token}", params=params, timeout=10)
        answer.raise_for_status()
        body: dict[str, object] = answer.json()
        status = body.get("status")
        assert isinstance(status, dict)
        if status["id"] not in (1, 2):
            return body
        assert time.monotonic() < deadline, f"still {status} after {timeout} s"
        time.sleep(0.05)
