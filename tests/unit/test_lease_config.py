"""The broker's visibility timeout is the lease, swept and renewed at fractions of it (ADR 0010)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from worker.settings import WorkerSettings

PROBE = """
import json
from worker.app import app
options = app.conf.broker_transport_options
print(json.dumps({
    "visibility_timeout": options["visibility_timeout"],
    "unacked_restore_interval": options["unacked_restore_interval"],
    "unacked_restore_throttle": options["unacked_restore_throttle"],
}))
"""


@pytest.mark.parametrize(("lease", "sweep"), [("12", 1.2), ("30", 3.0), ("3", 1.0)])
def test_visibility_timeout_is_the_lease(lease: str, sweep: float):
    env = {**os.environ, "SANDBOX_LEASE": lease}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True
    )
    conf = json.loads(out.stdout)
    assert conf == {
        "visibility_timeout": float(lease),
        "unacked_restore_interval": sweep,
        "unacked_restore_throttle": 1,
    }


def test_a_lease_too_short_to_renew_is_refused():
    with pytest.raises(ValidationError, match="lease"):
        WorkerSettings(lease=1)


def test_a_worker_stores_results_through_an_outage_even_if_its_backend_was_used():
    """Celery caches the backend's retry policy: the worker's must replace it (ADR 0011)."""
    probe = (
        "import json\nfrom worker import app as a\n"
        "before = a.app.backend.retry_policy['max_retries']\n"
        "a._ride_out_redis_outages()\n"
        "b = a.app.backend\n"
        "print(json.dumps([before, b.retry_policy, b.always_retry, b.max_retries]))\n"
    )
    env = {**os.environ, "SANDBOX_REDIS_OUTAGE": "30"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    before, after, always, retries = json.loads(out.stdout)
    assert before == 2  # a client's: a submit to a dead Redis fails fast
    assert after["max_retries"] == 30
    assert after["interval_max"] == 1.0
    assert always  # reads too: Celery reads the stored state before it stores a result
    assert retries == 70
