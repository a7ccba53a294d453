"""The job of `sandbox run`, `submit` and `serve`: its flags, its spec, how its result is told.

Shared by the command line (sandbox/cli/commands.py) and the resident
server that runs `sandbox run` for it (sandbox/cli/daemon.py): both parse
the same flags into the same :class:`~sandbox.spec.JobSpec` and report the
result alike (the program's output, a line on stderr for a limit, the exit
status: the program's own, 128+N for signal N, 124 for a time limit, 125
when the sandbox failed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TextIO

from sandbox import resources
from sandbox.cli.args import EXIT_SANDBOX, UsageError, invalid, read_file

if TYPE_CHECKING:
    from sandbox.result import JobResult
    from sandbox.spec import JobSpec

__all__ = [
    "EXIT_TIMEOUT",
    "StrictParser",
    "add_job_flags",
    "add_run_command",
    "fail",
    "job_spec",
    "known_language",
    "language_of",
    "report",
]

EXIT_TIMEOUT = 124


def known_language(name: str) -> str:
    from sandbox import languages

    try:
        languages.get(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return name


def language_of(path: str, lang: str | None) -> str:
    """``--lang``, else the language whose extensions include the file's, else python."""
    if lang:
        return lang
    from sandbox import languages

    suffix = Path(path).suffix
    for name, info in languages.known().items():
        if suffix in info.extensions:
            return name
    return "python"


class StrictParser(argparse.ArgumentParser):
    """argparse raising usage errors instead of printing and exiting (`sandbox serve`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or f"{self.prog}: exit {status}")


def add_job_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="source file, or - to read it from stdin")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the program")
    parser.add_argument(
        "--lang",
        type=known_language,
        metavar="NAME",
        help="a language of `sandbox languages` (default: from the extension)",
    )
    parser.add_argument("--image", metavar="NAME", help="image to run in (default: the language's)")
    parser.add_argument("--stdin", metavar="FILE", help="file to feed to the program's stdin")
    resources.add_flags(parser)  # one per limit: --memory, --pids, --time...
    parser.add_argument(
        "--cap", action="append", default=[], metavar="NAME", help="grant a capability (repeatable)"
    )
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="set a variable")
    parser.add_argument(
        "--network", action="store_true", help="network egress, public addresses only (if allowed)"
    )
    parser.add_argument(  # names checked by the spec (JobSpec.seccomp_profile), which lists them
        "--seccomp-profile",
        default="default",
        metavar="NAME",
        help="named syscall filter (default: default; docs/security.md)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def fail(message: str, code: int, err: TextIO | None = None) -> int:
    print(f"sandbox: {message}", file=err or sys.stderr)
    return code


def job_spec(
    args: argparse.Namespace, *, cwd: str | None = None, stdin_file: BinaryIO | None = None
) -> JobSpec:
    """The JobSpec the job flags describe.

    Args:
        args: the parsed flags.
        cwd: where relative file names start (`sandbox serve`: the client's directory).
        stdin_file: what ``-`` reads (`sandbox serve`: the client's standard input).

    Raises:
        UsageError: a flag's value is invalid (named, as pydantic says).
    """
    from pydantic import ValidationError

    from sandbox.spec import JobSpec

    code = read_file(args.file, "source file", cwd=cwd, stdin=stdin_file)
    stdin = read_file(args.stdin, "stdin file", cwd=cwd, stdin=stdin_file) if args.stdin else ""
    language = language_of(args.file, args.lang)
    limits = resources.flag_values(args)
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--env wants NAME=VALUE, got {item!r}")
        env[key] = value
    try:
        return JobSpec(
            code=code,
            language=language,
            stdin=stdin,
            argv=tuple(args.args),
            env=env,
            limits=limits,
            capabilities=args.cap,
            network=args.network,
            seccomp_profile=args.seccomp_profile,
            image=args.image,
        )
    except ValidationError as exc:
        raise invalid(exc) from exc


def report(
    result: JobResult, as_json: bool, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Print a result as `run` and `submit` do (on ``out`` and ``err``, ours by
    default); return the exit status."""
    from sandbox.result import Status
    from sandbox.verdict import OUTCOMES

    out = out or sys.stdout
    err = err or sys.stderr
    if as_json:
        print(result.model_dump_json(), file=out)
        return 0
    out.write(result.stdout)
    out.flush()
    err.write(result.stderr)
    said = OUTCOMES[result.status].describe(result)  # sandbox/verdict.py
    if result.status is Status.INTERNAL_ERROR:
        return fail(said or "the sandbox failed", EXIT_SANDBOX, err)
    if result.status is Status.TIMEOUT:
        return fail(said, EXIT_TIMEOUT, err)
    if said:
        fail(said, 0, err)
    if result.signal is not None:
        return 128 + result.signal
    return result.exit_code or 0


def add_run_command(sub: Any) -> None:
    """Register ``run`` on the top-level subparsers (the CLI's, and `sandbox serve`'s own)."""
    run = sub.add_parser(
        "run",
        help="run a program in a fresh container, here",
        description="Run FILE (or '-' for standard input) in a fresh container. "
        "Options go before FILE; everything after FILE is passed to the program.",
    )
    add_job_flags(run)
