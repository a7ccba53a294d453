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
from collections.abc import Iterable
from pathlib import Path

from sandbox.errors import CgroupError, UnsupportedError
from sandbox.kernel.cgroups import base  # the helpers v2 shares: base.read_file...
from sandbox.kernel.cgroups.base import CPU_PERIOD_US, LEAF, CgroupLimits, CgroupStats, HeldFiles

__all__ = ["CgroupV1", "SetupV1"]

CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
# A finished job leaves 0.1-0.8 MiB of kernel objects (dentries, inodes)
# charged to its cgroup, which a forced reclaim (0.5 ms of CPU: it drains
# every CPU's page lists) frees only in part. Above this, it is page cache the
# job read first: reclaimed, so that the next job's limit and peak are its own.
# Below, the next job's peak may include it: memory is charged in batches of
# 256 KiB per CPU anyway (docs/adr/0008-native-launcher.md).
RECLAIM_ABOVE = 2**20
PROCS = "cgroup.procs"
MEMORY_LIMIT = "memory.limit_in_bytes"
MEMSW_LIMIT = "memory.memsw.limit_in_bytes"
SWAPPINESS = "memory.swappiness"
MEMORY_PEAK = "memory.max_usage_in_bytes"
MEMORY_USAGE = "memory.usage_in_bytes"
FORCE_EMPTY = "memory.force_empty"
OOM_CONTROL = "memory.oom_control"
EVENT_CONTROL = "cgroup.event_control"
PIDS_CURRENT = "pids.current"
PIDS_EVENTS = "pids.events"
CPU_USAGE = "cpuacct.usage"
CFS_PERIOD = "cpu.cfs_period_us"
CFS_QUOTA = "cpu.cfs_quota_us"
FREEZER_STATE = "freezer.state"
CPUSET_CPUS = "cpuset.cpus"
CPUSET_MEMS = "cpuset.mems"


class CgroupV1:
    """A job's cgroup on a v1 host."""

    def __init__(self, name: str, dirs: dict[str, Path], unique: list[Path] | None = None) -> None:
        self.name = name
        self._dirs = dirs
        self._unique = unique
        self._pinned = False
        # Counters the kernel never resets, as the last job left them (recycle).
        self._oom_base = 0
        self._pids_base = 0
        self._has_memsw: bool | None = None
        self._memory_limit = 2**63  # a new cgroup's: unlimited
        self._paths: dict[tuple[str, str], Path] = {}  # built once: a recycled cgroup's jobs
        self._procs: tuple[str, ...] | None = None
        self._leaves: tuple[str, ...] | None = None
        self._files = HeldFiles()  # counters, join descriptors, the OOM eventfd
        # Limit files as we last wrote them: only we write them (the job's
        # cgroup namespace starts below), so a recycled cgroup skips the same value.
        self._written: dict[tuple[str, str], str] = {}

    def __del__(self) -> None:
        self._files.close()

    def _file(self, controller: str, filename: str) -> Path:
        """``<controller's directory>/<filename>`` (``job/...`` for the leaf's)."""
        path = self._paths.get((controller, filename))
        if path is None:
            path = self._paths[controller, filename] = self._dirs[controller] / filename
        return path

    def _unique_dirs(self) -> list[Path]:
        """One directory per mounted hierarchy (co-mounted controllers share one)."""
        if self._unique is None:
            seen: dict[str, Path] = {}
            for path in self._dirs.values():
                seen.setdefault(os.path.realpath(path), path)
            self._unique = list(seen.values())
        return self._unique

    def procs_files(self) -> tuple[str, ...]:
        if self._procs is None:
            self._procs = tuple(str(d / LEAF / PROCS) for d in self._unique_dirs())
        return self._procs

    def join_fds(self) -> tuple[int, ...]:
        return self._files.join(self.procs_files())

    def _put(self, controller: str, filename: str, value: str) -> None:
        """Write a limit file, unless it holds ``value`` already."""
        if self._written.get((controller, filename)) != value:
            base.write_file(self._file(controller, filename), value)
            self._written[controller, filename] = value

    def set_limits(self, limits: CgroupLimits) -> None:
        memory_bytes, cpus, cpuset = limits.memory_bytes, limits.cpus, limits.cpuset
        if self._has_memsw is None:  # swap accounting (and swappiness) are the host's choice
            self._has_memsw = self._file("memory", MEMSW_LIMIT).exists()
            if self._file("memory", SWAPPINESS).exists():
                base.write_file(self._file("memory", SWAPPINESS), "0")
        # memory <= memory+swap at every moment: raise the second first, lower it last.
        if memory_bytes != self._memory_limit:
            order = [MEMORY_LIMIT, MEMSW_LIMIT] if self._has_memsw else [MEMORY_LIMIT]
            if memory_bytes > self._memory_limit:
                order.reverse()
            for filename in order:
                base.write_file(self._file("memory", filename), str(memory_bytes))
            self._memory_limit = memory_bytes
        for filename, value in limits.files.items():  # v2 names: the controller is the prefix
            self._put(filename.split(".", 1)[0], filename, str(value))
        if cpus is not None:
            self._put("cpu", CFS_PERIOD, str(CPU_PERIOD_US))
            self._put("cpu", CFS_QUOTA, str(base.cpu_quota_us(cpus)))
        if cpuset:
            if "cpuset" not in self._dirs:
                raise CgroupError("no cpuset hierarchy is mounted: cannot pin a job")
            # On v1 a child's CPUs must stay within its parent's: narrow the leaf,
            # where the job runs (it holds no other process).
            base.write_file(self._dirs["cpuset"] / LEAF / CPUSET_CPUS, cpuset)
            self._pinned = True
        elif self._pinned:  # a recycled cgroup: its last job was pinned, this one is not
            top = self._dirs["cpuset"]
            base.write_file(top / LEAF / CPUSET_CPUS, base.read_file(top / CPUSET_CPUS).strip())
            self._pinned = False

    def reset_accounting(self) -> None:
        base.write_file(self._file("cpuacct", CPU_USAGE), "0")
        base.write_file(self._file("memory", MEMORY_PEAK), "0")  # resets to the current usage

    def cpu_usage_ns(self) -> int:
        return int(self._files.read(self._file("cpuacct", CPU_USAGE)))

    def cpu_total_ns(self) -> int:
        return self.cpu_usage_ns()

    def cpu_base_ns(self) -> int:
        return 0

    def memory_current(self) -> int:
        return int(self._files.read(self._file("memory", MEMORY_USAGE)))

    def stats(self) -> CgroupStats:
        return CgroupStats(
            cpu_ns=self.cpu_usage_ns(),
            memory_peak=int(self._files.read(self._file("memory", MEMORY_PEAK))),
            # Counted where the kill or the refused fork happened: anywhere below.
            oom_kills=self.oom_kills(),
            pids_limit_hits=self._pids_events(self._counted("pids")) - self._pids_base,
        )

    def held_fds(self) -> tuple[int, ...]:
        return self._files.fds()

    def oom_kills(self) -> int:
        # As stats(): counted where the kill happened, anywhere below.
        return self._oom_events(self._counted("memory")) - self._oom_base

    def _counted(self, controller: str) -> list[Path]:
        return base.counted(self._dirs[controller], self._file(controller, LEAF))

    def _oom_events(self, dirs: Iterable[Path]) -> int:
        return base.counter_sum(dirs, OOM_CONTROL, "oom_kill", self._files.read_in)

    def _pids_events(self, dirs: Iterable[Path]) -> int:
        return base.counter_sum(dirs, PIDS_EVENTS, "max", self._files.read_in)

    def watch_oom(self) -> int:
        # v1 has no memory.oom.group: the supervisor ends the job. The event is
        # registered where the limit is (an OOM there notifies that memcg and
        # every memcg below it), once per cgroup; each job drains what the
        # eventfd counted before it, so it tells of this job's OOMs only.
        held = self._files.named("oom")  # closing it unregisters the kernel's event
        if held >= 0:
            with contextlib.suppress(BlockingIOError):
                os.read(held, 8)
            return held
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            oom_control = self._file("memory", OOM_CONTROL)
            try:
                fd = os.open(oom_control, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise CgroupError(
                    f"cannot open {oom_control}: {exc.strerror}",
                    path=str(oom_control),
                    errno=exc.errno,
                ) from exc
            try:  # the kernel keeps its own reference to both files
                base.write_file(self._file("memory", EVENT_CONTROL), f"{efd} {fd}")
            finally:
                os.close(fd)
        except BaseException:
            os.close(efd)
            raise
        self._files.keep("oom", efd)
        return efd

    def recycle(self) -> bool:
        # Its cgroup namespace is rooted at the leaf: nothing of the job's can be beside it.
        if self._leaves is None:
            self._leaves = tuple(str(d / LEAF) for d in self._unique_dirs())
        if not all(base.has_no_children(leaf) for leaf in self._leaves):
            return False  # the job made cgroups of its own, or ours are gone
        pids = self._dirs["pids"]
        if int(self._files.read(self._file("pids", PIDS_CURRENT))) != 0:
            return False
        mem = self._dirs["memory"]
        if self.memory_current() > RECLAIM_ABOVE:  # page cache it left charged
            base.write_file(self._file("memory", FORCE_EMPTY), "0")
        self._oom_base = self._oom_events((mem, self._file("memory", LEAF)))
        self._pids_base = self._pids_events((pids, self._file("pids", LEAF)))
        return True

    def _pids(self) -> set[int]:
        pids: set[int] = set()
        for top in self._unique_dirs():
            for d in base.subtree(top):
                try:
                    pids.update(int(p) for p in base.read_file(d / PROCS).split())
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
                base.write_file(state, "FROZEN")
                return
            # Thaw everything, including cgroups the job froze itself: frozen
            # tasks do not die of SIGKILL until thawed.
            for d in base.subtree(top):
                with contextlib.suppress(CgroupError):
                    base.write_file(d / FREEZER_STATE, "THAWED")

        base.freeze_and_kill(freeze, lambda: base.read_file(state).strip() == "FROZEN", self._pids)

    def destroy(self) -> None:
        self._files.close()
        base.for_each(base.remove_tree, self._unique_dirs())


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
        self._real_parents: list[tuple[Path, bool]] | None = None
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

    def _parents(self) -> list[tuple[Path, bool]]:
        """Our parent in each mounted hierarchy once (co-mounted controllers share
        one), and whether it is the cpuset one: resolved once, not per job."""
        if self._real_parents is None:
            parents = dict.fromkeys(os.path.realpath(p.parent) for p in self._dirs("x").values())
            self._real_parents = [(Path(p), (Path(p) / CPUSET_CPUS).exists()) for p in parents]
        return self._real_parents

    def create(self, name: str) -> CgroupV1:
        made: list[Path] = []
        try:
            for parent, cpuset in self._parents():
                top = parent / name
                os.mkdir(top)
                made.append(top)
                os.mkdir(top / LEAF)
                if cpuset:
                    _inherit_cpuset(top)
                    _inherit_cpuset(top / LEAF)
        except OSError as exc:
            for path in reversed(made):
                base.remove_tree(path)
            raise CgroupError(
                f"cannot create cgroup {exc.filename}: {exc.strerror}", path=exc.filename
            ) from exc
        return CgroupV1(name, self._dirs(name), made)

    def open(self, name: str) -> CgroupV1:
        return CgroupV1(name, self._dirs(name))

    def children(self) -> list[str]:
        names: set[str] = set()
        for h in self._hierarchies():
            ours = self.root / h / self.parent
            if ours.is_dir():
                names.update(p.name for p in ours.iterdir() if p.is_dir())
        return sorted(names)


def _inherit_cpuset(path: Path) -> None:
    """A new cpuset cgroup has no CPUs or memory nodes: give it its parent's.

    (Nothing can join an empty cpuset.) Other hierarchies need nothing.
    """
    cpus = path / CPUSET_CPUS
    if not cpus.exists() or base.read_file(cpus).strip():
        return
    for filename in (CPUSET_CPUS, CPUSET_MEMS):
        base.write_file(path / filename, base.read_file(path.parent / filename).strip() or "\n")
