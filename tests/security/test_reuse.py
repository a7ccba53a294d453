"""Attacks on reuse: a job's cgroup serves the next job (docs/adr/0008-native-launcher.md).

A runtime keeps the emptied cgroups of finished jobs and gives them to new
containers. Each test runs a job that leaves as much as it can behind in its
cgroup (memory, an OOM kill, refused forks, CPU time), then a second job in
the same cgroup, whose figures must be its own. The rest of a container
(namespaces, mounts, /tmp, /dev/shm, IPC objects, sockets) is never reused:
the second job looks for the first one's traces there too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator

import pytest

from sandbox import Runtime, Status
from sandbox.kernel.cgroups import detect_setup
from tests.security.helpers import MiB, run

pytestmark = [pytest.mark.root, pytest.mark.overlay]


@pytest.fixture
async def serial(settings, runtime) -> AsyncIterator[Runtime]:
    """A runtime without a warm pool: each job takes the cgroup the last one left."""
    await run(runtime, "pass")  # the session's warm pool (and loop) exist, as after any test
    async with Runtime(settings, pool_size=0) as rt:
        yield rt


def _recycles(settings) -> bool:
    """cgroup v2 before Linux 6.12 cannot reset memory.peak: no cgroup is reused there."""
    if detect_setup(settings.cgroup_root, settings.cgroup_parent).version == 1:
        return True
    release = tuple(int(p) for p in re.findall(r"\d+", os.uname().release)[:2])
    return release >= (6, 12)


async def _twice(rt: Runtime, first: str, second: str = "pass", **spec):
    """Run ``first`` then ``second``; check the second reused the first one's cgroup
    (where the kernel allows reuse; elsewhere the second job's figures must be
    its own all the same)."""
    a, _ = await run(rt, first, **spec)
    await rt.pool_settled()  # its container's teardown, after the result, recycles the cgroup
    reused = rt.cgroups_reused
    b, _ = await run(rt, second)
    if _recycles(rt.settings):
        assert rt.cgroups_reused == reused + 1, "the second job did not get the first's cgroup"
    return a, b


async def test_memory_peak_is_the_jobs_own(serial):
    a, b = await _twice(serial, "x = bytearray(96 << 20)\nx[::4096] = b'x' * len(x[::4096])")
    assert a.status is Status.OK, a
    assert a.memory_peak > 90 * MiB
    assert b.status is Status.OK, b
    assert b.memory_peak < 16 * MiB, b


async def test_an_oom_kill_is_not_the_next_jobs(serial):
    a, b = await _twice(serial, "x = bytearray(256 << 20)", limits={"memory": "64M"})
    assert a.oom_killed, a
    assert a.status is Status.MEMORY_LIMIT, a
    assert not b.oom_killed, b
    assert b.status is Status.OK, b


async def test_refused_forks_are_not_the_next_jobs(serial):
    bomb = "import os\nfor _ in range(64):\n    try:\n        os.fork() or os._exit(0)\n"
    bomb += "    except OSError:\n        pass\n"
    a, b = await _twice(serial, bomb, limits={"pids": 8})
    assert a.pids_limit_hit, a
    assert not b.pids_limit_hit, b
    assert b.status is Status.OK, b


async def test_cpu_time_is_the_jobs_own(serial):
    spin = (
        "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end:\n    pass"
    )
    a, b = await _twice(serial, spin)
    assert a.cpu_time >= 0.3, a
    # The second job's own start (an interpreter's) is all it used, not the first's 0.3 s.
    assert b.cpu_time < a.cpu_time - 0.25, (a, b)


LEAVE = """
import os, socket, subprocess, sys, ctypes
open("/tmp/left", "w").write("secret")
open("/dev/shm/left", "w").write("secret")
open("/box/left", "w").write("secret")
libc = ctypes.CDLL(None, use_errno=True)
assert libc.shmget(0x5EC, 4096, 0o1666) >= 0  # IPC_CREAT | 0666: a SysV segment
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\\0left")
s.listen()
if os.fork() == 0:  # a daemon holding the socket
    os.setsid()
    import time
    time.sleep(60)
"""

LOOK = """
import json, os, socket, ctypes
libc = ctypes.CDLL(None, use_errno=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("\\0left")
    sock = "reached"
except OSError:
    sock = "gone"
print(json.dumps({
    "files": [p for p in ("/tmp/left", "/dev/shm/left", "/box/left") if os.path.exists(p)],
    "shm": libc.shmget(0x5EC, 0, 0),
    "socket": sock,
    "processes": sorted(p for p in os.listdir("/proc") if p.isdigit()),
}))
"""


async def test_the_next_job_finds_no_trace_of_the_last(serial):
    a, b = await _twice(serial, LEAVE, LOOK)
    assert a.status is Status.OK, a
    assert b.status is Status.OK, b
    seen = json.loads(b.stdout)
    assert seen["files"] == []
    assert seen["shm"] == -1
    assert seen["socket"] == "gone"
    assert len(seen["processes"]) <= 2, seen  # its init and itself
