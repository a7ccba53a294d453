"""What a job could learn or keep: the worker's environment and descriptors, its own
limits, and anything a previous job left behind."""

from __future__ import annotations

import json
import os

import pytest

from sandbox import Status
from tests.security.helpers import assert_host_healthy, probe, run

pytestmark = [pytest.mark.root, pytest.mark.overlay]

BASE_ENV = {"PATH", "HOME", "LANG", "TMPDIR", "PYTHONDONTWRITEBYTECODE"}

ENVIRON = """
import errno, json, os, sys
def environ(path):
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except OSError as e:
        return errno.errorcode[e.errno]
    return [item.split(b'=', 1)[0].decode() for item in raw.split(b'\\0') if item]
out = {'self': environ('/proc/self/environ')}
for pid in sys.argv[1:]:
    out['host ' + pid] = environ(f'/proc/{pid}/environ')
for pid in sorted(p for p in os.listdir('/proc') if p.isdigit()):
    out[pid] = environ(f'/proc/{pid}/environ')
with open('/proc/1/cmdline', 'rb') as f:
    out['init cmdline'] = f.read().replace(b'\\0', b' ').decode().strip()
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "capabilities", [pytest.param((), id="nobody"), pytest.param(("CAP_DAC_OVERRIDE",), id="root")]
)
async def test_worker_environment_does_not_leak(runtime, capabilities, monkeypatch):
    """The job's environment is the plan's only; the supervisor's and init's are unreachable."""
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "hunter2")  # were anything copied, it would show
    host_pids = [os.getpid(), runtime.launcher_pid]
    assert all(pid is not None and pid > 64 for pid in host_pids)
    seen = await probe(
        runtime,
        ENVIRON,
        argv=tuple(str(p) for p in host_pids),
        env={"JOB_VAR": "1"},
        capabilities=capabilities,
    )
    assert set(seen.pop("self")) == BASE_ENV | {"JOB_VAR"}
    for pid in host_pids:
        assert seen.pop(f"host {pid}") == "ENOENT"
    init_cmdline = seen.pop("init cmdline")
    assert "/" not in init_cmdline, f"pid 1 shows a host path: {init_cmdline!r}"
    assert seen.pop("1") == "EACCES"  # our init (root, all capabilities)
    for pid, names in seen.items():  # the job's own processes only
        assert set(names) <= BASE_ENV | {"JOB_VAR"}, (pid, names)
    await assert_host_healthy(runtime)


FDS = """
import json, os
out = {}
for fd in os.listdir('/proc/self/fd'):
    try:
        out[fd] = os.readlink(f'/proc/self/fd/{fd}')
    except OSError:
        out[fd] = None  # the directory listing's own descriptor, already closed
print(json.dumps(out))
"""


@pytest.mark.parametrize("language", ["python", "sh"])
async def test_no_descriptor_leaks_into_the_job(runtime, language):
    """The job holds stdin, stdout and stderr only: no job socket, plan, cgroup or host file."""
    if language == "python":
        seen = await probe(runtime, FDS)
        extra = {fd: target for fd, target in seen.items() if fd not in ("0", "1", "2")}
        assert all(t is None or t.startswith("/proc/") for t in extra.values()), extra
    else:
        # ls runs as a child of the shell and lists the shell's descriptors.
        result, _ = await run(runtime, "ls /proc/$$/fd\n", language="sh")
        assert result.status is Status.OK, result
        # dash keeps the script open on fd 10.
        assert set(result.stdout.split()) <= {"0", "1", "2", "10"}, result.stdout
    targets = await probe(
        runtime,
        "import json, os\n"
        "print(json.dumps([os.readlink(f'/proc/self/fd/{fd}') for fd in (0, 1, 2)]))\n",
    )
    assert targets[0].startswith("/memfd:stdin")
    assert targets[1].startswith("pipe:")
    assert targets[2].startswith("pipe:")
    await assert_host_healthy(runtime)


async def test_stdin_cannot_be_changed(runtime):
    """stdin is a sealed memfd: no write, no truncate, not even through /proc/self/fd/0."""
    code = """
import errno, json, os
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = 'ok'
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
attempt('write', lambda: os.write(0, b'x'))
attempt('truncate', lambda: os.ftruncate(0, 0))
def reopen():
    fd = os.open('/proc/self/fd/0', os.O_RDWR)
    try:
        os.write(fd, b'x')
    finally:
        os.close(fd)
attempt('reopen', reopen)
out['content'] = os.pread(0, 100, 0).decode()
print(json.dumps(out))
"""
    result, _ = await run(runtime, code, stdin="original input")
    assert result.status is Status.OK, result
    seen = json.loads(result.stdout)
    assert seen["write"] in ("EPERM", "EBADF")
    assert seen["truncate"] in ("EPERM", "EINVAL", "EBADF")
    assert seen["reopen"] in ("EPERM", "EACCES", "EBADF")
    assert seen["content"] == "original input"
    await assert_host_healthy(runtime)


FD_BOMB = """
import errno, json, os, socket
out = {}
def exhaust(name, make):
    held = []
    try:
        while len(held) < 100_000:
            held.append(make())
        out[name] = ['none', len(held)]
    except OSError as e:
        out[name] = [errno.errorcode[e.errno], len(held)]
    for h in held:
        if isinstance(h, int):
            os.close(h)
        elif isinstance(h, tuple):
            os.close(h[0]); os.close(h[1])
        else:
            h.close()
exhaust('files', lambda: os.open('/dev/null', os.O_RDONLY))
exhaust('pipes', os.pipe)
exhaust('sockets', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
exhaust('epoll', lambda: os.eventfd(0))
try:
    os.dup2(0, 1000)
    out['dup2-high'] = 'ok'
except OSError as e:
    out['dup2-high'] = errno.errorcode[e.errno]
print(json.dumps(out))
"""


async def test_file_descriptor_exhaustion_stops_at_open_files(runtime):
    """Files, pipes, sockets, eventfds: EMFILE at limits.open_files; no fd above it."""
    limit = 32
    seen = await probe(runtime, FD_BOMB, limits={"open_files": limit})
    for kind in ("files", "pipes", "sockets", "epoll"):
        name, count = seen[kind]
        assert name == "EMFILE", (kind, seen[kind])
        per = 2 if kind == "pipes" else 1
        assert count * per <= limit - 3, (kind, seen[kind])
    assert seen["dup2-high"] == "EBADF"
    await assert_host_healthy(runtime)


RLIMITS = """
import json, resource
out = {}
for name in ('RLIMIT_NOFILE', 'RLIMIT_FSIZE', 'RLIMIT_CPU', 'RLIMIT_CORE', 'RLIMIT_NPROC'):
    res = getattr(resource, name)
    soft, hard = resource.getrlimit(res)
    target = hard + 1 if hard != resource.RLIM_INFINITY else None
    if target is None:
        out[name] = 'unlimited'
        continue
    try:
        resource.setrlimit(res, (target, target))
        out[name] = ['raised', resource.getrlimit(res)]
    except (ValueError, OSError) as e:
        out[name] = ['refused', type(e).__name__]
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "capabilities",
    [pytest.param((), id="nobody"), pytest.param(("CAP_SETUID", "CAP_SETGID"), id="root")],
)
async def test_rlimits_cannot_be_raised(runtime, capabilities):
    """Raising a hard limit needs CAP_SYS_RESOURCE, which no job gets."""
    seen = await probe(runtime, RLIMITS, limits={"open_files": 64}, capabilities=capabilities)
    for name in ("RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CPU", "RLIMIT_CORE"):
        assert seen[name] == ["refused", "ValueError"], (name, seen[name])
    await assert_host_healthy(runtime)


LEAVE = """
import ctypes, json, os, sys
out = {}
for path in ('/tmp/left', '/dev/shm/left', '/box/left'):
    with open(path, 'w') as f:
        f.write(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
shmid = libc.shmget(0x5A4D, 4096, 0o1666)  # IPC_CREAT | 0666
out['shm'] = shmid
os.mkfifo('/tmp/fifo')
print(json.dumps(out))
"""

FIND = """
import json, os, sys
out = {}
for path in ('/tmp/left', '/dev/shm/left', '/box/left', '/tmp/fifo'):
    out[path] = os.path.exists(path)
out['tmp'] = sorted(os.listdir('/tmp'))
out['shm'] = sorted(os.listdir('/dev/shm'))
out['box'] = sorted(os.listdir('/box'))
with open('/proc/sysvipc/shm') as f:
    out['sysv'] = f.read().splitlines()[1:]
print(json.dumps(out))
"""


async def test_nothing_carries_over_to_the_next_job(runtime):
    """Files in /tmp, /dev/shm, /box and a SysV shared memory segment die with their job."""
    token = os.urandom(8).hex()
    left = await probe(runtime, LEAVE, argv=(token,))
    assert left["shm"] >= 0, "the first job could not create its segment"
    for _ in range(3):  # the warm pool hands out several containers; none is reused
        seen = await probe(runtime, FIND)
        for path in ("/tmp/left", "/dev/shm/left", "/box/left", "/tmp/fifo"):
            assert seen[path] is False, (path, seen)
        assert seen["tmp"] == []
        assert seen["shm"] == []
        assert seen["box"] == ["main.py"]
        assert seen["sysv"] == []
    await assert_host_healthy(runtime)
