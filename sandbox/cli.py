"""``sandbox``: run a program in a throwaway container, or check this host.

    sandbox run hello.py                       # prints what it prints, exits with its code
    sandbox run --json --memory 64M bomb.py    # the JobResult as one JSON object
    cat prog.py | sandbox run --stdin in.txt -
    sandbox doctor [--json]

Exit codes of ``run`` without ``--json``: the program's own exit code; 128+N
if it died of signal N; 124 when it ran out of time; 125 when the sandbox
failed; 2 for bad usage or a refused spec. With ``--json`` the code is 0
whenever a result was printed. Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.host import Check

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_SANDBOX = 125
_EXTENSIONS = {".py": "python", ".sh": "sh"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sandbox", description="Run untrusted code in throwaway Linux containers."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a program in a fresh container",
        description="Run FILE (or '-' for standard input) in a fresh container.",
    )
    run.add_argument("file", metavar="FILE", help="source file, or - to read it from stdin")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the program")
    run.add_argument("--lang", choices=["python", "sh"], help="language (default: from extension)")
    run.add_argument("--stdin", metavar="FILE", help="file to feed to the program's stdin")
    run.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 64M (no swap)")
    run.add_argument("--pids", type=int, metavar="N", help="max processes and threads")
    run.add_argument("--time", type=float, metavar="SEC", help="wall-clock limit in seconds")
    run.add_argument("--cpu-time", type=float, metavar="SEC", help="CPU time limit in seconds")
    run.add_argument("--output", metavar="SIZE", help="max bytes kept per output stream")
    run.add_argument("--disk", metavar="SIZE", help="writable space in the container")
    run.add_argument("--open-files", type=int, metavar="N", help="max open files per process")
    run.add_argument(
        "--cap", action="append", default=[], metavar="NAME", help="grant a capability (repeatable)"
    )
    run.add_argument("--env", action="append", default=[], metavar="K=V", help="set a variable")
    run.add_argument("--network", action="store_true", help="share the host network (if allowed)")
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    doctor = sub.add_parser("doctor", help="check that this host can run sandboxes")
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    return parser


def _fail(message: str, code: int) -> int:
    print(f"sandbox: {message}", file=sys.stderr)
    return code


def _read(path: str, what: str) -> str:
    if path == "-":
        return sys.stdin.buffer.read().decode(errors="replace")
    try:
        return Path(path).read_bytes().decode(errors="replace")
    except OSError as exc:
        raise SystemExit(_fail(f"cannot read {what} {path}: {exc.strerror}", EXIT_USAGE)) from exc


def _run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from sandbox.errors import SandboxError, SpecError
    from sandbox.result import JobResult, Status
    from sandbox.runner import execute_sync
    from sandbox.spec import JobSpec

    code = _read(args.file, "source file")
    stdin = _read(args.stdin, "stdin file") if args.stdin else ""
    language = args.lang or _EXTENSIONS.get(Path(args.file).suffix, "python")
    limits = {
        key: value
        for key, value in {
            "memory": args.memory,
            "pids": args.pids,
            "wall_time": args.time,
            "cpu_time": args.cpu_time,
            "output": args.output,
            "disk": args.disk,
            "open_files": args.open_files,
        }.items()
        if value is not None
    }
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            return _fail(f"--env wants NAME=VALUE, got {item!r}", EXIT_USAGE)
        env[key] = value
    try:
        spec = JobSpec(
            code=code,
            language=language,
            stdin=stdin,
            argv=tuple(args.args),
            env=env,
            limits=limits,
            capabilities=args.cap,
            network=args.network,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return _fail(f"invalid {where}: {first['msg']}", EXIT_USAGE)
    try:
        result = execute_sync(spec)
    except SpecError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except SandboxError as exc:
        if args.json:
            print(JobResult.internal_error(str(exc)).model_dump_json())
            return 0
        return _fail(str(exc), EXIT_SANDBOX)

    if args.json:
        print(result.model_dump_json())
        return 0
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    if result.status is Status.TIMEOUT:
        return _fail(
            f"time limit exceeded (wall {result.wall_time:.2f} s, cpu {result.cpu_time:.2f} s)",
            EXIT_TIMEOUT,
        )
    if result.status is Status.MEMORY_LIMIT:
        _fail(f"memory limit exceeded (peak {result.memory_peak} bytes)", 0)
    elif result.status is Status.OUTPUT_LIMIT:
        _fail("output limit exceeded; output truncated", 0)
    if result.signal is not None:
        return 128 + result.signal
    return result.exit_code or 0


def _doctor(args: argparse.Namespace) -> int:
    from sandbox.host import run_checks

    checks = run_checks()
    ok = all(c.ok for c in checks if c.essential)
    if ok:  # the proof: one real job, end to end
        checks.append(_smoke_job())
        ok = checks[-1].ok
    if args.json:
        print(json.dumps({"ok": ok, "checks": [c.__dict__ for c in checks]}))
        return 0 if ok else 1
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.essential else "warn")
        line = f"[{mark}] {c.name}: {c.detail}"
        if not c.ok and c.hint:
            line += f"\n       fix: {c.hint}"
        print(line)
    print("this host can run sandboxes" if ok else "this host cannot run sandboxes yet")
    return 0 if ok else 1


def _smoke_job() -> Check:
    import time

    from sandbox.errors import SandboxError
    from sandbox.host import Check
    from sandbox.runner import execute_sync
    from sandbox.spec import JobSpec

    start = time.perf_counter()
    try:
        result = execute_sync(JobSpec(code="print('ok')"))
    except SandboxError as exc:
        return Check("container", False, str(exc), "see the error above; run as root")
    elapsed = (time.perf_counter() - start) * 1000
    if result.stdout != "ok\n":
        return Check("container", False, f"a test job printed {result.stdout!r}: {result}")
    return Check("container", True, f"ran a test job in {elapsed:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sandbox`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        return _doctor(args)
    except KeyboardInterrupt:
        return 130
