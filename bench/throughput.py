"""Throughput, CPU per job and latency of trivial jobs: bare, bubblewrap and the sandbox.

Modes, all run in this one process and interleaved (in rounds, the order
rotated each round) so that machine noise hits all alike:
  - bare:    asyncio.create_subprocess_exec of the program (fork+exec+wait)
  - bwrap:   the same program under `bwrap --unshare-all ...` (the exact
             command is printed; skipped with --no-bwrap or without bwrap)
  - sandbox: `await rt.execute(spec)` on one warm `sandbox.Runtime()`, each
             job asserted Status.OK

1. Throughput: --jobs back-to-back jobs of `exec /bin/true` per mode, at
   concurrency 1 and at os.cpu_count(), after a warm-up of 10 jobs. The
   window starts and ends with a settled warm pool (a sandbox round waits for
   the refill after its last job), so each job pays one container build.
   Two CPU figures per job:
     CPU/job       user+sys of every process involved: this process and the
                   children it reaped (os.times()), plus every live descendant
                   (/proc/PID/stat utime+stime+cutime+cstime: the spawner and
                   its containers, which it reaps itself), after minus before.
                   Blind to processes orphaned out of our tree: bwrap exits
                   without reaping its pid namespace's init, which the host's
                   pid 1 adopts, so bwrap's CPU/job is low; compare host CPU.
     of it here    this process's own user+sys: for the sandbox, the
                   supervisor (asyncio, the plan, the cgroup's figures); for
                   bare and bwrap, asyncio's subprocess handling.
     host CPU/job  busy time of the whole machine, all CPUs (/proc/stat
                   user+nice+system+irq+softirq), after minus before. It also
                   catches kernel work done in kworkers on nobody's behalf
                   (e.g. network namespace teardown) and anything else running
                   on the machine, so it is an upper bound.
2. Latency: submit->result wall time of one job as the caller sees it, p50 and
   p99, for `exec /bin/true` and `python3 -c pass`, in bursts of 1 and of
   os.cpu_count() jobs at once, each burst starting with a settled (warm)
   pool; "+p50" is the p50 over bare. Pool hits/misses are per row.

    sudo .venv/bin/python bench/throughput.py [--jobs 200] [--json] [--no-bwrap]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sandbox
from sandbox import JobSpec, Runtime, Status
from sandbox.kernel.cgroups import detect_setup

BWRAP = "/usr/bin/bwrap"
BWRAP_ARGV = [
    *(BWRAP, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"),
    *("--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib"),
    *("--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"),
]
# label: (bare argv, the sandbox's job)
PROGRAMS = {
    "true": (["/bin/sh", "-c", "exec /bin/true"], JobSpec(code="exec /bin/true\n", language="sh")),
    "python3 -c pass": (
        ["/usr/bin/python3", "-c", "pass"],
        JobSpec(code="pass\n", language="python"),
    ),
}
WARMUP = 10
ROUNDS = 4  # throughput: each mode's jobs in this many interleaved rounds
TICK = os.sysconf("SC_CLK_TCK")

Job = Callable[[], Awaitable[None]]


@dataclass
class Mode:
    name: str
    job: Job
    runtime: Runtime | None = None  # the sandbox's, for its pool

    async def settle(self) -> None:
        if self.runtime is not None:
            await self.runtime.pool_settled()

    def pool(self) -> tuple[int, int]:
        stats = self.runtime.pool_stats() if self.runtime is not None else None
        return (stats.hits, stats.misses) if stats else (0, 0)


def subprocess_job(argv: list[str]) -> Job:
    async def run() -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        assert await proc.wait() == 0, argv

    return run


def sandbox_job(rt: Runtime, spec: JobSpec) -> Job:
    async def run() -> None:
        result = await rt.execute(spec)
        assert result.status is Status.OK, result

    return run


def our_cpu() -> float:
    """CPU seconds used so far by this process, its reaped children and its live descendants."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    procs: dict[int, tuple[int, int]] = {}  # pid: (ppid, utime+stime+cutime+cstime)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
        procs[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    todo, ticks = list(children.get(os.getpid(), [])), 0
    while todo:
        pid = todo.pop()
        ticks += procs[pid][1]
        todo += children.get(pid, [])
    return total + ticks / TICK


def own_cpu() -> float:
    """CPU seconds of this process alone: for the sandbox mode, the supervisor's."""
    t = os.times()
    return t.user + t.system


def host_busy() -> float:
    """Busy CPU seconds of the whole machine (all CPUs) since boot."""
    user, nice, system, _idle, _iowait, irq, softirq = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    )
    return (user + nice + system + irq + softirq) / TICK


async def timed_jobs(job: Job, count: int, concurrency: int) -> list[float]:
    """Run ``count`` jobs, ``concurrency`` at a time, back to back; each one's wall time."""
    times: list[float] = []
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            begin = time.perf_counter()
            await job()
            times.append(time.perf_counter() - begin)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return times


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[round(q * (len(ordered) - 1))]


@dataclass
class Tally:
    jobs: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    own: float = 0.0
    host: float = 0.0
    hits: int = 0
    misses: int = 0


async def throughput(modes: list[Mode], jobs: int, concurrency: int) -> dict[str, Any]:
    tallies = {m.name: Tally() for m in modes}
    for r in range(ROUNDS):
        count = jobs // ROUNDS + (r < jobs % ROUNDS)
        for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
            await mode.settle()
            cpu, own, host, (hits, misses) = our_cpu(), own_cpu(), host_busy(), mode.pool()
            begin = time.perf_counter()
            await timed_jobs(mode.job, count, concurrency)
            await mode.settle()
            t = tallies[mode.name]
            t.wall += time.perf_counter() - begin
            t.cpu += our_cpu() - cpu
            t.own += own_cpu() - own
            t.host += host_busy() - host
            t.jobs += count
            t.hits += mode.pool()[0] - hits
            t.misses += mode.pool()[1] - misses
    return {
        name: {
            "jobs_per_s": t.jobs / t.wall,
            "cpu_ms_per_job": 1000 * t.cpu / t.jobs,
            "own_cpu_ms_per_job": 1000 * t.own / t.jobs,
            "host_cpu_ms_per_job": 1000 * t.host / t.jobs,
            "hits": t.hits,
            "misses": t.misses,
        }
        for name, t in tallies.items()
    }


async def latency(modes: list[Mode], jobs: int, concurrency: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {m.name: [] for m in modes}
    pool = {m.name: m.pool() for m in modes}
    for _ in range(max(1, jobs // concurrency)):
        for mode in modes:
            await mode.settle()
            await asyncio.sleep(0.005)
            samples[mode.name] += await timed_jobs(mode.job, concurrency, concurrency)
    bare_p50 = percentile(samples["bare"], 0.5)
    return {
        m.name: {
            "p50_ms": 1000 * percentile(samples[m.name], 0.5),
            "p99_ms": 1000 * percentile(samples[m.name], 0.99),
            "over_bare_ms": 1000 * (percentile(samples[m.name], 0.5) - bare_p50),
            "hits": m.pool()[0] - pool[m.name][0],
            "misses": m.pool()[1] - pool[m.name][1],
        }
        for m in modes
    }


async def bench(jobs: int, use_bwrap: bool) -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    levels = sorted({1, cpus})
    report: dict[str, Any] = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpus": cpus,
        "cgroup_version": detect_setup(Path("/sys/fs/cgroup")).version,
        "python": platform.python_version(),
        "sandbox": str(Path(sandbox.__file__).parent),
        "jobs": jobs,
        "bwrap": shlex.join([*BWRAP_ARGV, *PROGRAMS["true"][0]]) if use_bwrap else None,
        "throughput": {},
        "latency": {},
    }
    async with Runtime() as rt:
        for label, (argv, spec) in PROGRAMS.items():
            modes = [Mode("bare", subprocess_job(argv))]
            if use_bwrap:
                modes.append(Mode("bwrap", subprocess_job([*BWRAP_ARGV, *argv])))
            modes.append(Mode("sandbox", sandbox_job(rt, spec), rt))
            for mode in modes:
                await timed_jobs(mode.job, WARMUP, 1)
            if label == "true":
                for c in levels:
                    report["throughput"][str(c)] = await throughput(modes, jobs, c)
            report["latency"][label] = {str(c): await latency(modes, jobs, c) for c in levels}
        await rt.pool_settled()
        stats = rt.pool_stats()
        report["pool"] = asdict(stats) if stats else None
    if use_bwrap:
        report["ratios"] = {
            c: {
                key: row["sandbox"][key] / row["bwrap"][key]
                for key in ("jobs_per_s", "cpu_ms_per_job", "host_cpu_ms_per_job")
            }
            for c, row in report["throughput"].items()
        }
    return report


def bwrap_works() -> bool:
    if not os.path.exists(BWRAP):
        return False
    done = subprocess.run([*BWRAP_ARGV, "/bin/true"], capture_output=True, check=False)
    if done.returncode:
        print(f"bwrap skipped: {done.stderr.decode().strip()}", file=sys.stderr)
    return done.returncode == 0


def print_report(r: dict[str, Any]) -> None:
    print(
        f"{r['date']}  kernel {r['kernel']}  {r['cpus']} CPUs  cgroup v{r['cgroup_version']}  "
        f"python {r['python']}  sandbox from {r['sandbox']}"
    )
    print(f"bwrap: {r['bwrap'] or 'skipped'}")
    print(f"\nThroughput, `exec /bin/true`, {r['jobs']} jobs per mode and concurrency")
    print(
        f"{'conc':>4} {'mode':8} {'jobs/s':>8} {'CPU/job ms':>11} {'of it here':>11} "
        f"{'host CPU/job ms':>16}  pool"
    )
    for c, rows in r["throughput"].items():
        for name, row in rows.items():
            pool = f"{row['hits']} hits / {row['misses']} misses" if name == "sandbox" else ""
            print(
                f"{c:>4} {name:8} {row['jobs_per_s']:8.1f} {row['cpu_ms_per_job']:11.2f} "
                f"{row['own_cpu_ms_per_job']:11.2f} {row['host_cpu_ms_per_job']:16.2f}  {pool}"
            )
    for c, ratio in r.get("ratios", {}).items():
        print(
            f"sandbox / bwrap at concurrency {c}: jobs/s {ratio['jobs_per_s']:.2f}x, "
            f"CPU/job {ratio['cpu_ms_per_job']:.2f}x, "
            f"host CPU/job {ratio['host_cpu_ms_per_job']:.2f}x"
        )
    print(f"\nLatency, submit->result (ms), {r['jobs']} jobs per row, bursts of `conc` jobs")
    print(f"{'program':16} {'conc':>4} {'mode':8} {'p50':>7} {'p99':>7} {'+p50':>7}  pool")
    for label, levels in r["latency"].items():
        for c, rows in levels.items():
            for name, row in rows.items():
                pool = f"{row['hits']} hits / {row['misses']} misses" if name == "sandbox" else ""
                over = f"{row['over_bare_ms']:+7.2f}" if name != "bare" else "      -"
                print(
                    f"{label:16} {c:>4} {name:8} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} "
                    f"{over}  {pool}"
                )
    print(f"\nwarm pool at the end: {r['pool']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per mode and concurrency")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-bwrap", action="store_true", help="skip the bubblewrap mode")
    args = parser.parse_args()
    report = asyncio.run(bench(max(args.jobs, ROUNDS), not args.no_bwrap and bwrap_works()))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
