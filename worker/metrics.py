"""Prometheus metrics of a worker (prometheus-client), served when SANDBOX_METRICS_PORT is set.

Celery runs tasks in forked processes, so the metrics use prometheus-client's
multiprocess mode: :func:`prepare` (in the main process, before anything
imports prometheus_client) points ``PROMETHEUS_MULTIPROC_DIR`` at a directory
of ours, every process writes its samples there, and :func:`serve` exposes
their sum on ``http://0.0.0.0:PORT/metrics``. Names follow Prometheus's
conventions: a ``sandbox_`` prefix, base units, ``_total`` for counters.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.result import JobResult
    from sandbox.runtime.pool import PoolStats

__all__ = [
    "observe_job",
    "observe_leases",
    "observe_pool",
    "observe_redelivery",
    "observe_submission",
    "prepare",
    "running",
    "serve",
]

ENV = "PROMETHEUS_MULTIPROC_DIR"
_TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_MEMORY_BUCKETS = tuple(2**n for n in range(20, 34))  # 1 MiB .. 8 GiB


def prepare(run_dir: Path) -> Path:
    """Make (afresh) this worker's sample directory and point prometheus-client at it."""
    directory = run_dir / "metrics" / f"worker-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[ENV] = str(directory)
    return directory


def serve(port: int) -> None:
    """Expose the sum of every process's samples on ``port`` (a thread of this process)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, registry=registry)


def process_gone(pid: int) -> None:
    """Drop a finished process's live gauges."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class _Metrics:
    """Created on first use, after the environment is set."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.jobs = Counter(
            "sandbox_jobs_total", "Jobs finished, by language and status", ["language", "status"]
        )
        self.wall = Histogram(
            "sandbox_job_wall_seconds", "Wall time of jobs", ["language"], buckets=_TIME_BUCKETS
        )
        self.cpu = Histogram(
            "sandbox_job_cpu_seconds", "CPU time of jobs", ["language"], buckets=_TIME_BUCKETS
        )
        self.memory = Histogram(
            "sandbox_job_memory_peak_bytes",
            "Peak memory of jobs",
            ["language"],
            buckets=_MEMORY_BUCKETS,
        )
        self.queue_wait = Histogram(
            "sandbox_queue_wait_seconds",
            "Time from submission to a worker starting the task",
            ["task"],
            buckets=_TIME_BUCKETS,
        )
        self.oom = Counter("sandbox_oom_kills_total", "Jobs the OOM killer ended", ["language"])
        self.timeouts = Counter(
            "sandbox_timeouts_total", "Jobs ended at their wall or CPU limit", ["language"]
        )
        self.internal = Counter(
            "sandbox_internal_errors_total", "Jobs the sandbox failed to run", ["language"]
        )
        self.running = Gauge(
            "sandbox_jobs_running", "Tasks running now", ["task"], multiprocess_mode="livesum"
        )
        self.pool_hits = Counter("sandbox_pool_hits_total", "Jobs served a warm container")
        self.pool_misses = Counter("sandbox_pool_misses_total", "Jobs that built a container")
        self.pool_ready = Gauge(
            "sandbox_pool_ready", "Warm containers ready", multiprocess_mode="livesum"
        )
        self.submissions = Counter(
            "sandbox_submissions_total", "Judged submissions, by verdict", ["language", "verdict"]
        )
        self.redeliveries = Counter(
            "sandbox_redeliveries_total",
            "Jobs delivered again (their worker process or host was lost)",
            ["task"],
        )
        self.held = Gauge(
            "sandbox_jobs_held",
            "Jobs this worker holds unacknowledged (running and prefetched)",
            multiprocess_mode="livemax",
        )
        self.renewals = Counter("sandbox_lease_renewals_total", "Job leases renewed")
        self.lost_leases = Counter(
            "sandbox_leases_lost_total",
            "Leases found expired at renewal (the job went back to the queue)",
        )
        self.queue_length = Gauge(
            "sandbox_queue_length",
            "Jobs waiting in a queue",
            ["queue"],
            multiprocess_mode="livemax",
        )
        self.seen_pool: tuple[int, int] = (0, 0)


_metrics: _Metrics | None = None


def _m() -> _Metrics:
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


def observe_job(language: str, result: JobResult) -> None:
    m = _m()
    m.jobs.labels(language, result.status.value).inc()
    m.wall.labels(language).observe(result.wall_time)
    m.cpu.labels(language).observe(result.cpu_time)
    m.memory.labels(language).observe(result.memory_peak)
    if result.oom_killed:
        m.oom.labels(language).inc()
    if result.timed_out:
        m.timeouts.labels(language).inc()
    if result.status.value == "internal_error":
        m.internal.labels(language).inc()


def observe_submission(language: str, verdict: str) -> None:
    _m().submissions.labels(language, verdict).inc()


def observe_redelivery(task: str) -> None:
    _m().redeliveries.labels(task).inc()


def observe_leases(held: int, renewed: int, queue_lengths: dict[str, int]) -> None:
    """One lease renewal (worker/lease.py): jobs held, leases renewed, queue lengths."""
    m = _m()
    m.held.set(held)
    m.renewals.inc(renewed)
    m.lost_leases.inc(max(held - renewed, 0))
    for queue, length in queue_lengths.items():
        m.queue_length.labels(queue).set(length)


def observe_queue_wait(task: str, seconds: float) -> None:
    _m().queue_wait.labels(task).observe(max(seconds, 0.0))


def observe_pool(stats: PoolStats | None) -> None:
    """Turn the runtime's cumulative pool counters into increments."""
    if stats is None:
        return
    m = _m()
    hits, misses = m.seen_pool
    m.pool_hits.inc(max(stats.hits - hits, 0))
    m.pool_misses.inc(max(stats.misses - misses, 0))
    m.seen_pool = (stats.hits, stats.misses)
    m.pool_ready.set(stats.ready)


def running(task: str) -> Any:
    """A context manager counting a task as running while inside it."""
    return _m().running.labels(task).track_inprogress()
