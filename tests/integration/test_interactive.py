"""Interactive problems for real: the submission and its interactor, each in its own
sandbox, talking through pipes (sandbox/judging.py, Runtime.execute's stdio).

The interactor of a guessing game reads the secret from its own input.txt (the
submission never sees it) and answers each guess with <, > or =."""

from __future__ import annotations

import pytest

from sandbox.judging import Checker, JudgeSpec, TestCase, Verdict, judge

pytestmark = [pytest.mark.root, pytest.mark.overlay]

INTERACTOR = """
import sys
secret = int(open(sys.argv[1]).read())
def say(verdict, message):
    open(sys.argv[3] + "judgemessage.txt", "w").write(message + "\\n")
    raise SystemExit(verdict)
for guesses in range(1, 21):
    line = sys.stdin.readline()
    if not line:
        say(43, "no guess")
    try:
        guess = int(line)
    except ValueError:
        say(43, f"not a number: {line[:20]!r}")
    try:
        print("=" if guess == secret else "<" if secret < guess else ">", flush=True)
    except BrokenPipeError:
        sys.stdout = None  # nothing left to flush at exit
        say(43, "the submission stopped reading")
    if guess == secret:
        say(42, f"found in {guesses}")
say(43, "too many guesses")
"""

BINARY_SEARCH = """
low, high = 1, 1000
while True:
    guess = (low + high) // 2
    print(guess, flush=True)
    answer = input()
    if answer == "=":
        break
    if answer == "<":
        high = guess - 1
    else:
        low = guess + 1
"""

CASES = [TestCase(stdin="1\n", name="one"), TestCase(stdin="777\n", name="seven")]


def _spec(code: str, interactor: str = INTERACTOR, protocol: str = "kattis") -> JudgeSpec:
    return JudgeSpec.model_validate(
        {
            "code": code,
            "tests": CASES,
            "limits": {"cpu_time": 2, "wall_time": 3},
            "interactor": {"code": interactor, "protocol": protocol},
        }
    )


async def test_a_guessing_game_is_accepted(runtime):
    result = await judge(_spec(BINARY_SEARCH), runtime)
    assert result.status is Verdict.ACCEPTED, result
    assert [c.message for c in result.tests] == ["found in 9", "found in 8"]
    assert all(0 < c.cpu_time < 1 for c in result.tests)  # the submission's own, not both


async def test_a_wrong_guesser_is_wrong(runtime):
    result = await judge(
        _spec("for g in range(500, 521):\n    print(g, flush=True)\n    input()\n"), runtime
    )
    assert result.status is Verdict.WRONG_ANSWER, result
    assert result.tests[0].message == "too many guesses"


async def test_a_submission_that_never_reads_times_out(runtime):
    """It waits forever (so does the interactor, for its guess): the wall limit ends it."""
    result = await judge(_spec("import time\ntime.sleep(60)\n"), runtime)
    assert result.status is Verdict.TIME_LIMIT, result
    assert 3 <= result.tests[0].wall_time < 10


async def test_a_submission_that_floods_the_pipe_is_wrong_not_crashed(runtime):
    result = await judge(_spec("while True:\n    print('x' * 4096)\n"), runtime)
    assert result.status is Verdict.WRONG_ANSWER, result  # the interactor's word, then EPIPE
    assert str(result.tests[0].message).startswith("not a number")


async def test_an_interactor_that_crashes_is_an_internal_error(runtime):
    result = await judge(_spec(BINARY_SEARCH, interactor="raise SystemExit(1)\n"), runtime)
    assert result.status is Verdict.INTERNAL_ERROR, result
    assert str(result.tests[0].message).startswith("interactor failed")


async def test_a_testlib_interactor(runtime):
    testlib = INTERACTOR.replace("say(42,", "say(0,").replace("say(43,", "say(1,")
    testlib = testlib.replace("sys.argv[3] + ", "'./' + ")
    result = await judge(_spec(BINARY_SEARCH, testlib, "testlib"), runtime)
    assert result.status is Verdict.ACCEPTED, result
    wrong = await judge(_spec("print(5, flush=True)\n", testlib, "testlib"), runtime)
    assert wrong.status is Verdict.WRONG_ANSWER, wrong


async def test_an_interactor_killed_by_sigpipe_says_the_submission_stopped_reading(runtime):
    """A C interactor writing to a submission that exited dies of SIGPIPE: wrong answer."""
    interactor = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
        "time.sleep(0.5)\n"
        "while True:\n"
        "    os.write(1, b'x' * 65536)\n"
    )
    result = await judge(_spec("pass\n", interactor), runtime)
    assert result.status is Verdict.WRONG_ANSWER, result
    assert result.tests[0].message == "the submission stopped reading"


def test_an_interactor_and_a_checker_are_one_too_many():
    with pytest.raises(ValueError, match="the interactor gives the verdict"):
        JudgeSpec.model_validate(
            {
                "code": "x",
                "tests": CASES,
                "interactor": Checker(code="x"),
                "checker": Checker(code="x"),
            }
        )
