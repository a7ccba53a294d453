"""Problem packages read (sandbox/problem.py): pure file parsing, no job runs."""

from __future__ import annotations

import os
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


SCORING_CASES = {
    "sample/1": ("s\n", "s\n"),
    "secret/g1/1": ("a\n", "a\n"),
    "secret/g1/2": ("b\n", "b\n"),
    "secret/g2/1": ("c\n", "c\n"),
}


def _yaml(root: Path, path: str, text: str) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)


def test_a_scoring_package_in_the_current_format(tmp_path: Path):
    root = package(tmp_path, "type: scoring\n", SCORING_CASES)
    _yaml(root, "data/secret/g1/test_group.yaml", "max_score: 30\n")
    _yaml(
        root,
        "data/secret/g2/test_group.yaml",
        "max_score: 70\nscore_aggregation: sum\nrequire_pass: [sample, secret/g1]\n",
    )
    spec = problem.load(root).spec("x", "python")
    groups = {g.name: (g.points, g.aggregation, g.requires, g.cases) for g in spec.groups}
    assert groups == {
        "sample": (0, "pass-fail", [], ["sample/*"]),
        "secret/g1": (30, "pass-fail", [], ["secret/g1/*"]),
        "secret/g2": (70, "sum", ["sample", "secret/g1"], ["secret/g2/*"]),
    }


@pytest.mark.parametrize(
    ("version", "points"), [("legacy", 2), ("2023-07-draft", 100), ("2025-09", 100)]
)
def test_a_scoring_package_without_groups_is_secret(tmp_path: Path, version: str, points: int):
    cases = {"secret/1": ("a\n", "a\n"), "secret/2": ("b\n", "b\n")}
    yaml = f"type: scoring\nproblem_format_version: {version}\n"
    spec = problem.load(package(tmp_path, yaml, cases)).spec("x", "python")
    assert [(g.name, g.points, g.aggregation) for g in spec.groups] == [("secret", points, "sum")]


@pytest.mark.parametrize(
    ("flags", "points", "aggregation"),
    [("", 40, "sum"), ("sum", 40, "sum"), ("avg", 20, "sum"), ("min", 20, "min")],
)
def test_a_legacy_scoring_package(tmp_path: Path, flags: str, points: float, aggregation: str):
    root = package(tmp_path, "type: scoring\n", SCORING_CASES)
    _yaml(root, "data/secret/testdata.yaml", "accept_score: 5\n")  # inherited
    _yaml(root, "data/secret/g1/testdata.yaml", f"accept_score: 20\ngrader_flags: {flags}\n")
    spec = problem.load(root).spec("x", "python")
    assert [(g.name, g.points, g.aggregation) for g in spec.groups] == [
        ("secret/g1", points, aggregation),
        ("secret/g2", 5, "sum"),
    ]


@pytest.mark.parametrize(
    ("path", "text", "said"),
    [
        ("data/secret/g1/test_group.yaml", "score_aggregation: sum\n", "without max_score"),
        ("data/secret/g1/test_group.yaml", "max_score: unbounded\n", "unbounded"),
        ("data/secret/g1/test_group.yaml", "max_score: 1\nrequire_pass: g9\n", "names g9"),
        ("data/secret/test_group.yaml", "score_aggregation: min\n", "other than sum"),
        ("data/secret/g1/testdata.yaml", "grading: custom\n", "custom grader"),
        ("data/secret/g1/testdata.yaml", "reject_score: 1\n", "reject_score"),
        ("data/secret/g1/testdata.yaml", "grader_flags: max\n", "grader_flags max"),
    ],
)
def test_scoring_that_cannot_be_judged_is_refused_by_name(
    tmp_path: Path, path: str, text: str, said: str
):
    root = package(tmp_path, "type: scoring\n", SCORING_CASES)
    if path.endswith("test_group.yaml"):
        for group in ("g1", "g2"):
            _yaml(root, f"data/secret/{group}/test_group.yaml", "max_score: 10\n")
    _yaml(root, path, text)
    with pytest.raises(SpecError, match=said):
        problem.load(root)


def test_included_files_join_a_submission_in_their_language(tmp_path: Path):
    root = package(tmp_path, cases={"secret/1": ("\n", "\n")})
    _yaml(root, "include/cpp/grader.cpp", "int main() {}\n")
    _yaml(root, "include/python3/lib.py", "X = 1\n")
    loaded = problem.load(root)
    assert set(loaded.spec("x", "cpp").files) == {"grader.cpp"}
    assert set(loaded.spec("x", "python").files) == {"lib.py"}
    assert loaded.spec("x", "c").files == {}
    _yaml(root, "include/cpp/main.cpp", "int main() {}\n")
    with pytest.raises(SpecError, match=r"include/ holds main\.cpp"):
        problem.load(root).spec("x", "cpp")


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: (p / "data/secret/2.in").symlink_to("/etc/hostname"), "a symbolic link out"),
        (lambda p: (p / "data/secret/2.in").symlink_to(p / ".."), "a symbolic link out"),
        (lambda p: (p / "data/secret/x").symlink_to(p / "data"), "a symbolic link to a folder"),
        (lambda p: (p / "data/secret/2.in").symlink_to(p / "gone"), "a dangling link"),
        (lambda p: os.mkfifo(p / "data/secret/2.in"), "a FIFO"),
    ],
)
def test_a_hostile_package_is_refused_before_a_file_is_read(tmp_path: Path, make, said: str):
    root = package(tmp_path / "p", cases={"secret/1": ("1\n", "1\n")})
    (root / "data/secret/2.ans").write_text("2\n")
    make(root)
    with pytest.raises(SpecError, match=said):
        problem.load(root)


def test_a_link_inside_the_package_is_followed(tmp_path: Path):
    root = package(tmp_path / "p", cases={"secret/1": ("1\n", "1\n")})
    (root / "data/secret/2.in").symlink_to(root / "data/secret/1.in")
    (root / "data/secret/2.ans").symlink_to("1.ans")
    assert [t.stdin for t in problem.load(root).tests] == ["1\n", "1\n"]
