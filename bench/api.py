"""The HTTP API beside the Celery path: ``wait=true`` hello-world submissions.

Starts its own redis-server (loopback, a temp dir), one worker (2 processes,
cgroup parent ``sandbox-bench-api``, run dir ``/run/sandbox-bench-api``) and
``sandbox api`` on a free loopback port, then measures, for the same Python
hello world:

- latency of one submission at a time (p50, p99): ``POST /submissions?wait=true``
  against ``sandbox.judge.delay(...).get()`` (what the API sends), and
- throughput of N submissions at once (``--jobs``, ``--at-once`` in flight),
  with the API process's own CPU (user+sys) per submission.

At the end every process it started is stopped, and its temp and run dirs removed.

    sudo .venv/bin/python bench/api.py [--latency 100] [--jobs 300] [--at-once 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.ports import free_port, start_redis, wait_port

PARENT = "sandbox-bench-api"
RUN_DIR = Path("/run/sandbox-bench-api")
HELLO = {"source_code": "print('hello, world')", "language_id": 71}
BIN = Path(sys.executable).parent


def _cpu(pid: int) -> float:
    """User+sys seconds of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _burst(base: str, jobs: int, at_once: int) -> float:
    slots = asyncio.Semaphore(at_once)
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:

        async def one() -> None:
            async with slots:
                answer = await client.post("/submissions?wait=true", json=HELLO)
                assert answer.json()["status"]["id"] == 3, answer.text

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(jobs)))
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=int, default=100, help="submissions one at a time")
    parser.add_argument("--jobs", type=int, default=300, help="submissions of the burst")
    parser.add_argument("--at-once", type=int, default=16, help="requests in flight in the burst")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-api-"))
    redis_port, api_port = free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    env = {
        **os.environ,
        "TMPDIR": str(scratch),
        "SANDBOX_REDIS_URL": url,
        "SANDBOX_CGROUP_PARENT": PARENT,
        "SANDBOX_RUN_DIR": str(RUN_DIR),
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        redis = start_redis(redis_port, scratch)
        started.append(redis)
        worker_log = (scratch / "worker.log").open("wb")
        worker = subprocess.Popen(
            [str(BIN / "celery"), "-A", "worker.app:app", "worker", "-n", "bench@%h",
             "--concurrency", "2", "--without-mingle", "--without-gossip",
             "--without-heartbeat", "--loglevel", "WARNING"],
            stdout=worker_log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        started.append(worker)
        api = subprocess.Popen(
            [str(BIN / "sandbox"), "api", "--port", str(api_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        started.append(api)
        wait_port(api_port, api)
        base = f"http://127.0.0.1:{api_port}"

        os.environ["SANDBOX_REDIS_URL"] = url
        from worker.tasks import judge

        celery_job = {
            "code": HELLO["source_code"],
            "language": "python",
            "tests": [{"stdin": "", "name": "run 1"}],
        }
        with httpx.Client(base_url=base, timeout=120) as client:
            for _ in range(10):  # warm-up: both paths, the worker's pool
                assert client.post("/submissions?wait=true", json=HELLO).json()["status"]["id"] == 3
                judge.delay(**celery_job).get(timeout=60)
            api_ms, celery_ms = [], []
            for _ in range(args.latency):
                t = time.perf_counter()
                client.post("/submissions?wait=true", json=HELLO)
                api_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                judge.delay(**celery_job).get(timeout=60)
                celery_ms.append((time.perf_counter() - t) * 1000)
        cpu_before = _cpu(api.pid)
        api_seconds = asyncio.run(_burst(base, args.jobs, args.at_once))
        api_cpu = (_cpu(api.pid) - cpu_before) / args.jobs * 1000
        t = time.perf_counter()
        pending = [judge.delay(**celery_job) for _ in range(args.jobs)]
        for p in pending:
            p.get(timeout=120)
        celery_seconds = time.perf_counter() - t
        when = time.strftime("%Y-%m-%d %H:%M %Z")
        print(f"hello world (python), one worker with 2 processes, {when}")
        print("| path | p50 | p99 | submissions/s (burst) | API CPU per submission |")
        print("|---|---|---|---|---|")
        print(
            f"| POST /submissions?wait=true | {statistics.median(api_ms):.2f} ms | "
            f"{_percentile(api_ms, 99):.2f} ms | {args.jobs / api_seconds:.0f} "
            f"({args.at_once} in flight) | {api_cpu:.2f} ms |"
        )
        print(
            f"| sandbox.judge.delay().get() | {statistics.median(celery_ms):.2f} ms | "
            f"{_percentile(celery_ms, 99):.2f} ms | {args.jobs / celery_seconds:.0f} "
            f"(all at once) | - |"
        )
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        if len(started) > 1:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started[1].pid, signal.SIGKILL)
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        for parent in [
            *Path("/sys/fs/cgroup").glob(f"*/{PARENT}"),
            Path("/sys/fs/cgroup") / PARENT,
        ]:
            with contextlib.suppress(OSError):
                parent.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
