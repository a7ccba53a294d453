"""``sandbox ps``, ``sandbox exec`` and ``sandbox kill``: the jobs running on this host.

They read the records runtimes publish in ``<run_dir>/jobs`` (sandbox/runtime/jobs.py)
and the jobs' cgroups; a job is named by its id (``sandbox ps``), a unique
prefix of it, or its Celery task id. Exit status: 0; 1 if there is no such
running job (or ``kill`` failed); ``exec`` exits with the command's status
(125 if it could not enter, 126 if the command could not run, 127 if it was
not found).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.kernel.cgroups import CgroupSetup
    from sandbox.runtime.jobs import JobRecord
    from sandbox.settings import Settings

__all__ = ["add_commands", "exec_command", "kill_command", "ps_command"]

EXIT_NO_JOB = 1


def add_commands(sub: Any) -> None:
    ps = sub.add_parser("ps", help="list the jobs running on this host")
    ps.add_argument("--json", action="store_true", help="print them as JSON")
    ex = sub.add_parser(
        "exec",
        help="run a command inside a running job's container",
        description="Run CMD in JOB's namespaces, cgroup, user, capabilities and seccomp "
        "filter, as `docker exec` does.",
    )
    ex.add_argument("job", metavar="JOB", help="job id (or a unique prefix), or its task id")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD", help="command and arguments")
    kill = sub.add_parser("kill", help="end a running job now (its result says killed)")
    kill.add_argument("job", metavar="JOB", help="job id (or a unique prefix), or its task id")


class NoSuchJob(Exception):
    """No running job goes by that name."""


def _running(settings: Settings) -> list[JobRecord]:
    from sandbox.runtime import jobs
    from sandbox.runtime.reclaim import owner_alive

    alive: dict[str, bool] = {}
    found = []
    for record in jobs.read_all(settings.run_dir):
        if record.owner not in alive:
            alive[record.owner] = owner_alive(settings.run_dir, record.owner) is True
        if alive[record.owner]:
            found.append(record)
    return found


def find(settings: Settings, name: str) -> JobRecord:
    """The running job called ``name``.

    Raises:
        NoSuchJob: none, or more than one, matches.
    """
    records = _running(settings)
    exact = [r for r in records if name in (r.id, r.task_id)]
    matches = exact or [r for r in records if r.id.startswith(name)]
    if not matches:
        raise NoSuchJob(f"no running job {name!r} on this host (`sandbox ps` lists them)")
    if len(matches) > 1:
        raise NoSuchJob(f"{name!r} names {len(matches)} jobs: {', '.join(r.id for r in matches)}")
    return matches[0]


def _setup(settings: Settings) -> CgroupSetup:
    from sandbox.kernel.cgroups import detect_setup

    return detect_setup(settings.cgroup_root, settings.cgroup_parent)


def _row(record: JobRecord, setup: CgroupSetup, now: float) -> dict[str, Any] | None:
    from sandbox.errors import SandboxError

    cgroup = setup.open(record.cgroup)
    try:
        cpu = (cgroup.cpu_total_ns() - record.cpu_base_ns) / 1e9
        memory = cgroup.memory_current()
    except (OSError, SandboxError):
        return None  # it ended while we looked
    return {
        "job": record.id,
        "task_id": record.task_id,
        "image": record.image,
        "language": record.language,
        "age": round(now - record.started, 3),
        "init_pid": record.init_pid,
        "host_uid": None if record.host_uid_base is None else record.host_uid_base + record.uid,
        "cpu_time": round(max(cpu, 0.0), 3),
        "memory": memory,
        "limits": record.limits,
    }


def ps_command(args: argparse.Namespace, settings: Settings) -> int:
    setup = _setup(settings)
    now = time.time()
    rows = [row for r in _running(settings) if (row := _row(r, setup, now)) is not None]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(
        f"{'JOB':<22} {'TASK':<36} {'IMAGE':<8} {'LANG':<7} {'AGE':>7} {'INIT':>8} "
        f"{'CPU':>7} {'MEM':>8}  LIMITS (mem, cpu, wall)"
    )
    for row in rows:
        lim = row["limits"]
        print(
            f"{row['job']:<22} {row['task_id'] or '-':<36} {row['image']:<8} "
            f"{row['language']:<7} {row['age']:>6.1f}s {row['init_pid'] or '-':>8} "
            f"{row['cpu_time']:>6.2f}s {row['memory'] / 2**20:>7.1f}M  "
            f"{lim.get('memory', 0) / 2**20:.0f}M, {lim.get('cpu_time')}s, {lim.get('wall_time')}s"
        )
    return 0


def kill_command(args: argparse.Namespace, settings: Settings) -> int:
    from sandbox.errors import SandboxError
    from sandbox.runtime import jobs

    try:
        record = find(settings, args.job)
    except NoSuchJob as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return EXIT_NO_JOB
    jobs.request_kill(settings.run_dir, record.id)  # first: the runtime reads it after the kill
    if not jobs.is_running(settings.run_dir, record.id):
        # It ended meanwhile; its cgroup may already serve the next job.
        jobs.remove(settings.run_dir, record.id)
        print(f"sandbox: {record.id} has ended", file=sys.stderr)
        return EXIT_NO_JOB
    try:
        _setup(settings).open(record.cgroup).kill()
    except (OSError, SandboxError) as exc:
        print(f"sandbox: cannot kill {record.id}: {exc}", file=sys.stderr)
        return 1
    print(f"killed {record.id}", file=sys.stderr)
    return 0


def exec_command(args: argparse.Namespace, settings: Settings) -> int:
    from sandbox.runtime.enter import JobGone, run_in_job

    argv = list(args.cmd)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("sandbox: exec needs a command (sandbox exec JOB -- CMD ...)", file=sys.stderr)
        return 2
    try:
        record = find(settings, args.job)
        procs = _setup(settings).open(record.cgroup).procs_files()
        return run_in_job(record, procs, argv)
    except (NoSuchJob, JobGone) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return EXIT_NO_JOB
