"""cgroup v2 (unified hierarchy): one directory per job.

Controllers are enabled in our parent's ``cgroup.subtree_control``; the
parent itself holds no process (the "no internal processes" rule), jobs are
leaves. CPU bandwidth: ``cpu.max``; pinning: ``cpuset.cpus`` (when the
cpuset controller is available). Memory: ``memory.max`` and ``memory.swap.max`` = 0; the peak from
``memory.peak``; OOM kills from ``memory.events``. ``cgroup.kill`` (Linux
5.14+) kills every member atomically; without it we freeze, kill, thaw.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sandbox.errors import CgroupError, UnsupportedError
from sandbox.kernel.cgroups.base import (
    CPU_PERIOD_US,
    LEAF,
    CgroupLimits,
    CgroupStats,
    HeldFiles,
    counted,
    counter_sum,
    cpu_quota_us,
    freeze_and_kill,
    has_no_children,
    parse_keyed,
    read_file,
    remove_tree,
    subtree,
    write_file,
)

__all__ = ["CgroupV2", "SetupV2"]

REQUIRED = ("memory", "pids", "cpu")
RECLAIM_ABOVE = 2**20  # as v1.RECLAIM_ABOVE
OPTIONAL = ("cpuset",)
PROCS = "cgroup.procs"
CONTROLLERS_FILE = "cgroup.controllers"
SUBTREE_CONTROL = "cgroup.subtree_control"
EVENTS = "cgroup.events"
KILL = "cgroup.kill"
FREEZE = "cgroup.freeze"
MEMORY_MAX = "memory.max"
SWAP_MAX = "memory.swap.max"
MEMORY_PEAK = "memory.peak"
MEMORY_CURRENT = "memory.current"
MEMORY_EVENTS = "memory.events"
MEMORY_RECLAIM = "memory.reclaim"
OOM_GROUP = "memory.oom.group"
PIDS_EVENTS = "pids.events"
CPU_STAT = "cpu.stat"
CPU_MAX = "cpu.max"
CPUSET_CPUS = "cpuset.cpus"


class CgroupV2:
    """A job's cgroup on a v2 host."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._leaf = path / LEAF
        self._cpu_base_us = 0
        self._pinned = False
        self._peak_resets = False
        self._oom_base = 0
        self._pids_base = 0
        # Counters, join descriptors, and memory.peak ("peak"): on Linux 6.12+ a
        # write to it resets the peak seen through that descriptor only, so the
        # reset and every read use the one kept.
        self._files = HeldFiles()
        self._swap_max: bool | None = None
        # Limit files as we last wrote them: only we write them (the job's
        # cgroup namespace starts below), so a recycled cgroup skips the same value.
        self._written: dict[str, str] = {}

    def __del__(self) -> None:
        self._files.close()

    def procs_files(self) -> tuple[str, ...]:
        return (str(self.path / LEAF / PROCS),)

    def join_fds(self) -> tuple[int, ...]:
        return self._files.join(self.procs_files())

    def _put(self, filename: str, value: str) -> None:
        """Write a limit file, unless it holds ``value`` already."""
        if self._written.get(filename) != value:
            write_file(self.path / filename, value)
            self._written[filename] = value

    def set_limits(self, limits: CgroupLimits) -> None:
        memory_bytes, cpus, cpuset = limits.memory_bytes, limits.cpus, limits.cpuset
        self._put(MEMORY_MAX, str(memory_bytes))
        if self._swap_max is None:
            self._swap_max = (self.path / SWAP_MAX).exists()
        if self._swap_max:
            self._put(SWAP_MAX, "0")
        for filename, value in limits.files.items():
            self._put(filename, str(value))
        if cpus is not None:
            self._put(CPU_MAX, f"{cpu_quota_us(cpus)} {CPU_PERIOD_US}")
        if cpuset:
            if not (self.path / CPUSET_CPUS).exists():
                raise CgroupError("the cpuset controller is not enabled: cannot pin a job")
            write_file(self.path / CPUSET_CPUS, cpuset)
            self._pinned = True
        elif self._pinned:  # a recycled cgroup: its last job was pinned, this one is not
            write_file(self.path / CPUSET_CPUS, "\n")  # empty: the parent's CPUs
            self._pinned = False

    def reset_accounting(self) -> None:
        # cpu.stat cannot be reset: remember where the job starts.
        self._cpu_base_us = self._cpu_usec()
        # Linux 6.12+ resets the peak on a write, for reads through the same
        # descriptor; older kernels keep the high-water mark since creation.
        peak = self._files.named("peak")
        if peak < 0:
            with contextlib.suppress(OSError):
                peak = os.open(self.path / MEMORY_PEAK, os.O_RDWR | os.O_CLOEXEC)
                self._files.keep("peak", peak)
        if peak >= 0:
            try:
                os.write(peak, b"reset")
                self._peak_resets = True
            except OSError:
                self._peak_resets = False

    def _peak(self) -> int:
        peak = self._files.named("peak")
        if peak >= 0:
            with contextlib.suppress(OSError, ValueError):
                return int(os.pread(peak, 64, 0))
        peak_file = self.path / MEMORY_PEAK
        if not peak_file.exists():  # Linux < 5.19: the best we have
            peak_file = self.path / MEMORY_CURRENT
        return int(read_file(peak_file))

    def _cpu_usec(self) -> int:
        return parse_keyed(self._files.read(self.path / CPU_STAT)).get("usage_usec", 0)

    def cpu_usage_ns(self) -> int:
        return (self._cpu_usec() - self._cpu_base_us) * 1000

    def cpu_total_ns(self) -> int:
        return self._cpu_usec() * 1000

    def cpu_base_ns(self) -> int:
        return self._cpu_base_us * 1000

    def memory_current(self) -> int:
        return int(self._files.read(self.path / MEMORY_CURRENT))

    def stats(self) -> CgroupStats:
        # A cgroup below ours has a file only if it enables the controller.
        dirs = counted(self.path, self._leaf)
        return CgroupStats(
            cpu_ns=self.cpu_usage_ns(),
            memory_peak=self._peak(),
            oom_kills=self._oom_kills_in(dirs),
            pids_limit_hits=counter_sum(dirs, PIDS_EVENTS, "max", self._files.read_in)
            - self._pids_base,
        )

    def held_fds(self) -> tuple[int, ...]:
        return self._files.fds()

    def oom_kills(self) -> int:
        return self._oom_kills_in(counted(self.path, self._leaf))

    def _oom_kills_in(self, dirs: list[Path]) -> int:
        return counter_sum(dirs, MEMORY_EVENTS, "oom_kill", self._files.read_in) - self._oom_base

    def watch_oom(self) -> int:
        return -1  # memory.oom.group (SetupV2.create): the kernel kills the whole job

    def recycle(self) -> bool:
        if not (self._peak_resets and has_no_children(self.path / LEAF)):
            return False  # an old kernel's peak would carry over, or the job made cgroups
        if not self.is_empty():
            return False
        current = self.memory_current()
        if current > RECLAIM_ABOVE:  # page cache the last job left charged (Linux 5.19+)
            with contextlib.suppress(CgroupError):
                write_file(self.path / MEMORY_RECLAIM, str(current))
        dirs = (self.path, self._leaf)
        self._oom_base = counter_sum(dirs, MEMORY_EVENTS, "oom_kill", self._files.read_in)
        self._pids_base = counter_sum(dirs, PIDS_EVENTS, "max", self._files.read_in)
        return True

    def is_empty(self) -> bool:
        try:
            return parse_keyed(self._files.read(self.path / EVENTS)).get("populated", 0) == 0
        except CgroupError:
            return True

    def kill(self) -> None:
        if (self.path / KILL).exists():
            write_file(self.path / KILL, "1")
            return

        def freeze(on: bool) -> None:
            for d in [self.path] if on else subtree(self.path):
                with contextlib.suppress(CgroupError):
                    write_file(d / FREEZE, "1" if on else "0")

        freeze_and_kill(
            freeze,
            lambda: parse_keyed(read_file(self.path / EVENTS)).get("frozen") == 1,
            lambda: [int(p) for d in subtree(self.path) for p in read_file(d / PROCS).split()],
        )

    def destroy(self) -> None:
        self._files.close()
        remove_tree(self.path)


class SetupV2:
    """Our parent cgroup on a unified hierarchy."""

    version = 2

    def __init__(self, root: Path, parent: str) -> None:
        self.root = root
        self.parent = parent

    def _available(self) -> set[str]:
        return set(read_file(self.root / CONTROLLERS_FILE).split())

    def missing(self) -> list[str]:
        try:
            available = self._available()
        except CgroupError:
            return list(REQUIRED)
        return [c for c in REQUIRED if c not in available]

    def can_pin(self) -> bool:
        try:
            enabled = read_file(self.root / self.parent / SUBTREE_CONTROL).split()
        except CgroupError:
            return False
        return "cpuset" in enabled

    def ensure_parent(self) -> None:
        missing = self.missing()
        if missing:
            raise UnsupportedError(
                f"cgroup v2 controller {missing[0]} is not available in {self.root}",
                hint="boot with it enabled (it is on by default in Debian's kernel)",
            )
        enabled = set(read_file(self.root / SUBTREE_CONTROL).split())
        wanted = [c for c in (*REQUIRED, *OPTIONAL) if c in self._available()]
        absent = [c for c in REQUIRED if c not in enabled]
        if absent:
            raise UnsupportedError(
                f"cgroup v2 controller {absent[0]} is not enabled for children of {self.root}",
                hint=f"run: echo +{absent[0]} > {self.root / SUBTREE_CONTROL}",
            )
        parent = self.root / self.parent
        parent.mkdir(exist_ok=True)
        have = set(read_file(parent / SUBTREE_CONTROL).split())
        todo = [c for c in wanted if c in enabled and c not in have]
        if todo:
            write_file(parent / SUBTREE_CONTROL, " ".join(f"+{c}" for c in todo))

    def create(self, name: str) -> CgroupV2:
        path = self.root / self.parent / name
        made = False
        try:
            path.mkdir()
            made = True
            (path / LEAF).mkdir()
        except OSError as exc:
            if made:  # only what we made: an existing cgroup is someone else's
                with contextlib.suppress(OSError):
                    remove_tree(path)
            raise CgroupError(
                f"cannot create cgroup {path}: {exc.strerror}", path=str(path)
            ) from exc
        # One workload for the OOM killer: its first kill in the job's limit
        # kills every process of the job (and of cgroups below its leaf)
        # rather than one, which would leave the rest thrashing at the cap.
        # The job cannot undo it: the highest ancestor's setting wins.
        try:
            if (path / OOM_GROUP).exists():  # Linux 4.19+
                write_file(path / OOM_GROUP, "1")
        except CgroupError:
            with contextlib.suppress(OSError):
                remove_tree(path)
            raise
        return CgroupV2(name, path)

    def open(self, name: str) -> CgroupV2:
        return CgroupV2(name, self.root / self.parent / name)

    def children(self) -> list[str]:
        base = self.root / self.parent
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir())
