"""Per-job overhead of the sandbox against a bare fork+exec of the same program.

Runs, interleaved in one process so that machine noise hits all alike:
  - bare:  asyncio.create_subprocess_exec of the program (fork+exec+wait)
  - warm:  Runtime.execute with the warm pool (a ready container per job)
  - cold:  Runtime.execute with pool_size=0 (each job builds its container)
for `/bin/sh main.sh` with `exec /bin/true` and `/usr/bin/python3 main.py`
with `pass`. Prints min/median/p95 of the per-job wall time as the caller
sees it, the start latency (spec in -> the job's execve), and the median
ratio to bare. Between jobs it pauses briefly so the pool can refill, as it
would between a worker's tasks; --no-pause measures back-to-back jobs.

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
from typing import Any

from sandbox import JobSpec, Runtime, Status
from sandbox.runtime import container as container_module

PROGRAMS = {
    "true": ("sh", "exec /bin/true\n", ["/bin/sh", "main.sh"]),
    "python3 -c pass": ("python", "pass\n", ["/usr/bin/python3", "main.py"]),
}

_started: list[int] = []
_original_event = container_module.Container._event


def _record_started(self: Any, event: dict[str, Any], fds: list[int]) -> None:
    """Note when each job reached execve (J's CLOCK_MONOTONIC, same as ours)."""
    if event.get("event") == "started":
        _started.append(int(event["t"]))
    _original_event(self, event, fds)


container_module.Container._event = _record_started  # type: ignore[method-assign]


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "min": ordered[0] * 1000,
        "median": statistics.median(ordered) * 1000,
        "p95": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
    }


async def bench(runs: int, pause: float) -> dict[str, Any]:
    report: dict[str, Any] = {"runs": runs, "cpus": os.cpu_count(), "pause_s": pause}
    with tempfile.TemporaryDirectory() as tmp:
        async with Runtime() as warm_rt, Runtime(pool_size=0) as cold_rt:
            for label, (language, code, argv) in PROGRAMS.items():
                workdir = Path(tmp) / language
                workdir.mkdir()
                (workdir / argv[-1]).write_text(code)
                spec = JobSpec(code=code, language=language)

                async def bare(argv: list[str] = argv, workdir: Path = workdir) -> None:
                    proc = await asyncio.create_subprocess_exec(*argv, cwd=workdir)
                    await proc.wait()

                def boxed(rt: Runtime, spec: JobSpec = spec) -> Callable[[], Awaitable[None]]:
                    async def run() -> None:
                        result = await rt.execute(spec)
                        assert result.status is Status.OK, result

                    return run

                modes = {"bare": bare, "warm": boxed(warm_rt), "cold": boxed(cold_rt)}
                times: dict[str, list[float]] = {m: [] for m in modes}
                starts: dict[str, list[float]] = {"warm": [], "cold": []}
                for i in range(runs + 5):  # the first 5 warm up caches and the pool
                    for mode, fn in modes.items():
                        _started.clear()
                        begin = time.perf_counter()
                        t0 = time.monotonic_ns()
                        await fn()
                        elapsed = time.perf_counter() - begin
                        if i >= 5:
                            times[mode].append(elapsed)
                            if mode in starts and _started:
                                starts[mode].append((_started[0] - t0) / 1e9)
                        await asyncio.sleep(pause)
                entry: dict[str, Any] = {m: _summary(t) for m, t in times.items()}
                for mode, samples in starts.items():
                    entry[f"{mode}_start"] = _summary(samples)
                    entry[f"{mode}_ratio"] = entry[mode]["median"] / entry["bare"]["median"]
                report[label] = entry
            stats = warm_rt.pool_stats()
            report["pool"] = stats.__dict__ if stats else None
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between jobs")
    parser.add_argument("--no-pause", action="store_true", help="back-to-back jobs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(bench(args.runs, 0.0 if args.no_pause else args.pause))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.runs} runs each, interleaved, {report['pause_s']} s between jobs; "
        "per-job wall time as the caller sees it (ms)"
    )
    header = ("program", "mode", "min", "median", "p95", "start", "ratio")
    print("{:16} {:6} {:>7} {:>7} {:>7} {:>7} {:>6}".format(*header))
    for label in PROGRAMS:
        entry = report[label]
        for mode in ("bare", "warm", "cold"):
            row = entry[mode]
            start = f"{entry[f'{mode}_start']['median']:7.2f}" if mode != "bare" else "      -"
            ratio = f"{entry[f'{mode}_ratio']:5.2f}x" if mode != "bare" else "     -"
            print(
                f"{label:16} {mode:6} {row['min']:7.2f} {row['median']:7.2f} {row['p95']:7.2f} "
                f"{start} {ratio}"
            )
    print(f"warm pool: {report['pool']}")


if __name__ == "__main__":
    main()
