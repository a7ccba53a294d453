"""The whole path: client -> Redis -> Celery worker -> sandbox -> result.

Starts its own redis-server and one worker (``bench.celery_bench``: the real
app plus reference tasks) on this machine, then measures, in one run:

- latency of one job at a time (p50, p99), and
- throughput of N jobs submitted at once, with the CPU per job of the
  client, redis-server, the worker's process tree and the whole host,
- with ``--queued Q``, whether the cost per job stays flat as a queue of Q
  ``sandbox.run`` jobs drains: jobs/s per tenth of the queue, from the times
  the worker stored each result (Celery's ``date_done``),

for a no-op Celery task, a bare subprocess task (``sh -c 'exec /bin/true'``
unsandboxed) and ``sandbox.run`` of the same program, so the sandbox's share
of the cost shows as a ratio.

    sudo .venv/bin/python bench/service.py [--jobs 1000] [--latency 200] [--concurrency 2]
        [--queued 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.ports import free_port, start_redis


def _stat(pid: int) -> tuple[int, float]:
    """(ppid, CPU seconds of the process and its reaped children) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / ticks


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant (each with its reaped children)."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parent[int(name)], cpu[int(name)] = _stat(int(name))
            except (OSError, IndexError, ValueError):
                continue
    mine = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                grew = True
    return sum(cpu.get(pid, 0.0) for pid in mine)


def host_cpu() -> float:
    """Busy CPU seconds of the whole machine (/proc/stat: user nice system irq softirq)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs submitted at once")
    parser.add_argument("--latency", type=int, default=200, help="jobs one at a time")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--queued", type=int, default=0, help="sandbox.run jobs queued at once")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["SANDBOX_REDIS_URL"] = url
    tmp = tempfile.mkdtemp()
    redis = start_redis(port, tmp)
    log = Path(tmp) / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "bench.celery_bench:app", "worker",
                "--concurrency", str(args.concurrency), "--loglevel", "WARNING",
                "--without-mingle", "--without-gossip", "--without-heartbeat",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )  # fmt: skip
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from bench.celery_bench import app
        from worker.tasks import run

        app.conf.update(broker_url=url, result_backend=url)
        noop = app.signature("bench.noop")
        bare = app.signature("bench.bare")
        kinds = {
            "noop task": lambda: noop.apply_async(),
            "bare subprocess task": lambda: bare.apply_async(),
            "sandbox.run": lambda: run.delay("exec /bin/true", language="sh"),
        }
        for send in kinds.values():  # warm up: worker processes, pools, caches
            for _ in range(10):
                send().get(timeout=60)  # type: ignore[no-untyped-call]
        report: dict[str, Any] = {"concurrency": args.concurrency}
        for label, send in kinds.items():
            samples = []
            for _ in range(args.latency):
                start = time.perf_counter()
                send().get(timeout=60)
                samples.append((time.perf_counter() - start) * 1000)
            samples.sort()
            cpu0 = (os.times(), tree_cpu(redis.pid), tree_cpu(worker.pid), host_cpu())
            start = time.perf_counter()
            pending = [send() for _ in range(args.jobs)]
            for p in pending:
                p.get(timeout=600)
            elapsed = time.perf_counter() - start
            cpu1 = (os.times(), tree_cpu(redis.pid), tree_cpu(worker.pid), host_cpu())
            client = (cpu1[0].user + cpu1[0].system) - (cpu0[0].user + cpu0[0].system)
            report[label] = {
                "p50_ms": statistics.median(samples),
                "p99_ms": samples[int(0.99 * (len(samples) - 1))],
                "jobs_per_s": args.jobs / elapsed,
                # CPU per job of the burst, ms: this client, redis-server, the
                # worker's whole tree (its processes, launchers, containers), host.
                "cpu_ms": {
                    "client": client * 1000 / args.jobs,
                    "redis": (cpu1[1] - cpu0[1]) * 1000 / args.jobs,
                    "worker": (cpu1[2] - cpu0[2]) * 1000 / args.jobs,
                    "host": (cpu1[3] - cpu0[3]) * 1000 / args.jobs,
                },
            }
        if args.queued:
            report["queued"] = _drain(lambda: kinds["sandbox.run"](), args.queued)
    finally:
        worker.terminate()
        worker.wait(60)
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    base = report["noop task"]
    print(
        f"{args.latency} jobs one at a time, {args.jobs} at once, "
        f"worker concurrency {args.concurrency}"
    )
    print(
        f"{'task':22} {'p50 ms':>8} {'p99 ms':>8} {'jobs/s':>8} {'p50 vs noop':>12}"
        "   CPU/job ms: client redis worker host"
    )
    for label in kinds:
        row = report[label]
        cpu = row["cpu_ms"]
        print(
            f"{label:22} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['jobs_per_s']:8.0f} "
            f"{row['p50_ms'] / base['p50_ms']:11.2f}x"
            f"   {cpu['client']:17.2f} {cpu['redis']:5.2f} {cpu['worker']:6.2f} {cpu['host']:4.2f}"
        )
    ratio = report["sandbox.run"]["jobs_per_s"] / report["bare subprocess task"]["jobs_per_s"]
    print(f"sandbox.run / bare subprocess task: jobs/s {ratio:.2f}")
    if "queued" in report:
        q = report["queued"]
        print(f"{q['jobs']} sandbox.run jobs queued at once: jobs/s per tenth of the queue")
        print("  " + " ".join(f"{rate:.0f}" for rate in q["jobs_per_s_by_tenth"]))
        print(f"  last tenth / first tenth: {q['last_vs_first']:.2f}")


def _drain(send: Any, count: int) -> dict[str, Any]:
    """Queue ``count`` jobs at once, wait for all; jobs/s over each tenth of them,
    in the order the worker finished them."""
    pending = [send() for _ in range(count)]
    done = []
    for p in pending:
        p.get(timeout=3600)
        done.append(p.date_done.timestamp())
        p.forget()  # the backend need not hold 10,000 results
    done.sort()
    tenth = max(1, count // 10)
    rates = []
    for i in range(0, count - tenth + 1, tenth):
        span = done[i + tenth - 1] - done[i]
        rates.append((tenth - 1) / span if span > 0 else float("inf"))
    return {
        "jobs": count,
        "jobs_per_s_by_tenth": rates,
        "last_vs_first": rates[-1] / rates[0] if rates and rates[0] else 0.0,
        "seconds": done[-1] - done[0],
    }


if __name__ == "__main__":
    main()
