"""Per-job overhead of the sandbox against a bare fork+exec of the same program.

Runs, interleaved in one process so that machine noise hits both alike:
  - bare:    asyncio.create_subprocess_exec of the program (fork+exec+wait)
  - sandbox: Runtime.execute of the same program in a fresh container
for `/bin/sh main.sh` with `exec /bin/true` and for `/usr/bin/python3 main.py`
with `pass`, and prints min/median/p95 per-job wall time (ms, as the caller
sees it), the median ratio and the median overhead in milliseconds.

    sudo .venv/bin/python bench/overhead.py [--runs 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sandbox import JobSpec, Runtime, Status

PROGRAMS = {
    "true": ("sh", "exec /bin/true\n", ["/bin/sh", "main.sh"]),
    "python3 -c pass": ("python", "pass\n", ["/usr/bin/python3", "main.py"]),
}


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "min": ordered[0] * 1000,
        "median": statistics.median(ordered) * 1000,
        "p95": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
    }


async def _timed(fn: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def bench(runs: int, concurrency: int) -> dict[str, object]:
    report: dict[str, object] = {"runs": runs, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        async with Runtime() as rt:
            for label, (language, code, argv) in PROGRAMS.items():
                workdir = Path(tmp) / language
                workdir.mkdir()
                (workdir / argv[-1]).write_text(code)
                spec = JobSpec(code=code, language=language)

                async def bare(argv: list[str] = argv, workdir: Path = workdir) -> None:
                    proc = await asyncio.create_subprocess_exec(*argv, cwd=workdir)
                    await proc.wait()

                async def boxed(spec: JobSpec = spec) -> None:
                    result = await rt.execute(spec)
                    assert result.status is Status.OK, result

                for _ in range(5):  # warm up page cache and the spawner
                    await bare()
                    await boxed()
                bare_t: list[float] = []
                box_t: list[float] = []
                for _ in range(runs):
                    bare_t.append(await _timed(bare))
                    box_t.append(await _timed(boxed))
                b, s = _summary(bare_t), _summary(box_t)
                report[label] = {
                    "bare_ms": b,
                    "sandbox_ms": s,
                    "ratio_median": s["median"] / b["median"],
                    "overhead_median_ms": s["median"] - b["median"],
                }
            n = runs
            spec = JobSpec(code="exec /bin/true\n", language="sh")
            start = time.perf_counter()
            sem = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with sem:
                    await rt.execute(spec)

            await asyncio.gather(*(one() for _ in range(n)))
            report["throughput_jobs_per_s"] = n / (time.perf_counter() - start)
            report["concurrency"] = concurrency
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(bench(args.runs, args.concurrency))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.runs} runs each, interleaved; per-job wall time as the caller sees it (ms)")
    print(f"{'program':18} {'mode':8} {'min':>7} {'median':>7} {'p95':>7}")
    for label in PROGRAMS:
        entry = report[label]
        assert isinstance(entry, dict)
        for mode in ("bare", "sandbox"):
            row = entry[f"{mode}_ms"]
            print(f"{label:18} {mode:8} {row['min']:7.2f} {row['median']:7.2f} {row['p95']:7.2f}")
        print(
            f"{'':18} ratio {entry['ratio_median']:.2f}x, "
            f"overhead {entry['overhead_median_ms']:.2f} ms (median)"
        )
    print(
        f"throughput: {report['throughput_jobs_per_s']:.0f} jobs/s "
        f"(`true`, {report['concurrency']} at a time)"
    )


if __name__ == "__main__":
    main()
