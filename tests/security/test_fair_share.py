"""Fair share: a job cannot take more CPU than its quota (CFS bandwidth, cpus=1 by default)."""

from __future__ import annotations

import os

import pytest

from sandbox import JobSpec, SpecError, Status
from tests.conftest import TEST_SETTINGS
from tests.security.helpers import SPIN, assert_host_healthy, limits, run

pytestmark = [pytest.mark.root, pytest.mark.overlay]


CPUS = len(os.sched_getaffinity(0))


async def test_many_spinning_processes_get_one_cpu(runtime):
    """With the default quota (1 CPU), four spinners get about one CPU second per second."""
    result, _ = await run(runtime, SPIN, argv=("4",), limits={"wall_time": 5})
    assert result.status is Status.OK, result
    assert result.cpu_time < 1.3 * result.wall_time, result
    await assert_host_healthy(runtime)


@pytest.mark.skipif(CPUS < 2, reason="needs two CPUs to show the quota is what limits")
async def test_a_larger_quota_gives_more(runtime):
    result, _ = await run(runtime, SPIN, argv=("4",), limits={"wall_time": 5, "cpus": 2})
    assert result.status is Status.OK, result
    assert result.cpu_time > 1.4 * result.wall_time, result


async def test_more_cpus_than_allowed_is_refused(runtime):
    with pytest.raises(SpecError, match=r"limits\.cpus"):
        await runtime.execute(JobSpec(code="", limits=limits(cpus=TEST_SETTINGS.max_cpus + 1)))
