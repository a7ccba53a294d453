"""``sandbox judge`` and ``sandbox languages``: judge mode on the command line.

``sandbox judge FILE --tests DIR`` reads the common judge layout, ``N.in``
with ``N.out`` (or ``N.ans``) beside it, judges FILE here (as root) and prints
a table of per-case verdicts; ``--json`` prints the JudgeResult instead.
Exit status: 0 accepted, 1 any other verdict, 2 bad usage or a refused spec,
125 the sandbox failed (``internal_error``); with ``--json``, 0 whenever a
result was printed.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox import resources
from sandbox.cli.args import EXIT_SANDBOX, EXIT_USAGE, UsageError, invalid, read_file

if TYPE_CHECKING:
    from sandbox.judging import JudgeResult, JudgeSpec

__all__ = ["add_commands", "judge_command", "languages_command"]

EXIT_REJECTED = 1


def add_commands(sub: Any, language_type: Any) -> None:
    """Register ``judge`` and ``languages`` on the top-level subparsers."""
    judge = sub.add_parser(
        "judge",
        help="judge a program against a directory of test cases, here",
        description="Compile FILE once, run it on every N.in of DIR in a fresh container and "
        "compare its output with N.out (or N.ans).",
    )
    judge.add_argument("file", metavar="FILE", help="the submission's source file")
    where = judge.add_mutually_exclusive_group(required=True)
    where.add_argument("--tests", metavar="DIR", help="N.in / N.out pairs")
    where.add_argument(
        "--problem",
        metavar="DIR",
        help="a problem package (Kattis / ICPC format: problem.yaml, data/, output_validators/)",
    )
    judge.add_argument(
        "--lang", type=language_type, metavar="NAME", help="default: from the extension"
    )
    judge.add_argument(
        "--image", metavar="NAME", help="image to judge in (default: the language's)"
    )
    judge.add_argument(  # names checked by the spec (JudgeSpec.compare), which lists them
        "--compare",
        default=None,
        metavar="HOW",
        help="how outputs are compared (default: lines, or the problem package's; docs: README)",
    )
    judge.add_argument("--float-tolerance", type=float, default=1e-6, metavar="EPS")
    judge.add_argument("--checker", metavar="FILE", help="a checker program (testlib exit codes)")
    judge.add_argument("--checker-lang", type=language_type, metavar="NAME")
    resources.add_flags(judge, per="per case")  # one per limit: --time, --memory...
    judge.add_argument("--parallel", type=int, metavar="N", help="cases at once")
    judge.add_argument("--stop-on-failure", action="store_true", help="skip after a failure")
    judge.add_argument("--json", action="store_true", help="print the JudgeResult as JSON")

    langs = sub.add_parser(
        "languages",
        help="list the languages jobs may use, and whether this host has what each needs",
    )
    langs.add_argument("--json", action="store_true", help="print them as JSON")
    langs.add_argument(
        "--versions", action="store_true", help="run each toolchain's version command in a sandbox"
    )


def _natural(path: Path) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.stem))


def read_tests(directory: Path) -> list[dict[str, Any]]:
    """The test cases of a judge directory: each ``N.in`` with its ``N.out`` or ``N.ans``.

    Raises:
        UsageError: no such directory, no ``.in`` file, or an input without an answer.
    """
    if not directory.is_dir():
        raise UsageError(f"no such directory: {directory}")
    inputs = sorted(directory.glob("*.in"), key=_natural)
    if not inputs:
        raise UsageError(f"no test cases in {directory} (expected N.in and N.out files)")
    tests = []
    for source in inputs:
        answer = next(
            (p for p in (source.with_suffix(".out"), source.with_suffix(".ans")) if p.exists()),
            None,
        )
        if answer is None:
            raise UsageError(f"{source} has no {source.stem}.out (or .ans) beside it")
        tests.append(
            {
                "name": source.stem,
                "stdin": source.read_bytes().decode(errors="replace"),
                "expected": answer.read_bytes().decode(errors="replace"),
            }
        )
    return tests


def _spec(args: argparse.Namespace, language: str) -> JudgeSpec:
    from pydantic import ValidationError

    from sandbox.judging import JudgeSpec

    code = read_file(args.file, "source file")
    limits = resources.flag_values(args)
    try:
        if args.problem:
            return _problem_spec(args, code, language, limits)
        fields: dict[str, Any] = {
            "code": code,
            "language": language,
            "tests": read_tests(Path(args.tests)),
            "limits": limits,
            "compare": args.compare or "lines",
            "float_tolerance": args.float_tolerance,
            "stop_on_failure": args.stop_on_failure,
            "image": args.image,
        }
        if args.checker:
            checker = read_file(args.checker, "checker")
            fields["checker"] = {"code": checker, "language": args.checker_lang or "python"}
        return JudgeSpec.model_validate(fields)
    except ValidationError as exc:
        raise invalid(exc) from exc


def _problem_spec(
    args: argparse.Namespace, code: str, language: str, limits: dict[str, Any]
) -> JudgeSpec:
    """A submission to a problem package; the command line's flags override the package's."""
    from sandbox import problem
    from sandbox.errors import SpecError

    if args.checker:
        raise UsageError("--checker and --problem: the package's output validator judges")
    overrides: dict[str, Any] = {"limits": limits, "stop_on_failure": args.stop_on_failure}
    if args.compare:
        overrides["compare"] = args.compare
    if args.image:
        overrides["image"] = args.image
    try:
        return problem.load(Path(args.problem)).spec(code, language, **overrides)
    except SpecError as exc:
        raise UsageError(str(exc)) from exc


def judge_command(args: argparse.Namespace, language: str) -> int:
    """``sandbox judge``: returns the exit status."""
    from sandbox.errors import SandboxError, SpecError
    from sandbox.judging import JudgeResult, Verdict, judge
    from sandbox.runtime.runner import Runtime

    spec = _spec(args, language)  # a UsageError is main's to report

    async def run() -> JudgeResult:
        async with Runtime() as runtime:
            return await judge(spec, runtime, parallel=args.parallel)

    try:
        import asyncio  # here: `sandbox run` through `sandbox serve` never loads it

        result = asyncio.run(run())
    except SpecError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SandboxError as exc:
        result = JudgeResult(status=Verdict.INTERNAL_ERROR, error=str(exc))
    if args.json:
        print(result.model_dump_json())
        return 0
    print_table(result)
    if result.status is Verdict.ACCEPTED:
        return 0
    if result.status is Verdict.INTERNAL_ERROR:
        print(f"sandbox: {result.error or 'internal error'}", file=sys.stderr)
        return EXIT_SANDBOX
    return EXIT_REJECTED


def _size(n: int) -> str:
    return f"{n / 2**20:.1f}M"


def print_table(result: JudgeResult) -> None:
    """Per-case verdicts, times and memory; then the compile step and the verdict."""
    from sandbox.judging import Verdict

    out = sys.stdout
    if result.compile is not None:
        c = result.compile
        said = "ok" if c.status is Verdict.ACCEPTED else c.status.value
        print(f"compile: {said} ({c.wall_time:.2f} s)", file=out)
        if c.status is not Verdict.ACCEPTED:
            print((c.stderr or c.stdout or c.message or "").rstrip(), file=out)
    if result.tests:
        print(
            f"{'case':>6}  {'verdict':<14} {'cpu':>8} {'wall':>8} {'memory':>8}  message", file=out
        )
    for case in result.tests:
        print(
            f"{case.name or '':>6}  {case.status.value:<14} {case.cpu_time:>7.3f}s "
            f"{case.wall_time:>7.3f}s {_size(case.memory_peak):>8}  {case.message or ''}",
            file=out,
        )
    passed = sum(1 for c in result.tests if c.status is Verdict.ACCEPTED)
    total = len(result.tests)
    print(f"verdict: {result.status} ({passed}/{total} accepted)", file=out)
    if result.groups:
        parts = ", ".join(f"{g.name} {g.score:g}/{g.points:g}" for g in result.groups)
        print(f"score: {result.score:g}/{result.max_score:g} ({parts})", file=out)


def languages_command(args: argparse.Namespace) -> int:
    """``sandbox languages``: the registry, what this host lacks of it, and (``--versions``)
    each toolchain's version, as a table or JSON."""
    from sandbox import languages

    known = languages.known()
    missing = {name: _missing(info) for name, info in known.items()}
    versions = _versions(known, missing) if args.versions else {}
    if args.json:
        rows = {
            name: {
                **info.model_dump(mode="json"),
                "missing": missing[name],
                **({"found": versions.get(name)} if args.versions else {}),
            }
            for name, info in known.items()
        }
        print(json.dumps(rows))
        return 0
    for name, info in sorted(known.items()):
        kind = "compiled" if info.artifacts else "interpreted"
        exts = " ".join(info.extensions)
        if missing[name]:
            state = f"missing {missing[name][0]} (apt-get install {' '.join(info.packages)})"
        else:
            state = versions.get(name) or "ok"
        print(f"{name:<10} {kind:<12} image={info.image:<8} {exts:<16} {state}")
    return 0


def _missing(info: Any) -> list[str]:
    """The programs of a language that its image lacks (the host image: the host's /usr)."""
    from sandbox.errors import SandboxError
    from sandbox.image.store import HOST_IMAGE, ImageStore
    from sandbox.settings import Settings

    if info.image == HOST_IMAGE:
        return list(info.missing(Path("/")))  # the host image binds the host's /usr
    try:
        image = ImageStore(Settings().state_dir).get(info.image)
    except SandboxError as exc:
        return [f"image {info.image}: {exc}"]
    return list(info.missing(image.root))


def _versions(known: dict[str, Any], missing: dict[str, list[str]]) -> dict[str, str]:
    """Each available toolchain's version: the first line its version command prints."""
    import asyncio

    from sandbox.runtime.runner import Runtime
    from sandbox.spec import JobSpec

    async def one(runtime: Runtime, name: str, argv: tuple[str, ...]) -> tuple[str, str]:
        script = " ".join(shlex.quote(arg) for arg in argv) + " 2>&1"
        spec = JobSpec(
            code=f"exec {script}\n", language="sh", image=known[name].image,
            limits={"memory": "1G", "pids": 128, "wall_time": 60, "cpu_time": 30},
        )  # fmt: skip
        result = await runtime.execute(spec)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        lines = [line for line in lines if "warning" not in line.lower()] or lines  # the JVM's
        if result.status != "ok" or not lines:
            return name, f"no version ({result.status})"
        return name, lines[0]

    async def all_of() -> dict[str, str]:
        async with Runtime(pool_size=0) as runtime:
            found = await asyncio.gather(
                *(
                    one(runtime, name, info.version)
                    for name, info in known.items()
                    if info.version and not missing[name]
                )
            )
        return dict(found)

    return asyncio.run(all_of())
