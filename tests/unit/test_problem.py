"""Problem packages read (sandbox/problem.py): pure file parsing, no job runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import problem
from sandbox.errors import SpecError


def package(root: Path, yaml: str = "", cases: dict[str, tuple[str, str]] | None = None) -> Path:
    """A package in ``root``: problem.yaml and data/<path>.in/.ans."""
    root.mkdir(parents=True, exist_ok=True)
    if yaml:
        (root / "problem.yaml").write_text(yaml)
    for name, (given, answer) in (cases or {"sample/1": ("1 2\n", "3\n")}).items():
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".in").write_text(given)
        path.with_suffix(".ans").write_text(answer)
    return root


def test_cases_are_samples_then_secret_groups_in_natural_order(tmp_path: Path):
    names = ["secret/group2/1", "secret/group1/10", "sample/2", "secret/group1/2", "sample/1"]
    loaded = problem.load(package(tmp_path, cases=dict.fromkeys(names, ("x\n", "y\n"))))
    assert [t.name for t in loaded.tests] == [
        "sample/1",
        "sample/2",
        "secret/group1/2",
        "secret/group1/10",
        "secret/group2/1",
    ]


def test_limits_from_problem_yaml(tmp_path: Path):
    yaml = "name: A plus B\nlimits:\n  time_limit: 1.5\n  memory: 64\n  output: 2\n"
    loaded = problem.load(package(tmp_path, yaml))
    assert loaded.name == "A plus B"
    assert loaded.limits == {
        "cpu_time": 1.5,
        "wall_time": 3.0,
        "memory": 64 * 2**20,
        "output": 2 * 2**20,
    }


def test_time_limit_from_timelimit_or_domjudge_ini(tmp_path: Path):
    (package(tmp_path / "a") / ".timelimit").write_text("2\n")
    assert problem.load(tmp_path / "a").time_limit == 2
    (package(tmp_path / "b") / "domjudge-problem.ini").write_text("timelimit='3'\n")
    assert problem.load(tmp_path / "b").time_limit == 3
    assert problem.load(package(tmp_path / "c")).time_limit is None


@pytest.mark.parametrize(
    ("flags", "compare", "case_sensitive", "tolerance"),
    [
        ("", "tokens", False, 1e-6),
        ("case_sensitive", "tokens", True, 1e-6),
        ("space_change_sensitive", "exact", False, 1e-6),
        ("float_tolerance 1e-4", "float", False, 1e-4),
        ("case_sensitive float_relative_tolerance 0.01", "float", True, 0.01),
    ],
)
def test_the_default_validators_flags(tmp_path, flags, compare, case_sensitive, tolerance):
    loaded = problem.load(package(tmp_path, f"validator_flags: {flags}\n"))
    assert (loaded.compare, loaded.case_sensitive) == (compare, case_sensitive)
    assert loaded.float_tolerance == pytest.approx(tolerance)
    assert loaded.checker is None


def test_a_custom_output_validator(tmp_path: Path):
    root = package(tmp_path, "validation: custom\nvalidator_flags: strict\n")
    (root / "output_validators/check").mkdir(parents=True)
    (root / "output_validators/check/validate.py").write_text("raise SystemExit(42)\n")
    checker = problem.load(root).checker
    assert checker is not None
    assert (checker.protocol, checker.language, checker.flags) == ("kattis", "python", ("strict",))


@pytest.mark.parametrize(
    ("yaml", "said"),
    [
        ("type: interactive\n", "an interactive problem needs its interactor"),
        ("type: scoring\n", "scoring problems are not supported yet"),
        ("validation: custom score\n", "scoring problems are not supported yet"),
        ("validator_flags: float_tolerance\n", "float_tolerance wants a number"),
        ("limits:\n  time_limit: fast\n", "is not a number"),
        ("limits:\n  memory: lots\n", "limits.memory 'lots' is not a number of MiB"),
        ("[1, 2]\n", "not a table of settings"),
    ],
)
def test_what_cannot_be_judged_is_refused_by_name(tmp_path: Path, yaml: str, said: str):
    with pytest.raises(SpecError, match=said):
        problem.load(package(tmp_path, yaml))


def test_a_case_without_its_answer_or_no_case_at_all(tmp_path: Path):
    root = package(tmp_path / "a")
    (root / "data/secret").mkdir()
    (root / "data/secret/5.in").write_text("1\n")
    with pytest.raises(SpecError, match=r"5.in: no 5.ans beside it"):
        problem.load(root)
    empty = tmp_path / "b"
    (empty / "data").mkdir(parents=True)
    with pytest.raises(SpecError, match="no test cases"):
        problem.load(empty)
    with pytest.raises(SpecError, match="no such problem directory"):
        problem.load(tmp_path / "none")


def test_a_validator_of_several_files_is_refused(tmp_path: Path):
    root = package(tmp_path, "validation: custom\n")
    (root / "output_validators/check").mkdir(parents=True)
    (root / "output_validators/check/validate.cpp").write_text("")
    (root / "output_validators/check/validate.h").write_text("")
    with pytest.raises(SpecError, match="of 2 files is not supported yet"):
        problem.load(root)


def test_the_spec_takes_the_packages_limits_under_the_callers(tmp_path: Path):
    loaded = problem.load(package(tmp_path, "limits:\n  time_limit: 1\n  memory: 64\n"))
    spec = loaded.spec("print(3)", "python", limits={"memory": "128M"})
    assert spec.limits.cpu_time == 1
    assert spec.limits.memory == 128 * 2**20
    assert spec.compare == "tokens"
    assert not spec.case_sensitive


def test_an_interactive_packages_validator_is_its_interactor(tmp_path: Path):
    root = package(tmp_path, "validation: custom interactive\n")
    (root / "output_validators/talk").mkdir(parents=True)
    (root / "output_validators/talk/interactor.py").write_text("raise SystemExit(42)\n")
    loaded = problem.load(root)
    assert loaded.checker is None
    assert loaded.interactor is not None
    assert loaded.interactor.protocol == "kattis"
    assert loaded.spec("x", "python").interactor == loaded.interactor
