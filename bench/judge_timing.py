"""How consistently judge mode measures a program with known CPU work.

Compiles one C program (a fixed loop, about 0.2 s of CPU) and judges it as N
identical test cases, in three ways, all in one run so that machine noise hits
them alike:

  - bare:      the same binary run N times by fork+exec here (getrusage: CPU)
  - serial:    judge mode, one case at a time
  - parallel:  judge mode, as many cases at once as the runtime has slots
  - pinned:    judge mode, parallel, each case pinned to a CPU of its own
               (SANDBOX_PIN_CPUS = every CPU we may use)

Prints mean, standard deviation, min, max and spread ((max - min) / mean) of
the CPU time and wall time each reports, and the sandbox's CPU overhead per
case (mean sandbox CPU - mean bare CPU).

    sudo .venv/bin/python bench/judge_timing.py [--cases 30] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox import Runtime, Settings
from sandbox.judging import JudgeSpec, TestCase, judge

WORK = r"""
#include <stdio.h>
int main(void) {
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < 150000000UL; i++) x += i ^ (x >> 3);
    printf("%lu\n", x & 1);
    return 0;
}
"""


def _summary(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    return {
        "mean": mean,
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / mean if mean else 0.0,
    }


def bare(cases: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp, "w.c"), Path(tmp, "w")
        src.write_text(WORK)
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
        cpu, wall = [], []
        for _ in range(cases):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([str(exe)], check=True, stdout=subprocess.DEVNULL)
            wall.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {"cpu": _summary(cpu), "wall": _summary(wall)}


async def judged(cases: int, settings: Settings, parallel: int | None) -> dict[str, Any]:
    spec = JudgeSpec(
        code=WORK,
        language="c",
        tests=[TestCase(name=str(i)) for i in range(cases)],
        limits={"cpu_time": 10, "wall_time": 20},
    )
    async with Runtime(settings) as runtime:
        result = await judge(spec, runtime, parallel=parallel or runtime.slots)
    statuses = {case.status.value for case in result.tests}
    assert statuses == {"accepted"}, statuses
    return {
        "cpu": _summary([case.cpu_time for case in result.tests]),
        "wall": _summary([case.wall_time for case in result.tests]),
        "memory": _summary([float(case.memory_peak) for case in result.tests]),
    }


async def main(cases: int) -> dict[str, Any]:
    settings = Settings()
    cpus = sorted(os.sched_getaffinity(0))
    pinned = settings.model_copy(update={"pin_cpus": ",".join(map(str, cpus))})
    return {
        "cases": cases,
        "cpus": len(cpus),
        "bare": bare(cases),
        "serial": await judged(cases, settings, 1),
        "parallel": await judged(cases, settings, None),
        "pinned": await judged(cases, pinned, None),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(main(args.cases))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.cases} cases of a fixed C loop, {report['cpus']} CPUs (seconds)")
        print(f"{'mode':<10}{'what':<6}{'mean':>9}{'stdev':>9}{'min':>9}{'max':>9}{'spread':>9}")
        for mode in ("bare", "serial", "parallel", "pinned"):
            for what in ("cpu", "wall"):
                s = report[mode][what]
                print(
                    f"{mode:<10}{what:<6}{s['mean']:>9.4f}{s['stdev']:>9.4f}{s['min']:>9.4f}"
                    f"{s['max']:>9.4f}{s['spread']:>8.1%}"
                )
        for mode in ("serial", "parallel", "pinned"):
            extra = report[mode]["cpu"]["mean"] - report["bare"]["cpu"]["mean"]
            print(f"sandbox CPU overhead per case ({mode}): {extra * 1000:+.2f} ms")
