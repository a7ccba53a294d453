"""Attacks on reuse: a job's cgroup and its network namespace serve the next job.

A runtime keeps the emptied cgroups of finished jobs and gives them to new
containers (docs/adr/0008-native-launcher.md). Each test runs a job that
leaves as much as it can behind in its cgroup (memory, an OOM kill, refused
forks, CPU time), then a second job in the same cgroup, whose figures must
be its own.

A job without egress or network capabilities runs in a loopback-only network
namespace the host owns, kept for the next job while jobs leave it untouched
(docs/adr/0013-shared-network-namespaces.md). Here a job leaves what it can
there (sockets in every state, a daemon holding some, packets and refused
routes that move counters, an attempt to change the namespace) and the next
job must see a namespace as fresh as the first job saw it.

The rest of a container (mount, pid, IPC and UTS namespaces, /tmp, /dev/shm,
IPC objects) is never reused: the second job looks for the first one's
traces there too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from typing import Any

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


# -- the shared network namespace (ADR 0013) ----------------------------------

NET_VIEW = """
import json, os
def read(name):
    try:
        return open("/proc/net/" + name).read()
    except OSError:
        return None
print(json.dumps({
    "ns": os.readlink("/proc/self/ns/net"),
    "counters": {n: read(n) for n in ("snmp", "snmp6", "netstat", "dev", "sockstat6")},
    "sockstat": [l for l in read("sockstat").splitlines() if not l.startswith(("TCP", "UDP:"))],
    "tcp": [read("tcp").count(chr(10)), read("tcp6").count(chr(10))],
    "sockets": {n: (read(n) or "").count(chr(10)) for n in ("udp", "udp6", "raw", "unix")},
}))
"""

NET_TRACES = {
    # A loopback TCP connection, closed: TIME_WAIT, and every TCP and IP counter.
    "tcp": """
import socket
s = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(s.getsockname())
a, _ = s.accept()
c.sendall(b"left")
a.recv(4)
c.close(); a.close(); s.close()
""",
    # A datagram to a port nobody listens on (an ICMP error back), over IPv4 and IPv6.
    "udp": """
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 9))
try:
    socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b"x", ("::1", 9))
except OSError:
    pass  # no IPv6 on this host
""",
    # No packet at all: a refused route only moves OutNoRoutes.
    "noroute": """
import socket
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(("192.0.2.1", 9))
except OSError as exc:
    assert exc.errno == 101, exc  # ENETUNREACH
""",
    # Sockets held to the end by a daemon: listening TCP, abstract unix, bound UDP.
    "daemon": """
import os, socket, time
held = [socket.create_server(("127.0.0.1", 34999))]
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
u.bind("\\0netns-left")
u.listen()
held += [u, socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]
held[-1].bind(("127.0.0.1", 34998))
if os.fork() == 0:
    os.setsid()
    time.sleep(60)
""",
    # Unix sockets passing each other in a cycle: only the kernel's collector frees them.
    "unix-cycle": """
import array, socket
a, b = socket.socketpair()
fds = array.array("i", [a.fileno(), b.fileno()])
a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
b.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
""",
}

NET_REACH = """
import json, socket
out = {}
for name, family, address in (
    ("tcp", socket.AF_INET, ("127.0.0.1", 34999)),
    ("unix", socket.AF_UNIX, "\\0netns-left"),
):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.connect(address)
        out[name] = "reached"
    except OSError as exc:
        out[name] = exc.errno
print(json.dumps(out))
"""


async def _view(rt: Runtime) -> dict[str, Any]:
    result, _ = await run(rt, NET_VIEW)
    assert result.status is Status.OK, result
    view: dict[str, Any] = json.loads(result.stdout)
    return view


async def test_an_untouched_network_namespace_serves_the_next_job(serial):
    """The point of it: a job that used no network leaves its namespace for the next."""
    first = await _view(serial)
    await serial.pool_settled()
    reused = serial.netns_reused
    second = await _view(serial)
    assert second["ns"] == first["ns"]
    assert serial.netns_reused == reused + 1
    assert second == first


@pytest.mark.parametrize("trace", sorted(NET_TRACES))
async def test_the_next_job_finds_a_fresh_network_namespace(serial, trace):
    before = await _view(serial)
    await serial.pool_settled()
    left, _ = await run(serial, NET_TRACES[trace])
    assert left.status is Status.OK, left
    await serial.pool_settled()
    after = await _view(serial)
    assert after["counters"] == before["counters"], "a counter the last job moved is visible"
    assert after["sockstat"] == before["sockstat"]
    assert after["tcp"] == [1, 1], after  # the header lines only
    assert set(after["sockets"].values()) <= {1}, after
    await serial.pool_settled()
    reach, _ = await run(serial, NET_REACH)
    assert json.loads(reach.stdout) == {"tcp": 111, "unix": 111}, reach  # ECONNREFUSED


CHANGE_NET = """
import fcntl, json, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out = {}
for name, request, value in (("down", 0x8914, 0), ("mtu", 0x8922, 1280)):  # SIOCSIFFLAGS, MTU
    try:
        fcntl.ioctl(s, request, struct.pack("16si", b"lo", value))
        out[name] = "changed"
    except OSError as exc:
        out[name] = exc.errno
try:
    open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w").write("0")
    out["sysctl"] = "changed"
except OSError as exc:
    out["sysctl"] = exc.errno
print(json.dumps(out))
"""


async def test_root_with_capabilities_cannot_change_the_shared_namespace(settings, runtime):
    """Root of its own user namespace, with CAP_SYS_ADMIN and the default set: no power over
    a namespace the host owns (lo stays up, its MTU and sysctls as they were)."""
    await run(runtime, "pass")
    caps = frozenset({"CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"})
    allowed = settings.model_copy(update={"allowed_capabilities": caps})
    async with Runtime(allowed, pool_size=0) as rt:
        before = await _view(rt)
        await rt.pool_settled()
        tried, _ = await run(rt, CHANGE_NET, capabilities=sorted(caps))
        assert tried.status is Status.OK, tried
        assert json.loads(tried.stdout) == {"down": 1, "mtu": 1, "sysctl": 30}  # EPERM, EROFS
        await rt.pool_settled()
        after = await _view(rt)
        assert after == before  # the same namespace, and as it was
        up, _ = await run(rt, "import socket; socket.create_server(('127.0.0.1', 0))")
        assert up.status is Status.OK, up


async def test_a_network_capability_gets_a_namespace_of_its_own(settings, runtime):
    """CAP_NET_ADMIN acts on a namespace its root owns: it gets one, used once."""
    await run(runtime, "pass")
    allowed = settings.model_copy(update={"allowed_capabilities": frozenset({"CAP_NET_ADMIN"})})
    async with Runtime(allowed, pool_size=0) as rt:
        shared = await _view(rt)
        await rt.pool_settled()
        own, _ = await run(
            rt,
            CHANGE_NET.replace(
                "print(", "import os; out['ns'] = os.readlink('/proc/self/ns/net'); print("
            ),
            capabilities=["CAP_NET_ADMIN"],
        )
        changed = json.loads(own.stdout)
        assert changed["down"] == "changed", changed
        assert changed["mtu"] == "changed", changed
        assert changed["ns"] != shared["ns"]
        await rt.pool_settled()
        after = await _view(rt)
        assert after == shared  # the next job is back in the shared one, lo up
