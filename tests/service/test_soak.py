"""The soak, short: mixed hostile jobs through a real worker, then nothing leaked.

`bench/soak.py --jobs 3000` is the long version (README gives its figures).
It runs as its own process, as an operator runs it: a Celery client app of
its own, aimed at its own redis-server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.redis, pytest.mark.slow]

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


@pytest.mark.timeout(300)
def test_short_soak_answers_every_job_and_leaks_nothing():
    out = subprocess.run(
        [sys.executable, str(SOAK), "--jobs", "60", "--json"],
        capture_output=True,
        text=True,
        timeout=280,
    )
    report = json.loads(out.stdout)
    assert report["wrong"] == [], report["wrong"]
    assert report["leaks"] == {}, report["leaks"]
    assert report["cgroups_after_shutdown"] == []
    assert len(report["kinds"]) == 12  # the inotify and counter exhaustions among them
    assert all(report["host_root_gets"].values()), report["host_root_gets"]
    assert report["ok"]
    assert out.returncode == 0, out.stderr
