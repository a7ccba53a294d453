"""Online-judge mode: compile once, run every test case in a fresh container, give verdicts.

:func:`judge` takes a :class:`JudgeSpec` (a program, its language, test
cases, limits, how to compare) and returns a :class:`JudgeResult`:

1. **Compile** (languages with a compile step, sandbox/languages.toml) in a
   sandbox of its own, with the language's compile limits. A failure is
   ``compile_error`` with the compiler's output; no test runs. The artifacts
   (a binary) come back as files and go into each test's container: nothing
   is compiled twice.
2. **Run** each case in a fresh container (from the warm pool), at most
   ``parallel`` at once (the runtime's slots: its pinned CPUs, or the host's).
   With ``stop_on_failure``, cases not yet started after a failure are
   ``skipped``.
3. **Verdict** per case: the sandbox's status (``time_limit``,
   ``memory_limit``, ``output_limit``, ``runtime_error``), else the
   comparison of stdout with the expected output (``accepted`` or
   ``wrong_answer``), by a named rule or a checker program run sandboxed
   itself. The submission's verdict is that of its first case, in order,
   that was not accepted.

Comparisons are pure functions (:func:`compare`), unit-tested apart.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import math
import os
import re
import signal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandbox import languages
from sandbox.errors import SandboxError, SpecError
from sandbox.result import JobResult, Status
from sandbox.spec import File, FileName, InputFile, JobSpec, LanguageName, Limits
from sandbox.submission import unpack
from sandbox.verdict import OUTCOMES

if TYPE_CHECKING:
    from sandbox.runtime.runner import Runtime

__all__ = [
    "CaseResult",
    "Checker",
    "CompileResult",
    "GroupResult",
    "JudgeResult",
    "JudgeSpec",
    "TestCase",
    "TestGroup",
    "Verdict",
    "compare",
    "compile_submission",
    "judge",
    "run_cases",
    "score",
    "verdict_of",
]

Comparison = Literal["exact", "lines", "tokens", "float"]
Aggregation = Literal["pass-fail", "sum", "min"]


class Verdict(StrEnum):
    """A test case's or a submission's outcome, as judges name them."""

    ACCEPTED = "accepted"
    WRONG_ANSWER = "wrong_answer"
    TIME_LIMIT = "time_limit"  # CPU or wall time
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    RUNTIME_ERROR = "runtime_error"  # non-zero exit or a signal
    COMPILE_ERROR = "compile_error"
    INTERNAL_ERROR = "internal_error"  # the sandbox or the checker failed
    SKIPPED = "skipped"  # not run: stop_on_failure


class TestCase(BaseModel):
    """One test: the program's stdin and the output expected of it."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(frozen=True, extra="forbid")

    stdin: str = ""
    expected: str | None = Field(None, description="None: any output is accepted")
    name: str | None = None
    files: dict[FileName, InputFile] = Field(default_factory=dict)


class TestGroup(BaseModel):
    """A group of cases worth points, as IOI subtasks and Kattis test data groups are.

    How its score comes from its cases (``aggregation``, Kattis's names):

    - ``pass-fail``: its ``points`` if every case is accepted, else 0 (IOI);
    - ``sum``: each case is worth ``points / N``; the group scores the sum;
    - ``min``: each case is worth ``points``; the group scores the least.

    A case scores its worth when accepted, times the checker's partial score
    if it gave one (:attr:`CaseResult.partial`), else 0. The group scores 0
    unless every group it ``requires`` had all its cases accepted (a subtask
    that includes another).
    """

    __test__ = False  # not a pytest class
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    points: float = Field(ge=0, le=1e6)
    cases: list[str] = Field(
        min_length=1,
        description="its cases, by TestCase.name; a pattern as fnmatch has it "
        "(``secret/group1/*``) names every case it matches",
    )
    requires: list[str] = Field(default_factory=list, description="names of other groups")
    aggregation: Aggregation = "pass-fail"


class Checker(BaseModel):
    """A program that judges an output, run sandboxed, by one of two conventions.

    - ``testlib``: ``<checker> input.txt output.txt answer.txt`` (files in its
      working directory); exit 0 for accepted, 1 or 2 for a wrong answer, 7
      with ``points P`` first in its output for a partial score (testlib's
      ``quitp(P)``, P the fraction of the case's worth: accepted at 1, else
      a wrong answer that scores P), anything else for a failure of its own
      (``internal_error``). The first line it prints is the case's message.
    - ``kattis`` (a problem package's output validator): ``<validator>
      input.txt answer.txt ./ FLAGS...`` with the program's output on its
      stdin; exit 42 for accepted, 43 for a wrong answer, anything else an
      ``internal_error``. Its ``judgemessage.txt`` (in the feedback
      directory, its working directory) is the case's message; on an
      accepted case, ``score_multiplier.txt`` (a fraction of the case's
      worth) or ``score.txt`` (points) is its partial score.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    language: LanguageName = "python"
    limits: Limits = Field(default_factory=lambda: Limits(wall_time=10, cpu_time=5))
    protocol: Literal["testlib", "kattis"] = "testlib"
    flags: tuple[str, ...] = Field((), description="kattis: the validator's flags")


class JudgeSpec(BaseModel):
    """A submission: a program, its language, test cases and how to judge them.

    A submission of several files comes as ``files`` beside ``code``, or as
    one ``archive`` (a zip or tar, base64: :mod:`sandbox.submission` unpacks
    it safely): its file named as the language's source (``main.cpp``,
    ``Main.java``...) is the code, the others join ``files``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    archive: str | None = Field(
        None,
        description="the submission as a zip or tar archive, base64 (unpacked into code and files)",
    )
    language: LanguageName = "python"
    image: str | None = None
    tests: list[TestCase] = Field(default_factory=list, max_length=1000)
    problem: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="a problem package on the worker (SANDBOX_PROBLEMS_DIR/NAME), instead of "
        "tests: its cases, limits and validator; the fields given here override its own",
    )
    limits: Limits = Field(default_factory=Limits, description="each test run's limits")
    compile_limits: Limits | None = Field(None, description="default: the language's")
    compile_options: str = Field(
        "",
        max_length=512,
        pattern=r"^[A-Za-z0-9 _+=.,/:@-]*$",
        description="options for the compiler, where the language's compile command takes "
        "them ($COMPILE_OPTIONS in languages.toml)",
    )
    argv: tuple[str, ...] = Field(
        (), max_length=64, description="the program's command-line arguments, in every case"
    )
    compare: Comparison = "lines"
    float_tolerance: float = Field(1e-6, gt=0, le=1)
    case_sensitive: bool = Field(True, description="tokens and float: False ignores case")
    checker: Checker | None = Field(None, description="judges outputs instead of `compare`")
    interactor: Checker | None = Field(
        None,
        description="an interactive problem: this program, sandboxed with its own limits, "
        "talks with the submission through its stdin and stdout and gives the verdict",
    )
    stop_on_failure: bool = False
    spread: int = Field(
        1,
        ge=1,
        le=64,
        description="through the service: its cases are shared among up to this many free "
        "workers, compiled once (1: one worker judges them all; stop_on_failure keeps it 1)",
    )
    groups: list[TestGroup] = Field(
        default_factory=list,
        max_length=100,
        description="scoring: groups of cases with points (the result's score); none: pass-fail",
    )
    files: dict[FileName, InputFile] = Field(
        default_factory=dict, description="extra files for every test run"
    )
    output_preview: int = Field(
        4096, ge=0, le=2**20, description="bytes of each case's stdout and stderr kept"
    )

    @model_validator(mode="before")
    @classmethod
    def _unpack_archive(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("archive") is None:
            return data
        data = dict(data)
        archive = data.pop("archive")
        try:
            if isinstance(archive, bytes):
                raw = archive
            elif isinstance(archive, str):
                raw = base64.b64decode(archive, validate=True)
            else:
                raw = File.model_validate(archive).data()
        except (ValueError, binascii.Error) as exc:
            raise ValueError(f"archive: not base64 ({exc})") from exc
        unpacked = unpack(raw)  # its ValueError names the archive
        try:
            source = languages.get(str(data.get("language", "python"))).source
        except ValueError:
            return data  # the language's own error follows
        files = dict(data.get("files") or {})
        for name, content in unpacked.items():
            if name == source:
                if data.get("code"):
                    raise ValueError(f"archive: it holds {name}, the source, and code is given too")
                data["code"] = content.decode(errors="replace")
            elif name in files:
                raise ValueError(f"archive: {name} is also in files")
            else:
                files[name] = File.of(content)
        data["files"] = files
        return data

    @model_validator(mode="after")
    def _cases_or_a_problem(self) -> JudgeSpec:
        if not self.tests and self.problem is None:
            raise ValueError("tests: give at least one test case, or a problem package (problem)")
        if self.tests and self.problem is not None:
            raise ValueError("tests and problem: the problem package has its own test cases")
        if self.interactor is not None and self.checker is not None:
            raise ValueError("interactor and checker: the interactor gives the verdict")
        if self.compile_options and not languages.get(self.language).takes_compile_options:
            raise ValueError(f"compile_options: language {self.language} takes no compiler options")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError("groups: two groups have the same name")
        for group in self.groups:
            unknown = [r for r in group.requires if r not in names or r == group.name]
            if unknown:
                raise ValueError(f"groups: {group.name} requires {unknown[0]!r}, not another group")
            if self.tests and not _members(group, self.tests):
                raise ValueError(f"groups: {group.name} names no test case ({group.cases[0]!r})")
        _order(self.groups)  # no cycle of requirements
        return self


class CompileResult(BaseModel):
    """What the compile step did."""

    model_config = ConfigDict(frozen=True)

    status: Verdict  # accepted (compiled) or compile_error
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    wall_time: float = 0.0
    cpu_time: float = 0.0
    memory_peak: int = 0
    message: str | None = None


class CaseResult(BaseModel):
    """One test case's verdict and measurements."""

    model_config = ConfigDict(frozen=True)

    status: Verdict
    name: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    wall_time: float = 0.0
    cpu_time: float = 0.0
    memory_peak: int = 0
    stdout: str = ""
    stderr: str = ""
    message: str | None = None
    partial: float | None = Field(
        None, ge=0, le=1, description="the checker's partial score: a fraction of the case's worth"
    )


class GroupResult(BaseModel):
    """A group's score: its points, or 0, and why."""

    model_config = ConfigDict(frozen=True)

    name: str
    score: float
    points: float
    status: Verdict  # accepted, or the verdict of its first case (or required group) that was not
    message: str | None = None


class JudgeResult(BaseModel):
    """The submission's verdict, its compile step and every case; with groups, its score."""

    model_config = ConfigDict(frozen=True)

    status: Verdict
    compile: CompileResult | None = None
    tests: list[CaseResult] = Field(default_factory=list)
    score: float | None = Field(None, description="with groups: the points of the groups passed")
    max_score: float | None = None
    groups: list[GroupResult] = Field(default_factory=list)
    error: str | None = None


# -- comparisons ---------------------------------------------------------------


def _clip(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else text[:width] + "...")


def compare(
    output: str,
    expected: str,
    how: Comparison,
    tolerance: float = 1e-6,
    *,
    case_sensitive: bool = True,
) -> tuple[bool, str | None]:
    """Does ``output`` match ``expected`` by rule ``how``? With a message when not.

    - ``exact``: byte for byte;
    - ``lines``: line by line, trailing whitespace of each line and trailing
      empty lines ignored;
    - ``tokens``: the whitespace-separated tokens;
    - ``float``: tokens, numbers equal within ``tolerance`` (absolute, or
      relative for numbers above 1), other tokens exactly.

    ``case_sensitive=False`` compares tokens ignoring case (the default of
    a Kattis problem's output validator).
    """
    if how == "exact":
        if output == expected:
            return True, None
        at = next(
            (i for i, (a, b) in enumerate(zip(output, expected, strict=False)) if a != b),
            min(len(output), len(expected)),
        )
        return False, f"differs at byte {at}"
    if how == "lines":
        got = [line.rstrip() for line in output.rstrip().splitlines()]
        want = [line.rstrip() for line in expected.rstrip().splitlines()]
        for number, (a, b) in enumerate(zip(got, want, strict=False), start=1):
            if a != b:
                return False, f"line {number}: expected {_clip(b)}, got {_clip(a)}"
        if len(got) != len(want):
            return False, f"expected {len(want)} lines, got {len(got)}"
        return True, None
    got, want = output.split(), expected.split()
    for number, (a, b) in enumerate(zip(got, want, strict=False), start=1):
        if a == b or (not case_sensitive and a.casefold() == b.casefold()):
            continue
        if how == "float" and _close(a, b, tolerance):
            continue
        return False, f"token {number}: expected {_clip(b)}, got {_clip(a)}"
    if len(got) != len(want):
        return False, f"expected {len(want)} tokens, got {len(got)}"
    return True, None


def _close(a: str, b: str, tolerance: float) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return abs(x - y) <= tolerance * max(1.0, abs(y))


# -- judging -------------------------------------------------------------------


async def judge(
    spec: JudgeSpec, runtime: Runtime, parallel: int | None = None, task_id: str | None = None
) -> JudgeResult:
    """Judge a submission on ``runtime``.

    Args:
        spec: the submission.
        runtime: an open runtime.
        parallel: test runs at once (default: the runtime's slots).
        task_id: the Celery task it serves (shown by `sandbox ps`).

    Returns:
        The verdicts; failures of the sandbox are ``internal_error``
        verdicts, not exceptions. A spec beyond the host's limits raises.

    Raises:
        SpecError: a limit beyond what the host allows.
    """
    if spec.problem is not None:
        raise SpecError(
            f"problem {spec.problem}: a problem package is read by the worker that judges "
            "(sandbox.judge); here, load it with sandbox.problem.load",
            field="problem",
            value=spec.problem,
        )
    compiled, artifacts = await compile_submission(spec, runtime, task_id)
    if compiled is not None and compiled.status is not Verdict.ACCEPTED:
        return verdict_of(spec, compiled, [])
    cases = await run_cases(spec, spec.tests, artifacts, runtime, parallel, task_id)
    return verdict_of(spec, compiled, cases)


async def compile_submission(
    spec: JudgeSpec, runtime: Runtime, task_id: str | None = None
) -> tuple[CompileResult | None, dict[str, File]]:
    """Step 1: the compile step's result (None: the language has none) and the
    artifacts every case's container gets."""
    if not languages.get(spec.language).compiled:
        return None, {}
    return await _compile(spec, runtime, task_id)


async def run_cases(
    spec: JudgeSpec,
    cases: list[TestCase],
    artifacts: dict[str, File],
    runtime: Runtime,
    parallel: int | None = None,
    task_id: str | None = None,
) -> list[CaseResult]:
    """Step 2: ``cases`` (all of ``spec.tests``, or a share of them judged here
    while other workers judge the rest), each in a fresh container, at most
    ``parallel`` at once; their verdicts in their order."""
    slots = asyncio.Semaphore(parallel or runtime.slots)
    failed = asyncio.Event()

    async def one(case: TestCase) -> CaseResult:
        async with slots:
            if spec.stop_on_failure and failed.is_set():
                return CaseResult(status=Verdict.SKIPPED, name=case.name)
            result = await _run_case(spec, case, artifacts, runtime, task_id)
            if result.status is not Verdict.ACCEPTED:
                failed.set()
            return result

    return list(await asyncio.gather(*(one(case) for case in cases)))


def verdict_of(
    spec: JudgeSpec, compiled: CompileResult | None, cases: list[CaseResult]
) -> JudgeResult:
    """Step 3 (pure): the submission's verdict, its first case not accepted (or its
    compile step's failure), and with groups its score."""
    if compiled is not None and compiled.status is not Verdict.ACCEPTED:
        result = JudgeResult(status=compiled.status, compile=compiled, error=compiled.message)
    else:
        verdict = next(
            (c.status for c in cases if c.status not in (Verdict.ACCEPTED, Verdict.SKIPPED)),
            Verdict.ACCEPTED,
        )
        result = JudgeResult(status=verdict, compile=compiled, tests=cases)
    return score(spec, result) if spec.groups else result


def score(spec: JudgeSpec, result: JudgeResult) -> JudgeResult:
    """``result`` with its groups scored (pure: unit-tested apart).

    Each group scores by its aggregation (:class:`TestGroup`), 0 if a group
    it requires had a case not accepted, with the first reason. A compile
    error scores 0 in every group.
    """
    by_name = {case.name: case for case in result.tests}
    done: dict[str, GroupResult] = {}
    for group in _order(spec.groups):
        results = [by_name.get(case.name) for case in _members(group, spec.tests)]
        failed = next(
            (c for c in results if c is not None and c.status is not Verdict.ACCEPTED), None
        )
        blocked = next(
            (done[r] for r in group.requires if done[r].status is not Verdict.ACCEPTED), None
        )
        status, message = Verdict.ACCEPTED, None
        if result.status is Verdict.COMPILE_ERROR or None in results:
            status = result.status if result.status is not Verdict.ACCEPTED else Verdict.SKIPPED
        elif failed is not None:
            status, message = failed.status, f"case {failed.name}: {failed.status}"
        if blocked is not None and status is Verdict.ACCEPTED:
            status, message = blocked.status, f"requires {blocked.name}, which did not pass"
        points = 0.0
        if blocked is None and None not in results and result.status is not Verdict.COMPILE_ERROR:
            points = _aggregate(group, [c for c in results if c is not None])
        done[group.name] = GroupResult(
            name=group.name, score=points, points=group.points, status=status, message=message
        )
    groups = [done[g.name] for g in spec.groups]
    return result.model_copy(
        update={
            "groups": groups,
            "score": sum(g.score for g in groups),
            "max_score": sum(g.points for g in groups),
        }
    )


def _aggregate(group: TestGroup, cases: list[CaseResult]) -> float:
    """A group's points from its cases' verdicts and partial scores."""
    if group.aggregation == "pass-fail":
        return group.points if all(c.status is Verdict.ACCEPTED for c in cases) else 0.0
    worth = worth_of(group, len(cases))
    scores = [
        worth * (c.partial if c.partial is not None else c.status is Verdict.ACCEPTED)
        for c in cases
    ]
    if not scores:
        return 0.0
    return sum(scores) if group.aggregation == "sum" else min(scores)


def worth_of(group: TestGroup, cases: int) -> float:
    """What one of a group's ``cases`` is worth: a share of its points (sum), or all."""
    return group.points / max(cases, 1) if group.aggregation == "sum" else group.points


def _members(group: TestGroup, tests: list[TestCase]) -> list[TestCase]:
    """The cases of ``group``: named, or matched by a pattern, in the tests' order."""
    return [
        case
        for case in tests
        if case.name is not None and any(fnmatch.fnmatchcase(case.name, p) for p in group.cases)
    ]


def _order(groups: list[TestGroup]) -> list[TestGroup]:
    """The groups, each after those it requires.

    Raises:
        ValueError: the requirements go round in a circle.
    """
    by_name = {g.name: g for g in groups}
    ordered: list[TestGroup] = []
    state: dict[str, str] = {}

    def visit(group: TestGroup, path: tuple[str, ...]) -> None:
        if state.get(group.name) == "done":
            return
        if group.name in path:
            raise ValueError(f"groups: {' -> '.join((*path, group.name))} requires itself")
        for required in group.requires:
            if required in by_name:
                visit(by_name[required], (*path, group.name))
        state[group.name] = "done"
        ordered.append(group)

    for group in groups:
        visit(group, ())
    return ordered


async def _compile(
    spec: JudgeSpec, runtime: Runtime, task_id: str | None
) -> tuple[CompileResult, dict[str, File]]:
    lang = languages.get(spec.language)
    limits = spec.compile_limits or Limits.model_validate(lang.compile_limits)
    job = JobSpec(
        code=spec.code,
        language=spec.language,
        image=spec.image,
        step="compile",
        limits=limits,
        files=spec.files,
        env={"COMPILE_OPTIONS": spec.compile_options} if spec.compile_options else {},
    )
    try:
        result = await runtime.execute(job, task_id=task_id)
    except SpecError:
        raise
    except SandboxError as exc:
        return CompileResult(status=Verdict.INTERNAL_ERROR, message=str(exc)), {}
    fields = {
        "stdout": _preview(result.stdout, spec.output_preview),
        "stderr": _preview(result.stderr, spec.output_preview),
        "exit_code": result.exit_code,
        "wall_time": result.wall_time,
        "cpu_time": result.cpu_time,
        "memory_peak": result.memory_peak,
    }
    if result.status is Status.INTERNAL_ERROR:
        return CompileResult(status=Verdict.INTERNAL_ERROR, message=result.error, **fields), {}
    if result.status is not Status.OK:
        why = {
            Status.TIMEOUT: "compilation took too long",
            Status.MEMORY_LIMIT: "compilation ran out of memory",
            Status.OUTPUT_LIMIT: "compilation printed too much",
        }.get(result.status, "the compiler reported errors")
        return CompileResult(status=Verdict.COMPILE_ERROR, message=why, **fields), {}
    missing = [name for name in lang.artifacts if name not in result.files]
    if missing:
        reason = result.files_skipped.get(missing[0], "missing")
        message = f"the compiler left no {missing[0]} ({reason})"
        return CompileResult(status=Verdict.INTERNAL_ERROR, message=message, **fields), {}
    artifacts = {
        name: result.files[name].model_copy(update={"executable": True}) for name in lang.artifacts
    }
    return CompileResult(status=Verdict.ACCEPTED, **fields), artifacts


async def _run_case(
    spec: JudgeSpec,
    case: TestCase,
    artifacts: dict[str, File],
    runtime: Runtime,
    task_id: str | None,
) -> CaseResult:
    lang = languages.get(spec.language)
    job = JobSpec(
        code=spec.code,
        language=spec.language,
        image=spec.image,
        step="run" if lang.compiled else "all",
        argv=spec.argv,
        stdin=case.stdin if spec.interactor is None else "",
        limits=spec.limits,
        files={**spec.files, **case.files, **artifacts},
    )
    if spec.interactor is not None:
        return await _run_interactive(spec, spec.interactor, case, job, runtime, task_id)
    try:
        result = await runtime.execute(job, task_id=task_id)
    except SpecError:
        raise
    except SandboxError as exc:
        return CaseResult(status=Verdict.INTERNAL_ERROR, name=case.name, message=str(exc))
    outcome = OUTCOMES[result.status]  # sandbox/verdict.py: each status's verdict
    verdict = Verdict(outcome.verdict) if outcome.verdict else None
    message = outcome.describe(result) if result.status is Status.KILLED else result.error
    if verdict is None:  # exited 0: judge the output
        word = await _check(spec, case, result, runtime)
        return _case_result(
            spec, case, result, word.verdict or Verdict.INTERNAL_ERROR, word.message, word.partial
        )
    return _case_result(spec, case, result, verdict, message)


def _case_result(
    spec: JudgeSpec,
    case: TestCase,
    result: JobResult,
    verdict: Verdict,
    message: str | None,
    partial: float | None = None,
) -> CaseResult:
    """A case's verdict with its run's figures and (previews of) its output."""
    return CaseResult(
        status=verdict,
        name=case.name,
        exit_code=result.exit_code,
        signal=result.signal,
        wall_time=result.wall_time,
        cpu_time=result.cpu_time,
        memory_peak=result.memory_peak,
        stdout=_preview(result.stdout, spec.output_preview),
        stderr=_preview(result.stderr, spec.output_preview),
        message=message,
        partial=partial,
    )


class Word(NamedTuple):
    """What a checker or an interactor said of a case."""

    verdict: Verdict | None  # None: it failed itself, not the program
    message: str | None
    partial: float | None = None  # a fraction of the case's worth


async def _check(spec: JudgeSpec, case: TestCase, result: JobResult, runtime: Runtime) -> Word:
    if spec.checker is None:
        if case.expected is None:
            return Word(Verdict.ACCEPTED, None)
        ok, message = compare(
            result.stdout,
            case.expected,
            spec.compare,
            spec.float_tolerance,
            case_sensitive=spec.case_sensitive,
        )
        return Word(Verdict.ACCEPTED if ok else Verdict.WRONG_ANSWER, message)
    try:
        checked = await runtime.execute(_judge_job(spec.checker, case, result.stdout))
    except SandboxError as exc:
        return Word(Verdict.INTERNAL_ERROR, f"checker: {exc}")
    word = _word(spec.checker, checked, _worth(spec, case))
    if word.verdict is None:
        message = f"checker failed ({checked.status}): {word.message or ''}".strip()
        return Word(Verdict.INTERNAL_ERROR, message)
    return word


def _worth(spec: JudgeSpec, case: TestCase) -> float | None:
    """What ``case`` is worth in the first scoring group that holds it (None: none does)."""
    for group in spec.groups:
        members = _members(group, spec.tests)
        if group.aggregation != "pass-fail" and case in members:
            return worth_of(group, len(members))
    return None


def _judge_job(judge: Checker, case: TestCase, output: str | None) -> JobSpec:
    """The job of a checker (``output``: the program's) or of an interactor (None: it
    talks with the program instead), by its protocol; the case's files are its own."""
    kattis = judge.protocol == "kattis"
    files = {"input.txt": File(content=case.stdin), "answer.txt": File(content=case.expected or "")}
    if output is not None and not kattis:
        files["output.txt"] = File(content=output)
    return JobSpec(
        code=judge.code,
        language=judge.language,
        argv=("input.txt", "answer.txt", "./", *judge.flags)
        if kattis
        else ("input.txt", "output.txt", "answer.txt"),
        stdin=output if kattis and output is not None else "",
        limits=judge.limits,
        files=files,
        collect=_FEEDBACK if kattis else (),
    )


_FEEDBACK = ("judgemessage.txt", "score.txt", "score_multiplier.txt")
_POINTS = re.compile(r"^\s*points\s+(\S+)", re.IGNORECASE)


def _word(judge: Checker, done: JobResult, worth: float | None = None) -> Word:
    """A checker's or interactor's verdict by its exit, its message (its
    judgemessage.txt, else the first line it printed) and its partial score
    (``worth``: what the case is worth, for kattis's score.txt in points).
    One killed by SIGPIPE wrote to a program that had stopped reading: a
    wrong answer. A partial score that is not a number in range is its own
    failure (verdict None)."""

    def text(name: str) -> str:
        feedback = done.files.get(name)
        return feedback.data().decode(errors="replace").strip() if feedback else ""

    lines = (text("judgemessage.txt") or done.stdout.strip() or done.stderr.strip()).splitlines()
    message = lines[0][:200] if lines else None
    kattis = judge.protocol == "kattis"
    accepted, wrong = ((42,), (43,)) if kattis else ((0,), (1, 2))
    exited = done.status in (Status.OK, Status.RUNTIME_ERROR)
    if exited and not kattis and done.exit_code == 7:  # testlib's quitp
        said = _POINTS.match(done.stdout.strip() or done.stderr.strip())
        partial = _fraction(said.group(1) if said else None, 1.0)
        if partial is None:
            return Word(None, "exit 7 (points) without 'points P', P from 0 to 1")
        return Word(Verdict.ACCEPTED if partial >= 1 else Verdict.WRONG_ANSWER, message, partial)
    if done.exit_code in accepted and exited:
        multiplier, points = text("score_multiplier.txt"), text("score.txt")
        if not kattis or not (multiplier or (points and worth is not None)):
            return Word(Verdict.ACCEPTED, message)
        partial = _fraction(multiplier, 1.0) if multiplier else _fraction(points, worth or 0)
        if partial is None:
            whole = "score_multiplier.txt: 0 to 1" if multiplier else f"score.txt: 0 to {worth:g}"
            return Word(None, f"its score {multiplier or points!r} is out of range ({whole})")
        return Word(Verdict.ACCEPTED, message, partial)
    if done.status is Status.RUNTIME_ERROR and done.exit_code in wrong:
        return Word(Verdict.WRONG_ANSWER, message)
    if done.status is Status.RUNTIME_ERROR and done.signal == signal.SIGPIPE:
        return Word(Verdict.WRONG_ANSWER, message or "the submission stopped reading")
    return Word(None, message)


def _fraction(text: str | None, whole: float) -> float | None:
    """``text`` as a fraction of ``whole`` (None: not a number from 0 to ``whole``)."""
    try:
        value = float(text or "")
    except ValueError:
        return None
    if not 0 <= value <= whole or whole <= 0 or math.isnan(value):
        return None
    return value / whole


async def _run_interactive(
    spec: JudgeSpec,
    interactor: Checker,
    case: TestCase,
    job: JobSpec,
    runtime: Runtime,
    task_id: str | None,
) -> CaseResult:
    """One case of an interactive problem: the submission and its interactor at once,
    each one's stdout the other's stdin, each in its own container and cgroup (the
    interactor's time is not the submission's; the test's files are the interactor's
    only). The verdict, first match: the interactor failed (``internal_error``); the
    submission hit a limit (a submission that waits forever ends at its wall time);
    the interactor's wrong answer (a submission killed by the pipe the interactor
    closed is wrong, not crashed; an interactor killed by SIGPIPE, writing to a
    submission that stopped reading, says wrong answer); the submission's runtime
    error; accepted.
    """
    to_sub_r, to_sub_w = os.pipe2(os.O_CLOEXEC)
    from_sub_r, from_sub_w = os.pipe2(os.O_CLOEXEC)
    talker = _judge_job(interactor, case, None)
    # Each execute owns its two descriptors (it closes them once its job holds them).
    submission, judged = await asyncio.gather(
        runtime.execute(job, task_id=task_id, stdio=(to_sub_r, from_sub_w)),
        runtime.execute(talker, task_id=task_id, stdio=(from_sub_r, to_sub_w)),
        return_exceptions=True,
    )
    for outcome_of in (submission, judged):
        if isinstance(outcome_of, SpecError):
            raise outcome_of
        if isinstance(outcome_of, BaseException) and not isinstance(outcome_of, SandboxError):
            raise outcome_of
    if isinstance(submission, SandboxError) or isinstance(judged, SandboxError):
        error = submission if isinstance(submission, SandboxError) else judged
        return CaseResult(status=Verdict.INTERNAL_ERROR, name=case.name, message=str(error))
    assert isinstance(submission, JobResult)
    assert isinstance(judged, JobResult)
    said, message, partial = _word(interactor, judged, _worth(spec, case))
    limit = OUTCOMES[submission.status].verdict
    if said is None:
        verdict = Verdict.INTERNAL_ERROR
        message = f"interactor failed ({judged.status}): {message or ''}".strip()
    elif submission.status in (Status.TIMEOUT, Status.MEMORY_LIMIT, Status.OUTPUT_LIMIT):
        verdict, message = Verdict(str(limit)), OUTCOMES[submission.status].describe(submission)
    elif submission.status is Status.KILLED:
        verdict, message = Verdict.INTERNAL_ERROR, OUTCOMES[submission.status].describe(submission)
    elif said is Verdict.WRONG_ANSWER:
        verdict = Verdict.WRONG_ANSWER
    elif submission.status is not Status.OK:
        verdict = Verdict(str(limit))
    else:
        verdict = Verdict.ACCEPTED
    return _case_result(
        spec, case, submission, verdict, message, partial if verdict is said else None
    )


def _preview(text: str, size: int) -> str:
    return text if len(text) <= size else text[:size]
