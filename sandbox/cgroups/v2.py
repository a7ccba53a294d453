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
from pathlib import Path

from sandbox.cgroups.base import (
    CPU_PERIOD_US,
    LEAF,
    CgroupStats,
    cpu_quota_us,
    freeze_and_kill,
    parse_keyed,
    read_file,
    remove_tree,
    subtree,
    write_file,
)
from sandbox.errors import CgroupError, UnsupportedError

__all__ = ["CgroupV2", "SetupV2"]

REQUIRED = ("memory", "pids", "cpu")
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
PIDS_MAX = "pids.max"
PIDS_EVENTS = "pids.events"
CPU_STAT = "cpu.stat"
CPU_MAX = "cpu.max"
CPUSET_CPUS = "cpuset.cpus"


class CgroupV2:
    """A job's cgroup on a v2 host."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._cpu_base_us = 0

    def procs_files(self) -> tuple[str, ...]:
        return (str(self.path / LEAF / PROCS),)

    def set_limits(
        self, *, memory_bytes: int, pids_max: int, cpus: float | None = None, cpuset: str = ""
    ) -> None:
        write_file(self.path / MEMORY_MAX, str(memory_bytes))
        if (self.path / SWAP_MAX).exists():
            write_file(self.path / SWAP_MAX, "0")
        write_file(self.path / PIDS_MAX, str(pids_max))
        if cpus is not None:
            write_file(self.path / CPU_MAX, f"{cpu_quota_us(cpus)} {CPU_PERIOD_US}")
        if cpuset:
            if not (self.path / CPUSET_CPUS).exists():
                raise CgroupError("the cpuset controller is not enabled: cannot pin a job")
            write_file(self.path / CPUSET_CPUS, cpuset)

    def reset_accounting(self) -> None:
        # cpu.stat cannot be reset: remember where the job starts.
        self._cpu_base_us = self._cpu_usec()
        # Linux 6.12+ resets the peak on a write; older kernels keep the
        # high-water mark of our setup (our code's few pages before execve).
        with contextlib.suppress(CgroupError):
            write_file(self.path / MEMORY_PEAK, "reset")

    def _cpu_usec(self) -> int:
        return parse_keyed(read_file(self.path / CPU_STAT)).get("usage_usec", 0)

    def cpu_usage_ns(self) -> int:
        return (self._cpu_usec() - self._cpu_base_us) * 1000

    def cpu_total_ns(self) -> int:
        return self._cpu_usec() * 1000

    def cpu_base_ns(self) -> int:
        return self._cpu_base_us * 1000

    def memory_current(self) -> int:
        return int(read_file(self.path / MEMORY_CURRENT))

    def stats(self) -> CgroupStats:
        peak_file = self.path / MEMORY_PEAK
        if not peak_file.exists():  # Linux < 5.19: the best we have
            peak_file = self.path / MEMORY_CURRENT
        return CgroupStats(
            cpu_ns=self.cpu_usage_ns(),
            memory_peak=int(read_file(peak_file)),
            oom_kills=self._most(MEMORY_EVENTS, "oom_kill"),
            pids_limit_hits=self._most(PIDS_EVENTS, "max"),
        )

    def _most(self, filename: str, key: str) -> int:
        """The largest ``key`` counter of this cgroup and those below it."""
        # A cgroup below ours has the file only if a controller is enabled for it.
        files = [d / filename for d in subtree(self.path) if (d / filename).exists()]
        return max((parse_keyed(read_file(f)).get(key, 0) for f in files), default=0)

    def is_empty(self) -> bool:
        try:
            return parse_keyed(read_file(self.path / EVENTS)).get("populated", 0) == 0
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
        return CgroupV2(name, path)

    def open(self, name: str) -> CgroupV2:
        return CgroupV2(name, self.root / self.parent / name)

    def children(self) -> list[str]:
        base = self.root / self.parent
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir())
