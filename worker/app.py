"""The Celery application: ``celery -A worker.app:app worker``.

Reliability choices (docs/adr/0005-ack-policy.md):

- JSON only: untrusted input is never unpickled.
- Late acknowledgement plus ``task_reject_on_worker_lost``: a job whose worker
  process dies mid-run (SIGKILL, the OOM killer) goes back to the queue and is
  run again; :mod:`worker.tasks` counts deliveries so that a job that kills its
  worker every time ends with a failed result instead of looping forever.
- Prefetch one job per process: a long job never holds short ones hostage.
- Celery's hard time limit sits above the largest wall limit a job may ask
  for plus setup: the sandbox, not Celery, ends a slow job (and reports its
  partial output).
- Leases, not one visibility timeout for the longest job: Redis's visibility
  timeout is ``SANDBOX_LEASE`` (30 s), every live worker renews the leases of
  the jobs it holds (:mod:`worker.lease`), and every worker sweeps for expired
  ones every tenth of a lease, so a lost host's jobs run again within about
  a lease (docs/adr/0010-job-leases.md).
- SIGTERM drains: no new job is taken, running ones have
  ``SANDBOX_DRAIN_TIMEOUT`` to finish, the rest go back to the queue.

One :class:`sandbox.Runtime` per worker process, opened after the fork
(``worker_process_init``) on an event loop of its own, closed at shutdown.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from typing import Any

from celery import Celery, signals

from sandbox.settings import Settings
from worker import broker, metrics
from worker.lease import Leases, drain
from worker.settings import WorkerSettings

__all__ = ["HARD_LIMIT", "JUDGE_LIMIT", "app", "limits_settings", "settings"]

settings = WorkerSettings()
_limits = Settings()
limits_settings = _limits
if settings.metrics_port is not None and not os.environ.get(metrics.ENV):
    metrics.prepare(_limits.run_dir)  # before anything imports prometheus_client
HARD_LIMIT = _limits.max_wall_time + _limits.setup_timeout + settings.time_margin
# A judge task runs many jobs: its own budget (refused on the client beyond it).
JUDGE_LIMIT = settings.max_judge_time + settings.time_margin

app = Celery("sandbox")
app.conf.update(
    **broker.celery_options(settings),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_time_limit=HARD_LIMIT,
    task_default_queue=settings.queue,
    task_routes={
        "sandbox.run": {"queue": settings.queue},
        "sandbox.judge": {"queue": settings.queue},
    },
    task_track_started=True,
    result_expires=settings.result_expires,
    result_extended=False,
    broker_connection_retry_on_startup=True,
    broker_connection_timeout=settings.connect_timeout,
    broker_transport_options=broker.transport_options(settings),
    redis_socket_connect_timeout=settings.connect_timeout,
    result_backend_transport_options={
        "retry_policy": {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2}
    },
    redis_backend_health_check_interval=10,
    task_publish_retry_policy={
        "max_retries": 2,
        "interval_start": 0.1,
        "interval_step": 0.2,
        "interval_max": 0.5,
    },
    worker_hijack_root_logger=False,
    # Celery's own events: Flower and `celery events` see our workers and tasks.
    worker_send_task_events=True,
    task_send_sent_event=True,
    include=["worker.tasks", "worker.judge"],
)

_leases: Leases | None = None
_consumer: Any = None


@signals.worker_init.connect
def _ride_out_redis_outages(**_: Any) -> None:
    """A worker stores results through a Redis outage of up to SANDBOX_REDIS_OUTAGE.

    The short retries above suit clients (a submit to a Redis that is down
    fails in a second); a worker that finishes a job while Redis restarts
    must not turn it into a failure, nor lose it. Every backend operation
    (the read before a store too) retries, with jittered backoff up to a
    second, for about that long; its pool's processes inherit this.
    """
    options = dict(app.conf.result_backend_transport_options or {})
    options["retry_policy"] = {
        "max_retries": max(1, int(settings.redis_outage)),
        "interval_start": 0.1,
        "interval_step": 0.5,
        "interval_max": 1.0,
    }
    app.conf.update(
        result_backend_transport_options=options,
        result_backend_always_retry=True,
        result_backend_base_sleep_between_retries_ms=100,
        result_backend_max_sleep_between_retries_ms=1000,
        # Full jitter: half a second a retry on average.
        result_backend_max_retries=int(2 * settings.redis_outage) + 10,
    )
    # Celery keeps the backend it made, policies and all: one anew, from these.
    app._backend = app._get_backend()


@signals.worker_init.connect
def _refuse_incapable_host(**_: Any) -> None:
    """A worker on a host that cannot sandbox exits at once, saying why."""
    from sandbox.errors import SandboxError
    from sandbox.runtime.host import prepare

    try:
        prepare(_limits)
    except SandboxError as exc:
        print(f"sandbox: this host cannot run sandboxes: {exc}", file=sys.stderr)
        print("sandbox: run `sandbox doctor` for details", file=sys.stderr)
        sys.exit(1)


if not _limits.log_debug:
    # Celery logs a task's return value when it succeeds: a job's output, which
    # stays out of the logs unless SANDBOX_LOG_DEBUG (and kwargsrepr hides the
    # code from the received line and from events; worker/tasks.py).
    from celery.app import trace

    trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"


@signals.worker_init.connect
def _serve_metrics(**_: Any) -> None:
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port)


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    from worker.health import beat_forever

    beat_forever(_limits.run_dir, str(getattr(sender, "hostname", "worker")))


@signals.worker_ready.connect
def _start_leases(sender: Any = None, **_: Any) -> None:
    """Renew the leases of this worker's jobs from now until it has exited (worker/lease.py)."""
    global _leases, _consumer
    _consumer = sender
    if _leases is None:
        _leases = Leases(app, tuple(app.amqp.queues.consume_from or (settings.queue,)))
        _leases.start()


@signals.worker_shutting_down.connect
def _drain(how: str = "Warm", **_: Any) -> None:
    """SIGTERM: running jobs have SANDBOX_DRAIN_TIMEOUT to end; the rest are requeued."""
    if how == "Warm" and _consumer is not None:
        from worker.tasks import forget_delivery

        drain(_consumer, settings.drain_timeout, forget_delivery)


@signals.worker_shutdown.connect
def _stop_leases(**_: Any) -> None:
    global _leases
    if _leases is not None:
        _leases.stop()
        _leases = None


@signals.worker_shutdown.connect
def _reclaim_ended_processes(**_: Any) -> None:
    """Remove what pool processes ended mid-job (a drain's, the OOM killer's) left behind.

    Their containers died with them; their cgroups and records remain, which
    no replacement process reclaims at shutdown. Only dead runtimes' things
    are touched (sandbox/runtime/reclaim.py), never a live one's on the same host.
    """
    from sandbox.errors import SandboxError
    from sandbox.runtime.reclaim import collect

    try:
        report = collect(_limits)
    except (OSError, SandboxError) as exc:  # say it; `sandbox gc` can redo it
        logging.getLogger("sandbox.worker").warning("cannot reclaim at exit: %s", exc)
        return
    for error in report.errors:
        logging.getLogger("sandbox.worker").warning("reclaim at exit: %s", error)


@signals.worker_shutdown.connect
def _remove_metrics(**_: Any) -> None:
    from worker.health import stop_beating

    stop_beating(_limits.run_dir)
    directory = os.environ.get(metrics.ENV)
    if settings.metrics_port is not None and directory:
        shutil.rmtree(directory, ignore_errors=True)


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _json_logs(logger: logging.Logger, **_: Any) -> None:
    if _limits.log_format == "json":
        from sandbox.logs import use_json

        use_json(logger)


@signals.worker_process_init.connect
def _open_runtime(**_: Any) -> None:
    from worker.runtime import runtime_host

    runtime_host().start()


@signals.worker_process_shutdown.connect
def _close_runtime(**_: Any) -> None:
    from worker.runtime import runtime_host

    runtime_host().stop()
    metrics.process_gone(os.getpid())
