"""A fleet under fire: worker hosts lost and Redis restarted under a steady load.

Starts its own redis-server (append-only, fsync always) and ``--workers``
Celery workers of the real app, each in a process group of its own (a
"host"), then submits a steady load of mixed jobs (short prints and 1.5 s
sleeps) from a client thread while it

1. ``--kills`` times, at random moments, SIGKILLs every process of a random
   worker (a lost host) and starts a new one in its place, and then
2. ``--redis-restarts`` times SIGKILLs redis-server and starts it again 2 s
   later, and then
3. ``--drains`` times stops a random worker with SIGTERM (a rolling
   deploy: its running jobs have ``--drain`` seconds, then go back to the
   queue) and starts a new one in its place at once.

It reports the jobs submitted, the jobs lost (a client that got no result,
or a wrong one), how many ran again and, for those, the time from the event
before it (a host's loss, a Redis restart) to their new delivery (from the
delivery counts the workers keep in Redis, read every 0.1 s), and how long
a drained worker took to exit. A job delivered again after a Redis restart
is a duplicate (its worker lived): there should be none; one whose
redelivery found its result stored and returned it without running is
counted apart (an acknowledgement lost in the outage). The lease is
``--lease`` seconds (SANDBOX_LEASE; docs/adr/0010-job-leases.md).

    sudo .venv/bin/python bench/fleet.py [--workers 3] [--kills 20] [--redis-restarts 5]
        [--drains 5] [--lease 5] [--drain 1] [--json] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ports import free_port, start_redis  # noqa: E402

PARENT = "sandbox-fleet"
RUN_DIR = "/run/sandbox-fleet"
SANDBOX = str(Path(sys.executable).with_name("sandbox"))
CELERY = str(Path(sys.executable).with_name("celery"))


class Fleet:
    def __init__(self, url: str, lease: float, drain: float, logs: Path, level: str) -> None:
        self.url, self.lease, self.drain_timeout, self.logs = url, lease, drain, logs
        self.level = level
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.retired: list[subprocess.Popen[bytes]] = []
        self.starts = 0

    def start(self, name: str) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "SANDBOX_REDIS_URL": self.url,
            "SANDBOX_LEASE": str(self.lease),
            "SANDBOX_DRAIN_TIMEOUT": str(self.drain_timeout),
            "SANDBOX_CGROUP_PARENT": PARENT,
            "SANDBOX_RUN_DIR": RUN_DIR,
            "SANDBOX_POOL_SIZE": "1",
            "TMPDIR": str(self.logs),  # billiard's pymp-* of a killed worker: removed with it
        }
        with (self.logs / f"{name}-{self.starts}.log").open("w") as out:
            self.workers[name] = subprocess.Popen(
                [CELERY, "-A", "worker.app:app", "worker", "-n", f"{name}-{self.starts}@%h",
                 "--concurrency", "2", "--loglevel", self.level, "--without-mingle",
                 "--without-gossip", "--without-heartbeat"],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip

    def kill(self, name: str) -> None:
        """The host is gone: every process of its worker at once."""
        proc = self.workers[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def drain(self, name: str) -> tuple[subprocess.Popen[bytes], float]:
        """A rolling deploy: SIGTERM, and a new worker in its place at once."""
        proc = self.workers[name]
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        self.retired.append(proc)
        self.start(name)
        return proc, stopped

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers.values(), *self.retired]:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--redis-restarts", type=int, default=5)
    parser.add_argument("--drains", type=int, default=5)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument(
        "--drain", type=float, default=1.0, help="SANDBOX_DRAIN_TIMEOUT of the workers"
    )
    parser.add_argument("--rate", type=float, default=8.0, help="jobs submitted per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-logs", type=Path, help="copy the workers' logs to this directory")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["SANDBOX_REDIS_URL"] = url
    tmp = tempfile.mkdtemp(prefix="sandbox-fleet-")
    redis_proc = start_redis(port, tmp, durable=True)
    level = "WARNING" if args.keep_logs is None else "INFO"
    fleet = Fleet(url, args.lease, args.drain, Path(tmp), level)
    names = [f"host{i}" for i in range(args.workers)]
    for name in names:
        fleet.start(name)

    import redis as redis_client

    from worker.tasks import ATTEMPTS_KEY, run

    submitted: list[tuple[Any, str]] = []
    stop_load = threading.Event()

    def load() -> None:
        i = 0
        while not stop_load.is_set():
            i += 1
            code = f"print({i})" if i % 3 else f"import time\ntime.sleep(1.5)\nprint({i})"
            try:
                submitted.append((run.delay(code, limits={"wall_time": 20}), f"{i}\n"))
            except Exception as exc:  # a submit during a Redis restart: the client retries
                print(f"submit {i} refused ({exc}); retried", file=sys.stderr)
                time.sleep(0.5)
                continue
            time.sleep(1 / args.rate)

    rerun_seen: dict[str, float] = {}
    kills: list[float] = []
    stop_watch = threading.Event()

    def watch() -> None:
        r = redis_client.Redis.from_url(url)
        while not stop_watch.is_set():
            ids = [job.id for job, _ in list(submitted) if job.id not in rerun_seen]
            try:
                counts = r.mget([ATTEMPTS_KEY.format(i) for i in ids]) if ids else []
            except redis_client.RedisError:
                time.sleep(0.1)
                continue
            now = time.monotonic()
            for task_id, count in zip(ids, counts, strict=True):
                if count is not None and int(count) >= 2:
                    rerun_seen[task_id] = now
            time.sleep(0.1)

    threads = [threading.Thread(target=load), threading.Thread(target=watch)]
    for t in threads:
        t.start()
    began = time.monotonic()
    time.sleep(5)  # the fleet warms up under load
    for k in range(args.kills):
        time.sleep(rng.uniform(1.0, 4.0))
        victim = rng.choice(names)
        fleet.kill(victim)
        kills.append(time.monotonic())
        print(f"kill {k + 1}/{args.kills}: {victim}", file=sys.stderr)
        fleet.start(victim)
    # Each phase starts once the last one's reruns are in (a lease and a sweep,
    # twice over): a rerun is put down to the event before it.
    quiet = 2 * args.lease + 2
    time.sleep(quiet)
    restarts = []
    for k in range(args.redis_restarts):
        time.sleep(rng.uniform(3.0, 6.0))
        redis_proc.kill()
        redis_proc.wait(10)
        restarts.append(time.monotonic())
        time.sleep(2)
        redis_proc = start_redis(port, tmp, durable=True)
        print(f"redis restart {k + 1}/{args.redis_restarts}", file=sys.stderr)
    time.sleep(quiet)
    exits = []
    drains: list[float] = []
    for k in range(args.drains):
        time.sleep(rng.uniform(2.0, 5.0))
        victim = rng.choice(names)
        proc, stopped = fleet.drain(victim)
        drains.append(stopped)
        code = proc.wait(120)
        exits.append((time.monotonic() - stopped, code))
        print(f"drain {k + 1}/{args.drains}: {victim} exited {code}", file=sys.stderr)
    stop_load.set()
    threads[0].join()
    lost = []
    for job, expected in submitted:
        try:
            result = job.get(timeout=300)
            if result.get("status") != "ok" or result.get("stdout") != expected:
                lost.append((job.id, result.get("status"), result.get("error")))
        except Exception as exc:
            lost.append((job.id, type(exc).__name__, str(exc)))
    stop_watch.set()
    threads[1].join()
    elapsed = time.monotonic() - began

    events = sorted(
        [(at, "kill") for at in kills]
        + [(at, "redis") for at in restarts]
        + [(at, "drain") for at in drains]
    )

    def since_event(at: float) -> tuple[str, float] | None:
        before = [(when, kind) for when, kind in events if when <= at]
        return (before[-1][1], at - before[-1][0]) if before else None

    reruns = {task_id: since_event(at) for task_id, at in rerun_seen.items()}
    waits = sorted(e[1] for e in reruns.values() if e is not None and e[0] == "kill")
    after_restart = [t for t, e in reruns.items() if e is not None and e[0] == "redis"]
    exit_times = sorted(seconds for seconds, _ in exits)
    fleet.stop()
    logs = "".join(log.read_text(errors="replace") for log in Path(tmp).glob("*.log"))
    # Redeliveries that found the job's result stored: answered, not run again.
    answered = {task_id for task_id in rerun_seen if f"{task_id} already has a result" in logs}
    duplicates = sum(t not in answered for t in after_restart)
    # A drained job's delivery is uncounted (ADR 0010): the drain's own lines say them.
    after_drain = sum(int(n) for n in re.findall(r"drain: (\d+) job\(s\) still running", logs))
    if args.keep_logs is not None:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
        for log in Path(tmp).glob("*.log"):
            shutil.copy(log, args.keep_logs / log.name)
    redis_proc.send_signal(signal.SIGTERM)
    redis_proc.wait(10)
    env = {**os.environ, "SANDBOX_RUN_DIR": RUN_DIR, "SANDBOX_CGROUP_PARENT": PARENT}
    gc = subprocess.run([SANDBOX, "gc", "--json"], capture_output=True, text=True, env=env)
    shutil.rmtree(tmp, ignore_errors=True)
    root = Path("/sys/fs/cgroup")
    left = [p for p in [*root.glob(f"*/{PARENT}/*"), *root.glob(f"{PARENT}/*")] if p.is_dir()]
    if not left:  # our parent, in every hierarchy, and our run dir: the bench's own
        for parent in [*root.glob(f"*/{PARENT}"), root / PARENT]:
            with contextlib.suppress(OSError):
                parent.rmdir()
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    report = {
        "workers": args.workers,
        "lease_s": args.lease,
        "kills": len(kills),
        "redis_restarts": len(restarts),
        "seconds": round(elapsed, 1),
        "jobs": len(submitted),
        "lost": len(lost),
        "lost_examples": lost[:5],
        "ran_again_after_host_loss": len(waits),
        "rerun_after_loss_s": {
            "p50": round(statistics.median(waits), 2) if waits else None,
            "max": round(waits[-1], 2) if waits else None,
        },
        "ran_again_after_redis_restart": duplicates,
        "duplicate_examples": [t for t in after_restart if t not in answered][:5],
        "redelivered_answered_from_stored_result": len(answered),
        "requeued_by_a_drain": after_drain,
        "drains": len(exits),
        "drain_s": args.drain,
        "drained_exit_codes": sorted({code for _, code in exits}),
        "drained_exit_after_sigterm_s": {
            "p50": round(statistics.median(exit_times), 2) if exit_times else None,
            "max": round(exit_times[-1], 2) if exit_times else None,
        },
        "gc_ok": gc.returncode == 0,
        "cgroups_left": [str(p) for p in left],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['workers']} workers, lease {args.lease:g} s, {report['kills']} host kills, "
        f"{report['redis_restarts']} Redis restarts, {report['drains']} drains "
        f"(drain {args.drain:g} s), {report['seconds']} s"
    )
    print(f"jobs {report['jobs']}, lost {report['lost']}")
    r = report["rerun_after_loss_s"]
    print(
        f"ran again after a host loss: {report['ran_again_after_host_loss']}, "
        f"new delivery p50 {r['p50']} s, max {r['max']} s after the loss"
    )
    print(f"ran again after a Redis restart (duplicates): {duplicates}")
    print(
        "redelivered, answered from the stored result without running: "
        f"{report['redelivered_answered_from_stored_result']}"
    )
    print(f"requeued by a drain and run elsewhere: {report['requeued_by_a_drain']}")
    d = report["drained_exit_after_sigterm_s"]
    print(
        f"drained workers exited {report['drained_exit_codes']} p50 {d['p50']} s, "
        f"max {d['max']} s after SIGTERM"
    )
    for example in report["lost_examples"]:
        print(f"  lost: {example}")
    for task_id in report["duplicate_examples"]:
        print(f"  duplicate: {task_id}")


if __name__ == "__main__":
    main()
