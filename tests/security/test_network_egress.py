"""Jobs allowed a network: egress only, never the host, its LAN or its loopback.

Everything happens in network namespaces this test makes: a "host" namespace
(where the runtime runs, as a worker host's own network namespace; our
nftables table is loaded there, never in the real host's) and a "world"
namespace behind a veth, holding a public-looking server (198.51.100.7, a
documentation address routable nowhere) and a private one (10.99.0.2) that
the "host" itself can reach. The "host" serves on its own address and on
127.0.0.1 too. A job with ``network=true`` must reach the public server and
none of the others, hold at most ``network_connections`` connections, and
leave no network stack behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.overlay]

pytest.importorskip("sandbox.kernel.egress")
if not Path("/usr/bin/pasta").exists() or not Path("/usr/sbin/nft").exists():
    pytest.skip("pasta or nft missing (scripts/install installs passt and nftables)",
                allow_module_level=True)  # fmt: skip

TAG = f"sbt{os.getpid() % 100000}"
HOST_NS, WORLD_NS = f"{TAG}h", f"{TAG}w"
PUBLIC, PRIVATE, HOST_ADDR = "198.51.100.7", "10.99.0.2", "203.0.113.1"
PORT = 8080
ROOT = Path(__file__).resolve().parents[2]

SERVER = f"""
import socket, sys, threading
PORT = {PORT}
held = []
def serve(addr):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, PORT))
    s.listen(256)
    while True:
        c, _ = s.accept()
        c.sendall(b'hello from ' + addr.encode() + b'\\n')
        held.append(c)  # kept open: the connection cap counts it
for a in sys.argv[1:]:
    threading.Thread(target=serve, args=(a,), daemon=True).start()
print('up', flush=True)
threading.Event().wait()
"""

JOB = f"""
import json, socket
reach = {{}}
for a in ({PUBLIC!r}, {PRIVATE!r}, {HOST_ADDR!r}, '127.0.0.1', '10.0.2.2'):
    try:
        reach[a] = socket.create_connection((a, {PORT}), timeout=1).recv(100).decode()
    except OSError as e:
        reach[a] = type(e).__name__
held = []
for _ in range(20):
    try:
        held.append(socket.create_connection(({PUBLIC!r}, {PORT}), timeout=1))
    except OSError:
        break
print(json.dumps({{'reach': reach, 'connections': len(held),
                  'addresses': open('/proc/net/fib_trie').read()}}))
"""

RUNNER = """
import asyncio, json, sys
INTERFACES = "print(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))"
from sandbox import JobSpec, Runtime, Settings
async def main():
    settings = Settings(allow_network=True, network_connections=6, cgroup_parent=sys.argv[1],
                        run_dir='/run/' + sys.argv[1])
    async with Runtime(settings) as runtime:
        net = await runtime.execute(JobSpec(code=sys.argv[2], network=True))
        local = await runtime.execute(JobSpec(code=INTERFACES))
        # Killed at its wall limit, from the warm pool: its stack goes with it.
        slow = await runtime.execute(JobSpec(code="import time; time.sleep(30)", network=True,
                                             limits={"wall_time": 1}))
    print(json.dumps({name: result.model_dump(mode='json')
                      for name, result in (('net', net), ('local', local), ('slow', slow))}))
asyncio.run(main())
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", *argv]


@pytest.fixture(scope="module")
def world() -> Iterator[None]:
    """The two namespaces, the veth between them, the servers on both sides."""
    servers: list[subprocess.Popen[str]] = []
    try:
        ip("netns", "add", HOST_NS)
        ip("netns", "add", WORLD_NS)
        ip("link", "add", f"{TAG}a", "netns", HOST_NS, "type", "veth",
           "peer", "name", f"{TAG}b", "netns", WORLD_NS)  # fmt: skip
        ends = ((HOST_NS, f"{TAG}a", HOST_ADDR), (WORLD_NS, f"{TAG}b", "203.0.113.2"))
        for ns, dev, addr in ends:
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        for addr in (PUBLIC, PRIVATE):
            ip("-n", WORLD_NS, "addr", "add", f"{addr}/32", "dev", "lo")
        ip("-n", HOST_NS, "route", "add", "default", "via", "203.0.113.2")
        for ns, addrs in ((WORLD_NS, (PUBLIC, PRIVATE)), (HOST_NS, ("0.0.0.0",))):
            proc = subprocess.Popen(
                in_ns(ns, sys.executable, "-c", SERVER, *addrs), stdout=subprocess.PIPE, text=True
            )
            servers.append(proc)
            assert proc.stdout is not None
            assert proc.stdout.readline() == "up\n"
        yield
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for ns in (HOST_NS, WORLD_NS):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def host_reaches(addr: str) -> str:
    probe = (
        f"import socket; s = socket.create_connection(({addr!r}, {PORT}), timeout=2); "
        "print(s.recv(100).decode(), end='')"
    )
    return subprocess.run(in_ns(HOST_NS, sys.executable, "-c", probe),
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


@pytest.fixture(scope="module")
def results(world: None) -> dict[str, Any]:
    parent = f"{TAG}-egress"
    host_before = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    out = subprocess.run(
        in_ns(HOST_NS, sys.executable, "-c", RUNNER, parent, JOB),
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    rulesets = (in_ns(HOST_NS, "nft", "list", "ruleset"), ["nft", "list", "ruleset"])
    data["rulesets"] = {
        name: subprocess.run(argv, capture_output=True, text=True).stdout
        for name, argv in zip(("ours", "host"), rulesets, strict=True)
    }
    data["rulesets"]["host before"] = host_before
    with contextlib.suppress(OSError):
        for path in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
            path.rmdir()
    shutil.rmtree(f"/run/{parent}", ignore_errors=True)
    return data


def test_the_job_reaches_the_world(results):
    assert results["net"]["status"] == "ok", results["net"]
    report = json.loads(results["net"]["stdout"])
    assert report["reach"][PUBLIC] == f"hello from {PUBLIC}\n"


def test_not_the_hosts_lan_nor_the_host(results):
    """What the host itself reaches, the job does not: a private address, the
    host's own address, its loopback, and the gateway address (pasta's map of
    the host's loopback is off)."""
    assert host_reaches(PRIVATE) == f"hello from {PRIVATE}\n"
    assert host_reaches(HOST_ADDR).startswith("hello from")
    report = json.loads(results["net"]["stdout"])
    for addr in (PRIVATE, HOST_ADDR, "127.0.0.1", "10.0.2.2"):
        assert not report["reach"][addr].startswith("hello"), (addr, report)


def test_the_job_sees_its_own_address_not_the_hosts(results):
    """pasta is given 10.0.2.100; the host's address is nowhere in the job's view."""
    addresses = json.loads(results["net"]["stdout"])["addresses"]
    assert "10.0.2.100" in addresses
    assert HOST_ADDR not in addresses


def test_connections_are_capped(results):
    """network_connections=6: the first probe's connection still counts (the
    server holds it open), so at most 5 more."""
    report = json.loads(results["net"]["stdout"])
    assert 1 <= report["connections"] <= 5, report


def test_a_job_without_network_has_loopback_only(results):
    assert results["local"]["stdout"].strip() == "['lo']"


def test_the_firewall_is_in_our_namespace_only(results):
    """Loaded where the runtime runs; the real host's ruleset is as it was
    (compared, not assumed empty: a host may hold tables of its own)."""
    rulesets = results["rulesets"]
    assert "table inet sandbox_egress {" in rulesets["ours"]
    assert rulesets["host"] == rulesets["host before"]


def test_no_network_stack_is_left(results):
    """pasta runs as a uid of the jobs' range: none such process remains, also
    after a job killed at its time limit."""
    assert results["slow"]["status"] == "timeout"
    time.sleep(0.2)
    from sandbox import Settings

    settings = Settings()
    first = settings.userns_base
    last = first + settings.userns_ranges * settings.userns_size
    left = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            text = status.read_text()
            uid = int(text.split("\nUid:\t", 1)[1].split()[0])
            name = text.split("\n", 1)[0]
            if first <= uid < last and "passt" in name:
                left.append(name)
    assert left == []


def test_the_ruleset_names_the_jobs_uid_range():
    from sandbox import Settings
    from sandbox.kernel.egress import ruleset

    settings = Settings(network_connections=7)
    text = ruleset(settings.job_uids(), settings.network_connections, settings.network_rate)
    last = settings.job_uids()[-1]
    assert f"meta skuid != {settings.userns_base}-{last} accept" in text
    assert "ct count over 7" in text
    assert "fib daddr type local reject" in text
    assert textwrap.dedent(text).count("table inet sandbox_egress {") == 1
