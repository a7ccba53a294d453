"""The health of a worker host, for a container orchestrator: `sandbox health`.

Healthy when (1) a worker's main process on this host is alive and beating
(it rewrites ``<run_dir>/workers/<pid>.json`` every few seconds), (2) Redis
answers, and (3) a container can be started here (a tiny job, end to end).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from sandbox.paths import WORKERS, write_atomically
from sandbox.runtime.host import Check
from sandbox.runtime.shared import try_a_job
from sandbox.settings import Settings
from worker.settings import WorkerSettings

__all__ = ["BEAT_SECONDS", "beat_forever", "check", "stop_beating"]

BEAT_SECONDS = 5.0
STALE_SECONDS = 6 * BEAT_SECONDS


def _beat_file(run_dir: Path, pid: int) -> Path:
    return run_dir / WORKERS / f"{pid}.json"


def beat_forever(run_dir: Path, hostname: str) -> threading.Thread:
    """Start this process's heartbeat (a daemon thread)."""
    path = _beat_file(run_dir, os.getpid())
    path.parent.mkdir(parents=True, exist_ok=True)

    def beat() -> None:
        while True:
            now = {"pid": os.getpid(), "hostname": hostname, "at": time.time()}
            write_atomically(path, json.dumps(now))
            time.sleep(BEAT_SECONDS)

    thread = threading.Thread(target=beat, name="sandbox-heartbeat", daemon=True)
    thread.start()
    return thread


def stop_beating(run_dir: Path) -> None:
    _beat_file(run_dir, os.getpid()).unlink(missing_ok=True)


def _worker(run_dir: Path) -> Check:
    now = time.time()
    beats = []
    for path in (run_dir / WORKERS).glob("*.json"):
        try:
            beat = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if os.path.exists(f"/proc/{beat.get('pid')}") and now - beat.get("at", 0) < STALE_SECONDS:
            beats.append(beat)
    if not beats:
        return Check("worker", False, "no live worker on this host", "start one: sandbox worker")
    names = ", ".join(f"{b['hostname']} (pid {b['pid']})" for b in beats)
    return Check("worker", True, names)


def _redis(settings: WorkerSettings) -> Check:
    import redis

    from worker import broker

    where = broker.display_url(settings)
    try:
        broker.client(settings, socket_connect_timeout=settings.connect_timeout).ping()
    except redis.RedisError as exc:
        return Check(
            "redis", False, f"{where}: {exc}", "check SANDBOX_REDIS_URL and SANDBOX_REDIS_* files"
        )
    return Check("redis", True, where)


def check(settings: Settings | None = None, worker: WorkerSettings | None = None) -> list[Check]:
    """Every check, in order; the host is healthy when all are ok."""
    settings = settings or Settings()
    worker = worker or WorkerSettings()
    return [_worker(settings.run_dir), _redis(worker), try_a_job(settings)]
