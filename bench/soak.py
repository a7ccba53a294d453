"""Soak: many hostile jobs through a real worker, then prove nothing leaked.

Starts a private redis-server and one `celery worker` (the project's, with its
own cgroup parent and run dir), runs N jobs of a mixed workload (normal
programs, OOM, time-outs, CPU spins, fork bombs, output floods, crashes,
daemons), checks that every job got the status it deserved, and compares the
host before and after: our mounts, our cgroup trees, the worker's process
tree (its pool of ready containers included: the same number), the open
descriptors of every worker process, and their memory (RSS, within a margin
of max(16 MiB, 10%)).

    sudo .venv/bin/python bench/soak.py --jobs 2000 [--concurrency 2] [--json]

Exit status 0 when every job was right and nothing leaked. CI runs a short
version (tests/service/test_soak.py).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.ports import free_port, start_redis

PARENT = "sandbox-soak"
RUN_DIR = Path("/run/sandbox-soak")
CELERY = str(Path(sys.executable).with_name("celery"))
MEMORY_MARGIN = 16 * 2**20
# Ready containers per worker process; each is three processes (C, I, J).
POOL_SIZE = 2


@dataclass(frozen=True)
class Kind:
    """One kind of job in the mix, and what its result must say."""

    name: str
    code: str
    fields: dict[str, Any]
    check: Callable[[dict[str, Any]], bool]


INOTIFY_BOMB = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
held = []
while (fd := libc.inotify_init1(0)) >= 0:
    held.append(fd)
print(len(held))
"""

# More per-user counters, each exhausted at its per-job ceiling: POSIX message
# queue bytes (819200: 9 queues of ten 8 KiB messages) and pending signals
# (4096). (Namespaces: the seccomp filter refuses unshare to a job; their
# ceilings are tested with it off, tests/security/test_kernel_counters.py.)
COUNTER_BOMB = """
import ctypes, os, signal, threading
libc = ctypes.CDLL(None, use_errno=True)
class Attr(ctypes.Structure):
    _fields_ = [('flags', ctypes.c_long), ('maxmsg', ctypes.c_long),
                ('msgsize', ctypes.c_long), ('curmsgs', ctypes.c_long),
                ('reserved', ctypes.c_long * 4)]
attr = Attr(0, 10, 8192, 0)
queues = 0
while queues < 1000 and libc.mq_open(f'/q{queues}'.encode(), os.O_RDWR | os.O_CREAT,
                                     ctypes.c_uint(0o600), ctypes.byref(attr)) >= 0:
    queues += 1
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
pending = 0
while pending < 100000:
    try:
        signal.pthread_kill(threading.get_ident(), signal.SIGRTMIN)
    except OSError:
        break
    pending += 1
print(queues, pending)
"""

MIX = [
    Kind("ok", "print(sum(map(int, input().split())))", {"stdin": "2 3\n"},
         lambda r: r["status"] == "ok" and r["stdout"] == "5\n"),
    Kind("oom", "x = bytearray(512 * 2**20)", {"limits": {"memory": "64M"}},
         lambda r: r["status"] == "memory_limit" and r["oom_killed"]),
    Kind("sleep", "import time\ntime.sleep(30)", {"limits": {"wall_time": 1}},
         lambda r: r["status"] == "timeout" and r["timed_out"]),
    Kind("spin", "while True:\n    pass", {"limits": {"cpu_time": 0.3, "wall_time": 5}},
         lambda r: r["status"] == "timeout"),
    Kind("fork-bomb",
         "import os, time\ntry:\n    while True:\n        if os.fork() == 0:\n"
         "            time.sleep(30)\nexcept OSError:\n    print('stopped')",
         {"limits": {"pids": 16, "wall_time": 2}},
         lambda r: r["pids_limit_hit"] and r["status"] in ("ok", "timeout")),
    Kind("flood", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
         {"limits": {"output": "256K", "wall_time": 5}},
         lambda r: r["status"] == "output_limit" and r["output_truncated"]),
    Kind("crash", "raise RuntimeError('boom')", {},
         lambda r: r["status"] == "runtime_error" and r["exit_code"] == 1),
    Kind("segfault", "import ctypes\nctypes.string_at(0)", {},
         lambda r: r["status"] == "runtime_error" and r["signal"] == 11),
    Kind("daemon",
         "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint('bye')",
         {}, lambda r: r["status"] == "ok" and r["stdout"] == "bye\n"),
    Kind("shell", "echo $((6 * 7))", {"language": "sh"},
         lambda r: r["status"] == "ok" and r["stdout"] == "42\n"),
    # A kernel-wide counter, exhausted: it stops at the per-job ceiling
    # (SANDBOX_KERNEL_LIMITS inotify_instances, 64), charged to its own uid.
    Kind("inotify", INOTIFY_BOMB, {}, lambda r: r["status"] == "ok" and r["stdout"] == "64\n"),
    Kind("counters", COUNTER_BOMB, {},
         lambda r: r["status"] == "ok" and r["stdout"] == "9 4096\n"),
]  # fmt: skip


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="soak-redis-")
    port = free_port()
    proc = start_redis(port, directory)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _rss(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _worker_processes(main: int) -> list[int]:
    """The worker's own processes: its main process and the pool children (python)."""
    procs = [main]
    for pid in sorted(_descendants(main)):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"python3"):
                procs.append(pid)
    return procs


def snapshot(main: int) -> dict[str, Any]:
    """What of ours exists now.

    The worker's process tree: per worker process, itself, its spawner and
    three processes per ready container.
    """
    mounts = sorted(
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if "sandbox" in line.split()[4]
    )
    root = Path("/sys/fs/cgroup")
    # The memory hierarchy's (v1) or the unified tree's (v2): one per container.
    base = root / "memory" / PARENT if (root / "memory").is_dir() else root / PARENT
    tops = [p for p in base.glob("*") if p.is_dir()]
    in_use = [p for p in tops if _read(p / "job" / "cgroup.procs").strip()]
    workers = _worker_processes(main)
    tree = _descendants(main)
    return {
        "mounts": mounts,
        # The ready pool's containers: a count, not names. Emptied cgroups kept
        # for the next containers (bounded by Runtime.idle_cgroup_cap) are not.
        "cgroups": len(in_use),
        "cgroups_in_use": sorted(p.name for p in in_use),
        "idle_cgroups": len(tops) - len(in_use),
        "processes": len(tree),
        "namespaces": _namespaces(tree | {main}),
        "fds": {pid: len(os.listdir(f"/proc/{pid}/fd")) for pid in workers},
        "rss": sum(_rss(pid) for pid in workers),
        "job_records": sorted(p.name for p in (RUN_DIR / "jobs").glob("*")),
        "mount_point": sorted(os.listdir(RUN_DIR / "mnt")) if (RUN_DIR / "mnt").is_dir() else [],
    }


def _namespaces(pids: set[int]) -> int:
    """How many namespaces (of every kind) the processes hold: the pool's, at rest."""
    held = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for kind in os.listdir(f"/proc/{pid}/ns"):
                held.add(os.readlink(f"/proc/{pid}/ns/{kind}"))
    return len(held)


def _host_gets_counters() -> dict[str, bool]:
    """Root on the host still gets what jobs exhausted: inotify instances, a POSIX
    message queue, a queued signal."""
    libc = ctypes.CDLL(None, use_errno=True)
    fds = [libc.inotify_init1(0) for _ in range(8)]
    for fd in fds:
        if fd >= 0:
            os.close(fd)
    name = f"/soak-{os.getpid()}".encode()
    queue = libc.mq_open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, ctypes.c_uint(0o600), None)
    if queue >= 0:
        os.close(queue)
        libc.mq_unlink(name)
    try:  # SIGRTMIN blocked in a child, sent to it: queued, or EAGAIN past root's limit
        pid = os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
            try:
                signal.pthread_kill(threading.get_ident(), signal.SIGRTMIN)
                os._exit(0)
            except OSError:
                os._exit(1)
        queued = os.waitpid(pid, 0)[1] == 0
    except OSError:
        queued = False
    return {
        "inotify": all(fd >= 0 for fd in fds),
        "mqueue": queue >= 0,
        "sigpending": queued,
    }


def _read(path: Path) -> str:
    """A cgroupfs file's text, or "" if its cgroup went away as we looked."""
    try:
        return path.read_text()
    except OSError:
        return ""


def _settled(main: int, timeout: float = 30) -> dict[str, Any]:
    """A snapshot once the pool has refilled (two equal snapshots a second apart)."""
    deadline = time.monotonic() + timeout
    last = snapshot(main)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = snapshot(main)
        moving = ("rss", "idle_cgroups", "cgroups_in_use")  # recycled cgroups change hands
        if {k: v for k, v in now.items() if k not in moving} == {
            k: v for k, v in last.items() if k not in moving
        }:
            return now
        last = now
    return last


def compare(before: dict[str, Any], after: dict[str, Any], concurrency: int = 2) -> dict[str, Any]:
    """Differences that are leaks (memory: beyond the margin; emptied cgroups: beyond
    what the runtimes may keep, Runtime.idle_cgroup_cap each)."""
    leaks: dict[str, Any] = {}
    equal = ("mounts", "cgroups", "processes", "namespaces", "fds", "job_records", "mount_point")
    for key in equal:
        if before[key] != after[key]:
            leaks[key] = {"before": before[key], "after": after[key]}
    if "cgroups" in leaks:  # which: the names say whose (owner) and which (n)
        leaks["cgroups"]["in_use"] = after["cgroups_in_use"]
    idle_max = concurrency * 2 * (POOL_SIZE + len(os.sched_getaffinity(0)))
    if after["idle_cgroups"] > idle_max:
        leaks["idle_cgroups"] = {"after": after["idle_cgroups"], "max": idle_max}
    margin = max(MEMORY_MARGIN, before["rss"] // 10)
    if after["rss"] - before["rss"] > margin:
        leaks["rss"] = {"before": before["rss"], "after": after["rss"], "margin": margin}
    return leaks


def run(jobs: int, concurrency: int = 2, batch: int = 40) -> dict[str, Any]:
    """Run the soak; return its report (``ok`` is the verdict)."""
    with _redis() as url:
        env = {
            **os.environ,
            "SANDBOX_REDIS_URL": url,
            "SANDBOX_CGROUP_PARENT": PARENT,
            "SANDBOX_RUN_DIR": str(RUN_DIR),
            "SANDBOX_POOL_SIZE": str(POOL_SIZE),
            "SANDBOX_POOL_MAX": str(POOL_SIZE),  # a fixed pool: the same number after
        }
        os.environ["SANDBOX_REDIS_URL"] = url  # for worker.app, imported below
        fd, log_path = tempfile.mkstemp(prefix="soak-worker-", suffix=".log")
        with os.fdopen(fd, "w") as log:  # the worker keeps its own copy
            worker = subprocess.Popen(
                [CELERY, "-A", "worker.app:app", "worker", "-n", "soak@%h",
                 "--concurrency", str(concurrency), "--loglevel", "WARNING",
                 "--without-mingle", "--without-gossip", "--without-heartbeat"],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        try:
            from worker.app import app
            from worker.tasks import run as run_task

            app.conf.update(broker_url=url, result_backend=url)
            # Warm up until every worker process has run a job, so each has its warm
            # pool: jobs that overlap in time go to different processes.
            for _ in range(10):
                warm = [run_task.delay("import time\ntime.sleep(0.5)") for _ in range(concurrency)]
                for result in warm:
                    result.get(timeout=120)
                before = _settled(worker.pid)
                if before["processes"] >= concurrency * (2 + 3 * POOL_SIZE):
                    break
            else:
                raise RuntimeError(f"the worker's pools never filled: {before}")
            start = time.monotonic()
            wrong: list[dict[str, Any]] = []
            counts: Counter[str] = Counter()
            for first in range(0, jobs, batch):
                pending = []
                for i in range(first, min(first + batch, jobs)):
                    kind = MIX[i % len(MIX)]
                    pending.append((kind, run_task.delay(kind.code, **kind.fields)))
                for kind, result in pending:
                    data = result.get(timeout=300)
                    counts[kind.name] += 1
                    if not kind.check(data):
                        wrong.append({"kind": kind.name, "result": data})
            elapsed = time.monotonic() - start
            after = _settled(worker.pid)
            leaks = compare(before, after, concurrency)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(120)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    root = Path("/sys/fs/cgroup")
    leftover_cgroups = [
        str(p) for p in [*root.glob(f"*/{PARENT}/*"), *root.glob(f"{PARENT}/*")] if p.is_dir()
    ]
    if not leftover_cgroups:  # our parent, in every hierarchy: the soak's own
        for parent in [*root.glob(f"*/{PARENT}"), root / PARENT]:
            with contextlib.suppress(OSError):
                parent.rmdir()
    host = _host_gets_counters()
    ok = not wrong and not leaks and not leftover_cgroups and all(host.values())
    if ok:  # kept only to look into a failure
        os.unlink(log_path)
        shutil.rmtree(RUN_DIR, ignore_errors=True)  # the soak's own run dir
    return {
        "ok": ok,
        "jobs": jobs,
        "seconds": round(elapsed, 1),
        "jobs_per_second": round(jobs / elapsed, 1) if elapsed else 0.0,
        "kinds": dict(counts),
        "wrong": wrong[:10],
        "wrong_count": len(wrong),
        "leaks": leaks,
        "cgroups_after_shutdown": leftover_cgroups,
        "host_root_gets": host,
        "rss_before": before["rss"],
        "rss_after": after["rss"],
        "worker_log": None if ok else log_path,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.jobs, args.concurrency)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        rss = f"{report['rss_before'] / 2**20:.1f} -> {report['rss_after'] / 2**20:.1f} MiB"
        print(
            f"{report['jobs']} jobs in {report['seconds']} s ({report['jobs_per_second']}/s): "
            f"{report['wrong_count']} wrong, leaks: {report['leaks'] or 'none'}; worker RSS {rss}"
        )
        for item in report["wrong"]:
            print(json.dumps(item), file=sys.stderr)
    sys.exit(0 if report["ok"] else 1)
