"""The walk-through's isolation facts, as seen from inside a job.

Each test runs a small probe in a container and checks what it saw against
the host: namespaces, processes, hostname, network, filesystem, identity.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from sandbox import JobSpec, Limits, Runtime, Status
from sandbox.plan import PROC_MASKED, PROC_READONLY

pytestmark = [pytest.mark.root, pytest.mark.overlay]

ALLOWED_DEV = {
    "null",
    "zero",
    "full",
    "random",
    "urandom",
    "tty",
    "ptmx",
    "pts",
    "shm",
    "fd",
    "stdin",
    "stdout",
    "stderr",
}


def _alive(pid: int) -> bool:
    """True if ``pid`` exists on the host and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _host_lacks(*paths: str) -> bool:
    return not any(os.path.exists(p) for p in paths)


async def _probe(runtime: Runtime, code: str, **spec: Any) -> str:
    """Run ``code`` and return its stdout; the probe itself must succeed."""
    result = await runtime.execute(JobSpec(code=code, **spec))
    assert result.status is Status.OK, result
    return result.stdout


async def test_own_namespaces(runtime):
    """pid, mount, ipc, uts, net and cgroup namespaces all differ from the host's."""
    kinds = ["pid", "mnt", "ipc", "uts", "net", "cgroup"]
    code = (
        "import os, json\n"
        f"print(json.dumps({{k: os.readlink('/proc/self/ns/' + k) for k in {kinds!r}}}))\n"
    )
    inside = json.loads(await _probe(runtime, code))
    for kind in kinds:
        assert inside[kind] != os.readlink(f"/proc/self/ns/{kind}"), kind


async def test_job_is_child_of_pid_1(runtime):
    """In its own pid namespace the job is pid 2, child of our init as pid 1."""
    out = await _probe(runtime, "import os\nprint(os.getpid(), os.getppid())")
    assert out == "2 1\n"


async def test_ps_shows_only_the_jobs_processes(runtime):
    """`ps -e` inside lists init, the job and ps itself, nothing of the host."""
    code = (
        "import subprocess\n"
        "out = subprocess.run(['ps', '-e', '-o', 'pid='], capture_output=True, text=True,"
        " check=True).stdout\n"
        "print(sorted(int(p) for p in out.split()))\n"
        "import os\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
    )
    out = await _probe(runtime, code)
    assert out == "[1, 2, 3]\n[1, 2]\n"


async def test_cannot_see_or_kill_a_host_process(runtime):
    """A host process's pid is unknown inside: kill() gets ESRCH and the process lives."""
    victim = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        code = (
            "import os, signal, sys\n"
            "pid = int(sys.argv[1])\n"
            "print(os.path.exists(f'/proc/{pid}'))\n"
            "try:\n"
            "    os.kill(pid, signal.SIGKILL)\n"
            "    print('killed')\n"
            "except ProcessLookupError:\n"
            "    print('ProcessLookupError')\n"
        )
        out = await _probe(runtime, code, argv=(str(victim.pid),))
        assert out == "False\nProcessLookupError\n"
        assert victim.returncode is None
        assert _alive(victim.pid)
    finally:
        victim.kill()
        await victim.wait()


async def test_hostname_differs(runtime, settings):
    """The job has its own UTS namespace with the configured hostname."""
    out = await _probe(runtime, "import socket\nprint(socket.gethostname())")
    assert out.strip() != socket.gethostname()
    assert out.strip() == settings.hostname


async def test_only_loopback_and_it_is_up(runtime):
    """The only interface is lo, and it works: the job can talk to itself."""
    code = (
        "import socket\n"
        "print([name for _, name in socket.if_nameindex()])\n"
        "srv = socket.create_server(('127.0.0.1', 0))\n"
        "c = socket.create_connection(srv.getsockname(), timeout=2)\n"
        "conn, _ = srv.accept()\n"
        "c.sendall(b'ping')\n"
        "print(conn.recv(4).decode())\n"
    )
    out = await _probe(runtime, code, limits=Limits(wall_time=10))
    assert out == "['lo']\nping\n"


async def test_host_loopback_is_unreachable(runtime):
    """A listener on the host's 127.0.0.1 cannot be reached from the job."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        code = (
            "import socket, sys\n"
            "try:\n"
            "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=2)\n"
            "    print('connected')\n"
            "except OSError as e:\n"
            "    print(type(e).__name__)\n"
        )
        out = await _probe(runtime, code, argv=(str(port),), limits=Limits(wall_time=10))
        assert out == "ConnectionRefusedError\n"
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


async def test_outside_world_is_unreachable(runtime):
    """Any non-loopback address has no route (fails at once, no hanging)."""
    code = (
        "import errno, socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "    print('connected')\n"
        "except OSError as e:\n"
        "    print(errno.errorcode.get(e.errno, e))\n"
    )
    out = await _probe(runtime, code, limits=Limits(wall_time=10))
    assert out == "ENETUNREACH\n"


async def test_sys_absent_or_read_only(runtime):
    """/sys is absent, or no file under it can be created."""
    code = (
        "import os\n"
        "if not os.path.exists('/sys'):\n"
        "    print('absent')\n"
        "else:\n"
        "    try:\n"
        "        open('/sys/probe', 'w')\n"
        "        print('writable')\n"
        "    except OSError:\n"
        "        print('read-only')\n"
    )
    out = await _probe(runtime, code)
    assert out in ("absent\n", "read-only\n")


async def test_dev_holds_only_the_allowed_nodes(runtime):
    """/dev lists only the allowed nodes, and each device works."""
    code = (
        "import json, os\n"
        "print(json.dumps(sorted(os.listdir('/dev'))))\n"
        "print(len(open('/dev/urandom', 'rb').read(8)), open('/dev/zero', 'rb').read(2))\n"
        "open('/dev/null', 'w').write('x')\n"
    )
    out = await _probe(runtime, code)
    listing, devices = out.splitlines()
    names = set(json.loads(listing))
    assert names <= ALLOWED_DEV
    assert {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"} <= names
    assert devices == "8 b'\\x00\\x00'"


async def test_tmp_is_writable(runtime):
    """The job can write and read back files in /tmp and /dev/shm."""
    code = (
        "for path in ('/tmp/f', '/dev/shm/f'):\n"
        "    with open(path, 'w') as f:\n"
        "        f.write('data')\n"
        "    print(open(path).read())\n"
    )
    assert await _probe(runtime, code) == "data\ndata\n"


async def test_working_dir_holds_the_source(runtime):
    """The job runs in /box, which holds its source file, main.py, with the spec's code."""
    code = "import os\nprint(os.getcwd(), os.listdir('.'))\nprint(open('main.py').read(), end='')\n"
    out = await _probe(runtime, code)
    assert out == "/box ['main.py']\n" + code


async def test_unprivileged_identity(runtime):
    """uid/gid 65534, every capability set empty, no_new_privs set."""
    code = (
        "import os\n"
        "print(os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups())\n"
        "print(open('/proc/self/status').read())\n"
    )
    out = await _probe(runtime, code)
    ids, status = out.split("\n", 1)
    assert ids == "65534 65534 65534 65534 []"
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[name], 16) == 0, name
    assert fields["NoNewPrivs"].strip() == "1"


async def test_cgroup_namespace_shows_root(runtime):
    """/proc/self/cgroup shows "/" for every hierarchy: the job's cgroup is its root."""
    out = await _probe(runtime, "print(open('/proc/self/cgroup').read(), end='')")
    lines = out.splitlines()
    assert lines
    for line in lines:
        assert line.split(":", 2)[2] == "/", line


async def test_cannot_write_to_root_or_usr(runtime):
    """Neither / nor /usr (the host's, bound read-only) accepts a new file."""
    code = (
        "import errno\n"
        "for path in ('/probe', '/usr/probe', '/usr/bin/probe', '/etc/probe'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "        print(path, 'written')\n"
        "    except OSError as e:\n"
        "        print(path, errno.errorcode[e.errno])\n"
    )
    out = await _probe(runtime, code)
    for line in out.splitlines():
        assert line.split()[1] in ("EACCES", "EROFS", "EPERM"), line
    assert _host_lacks("/usr/probe", "/usr/bin/probe", "/etc/probe")


async def test_host_mounts_are_not_visible(runtime):
    """The old root is detached: the job's mount table holds only its own mounts."""
    code = "for line in open('/proc/self/mountinfo'):\n    print(line.split()[4])\n"
    points = set((await _probe(runtime, code)).split())
    allowed = {"/", "/proc", "/dev", "/dev/pts", "/dev/shm"}
    allowed |= {f"/dev/{name}" for name in ALLOWED_DEV}
    allowed |= {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}
    allowed |= set(PROC_MASKED) | set(PROC_READONLY)  # kernel surfaces hidden or read-only
    assert points <= allowed
    checkout = str(Path(__file__).resolve().parents[2])  # this project, wherever it lives
    assert not any(p.startswith(("/run", checkout, "/var", "/home")) for p in points)
