"""Problem packages: a directory in the Kattis / ICPC problem package format, judged.

:func:`load` reads a package into a :class:`Problem`; :meth:`Problem.spec`
makes the :class:`~sandbox.judging.JudgeSpec` of a submission to it.
Supported (docs: README, judge mode):

- A package from elsewhere may be hostile: a symbolic link out of it, to a
  folder, or dangling, and a FIFO or device are refused by name before a
  file is read.
- ``problem.yaml``: ``name``; ``type`` / ``validation``: pass-fail,
  interactive (its output validator is the interactor) and scoring;
  ``validator_flags`` of the default validator:
  ``case_sensitive``, ``space_change_sensitive``, ``float_tolerance E``,
  ``float_relative_tolerance E``, ``float_absolute_tolerance E``;
  ``limits``: ``time_limit`` (seconds, the 2023-07 format), ``memory`` and
  ``output`` (MiB).
- A time limit from ``limits.time_limit``, else the ``.timelimit`` file
  (problemtools, DOMjudge), else ``timelimit`` in ``domjudge-problem.ini``;
  without any, the judge's default (or the command line's).
- ``data/sample`` and ``data/secret``, with test groups as subdirectories at
  any depth: each ``NAME.in`` with its ``NAME.ans``, samples first, then in
  natural order; a case is named by its path (``secret/group1/03``).
- ``output_validators/NAME/``: one source file, its language from its
  extension, run with Kattis's protocol (exit 42/43, the output on stdin,
  ``judgemessage.txt``, and ``score.txt`` or ``score_multiplier.txt`` for
  a partial score) and the package's ``validator_flags``.
- ``include/LANG/`` (``cpp``, ``java``, ``python3``...): files added to a
  submission in that language and compiled with it (a grader, a header).
- Scoring: each directory of ``data/secret`` is a test group (else
  ``secret`` is one), set by ``test_group.yaml`` (``max_score``,
  ``score_aggregation`` pass-fail, sum or min, ``require_pass``) or by the
  legacy ``testdata.yaml`` (``accept_score`` per case; ``grader_flags``
  sum, avg or min). Refused by name: custom graders, unbounded scores, a
  ``reject_score`` other than 0, a ``secret`` of groups scored other than by sum.

The default validator compares tokens, ignoring case unless
``case_sensitive``; ``space_change_sensitive`` compares byte for byte; a
float tolerance compares numbers within it (absolute, or relative for
numbers above 1: one tolerance for both kinds of flag).
"""

from __future__ import annotations

import configparser
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox import languages
from sandbox.errors import SpecError
from sandbox.judging import Aggregation, Checker, Comparison, JudgeSpec, TestCase, TestGroup
from sandbox.spec import File

__all__ = ["Problem", "load"]

MAX_CASES = 1000  # JudgeSpec.tests at most
# Our language names that the format's language codes (include/CODE/) spell otherwise.
_KATTIS_NAMES = {"python": "python3", "pypy": "python3", "sh": "bash"}
_FLOAT_FLAGS = ("float_tolerance", "float_relative_tolerance", "float_absolute_tolerance")


@dataclass(frozen=True)
class Problem:
    """A problem package, read: its cases, limits and how outputs are judged."""

    name: str
    tests: list[TestCase]
    time_limit: float | None = None  # seconds of CPU per case; None: the judge's default
    memory: int | None = None  # bytes
    output: int | None = None  # bytes
    compare: Comparison = "tokens"
    case_sensitive: bool = False
    float_tolerance: float = 1e-6
    checker: Checker | None = None
    interactor: Checker | None = None  # an interactive problem's (its output validator)
    groups: list[TestGroup] = field(default_factory=list)  # a scoring problem's
    includes: dict[str, dict[str, bytes]] = field(default_factory=dict)  # include/LANG/: files
    limits: dict[str, Any] = field(default_factory=dict)  # what the package sets, as Limits

    def spec(self, code: str, language: str, **overrides: Any) -> JudgeSpec:
        """The JudgeSpec of a submission; ``overrides`` replace its fields (``limits``
        are merged over the package's).

        Raises:
            pydantic.ValidationError: a field is invalid.
        """
        limits = {**self.limits, **overrides.pop("limits", {})}
        included = self.includes.get(_KATTIS_NAMES.get(language, language), {})
        source = languages.get(language).source
        if source in included:
            raise SpecError(
                f"problem {self.name}: include/ holds {source}, the submission's own file name "
                "(a driver named as the program is not supported)",
                field="problem",
            )
        files = {**overrides.pop("files", {}), **{n: File.of(b) for n, b in included.items()}}
        fields: dict[str, Any] = {
            "code": code,
            "language": language,
            "tests": self.tests,
            "limits": limits,
            "compare": self.compare,
            "case_sensitive": self.case_sensitive,
            "float_tolerance": self.float_tolerance,
            "checker": self.checker,
            "interactor": self.interactor,
            "groups": self.groups,
            "files": files,
            **overrides,
        }
        return JudgeSpec.model_validate(fields)


def load(directory: Path) -> Problem:
    """Read the problem package in ``directory``.

    Raises:
        SpecError: it is not a package we can judge (what is wrong, and where).
    """
    if not directory.is_dir():
        raise SpecError(f"no such problem directory: {directory}", field="problem")
    _refuse_what_leaves(directory)
    config = _config(directory)
    kind = str(config.get("type", "pass-fail"))
    validation = str(config.get("validation", "default"))
    interactive = "interactive" in kind or "interactive" in validation
    scoring = "scoring" in kind or "score" in validation.split()
    limits_table = config.get("limits") or {}
    if not isinstance(limits_table, dict):
        raise SpecError(f"{directory / 'problem.yaml'}: limits is not a table", field="problem")
    flags = _flags(config.get("validator_flags", ""), directory)
    time_limit = _time_limit(directory, limits_table)
    memory = _mib(limits_table.get("memory"), "memory", directory)
    output = _mib(limits_table.get("output"), "output", directory)
    limits: dict[str, Any] = {}
    if time_limit is not None:
        # CPU time is the limit; wall time leaves room for a busy machine.
        limits |= {"cpu_time": time_limit, "wall_time": max(2 * time_limit, time_limit + 1)}
    if memory is not None:
        limits["memory"] = memory
    if output is not None:
        limits["output"] = output
    tolerance = next((float(flags[f]) for f in _FLOAT_FLAGS if f in flags), None)
    compare: Comparison = "tokens"
    if "space_change_sensitive" in flags:
        compare = "exact"
    elif tolerance is not None:
        compare = "float"
    validator = _validator(directory, config)
    if interactive and validator is None:
        raise SpecError(
            f"{directory}: an interactive problem needs its interactor in output_validators/",
            field="problem",
        )
    tests = _cases(directory)
    return Problem(
        includes=_includes(directory),
        name=str(config.get("name", directory.name)),
        tests=tests,
        groups=_groups(directory, tests, modern=_modern(config, directory)) if scoring else [],
        time_limit=time_limit,
        memory=memory,
        output=output,
        compare=compare,
        case_sensitive="case_sensitive" in flags,
        float_tolerance=tolerance or 1e-6,
        checker=None if interactive else validator,
        interactor=validator if interactive else None,
        limits=limits,
    )


def _refuse_what_leaves(directory: Path) -> None:
    """A package from elsewhere may be hostile: a symbolic link out of it (a case that
    reads the worker's /etc/shadow) or a FIFO or device (a read that never ends) is
    refused by name, before any file of it is read."""
    top = directory.resolve()
    for folder, names, files in os.walk(top):  # links to folders are not followed
        for name in [*names, *files]:
            path = Path(folder) / name
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(top):
                    raise SpecError(
                        f"{path}: a symbolic link out of the package (to {target})",
                        field="problem",
                    )
                if target.is_dir():
                    raise SpecError(f"{path}: a symbolic link to a folder", field="problem")
                path = target
            mode = path.lstat().st_mode if path.exists() else 0
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise SpecError(
                    f"{path}: neither a file nor a folder (a FIFO, a device, a dangling link)",
                    field="problem",
                )


def _includes(directory: Path) -> dict[str, dict[str, bytes]]:
    """``include/LANG/``: files added to every submission in LANG (graders, headers)."""
    root = directory / "include"
    if not root.is_dir():
        return {}
    found: dict[str, dict[str, bytes]] = {}
    for language in sorted(d for d in root.iterdir() if d.is_dir()):
        files = {p.name: p.read_bytes() for p in sorted(language.iterdir()) if p.is_file()}
        if any(p.is_dir() for p in language.iterdir()):
            raise SpecError(
                f"{language}: included files in folders are not supported", field="problem"
            )
        found[language.name] = files
    return found


def _config(directory: Path) -> dict[str, Any]:
    return _table(directory / "problem.yaml")


def _table(path: Path) -> dict[str, Any]:
    """A YAML file of settings (none: an empty table)."""
    if not path.is_file():
        return {}
    try:
        table = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read it: {exc}", field="problem") from exc
    if not isinstance(table, dict):
        raise SpecError(f"{path}: not a table of settings", field="problem")
    return table


def _flags(text: object, directory: Path) -> dict[str, str]:
    """``validator_flags``: names, each tolerance followed by its number."""
    words = str(text or "").split()
    flags: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in _FLOAT_FLAGS:
            if i + 1 >= len(words) or not _is_number(words[i + 1]):
                raise SpecError(
                    f"{directory / 'problem.yaml'}: validator_flags: {word} wants a number",
                    field="problem",
                )
            flags[word] = words[i + 1]
            i += 2
            continue
        flags[word] = ""
        i += 1
    return flags


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _time_limit(directory: Path, limits: dict[str, Any]) -> float | None:
    if "time_limit" in limits:
        return _seconds(limits["time_limit"], directory / "problem.yaml")
    marker = directory / ".timelimit"
    if marker.is_file():
        return _seconds(marker.read_text().strip(), marker)
    ini = directory / "domjudge-problem.ini"
    if ini.is_file():
        parser = configparser.ConfigParser()
        parser.read_string("[problem]\n" + ini.read_text())
        if parser.has_option("problem", "timelimit"):
            return _seconds(parser.get("problem", "timelimit").strip("'\""), ini)
    return None


def _seconds(value: object, where: Path) -> float:
    try:
        seconds = float(str(value))
    except ValueError:
        raise SpecError(f"{where}: time limit {value!r} is not a number", field="problem") from None
    if seconds <= 0:
        raise SpecError(f"{where}: time limit {seconds:g} is not positive", field="problem")
    return seconds


def _mib(value: object, name: str, directory: Path) -> int | None:
    if value is None:
        return None
    try:
        mib = float(str(value))
    except ValueError:
        raise SpecError(
            f"{directory / 'problem.yaml'}: limits.{name} {value!r} is not a number of MiB",
            field="problem",
        ) from None
    return int(mib * 2**20)


def _natural(path: Path) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(path)))


def _cases(directory: Path) -> list[TestCase]:
    data = directory / "data"
    tests: list[TestCase] = []
    for part in ("sample", "secret"):
        root = data / part
        if not root.is_dir():
            continue
        for source in sorted(root.rglob("*.in"), key=lambda p: _natural(p.relative_to(root))):
            answer = source.with_suffix(".ans")
            if not answer.is_file():
                raise SpecError(f"{source}: no {answer.name} beside it", field="problem")
            name = str(source.relative_to(data).with_suffix(""))
            tests.append(
                TestCase(
                    stdin=source.read_bytes().decode(errors="replace"),
                    expected=answer.read_bytes().decode(errors="replace"),
                    name=name,
                )
            )
    if not tests:
        raise SpecError(
            f"{data}: no test cases (data/sample and data/secret hold NAME.in and NAME.ans)",
            field="problem",
        )
    if len(tests) > MAX_CASES:
        raise SpecError(f"{data}: {len(tests)} cases, more than {MAX_CASES}", field="problem")
    return tests


def _validator(directory: Path, config: dict[str, Any]) -> Checker | None:
    validators = directory / "output_validators"
    custom = "custom" in str(config.get("validation", "")) or validators.is_dir()
    if not custom:
        return None
    programs = sorted(p for p in validators.iterdir() if p.is_dir()) if validators.is_dir() else []
    if len(programs) != 1:
        raise SpecError(
            f"{validators}: expected one output validator, found {len(programs)}", field="problem"
        )
    sources = sorted(p for p in programs[0].iterdir() if p.is_file())
    if len(sources) != 1:
        raise SpecError(
            f"{programs[0]}: an output validator of {len(sources)} files is not supported yet "
            "(one source file is)",
            field="problem",
        )
    source = sources[0]
    language = next(
        (name for name, info in languages.known().items() if source.suffix in info.extensions),
        None,
    )
    if language is None:
        raise SpecError(f"{source}: no language has the extension {source.suffix!r}")
    flags = tuple(str(config.get("validator_flags", "") or "").split())
    return Checker(code=source.read_text(), language=language, protocol="kattis", flags=flags)


# -- scoring problems ------------------------------------------------------------


def _modern(config: dict[str, Any], directory: Path) -> bool:
    """The 2023-07 format or a later one (its own version, or a test_group.yaml)."""
    version = str(config.get("problem_format_version", "legacy"))
    return version != "legacy" or any((directory / "data").rglob("test_group.yaml"))


def _groups(directory: Path, tests: list[TestCase], *, modern: bool) -> list[TestGroup]:
    """A scoring problem's groups: each directory of ``data/secret`` is one (else
    ``secret`` is), configured by ``test_group.yaml`` (the 2023-07 and later
    formats: ``max_score``, ``score_aggregation``, ``require_pass``) or by the
    legacy ``testdata.yaml`` (``accept_score`` per case, ``grader_flags`` sum,
    avg or min). What neither describes is refused by name."""
    secret = directory / "data" / "secret"
    subdirectories = sorted(
        (d for d in secret.iterdir() if d.is_dir()), key=lambda d: _natural(Path(d.name))
    )
    top = _settings(secret, modern)
    groups: list[TestGroup] = []
    names = {case.name for case in tests}
    if not subdirectories:
        default = 100.0 if modern else None
        groups.append(_group(secret, "secret", top, modern, names, default, "sum"))
    else:
        if modern and top.get("score_aggregation", "sum") != "sum":
            raise _refused(secret, "a score_aggregation of secret over groups other than sum")
        for sub in subdirectories:
            settings = {**({} if modern else top), **_settings(sub, modern)}
            name = f"secret/{sub.name}"
            groups.append(_group(sub, name, settings, modern, names, None, "pass-fail"))
        if (
            modern
            and "max_score" in top
            and sum(g.points for g in groups) > _points(top["max_score"], secret)
        ):
            raise SpecError(
                f"{secret}: its groups' max_score add up to more than its own", field="problem"
            )
    required = {r for g in groups for r in g.requires}
    if "sample" in required:
        groups.insert(0, TestGroup(name="sample", points=0, cases=["sample/*"]))
    known = {g.name for g in groups}
    for group in groups:
        unknown = sorted(set(group.requires) - known)
        if unknown:
            raise SpecError(
                f"{directory / 'data'}: require_pass names {unknown[0]}, not a group",
                field="problem",
            )
    return groups


def _group(
    where: Path,
    name: str,
    settings: dict[str, Any],
    modern: bool,
    cases: set[str | None],
    default_points: float | None,
    default_aggregation: Aggregation,
) -> TestGroup:
    count = sum(1 for c in cases if c is not None and c.startswith(name + "/"))
    if count == 0:
        raise SpecError(f"{where}: a test data group with no test case", field="problem")
    if not modern:
        if str(settings.get("grading", "default")) != "default":
            raise _refused(where, "a custom grader (grading: custom)")
        if float(settings.get("reject_score", 0)) != 0:
            raise _refused(where, "a reject_score other than 0")
        flags = str(settings.get("grader_flags", "")).split()
        mode = next((f for f in reversed(flags) if f in ("sum", "avg", "min", "max")), "sum")
        if mode == "max":
            raise _refused(where, "grader_flags max (sum, avg and min are supported)")
        each = _points(settings.get("accept_score", 1), where)
        aggregation: Aggregation = "min" if mode == "min" else "sum"
        points = each * count if mode == "sum" else each
        return TestGroup(name=name, points=points, cases=[f"{name}/*"], aggregation=aggregation)
    aggregation_name = str(settings.get("score_aggregation", default_aggregation))
    if aggregation_name not in ("pass-fail", "sum", "min"):
        raise _refused(where, f"score_aggregation {aggregation_name}")
    if "max_score" not in settings and default_points is None:
        raise _refused(where, "a group without max_score (unbounded scores)")
    points = _points(settings.get("max_score", default_points), where)
    requires = settings.get("require_pass", [])
    requires = [requires] if isinstance(requires, str) else list(requires or [])
    return TestGroup(
        name=name,
        points=points,
        cases=[f"{name}/*"],
        requires=[str(r) for r in requires],
        aggregation=aggregation_name,
    )


def _settings(directory: Path, modern: bool) -> dict[str, Any]:
    return _table(directory / ("test_group.yaml" if modern else "testdata.yaml"))


def _points(value: object, where: Path) -> float:
    try:
        points = float(str(value))
    except ValueError:
        raise _refused(where, f"a score of {value!r} (unbounded)") from None
    if not 0 <= points <= 1e6:
        raise _refused(where, f"a score of {points:g}")
    return points


def _refused(where: Path, what: str) -> SpecError:
    return SpecError(
        f"{where}: not supported in a scoring problem: {what}", field="problem", value=str(where)
    )
