"""The user namespace layer as policy: settings, the plan, the doctor's range check."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox.image.store import Image
from sandbox.kernel import syscalls as sc
from sandbox.plan import ContainerPlan, build_plan
from sandbox.runtime.host import _ids_in_use
from sandbox.settings import USERNS_BASE, Settings
from sandbox.spec import JobSpec

IMAGE = Image("host", root=Path("/img"), binds=("/usr",))


def _container(**settings: object) -> ContainerPlan:
    return build_plan(JobSpec(code="x"), Settings(**settings), IMAGE).container  # type: ignore[arg-type]


def test_on_by_default_with_the_reserved_range():
    container = _container()
    assert container.userns == (USERNS_BASE, 65536)
    assert container.root_owner == USERNS_BASE
    # The root is built before the user namespace; the container copies it into its own.
    assert container.namespaces & sc.CLONE_NEWNS
    assert not container.namespaces & sc.CLONE_NEWUSER  # joined with setns, not unshared


def test_off_leaves_the_host_ids_and_one_mount_namespace():
    container = _container(userns=False)
    assert container.userns is None
    assert container.root_owner == 0
    assert not container.namespaces & sc.CLONE_NEWNS
    dev = next(op for op in container.mounts if op.target == "/dev" and op.op == "mount")
    assert "uid=" not in (dev.data or "")


def test_the_plan_names_no_host_id_range_in_its_mounts():
    """The owner is the container's own id range, given when it is spawned (launch.c)."""
    for op in _container().mounts:
        assert "uid=" not in (op.data or "")


def test_ranges_map_host_ids_both_ways():
    settings = Settings(userns_ranges=4)
    assert settings.host_id(65534, 2) == USERNS_BASE + 2 * 65536 + 65534
    assert settings.inside_id(USERNS_BASE + 3 * 65536 + 7) == 7
    assert settings.inside_id(USERNS_BASE + 4 * 65536) is None  # past the last range
    assert settings.inside_id(1000) is None
    assert Settings(userns=False).inside_id(1000) == 1000


def test_the_ranges_must_end_before_the_invalid_uid():
    with pytest.raises(ValidationError, match="past the last uid"):
        Settings(userns_base=2**32 - 65536, userns_ranges=2)
    Settings(userns_base=2**32 - 65536 - 1, userns_ranges=1)


def test_the_launcher_gets_the_id_range_and_the_ceilings():
    tokens = _container(userns_base=200000).to_wire().split(b"\0")
    at = tokens.index(b"userns")
    assert tokens[at + 1 : at + 3] == [b"200000", b"65536"]
    assert b"ceiling" in tokens
    at = tokens.index(b"sysctl")
    assert tokens[at + 1] == b"max_cgroup_namespaces"


def test_host_id():
    assert Settings().host_id(65534) == USERNS_BASE + 65534
    assert Settings(userns=False).host_id(65534) == 65534


@pytest.mark.parametrize("field", ["job_uid", "job_gid", "init_uid"])
def test_ids_the_namespace_does_not_map_are_refused(field: str):
    with pytest.raises(ValidationError, match=f"{field} 70000 is not mapped"):
        Settings(**{field: 70000})  # type: ignore[arg-type]
    Settings(**{field: 70000, "userns": False})  # type: ignore[arg-type]


def test_range_clashes_are_named(tmp_path: Path):
    (tmp_path / "passwd").write_text("root:x:0:0::/root:/bin/sh\nbob:x:100005:100:::\n")
    (tmp_path / "subuid").write_text("alice:165536:65536\n")
    assert _ids_in_use(100000, 165536, tmp_path) == f"bob in {tmp_path}/passwd"
    assert _ids_in_use(200000, 200001, tmp_path) == f"alice's range in {tmp_path}/subuid"
    assert _ids_in_use(USERNS_BASE, USERNS_BASE + 65536, tmp_path) == ""


def test_kernel_limits_reach_the_plan_memlock_in_pages():
    """SHM_LOCK counts pages against a ceiling the kernel takes from RLIMIT_MEMLOCK as is."""
    settings = Settings(kernel_limits={"memlock_bytes": 2**20, "inotify_instances": 5})
    container = build_plan(JobSpec(code="x"), settings, IMAGE).container
    assert (resource.RLIMIT_MEMLOCK, 2**20 // resource.getpagesize()) in container.ceilings
    assert (resource.RLIMIT_SIGPENDING, 4096) in container.ceilings
    assert ("max_inotify_instances", 5) in container.sysctls
    assert ("max_user_namespaces", 8) in container.sysctls
    with pytest.raises(ValidationError, match="unknown kernel limit"):
        Settings(kernel_limits={"inotify": 1})
    assert build_plan(JobSpec(code="x"), Settings(userns=False), IMAGE).container.ceilings == ()
