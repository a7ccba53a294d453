"""A judge's cases shared among free workers (JudgeSpec.spread): latency by workers.

Starts its own redis-server and ``--workers`` Celery workers of the real app,
each with concurrency 1 and its jobs pinned to a CPU of its own (a one-CPU
"host"; on a machine with fewer CPUs than workers they share them), then
judges one C++ submission against ``--cases`` cases (each about ``--work``
ms of CPU), ``--runs`` times for each spread from 1 to the number of
workers, and reports the median submit-to-verdict latency and its ratio to
spread 1. With spread > 1 the submission compiles once; its binary goes to
every share. A last row judges with spread = workers while all but one
worker are busy: what sharing costs when no worker is free.

    sudo .venv/bin/python bench/spread.py [--workers 2] [--cases 100] [--work 20] [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ports import free_port, start_redis  # noqa: E402

PROGRAM = """#include <cstdio>
#include <ctime>
int main() {
    long a, b, ms;
    std::scanf("%ld %ld %ld", &a, &b, &ms);
    volatile unsigned long x = 0;
    std::clock_t end = std::clock() + ms * (CLOCKS_PER_SEC / 1000);
    while (std::clock() < end) x = x + 1;
    std::printf("%ld\\n", a + b);
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--work", type=int, default=20, help="ms of CPU per case")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["SANDBOX_REDIS_URL"] = url
    tmp = Path(tempfile.mkdtemp(prefix="bench-spread-"))
    redis = start_redis(port, tmp)
    cpus = sorted(os.sched_getaffinity(0))
    workers = []
    for n in range(args.workers):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SANDBOX_PIN_CPUS": str(cpus[n % len(cpus)]),
            "SANDBOX_CGROUP_PARENT": f"sandbox-bench-spread{n}",
            "SANDBOX_RUN_DIR": f"/run/sandbox-bench-spread{n}",
        }
        argv = [sys.executable, "-m", "celery", "-A", "worker.app:app", "worker"]
        argv += ["-n", f"w{n}@%h", "--concurrency", "1", "--loglevel", "WARNING"]
        argv += ["--without-mingle", "--without-gossip"]
        with (tmp / f"w{n}.log").open("w") as out:
            workers.append(
                subprocess.Popen(
                    argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            )
    try:
        import sandbox

        tests = [
            {"stdin": f"{i} {i} {args.work}\n", "expected": f"{2 * i}\n"} for i in range(args.cases)
        ]

        def judge(spread: int) -> float:
            start = time.perf_counter()
            result = sandbox.judge.delay(
                code=PROGRAM, language="cpp", tests=tests, spread=spread,
                limits={"cpu_time": 2, "wall_time": 5}, compare="tokens",
            ).get(timeout=600)  # fmt: skip
            if result["status"] != "accepted":
                raise SystemExit(f"spread {spread}: {result['status']}: {result.get('error')}")
            return time.perf_counter() - start

        for _ in range(args.workers):  # warm up every worker
            judge(1)
        rows: dict[str, Any] = {}
        for spread in range(1, args.workers + 1):
            rows[f"spread {spread}"] = statistics.median(judge(spread) for _ in range(args.runs))
        # All workers but one busy: a long job each, then the judge.
        busy = [
            sandbox.run.delay("import time\ntime.sleep(280)", limits={"wall_time": 290})
            for _ in range(args.workers - 1)
        ]
        deadline = time.monotonic() + 60
        while any(p.state != "STARTED" for p in busy):
            if time.monotonic() > deadline or any(p.ready() for p in busy):
                raise SystemExit("the jobs that keep the other workers busy did not start")
            time.sleep(0.1)
        rows[f"spread {args.workers}, other workers busy"] = statistics.median(
            judge(args.workers) for _ in range(args.runs)
        )
        for pending in busy:
            pending.revoke(terminate=True)
        base = rows["spread 1"]
        report = {
            "workers": args.workers,
            "cases": args.cases,
            "work_ms": args.work,
            "cpus": len(cpus),
            "median_s": rows,
            "speedup": {k: base / v for k, v in rows.items()},
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(
                f"{args.cases} cases of ~{args.work} ms CPU, {args.workers} workers "
                f"(concurrency 1, one CPU each of {len(cpus)}), median of {args.runs}:"
            )
            for label, seconds in rows.items():
                print(f"  {label:<36} {seconds:7.2f} s   {base / seconds:4.2f}x spread 1")
    finally:
        for process in workers:  # a warm shutdown: each ends its jobs and its runtime
            process.send_signal(signal.SIGTERM)
        for process in workers:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        redis.terminate()
        redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        for n in range(args.workers):
            _remove(f"sandbox-bench-spread{n}", Path(f"/run/sandbox-bench-spread{n}"))


def _remove(parent: str, run_dir: Path) -> None:
    """A worker's leftovers collected (`sandbox gc`), then its empty cgroup parent (in
    every hierarchy) and run dir: the bench's own."""
    env = {**os.environ, "SANDBOX_CGROUP_PARENT": parent, "SANDBOX_RUN_DIR": str(run_dir)}
    sandbox_cli = str(Path(sys.executable).with_name("sandbox"))
    subprocess.run([sandbox_cli, "gc"], env=env, capture_output=True, check=False)
    root = Path("/sys/fs/cgroup")
    if any(p.is_dir() for p in [*root.glob(f"*/{parent}/*"), *root.glob(f"{parent}/*")]):
        print(f"cgroups left under {parent}: not removed", file=sys.stderr)
        return
    for directory in [*root.glob(f"*/{parent}"), root / parent]:
        with contextlib.suppress(OSError):
            directory.rmdir()
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
