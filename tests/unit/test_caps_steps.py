"""caps: capability numbers, masks, and the whole drop sequence in one log.

``os.setgroups``, ``os.setresgid`` and ``os.setresuid`` are replaced by
recorders: these tests must never change the ids of the test process.
"""

from __future__ import annotations

import os

import pytest

from sandbox.kernel import caps
from sandbox.kernel import syscalls as sc
from tests.unit.fakes import Call, RecordingSyscalls


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """One log for the fake syscalls and the (recorded, not made) id changes."""
    calls: list[Call] = []
    monkeypatch.setattr(os, "setgroups", lambda groups: calls.append(("setgroups", list(groups))))
    monkeypatch.setattr(os, "setresgid", lambda *gids: calls.append(("setresgid", *gids)))
    monkeypatch.setattr(os, "setresuid", lambda *uids: calls.append(("setresuid", *uids)))
    return calls


def _drops(last_cap: int, keep: int) -> list[Call]:
    return [
        ("prctl", sc.PR_CAPBSET_DROP, cap, 0)
        for cap in range(last_cap + 1)
        if not keep & (1 << cap)
    ]


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("CAP_CHOWN", 0),
        ("CAP_DAC_OVERRIDE", 1),
        ("CAP_KILL", 5),
        ("CAP_SETPCAP", 8),
        ("CAP_NET_BIND_SERVICE", 10),
        ("CAP_NET_RAW", 13),
        ("CAP_SYS_CHROOT", 18),
        ("CAP_SYS_PTRACE", 19),
        ("CAP_SYS_ADMIN", 21),
        ("CAP_MKNOD", 27),
        ("CAP_AUDIT_WRITE", 29),
        ("CAP_SETFCAP", 31),
        ("CAP_AUDIT_READ", 37),
        ("CAP_BPF", 39),
        ("CAP_CHECKPOINT_RESTORE", 40),
    ],
)
def test_capability_numbers_are_the_kernels(name: str, number: int):
    assert caps.CAPABILITIES.index(name) == number
    assert caps.capability_mask({name}) == 1 << number


def test_capability_names_are_unique():
    assert len(set(caps.CAPABILITIES)) == len(caps.CAPABILITIES) == 41


def test_mask_of_every_capability():
    assert caps.capability_mask(frozenset(caps.CAPABILITIES)) == (1 << 41) - 1


def test_mask_of_an_unknown_name_raises_key_error():
    """As documented in capability_mask's docstring (Raises: KeyError)."""
    with pytest.raises(KeyError):
        caps.capability_mask({"CAP_FLY"})


def test_unprivileged_drop_in_full(log: list[Call]):
    caps.drop_capabilities(0, 65534, 65534, last_cap=40, sys=RecordingSyscalls(log))
    assert log == [
        *_drops(40, 0),
        ("setgroups", []),
        ("setresgid", 65534, 65534, 65534),
        ("setresuid", 65534, 65534, 65534),
        ("capset", 0, 0, 0),
        ("prctl", sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL, 0),
        ("prctl", sc.PR_SET_NO_NEW_PRIVS, 1, 0),
    ]


def test_privileged_drop_keeps_exactly_the_granted_set(log: list[Call]):
    keep = caps.capability_mask({"CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_SETPCAP"})
    caps.drop_capabilities(keep, 0, 0, last_cap=40, sys=RecordingSyscalls(log))
    dropped = {c[2] for c in log if c[:2] == ("prctl", sc.PR_CAPBSET_DROP)}
    assert dropped == set(range(41)) - {0, 8, 10}
    assert log[len(dropped) :] == [
        ("setgroups", []),
        ("setresgid", 0, 0, 0),
        ("setresuid", 0, 0, 0),
        ("capset", keep, keep, 0),
        ("prctl", sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL, 0),
        ("prctl", sc.PR_SET_NO_NEW_PRIVS, 1, 0),
    ]


@pytest.mark.parametrize("last_cap", [35, 40, 63])
def test_the_bounding_set_is_cut_up_to_the_kernels_last_cap(log: list[Call], last_cap: int):
    caps.drop_capabilities(0, 1000, 1000, last_cap=last_cap, sys=RecordingSyscalls(log))
    assert log[: last_cap + 1] == _drops(last_cap, 0)
    assert log[last_cap + 1][0] == "setgroups"
