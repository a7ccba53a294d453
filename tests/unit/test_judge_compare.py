"""Judge mode's pure parts: comparisons, and the spec's validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sandbox.judging import JudgeSpec, TestCase, compare


@pytest.mark.parametrize(
    ("output", "expected", "how", "ok"),
    [
        ("3\n", "3\n", "exact", True),
        ("3", "3\n", "exact", False),
        ("3  \n\n", "3\n", "lines", True),
        ("1 2\n3\n", "1 2\n3", "lines", True),
        ("1  2\n", "1 2\n", "lines", False),  # inner whitespace counts
        ("1\n2\n", "1\n", "lines", False),
        ("1  2\n\n3", "1 2 3\n", "tokens", True),
        ("1 2", "1 2 3", "tokens", False),
        ("0.3333333", "0.33333333", "float", True),
        ("1000000.5", "1000000.0", "float", True),  # relative above 1
        ("0.34", "0.33", "float", False),
        ("nan", "nan", "float", True),
        ("yes 1.0", "YES 1.0", "float", False),
        ("inf", "inf", "float", True),
    ],
)
def test_comparisons(output: str, expected: str, how: str, ok: bool):
    assert compare(output, expected, how, 1e-6)[0] is ok  # type: ignore[arg-type]


def test_messages_say_where():
    assert compare("1\n5\n", "1\n6\n", "lines") == (False, "line 2: expected '6', got '5'")
    assert compare("1 5", "1 6", "tokens") == (False, "token 2: expected '6', got '5'")
    assert compare("1", "1 2", "tokens") == (False, "expected 2 tokens, got 1")
    assert compare("abc", "abd", "exact") == (False, "differs at byte 2")
    long = compare("x" * 100, "y", "tokens")[1]
    assert long is not None
    assert len(long) < 120


def test_a_spec_needs_tests_and_a_known_language():
    with pytest.raises(ValidationError, match="tests"):
        JudgeSpec(code="", tests=[])
    with pytest.raises(ValidationError, match="unknown language 'cobol'"):
        JudgeSpec(code="", language="cobol", tests=[TestCase()])
    with pytest.raises(ValidationError, match="compare"):
        JudgeSpec(code="", tests=[TestCase()], compare="fuzzy")
    spec = JudgeSpec.model_validate(
        {"code": "x", "tests": [{"stdin": "1 2\n", "expected": "3\n"}], "limits": {"memory": "64M"}}
    )
    assert spec.tests[0].expected == "3\n"
    assert JudgeSpec.model_validate_json(spec.model_dump_json()) == spec


def test_a_submission_too_big_or_too_long_is_refused_on_the_client():
    from worker.judge import judge_budget, submission_size
    from worker.tasks import JudgeTask

    spec = JudgeSpec(code="x" * 10, tests=[TestCase(stdin="1" * 5, expected="2" * 3)] * 4)
    assert submission_size(spec) == 10 + 4 * 8
    # Python's syntax check (default limits: 10 s wall), then four cases of 10 s each.
    assert judge_budget(spec) == 10.0 + 4 * 10.0
    big = JudgeSpec(code="x", tests=[TestCase(stdin="y" * 2**20)] * 300)
    with pytest.raises(ValueError, match="SANDBOX_MAX_SUBMISSION"):
        JudgeTask().check(big)
