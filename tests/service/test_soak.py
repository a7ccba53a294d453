"""The soak, short: mixed hostile jobs through a real worker, then nothing leaked.

`bench/soak.py --jobs 2000` is the long version (README gives its figures).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.redis, pytest.mark.slow]

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_short_soak_answers_every_job_and_leaks_nothing():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    assert spec is not None
    assert spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = soak  # dataclasses look their module up there
    spec.loader.exec_module(soak)
    report = soak.run(jobs=50)
    assert report["wrong"] == [], report["wrong"]
    assert report["leaks"] == {}, report["leaks"]
    assert report["cgroups_after_shutdown"] == []
    assert set(report["kinds"]) == {kind.name for kind in soak.MIX}
    assert report["ok"]
