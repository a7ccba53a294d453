"""Layers import one way only (docs/adr/0012-layers.md).

The contracts live in pyproject.toml (``[tool.importlinter]``) and are
checked here by import-linter, which reads every module's imports (lazy ones
inside functions too) without running them; one rule it cannot say is
checked with grimp, the graph it is built on.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_nothing_of_ours_imports_the_public_facade():
    """sandbox/__init__.py is for users: our modules import the module that holds a name."""
    graph = grimp.build_graph("sandbox", "worker")
    assert graph.find_modules_that_directly_import("sandbox") == set()
