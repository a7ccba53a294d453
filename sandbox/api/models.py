"""The API's request and response bodies, as pydantic models (and so its OpenAPI document).

Field names, meanings and units are Judge0 CE's (memory in KB, times in
seconds); every field of a request may be left out or null for Judge0's
default (``GET /config_info`` shows them). Unknown fields are ignored, as
Judge0 ignores them; values out of range are refused with 422 and the
field's message, as Judge0 refuses them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "About",
    "BatchRequest",
    "LanguageDetail",
    "LanguageSummary",
    "StatusOut",
    "SubmissionIn",
    "SubmissionOut",
    "WorkerQueue",
]


class SubmissionIn(BaseModel):
    """A submission, as Judge0's ``POST /submissions`` takes it."""

    model_config = ConfigDict(extra="ignore")

    source_code: str | None = Field(None, description="the program (base64 with base64_encoded)")
    language_id: int | None = Field(None, description="GET /languages")
    compiler_options: str | None = Field(
        None, description="options for the compiler of a compiled language"
    )
    command_line_arguments: str | None = Field(
        None, description="the program's arguments, split as a shell would"
    )
    stdin: str | None = Field(None, description="standard input (base64 with base64_encoded)")
    expected_output: str | None = Field(
        None, description="compared with stdout, trailing whitespace ignored: Wrong Answer"
    )
    cpu_time_limit: float | None = Field(None, description="seconds of CPU")
    cpu_extra_time: float | None = Field(None, description="seconds beyond it before the kill")
    wall_time_limit: float | None = Field(None, description="seconds of wall-clock time")
    memory_limit: float | None = Field(None, description="KB of memory, all processes")
    stack_limit: int | None = Field(None, description="KB of stack")
    max_processes_and_or_threads: int | None = None
    enable_per_process_and_thread_time_limit: bool | None = Field(
        None, description="only false: limits are the whole job's (its cgroup)"
    )
    enable_per_process_and_thread_memory_limit: bool | None = Field(
        None, description="only false: limits are the whole job's (its cgroup)"
    )
    max_file_size: int | None = Field(None, description="KB of a file, and of each output")
    redirect_stderr_to_stdout: bool | None = Field(
        None, description="stderr after stdout (not interleaved)"
    )
    enable_network: bool | None = Field(None, description="only false")
    number_of_runs: int | None = Field(None, description="runs; time and memory are averaged")
    additional_files: str | None = Field(
        None, description="base64 of a zip: files beside the program"
    )
    callback_url: str | None = Field(
        None, description="PUT the result here when done (allowed hosts only)"
    )


class BatchRequest(BaseModel):
    """``POST /submissions/batch``."""

    submissions: list[SubmissionIn]


class StatusOut(BaseModel):
    id: int
    description: str


class SubmissionOut(BaseModel):
    """A submission as Judge0 shows it (``fields=`` picks which; ``*``: all)."""

    token: str | None = None
    source_code: str | None = None
    language_id: int | None = None
    language: dict[str, object] | None = None
    stdin: str | None = None
    expected_output: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    compile_output: str | None = None
    message: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    status: StatusOut | None = None
    status_id: int | None = None
    created_at: str | None = None
    finished_at: str | None = None
    time: str | None = Field(None, description="CPU seconds (a decimal, as a string)")
    wall_time: str | None = None
    memory: int | None = Field(None, description="KB, the cgroup's peak")
    number_of_runs: int | None = None
    cpu_time_limit: str | None = None
    cpu_extra_time: str | None = None
    wall_time_limit: str | None = None
    memory_limit: int | None = None
    stack_limit: int | None = None
    max_processes_and_or_threads: int | None = None
    enable_per_process_and_thread_time_limit: bool | None = None
    enable_per_process_and_thread_memory_limit: bool | None = None
    max_file_size: int | None = None
    redirect_stderr_to_stdout: bool | None = None
    enable_network: bool | None = None
    compiler_options: str | None = None
    command_line_arguments: str | None = None
    callback_url: str | None = None
    additional_files: str | None = None
    # Ours.
    oom_killed: bool | None = Field(None, description="the cgroup's OOM killer ended it")
    memory_peak: int | None = Field(None, description="bytes, the cgroup's peak")
    verdict: str | None = Field(None, description="sandbox.judge's verdict, unmapped")


class LanguageSummary(BaseModel):
    id: int
    name: str


class LanguageDetail(LanguageSummary):
    is_archived: bool = False
    source_file: str
    compile_cmd: str | None
    run_cmd: str


class About(BaseModel):
    version: str = Field(description="the Judge0 CE API version this one speaks")
    homepage: str
    source_code: str
    maintainer: str
    sandbox_worker: str = Field(description="our own version")


class WorkerQueue(BaseModel):
    queue: str
    size: int
    available: int
    idle: int
    working: int
    paused: int = 0
    failed: int = 0
