"""Resource exhaustion: each hostile program tries to take more than its limits allow.

Every attack must end with a result that names the limit (a status and a
flag), promptly, with nothing of the job left running, and the host must
still run a normal job afterwards.
"""

from __future__ import annotations

import asyncio
import json
import resource

import pytest

from sandbox import JobSpec, SpecError, Status
from tests.security.helpers import (
    MiB,
    assert_host_healthy,
    host_pids_with,
    job_uid_descendants,
    limits,
    marker,
    probe,
    run,
)

pytestmark = [pytest.mark.root, pytest.mark.overlay]

PIDS = 32

# -- processes and threads ------------------------------------------------------

PY_FORK_BOMB = """
import errno, os, sys
main = os.getpid()
while True:
    try:
        os.fork()
    except OSError as e:
        if os.getpid() == main and e.errno == errno.EAGAIN:
            print('EAGAIN', flush=True)
            main = None  # say it once
"""


async def test_python_fork_bomb(runtime):
    """Every process forks forever: the pids cap holds, the wall limit ends it."""
    token = marker()
    result, elapsed = await run(
        runtime, PY_FORK_BOMB, argv=(token,), limits={"pids": PIDS, "wall_time": 2}
    )
    assert result.pids_limit_hit, result
    assert result.timed_out
    assert result.status is Status.TIMEOUT
    assert "EAGAIN" in result.stdout
    assert elapsed < 2 + 2
    assert host_pids_with(token) == []
    assert job_uid_descendants() == []
    await assert_host_healthy(runtime)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("bomb() { bomb | bomb & }; bomb; while :; do :; done\n", id="dash"),
        # dash refuses ':' as a function name; the classic needs bash.
        pytest.param(
            "exec /usr/bin/bash -c ':(){ :|:& };:; while :; do :; done' bomb \"$1\"\n",
            id="bash-classic",
        ),
    ],
)
async def test_shell_fork_bomb(runtime, code):
    """The shell fork bomb under pids=32: the result returns, no process survives."""
    token = marker()
    result, elapsed = await run(
        runtime,
        code,
        language="sh",
        argv=(token,),
        limits={"pids": PIDS, "wall_time": 2, "cpu_time": 10},
    )
    assert result.pids_limit_hit, result
    assert result.status is Status.TIMEOUT
    assert elapsed < 2 + 2
    assert host_pids_with(token) == []
    assert job_uid_descendants() == []
    await assert_host_healthy(runtime)


THREAD_BOMB = """
import os, threading, time
started = 0
try:
    while True:
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        started += 1
except RuntimeError as e:
    print('refused', started, e, flush=True)
os._exit(0)
"""


async def test_thread_bomb(runtime):
    """Threads count as tasks: thread creation fails below the pids cap."""
    result, elapsed = await run(runtime, THREAD_BOMB, limits={"pids": PIDS})
    assert result.pids_limit_hit, result
    assert result.status is Status.OK, result
    words = result.stdout.split()
    assert words[0] == "refused"
    assert 0 < int(words[1]) < PIDS
    assert elapsed < 3
    assert job_uid_descendants() == []
    await assert_host_healthy(runtime)


# -- memory ------------------------------------------------------------------------

MEMORY_BOMB = """
chunks = []
while True:
    chunk = bytearray(4 * 2**20)
    for i in range(0, len(chunk), 4096):
        chunk[i] = 1
    chunks.append(chunk)
    print(len(chunks) * 4, flush=True)
"""

SPREAD_MEMORY_BOMB = """
import os, time
children = []
for _ in range(24):
    pid = os.fork()
    if pid == 0:
        x = bytearray(8 * 2**20)
        for i in range(0, len(x), 4096):
            x[i] = 1
        time.sleep(1)  # all hold their memory at once
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
"""


@pytest.mark.parametrize(
    "code", [pytest.param(MEMORY_BOMB, id="one"), pytest.param(SPREAD_MEMORY_BOMB, id="spread")]
)
async def test_memory_bomb(runtime, code):
    """Allocating past 64 MiB, in one process or 8 MiB in each of many: the OOM killer."""
    limit = 64 * MiB
    result, elapsed = await run(runtime, code, limits={"memory": limit})
    assert result.oom_killed, result
    assert result.status is Status.MEMORY_LIMIT
    assert result.memory_peak <= limit + MiB
    assert elapsed < 5
    if code is MEMORY_BOMB:
        assert result.signal == 9
        assert int(result.stdout.split()[-1]) <= 64
    assert job_uid_descendants() == []
    await assert_host_healthy(runtime)


TMPFS_FILL = """
import errno, sys
written = 0
try:
    with open(sys.argv[1], 'wb', buffering=0) as f:
        while written < 512 * 2**20:
            written += f.write(b'm' * 2**20)
            print(written // 2**20, flush=True)
    print('wrote', written)
except OSError as e:
    print(errno.errorcode[e.errno], written, flush=True)
"""


@pytest.mark.parametrize("path", ["/dev/shm/hog", "/tmp/hog", "/box/hog"])
async def test_memory_in_tmpfs_counts(runtime, path):
    """Files on tmpfs are RAM: with disk far above memory, the memory limit still holds."""
    limit = 64 * MiB
    result, elapsed = await run(
        runtime, TMPFS_FILL, argv=(path,), limits={"memory": limit, "disk": "256M"}
    )
    assert result.oom_killed, result
    assert result.status is Status.MEMORY_LIMIT
    assert result.memory_peak <= limit + MiB
    written = [int(w) for w in result.stdout.split() if w.isdigit()]
    assert written, result
    assert max(written) <= 64
    assert elapsed < 5
    await assert_host_healthy(runtime)


# -- disk and inodes ---------------------------------------------------------------

ONE_FILE_FILL = """
import errno, sys
written = 0
try:
    with open(sys.argv[1], 'wb', buffering=0) as f:
        while written < 256 * 2**20:
            written += f.write(b'd' * 2**16)
    print('none', written)
except OSError as e:
    print(errno.errorcode[e.errno], written)
"""

MANY_FILES_FILL = """
import errno, sys
written = 0
n = 0
try:
    while written < 256 * 2**20:
        with open(f'{sys.argv[1]}/f{n}', 'wb', buffering=0) as f:
            n += 1
            for _ in range(16):
                written += f.write(b'd' * 2**16)
    print('none', written)
except OSError as e:
    print(errno.errorcode[e.errno], written)
"""


@pytest.mark.parametrize("where", ["/tmp", "/box", "/dev/shm"])
@pytest.mark.parametrize(
    "code", [pytest.param(ONE_FILE_FILL, id="one-file"), pytest.param(MANY_FILES_FILL, id="many")]
)
async def test_disk_fill(runtime, settings, where, code):
    """Writing past limits.disk (one big file, or many 1 MiB files) fails: ENOSPC or EFBIG."""
    disk = 16 * MiB
    target = f"{where}/hog" if code is ONE_FILE_FILL else where
    result, _ = await run(runtime, code, argv=(target,), limits={"disk": disk, "memory": "128M"})
    assert result.status is Status.OK, result
    name, written = result.stdout.split()
    assert name in ("ENOSPC", "EFBIG"), result
    assert int(written) <= disk
    assert not result.oom_killed
    # Nothing of it reached the host's run directory.
    assert not list(settings.run_dir.rglob("hog"))
    await assert_host_healthy(runtime)


FILL_EVERYWHERE = """
import errno, json, os
def fill(directory):
    total = 0
    n = 0
    try:
        while total < 256 * 2**20:
            with open(f'{directory}/f{n}', 'wb', buffering=0) as f:
                n += 1
                for _ in range(16):
                    total += f.write(b'w' * 2**16)
    except OSError as e:
        return total, errno.errorcode[e.errno]
    return total, 'none'
print(json.dumps({d: fill(d) for d in ('/tmp', '/dev/shm')}))
"""


async def test_disk_limit_covers_every_writable_place(runtime):
    """limits.disk is "bytes writable in the container": /tmp and /dev/shm together.

    Fails today: /dev/shm is a tmpfs of its own, also sized limits.disk, so a
    job writes twice its disk limit (the memory limit still bounds both).
    """
    disk = 16 * MiB
    result, _ = await run(runtime, FILL_EVERYWHERE, limits={"disk": disk, "memory": "256M"})
    assert result.status is Status.OK, result
    filled = json.loads(result.stdout)
    total = sum(written for written, _ in filled.values())
    assert total <= disk, f"wrote {total / MiB:.1f} MiB with disk={disk / MiB:.0f} MiB: {filled}"


INODE_BOMB = """
import errno, os, sys
n = 0
try:
    while n < 5_000_000:
        os.close(os.open(f'{sys.argv[1]}/i{n}', os.O_CREAT | os.O_WRONLY, 0o600))
        n += 1
        if n % 4096 == 0:
            print(n, flush=True)
    print('none', n)
except OSError as e:
    print(errno.errorcode[e.errno], n, flush=True)
"""


async def test_inode_exhaustion_on_the_writable_layer(runtime):
    """Empty files in /tmp stop at the writable layer's inode count (ENOSPC)."""
    disk = 16 * MiB
    result, elapsed = await run(
        runtime, INODE_BOMB, argv=("/tmp",), limits={"disk": disk, "wall_time": 5}
    )
    assert result.status is Status.OK, result
    name, count = result.stdout.split()[-2:]
    assert name == "ENOSPC"
    assert int(count) <= max(1024, disk // 4096)
    assert elapsed < 5
    await assert_host_healthy(runtime)


async def test_inode_exhaustion_in_dev_shm(runtime):
    """/dev/shm has no inode cap of its own: the memory limit (kernel memory) stops it."""
    result, elapsed = await run(
        runtime, INODE_BOMB, argv=("/dev/shm",), limits={"memory": "64M", "wall_time": 5}
    )
    assert result.status in (Status.OK, Status.MEMORY_LIMIT), result
    if result.status is Status.OK:
        assert result.stdout.split()[-2] == "ENOSPC"
    assert result.memory_peak <= 64 * MiB + MiB
    assert elapsed < 5
    await assert_host_healthy(runtime)


# -- output ----------------------------------------------------------------------

FLOOD = """
import os, sys
fd = int(sys.argv[1])
chunk = {chunk}
total = 0
while total < 200 * 2**20:
    total += os.write(fd, chunk)
"""


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


@pytest.mark.parametrize("fd", [1, 2], ids=["stdout", "stderr"])
async def test_output_flood_keeps_supervisor_memory_bounded(runtime, fd):
    """200 MB without a newline: output_limit, exactly the cap kept, supervisor RSS bounded."""
    cap = 4 * MiB
    samples: list[int] = []
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            samples.append(_rss())
            await asyncio.sleep(0.002)

    baseline = _rss()
    sampler = asyncio.create_task(sample())
    try:
        result, elapsed = await run(
            runtime,
            FLOOD.format(chunk="b'A' * 65536"),
            argv=(str(fd),),
            limits={"output": cap, "wall_time": 10, "cpu_time": 10},
        )
    finally:
        stop.set()
        await sampler
    samples.append(_rss())
    assert result.output_truncated, result
    assert result.status is Status.OUTPUT_LIMIT
    stream, other = (result.stdout, result.stderr) if fd == 1 else (result.stderr, result.stdout)
    assert len(stream) == cap
    assert set(stream) == {"A"}
    assert other == ""
    assert elapsed < 5
    growth = max(samples) - baseline
    assert growth < 3 * cap, f"the supervisor grew by {growth / MiB:.1f} MiB"
    await assert_host_healthy(runtime)


async def test_binary_output_flood(runtime):
    """Binary bytes (NULs, invalid UTF-8) are cut at the cap too, each byte one character."""
    cap = 1_000_000
    # No two bytes of this pattern form a valid multi-byte UTF-8 sequence, so
    # each invalid byte decodes to exactly one U+FFFD.
    result, _ = await run(
        runtime,
        FLOOD.format(chunk="bytes(range(256)) * 256"),
        argv=("1",),
        limits={"output": cap},
    )
    assert result.output_truncated, result
    assert result.status is Status.OUTPUT_LIMIT
    assert len(result.stdout) == cap
    assert result.stdout[:128] == "".join(map(chr, range(128)))
    assert set(result.stdout[128:256]) == {"\ufffd"}
    await assert_host_healthy(runtime)


async def test_floods_on_both_streams_from_many_processes(runtime):
    """Eight processes flood stdout and stderr at once: both cut at the cap, result prompt."""
    cap = 1 * MiB
    code = """
import os
for i in range(8):
    if os.fork() == 0:
        fd = 1 + i % 2
        while True:
            os.write(fd, b'z' * 65536)
os.wait()
"""
    result, elapsed = await run(runtime, code, limits={"output": cap, "pids": PIDS})
    assert result.output_truncated, result
    assert result.status is Status.OUTPUT_LIMIT
    assert len(result.stdout) <= cap
    assert len(result.stderr) <= cap
    assert max(len(result.stdout), len(result.stderr)) == cap
    assert elapsed < 5
    assert job_uid_descendants() == []
    await assert_host_healthy(runtime)


# -- time ----------------------------------------------------------------------------


async def test_sleep_past_wall_time(runtime):
    """Sleeping forever ends at the wall limit: timeout, killed, promptly."""
    result, elapsed = await run(runtime, "import time\ntime.sleep(3600)\n", limits={"wall_time": 2})
    assert result.timed_out, result
    assert result.status is Status.TIMEOUT
    assert result.signal == 9
    assert 2.0 <= result.wall_time < 2.5
    assert elapsed < 2 + 1.5
    assert result.cpu_time < 0.5
    await assert_host_healthy(runtime)


async def test_cpu_spin_ignoring_sigxcpu(runtime):
    """A busy loop that ignores SIGXCPU is killed at cpu_time, before the wall limit."""
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n"
    result, elapsed = await run(runtime, code, limits={"cpu_time": 1, "wall_time": 5})
    assert result.timed_out, result
    assert result.status is Status.TIMEOUT
    assert 1.0 <= result.cpu_time < 1.6
    assert elapsed < 3
    await assert_host_healthy(runtime)


async def test_cpu_spin_in_every_process(runtime):
    """Processes spinning on every core: stopped when their total reaches cpu_time."""
    code = (
        "import os\nfor _ in range(3):\n    if os.fork() == 0:\n        break\n"
        "while True:\n    pass\n"
    )
    result, elapsed = await run(runtime, code, limits={"cpu_time": 2, "wall_time": 10})
    assert result.status is Status.TIMEOUT, result
    assert 2.0 <= result.cpu_time < 2.8
    assert elapsed < 4
    assert job_uid_descendants() == []
    await assert_host_healthy(runtime)


async def test_result_does_not_wait_for_stdout_held_by_a_sleeper(runtime):
    """A child holding stdout open after the main process exits does not delay the result."""
    token = marker()
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    os.execv('/bin/sleep', ['sleep-' + sys.argv[1], '600'])\n"
        "print('main done')\n"
    )
    result, elapsed = await run(runtime, code, argv=(token,))
    assert result.status is Status.OK, result
    assert result.stdout == "main done\n"
    assert elapsed < 2
    assert host_pids_with(token) == []
    await assert_host_healthy(runtime)


# -- huge argv and environment ---------------------------------------------------

EXEC_HUGE = """
import errno, json, os
out = {}
for name, argv, env in (
    ("one huge argument", ["/bin/true", "x" * (1 << 20)], {}),
    ("many arguments", ["/bin/true"] + ["y" * 1000] * 20000, {}),
    ("huge environment", ["/bin/true"], {"HUGE": "z" * (1 << 20)}),
):
    pid = os.fork()
    if pid == 0:
        try:
            os.execve(argv[0], argv, env)
        except OSError as e:
            os._exit(100 + e.errno)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    out[name] = errno.errorcode.get(code - 100, code) if code >= 100 else code
print(json.dumps(out))
"""


async def test_huge_argv_and_env_inside_the_job_fail_alone(runtime):
    """execve with megabytes of arguments or environment: E2BIG, for the job alone."""
    seen = await probe(runtime, EXEC_HUGE, limits=limits(memory="256M"))
    assert set(seen.values()) == {"E2BIG"}, seen
    await assert_host_healthy(runtime)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"argv": ("x" * 200_000,)}, "argv"),
        ({"argv": tuple("y" * 100_000 for _ in range(12))}, "argv"),
        ({"env": {"HUGE": "z" * 200_000}}, "env"),
    ],
    ids=["one-huge-argument", "many-arguments", "huge-environment"],
)
async def test_huge_argv_and_env_from_the_client_are_refused(runtime, spec, field):
    """The same from the submitter: a SpecError naming the field, before any container."""
    with pytest.raises(SpecError) as info:
        await runtime.execute(JobSpec(code="", **spec))
    assert info.value.field == field
    await assert_host_healthy(runtime)
