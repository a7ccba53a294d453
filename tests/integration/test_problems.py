"""Problem packages judged for real (Kattis / ICPC format, sandbox/problem.py): the default
validator's flags, a custom output validator with Kattis's exit codes, the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import problem
from sandbox.judging import Verdict, judge
from tests.unit.test_problem import package

pytestmark = [pytest.mark.root, pytest.mark.overlay]

SANDBOX = str(Path(sys.executable).with_name("sandbox"))
CASES = {
    "sample/1": ("1 2\n", "3\n"),
    "secret/small/1": ("5 5\n", "10\n"),
    "secret/big/1": ("1000000000 1000000000\n", "2000000000\n"),
}
A_PLUS_B = "a, b = map(int, input().split())\nprint(a + b)\n"


def _validator(root: Path, name: str, code: str) -> None:
    """The package's one output validator (or interactor), ``name`` holding ``code``."""
    (root / "output_validators/judge").mkdir(parents=True, exist_ok=True)
    (root / "output_validators/judge" / name).write_text(code)


async def test_a_package_is_judged_case_by_case_in_its_order(runtime, tmp_path: Path):
    root = package(tmp_path, "name: A+B\nlimits:\n  time_limit: 1\n  memory: 64\n", CASES)
    loaded = problem.load(root)
    result = await judge(loaded.spec(A_PLUS_B, "python"), runtime)
    assert result.status is Verdict.ACCEPTED, result
    assert [c.name for c in result.tests] == ["sample/1", "secret/big/1", "secret/small/1"]
    wrong = await judge(loaded.spec("print(3)\n", "python"), runtime)
    assert wrong.status is Verdict.WRONG_ANSWER
    assert wrong.tests[0].status is Verdict.ACCEPTED  # the sample's answer is 3
    slow = await judge(loaded.spec("while True:\n    pass\n", "python"), runtime)
    assert slow.status is Verdict.TIME_LIMIT
    assert 1 <= slow.tests[0].cpu_time < 2


@pytest.mark.parametrize(
    ("flags", "output", "verdict"),
    [
        ("", "YES 0.5\n", Verdict.ACCEPTED),  # case ignored by default
        ("case_sensitive", "YES 0.5\n", Verdict.WRONG_ANSWER),
        ("float_tolerance 1e-3", "yes 0.5004\n", Verdict.ACCEPTED),
        ("float_tolerance 1e-5", "yes 0.5004\n", Verdict.WRONG_ANSWER),
        ("space_change_sensitive", "yes  0.5\n", Verdict.WRONG_ANSWER),
    ],
)
async def test_the_default_validators_flags(runtime, tmp_path, flags, output, verdict):
    root = package(tmp_path, f"validator_flags: {flags}\n", {"secret/1": ("\n", "yes 0.5\n")})
    code = f"print({output.rstrip()!r})\n"
    result = await judge(problem.load(root).spec(code, "python"), runtime)
    assert result.status is verdict, result


VALIDATOR = """
import sys
given, answer, feedback = sys.argv[1], sys.argv[2], sys.argv[3]
a, b = map(int, open(given).read().split())
out = sys.stdin.read().split()
if out == [str(a + b)]:
    raise SystemExit(42)
with open(feedback + "judgemessage.txt", "w") as f:
    f.write(f"expected {a + b}, got {' '.join(out)[:20]} ({sys.argv[4:]})\\n")
raise SystemExit(43)
"""


async def test_a_custom_output_validator_judges_with_kattis_exit_codes(runtime, tmp_path: Path):
    root = package(tmp_path, "validation: custom\nvalidator_flags: strict\n", CASES)
    _validator(root, "validate.py", VALIDATOR)
    loaded = problem.load(root)
    accepted = await judge(loaded.spec(A_PLUS_B, "python"), runtime)
    assert accepted.status is Verdict.ACCEPTED, accepted
    wrong = await judge(loaded.spec("print(7)\n", "python"), runtime)
    assert wrong.status is Verdict.WRONG_ANSWER
    assert wrong.tests[0].message == "expected 3, got 7 (['strict'])"
    _validator(root, "validate.py", "raise SystemExit(1)\n")
    broken = await judge(problem.load(root).spec(A_PLUS_B, "python"), runtime)
    assert broken.status is Verdict.INTERNAL_ERROR  # neither 42 nor 43: the validator failed


def test_sandbox_judge_takes_a_problem_package(tmp_path: Path):
    root = package(tmp_path / "p", "limits:\n  time_limit: 2\n", CASES)
    solution = tmp_path / "sol.py"
    solution.write_text(A_PLUS_B)
    table = subprocess.run(
        [SANDBOX, "judge", "--problem", str(root), str(solution)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0, table.stderr
    assert "verdict: accepted" in table.stdout
    as_json = subprocess.run(
        [SANDBOX, "judge", "--problem", str(root), "--json", "--time", "5", str(solution)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(as_json.stdout)["status"] == "accepted"
    (root / "problem.yaml").write_text("type: scoring\n")
    scored = subprocess.run(
        [SANDBOX, "judge", "--problem", str(root), str(solution)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert scored.returncode == 0, scored.stderr
    assert "score: 2/2 (secret/big 1/1, secret/small 1/1)" in scored.stdout
    (root / "data/secret/testdata.yaml").write_text("grading: custom\n")
    refused = subprocess.run(
        [SANDBOX, "judge", "--problem", str(root), str(solution)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "not supported in a scoring problem: a custom grader" in refused.stderr


async def test_an_interactive_package_talks_through_its_interactor(runtime, tmp_path: Path):
    from tests.integration.test_interactive import BINARY_SEARCH, INTERACTOR

    root = package(tmp_path, "type: interactive\n", {"secret/1": ("777\n", "")})
    _validator(root, "interactor.py", INTERACTOR)
    loaded = problem.load(root)
    result = await judge(loaded.spec(BINARY_SEARCH, "python"), runtime)
    assert result.status is Verdict.ACCEPTED, result
    wrong = await judge(loaded.spec("print(1, flush=True)\n", "python"), runtime)
    assert wrong.status is Verdict.WRONG_ANSWER, wrong


# A validator that scores by how close the answer is: half marks for off by one.
SCORING_VALIDATOR = """
import sys
given, answer, feedback = sys.argv[1], sys.argv[2], sys.argv[3]
want, got = int(open(answer).read()), int(sys.stdin.read() or -999)
if abs(want - got) > 1:
    raise SystemExit(43)
if want != got:
    open(feedback + "score_multiplier.txt", "w").write("0.5\\n")
raise SystemExit(42)
"""


async def test_a_scoring_package_with_subtasks_and_partial_scores(runtime, tmp_path: Path):
    cases = {
        "sample/1": ("1 2\n", "3\n"),
        "secret/1-small/1": ("1 1\n", "2\n"),
        "secret/1-small/2": ("2 2\n", "4\n"),
        "secret/2-large/1": ("100 100\n", "200\n"),
        "secret/2-large/2": ("300 300\n", "600\n"),
    }
    root = package(tmp_path, "type: scoring\nproblem_format_version: 2025-09\n", cases)
    (root / "data/secret/1-small/test_group.yaml").write_text("max_score: 40\n")
    (root / "data/secret/2-large/test_group.yaml").write_text(
        "max_score: 60\nscore_aggregation: sum\nrequire_pass: sample\n"
    )
    _validator(root, "validate.py", SCORING_VALIDATOR)
    loaded = problem.load(root)
    full = await judge(loaded.spec(A_PLUS_B, "python"), runtime)
    assert (full.status, full.score, full.max_score) == (Verdict.ACCEPTED, 100, 100), full
    # Off by one on the large inputs: half of each large case's 30.
    close = "a, b = map(int, input().split())\nprint(a + b + (a > 50))\n"
    partial = await judge(loaded.spec(close, "python"), runtime)
    assert partial.score == 70, partial
    assert [c.partial for c in partial.tests] == [None, None, None, 0.5, 0.5]
    # Wrong on the sample: the large group, which requires it, scores nothing.
    wrong_sample = "a, b = map(int, input().split())\nprint(a + b + 5 * (a == 1 and b == 2))\n"
    blocked = await judge(loaded.spec(wrong_sample, "python"), runtime)
    assert {g.name: g.score for g in blocked.groups} == {
        "sample": 0,
        "secret/1-small": 40,
        "secret/2-large": 0,
    }
    assert blocked.groups[2].message == "requires sample, which did not pass"


async def test_a_validators_score_out_of_range_is_its_own_failure(runtime, tmp_path: Path):
    root = package(tmp_path, "type: scoring\n", {"secret/1": ("1 2\n", "3\n")})
    _validator(
        root,
        "validate.py",
        "import sys\nopen(sys.argv[3] + 'score.txt', 'w').write('7')\nraise SystemExit(42)\n",
    )
    result = await judge(problem.load(root).spec(A_PLUS_B, "python"), runtime)
    assert result.status is Verdict.INTERNAL_ERROR, result
    assert "its score '7' is out of range (score.txt: 0 to 1)" in (result.tests[0].message or "")


GRADER = """#include <cstdio>
long long add(long long a, long long b);
int main() { long long a, b; std::scanf("%lld %lld", &a, &b); std::printf("%lld\\n", add(a, b)); }
"""


async def test_a_packages_included_grader_is_compiled_with_the_submission(runtime, tmp_path):
    root = package(tmp_path, "", CASES)
    (root / "include/cpp").mkdir(parents=True)
    (root / "include/cpp/grader.cpp").write_text(GRADER)
    solution = "long long add(long long a, long long b) { return a + b; }\n"
    result = await judge(problem.load(root).spec(solution, "cpp"), runtime)
    assert result.status is Verdict.ACCEPTED, result
