"""Processes that try to outlive their job or to reach processes that are not theirs."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from sandbox import Status
from tests.security.helpers import (
    alive,
    assert_host_healthy,
    host_pids_with,
    job_uid_descendants,
    marker,
    probe,
    run,
)

pytestmark = [pytest.mark.root, pytest.mark.overlay]

DAEMON = """
import os, signal, sys, time
token = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        os.chdir('/')
        for fd in (0, 1, 2):
            os.close(fd)
        os.execv('/bin/sleep', ['daemon-' + token, '600'])
    os._exit(0)
os.wait()
print('detached', flush=True)
if sys.argv[2] == 'linger':
    time.sleep(600)
"""


@pytest.mark.parametrize("main", ["exit", "linger"])
async def test_double_forked_daemon_dies_with_its_job(runtime, main):
    """A setsid'd grandchild ignoring SIGTERM/SIGHUP is gone with its job's container.

    ``exit``: the main process returns at once (the result must not wait for
    the daemon). ``linger``: the main process is killed at the wall limit.
    The result comes back before the container's teardown (ADR 0008): the
    daemon dies as the released init does, moments later, and is gone once
    the teardown is done.
    """
    token = marker()
    result, elapsed = await run(runtime, DAEMON, argv=(token, main), limits={"wall_time": 2})
    assert result.stdout == "detached\n", result
    if main == "exit":
        assert result.status is Status.OK
        assert elapsed < 1.5
    else:
        assert result.status is Status.TIMEOUT
        assert elapsed < 2 + 1.5
    await asyncio.wait_for(runtime.pool_settled(), 5)  # the job's teardown, off its result's path
    assert host_pids_with(token) == []
    assert job_uid_descendants() == []
    await assert_host_healthy(runtime)


@pytest.mark.parametrize(
    "capabilities", [pytest.param((), id="nobody"), pytest.param(("CAP_KILL",), id="root-kill")]
)
async def test_kill_minus_one_only_reaches_the_job(runtime, capabilities):
    """``kill -9 -1`` kills the job's own processes; the supervisor and host survive."""
    token = marker()
    code = (
        "sleep 600 & sleep 600 &\n"
        "kill -9 -1\n"
        'echo "survived $?"\n'
        "wait\n"
        # The shell itself is spared by kill(-1); its children are not.
        'echo "children gone"\n'
    )
    result, elapsed = await run(
        runtime, code, language="sh", argv=(token,), capabilities=capabilities
    )
    assert result.status is Status.OK, result
    assert result.stdout == "survived 0\nchildren gone\n"
    assert elapsed < 2
    assert alive(os.getpid())
    assert host_pids_with(token) == []
    await assert_host_healthy(runtime)


SIGNAL_HOST = """
import json, os, signal, sys
out = {}
for pid in map(int, sys.argv[1:]):
    for sig in (0, signal.SIGKILL):
        try:
            os.kill(pid, sig)
            out[f'{pid}/{sig}'] = 'sent'
        except OSError as e:
            out[f'{pid}/{sig}'] = type(e).__name__
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "capabilities", [pytest.param((), id="nobody"), pytest.param(("CAP_KILL",), id="root-kill")]
)
async def test_cannot_signal_host_processes(runtime, capabilities):
    """The supervisor's and launcher's host pids are unknown inside: ProcessLookupError."""
    targets = [os.getpid(), runtime.launcher_pid]
    assert all(pid is not None and pid > 64 for pid in targets), (
        "a host pid this small could exist in the job's pid namespace too"
    )
    seen = await probe(
        runtime,
        SIGNAL_HOST,
        argv=tuple(str(pid) for pid in targets),
        capabilities=capabilities,
    )
    assert set(seen.values()) == {"ProcessLookupError"}, seen
    assert alive(os.getpid())
    assert runtime.launcher_pid is not None
    assert alive(runtime.launcher_pid)
    await assert_host_healthy(runtime)


async def test_signals_to_the_container_init(runtime):
    """Pid 1 (our init, root) cannot be signalled by the job user: EPERM."""
    code = """
import json, os, signal
out = {}
for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
    try:
        os.kill(1, sig)
        out[sig.name] = 'sent'
    except OSError as e:
        out[sig.name] = type(e).__name__
print(json.dumps(out))
"""
    seen = await probe(runtime, code)
    assert set(seen.values()) == {"PermissionError"}, seen
    await assert_host_healthy(runtime)


async def test_root_job_killing_init_is_ignored(runtime):
    """With CAP_KILL, SIGKILL to pid 1 from inside is dropped by the kernel; the job finishes."""
    code = (
        "import os, signal, time\n"
        "for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):\n"
        "    os.kill(1, sig)\n"
        "time.sleep(0.2)\n"
        "print('init still there', os.path.exists('/proc/1'))\n"
    )
    result, _ = await run(runtime, code, capabilities=("CAP_KILL",))
    assert result.status is Status.OK, result
    assert result.stdout == "init still there True\n"
    await assert_host_healthy(runtime)


PTRACE_INIT = """
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
out = {}
for name, request in (('PTRACE_ATTACH', 16), ('PTRACE_SEIZE', 0x4206)):
    r = libc.ptrace(request, 1, None, None)
    out[name] = 'attached' if r == 0 else errno.errorcode[ctypes.get_errno()]
for path in ('/proc/1/mem', '/proc/1/environ', '/proc/1/fd/0'):
    try:
        os.close(os.open(path, os.O_RDONLY))
        out[path] = 'opened'
    except OSError as e:
        out[path] = errno.errorcode[e.errno]
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "capabilities",
    [
        pytest.param((), id="nobody"),
        pytest.param(("CAP_KILL", "CAP_SYS_CHROOT", "CAP_DAC_OVERRIDE"), id="root"),
    ],
)
async def test_cannot_ptrace_the_container_init(runtime, capabilities):
    """PTRACE_ATTACH to pid 1 (root, full capabilities) fails: EPERM; its /proc files too."""
    seen = await probe(runtime, PTRACE_INIT, capabilities=capabilities)
    assert seen["PTRACE_ATTACH"] == "EPERM", seen
    assert seen["PTRACE_SEIZE"] == "EPERM", seen
    for path in ("/proc/1/mem", "/proc/1/environ", "/proc/1/fd/0"):
        assert seen[path] in ("EACCES", "EPERM", "ENOENT"), seen
    await assert_host_healthy(runtime)


async def test_sigkill_to_own_process_group_from_many_children(runtime):
    """Processes that kill(0)/killpg their own group mid-fork end the job, not the host."""
    token = marker()
    code = (
        "import os, signal, time\n"
        "for _ in range(8):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(0.05)\n"
        "        os.kill(0, signal.SIGKILL)\n"
        "time.sleep(5)\n"
    )
    result, elapsed = await run(runtime, code, argv=(token,))
    assert result.status is Status.RUNTIME_ERROR, result
    assert result.signal == signal.SIGKILL
    assert not result.timed_out
    assert elapsed < 2
    assert host_pids_with(token) == []
    await assert_host_healthy(runtime)


TAMPER_INIT = """
import errno, json, os, resource
out = {}
try:
    resource.prlimit(1, resource.RLIMIT_NOFILE, (4, 4))  # lower only: raising needs a cap
    out['prlimit'] = 'changed'
except (OSError, ValueError) as e:
    out['prlimit'] = type(e).__name__
try:
    fd = os.open('/proc/1/oom_score_adj', os.O_WRONLY)
    try:
        os.write(fd, b'1000')  # first to die in a host-wide OOM
        out['oom_score_adj'] = 'changed'
    finally:
        os.close(fd)
except OSError as e:
    out['oom_score_adj'] = errno.errorcode[e.errno]
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "capabilities",
    [pytest.param((), id="nobody"), pytest.param(("CAP_CHOWN",), id="root-chown")],
)
async def test_job_cannot_tamper_with_its_init(runtime, capabilities):
    """Pid 1 is our code (it reports the job's exit): the job cannot change its limits.

    Fails today for a job granted any capability: it runs as uid 0, the same
    uid as the init, and prlimit(2) and /proc/1/oom_score_adj (raising) only
    ask for a matching uid, no capability. The init has no user namespace nor
    a uid of its own to hide behind.
    """
    seen = await probe(runtime, TAMPER_INIT, capabilities=capabilities)
    assert seen["prlimit"] == "PermissionError", seen
    assert seen["oom_score_adj"] in ("EACCES", "EPERM"), seen
    await assert_host_healthy(runtime)
