"""The API's configuration from the environment (``SANDBOX_API_*``), as pydantic-settings.

Judge0's defaults and maxima (its ``judge0.conf``) under their Judge0 names,
each maximum held within the sandbox's own (``SANDBOX_MAX_*``,
:class:`sandbox.settings.Settings`: set them alike on the API's host and the
workers'), and what protects the API itself: tokens, callback hosts, the
request size, the rate per token, the queue bound.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandbox.settings import Settings

__all__ = ["ApiSettings", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True for a bind address only this machine reaches (``127.0.0.1``, ``::1``, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiSettings(BaseSettings):
    """How the Judge0-compatible API serves, and what it lets a submission ask."""

    model_config = SettingsConfigDict(env_prefix="SANDBOX_API_", frozen=True, extra="ignore")

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(2358, ge=1, le=65535, description="port (Judge0's)")
    # Judge0's AUTHN_HEADER/AUTHN_TOKEN and AUTHZ_HEADER/AUTHZ_TOKEN.
    authn_header: str = "X-Auth-Token"
    authn_tokens: list[str] = Field(
        default_factory=list,
        description="tokens a client must send in authn_header; none: no authentication, "
        "which only a loopback bind allows",
    )
    authz_header: str = "X-Auth-User"
    authz_tokens: list[str] = Field(
        default_factory=list,
        description="tokens for DELETE /submissions/{token} (none: deleting is refused)",
    )
    callback_hosts: list[str] = Field(
        default_factory=list,
        description="hosts (name or name:port) a callback_url may point to; none: no callbacks",
    )
    callback_tries: int = Field(3, ge=1, le=10)
    callback_timeout: float = Field(5.0, gt=0, le=60)
    max_request: int = Field(
        4 * 2**20, ge=1024, description="bytes of a request body, at most (413 beyond)"
    )
    rate: int = Field(
        600, ge=1, description="submissions a token (or an address) may create per minute (429)"
    )
    max_queue_size: int = Field(
        100, ge=1, description="jobs waiting in the queue, at most (503 with Retry-After beyond)"
    )
    wait_timeout: float = Field(
        300.0, gt=0, description="seconds a wait=true request waits before it answers In Queue"
    )
    language_ids: dict[str, int] = Field(
        default_factory=dict, description="language -> Judge0 id, the deployer's languages'"
    )
    max_submission_batch_size: int = Field(20, ge=1, le=1000)
    # Judge0's defaults and maxima; the maxima are held within the sandbox's below.
    cpu_time_limit: float = Field(5.0, gt=0)
    max_cpu_time_limit: float = Field(15.0, gt=0)
    cpu_extra_time: float = Field(1.0, ge=0)
    max_cpu_extra_time: float = Field(5.0, ge=0)
    wall_time_limit: float = Field(10.0, gt=0)
    max_wall_time_limit: float = Field(20.0, gt=0)
    memory_limit: int = Field(128000, ge=4096, description="KB")
    max_memory_limit: int = Field(512000, ge=4096, description="KB")
    stack_limit: int = Field(64000, ge=64, description="KB")
    max_stack_limit: int = Field(128000, ge=64, description="KB")
    max_processes_and_or_threads: int = Field(60, ge=1)
    max_max_processes_and_or_threads: int = Field(120, ge=1)
    max_file_size: int = Field(1024, ge=0, description="KB, of a file and of each output stream")
    max_max_file_size: int = Field(4096, ge=0, description="KB")
    number_of_runs: int = Field(1, ge=1)
    max_number_of_runs: int = Field(20, ge=1)
    redirect_stderr_to_stdout: bool = False

    @model_validator(mode="after")
    def _within_the_sandbox(self) -> ApiSettings:
        most = Settings().maximum  # the declared limits' maxima (sandbox/resources.py)
        found = {n: most(n) for n in ("cpu_time", "wall_time", "memory", "stack", "pids")}
        found["file"] = min(
            (v for v in (most("output"), most("file_size")) if v is not None), default=None
        )
        caps = {
            "max_cpu_time_limit": ("cpu_time", 1, self.max_cpu_extra_time),
            "max_wall_time_limit": ("wall_time", 1, 0),
            "max_memory_limit": ("memory", 1024, 0),
            "max_stack_limit": ("stack", 1024, 0),
            "max_max_processes_and_or_threads": ("pids", 1, 0),
            "max_max_file_size": ("file", 1024, 0),
        }
        for name, (limit, unit, less) in caps.items():
            value = found[limit]
            if value is None:
                continue  # no maximum: the API's own stands
            cap = float(value) / unit - less
            if getattr(self, name) > cap:
                object.__setattr__(self, name, type(getattr(self, name))(cap))
        for name in (
            "cpu_time_limit", "cpu_extra_time", "wall_time_limit", "memory_limit", "stack_limit",
            "max_processes_and_or_threads", "max_file_size", "number_of_runs",
        ):  # fmt: skip
            if getattr(self, name) > getattr(self, f"max_{name}"):
                raise ValueError(f"{name} is above max_{name} ({getattr(self, f'max_{name}')})")
        return self

    @property
    def open_to_anyone(self) -> bool:
        return not self.authn_tokens
