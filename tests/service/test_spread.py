"""A judge's cases shared among free workers (JudgeSpec.spread, worker/judge.py), for real:
compiled once, the binary sent with each share, every case judged once, in order; with no
free worker the coordinator judges every share itself (no deadlock)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import sandbox
from tests.service.conftest import PARENT, RUN_DIR

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.redis]

SANDBOX = str(Path(sys.executable).with_name("sandbox"))

# Sleeps a little (so that an idle worker takes a share while the coordinator is busy).
SLOW_SUM = """#include <cstdio>
#include <unistd.h>
int main() {
    long a, b;
    std::scanf("%ld %ld", &a, &b);
    usleep(400000);
    std::printf("%ld\\n", a + b);
}
"""
CASES = [{"stdin": f"{i} {i}\n", "expected": f"{2 * i}\n", "name": f"c{i}"} for i in range(8)]


def _judge(spread: int) -> dict[str, Any]:
    pending = sandbox.judge.delay(
        code=SLOW_SUM, language="cpp", tests=CASES, spread=spread, limits={"wall_time": 10}
    )
    result: dict[str, Any] = pending.get(timeout=240)
    return result


def _elsewhere(*logs: str) -> list[int]:
    return [
        int(n) for log in logs for n in re.findall(r"in \d+ shares, (\d+) judged elsewhere", log)
    ]


def test_a_judge_spreads_its_cases_over_free_workers(client, start_worker):
    first = start_worker("w1", concurrency=1)
    second = start_worker("w2", concurrency=1)
    result = _judge(spread=2)
    assert result["status"] == "accepted", result
    assert [t["name"] for t in result["tests"]] == [c["name"] for c in CASES]
    assert [t["stdout"] for t in result["tests"]] == [f"{2 * i}\n" for i in range(8)]
    assert result["compile"]["status"] == "accepted"
    logs = first.text(), second.text()
    assert _elsewhere(*logs) == [1], logs  # the idle worker judged the other share
    assert sum(len(re.findall(r"share share-\S+: 4 cases judged", log)) for log in logs) == 1


def test_a_scored_judge_spreads_and_is_scored_whole(client, start_worker):
    """Groups are the coordinator's to score: each share carries its cases only."""
    first = start_worker("w1", concurrency=1)
    second = start_worker("w2", concurrency=1)
    wrong = SLOW_SUM.replace("a + b", "a + b + (a == 7)")  # c7 is wrong
    groups = [  # "first" names a case that only the coordinator's share holds
        {"name": "first", "points": 30, "cases": ["c0"]},
        {"name": "rest", "points": 70, "cases": ["c[1-7]"], "aggregation": "sum"},
    ]
    result = sandbox.judge.delay(
        code=wrong, language="cpp", tests=CASES, spread=2, groups=groups,
        limits={"wall_time": 10},
    ).get(timeout=240)  # fmt: skip
    assert result["status"] == "wrong_answer", result
    assert [t["status"] for t in result["tests"]][-2:] == ["accepted", "wrong_answer"]
    assert {g["name"]: g["score"] for g in result["groups"]} == {"first": 30, "rest": 60}
    assert result["score"] == 90
    logs = first.text(), second.text()
    assert sum(len(re.findall(r"share share-\S+: 4 cases judged", log)) for log in logs) == 1


def test_with_no_free_worker_the_coordinator_judges_every_share(client, start_worker):
    only = start_worker("w1", concurrency=1)
    result = _judge(spread=3)
    assert result["status"] == "accepted", result
    assert [t["stdout"] for t in result["tests"]] == [f"{2 * i}\n" for i in range(8)]
    assert _elsewhere(only.text()) == [0]


def test_spread_is_refused_beyond_its_bounds(client):
    with pytest.raises(ValueError, match="spread"):
        sandbox.judge.delay(code="print(1)", tests=[{}], spread=65)


def test_a_lost_share_is_judged_by_its_coordinator(client, start_worker, redis_server):
    """The worker holding a share loses every process: the coordinator waits at most the
    share's budget (every case's wall limit), judges it itself, and nothing is lost."""
    fleet = [start_worker(name, concurrency=1, SANDBOX_LEASE="3") for name in ("w1", "w2")]
    store = redis.Redis.from_url(redis_server.url)
    earlier = set(store.keys("sandbox:share:*"))  # of other tests' judges
    pending = sandbox.judge.delay(
        code=SLOW_SUM, language="cpp", tests=CASES, spread=2, limits={"wall_time": 2}
    )
    deadline = time.monotonic() + 120
    while not (claims := set(store.keys("sandbox:share:*")) - earlier):  # a share started
        assert time.monotonic() < deadline, "no worker took the share"
        time.sleep(0.01)
    claim = claims.pop()
    share = (claim.decode() if isinstance(claim, bytes) else claim).removeprefix("sandbox:share:")
    doomed = next(w for w in fleet if f"sandbox.judge_share[{share}]" in w.text())
    os.killpg(doomed.process.pid, signal.SIGKILL)  # its host is gone
    doomed.process.wait(10)
    result = pending.get(timeout=240)
    assert result["status"] == "accepted", result
    assert [t["stdout"] for t in result["tests"]] == [f"{2 * i}\n" for i in range(8)]
    coordinator = next(w for w in fleet if w is not doomed)
    assert "had no answer; judged here" in coordinator.text()
    env = {**os.environ, "SANDBOX_RUN_DIR": str(RUN_DIR), "SANDBOX_CGROUP_PARENT": PARENT}
    gc = subprocess.run([SANDBOX, "gc", "--json"], capture_output=True, text=True, env=env)
    assert gc.returncode == 0, gc.stderr  # the dead runtime's cgroups and records reclaimed
