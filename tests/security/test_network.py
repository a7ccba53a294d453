"""Network escapes: a job (network off) reaches no socket outside its own namespace.

The job has a network namespace of its own with only a loopback interface:
the host's 127.0.0.1 is not its 127.0.0.1, other addresses have no route, and
abstract unix sockets are per network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
from collections.abc import Iterator

import pytest

from sandbox import Status
from tests.security.helpers import assert_host_healthy, probe, run

pytestmark = [pytest.mark.root, pytest.mark.overlay]


@contextlib.contextmanager
def listener(family: int, address: str | tuple[str, int]) -> Iterator[socket.socket]:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind(address)
        sock.listen(8)
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()


def accepted_nothing(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


CONNECT = """
import errno, json, socket, sys
out = {}
for spec in sys.argv[1:]:
    if ':' not in spec:
        continue  # not a target
    family, _, address = spec.partition(':')
    if family == 'unix':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = address.replace('@', '\\0', 1)
    else:
        host, _, port = address.rpartition(':')
        fam = socket.AF_INET6 if family == 'inet6' else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        target = (host.strip('[]'), int(port))
    s.settimeout(2)
    try:
        s.connect(target)
        out[spec] = 'connected'
    except OSError as e:
        out[spec] = errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__
    finally:
        s.close()
print(json.dumps(out))
"""


async def test_host_loopback_listener_is_unreachable(runtime):
    """A listener on the host's 127.0.0.1 (and 0.0.0.0) is not the job's loopback."""
    with (
        listener(socket.AF_INET, ("127.0.0.1", 0)) as lo,
        listener(socket.AF_INET, ("0.0.0.0", 0)) as anyaddr,
    ):
        lo_port = lo.getsockname()[1]
        any_port = anyaddr.getsockname()[1]
        seen = await probe(
            runtime,
            CONNECT,
            argv=(
                f"inet:127.0.0.1:{lo_port}",
                f"inet:127.0.0.1:{any_port}",
                f"inet:127.0.0.2:{lo_port}",
            ),
        )
        assert set(seen.values()) == {"ECONNREFUSED"}, seen
        assert accepted_nothing(lo)
        assert accepted_nothing(anyaddr)
    await assert_host_healthy(runtime)


async def test_redis_port_on_the_host_loopback_is_unreachable(runtime):
    """127.0.0.1:6379 and [::1]:6379, where a worker's Redis usually listens: nothing
    answers in the job's own loopback. (A listener is put there if the port is free; if
    a real Redis holds it, the job must not reach that one either.)"""
    with contextlib.ExitStack() as stack:
        host_side = []
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with contextlib.suppress(OSError):
                host_side.append(stack.enter_context(listener(family, (address, 6379))))
        seen = await probe(runtime, CONNECT, argv=("inet:127.0.0.1:6379", "inet6:[::1]:6379"))
        assert set(seen.values()) <= {"ECONNREFUSED", "EADDRNOTAVAIL"}, seen
        assert all(accepted_nothing(sock) for sock in host_side)
    await assert_host_healthy(runtime)


def _host_addresses() -> list[str]:
    """The host's own non-loopback IPv4 addresses (from its routes; no traffic sent)."""
    found = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # a documentation address: UDP connect sends nothing
        found.append(s.getsockname()[0])
    return [a for a in found if not a.startswith("127.")]


async def test_other_addresses_have_no_route(runtime):
    """The host's own address, the internet, a cloud metadata service: ENETUNREACH."""
    targets = ["8.8.8.8:53", "1.1.1.1:443", "169.254.169.254:80", "10.0.0.1:22", "172.17.0.1:80"]
    targets += [f"{addr}:22" for addr in _host_addresses()]
    seen = await probe(runtime, CONNECT, argv=tuple(f"inet:{t}" for t in targets))
    assert set(seen.values()) == {"ENETUNREACH"}, seen
    await assert_host_healthy(runtime)


async def test_udp_and_interfaces(runtime):
    """UDP goes nowhere either, and the only interface is lo."""
    code = """
import errno, json, socket
out = {'interfaces': sorted(name for _, name in socket.if_nameindex())}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b'x', ('8.8.8.8', 53))
    out['udp'] = 'sent'
except OSError as e:
    out['udp'] = errno.errorcode[e.errno]
with open('/proc/net/route') as f:
    out['routes'] = f.read().splitlines()[1:]
print(json.dumps(out))
"""
    seen = await probe(runtime, code)
    assert seen["interfaces"] == ["lo"]
    assert seen["udp"] == "ENETUNREACH"
    assert seen["routes"] == []
    await assert_host_healthy(runtime)


async def test_host_abstract_unix_socket_is_unreachable(runtime):
    """An abstract AF_UNIX socket bound on the host is in the host's network namespace only."""
    name = f"sandbox-test-{secrets.token_hex(8)}"
    code = CONNECT + (
        "with open('/proc/net/unix') as f:\n    print(json.dumps(sys.argv[-1] in f.read()))\n"
    )
    with listener(socket.AF_UNIX, "\0" + name) as host_sock:
        result, _ = await run(runtime, code, argv=(f"unix:@{name}", name))
        assert result.status is Status.OK, result
        connects, listed = (json.loads(line) for line in result.stdout.splitlines())
        assert connects == {f"unix:@{name}": "ECONNREFUSED"}
        assert listed is False
        assert accepted_nothing(host_sock)
    await assert_host_healthy(runtime)


async def test_host_unix_socket_file_is_out_of_reach(runtime, tmp_path):
    """A unix socket file on the host is not in the job's filesystem, whatever its path."""
    path = tmp_path / "host.sock"
    with listener(socket.AF_UNIX, str(path)) as host_sock:
        os.chmod(path, 0o777)
        seen = await probe(runtime, CONNECT, argv=(f"unix:{path}",))
        assert seen == {f"unix:{path}": "ENOENT"}
        assert accepted_nothing(host_sock)
    await assert_host_healthy(runtime)


PEER_SERVER = """
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind('\\0' + sys.argv[1])
s.listen(1)
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('127.0.0.1', int(sys.argv[2])))
t.listen(1)
print('listening', flush=True)
s.settimeout(2.5)
t.settimeout(0.1)
out = {}
try:
    s.accept()
    out['unix'] = 'accepted'
except socket.timeout:
    out['unix'] = 'nobody came'
try:
    t.accept()
    out['tcp'] = 'accepted'
except socket.timeout:
    out['tcp'] = 'nobody came'
print(json.dumps(out))
"""

PEER_CLIENT = """
import errno, json, socket, sys, time
out = {}
deadline = time.monotonic() + 1.5
while time.monotonic() < deadline:
    for key, family, address in (
        ('unix', socket.AF_UNIX, '\\0' + sys.argv[1]),
        ('tcp', socket.AF_INET, ('127.0.0.1', int(sys.argv[2]))),
    ):
        c = socket.socket(family, socket.SOCK_STREAM)
        try:
            c.connect(address)
            out[key] = 'connected'
        except OSError as e:
            out.setdefault(key, errno.errorcode[e.errno])
        finally:
            c.close()
    time.sleep(0.05)
print(json.dumps(out))
"""


async def test_concurrent_jobs_cannot_reach_each_other(runtime):
    """Two jobs at once: one listens (abstract unix, loopback TCP), the other cannot connect."""
    name = f"sandbox-peer-{secrets.token_hex(8)}"
    port = "34567"
    server = asyncio.create_task(run(runtime, PEER_SERVER, argv=(name, port)))
    await asyncio.sleep(0.3)  # let it listen; the client retries for 1.5 s anyway
    client, _ = await run(runtime, PEER_CLIENT, argv=(name, port))
    served, _ = await server
    assert client.status is Status.OK, client
    assert served.status is Status.OK, served
    assert json.loads(client.stdout) == {"unix": "ECONNREFUSED", "tcp": "ECONNREFUSED"}
    assert served.stdout.splitlines()[0] == "listening"
    assert json.loads(served.stdout.splitlines()[1]) == {
        "unix": "nobody came",
        "tcp": "nobody came",
    }
    await assert_host_healthy(runtime)
