"""Job records (sandbox/runtime/jobs.py) and the JSON log format, on tmp_path."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sandbox.logs import JsonFormatter
from sandbox.runtime import jobs


def _record(job_id: str = "123-abc.1", started: float = 10.0) -> jobs.JobRecord:
    return jobs.JobRecord(
        id=job_id,
        cgroup="123-abc.1",
        owner="123-abc",
        task_id="t-1",
        image="host",
        language="python",
        started=started,
        init_pid=4242,
        uid=65534,
        gid=65534,
        capabilities=0,
        last_cap=40,
        rlimits=((7, 256, 256),),
        seccomp_profile="default",
        env=("PATH=/usr/bin",),
        workdir="/box",
        cpu_base_ns=0,
        limits={"memory": 1},
    )


def test_records_round_trip_and_list_oldest_first(tmp_path: Path):
    jobs.write(tmp_path, _record("a.2", started=20.0))
    jobs.write(tmp_path, _record("a.1", started=10.0))
    (tmp_path / "jobs" / "broken.json").write_text("{not json")
    (tmp_path / "jobs" / "other.json").write_text('{"id": "x"}')
    found = jobs.read_all(tmp_path)
    assert [r.id for r in found] == ["a.1", "a.2"]
    assert found[0] == _record("a.1", started=10.0)
    assert not list((tmp_path / "jobs").glob(".*.tmp"))


def test_kill_marker_and_removal(tmp_path: Path):
    jobs.write(tmp_path, _record())
    assert not jobs.kill_requested(tmp_path, "123-abc.1")
    jobs.request_kill(tmp_path, "123-abc.1")
    assert jobs.kill_requested(tmp_path, "123-abc.1")
    jobs.remove(tmp_path, "123-abc.1")
    jobs.remove(tmp_path, "123-abc.1")  # twice: harmless
    assert list((tmp_path / "jobs").iterdir()) == []
    assert jobs.read_all(tmp_path / "nowhere") == []


def test_json_log_lines_carry_the_fields():
    record = logging.LogRecord("sandbox.jobs", logging.INFO, __file__, 1, "job %s", ("j",), None)
    record.fields = {"job": "j", "status": "ok", "wall_time": 0.5}
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "job j"
    assert line["level"] == "info"
    assert line["logger"] == "sandbox.jobs"
    assert (line["job"], line["status"], line["wall_time"]) == ("j", "ok", 0.5)
    assert line["time"].endswith("Z")
