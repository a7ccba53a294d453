"""Judge0 CE's vocabulary: its status ids, its language ids, and our results in its terms.

Pure functions and data, unit-tested apart (tests/unit/test_api_judge0.py):

- :data:`STATUSES`: Judge0's fourteen statuses, ids 1-14, as its clients
  hard-code them.
- :data:`LANGUAGE_IDS`: our language names -> the Judge0 CE ids that mean
  the same language (the first is the one Judge0 CE 1.13 lists; the others
  are its other versions of that language, accepted so that clients'
  hard-coded ids keep working), and the name shown.
- :func:`outcome`: a ``sandbox.judge`` result (JudgeResult as a dict) and
  the submission's limits -> Judge0's status and response fields.

Where our statuses say more than Judge0's, the mapping is lossy
(docs/api.md): a memory limit is Judge0's "Runtime Error (Other)" (isolate
reports an OOM kill as SIGKILL), with our ``oom_killed`` beside it; an
output limit is "Runtime Error (SIGXFSZ)" (isolate's file size limit); a job
an operator killed is "Internal Error".
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LANGUAGE_IDS",
    "STATUSES",
    "Outcome",
    "Status",
    "language_ids",
    "outcome",
    "same_output",
]


@dataclass(frozen=True)
class Status:
    """One of Judge0's statuses."""

    id: int
    description: str


IN_QUEUE = Status(1, "In Queue")
PROCESSING = Status(2, "Processing")
ACCEPTED = Status(3, "Accepted")
WRONG_ANSWER = Status(4, "Wrong Answer")
TIME_LIMIT = Status(5, "Time Limit Exceeded")
COMPILATION_ERROR = Status(6, "Compilation Error")
SIGSEGV = Status(7, "Runtime Error (SIGSEGV)")
SIGXFSZ = Status(8, "Runtime Error (SIGXFSZ)")
SIGFPE = Status(9, "Runtime Error (SIGFPE)")
SIGABRT = Status(10, "Runtime Error (SIGABRT)")
NZEC = Status(11, "Runtime Error (NZEC)")
OTHER = Status(12, "Runtime Error (Other)")
INTERNAL_ERROR = Status(13, "Internal Error")
EXEC_FORMAT_ERROR = Status(14, "Exec Format Error")

STATUSES: tuple[Status, ...] = (
    IN_QUEUE, PROCESSING, ACCEPTED, WRONG_ANSWER, TIME_LIMIT, COMPILATION_ERROR, SIGSEGV,
    SIGXFSZ, SIGFPE, SIGABRT, NZEC, OTHER, INTERNAL_ERROR, EXEC_FORMAT_ERROR,
)  # fmt: skip

# A runtime error by the signal that ended the program, as Judge0 names them.
_BY_SIGNAL = {
    signal.SIGSEGV: SIGSEGV,
    signal.SIGXFSZ: SIGXFSZ,
    signal.SIGFPE: SIGFPE,
    signal.SIGABRT: SIGABRT,
}

# Our language -> (Judge0 CE ids, the first listed first; the name shown).
# Ids from Judge0 CE 1.13's language table (db/languages/active.rb) and the
# later CE releases' (91 Java 17, 92 Python 3.11, 93 Node.js 18, 95 Go 1.18);
# the versions in the names are Debian 12's, what scripts/install installs.
# PyPy is not a Judge0 CE language: ids from 1000 on are ours.
LANGUAGE_IDS: dict[str, tuple[tuple[int, ...], str]] = {
    "bash": ((46,), "Bash (5.2.15)"),
    "sh": ((1002,), "POSIX sh (dash 0.5.12)"),
    "c": ((50, 48, 49), "C (GCC 12.2.0)"),
    "csharp": ((51,), "C# (Mono 6.8.0.105)"),
    "cpp": ((54, 52, 53), "C++ (GCC 12.2.0)"),
    "go": ((60, 95), "Go (1.19.8)"),
    "java": ((62, 91), "Java (OpenJDK 17)"),
    "javascript": ((63, 93), "JavaScript (Node.js 20)"),
    "php": ((68,), "PHP (8.2)"),
    "python": ((71, 92), "Python (3.11.2)"),
    "ruby": ((72,), "Ruby (3.1.2)"),
    "rust": ((73,), "Rust (1.63.0)"),
    "kotlin": ((78,), "Kotlin (1.3)"),
    "multifile": ((89,), "Multi-file program"),
    "pypy": ((1001,), "Python (PyPy 7.3.11, 3.9)"),
}


def language_ids(
    known: dict[str, str], extra: dict[str, int] | None = None
) -> dict[int, tuple[str, str]]:
    """Judge0 id -> (our language, its name), for the languages this process knows.

    Args:
        known: our language name -> its name as shown (for a deployer's language
            that :data:`LANGUAGE_IDS` lacks, its own name).
        extra: the deployer's language -> id (``SANDBOX_API_LANGUAGE_IDS``), which
            replaces the shipped ids of that language.
    """
    table: dict[int, tuple[str, str]] = {}
    extra = extra or {}
    for name in sorted(known):
        ids: tuple[int, ...]
        if name in extra:
            ids, shown = (extra[name],), LANGUAGE_IDS.get(name, ((), known[name]))[1]
        elif name in LANGUAGE_IDS:
            ids, shown = LANGUAGE_IDS[name]
        else:
            continue  # a deployer's language without an id: not offered
        for number in ids:
            table.setdefault(number, (name, shown))
    return table


def same_output(stdout: str | None, expected: str) -> bool:
    """Judge0's comparison: each line's trailing whitespace and trailing lines ignored."""

    def strip(text: str) -> str:
        return "\n".join(line.rstrip() for line in text.split("\n")).rstrip()

    return strip(stdout or "") == strip(expected)


@dataclass(frozen=True)
class Outcome:
    """A finished submission in Judge0's terms, and what we know beyond them."""

    status: Status
    stdout: str | None = None
    stderr: str | None = None
    compile_output: str | None = None
    message: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    time: float | None = None
    wall_time: float | None = None
    memory: int | None = None  # KB
    # Ours, beside Judge0's (its clients ignore fields they do not know).
    verdict: str | None = None  # sandbox.judge's verdict
    oom_killed: bool = False
    memory_peak: int | None = None  # bytes


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def outcome(
    result: dict[str, Any],
    *,
    expected_output: str | None,
    cpu_time_limit: float,
    wall_time_limit: float,
    redirect_stderr_to_stdout: bool = False,
    syntax_check_only: bool = False,
) -> Outcome:
    """Judge0's status and fields of a ``sandbox.judge`` result.

    The submission ran as one test case per run (``number_of_runs``), in
    order, stopping at the first not accepted; ``expected`` was not sent (the
    output is compared here, as Judge0 compares it), so a case is accepted
    whenever the program exited 0 within its limits.

    Args:
        result: the JudgeResult, as a dict.
        expected_output: the submission's, or None (any output is accepted).
        cpu_time_limit: Judge0's limit: the program ran with the extra time
            on top (``cpu_extra_time``) and is too slow if it used more than this.
        wall_time_limit: likewise, seconds of wall-clock time.
        redirect_stderr_to_stdout: stderr follows stdout (not interleaved).
        syntax_check_only: the language's compile step is a syntax check
            (Python, shell): a failure is Judge0's runtime error (NZEC), as
            Judge0 has no compile step for those languages.
    """
    verdict = str(result.get("status"))
    compiled = result.get("compile") or {}
    compile_output = _text("".join(filter(None, (compiled.get("stdout"), compiled.get("stderr")))))
    if verdict == "compile_error":
        if syntax_check_only:
            return Outcome(
                NZEC,
                stderr=compile_output,
                message=f"Exited with error status {compiled.get('exit_code') or 1}",
                exit_code=compiled.get("exit_code") or 1,
                time=compiled.get("cpu_time"),
                wall_time=compiled.get("wall_time"),
                memory=int(compiled.get("memory_peak") or 0) // 1024,
                verdict=verdict,
                memory_peak=compiled.get("memory_peak"),
            )
        return Outcome(
            COMPILATION_ERROR,
            compile_output=compile_output,
            message=compiled.get("message"),
            exit_code=compiled.get("exit_code"),
            verdict=verdict,
        )
    runs = [c for c in result.get("tests") or [] if c.get("status") != "skipped"]
    if verdict == "internal_error" or not runs:
        message = result.get("error") or compiled.get("message") or "internal error"
        return Outcome(INTERNAL_ERROR, message=str(message), verdict="internal_error")
    last = next((c for c in runs if c.get("status") != "accepted"), runs[-1])
    stdout, stderr = _text(last.get("stdout")), _text(last.get("stderr"))
    if redirect_stderr_to_stdout:
        stdout, stderr = _text((stdout or "") + (stderr or "")), None
    cpu_time = sum(float(c.get("cpu_time") or 0) for c in runs) / len(runs)
    wall_time = sum(float(c.get("wall_time") or 0) for c in runs) / len(runs)
    peak = int(sum(int(c.get("memory_peak") or 0) for c in runs) / len(runs))
    case = str(last.get("status"))
    sig = last.get("signal")
    exit_code = last.get("exit_code")
    status, message = ACCEPTED, None
    if case == "time_limit" or float(last.get("cpu_time") or 0) > cpu_time_limit:
        status, message = TIME_LIMIT, "Time limit exceeded"
    elif float(last.get("wall_time") or 0) > wall_time_limit:
        status, message = TIME_LIMIT, "Time limit exceeded (wall clock)"
    elif case == "memory_limit":
        status, message = OTHER, "Memory limit exceeded (killed by the OOM killer)"
    elif case == "output_limit":
        status, message = SIGXFSZ, "Output limit exceeded"
    elif case == "runtime_error" and sig:
        status = _BY_SIGNAL.get(sig, OTHER)
        message = f"Caught fatal signal {sig}"
    elif case == "runtime_error":
        status, message = NZEC, f"Exited with error status {exit_code}"
    elif case == "internal_error":
        status, message = INTERNAL_ERROR, last.get("message") or "internal error"
    elif expected_output is not None and not same_output(stdout, expected_output):
        status = WRONG_ANSWER
    return Outcome(
        status,
        stdout=stdout,
        stderr=stderr,
        compile_output=compile_output,
        message=message,
        exit_code=exit_code if exit_code is not None else (None if sig else 0),
        exit_signal=sig,
        time=round(cpu_time, 3),
        wall_time=round(wall_time, 3),
        memory=peak // 1024,
        verdict=case,
        oom_killed=case == "memory_limit",
        memory_peak=peak,
    )
