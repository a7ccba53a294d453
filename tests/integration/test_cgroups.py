"""The job's cgroup on the real kernel, per version.

The ``cgroup2`` tests are the focused set that also runs in a pure cgroup v2
VM (scripts/test runs them under shared/tools/cgroup2-vm on v1 hosts); the
``cgroup_v1`` tests check what only v1 hosts have. Both check what the
JobResult reports against the kernel's own counters.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox import JobSpec, Limits, Status
from sandbox.errors import UnsupportedError
from sandbox.kernel.cgroups import detect_setup
from sandbox.runtime.runner import Runtime
from sandbox.settings import Settings

BALLOON = "x = bytearray(256 * 2**20)\nprint('survived')\n"
FORK_BOMB = """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        n += 1
except OSError as e:
    print('fork failed after', n, e.errno)
"""
SPIN = "while True:\n    pass\n"
SPINNERS = """
import os, time
for _ in range(2):
    os.fork()
end = time.monotonic() + 2
while time.monotonic() < end:
    pass
"""


def _parent_dirs(settings: Settings) -> list[Path]:
    root = settings.cgroup_root
    direct = root / settings.cgroup_parent
    if (root / "cgroup.controllers").exists():
        return [direct]
    return [p for p in root.glob(f"*/{settings.cgroup_parent}") if p.is_dir()]


def _job_cgroups(settings: Settings, runtime: Runtime) -> list[Path]:
    """The runtime's job cgroups, less its warm pool's ready containers."""
    pool = {c.cgroup.name for c in runtime.pool_containers()}
    return [
        c
        for d in _parent_dirs(settings)
        for c in d.iterdir()
        if c.is_dir() and c.name.startswith(runtime.owner) and c.name not in pool
    ]


@pytest.mark.cgroup2
class TestCgroupV2:
    async def test_hello_and_accounting(self, runtime, settings):
        """A job runs, and CPU and memory figures come from the v2 cgroup."""
        result = await runtime.execute(JobSpec(code="print(sum(range(10**6)))"))
        assert result.status is Status.OK, result
        assert result.stdout == f"{sum(range(10**6))}\n"
        assert result.cpu_time > 0
        assert result.memory_peak > 1 << 20

    async def test_controllers_enabled_in_our_parent(self, runtime, settings):
        """Our parent enables memory and pids for its children; nothing else is changed."""
        parent = settings.cgroup_root / settings.cgroup_parent
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        assert {"memory", "pids"} <= set(enabled)
        assert (parent / "cgroup.procs").read_text() == ""

    async def test_memory_limit_oom_kill(self, runtime):
        """memory.max holds, no swap, and memory.events oom_kill sets oom_killed."""
        spec = JobSpec(code=BALLOON, limits=Limits(memory="64M", wall_time=30, cpu_time=30))
        result = await runtime.execute(spec)
        assert result.oom_killed
        assert result.status is Status.MEMORY_LIMIT
        assert "survived" not in result.stdout
        assert result.memory_peak <= 64 * 2**20

    async def test_pids_limit(self, runtime):
        """pids.max holds against a fork bomb and pids.events reports it."""
        spec = JobSpec(code=FORK_BOMB, limits=Limits(pids=8, wall_time=30, cpu_time=30))
        result = await runtime.execute(spec)
        assert result.pids_limit_hit
        assert "fork failed" in result.stdout

    async def test_timeout_kills_everything(self, runtime, settings):
        """At the wall limit every process dies and the job's cgroup is removed."""
        code = "import os, time\nfor _ in range(3):\n    os.fork()\ntime.sleep(60)\n"
        result = await runtime.execute(JobSpec(code=code, limits=Limits(wall_time=3)))
        assert result.timed_out
        assert result.status is Status.TIMEOUT
        await runtime.pool_settled()
        assert _job_cgroups(settings, runtime) == []

    async def test_cpu_time_limit(self, runtime):
        """cpu.stat usage is the source of the CPU limit and figure."""
        spec = JobSpec(code=SPIN, limits=Limits(cpu_time=1, wall_time=60))
        result = await runtime.execute(spec)
        assert result.status is Status.TIMEOUT
        assert result.cpu_time >= 1

    async def test_cpu_quota(self, runtime):
        """cpu.max holds: four spinners with cpus=0.5 get half a CPU second per second."""
        spec = JobSpec(code=SPINNERS, limits=Limits(cpus=0.5, wall_time=30))
        result = await runtime.execute(spec)
        assert result.status is Status.OK, result
        assert result.cpu_time < 0.7 * result.wall_time, result

    async def test_pinning(self, settings):
        """cpuset.cpus pins a job to one CPU, when the host delegates cpuset to us."""
        parent = settings.cgroup_root / settings.cgroup_parent
        if "cpuset" not in (parent / "cgroup.subtree_control").read_text().split():
            async with Runtime(settings, pool_size=0):  # enables what the root allows
                pass
        pinned = settings.model_copy(update={"pin_cpus": "0"})
        if "cpuset" not in (parent / "cgroup.subtree_control").read_text().split():
            with pytest.raises(UnsupportedError, match="SANDBOX_PIN_CPUS"):
                Runtime(pinned, pool_size=0).open()
            return
        async with Runtime(pinned, pool_size=0) as rt:
            code = "import os\nprint(sorted(os.sched_getaffinity(0)))"
            result = await rt.execute(JobSpec(code=code))
        assert result.stdout == "[0]\n", result


@pytest.mark.cgroup_v1
class TestCgroupV1:
    async def test_no_swap(self, runtime, settings):
        """memsw (or swappiness 0) stops a job from swapping past its limit."""
        spec = JobSpec(code=BALLOON, limits=Limits(memory="64M"))
        result = await runtime.execute(spec)
        assert result.oom_killed
        assert result.status is Status.MEMORY_LIMIT

    async def test_job_cgroup_in_each_hierarchy(self, runtime, settings):
        """The job sits in memory, pids, cpuacct and freezer cgroups of its own."""
        code = "print(open('/proc/self/cgroup').read())"
        result = await runtime.execute(JobSpec(code=code))
        lines = dict(line.split(":", 2)[1:] for line in result.stdout.split())
        # cgroup namespace: the job sees its own cgroup as the root.
        for controller in ("memory", "pids", "cpuacct", "freezer"):
            assert lines[controller] == "/"

    def test_detects_v1_here(self, settings):
        """On a hybrid host the resources are controlled through v1."""
        setup = detect_setup(settings.cgroup_root, settings.cgroup_parent)
        assert setup.version == 1
        assert os.path.isdir(settings.cgroup_root / "memory")
