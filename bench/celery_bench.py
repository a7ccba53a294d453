"""The worker app plus two reference tasks, for bench/service.py only.

``bench.noop`` does nothing (Celery's own cost); ``bench.bare`` runs the same
fixed program as the sandboxed job, unsandboxed, as a plain subprocess (the
cost without isolation). Never deploy this module: it exists to measure.
"""

from __future__ import annotations

import subprocess
from typing import Any

from worker.app import app

__all__ = ["app"]

PROGRAM = ["/bin/sh", "-c", "exec /bin/true"]


@app.task(name="bench.noop")
def noop() -> dict[str, Any]:
    return {}


@app.task(name="bench.bare")
def bare() -> dict[str, Any]:
    proc = subprocess.run(PROGRAM, capture_output=True, check=False)
    return {"exit_code": proc.returncode}
