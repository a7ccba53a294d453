"""The worker service end to end: client -> Redis -> Celery worker -> sandbox -> result."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import sandbox
from tests.service.conftest import PARENT

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.redis]

SANDBOX = str(Path(sys.executable).with_name("sandbox"))
SUM = "print(sum(map(int, input().split())))"


def _running_job_owner_pids() -> set[int]:
    """Pids of worker processes whose runtime has a job running now (from cgroup names)."""
    pids = set()
    root = Path("/sys/fs/cgroup")
    for procs in [
        *root.glob(f"pids/{PARENT}/*/job/cgroup.procs"),
        *root.glob(f"{PARENT}/*/job/cgroup.procs"),
    ]:
        # A ready pool container's cgroup holds only its waiting job process,
        # still named after the container's init; a running job has exec'd.
        for pid in procs.read_text().split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if not cmdline.startswith(b"sandbox-init"):
                pids.add(int(procs.parent.parent.name.split("-")[0]))
    return pids


def test_run_delay_returns_the_job_result(client, start_worker):
    """The issue's example, word for word: the result is the JobResult as a dict."""
    start_worker()
    r = sandbox.run.delay(SUM, stdin="1 2\n", limits={"memory": "64M", "wall_time": 2})
    result = r.get(timeout=30)
    assert result["status"] == "ok"
    assert result["stdout"] == "3\n"
    assert result["exit_code"] == 0
    assert result["oom_killed"] is False
    assert set(result) >= {"stderr", "signal", "timed_out", "wall_time", "cpu_time", "memory_peak"}


REACH_REDIS = """
import errno, json, os, socket, sys
out = {}
for host in ("127.0.0.1", "::1", "localhost"):
    try:
        socket.create_connection((host, int(sys.argv[1])), timeout=2).close()
        out[host] = "connected"
    except OSError as e:
        out[host] = errno.errorcode.get(e.errno, str(e))
out["fds"] = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
out["env"] = sorted(os.environ)
print(json.dumps(out))
"""


def test_a_job_cannot_reach_the_workers_redis(client, start_worker, redis_server):
    """The attack the people we build for fear most: the job dials the broker the worker
    uses, on the host's loopback. The job's loopback is its own; nothing answers there.
    Nor does the worker's Redis connection or environment come in with the job."""
    start_worker()
    r = sandbox.run.delay(REACH_REDIS, argv=[str(redis_server.port)], limits={"wall_time": 10})
    result = r.get(timeout=60)
    assert result["status"] == "ok", result
    seen = json.loads(result["stdout"])
    assert seen.pop("fds") == [0, 1, 2, 3]  # stdio, and the listing's own descriptor
    assert not {"SANDBOX_REDIS_URL", "SANDBOX_CGROUP_PARENT"} & set(seen.pop("env"))
    assert set(seen.values()) <= {"ECONNREFUSED", "EADDRNOTAVAIL", "ENETUNREACH"}, seen
    assert redis_server.llen("sandbox") == 0  # and the broker is as it was


CPP_SUM = "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b; }\n"


def test_judge_delay_as_in_the_issue(client, start_worker):
    """`sandbox.judge.delay(...)`: compile once on a worker, verdicts per case."""
    start_worker()
    r = sandbox.judge.delay(
        code=CPP_SUM,
        language="cpp",
        tests=[{"stdin": "1 2\n", "expected": "3\n"}, {"stdin": "5 7\n", "expected": "12\n"}],
        limits={"cpu_time": 1, "memory": "256M"},
        compare="tokens",
    )
    result = r.get(timeout=120)
    assert result["status"] == "accepted", result
    assert result["compile"]["status"] == "accepted"
    assert [t["status"] for t in result["tests"]] == ["accepted", "accepted"]
    assert [t["stdout"] for t in result["tests"]] == ["3", "12"]
    for case in result["tests"]:
        assert 0 < case["cpu_time"] < 1
        assert case["memory_peak"] > 0


def test_judge_a_problem_package_that_the_worker_has(client, start_worker, tmp_path):
    """`sandbox.judge.delay(code=..., problem=NAME)`: the worker reads the package under
    SANDBOX_PROBLEMS_DIR (its cases, limits, validator); a name is all the client sends."""
    from tests.unit.test_problem import package

    problems = tmp_path / "problems"
    cases = {"sample/1": ("1 2\n", "3\n"), "secret/g1/1": ("5 7\n", "12\n")}
    package(problems / "aplusb", "limits:\n  time_limit: 1\n", cases)
    start_worker(SANDBOX_PROBLEMS_DIR=str(problems))
    solution = "a, b = map(int, input().split())\nprint(a + b)\n"
    result = sandbox.judge.delay(code=solution, problem="aplusb").get(timeout=120)
    assert result["status"] == "accepted", result
    assert [t["name"] for t in result["tests"]] == ["sample/1", "secret/g1/1"]
    slow = sandbox.judge.delay(code="while True: pass\n", problem="aplusb").get(timeout=120)
    assert slow["status"] == "time_limit"
    assert 1 <= slow["tests"][0]["cpu_time"] < 2  # the package's time limit
    missing = sandbox.judge.delay(code=solution, problem="nosuch").get(timeout=120)
    assert missing["status"] == "internal_error"
    assert "no such problem directory" in missing["error"]
    with pytest.raises(ValidationError, match="problem"):
        sandbox.judge.delay(code=solution, problem="../etc")  # a name, never a path
    with pytest.raises(ValidationError, match="at least one test case, or a problem"):
        sandbox.judge.delay(code=solution)


def test_judge_refuses_on_the_client_what_would_run_too_long(client, redis_server):
    before = redis_server.llen("sandbox")
    with pytest.raises(ValueError, match="SANDBOX_MAX_JUDGE_TIME"):
        sandbox.judge.delay(code="print(1)", tests=[{"stdin": ""}] * 1000, limits={"wall_time": 60})
    with pytest.raises(ValidationError, match="unknown language"):
        sandbox.judge.delay(code="x", language="cobol", tests=[{}])
    assert redis_server.llen("sandbox") == before


def test_judge_works_locally_without_redis():
    """`sandbox.judge(...)` is a plain call too: it runs here, as `sandbox.run(...)` does."""
    from worker.runtime import runtime_host

    try:
        result = sandbox.judge(
            code="print(int(input()) * 2)", tests=[{"stdin": "21\n", "expected": "42\n"}]
        )
    finally:
        runtime_host().stop()
    assert result["status"] == "accepted", result


def test_bad_call_raises_on_the_client_and_sends_nothing(client, redis_server):
    """Arguments are validated before sending: pydantic's message, an empty queue."""
    before = redis_server.llen("sandbox")
    with pytest.raises(ValidationError, match=r"limits\.memory"):
        sandbox.run.delay("print(1)", limits={"memory": "lots"})
    with pytest.raises(ValidationError, match="language"):
        sandbox.run.delay("print(1)", language="cobol")
    assert redis_server.llen("sandbox") == before


async def test_async_submit_does_not_block_the_loop(client, start_worker):
    """`await sandbox.submit(...)` from an event loop, which keeps ticking meanwhile."""
    start_worker()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    result = await sandbox.submit("import time; time.sleep(0.5); print('slept')", within=30)
    tick_task.cancel()
    assert result.stdout == "slept\n"
    assert ticks > 20


def test_submit_command(client, start_worker, tmp_path, redis_server):
    """`sandbox submit FILE --json` goes through Redis and prints the result."""
    start_worker()
    prog = tmp_path / "prog.py"
    prog.write_text(SUM)
    data = tmp_path / "in.txt"
    data.write_text("20 22\n")
    env = {**os.environ, "SANDBOX_REDIS_URL": redis_server.url}
    out = subprocess.run(
        [SANDBOX, "submit", "--json", "--stdin", str(data), str(prog)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["stdout"] == "42\n"
    plain = subprocess.run(
        [SANDBOX, "submit", "--stdin", str(data), str(prog)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (plain.returncode, plain.stdout) == (0, "42\n")


def test_sandbox_not_celery_ends_a_slow_job(client, start_worker):
    """A job past its wall limit is ended by the sandbox, with its partial output."""
    start_worker()
    code = "import time\nprint('started', flush=True)\ntime.sleep(30)\n"
    result = sandbox.run.delay(code, limits={"wall_time": 1}).get(timeout=30)
    assert result["status"] == "timeout"
    assert result["stdout"] == "started\n"


def test_prefetch_one_short_jobs_pass_a_long_one(client, start_worker):
    """With one job prefetched per process, short jobs are not stuck behind a long one."""
    start_worker(concurrency=2)
    long = sandbox.run.delay("import time; time.sleep(6)", limits={"wall_time": 10})
    time.sleep(0.5)
    start = time.monotonic()
    shorts = [sandbox.run.delay(f"print({i})") for i in range(4)]
    assert [s.get(timeout=30)["stdout"] for s in shorts] == [f"{i}\n" for i in range(4)]
    assert time.monotonic() - start < 4
    assert long.get(timeout=30)["status"] == "ok"


def test_job_survives_its_worker_process_being_killed(client, start_worker):
    """SIGKILL the process running a job: the job is redelivered and its client gets a result."""
    worker = start_worker(concurrency=2)
    r = sandbox.run.delay("import time; time.sleep(2); print('done')", limits={"wall_time": 10})
    deadline = time.monotonic() + 20
    while not (owners := _running_job_owner_pids()):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    victim = owners.pop()
    os.kill(victim, signal.SIGKILL)
    result = r.get(timeout=60)
    assert result["status"] == "ok", result
    assert result["stdout"] == "done\n"
    assert f"Process {victim!r}" in worker.text() or "WorkerLostError" in worker.text()


def test_poison_job_fails_after_bounded_attempts(client, start_worker):
    """A job whose worker dies on every delivery ends with a failed result, not a loop."""
    start_worker(concurrency=1, SANDBOX_MAX_ATTEMPTS="2")
    r = sandbox.run.delay("import time; time.sleep(30)", limits={"wall_time": 40})
    killed = 0
    deadline = time.monotonic() + 90
    while not r.ready():
        assert time.monotonic() < deadline, "the poison job looped"
        owners = _running_job_owner_pids()
        for pid in owners:
            os.kill(pid, signal.SIGKILL)
            killed += 1
            time.sleep(0.5)
        time.sleep(0.05)
    result = r.get(timeout=10)
    assert result["status"] == "internal_error"
    assert "not retried" in result["error"]
    assert killed == 2


def test_worker_refuses_a_host_that_cannot_sandbox(client, start_worker, tmp_path):
    """No usable cgroups: the worker exits at once and says why."""
    worker = start_worker(wait=False, SANDBOX_CGROUP_ROOT=str(tmp_path))
    assert worker.process.wait(60) != 0
    assert "cannot run sandboxes" in worker.text()
    assert "sandbox doctor" in worker.text()


def test_warm_shutdown_finishes_the_running_job(client, start_worker):
    """SIGTERM during a job: the job completes and is answered, then the worker exits."""
    worker = start_worker(concurrency=1)
    r = sandbox.run.delay("import time; time.sleep(2); print('finished')", limits={"wall_time": 10})
    deadline = time.monotonic() + 20
    while not _running_job_owner_pids():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert worker.stop(signal.SIGTERM) == 0
    assert r.get(timeout=10)["stdout"] == "finished\n"


@pytest.mark.slow
def test_two_workers_share_a_queue_exactly_once(client, start_worker):
    """200 jobs at once over two workers: every one answered, correct, run once."""
    w1 = start_worker("w1", concurrency=2)
    w2 = start_worker("w2", concurrency=2)
    pending = [sandbox.run.delay(f"print({i} * {i})", language="python") for i in range(200)]
    results = [p.get(timeout=300) for p in pending]
    assert [r["stdout"] for r in results] == [f"{i * i}\n" for i in range(200)]
    ids = {p.id for p in pending}
    # A worker logs "succeeded" after it stored the result: the last lines may lag.
    deadline = time.monotonic() + 30
    while True:
        done = re.findall(r"Task sandbox\.run\[([0-9a-f-]+)\] succeeded", w1.text() + w2.text())
        if set(done) >= ids or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sorted(done) == sorted(ids)  # each exactly once
    assert re.search(r"Task sandbox\.run\[", w1.text())
    assert re.search(r"Task sandbox\.run\[", w2.text())


def test_redis_unreachable_at_submit(tmp_path):
    """No Redis: `sandbox submit` fails quickly with a clear error, not a traceback."""
    prog = tmp_path / "p.py"
    prog.write_text("print(1)")
    env = {**os.environ, "SANDBOX_REDIS_URL": "redis://127.0.0.1:1/0"}
    start = time.monotonic()
    out = subprocess.run(
        [SANDBOX, "submit", str(prog)], capture_output=True, text=True, env=env, timeout=60
    )
    assert time.monotonic() - start < 20
    assert out.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in out.stderr
    assert "SANDBOX_REDIS_URL" in out.stderr
    assert "Traceback" not in out.stderr


def _wait_for_result(app: Any, task_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # Redis may still be coming back
            meta = app.backend.get_task_meta(task_id)
            if meta["status"] in ("SUCCESS", "FAILURE"):
                return dict(meta)
        time.sleep(0.2)
    return {"status": "TIMEOUT"}


def test_redis_restart_keeps_queued_jobs_and_workers_reconnect(client, start_worker, redis_server):
    """Jobs queued before a Redis restart survive it (append-only file); workers reconnect."""
    queued = sandbox.run.delay("print('queued before restart')")
    redis_server.stop()
    redis_server.start()
    worker = start_worker()
    assert queued.get(timeout=60)["stdout"] == "queued before restart\n"
    redis_server.stop()
    time.sleep(1)
    redis_server.start()
    after = sandbox.run.delay("print('after restart')")
    # Celery's pub/sub result consumer may miss a result published right after
    # a restart (celery/celery#4857); SandboxResult.get reads the stored one.
    assert after.get(timeout=90)["stdout"] == "after restart\n", worker.text()
    meta = _wait_for_result(client, after.id, timeout=10)
    assert meta["status"] == "SUCCESS", worker.text()
    assert worker.process.poll() is None
