"""Outcomes are values: the result of a job and its status.

``JobResult`` is the public contract returned by :func:`sandbox.execute`, by
``sandbox run --json`` and (later) by the Celery task. A job hitting a limit
is a normal result with a status, never an exception.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from sandbox.spec import File

__all__ = ["JobResult", "Status"]


class Status(StrEnum):
    """How a job ended, most specific cause first."""

    OK = "ok"  # exited with status 0
    RUNTIME_ERROR = "runtime_error"  # non-zero exit or killed by a signal of its own
    TIMEOUT = "timeout"  # wall-clock or CPU-time limit
    MEMORY_LIMIT = "memory_limit"  # the cgroup's OOM killer ended it
    OUTPUT_LIMIT = "output_limit"  # printed more than limits.output on a stream
    KILLED = "killed"  # ended by an operator (`sandbox kill`)
    INTERNAL_ERROR = "internal_error"  # the sandbox failed, not the job


class JobResult(BaseModel):
    """What happened to one job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Status
    stdout: str = Field("", description="standard output; invalid UTF-8 replaced")
    stderr: str = Field("", description="standard error; invalid UTF-8 replaced")
    exit_code: int | None = Field(None, description="exit status, if the program exited")
    signal: int | None = Field(None, description="signal number, if the program was killed")
    oom_killed: bool = Field(False, description="the cgroup's OOM killer killed a process")
    timed_out: bool = Field(False, description="the wall or CPU time limit was reached")
    pids_limit_hit: bool = Field(False, description="a fork or clone failed at limits.pids")
    output_truncated: bool = Field(False, description="a stream exceeded limits.output")
    wall_time: float = Field(0.0, description="seconds from exec to exit")
    cpu_time: float = Field(0.0, description="CPU seconds of all the job's processes")
    memory_peak: int = Field(0, description="bytes, the cgroup's high-water mark")
    files: dict[str, File] = Field(
        default_factory=dict, description="the files asked for in JobSpec.collect"
    )
    files_skipped: dict[str, str] = Field(
        default_factory=dict, description="files asked for but not returned, and why"
    )
    error: str | None = Field(None, description="what went wrong, for internal_error")

    @classmethod
    def internal_error(cls, message: str) -> JobResult:
        """A result for a job the sandbox could not run."""
        return cls(status=Status.INTERNAL_ERROR, error=message)
