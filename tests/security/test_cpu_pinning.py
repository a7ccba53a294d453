"""CPU pinning (SANDBOX_PIN_CPUS): concurrent jobs never share a CPU, for stable timing."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from sandbox import Status
from tests.conftest import TEST_SETTINGS, open_runtime
from tests.security.helpers import SPIN, assert_host_healthy, run

pytestmark = [pytest.mark.root, pytest.mark.overlay]

CPUS = len(os.sched_getaffinity(0))

AFFINITY = """
import json, os, time
print(json.dumps(sorted(os.sched_getaffinity(0))), flush=True)
time.sleep(0.3)
"""


@pytest.fixture(scope="module")
def runtime():
    """The suite's runtime with every CPU of the host a pinning slot (SANDBOX_PIN_CPUS)."""
    yield from open_runtime(TEST_SETTINGS.model_copy(update={"pin_cpus": f"0-{CPUS - 1}"}))


async def test_pinned_jobs_run_on_cpus_of_their_own(runtime):
    """Concurrent jobs each see one CPU, never the same; more jobs than CPUs wait their turn."""
    jobs = [run(runtime, AFFINITY, limits={"wall_time": 10}) for _ in range(CPUS + 1)]
    results = await asyncio.gather(*jobs)
    seen = [json.loads(r.stdout) for r, _ in results]
    assert all(r.status is Status.OK for r, _ in results), results
    assert all(len(cpus) == 1 for cpus in seen), seen
    # The first CPUS jobs ran at once, each alone on its CPU; the last one waited.
    first = sorted(cpus[0] for cpus in seen[:CPUS])
    assert first == list(range(CPUS)), seen
    walls = sorted(r.wall_time for r, _ in results)
    assert walls[-1] < 1.5, "a job's wall time counted its wait for a CPU"
    await assert_host_healthy(runtime)


async def test_a_pinned_spinner_is_confined_to_its_cpu(runtime):
    result, _ = await run(runtime, SPIN, argv=("2",), limits={"wall_time": 5, "cpus": CPUS})
    assert result.status is Status.OK, result
    assert result.cpu_time < 1.3 * result.wall_time, result
