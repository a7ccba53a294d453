"""Kernel-wide counters: a job that exhausts one takes nothing from anyone else.

The kernel counts some objects per user, across the whole machine (ucounts:
inotify instances and watches, fanotify groups and marks, namespaces of each
kind; and the rlimit-kind ones: POSIX message queue bytes, pending signals,
SHM_LOCKed memory). Each container's user namespace is owned by its own host
uid (``Settings.host_id(0, range)``), so what a job takes is charged to that
uid, never to host root or another job; ``Settings.kernel_limits`` caps each
per job. SysV IPC objects are counted per IPC namespace, and each job has its
own.

Each attack exhausts one counter in a job, which reports how many it got and
the errno it stopped at, writes /tmp/exhausted and holds everything until the
test writes /tmp/release into its root (through /proc/<init>/root): what the
test checks in between, it checks while the counter is exhausted, however slow
the machine. In between a second job, and root on the host, must still get
one, and the job must have stopped at its ceiling from the settings (so the
ceiling is what stopped it, not the host's per-user limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox import JobResult, Runtime, Settings, Status
from sandbox.runtime.jobs import JobRecord, read_all
from tests.security.helpers import assert_host_healthy, limits, marker, run

pytestmark = [pytest.mark.root, pytest.mark.overlay]

HOST_PYTHON = "/usr/bin/python3"  # the job's interpreter too (the host image)
WAIT = 20.0  # seconds for a hostile job to have exhausted its counter: a bound, not a guess
HOLD = {"wall_time": 30, "cpu_time": 30}  # a backstop: the test releases the job long before

# Pieces of Python run in jobs and on the host. Each counter's code defines
# take(): one more of the counter, kept while the returned value lives
# (OSError once the kernel refuses); and give(what): give it back (the host
# must not keep IPC objects; a job's vanish with its IPC namespace).
PRELUDE = """
import ctypes, errno, json, os, shutil, signal, sys, tempfile, threading, time
libc = ctypes.CDLL(None, use_errno=True)
def fail(what):
    e = ctypes.get_errno()
    raise OSError(e, f'{what}: {os.strerror(e)}')
SCRATCH = []
def scratch_files(n):
    d = tempfile.mkdtemp(prefix='counters-')
    SCRATCH.append(d)
    paths = [f'{d}/{i}'.encode() for i in range(n)]
    for path in paths:
        open(path, 'wb').close()
    return paths
def give(what):
    pass
"""

# Take until refused; report; hold until released.
EXHAUST = """
held, error = [], None
while len(held) < 100_000:  # a bound far above any ceiling
    try:
        held.append(take())
    except OSError as e:
        error = errno.errorcode[e.errno]
        break
report = {
    'token': sys.argv[1],
    'count': len(held),
    'errno': error,
    'ipc': {n: open(f'/proc/sys/kernel/{n}').read().split() for n in ('shmmni', 'msgmni', 'sem')},
}
with open('/tmp/exhausted.tmp', 'w') as f:
    json.dump(report, f)
os.rename('/tmp/exhausted.tmp', '/tmp/exhausted')
while not os.path.exists('/tmp/release'):  # hold it all until the test has looked
    time.sleep(0.01)
print(json.dumps(report))
"""

# Take one and give it back: 'ok', or the errno.
TAKE_ONE = """
try:
    give(take())
    print('ok')
except OSError as e:
    print(errno.errorcode[e.errno])
finally:
    for d in SCRATCH:
        shutil.rmtree(d)
"""

# Take until refused and give all back: how many.
COUNT_ALL = """
held = []
try:
    while len(held) < 100_000:
        held.append(take())
except OSError:
    pass
print(len(held))
for what in held:
    give(what)
"""

INOTIFY_INSTANCES = """
def take():
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        fail('inotify_init1')
    return fd
give = os.close
"""

# An instance watches an inode once: instances of 512 watches each, on 512 files.
INOTIFY_WATCHES = """
libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
FILES = scratch_files(512)
IN_MODIFY = 0x2
instance = {'fd': -1, 'watches': len(FILES)}
def take():
    if instance['watches'] == len(FILES):
        fd = libc.inotify_init1(os.O_CLOEXEC)
        if fd < 0:
            fail('inotify_init1')
        instance.update(fd=fd, watches=0)
    if libc.inotify_add_watch(instance['fd'], FILES[instance['watches']], IN_MODIFY) < 0:
        fail('inotify_add_watch')
    instance['watches'] += 1
    return instance['fd']
give = os.close
"""

# Unprivileged since Linux 5.13: a notification-only group reporting file handles.
FANOTIFY = """
libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
libc.fanotify_mark.argtypes = [
    ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p
]
FAN_CLOEXEC, FAN_CLASS_NOTIF, FAN_REPORT_FID = 0x1, 0x0, 0x200
FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD = 0x1, 0x2, -100
def fanotify_group():
    fd = libc.fanotify_init(FAN_CLOEXEC | FAN_CLASS_NOTIF | FAN_REPORT_FID, os.O_RDONLY)
    if fd < 0:
        fail('fanotify_init')
    return fd
"""

FANOTIFY_GROUPS = (
    FANOTIFY
    + """
def take():
    return fanotify_group()
give = os.close
"""
)

# As inotify watches: groups of 512 inode marks each.
FANOTIFY_MARKS = (
    FANOTIFY
    + """
FILES = scratch_files(512)
group = {'fd': -1, 'marks': len(FILES)}
def take():
    if group['marks'] == len(FILES):
        group.update(fd=fanotify_group(), marks=0)
    if libc.fanotify_mark(group['fd'], FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD,
                          FILES[group['marks']]) < 0:
        fail('fanotify_mark')
    group['marks'] += 1
    return group['fd']
give = os.close
"""
)

# The largest queue a process without CAP_SYS_RESOURCE may make in a new IPC
# namespace (fs.mqueue.msg_max 10, msgsize_max 8192): 80 KiB of messages.
MQ_MESSAGES, MQ_MESSAGE_SIZE = 10, 8192
MQUEUE = f"""
class MqAttr(ctypes.Structure):
    _fields_ = [('flags', ctypes.c_long), ('maxmsg', ctypes.c_long),
                ('msgsize', ctypes.c_long), ('curmsgs', ctypes.c_long),
                ('reserved', ctypes.c_long * 4)]
ATTR = MqAttr(0, {MQ_MESSAGES}, {MQ_MESSAGE_SIZE}, 0)
queues = []
def take():
    name = f'/counters-{{os.getpid()}}-{{len(queues)}}'.encode()
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    fd = libc.mq_open(name, flags, ctypes.c_uint(0o600), ctypes.byref(ATTR))
    if fd < 0:
        fail('mq_open')
    queues.append(name)
    return fd, name
def give(queue):
    os.close(queue[0])
    libc.mq_unlink(queue[1])
"""

# A realtime signal, blocked, queues once per send: EAGAIN past the limit.
SIGPENDING = """
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
ME = threading.get_ident()
def take():
    signal.pthread_kill(ME, signal.SIGRTMIN)
"""

IPC = """
IPC_PRIVATE, IPC_CREAT, IPC_RMID, SHM_LOCK = 0, 0o1000, 0, 11
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
libc.msgctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
def remove_shm(shmid):
    libc.shmctl(shmid, IPC_RMID, None)
"""

# SHM_LOCK of untouched segments: locked memory charged, none used yet.
MEMLOCK_SEGMENT = 2**20
MEMLOCK = (
    IPC
    + f"""
def take():
    shmid = libc.shmget(IPC_PRIVATE, {MEMLOCK_SEGMENT}, IPC_CREAT | 0o600)
    if shmid < 0:
        fail('shmget')
    if libc.shmctl(shmid, SHM_LOCK, None) < 0:
        err = ctypes.get_errno()
        remove_shm(shmid)
        raise OSError(err, 'shmctl(SHM_LOCK)')
    return shmid
give = remove_shm
"""
)

SYSV_SHM = (
    IPC
    + """
def take():
    shmid = libc.shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0o600)
    if shmid < 0:
        fail('shmget')
    return shmid
give = remove_shm
"""
)

SYSV_MSG = (
    IPC
    + """
def take():
    msqid = libc.msgget(IPC_PRIVATE, IPC_CREAT | 0o600)
    if msqid < 0:
        fail('msgget')
    return msqid
def give(msqid):
    libc.msgctl(msqid, IPC_RMID, None)
"""
)

SYSV_SEM = (
    IPC
    + """
def take():
    semid = libc.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o600)
    if semid < 0:
        fail('semget')
    return semid
def give(semid):
    libc.semctl(semid, 0, IPC_RMID)
"""
)

# Namespace flags, and the /proc/<pid>/ns file that keeps one alive.
NAMESPACE_KINDS = {
    "user": (0x10000000, "user"),
    "pid": (0x20000000, "pid_for_children"),
    "mnt": (0x00020000, "mnt"),
    "net": (0x40000000, "net"),
    "ipc": (0x08000000, "ipc"),
    "uts": (0x04000000, "uts"),
    "cgroup": (0x02000000, "cgroup"),
    "time": (0x00000080, "time_for_children"),
}


def namespaces(kind: str) -> str:
    """take(): a child unshares a namespace of ``kind``; we keep it by an fd of its
    /proc/<child>/ns file, and the child exits. Kinds other than user are made
    inside one user namespace of our own (where we hold CAP_SYS_ADMIN)."""
    flag, ns_file = NAMESPACE_KINDS[kind]
    return f"""
KIND, FLAG, NS_FILE = {kind!r}, {flag:#x}, {ns_file!r}
CLONE_NEWUSER = 0x10000000
if KIND != 'user' and libc.unshare(CLONE_NEWUSER) != 0:
    fail('unshare(CLONE_NEWUSER)')
def take():
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(hold_w)
        err = 0 if libc.unshare(FLAG) == 0 else ctypes.get_errno()
        if not err and KIND == 'pid' and os.fork() == 0:
            os.read(hold_r, 1)  # pid 1 of the new namespace: it can be opened once it has one
            os._exit(0)
        os.write(ready_w, bytes([err]))
        os.read(hold_r, 1)
        if not err and KIND == 'pid':
            os.wait()
        os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    err = os.read(ready_r, 1)[0]
    os.close(ready_r)
    try:
        if err:
            raise OSError(err, f'unshare({{KIND}})')
        return os.open(f'/proc/{{pid}}/ns/{{NS_FILE}}', os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(hold_w)
        os.waitpid(pid, 0)
give = os.close
"""


Range = tuple[int, int]


def exactly(n: int) -> Range:
    return n, n


def kernel_limit(name: str) -> Callable[[Settings, dict[str, Any]], Range]:
    return lambda settings, _: exactly(settings.kernel_limits[name])


def mqueue_ceiling(settings: Settings, _: dict[str, Any]) -> Range:
    """Queues of 80 KiB of messages and the kernel's overhead (under 4 KiB each)."""
    ceiling, messages = settings.kernel_limits["msgqueue_bytes"], MQ_MESSAGES * MQ_MESSAGE_SIZE
    return ceiling // (messages + 4096), ceiling // messages


def memlock_ceiling(settings: Settings, _: dict[str, Any]) -> Range:
    return exactly(settings.kernel_limits["memlock_bytes"] // MEMLOCK_SEGMENT)


def ipc_namespace_limit(sysctl: str, field: int = 0) -> Callable[[Settings, dict[str, Any]], Range]:
    """The job's own IPC namespace's limit, as the job read it."""
    return lambda _, report: exactly(int(report["ipc"][sysctl][field]))


@dataclass(frozen=True)
class Counter:
    code: str  # defines take() and give()
    refusal: str  # the errno at the ceiling
    ceiling: Callable[[Settings, dict[str, Any]], Range]  # how many one job gets: (least, most)

    def exhaust(self) -> str:
        return PRELUDE + self.code + EXHAUST

    def take_one(self) -> str:
        return PRELUDE + self.code + TAKE_ONE


COUNTERS = {
    "inotify-instances": Counter(INOTIFY_INSTANCES, "EMFILE", kernel_limit("inotify_instances")),
    "inotify-watches": Counter(INOTIFY_WATCHES, "ENOSPC", kernel_limit("inotify_watches")),
    "fanotify-groups": Counter(FANOTIFY_GROUPS, "EMFILE", kernel_limit("fanotify_groups")),
    "fanotify-marks": Counter(FANOTIFY_MARKS, "ENOSPC", kernel_limit("fanotify_marks")),
    "mqueue-bytes": Counter(MQUEUE, "EMFILE", mqueue_ceiling),
    "sigpending": Counter(SIGPENDING, "EAGAIN", kernel_limit("sigpending")),
    "memlock": Counter(MEMLOCK, "ENOMEM", memlock_ceiling),
    "sysv-shm": Counter(SYSV_SHM, "ENOSPC", ipc_namespace_limit("shmmni")),
    "sysv-msg": Counter(SYSV_MSG, "ENOSPC", ipc_namespace_limit("msgmni")),
    "sysv-sem": Counter(SYSV_SEM, "ENOSPC", ipc_namespace_limit("sem", 3)),  # SEMMNI
}
NAMESPACES = {
    kind: Counter(namespaces(kind), "ENOSPC", kernel_limit(f"{kind}_namespaces"))
    for kind in NAMESPACE_KINDS
}


# -- holding a counter exhausted ---------------------------------------------------


@dataclass
class Held:
    """What a hostile job holding a counter exhausted reported, and where it runs."""

    report: dict[str, Any]
    record: JobRecord  # its runtime's record: init_pid, host_uid_base
    root: Path  # its root filesystem, seen from the host
    result: JobResult | None = None  # once it has ended


async def _find(runtime: Runtime, job: asyncio.Task[tuple[JobResult, float]], token: str) -> Held:
    """The running job whose /tmp/exhausted carries ``token``, once it is there."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if job.done():
            result, _ = job.result()
            pytest.fail(f"the hostile job ended before it held anything: {result}")
        for record in read_all(runtime.settings.run_dir):
            if record.owner != runtime.owner or record.init_pid is None:
                continue
            root = Path(f"/proc/{record.init_pid}/root")
            try:
                report = json.loads((root / "tmp/exhausted").read_text())
            except (OSError, ValueError):
                continue
            if report.get("token") == token:
                return Held(report, record, root)
        await asyncio.sleep(0.02)
    pytest.fail(f"the hostile job did not report within {WAIT} s")


@contextlib.asynccontextmanager
async def exhausted(runtime: Runtime, code: str, **spec: Any) -> AsyncIterator[Held]:
    """Run the hostile ``code`` (EXHAUST's protocol); inside the block it holds
    everything it got. After the block it is released, and ``result`` is set."""
    token = marker()
    spec["limits"] = limits(**{**HOLD, **spec.get("limits", {})})
    job = asyncio.create_task(run(runtime, code, argv=(token,), **spec))
    held: Held | None = None
    try:
        held = await _find(runtime, job, token)
        yield held
    finally:
        if held is not None and not job.done():
            with contextlib.suppress(OSError):  # it may have died meanwhile
                (held.root / "tmp/release").write_text("")
        elif held is None:
            job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            result, _ = await job
            if held is not None:
                held.result = result


async def take_in_job(runtime: Runtime, counter: Counter) -> str:
    """A normal job takes one: 'ok' or the errno."""
    result, _ = await run(runtime, counter.take_one())
    assert result.status is Status.OK, result
    return result.stdout.strip()


async def on_host(code: str, user: int | None = None) -> str:
    """Run Python ``code`` on the host, as root or as host uid ``user``: its output."""
    proc = await asyncio.to_thread(
        subprocess.run,
        [HOST_PYTHON, "-I", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
        user=user,
        group=user,
        extra_groups=None if user is None else [],
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


async def exhaust_and_share(runtime: Runtime, counter: Counter) -> dict[str, Any]:
    """The attack: one job exhausts ``counter``; meanwhile others still get one."""
    async with exhausted(runtime, counter.exhaust()) as held:
        report = held.report
        if report["count"] == 0 and report["errno"] in ("ENOTSUP", "EOPNOTSUPP"):
            # E.g. fanotify marks on tmpfs and overlay files before Linux 6.6 (no
            # fsid): a job gets none at all, so there is nothing of the host's to take.
            pytest.skip(f"this kernel gives a job none of it ({report['errno']})")
        least, most = counter.ceiling(runtime.settings, report)
        assert report["errno"] == counter.refusal, report
        assert least <= report["count"] <= most, (report, (least, most))
        assert await take_in_job(runtime, counter) == "ok", "a second job got none"
        assert await on_host(counter.take_one()) == "ok", "root on the host got none"
    assert held.result is not None
    assert held.result.status is Status.OK, held.result
    assert json.loads(held.result.stdout) == report
    return report


# -- the attacks ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(COUNTERS))
async def test_exhausted_counter_is_the_jobs_alone(runtime, name):
    """The job stops at its ceiling; a second job and host root still get one.

    For mqueue-bytes and memlock the job's own rlimit (the host's default)
    equals the ceiling, so what stopped it here could be either: the test
    over three uids below tells them apart.
    """
    await exhaust_and_share(runtime, COUNTERS[name])
    await assert_host_healthy(runtime)


@pytest.mark.parametrize("kind", list(NAMESPACES))
async def test_exhausted_namespaces_are_the_jobs_alone(runtime, settings, kind):
    """Namespaces of each kind: the job stops at its ceiling (ENOSPC); a second job
    and host root can still unshare one.

    The seccomp filter refuses unshare to a job; here it is off (a runtime of
    its own, as in test_cgroup_escape.py), to test the ceiling behind it.
    """
    unfiltered = settings.model_copy(update={"seccomp": False})
    async with Runtime(unfiltered, pool_size=0) as rt:
        await exhaust_and_share(rt, NAMESPACES[kind])
    await assert_host_healthy(runtime)


# Root in the job, granted CAP_SETUID and CAP_SETGID: children as three uids take
# all they can, each holding while the next takes. argv[1]: the counter's name.
AS_THREE_UIDS = """
counts = []
holders = []
for uid in (1001, 1002, 1003):
    report_r, report_w = os.pipe()
    hold_r, hold_w = os.pipe()
    if os.fork() == 0:
        os.close(report_r)
        os.close(hold_w)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        held = []
        try:
            while len(held) < 100_000:
                held.append(take())
        except OSError:
            pass
        os.write(report_w, str(len(held)).encode())
        os.close(report_w)
        os.read(hold_r, 1)  # hold until the parent is done
        os._exit(0)
    os.close(report_w)
    os.close(hold_r)
    counts.append(int(os.read(report_r, 32)))
    os.close(report_r)
    holders.append(hold_w)
for fd in holders:
    os.close(fd)
for _ in holders:
    os.wait()
print(json.dumps(counts))
"""


@pytest.mark.parametrize(
    "name",
    [
        "mqueue-bytes",
        "sigpending",
        "memlock",
    ],
)
async def test_rlimit_ceilings_cap_the_whole_container(runtime, settings, name):
    """The rlimit-kind ceilings hold for all the container's uids together.

    Each uid inside has its own count (bounded by its own rlimit, the host's
    default); the ceiling the container's owner had when it made the
    namespace bounds their sum: a root job spreading over three uids gets no
    more than one uid alone.
    """
    counter = COUNTERS[name]
    result, _ = await run(
        runtime,
        PRELUDE + counter.code + AS_THREE_UIDS,
        capabilities=("CAP_SETUID", "CAP_SETGID"),
    )
    assert result.status is Status.OK, result
    counts = json.loads(result.stdout)
    least, most = counter.ceiling(settings, {})
    assert least <= counts[0] <= most, counts
    assert least <= sum(counts) <= most, f"three uids took {counts}, the ceiling is {most}"
    await assert_host_healthy(runtime)


async def test_counters_are_charged_to_the_jobs_own_host_uid(runtime, settings):
    """With its ceiling above the host's limit, a job stops at the host's per-user
    limit: that of its own host uid, not root's, and given back when it ends.

    The job's inotify instances count against fs.inotify.max_user_instances
    of the uid owning its user namespace: while it holds them all, a host
    process as that uid gets none, root and a second job still get one; after
    the job, that uid gets the whole limit again.
    """
    host_max = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    if host_max + 64 > settings.max_open_files:
        pytest.skip(f"fs.inotify.max_user_instances {host_max}: more than a job may open")
    counter = COUNTERS["inotify-instances"]
    raised = settings.model_copy(
        update={"kernel_limits": {**settings.kernel_limits, "inotify_instances": 4 * host_max}}
    )
    count_all = PRELUDE + counter.code + COUNT_ALL
    async with Runtime(raised, pool_size=0) as rt:
        spec = {"limits": {"open_files": host_max + 64}}
        async with exhausted(rt, counter.exhaust(), **spec) as held:
            assert held.report["errno"] == "EMFILE", held.report
            assert held.report["count"] == host_max, held.report
            owner = held.record.host_uid_base
            assert owner is not None, held.record
            assert settings.inside_id(owner) == 0, held.record  # root inside, as the host sees it
            assert await on_host(counter.take_one(), user=owner) == "EMFILE"
            assert await on_host(counter.take_one()) == "ok", "root on the host got none"
            assert await take_in_job(runtime, counter) == "ok", "a second job got none"
        assert held.result is not None
        assert held.result.status is Status.OK, held.result
    # Given back: the kernel frees what a dead process held (some of it from a
    # workqueue), so look again, within a bound, until the uid has it all.
    deadline = time.monotonic() + WAIT
    while (got := int(await on_host(count_all, user=owner))) < host_max:
        assert time.monotonic() < deadline, f"uid {owner} has {got} of {host_max} back"
        await asyncio.sleep(0.05)
    assert got == host_max
    await assert_host_healthy(runtime)
