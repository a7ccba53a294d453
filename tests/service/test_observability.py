"""What operators see of a real worker: Prometheus metrics, JSON logs, health, Celery events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import sandbox
from tests.service.conftest import PARENT, RUN_DIR, free_port

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.redis]

SANDBOX = str(Path(sys.executable).with_name("sandbox"))
SECRET = "never-in-the-logs-7f3a"


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_and_json_logs(client, start_worker):
    port = free_port()
    worker = start_worker(
        SANDBOX_METRICS_PORT=str(port), SANDBOX_LOG_FORMAT="json", SANDBOX_LEASE="3"
    )
    jobs = [
        sandbox.run.delay(f"print('{SECRET}')"),
        sandbox.run.delay("x = bytearray(512 * 2**20)", limits={"memory": "64M"}),
        sandbox.run.delay("while True:\n    pass", limits={"cpu_time": 0.5, "wall_time": 5}),
    ]
    statuses = [job.get(timeout=60)["status"] for job in jobs]
    assert statuses == ["ok", "memory_limit", "timeout"]
    samples = _metrics(port)
    assert samples['sandbox_jobs_total{language="python",status="ok"}'] >= 1
    assert samples['sandbox_jobs_total{language="python",status="memory_limit"}'] >= 1
    assert samples['sandbox_oom_kills_total{language="python"}'] >= 1
    assert samples['sandbox_timeouts_total{language="python"}'] >= 1
    assert samples['sandbox_job_wall_seconds_count{language="python"}'] >= 3
    assert samples['sandbox_queue_wait_seconds_count{task="sandbox.run"}'] >= 3
    assert samples['sandbox_jobs_running{task="sandbox.run"}'] == 0
    assert samples["sandbox_pool_hits_total"] + samples["sandbox_pool_misses_total"] >= 3
    assert "sandbox_pool_ready" in samples
    time.sleep(1.5)  # a lease renewal (every third of the 3 s lease) reports the fleet's figures
    samples = _metrics(port)
    assert samples['sandbox_queue_length{queue="sandbox"}'] == 0
    assert samples["sandbox_jobs_held"] == 0
    assert "sandbox_lease_renewals_total" in samples
    assert samples["sandbox_leases_lost_total"] == 0

    lines = [json.loads(line) for line in worker.text().splitlines() if line.startswith("{")]
    job_lines = [line for line in lines if line.get("logger") == "sandbox.jobs"]
    assert {line["task_id"] for line in job_lines} >= {job.id for job in jobs}
    for line in job_lines:
        assert {"job", "status", "wall_time", "cpu_time", "memory_peak", "limits"} <= set(line)
    assert SECRET not in worker.text()  # neither code nor output, without SANDBOX_LOG_DEBUG


def _health(**env: str) -> tuple[int, dict[str, Any]]:
    out = subprocess.run(
        [SANDBOX, "health", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SANDBOX_RUN_DIR": str(RUN_DIR), "SANDBOX_CGROUP_PARENT": PARENT, **env},
    )
    return out.returncode, json.loads(out.stdout)


def test_health(client, start_worker, redis_server):
    worker = start_worker()
    status, report = _health(SANDBOX_REDIS_URL=redis_server.url)
    assert status == 0, report
    assert [c["name"] for c in report["checks"]] == ["worker", "redis", "container"]
    status, report = _health(SANDBOX_REDIS_URL="redis://127.0.0.1:1/0")
    assert status == 1
    assert not report["checks"][1]["ok"]
    worker.stop()
    status, report = _health(SANDBOX_REDIS_URL=redis_server.url)
    assert status == 1
    assert report["checks"][0]["detail"] == "no live worker on this host"


def test_celery_events_show_our_tasks(client, start_worker):
    """Flower and `celery events` read these: sent, received, started, succeeded."""
    start_worker()
    seen: list[dict[str, Any]] = []
    with client.connection_for_read() as conn:
        receiver = client.events.Receiver(conn, handlers={"*": seen.append})
        thread = threading.Thread(target=receiver.capture, kwargs={"wakeup": True}, daemon=True)
        thread.start()
        time.sleep(1)  # subscribed
        job = sandbox.run.delay("print(1)")
        job.get(timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            kinds = {e["type"] for e in seen if e.get("uuid") == job.id}
            if "task-succeeded" in kinds:
                break
            time.sleep(0.2)
        receiver.should_stop = True
    kinds = {e["type"] for e in seen if e.get("uuid") == job.id}
    assert {"task-sent", "task-received", "task-started", "task-succeeded"} <= kinds, kinds
    received = next(e for e in seen if e.get("uuid") == job.id and e["type"] == "task-received")
    assert received["kwargs"] == "<python: 8 bytes of code>"  # the code stays out of events
