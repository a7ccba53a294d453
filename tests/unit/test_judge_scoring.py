"""Scoring by groups (IOI subtasks): sandbox.judging.score, pure, over made-up results."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sandbox.judging import CaseResult, JudgeResult, JudgeSpec, TestCase, Verdict, score

NAMES = ["sample/1", "secret/g1/1", "secret/g1/2", "secret/g2/1", "secret/g3/1"]
GROUPS: list[dict[str, Any]] = [
    {"name": "samples", "points": 0, "cases": ["sample/*"]},
    {"name": "small", "points": 30, "cases": ["secret/g1/*"]},
    {"name": "medium", "points": 30, "cases": ["secret/g2/1"], "requires": ["small"]},
    {"name": "large", "points": 40, "cases": ["secret/g3/*"], "requires": ["medium"]},
]


def _spec(groups: list[dict[str, Any]] = GROUPS) -> JudgeSpec:
    tests = [TestCase(name=n, stdin="", expected="") for n in NAMES]
    return JudgeSpec(code="x", tests=tests, groups=groups)


def _result(
    failing: dict[str, Verdict] | None = None, status: Verdict | None = None
) -> JudgeResult:
    failing = failing or {}
    cases = [CaseResult(name=n, status=failing.get(n, Verdict.ACCEPTED)) for n in NAMES]
    worst = next(iter(failing.values()), Verdict.ACCEPTED)
    if status is Verdict.COMPILE_ERROR:
        return JudgeResult(status=status)
    return JudgeResult(status=worst, tests=cases)


def _scores(result: JudgeResult) -> dict[str, float]:
    return {g.name: g.score for g in result.groups}


def test_all_accepted_scores_every_group():
    scored = score(_spec(), _result())
    assert _scores(scored) == {"samples": 0, "small": 30, "medium": 30, "large": 40}
    assert (scored.score, scored.max_score) == (100, 100)


def test_a_failed_case_zeroes_its_group_and_says_which():
    scored = score(_spec(), _result({"secret/g3/1": Verdict.TIME_LIMIT}))
    assert _scores(scored)["large"] == 0
    large = scored.groups[-1]
    assert large.status is Verdict.TIME_LIMIT
    assert large.message == "case secret/g3/1: time_limit"
    assert scored.score == 60


def test_a_group_scores_only_if_what_it_requires_does():
    scored = score(_spec(), _result({"secret/g1/2": Verdict.WRONG_ANSWER}))
    assert _scores(scored) == {"samples": 0, "small": 0, "medium": 0, "large": 0}
    medium = scored.groups[2]
    assert medium.message == "requires small, which did not pass"
    assert medium.status is Verdict.WRONG_ANSWER


def test_a_group_may_require_one_worth_no_points():
    groups = [*GROUPS[:1], {**GROUPS[1], "requires": ["samples"]}]
    assert _scores(score(_spec(groups), _result())) == {"samples": 0, "small": 30}
    failed = score(_spec(groups), _result({"sample/1": Verdict.WRONG_ANSWER}))
    assert _scores(failed) == {"samples": 0, "small": 0}


def _partial(partials: dict[str, float | None], failing: dict[str, Verdict]) -> JudgeResult:
    cases = [
        CaseResult(name=n, status=failing.get(n, Verdict.ACCEPTED), partial=partials.get(n))
        for n in NAMES
    ]
    return JudgeResult(status=next(iter(failing.values()), Verdict.ACCEPTED), tests=cases)


@pytest.mark.parametrize(
    ("aggregation", "partials", "failing", "points"),
    [
        ("sum", {}, {}, 30),
        ("sum", {}, {"secret/g1/2": Verdict.TIME_LIMIT}, 15),  # each case is worth 30 / 2
        ("sum", {"secret/g1/1": 0.5}, {}, 22.5),
        ("sum", {"secret/g1/1": 0.5}, {"secret/g1/1": Verdict.WRONG_ANSWER}, 22.5),  # testlib
        ("min", {"secret/g1/1": 0.5}, {}, 15),  # each case is worth 30: the least counts
        ("min", {}, {"secret/g1/2": Verdict.WRONG_ANSWER}, 0),
        ("pass-fail", {"secret/g1/1": 0.5}, {}, 30),  # partial scores count only in sum, min
        ("pass-fail", {"secret/g1/1": 0.5}, {"secret/g1/1": Verdict.WRONG_ANSWER}, 0),
    ],
)
def test_a_groups_aggregation_of_its_cases_scores(
    aggregation: str, partials: dict[str, float | None], failing: dict[str, Verdict], points: float
):
    groups = [{"name": "small", "points": 30, "cases": ["secret/g1/*"], "aggregation": aggregation}]
    scored = score(_spec(groups), _partial(partials, failing))
    assert scored.score == pytest.approx(points)
    assert scored.groups[0].status is next(iter(failing.values()), Verdict.ACCEPTED)


def test_a_compile_error_scores_nothing():
    scored = score(_spec(), _result(status=Verdict.COMPILE_ERROR))
    assert scored.score == 0
    assert {g.status for g in scored.groups} == {Verdict.COMPILE_ERROR}


@pytest.mark.parametrize(
    ("groups", "said"),
    [
        ([{"name": "a", "points": 1, "cases": ["x/*"]}], "a names no test case"),
        (
            [{"name": "a", "points": 1, "cases": ["sample/1"]}] * 2,
            "two groups have the same name",
        ),
        (
            [{"name": "a", "points": 1, "cases": ["sample/1"], "requires": ["b"]}],
            "a requires 'b', not another group",
        ),
        (
            [
                {"name": "a", "points": 1, "cases": ["sample/1"], "requires": ["b"]},
                {"name": "b", "points": 1, "cases": ["sample/1"], "requires": ["a"]},
            ],
            "a -> b -> a requires itself",
        ),
    ],
)
def test_groups_that_cannot_be_scored_are_refused(groups: list[dict[str, Any]], said: str):
    with pytest.raises(ValidationError, match=said):
        _spec(groups)
