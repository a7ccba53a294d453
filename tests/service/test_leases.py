"""Leases (docs/adr/0010-job-leases.md), with real redis-server and worker processes.

A host is lost when every process of its worker dies at once: SIGKILL to the
worker's process group. Its job must run again on another worker within
about a lease, while a live worker's job that runs three leases long must
never be handed to a second one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis

import sandbox
from tests.service.conftest import PARENT, RUN_DIR, Worker, free_port
from worker.broker import transport_options
from worker.settings import WorkerSettings

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.redis]

LEASE = 3.0  # SANDBOX_LEASE for these workers: short, so the test is too
SANDBOX = str(Path(sys.executable).with_name("sandbox"))


def _deliveries(url: str, task_id: str) -> int:
    """How many times the job was delivered (worker/tasks.py counts them in Redis)."""
    return int(redis.Redis.from_url(url).get(f"sandbox:attempts:{task_id}") or 0)


def _strikes(url: str, task_id: str) -> int:
    """How many of its deliveries killed their worker process (none of a host's loss)."""
    return int(redis.Redis.from_url(url).get(f"sandbox:strikes:{task_id}") or 0)


def _wait_acknowledged(url: str, seconds: float = 10) -> None:
    """Until no message is unacknowledged (late acks follow the stored result)."""
    deadline = time.monotonic() + seconds
    while redis.Redis.from_url(url).zcard("unacked_index"):
        assert time.monotonic() < deadline, "a job's message was never acknowledged"
        time.sleep(0.05)


def _wait_started(result: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while result.state != "STARTED":  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)


def _holder(workers: list[Worker]) -> Worker:
    """The worker whose process runs a job now (job cgroups are named <pid>-...)."""
    deadline = time.monotonic() + 60
    while True:
        for procs in [
            *Path("/sys/fs/cgroup").glob(f"pids/{PARENT}/*/job/cgroup.procs"),
            *Path("/sys/fs/cgroup").glob(f"{PARENT}/*/job/cgroup.procs"),
        ]:
            for pid in procs.read_text().split():
                try:
                    if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sandbox-init"):
                        continue  # a ready pool container, not a job
                except OSError:
                    continue
                owner = int(procs.parent.parent.name.split("-")[0])
                for worker in workers:
                    if os.getpgid(owner) == worker.process.pid:
                        return worker
        assert time.monotonic() < deadline, "no worker runs the job"
        time.sleep(0.05)


def test_a_lost_hosts_job_runs_again_within_a_lease(client, start_worker, redis_server):
    """Every process of the job's worker SIGKILLed: the other worker runs it within a lease.

    The host died mid-sweep too, holding the sweep's lock (kombu's
    ``unacked_mutex``): it expires within a fifth of a lease (worker/app.py),
    not kombu's 300 s, which had stalled every sweep of the fleet that long.
    """
    ports = {name: free_port() for name in ("a", "b")}
    fleet = [
        start_worker(name, concurrency=1, SANDBOX_LEASE=str(LEASE), SANDBOX_METRICS_PORT=str(port))
        for name, port in ports.items()
    ]
    job = sandbox.run.delay("import time\ntime.sleep(8)\nprint('done')", limits={"wall_time": 30})
    _wait_started(job)
    doomed = _holder(fleet)
    time.sleep(LEASE)  # its worker renews the lease meanwhile: the job stays its own
    assert _deliveries(redis_server.url, job.id) == 1
    os.killpg(doomed.process.pid, signal.SIGKILL)  # the host is gone: every process at once
    lost = time.monotonic()
    doomed.process.wait(10)
    options = transport_options(WorkerSettings(lease=LEASE))  # what the workers run with
    expire = options["unacked_mutex_expire"]
    redis.Redis.from_url(redis_server.url).set(
        "unacked_mutex", "the dead host's sweep", px=int(expire * 1000), nx=True
    )
    while _deliveries(redis_server.url, job.id) < 2:  # counted as its delivery starts
        assert time.monotonic() - lost < 60, "the lost job was never delivered again"
        time.sleep(0.05)
    again = time.monotonic() - lost
    result = job.get(timeout=60)
    assert result["status"] == "ok", result
    assert result["stdout"] == "done\n"
    assert _deliveries(redis_server.url, job.id) == 2
    assert _strikes(redis_server.url, job.id) == 0  # a lost host is no strike against the job
    heir = next(worker for worker in fleet if worker is not doomed)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports[heir.name]}/metrics").read()
    assert b'sandbox_redeliveries_total{task="sandbox.run"} 1.0' in metrics
    # Within a lease after the last renewal and a sweep (a tenth of a lease,
    # 1 s at least), with room for a busy machine.
    print(f"\nthe lost host's job ran again {again:.1f} s after the loss (lease {LEASE:g} s)")
    assert again < LEASE + 1 + 5, again
    # What an operator does after a lost host comes back: the dead runtime's
    # cgroups and records are reclaimed.
    env = {**os.environ, "SANDBOX_RUN_DIR": str(RUN_DIR), "SANDBOX_CGROUP_PARENT": PARENT}
    gc = subprocess.run([SANDBOX, "gc", "--json"], capture_output=True, text=True, env=env)
    assert gc.returncode == 0, gc.stderr


def test_a_live_workers_long_job_is_never_run_twice(client, start_worker, redis_server):
    """Three leases long, with an idle second worker sweeping all the while."""
    for name in ("w1", "w2"):
        start_worker(name, concurrency=1, SANDBOX_LEASE=str(LEASE))
    seconds = 3 * LEASE
    job = sandbox.run.delay(
        f"import time\ntime.sleep({seconds})\nprint('once')", limits={"wall_time": seconds + 10}
    )
    result = job.get(timeout=60)
    assert result["status"] == "ok", result
    assert result["stdout"] == "once\n"
    assert _deliveries(redis_server.url, job.id) == 1
    # Acknowledged (late: just after the result is stored), nothing is left to restore.
    _wait_acknowledged(redis_server.url)


def test_an_idempotency_key_sends_a_job_once(client, start_worker, redis_server):
    """Submitted twice with one key (a client's retry): one job, one result, one id."""
    worker = start_worker("w1", concurrency=1)
    code = "import random\nprint(random.random())"
    first = sandbox.run.delay(code, idempotency_key="order-1234")
    again = sandbox.run.delay(code, idempotency_key="order-1234")
    assert again.id == first.id
    result = first.get(timeout=60)
    assert again.get(timeout=60) == result
    later = sandbox.run.delay(code, idempotency_key="order-1234")  # after it ended: its result
    assert later.get(timeout=60) == result
    other = sandbox.run.delay(code, idempotency_key="order-5678")
    assert other.id != first.id
    assert other.get(timeout=60)["stdout"] != result["stdout"]
    assert _deliveries(redis_server.url, first.id) == 1
    assert worker.text().count(f"Task sandbox.run[{first.id}] received") == 1


def test_a_redis_restart_does_not_hand_a_live_workers_job_to_another(
    client, start_worker, redis_server
):
    """Redis SIGKILLed and restarted under a running job: its worker keeps the lease.

    After the restart the worker's consumer reconnects on a new channel, which
    knows nothing of the messages delivered on the old one; the leases are
    the worker's (every job it holds), not a channel's, so the job's lease is
    still renewed (an outage up to two thirds of a lease is harmless), the
    idle second worker never gets it, and the job's message, delivered on
    the old channel, is acknowledged when it ends (worker/broker.py).
    """
    lease = 2 * LEASE  # the outage (1 s and a restart) well inside two thirds of it
    for name in ("w1", "w2"):
        start_worker(name, concurrency=1, SANDBOX_LEASE=str(lease))
    seconds = 2 * lease
    job = sandbox.run.delay(
        f"import time\ntime.sleep({seconds})\nprint('once')", limits={"wall_time": seconds + 10}
    )
    _wait_started(job)
    assert redis_server.process is not None
    redis_server.process.kill()
    redis_server.process.wait(10)
    redis_server.process = None
    time.sleep(1)
    redis_server.start()
    result = job.get(timeout=90)
    assert result["status"] == "ok", result
    assert result["stdout"] == "once\n"
    _wait_acknowledged(redis_server.url)  # gone from Redis: no second delivery can come
    assert _deliveries(redis_server.url, job.id) == 1


def test_sigterm_drains_finishing_what_fits_and_requeueing_the_rest(
    client, start_worker, redis_server
):
    """A stopping worker (Kubernetes's SIGTERM) finishes a short job and hands on a long one.

    With ``SANDBOX_DRAIN_TIMEOUT`` 3 s, the 1 s job ends on the stopping
    worker; the 60 s one goes back to the queue when the drain runs out and
    runs on the other worker at once, not a lease later. The stopping worker
    exits cleanly, leaving nothing behind (the fixture checks).
    """
    lease = 30  # far longer than the test: the requeue is the drain's, not the sweep's
    leaving = start_worker(
        "leaving", concurrency=2, SANDBOX_DRAIN_TIMEOUT="3", SANDBOX_LEASE=str(lease)
    )
    short = sandbox.run.delay("import time\ntime.sleep(1)\nprint('short')")
    long = sandbox.run.delay(
        "import time, sys\ntime.sleep(6)\nprint('long')", limits={"wall_time": 60}
    )
    _wait_started(short)
    _wait_started(long)
    leaving.process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    staying = start_worker("staying", concurrency=1, SANDBOX_LEASE=str(lease))
    assert short.get(timeout=30)["stdout"] == "short\n"
    assert leaving.process.wait(30) == 0, leaving.text()
    left = time.monotonic() - stopped
    result = long.get(timeout=60)
    requeued = time.monotonic() - stopped
    assert result["status"] == "ok", result
    assert result["stdout"] == "long\n"
    assert requeued < lease, requeued  # the drain's requeue, not the lease's sweep
    assert f"Task sandbox.run[{long.id}] received" in staying.text()
    assert f"Task sandbox.run[{short.id}] received" not in staying.text()
    assert "drain: 1 job(s) still running after 3 s" in leaving.text()
    # A drained delivery is not one that killed its worker.
    assert _deliveries(redis_server.url, long.id) == 1
    assert _strikes(redis_server.url, long.id) == 0
    _wait_acknowledged(redis_server.url)  # nothing waits for a lease to run out
    assert _deliveries(redis_server.url, short.id) == 1
    print(f"\nthe stopping worker exited {left:.1f} s after SIGTERM (drain 3 s)")
    assert left < 3 + 15, left


def test_an_idempotency_key_whose_first_submit_died_before_sending_is_sent_by_a_retry(
    client, start_worker, redis_server
):
    """The first submit claimed the key, then its process died before the job was sent."""
    from worker.tasks import CLAIM_SECONDS, IDEMPOTENCY_KEY, idempotent_id

    start_worker("w1", concurrency=1)
    task_id = idempotent_id("sandbox.run", "order-dead-client")
    # What the dead submit left: its claim, which expires.
    redis.Redis.from_url(redis_server.url).set(IDEMPOTENCY_KEY.format(task_id), "claimed", ex=2)
    started = time.monotonic()
    job = sandbox.run.delay("print('sent by the retry')", idempotency_key="order-dead-client")
    waited = time.monotonic() - started
    assert job.id == task_id
    assert job.get(timeout=60)["stdout"] == "sent by the retry\n"
    assert 1 <= waited < CLAIM_SECONDS, waited  # it waited out the claim, no longer
    assert redis.Redis.from_url(redis_server.url).get(IDEMPOTENCY_KEY.format(task_id)) == b"sent"


def test_a_duplicate_of_a_finished_job_returns_its_result_without_running(
    client, start_worker, redis_server
):
    """A message of a job that already ended (a lost host came back, an ack that never
    arrived): the redelivery returns the stored result; the job does not run again."""
    worker = start_worker("w1", concurrency=1)
    code = "import random\nprint(random.random())"
    first = sandbox.run.delay(code)
    result = first.get(timeout=60)
    again = sandbox.run.apply_async(kwargs={"code": code}, task_id=first.id)  # the duplicate
    deadline = time.monotonic() + 30
    while f"job {first.id} already has a result" not in worker.text():
        assert time.monotonic() < deadline, worker.text()
        time.sleep(0.1)
    assert again.get(timeout=30) == result
    assert _deliveries(redis_server.url, first.id) == 2
    assert worker.text().count(f"{first.id}: ok in") == 1  # ran once
