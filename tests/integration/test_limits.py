"""Each limit of a JobSpec holds against a program that tries to exceed it.

A limit hit is a normal result with a status, never an exception, and it comes
back promptly. Host health is checked after the hostile ones: the next job
still runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sandbox import JobSpec, Limits, Status
from tests.proc import pids_with

pytestmark = [pytest.mark.root, pytest.mark.overlay]

MiB = 2**20


async def _host_still_runs_jobs(runtime) -> None:
    result = await runtime.execute(JobSpec(code="print('alive')"))
    assert result.status is Status.OK, result
    assert result.stdout == "alive\n"


def _host_files_named(name: str, under: Path) -> list[Path]:
    return [*under.rglob(name), *Path("/tmp").glob(name)]


def _host_processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    return pids_with(marker)


async def test_memory_balloon_is_oom_killed(runtime):
    """Allocating past limits.memory: oom_killed from the cgroup, status memory_limit."""
    code = (
        "chunks = []\n"
        "for _ in range(64):\n"
        "    chunks.append(bytearray(8 * 2**20))\n"
        "print('survived')\n"
    )
    limit = 64 * MiB
    spec = JobSpec(code=code, limits=Limits(memory=limit, wall_time=20, cpu_time=20))
    result = await runtime.execute(spec)
    assert result.oom_killed, result
    assert result.status is Status.MEMORY_LIMIT
    assert result.signal == 9
    assert "survived" not in result.stdout
    assert limit * 0.8 <= result.memory_peak <= limit


async def test_memory_accepts_size_strings(runtime):
    """memory='64M' is 64 MiB: a 32 MiB allocation fits, and the peak shows it."""
    code = "x = bytearray(32 * 2**20)\nprint(len(x))"
    result = await runtime.execute(JobSpec(code=code, limits=Limits(memory="64M")))
    assert result.status is Status.OK, result
    assert 32 * MiB <= result.memory_peak <= 64 * MiB


FORK_BOMB = """
import os, time
n = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        print('fork failed', n, e.errno, flush=True)
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    n += 1
"""


async def test_fork_bomb_hits_the_pids_limit(runtime):
    """A fork bomb under pids=16 stops at the cap (EAGAIN) and the result comes back."""
    spec = JobSpec(code=FORK_BOMB, limits=Limits(pids=16, wall_time=20, cpu_time=20))
    start = time.monotonic()
    result = await runtime.execute(spec)
    assert time.monotonic() - start < 10
    assert result.pids_limit_hit, result
    count, err = result.stdout.split()[2:]
    assert err == "11"  # EAGAIN
    assert int(count) < 16
    await _host_still_runs_jobs(runtime)


async def test_unrestrained_fork_bomb_is_contained(runtime):
    """A bomb whose children fork too (and ignore failure) is held; the host is fine."""
    code = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    spec = JobSpec(code=code, limits=Limits(pids=16, wall_time=2, cpu_time=20))
    start = time.monotonic()
    result = await runtime.execute(spec)
    assert time.monotonic() - start < 2 + 1.5
    assert result.pids_limit_hit
    assert result.timed_out
    assert result.status is Status.TIMEOUT
    await _host_still_runs_jobs(runtime)


async def test_sleep_past_wall_time(runtime):
    """A sleeper is killed at the wall limit: timed_out, status timeout, ~limit seconds."""
    spec = JobSpec(code="import time\ntime.sleep(60)", limits=Limits(wall_time=1))
    start = time.monotonic()
    result = await runtime.execute(spec)
    elapsed = time.monotonic() - start
    assert result.timed_out
    assert result.status is Status.TIMEOUT
    assert result.signal == 9
    assert 1.0 <= result.wall_time < 1.5
    assert elapsed < 1 + 1.0
    assert result.cpu_time < 0.5


async def test_wall_time_kills_forked_children_that_ignore_sigterm(runtime):
    """Sleeping children that ignore SIGTERM die at the wall limit too, promptly."""
    marker = f"{os.getpid()}.{time.monotonic_ns() % 10**6}"
    code = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "for _ in range(4):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        os.execv('/bin/sleep', ['sleep', sys.argv[1]])\n"
        "signal.pause()\n"
    )
    spec = JobSpec(code=code, argv=(marker,), limits=Limits(wall_time=1))
    start = time.monotonic()
    result = await runtime.execute(spec)
    assert time.monotonic() - start < 1 + 1.0
    assert result.status is Status.TIMEOUT
    assert _host_processes_with(marker) == []


async def test_cpu_spin_past_cpu_time(runtime):
    """A busy loop is stopped at cpu_time (wall limit larger): timeout, cpu_time ~limit."""
    spec = JobSpec(code="while True:\n    pass\n", limits=Limits(cpu_time=1, wall_time=10))
    start = time.monotonic()
    result = await runtime.execute(spec)
    assert time.monotonic() - start < 3
    assert result.timed_out
    assert result.status is Status.TIMEOUT
    assert 1.0 <= result.cpu_time < 1.5


async def test_cpu_time_counts_every_process(runtime):
    """Two spinning processes are stopped when their total, not each one, reaches cpu_time."""
    code = "import os\nos.fork()\nwhile True:\n    pass\n"
    spec = JobSpec(code=code, limits=Limits(cpu_time=2, wall_time=20))
    result = await runtime.execute(spec)
    assert result.status is Status.TIMEOUT
    # Each process's own RLIMIT_CPU backstop is 3 s: a per-process count would reach 6.
    assert 2.0 <= result.cpu_time < 2.6


async def test_cpu_time_and_memory_peak_include_children(runtime):
    """A child that allocates 96 MiB and burns CPU shows in the job's figures."""
    code = (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    x = bytearray(96 * 2**20)\n"
        "    for i in range(0, len(x), 4096):\n"
        "        x[i] = 1\n"
        "    t = time.process_time()\n"
        "    while time.process_time() - t < 0.5:\n"
        "        pass\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    result = await runtime.execute(JobSpec(code=code, limits=Limits(memory="256M")))
    assert result.status is Status.OK, result
    assert result.memory_peak >= 96 * MiB
    assert result.cpu_time >= 0.5


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("sys.stdout.write('x' * 4096)", id="no-newlines"),
        pytest.param("print('y' * 99)", id="lines"),
    ],
)
async def test_output_flood(runtime, line):
    """Printing forever: output_truncated, status output_limit, exactly limit bytes kept."""
    limit = 100_000
    code = f"import sys\nwhile True:\n    {line}\n"
    spec = JobSpec(code=code, limits=Limits(output=limit, wall_time=10))
    start = time.monotonic()
    result = await runtime.execute(spec)
    assert time.monotonic() - start < 5
    assert result.output_truncated
    assert result.status is Status.OUTPUT_LIMIT
    assert len(result.stdout) == limit
    assert set(result.stdout) <= {"x", "y", "\n"}


async def test_stderr_flood(runtime):
    """The cap applies to stderr on its own; stdout printed before is kept."""
    code = (
        "import sys\nprint('before', flush=True)\nwhile True:\n    sys.stderr.write('e' * 1000)\n"
    )
    result = await runtime.execute(JobSpec(code=code, limits=Limits(output=50_000)))
    assert result.status is Status.OUTPUT_LIMIT
    assert result.output_truncated
    assert len(result.stderr) == 50_000
    assert result.stdout == "before\n"


async def test_writing_more_than_disk_fails(runtime, settings):
    """Writing past limits.disk to /tmp fails with ENOSPC or EFBIG; the host is untouched."""
    code = (
        "import errno\n"
        "written = 0\n"
        "try:\n"
        "    with open('/tmp/fill', 'wb') as f:\n"
        "        while written < 64 * 2**20:\n"
        "            written += f.write(b'x' * 2**20)\n"
        "            f.flush()\n"
        "    print('no error', written)\n"
        "except OSError as e:\n"
        "    print(errno.errorcode[e.errno], written)\n"
    )
    spec = JobSpec(code=code, limits=Limits(disk="8M", memory="128M"))
    result = await runtime.execute(spec)
    assert result.status is Status.OK, result
    name, written = result.stdout.split()
    assert name in ("ENOSPC", "EFBIG")
    assert int(written) <= 8 * MiB
    # The job's writable layer was a tmpfs of its own, in its own mount namespace,
    # mounted over run_dir/mnt: nothing of it is on the host's disk.
    assert _host_files_named("fill", settings.run_dir) == []
    await _host_still_runs_jobs(runtime)


FILL = """
import errno, sys
files = []
for name in sys.argv[1:]:
    written = 0
    try:
        with open(name, 'wb') as f:
            while written < 4 * 2**20:
                written += f.write(b'x' * 2**16)
                f.flush()
    except OSError as e:
        files.append(f"{errno.errorcode[e.errno]}:{written}")
    else:
        files.append(f"ok:{written}")
print(" ".join(files))
"""


async def test_one_file_stops_at_the_file_size_limit(runtime):
    """limits.file_size caps each file (EFBIG at the limit), not the disk: two files of 1 MiB
    fit where one of 2 MiB does not."""
    spec = JobSpec(code=FILL, argv=("/tmp/a", "/tmp/b"), limits={"file_size": "1M"})
    result = await runtime.execute(spec)
    assert result.status is Status.OK, result
    assert result.stdout.split() == [f"EFBIG:{MiB}", f"EFBIG:{MiB}"]
    default = await runtime.execute(JobSpec(code=FILL, argv=("/tmp/a",)))
    assert default.stdout.split() == [f"ok:{4 * MiB}"]  # the disk limit (64M) by default


async def test_disk_limit_does_not_carry_over(runtime):
    """A second job starts with a fresh, empty writable layer."""
    code = "import os\nprint(os.path.exists('/tmp/fill'), sorted(os.listdir('/tmp')))"
    result = await runtime.execute(JobSpec(code=code))
    assert result.stdout == "False []\n"


async def test_open_files_limit_holds(runtime):
    """open() fails with EMFILE once open_files descriptors are in use."""
    code = (
        "import errno\n"
        "files = []\n"
        "try:\n"
        "    while True:\n"
        "        files.append(open('/dev/null'))\n"
        "except OSError as e:\n"
        "    print(errno.errorcode[e.errno], len(files))\n"
    )
    result = await runtime.execute(JobSpec(code=code, limits=Limits(open_files=32)))
    assert result.status is Status.OK, result
    name, count = result.stdout.split()
    assert name == "EMFILE"
    assert int(count) <= 32 - 3  # stdin, stdout and stderr are open already


DEEP = r"""
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* About 1 KiB of stack a call: 60000 calls need ~60 MiB, far past 8 MiB. */
static int depth(int n) {
    volatile char pad[1024];
    memset((char *)pad, n & 0x7f, sizeof pad);
    return n ? depth(n - 1) + (pad[0] & 1) : 0;
}

static void *deep(void *arg) {
    printf("%d\n", depth(*(int *)arg) >= 0);
    return NULL;
}

int main(int argc, char **argv) {
    int n = 60000;
    if (argc > 1 && !strcmp(argv[1], "thread")) { /* a thread's stack: the default size */
        pthread_t t;
        if (pthread_create(&t, NULL, deep, &n)) return 2;
        pthread_join(t, NULL);
    } else {
        deep(&n);
    }
    return 0;
}
"""


async def test_the_stack_limit_is_the_jobs_own(runtime):
    """RLIMIT_STACK is the memory limit by default, whatever the worker inherited."""
    code = "import resource\nprint(*resource.getrlimit(resource.RLIMIT_STACK))"
    result = await runtime.execute(JobSpec(code=code, limits=Limits(memory="300M")))
    assert result.stdout.split() == [str(300 * 2**20)] * 2, result
    result = await runtime.execute(JobSpec(code=code, limits=Limits(stack="16M")))
    assert result.stdout.split() == [str(16 * 2**20)] * 2, result


@pytest.mark.slow
@pytest.mark.parametrize("where", ["main", "thread"])
async def test_deep_recursion_fits_the_default_stack_and_not_a_small_one(runtime, where):
    """~60 MiB of stack: fine within a 256 MiB job (its stack is its memory), in the
    main thread and in a thread of default size; a segfault with a 16 MiB stack."""
    spec = {"code": DEEP, "language": "c", "argv": [where]}
    roomy = await runtime.execute(JobSpec(**spec, limits=Limits(wall_time=30, cpu_time=20)))
    assert roomy.status is Status.OK, roomy
    assert roomy.stdout == "1\n"
    small = await runtime.execute(
        JobSpec(**spec, limits=Limits(wall_time=30, cpu_time=20, stack="16M"))
    )
    assert small.status is Status.RUNTIME_ERROR, small
    assert small.signal == 11  # SIGSEGV: the stack's guard page
