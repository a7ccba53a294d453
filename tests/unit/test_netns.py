"""The shared network namespace's check that a job left it untouched (sandbox/kernel/netns.py).

Pure logic over files: the counter files are ordinary files here, written
with what /proc/net shows. tests/security/test_reuse.py runs it for real.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.kernel.netns import NetNamespace

SOCKSTAT = (
    "sockets: used 0\nTCP: inuse 0 orphan 3 tw 0 alloc 17 mem 139\nUDP: inuse 0 mem 2\n"
    "UDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n"
)
SOCKSTAT6 = (
    "TCP6: inuse 0\nUDP6: inuse 0\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n"
)
SNMP = "Ip: Forwarding InReceives\nIp: 1 0\nUdp: InDatagrams NoPorts\nUdp: 0 0\n"


class Files:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.contents = {
            "ns": "",
            "sockstat": SOCKSTAT,
            "sockstat6": SOCKSTAT6,
            "snmp": SNMP,
            "dev": "lo: 0 0\n",
        }
        for name, text in self.contents.items():
            (root / name).write_text(text)

    def open(self) -> dict[str, int]:
        return {name: os.open(self.root / name, os.O_RDONLY) for name in self.contents}

    def write(self, name: str, text: str) -> None:
        (self.root / name).write_text(text)


def assert_closed(fd: int) -> None:
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def test_as_made_it_is_untouched(files: Files):
    ns = NetNamespace(files.open())
    assert ns.untouched()
    assert ns.untouched()  # reading changes nothing
    ns.close()


def test_host_wide_fields_do_not_count(files: Files):
    ns = NetNamespace(files.open())
    files.write("sockstat", SOCKSTAT.replace("orphan 3", "orphan 9").replace("mem 139", "mem 4"))
    assert ns.untouched()
    ns.close()


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("sockstat", "used 0", "used 1"),
        ("sockstat", "tw 0", "tw 2"),
        ("sockstat", "FRAG: inuse 0", "FRAG: inuse 1"),
        ("sockstat6", "FRAG6: inuse 0", "FRAG6: inuse 1"),
        ("snmp", "Ip: 1 0", "Ip: 1 1"),
        ("dev", "lo: 0 0", "lo: 1 84"),
    ],
)
def test_a_socket_left_or_a_counter_moved_is_seen(files: Files, name: str, old: str, new: str):
    ns = NetNamespace(files.open())
    files.write(name, files.contents[name].replace(old, new))
    assert not ns.untouched()
    ns.close()


def test_sockets_in_use_at_creation_may_go(files: Files):
    """C's own socket (lo up) may be freed after the namespace is sent: not a baseline."""
    files.write("sockstat", SOCKSTAT.replace("used 0", "used 1"))
    ns = NetNamespace(files.open())
    assert not ns.untouched()
    files.write("sockstat", SOCKSTAT)
    assert ns.untouched()
    ns.close()


def test_it_owns_and_closes_its_descriptors(files: Files):
    fds = files.open()
    ns = NetNamespace(fds)
    assert ns.held_fds() == set(fds.values())
    assert ns.fd == fds["ns"]
    ns.close()
    ns.close()
    assert not ns.untouched()
    for fd in fds.values():
        assert_closed(fd)


def test_an_incomplete_set_is_refused_and_closed(files: Files):
    fds = files.open()
    os.close(fds.pop("ns"))
    with pytest.raises(ValueError, match="needs ns and sockstat"):
        NetNamespace(fds)
    for fd in fds.values():
        assert_closed(fd)


def test_an_event_must_name_each_descriptor(files: Files):
    fds = list(files.open().values())
    with pytest.raises(ValueError, match="names 2 files but holds 5"):
        NetNamespace.from_event("ns sockstat", fds)
    for fd in fds:
        assert_closed(fd)
    opened = files.open()
    ns = NetNamespace.from_event(" ".join(opened), list(opened.values()))
    assert ns.untouched()
    ns.close()
