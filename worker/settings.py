"""Worker configuration from the environment (``SANDBOX_*``), as pydantic-settings.

The runtime's own settings (limits, cgroup parent, state dirs) are
:class:`sandbox.settings.Settings`; these add what the service needs.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["WorkerSettings"]


class WorkerSettings(BaseSettings):
    """How workers and clients reach Redis, and how jobs are queued."""

    model_config = SettingsConfigDict(env_prefix="SANDBOX_", frozen=True, extra="ignore")

    redis_url: str = Field(
        "redis://localhost:6379/0",
        description="broker and result backend: redis:// or rediss:// (TLS), no password in it",
    )
    redis_username: str | None = Field(None, description="Redis ACL user (worker/broker.py)")
    redis_password_file: Path | None = Field(
        None, description="a file holding the Redis password, read at each new connection"
    )
    redis_tls_ca_file: Path | None = Field(
        None, description="CA certificate (PEM) that signed Redis's; the system's when unset"
    )
    redis_tls_cert_file: Path | None = Field(None, description="client certificate (PEM)")
    redis_tls_key_file: Path | None = Field(None, description="client certificate's key (PEM)")
    queue: str = Field("sandbox", description="the default queue")
    routes: dict[str, str] = Field(
        default_factory=dict,
        description='language -> queue, e.g. {"python": "py"}: dedicated workers per language',
    )
    result_expires: int = Field(3600, gt=0, description="seconds a result is kept in Redis")
    max_attempts: int = Field(
        3, ge=1, description="deliveries of a job that kill its worker process before it is failed"
    )
    max_deliveries: int = Field(
        10,
        ge=1,
        description="deliveries of a job without a result, lost hosts included, before it is "
        "failed (a job that takes its host down is not passed around the fleet forever)",
    )
    time_margin: float = Field(
        60.0, gt=0, description="seconds Celery's hard limit sits above the job's wall limit"
    )
    connect_timeout: float = Field(3.0, gt=0, description="seconds to reach Redis at submit")
    redis_outage: float = Field(
        120.0,
        gt=0,
        description="seconds of Redis being unreachable that a client waiting for a result, "
        "and a worker storing one, ride through before giving up",
    )
    lease: float = Field(
        30.0,
        ge=3,
        description="seconds after which a job whose worker stopped renewing its lease "
        "(a lost host) goes back to the queue; live workers renew every third of it",
    )
    drain_timeout: float = Field(
        300.0,
        ge=0,
        description="seconds a worker told to stop (SIGTERM) lets running jobs finish; "
        "then they go back to the queue (keep it below the platform's grace period)",
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="serve Prometheus metrics on this port (off: unset)"
    )
    max_submission: int = Field(
        256 * 2**20,
        gt=0,
        description="bytes of a judge submission (code, every case's input and answer, files)",
    )
    max_judge_time: float = Field(
        1800.0,
        gt=0,
        description="seconds a judge task may take at worst (every case run one after another)",
    )
    max_spread: int = Field(
        16,
        ge=1,
        le=64,
        description="workers a judge's cases may be shared among at most (JudgeSpec.spread)",
    )

    @model_validator(mode="after")
    def _tls_needs_rediss(self) -> WorkerSettings:
        scheme = urlsplit(self.redis_url).scheme
        if scheme not in {"redis", "rediss", "unix"}:
            raise ValueError(f"redis_url must be redis://, rediss:// or unix://, not {scheme}://")
        tls_files = (self.redis_tls_ca_file, self.redis_tls_cert_file, self.redis_tls_key_file)
        if any(tls_files) and scheme != "rediss":
            raise ValueError("redis_tls_* files are set: redis_url must be rediss:// (TLS)")
        if (self.redis_tls_cert_file is None) != (self.redis_tls_key_file is None):
            raise ValueError("a client certificate needs both redis_tls_cert_file and _key_file")
        return self
