"""cgroups behind one interface, v1 or v2 chosen at run time.

Detection is by filesystem magic of the cgroup root, as youki and nsjail do:
cgroup2 there means a unified host; otherwise (legacy or hybrid, where the
cgroup2 tree at ``unified/`` holds no controllers) resources are controlled
through v1. The root is a parameter so tests can aim it at a fixture tree.
No code outside this package asks which version it has.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sandbox.errors import UnsupportedError
from sandbox.kernel import syscalls
from sandbox.kernel.cgroups.base import Cgroup, CgroupLimits, CgroupSetup, CgroupStats
from sandbox.kernel.cgroups.v1 import SetupV1
from sandbox.kernel.cgroups.v2 import SetupV2

__all__ = ["Cgroup", "CgroupLimits", "CgroupSetup", "CgroupStats", "detect_setup"]


def detect_setup(
    root: Path = Path("/sys/fs/cgroup"),
    parent: str = "sandbox",
    *,
    fs_magic: Callable[[str], int] = syscalls.fs_magic,
) -> CgroupSetup:
    """Return the cgroup setup of this host.

    Args:
        root: where cgroupfs is mounted.
        parent: the name of our own parent cgroup under the root.
        fs_magic: statfs f_type of a path (a seam for tests).

    Raises:
        UnsupportedError: no usable cgroup hierarchy at ``root``.
    """
    try:
        magic = fs_magic(str(root))
    except OSError as exc:
        raise UnsupportedError(
            f"no cgroup filesystem at {root}",
            hint="mount cgroupfs (cgroup2 or v1 controllers) there",
        ) from exc
    if magic == syscalls.CGROUP2_SUPER_MAGIC:
        return SetupV2(root, parent)
    if (root / "memory").is_dir():
        return SetupV1(root, parent)
    raise UnsupportedError(
        f"no usable cgroup hierarchy at {root}",
        hint="mount cgroup2 at /sys/fs/cgroup, "
        "or the v1 memory, pids, cpuacct and freezer controllers",
    )
