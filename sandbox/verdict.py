"""How a job ended, decided once: the precedence of the statuses.

:func:`decide_status` is pure: it takes what the supervisor saw (plain
values: who killed the job and why, the cgroup's counters, the main
process's exit) and returns one :class:`~sandbox.result.Status`. The runner
calls it (``Runtime._result``); the unit tests try every combination of its
inputs. The order, first match wins:

1. ``killed``: an operator asked for the kill (``sandbox kill``). Their word
   stands above whatever the job did, as the kill itself ends the job in any
   state; the client learns that the job was ended from outside, not failed.
2. ``memory_limit``: the job's memory cgroup OOM-killed a process (and, on
   v1, the supervisor ended the rest of it: :data:`MEMORY`), unless the job
   then exited normally, with status 0. A job at its memory cap needed more
   memory than it may have, and what follows is a consequence, not a cause:
   reclaim thrashing at the cap burns CPU and wall-clock time until a time
   limit ends it (a false ``timeout`` says "too slow"); a parent whose child
   died fails, or prints errors. So memory comes before output and time. A
   job that copes with the loss of a process (its main process exits 0
   afterwards) gets the status of the rest of its run: ``ok``, or a time
   limit its CPU counter reached.
3. ``output_limit``: the supervisor killed it for printing more than
   ``limits.output`` on a stream (:data:`OUTPUT`, docs/adr/0003).
4. ``timeout``: the supervisor killed it at the wall-clock or CPU-time limit
   (:data:`WALL_TIME`, :data:`CPU_TIME`), or its CPU counter reached the
   limit although it exited first (it raced our kill, or the per-process
   RLIMIT_CPU backstop ended it).
5. ``ok`` if the main process exited with 0; otherwise ``runtime_error``: a
   non-zero exit, a signal of its own, or no exit status at all (killed in
   cleanup after its grace period).

Not in the order: a fork refused at ``limits.pids`` (``pids_limit_hit``) is
an error the program sees (EAGAIN) and may handle, not a kill; the job's
status is what became of it (a fork bomb ends at its time limit, a program
that handles the refusal exits as it chooses), and the flag says it hit the
cap. A signal number adds nothing either: a job killed by a signal of its own
is a runtime error, and the signals of our kills come with their reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.result import Status

if TYPE_CHECKING:
    from sandbox.result import JobResult

__all__ = [
    "CPU_TIME",
    "MEMORY",
    "OUTCOMES",
    "OUTPUT",
    "WALL_TIME",
    "Outcome",
    "decide_status",
    "time_limit_hit",
]


@dataclass(frozen=True)
class Outcome:
    """What a status means beyond the job: its one home, besides its place in the order."""

    # The judge's verdict for a case that ended so (sandbox.judging.Verdict's
    # value); None: the job exited 0, its output is judged.
    verdict: str | None
    # What `sandbox run` (and a judge's case message) says of it, formatted
    # with the result's fields; empty: nothing.
    message: str = ""

    def describe(self, result: JobResult) -> str:
        """The message, with the result's figures in it."""
        if not self.message:
            return ""
        return self.message.format(**{k: "" if v is None else v for k, v in dict(result).items()})


# Every Status, once (tests/unit/test_verdict.py checks that none is missing).
OUTCOMES: dict[Status, Outcome] = {
    Status.OK: Outcome(None),
    Status.RUNTIME_ERROR: Outcome("runtime_error"),
    Status.TIMEOUT: Outcome(
        "time_limit", "time limit exceeded (wall {wall_time:.2f} s, cpu {cpu_time:.2f} s)"
    ),
    Status.MEMORY_LIMIT: Outcome(
        "memory_limit", "memory limit exceeded (peak {memory_peak} bytes)"
    ),
    Status.OUTPUT_LIMIT: Outcome("output_limit", "output limit exceeded; output truncated"),
    # By an operator: the submission is not at fault.
    Status.KILLED: Outcome("internal_error", "killed by an operator"),
    Status.INTERNAL_ERROR: Outcome("internal_error", "{error}"),
}

# Reasons the supervisor gives Container.kill() that decide a status (others,
# such as "setup", "cancelled" or "cleanup", say the sandbox ended the job).
MEMORY = "memory"  # the memory cgroup's first OOM kill (v1: the kernel kills one process)
OUTPUT = "output"  # a stream exceeded limits.output
WALL_TIME = "wall_time"
CPU_TIME = "cpu_time"


def time_limit_hit(*, kill_reason: str | None, cpu_time: float, cpu_time_limit: float) -> bool:
    """True if the job reached its wall-clock or CPU-time limit (``timed_out``).

    Args:
        kill_reason: why the supervisor killed the job, None if it did not.
        cpu_time: CPU seconds the job's cgroup used.
        cpu_time_limit: ``limits.cpu_time``.
    """
    return kill_reason in (WALL_TIME, CPU_TIME) or cpu_time >= cpu_time_limit


def decide_status(
    *,
    operator_kill: bool,
    kill_reason: str | None,
    oom_kills: int,
    exit_code: int | None,
    cpu_time: float,
    cpu_time_limit: float,
) -> Status:
    """The status of a finished job, by the precedence in this module's docstring.

    Args:
        operator_kill: an operator asked for the job to be killed.
        kill_reason: why the supervisor killed the job (:data:`MEMORY`,
            :data:`OUTPUT`, :data:`WALL_TIME`, :data:`CPU_TIME`, or one of
            its own), None if it did not.
        oom_kills: processes the job's memory cgroup OOM-killed.
        exit_code: the main process's exit status, None if a signal ended
            it (or it never reported one).
        cpu_time: CPU seconds the job's cgroup used.
        cpu_time_limit: ``limits.cpu_time``.
    """
    if operator_kill:
        return Status.KILLED
    out_of_memory = oom_kills > 0 or kill_reason == MEMORY
    if out_of_memory and exit_code != 0:
        return Status.MEMORY_LIMIT
    if kill_reason == OUTPUT:
        return Status.OUTPUT_LIMIT
    if time_limit_hit(kill_reason=kill_reason, cpu_time=cpu_time, cpu_time_limit=cpu_time_limit):
        return Status.TIMEOUT
    return Status.OK if exit_code == 0 else Status.RUNTIME_ERROR
