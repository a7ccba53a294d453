"""The worker image's entrypoint, run here as CI runs it (no Docker engine needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay]

ROOT = Path(__file__).resolve().parents[2]


def test_entrypoint_checks_the_host_then_starts_a_worker(settings):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "SANDBOX_ENTRYPOINT_DRY_RUN": "1",
        "SANDBOX_RUN_DIR": str(settings.run_dir),
        "SANDBOX_CGROUP_PARENT": settings.cgroup_parent,
    }
    out = subprocess.run(
        [str(ROOT / "deploy/entrypoint.sh"), "--concurrency", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "sandbox worker --concurrency 2"
    assert "this host can run sandboxes" in out.stdout + out.stderr
