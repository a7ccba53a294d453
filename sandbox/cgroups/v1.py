"""cgroup v1 (legacy and hybrid hosts): one directory per controller.

We use the memory, pids, cpu, cpuacct and freezer hierarchies (and cpuset to
pin a job). CPU bandwidth: ``cpu.cfs_quota_us`` per ``cpu.cfs_period_us``. Memory is capped by
``memory.limit_in_bytes`` and, where swap accounting exists, by an equal
``memory.memsw.limit_in_bytes`` (no swap); ``memory.swappiness`` is set to 0
as well. v1 has no ``cgroup.kill``: :meth:`CgroupV1.kill` freezes the cgroup,
SIGKILLs every member, then thaws it, so a fork bomb cannot outrun the kill.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sandbox.cgroups.base import (
    CPU_PERIOD_US,
    LEAF,
    CgroupStats,
    cpu_quota_us,
    for_each,
    freeze_and_kill,
    parse_keyed,
    read_file,
    remove_tree,
    subtree,
    write_file,
)
from sandbox.errors import CgroupError, UnsupportedError

__all__ = ["CgroupV1", "SetupV1"]

CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
PROCS = "cgroup.procs"
MEMORY_LIMIT = "memory.limit_in_bytes"
MEMSW_LIMIT = "memory.memsw.limit_in_bytes"
SWAPPINESS = "memory.swappiness"
MEMORY_PEAK = "memory.max_usage_in_bytes"
MEMORY_USAGE = "memory.usage_in_bytes"
OOM_CONTROL = "memory.oom_control"
PIDS_MAX = "pids.max"
PIDS_EVENTS = "pids.events"
CPU_USAGE = "cpuacct.usage"
CFS_PERIOD = "cpu.cfs_period_us"
CFS_QUOTA = "cpu.cfs_quota_us"
FREEZER_STATE = "freezer.state"
CPUSET_CPUS = "cpuset.cpus"
CPUSET_MEMS = "cpuset.mems"


class CgroupV1:
    """A job's cgroup on a v1 host."""

    def __init__(self, name: str, dirs: dict[str, Path]) -> None:
        self.name = name
        self._dirs = dirs

    def _unique_dirs(self) -> list[Path]:
        seen: dict[str, Path] = {}
        for path in self._dirs.values():
            seen.setdefault(os.path.realpath(path), path)
        return list(seen.values())

    def procs_files(self) -> tuple[str, ...]:
        return tuple(str(d / LEAF / PROCS) for d in self._unique_dirs())

    def set_limits(
        self, *, memory_bytes: int, pids_max: int, cpus: float | None = None, cpuset: str = ""
    ) -> None:
        mem = self._dirs["memory"]
        write_file(mem / MEMORY_LIMIT, str(memory_bytes))
        if (mem / MEMSW_LIMIT).exists():
            write_file(mem / MEMSW_LIMIT, str(memory_bytes))
        if (mem / SWAPPINESS).exists():
            write_file(mem / SWAPPINESS, "0")
        write_file(self._dirs["pids"] / PIDS_MAX, str(pids_max))
        if cpus is not None:
            write_file(self._dirs["cpu"] / CFS_PERIOD, str(CPU_PERIOD_US))
            write_file(self._dirs["cpu"] / CFS_QUOTA, str(cpu_quota_us(cpus)))
        if cpuset:
            if "cpuset" not in self._dirs:
                raise CgroupError("no cpuset hierarchy is mounted: cannot pin a job")
            # On v1 a child's CPUs must stay within its parent's: narrow the leaf,
            # where the job runs (it holds no other process).
            write_file(self._dirs["cpuset"] / LEAF / CPUSET_CPUS, cpuset)

    def reset_accounting(self) -> None:
        write_file(self._dirs["cpuacct"] / CPU_USAGE, "0")
        write_file(self._dirs["memory"] / MEMORY_PEAK, "0")  # resets to the current usage

    def cpu_usage_ns(self) -> int:
        return int(read_file(self._dirs["cpuacct"] / CPU_USAGE))

    def cpu_total_ns(self) -> int:
        return self.cpu_usage_ns()

    def cpu_base_ns(self) -> int:
        return 0

    def memory_current(self) -> int:
        return int(read_file(self._dirs["memory"] / MEMORY_USAGE))

    def stats(self) -> CgroupStats:
        mem = self._dirs["memory"]
        return CgroupStats(
            cpu_ns=self.cpu_usage_ns(),
            memory_peak=int(read_file(mem / MEMORY_PEAK)),
            # Counted where the kill or the refused fork happened: anywhere below.
            oom_kills=_most(mem, OOM_CONTROL, "oom_kill"),
            pids_limit_hits=_most(self._dirs["pids"], PIDS_EVENTS, "max"),
        )

    def _pids(self) -> set[int]:
        pids: set[int] = set()
        for top in self._unique_dirs():
            for d in subtree(top):
                try:
                    pids.update(int(p) for p in read_file(d / PROCS).split())
                except CgroupError:
                    continue  # already removed
        return pids

    def is_empty(self) -> bool:
        return not self._pids()

    def kill(self) -> None:
        top = self._dirs["freezer"]
        state = top / FREEZER_STATE

        def freeze(on: bool) -> None:
            if on:
                write_file(state, "FROZEN")
                return
            # Thaw everything, including cgroups the job froze itself: frozen
            # tasks do not die of SIGKILL until thawed.
            for d in subtree(top):
                with contextlib.suppress(CgroupError):
                    write_file(d / FREEZER_STATE, "THAWED")

        freeze_and_kill(freeze, lambda: read_file(state).strip() == "FROZEN", self._pids)

    def destroy(self) -> None:
        for_each(remove_tree, self._unique_dirs())


def _most(top: Path, filename: str, key: str) -> int:
    """The largest ``key`` counter in ``filename`` of ``top`` and the cgroups below it."""
    return max((parse_keyed(read_file(d / filename)).get(key, 0) for d in subtree(top)), default=0)


def mounted_hierarchies(root: Path, mountinfo: str = "/proc/self/mountinfo") -> dict[str, Path]:
    """Every cgroup hierarchy mounted directly under ``root``, by directory name.

    v1 hierarchies (``cgroup``) and, on a hybrid host, the cgroup2 tree
    (``unified``). Read from the mount table, not guessed from names.
    """
    found: dict[str, Path] = {}
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if "-" not in fields:
            continue
        fstype = fields[fields.index("-") + 1]
        point = Path(fields[4])
        if fstype in ("cgroup", "cgroup2") and point.parent == root:
            found[point.name] = point
    return found


class SetupV1:
    """Our parent cgroup in each v1 hierarchy.

    The job's limits need memory, pids, cpuacct and freezer. The job is also
    given a cgroup of its own in every other hierarchy mounted under the root
    (cpu, cpuset, blkio, devices, name=systemd, the hybrid cgroup2 tree...):
    its cgroup namespace is rooted at its own cgroup in each of them, so even
    a job that mounts cgroupfs sees no cgroup of the host.
    """

    version = 1

    def __init__(self, root: Path, parent: str) -> None:
        self.root = root
        self.parent = parent
        self._extra = [
            name
            for name, path in mounted_hierarchies(root).items()
            if name not in CONTROLLERS
            and os.path.realpath(path) not in {os.path.realpath(root / c) for c in CONTROLLERS}
        ]

    def missing(self) -> list[str]:
        return [c for c in CONTROLLERS if not (self.root / c / PROCS).exists()]

    def can_pin(self) -> bool:
        return "cpuset" in self._extra

    def _hierarchies(self) -> list[str]:
        return [*CONTROLLERS, *self._extra]

    def _dirs(self, name: str) -> dict[str, Path]:
        return {h: self.root / h / self.parent / name for h in self._hierarchies()}

    def ensure_parent(self) -> None:
        missing = self.missing()
        if missing:
            raise UnsupportedError(
                f"cgroup v1 controller {missing[0]} is not mounted under {self.root}",
                hint=f"mount it (mount -t cgroup -o {missing[0]} cgroup {self.root / missing[0]})",
            )
        for h in self._hierarchies():
            parent = self.root / h / self.parent
            parent.mkdir(exist_ok=True)
            _inherit_cpuset(parent)

    def create(self, name: str) -> CgroupV1:
        dirs = self._dirs(name)
        made: list[Path] = []
        try:
            for real in dict.fromkeys(os.path.realpath(p) for p in dirs.values()):
                os.mkdir(real)
                made.append(Path(real))
                _inherit_cpuset(Path(real))
                os.mkdir(Path(real) / LEAF)
                _inherit_cpuset(Path(real) / LEAF)
        except OSError as exc:
            for path in reversed(made):
                remove_tree(path)
            raise CgroupError(
                f"cannot create cgroup {exc.filename}: {exc.strerror}", path=exc.filename
            ) from exc
        return CgroupV1(name, dirs)

    def open(self, name: str) -> CgroupV1:
        return CgroupV1(name, self._dirs(name))

    def children(self) -> list[str]:
        names: set[str] = set()
        for h in self._hierarchies():
            base = self.root / h / self.parent
            if base.is_dir():
                names.update(p.name for p in base.iterdir() if p.is_dir())
        return sorted(names)


def _inherit_cpuset(path: Path) -> None:
    """A new cpuset cgroup has no CPUs or memory nodes: give it its parent's.

    (Nothing can join an empty cpuset.) Other hierarchies need nothing.
    """
    cpus = path / CPUSET_CPUS
    if not cpus.exists() or read_file(cpus).strip():
        return
    for filename in (CPUSET_CPUS, CPUSET_MEMS):
        write_file(path / filename, read_file(path.parent / filename).strip() or "\n")
