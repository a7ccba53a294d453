"""The user namespace layer: root inside a job is an unprivileged uid on the host.

Even a job granted capabilities holds them over its own namespaces only; seen
from the host, every process of a job runs as a uid of the reserved range, so
an escape through every other layer would land as nobody.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from sandbox import JobSpec, Status
from tests.security.helpers import (
    assert_host_healthy,
    host_pids_with,
    limits,
    marker,
    probe,
)

pytestmark = [pytest.mark.root, pytest.mark.overlay]

ROOT = ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL")

SHOW_IDS = """
import json, os, sys
print(json.dumps({
    "uid_map": open("/proc/self/uid_map").read().split(),
    "gid_map": open("/proc/self/gid_map").read().split(),
    "uid": os.getuid(),
}), flush=True)
os.execv("/bin/sleep", ["sleep-" + sys.argv[1], "30"])
"""


def _host_ids(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


@pytest.mark.parametrize(
    "capabilities", [pytest.param((), id="nobody"), pytest.param(ROOT, id="root")]
)
async def test_job_processes_run_as_reserved_host_ids(runtime, settings, capabilities):
    """Inside: uid 0 (or 65534) mapped from the reserved range. Outside: that range's uid."""
    token = marker()
    spec = JobSpec(
        code=SHOW_IDS, argv=(token,), capabilities=capabilities, limits=limits(wall_time=30)
    )
    job = asyncio.create_task(runtime.execute(spec))
    try:
        for _ in range(200):
            pids = host_pids_with(token)
            if pids:
                break
            await asyncio.sleep(0.05)
        assert len(pids) == 1, "the job's process did not show on the host"
        inside = settings.job_uid if not capabilities else 0
        uid, gid = _host_ids(pids[0])
        assert uid == gid >= settings.userns_base > 0
        assert settings.inside_id(uid) == inside  # a uid of one of the reserved ranges
    finally:
        job.cancel()
        result = await asyncio.gather(job, return_exceptions=True)
    assert isinstance(result[0], asyncio.CancelledError)
    await assert_host_healthy(runtime)


async def test_the_map_is_a_reserved_range(runtime, settings):
    seen = await probe(
        runtime,
        "import json\nprint(json.dumps([open('/proc/self/uid_map').read().split(),"
        " open('/proc/self/gid_map').read().split()]))",
        capabilities=ROOT,
    )
    uids, gids = seen
    assert uids == gids
    first, base, size = (int(n) for n in uids)
    assert (first, size) == (0, settings.userns_size)
    assert (base - settings.userns_base) % settings.userns_size == 0
    assert 0 <= base - settings.userns_base < settings.userns_ranges * settings.userns_size


async def test_concurrent_jobs_never_share_host_ids(runtime, settings):
    """Each live container has a range of its own: an escape past every namespace would
    still meet the other jobs as strangers (like isolate's uid per box)."""
    token = marker()
    specs = [
        JobSpec(code=SHOW_IDS, argv=(f"{token}-{i}",), limits=limits(wall_time=30))
        for i in range(3)
    ]
    jobs = [asyncio.create_task(runtime.execute(spec)) for spec in specs]
    try:
        pids: list[int] = []
        for _ in range(200):
            pids = host_pids_with(token)
            if len(pids) == 3:
                break
            await asyncio.sleep(0.05)
        assert len(pids) == 3
        uids = {_host_ids(pid)[0] for pid in pids}
        assert len(uids) == 3, uids
        assert {settings.inside_id(uid) for uid in uids} == {settings.job_uid}
    finally:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
    await assert_host_healthy(runtime)


ESCAPE_IDS = """
import errno, json, os
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
# Ids outside the map do not exist in the namespace: no becoming host root's peer.
attempt("setuid 70000", lambda: os.setuid(70000))
attempt("setgid 70000", lambda: os.setgid(70000))
attempt("chown to 70000", lambda: os.chown("/box", 70000, 70000))
attempt("setgroups [70000]", lambda: os.setgroups([70000]))
# Writing a map again, or the setgroups switch: only the parent namespace may.
for name in ("uid_map", "gid_map", "setgroups"):
    def write(name=name):
        with open(f"/proc/self/{name}", "w") as f:
            f.write("0 0 1\\n")
    attempt("write " + name, write)
# Host files keep their owner's rights: CAP_DAC_OVERRIDE holds for mapped owners only.
attempt("read /etc/shadow-like", lambda: open("/root/.profile").read())
print(json.dumps(out))
"""


async def test_root_cannot_reach_ids_outside_its_range(runtime):
    seen = await probe(runtime, ESCAPE_IDS, capabilities=ROOT)
    for name in ("setuid 70000", "setgid 70000", "chown to 70000", "setgroups [70000]"):
        assert seen[name] == "EINVAL", (name, seen)
    for name in ("write uid_map", "write gid_map", "write setgroups"):
        assert seen[name] in ("EPERM", "EACCES"), (name, seen)
    assert seen["read /etc/shadow-like"] in ("EACCES", "ENOENT"), seen
    await assert_host_healthy(runtime)


async def test_a_result_reports_root_inside(runtime):
    """The user namespace changes nothing a job's program can observe of itself as root."""
    seen = await probe(
        runtime,
        "import json, os\nos.chown('/box/main.py', 0, 0)\n"
        "print(json.dumps([os.getuid(), os.stat('/box/main.py').st_uid, os.stat('/').st_uid]))",
        capabilities=ROOT,
    )
    assert seen == [0, 0, 0]


async def test_a_job_after_a_root_job_is_unaffected(runtime):
    result = await runtime.execute(JobSpec(code="import os\nprint(os.getuid())", limits=limits()))
    assert result.status is Status.OK
    assert json.loads(result.stdout) == 65534
