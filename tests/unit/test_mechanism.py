"""Step order of the Python mechanism (`sandbox exec`), through the recording fake syscalls.

The fake proves the order and arguments of the calls; that the kernel then
isolates anything is proven by the integration tests.
"""

from __future__ import annotations

import os

import pytest

from sandbox.kernel import caps
from sandbox.kernel import syscalls as sc
from tests.unit.fakes import RecordingSyscalls


def test_capability_names_and_mask():
    assert caps.CAPABILITIES[0] == "CAP_CHOWN"
    assert caps.CAPABILITIES[10] == "CAP_NET_BIND_SERVICE"
    assert caps.CAPABILITIES[21] == "CAP_SYS_ADMIN"
    assert caps.capability_mask({"CAP_CHOWN", "CAP_KILL"}) == 0b100001
    assert caps.capability_mask(set()) == 0


@pytest.mark.parametrize(("keep", "uid"), [(0, 65534), (1 << 10, 0)])
def test_drop_capabilities_order(monkeypatch: pytest.MonkeyPatch, keep: int, uid: int):
    """Bounding set first (needs CAP_SETPCAP), then ids, capset, ambient, no_new_privs last."""
    fake = RecordingSyscalls()
    ids: list[tuple[object, ...]] = []
    monkeypatch.setattr(os, "setgroups", lambda groups: ids.append(("setgroups", tuple(groups))))
    monkeypatch.setattr(os, "setresgid", lambda *a: ids.append(("setresgid", *a)))

    def setresuid(*uids: int) -> None:
        ids.append(("setresuid", *uids))
        fake.calls.append(("ids",))

    monkeypatch.setattr(os, "setresuid", setresuid)
    caps.drop_capabilities(keep, uid, uid, last_cap=40, sys=fake)
    dropped = [c[2] for c in fake.calls if c[:2] == ("prctl", sc.PR_CAPBSET_DROP)]
    assert dropped == [c for c in range(41) if not keep & (1 << c)]
    assert ids == [("setgroups", ()), ("setresgid", uid, uid, uid), ("setresuid", uid, uid, uid)]
    names = [c[0] if c[0] != "prctl" else (c[0], c[1]) for c in fake.calls]
    tail = names[names.index("ids") :]
    assert tail == [
        "ids",
        "capset",
        ("prctl", sc.PR_CAP_AMBIENT),
        ("prctl", sc.PR_SET_NO_NEW_PRIVS),
    ]
    assert fake.named("capset") == [("capset", keep, keep, 0)]  # inheritable stays empty
