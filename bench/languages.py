"""Every language's hello world in the sandbox: its version, compile and run time, memory.

For each language of sandbox/languages.toml that this host has, judge mode
compiles a hello world once and runs it (``--runs`` times, the median kept):
the compile step's wall and CPU time, the run's wall and CPU time, and the
run's memory peak from its cgroup (what the idle runtime costs: the JVM,
Node.js, Mono...). The warm pool is on, so each figure is the job's own, not
a container's start. Prints a Markdown table (the README's).

    sudo .venv/bin/python bench/languages.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from sandbox import Runtime, languages
from sandbox.judging import JudgeSpec, TestCase, judge

HELLO = {
    "python": 'print("hello")\n',
    "pypy": 'print("hello")\n',
    "sh": "echo hello\n",
    "bash": "echo hello\n",
    "multifile": "echo hello\n",
    "c": '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n',
    "cpp": '#include <iostream>\nint main() { std::cout << "hello\\n"; }\n',
    "java": "public class Main { public static void main(String[] a) {"
    ' System.out.println("hello"); } }\n',
    "kotlin": 'fun main() { println("hello") }\n',
    "go": 'package main\nimport "fmt"\nfunc main() { fmt.Println("hello") }\n',
    "rust": 'fn main() { println!("hello"); }\n',
    "javascript": 'console.log("hello");\n',
    "ruby": 'puts "hello"\n',
    "csharp": 'class P { static void Main() { System.Console.WriteLine("hello"); } }\n',
    "php": '<?php\necho "hello\\n";\n',
}


def _versions() -> dict[str, str]:
    """What `sandbox languages --versions` finds, by language."""
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("sandbox")), "languages", "--json", "--versions"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {name: str(row.get("found") or "-") for name, row in json.loads(listed.stdout).items()}


async def _measure(runtime: Runtime, name: str, runs: int) -> dict[str, Any]:
    spec = JudgeSpec.model_validate(
        {
            "code": HELLO[name],
            "language": name,
            "tests": [TestCase(stdin="", expected="hello\n")] * runs,
            "limits": {"wall_time": 10, "cpu_time": 10, "memory": "256M"},
        }
    )
    result = await judge(spec, runtime)
    if result.status != "accepted":
        return {"language": name, "error": f"{result.status}: {result.error}"}
    cases = result.tests
    compiled = result.compile
    return {
        "language": name,
        "compile_wall": compiled.wall_time if compiled else None,
        "compile_cpu": compiled.cpu_time if compiled else None,
        "run_wall": statistics.median(c.wall_time for c in cases),
        "run_cpu": statistics.median(c.cpu_time for c in cases),
        "memory_mib": statistics.median(c.memory_peak for c in cases) / 2**20,
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each hello world")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = sorted(languages.known())
    if missing := [n for n in names if n not in HELLO]:
        raise SystemExit(f"no hello world for {', '.join(missing)}: add it to HELLO")
    async with Runtime() as runtime:
        rows = [await _measure(runtime, name, args.runs) for name in names]
    versions = _versions()
    if args.json:
        print(json.dumps([{**row, "version": versions[row["language"]]} for row in rows]))
        return
    print("| language | version | compile wall (cpu) ms | run wall (cpu) ms | run memory |")
    print("|---|---|---|---|---|")
    for row in rows:
        name = row["language"]
        if "error" in row:
            print(f"| {name} | {versions[name]} | {row['error']} | | |")
            continue
        compile_ms = f"{_ms(row['compile_wall'])} ({_ms(row['compile_cpu'])})"
        run_ms = f"{_ms(row['run_wall'])} ({_ms(row['run_cpu'])})"
        print(
            f"| {name} | {versions[name]} | {compile_ms} | {run_ms} | {row['memory_mib']:.1f} MiB |"
        )


if __name__ == "__main__":
    asyncio.run(main())
