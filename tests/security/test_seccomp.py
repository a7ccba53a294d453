"""The seccomp filter: each refused syscall, tried from inside a job, fails with EPERM.

Raw syscall numbers (x86_64) through libc's syscall(), so that no wrapper can
hide what the kernel said. Whatever the arguments, the filter answers first.
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from sandbox import JobSpec, Runtime, SpecError, Status

pytestmark = [pytest.mark.root, pytest.mark.overlay]

PROBE = """
import ctypes, errno, json, sys
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for name, number, args in json.loads(sys.argv[1]):
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    out[name] = 'ok' if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), '?')
print(json.dumps(out))
"""

CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET = 0x10000000, 0x00020000, 0x40000000
SIGCHLD = 17
REFUSED = [
    ("unshare(CLONE_NEWUSER)", 272, [CLONE_NEWUSER]),
    ("unshare(CLONE_NEWNS)", 272, [CLONE_NEWNS]),
    ("clone(CLONE_NEWUSER)", 56, [CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0]),
    ("clone(CLONE_NEWNET)", 56, [CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0]),
    ("setns", 308, [0, 0]),
    ("mount", 165, [0, 0, 0, 0, 0]),
    ("umount2", 166, [0, 0]),
    ("pivot_root", 155, [0, 0]),
    ("fsopen", 430, [0, 0]),
    ("keyctl", 250, [0, 0, 0, 0, 0]),
    ("add_key", 248, [0, 0, 0, 0, 0]),
    ("bpf", 321, [0, 0, 0]),
    ("perf_event_open", 298, [0, 0, 0, 0, 0]),
    ("userfaultfd", 323, [0]),
    ("io_uring_setup", 425, [1, 0]),
    ("ptrace(PTRACE_ATTACH, 1)", 101, [16, 1, 0, 0]),
    ("process_vm_readv", 310, [1, 0, 0, 0, 0, 0]),
    ("kexec_load", 246, [0, 0, 0, 0]),
    ("init_module", 175, [0, 0, 0]),
    ("reboot", 169, [0, 0, 0, 0]),
    ("swapon", 167, [0, 0]),
    ("acct", 163, [0]),
    ("open_by_handle_at", 304, [0, 0, 0]),
    ("syslog", 103, [3, 0, 0]),
    ("personality(ADDR_NO_RANDOMIZE)", 135, [0x0040000]),
]


@pytest.mark.parametrize("capabilities", [(), ("CAP_SYS_CHROOT",)], ids=["nobody", "root"])
async def test_refused_syscalls_fail_with_eperm(runtime, capabilities):
    """Namespaces, mounts, keys, BPF, perf, io_uring, ptrace, kexec, modules... all EPERM."""
    spec = JobSpec(code=PROBE, argv=(json.dumps(REFUSED),), capabilities=frozenset(capabilities))
    result = await runtime.execute(spec)
    assert result.status is Status.OK, result
    outcome = json.loads(result.stdout)
    assert {name: outcome[name] for name, _, _ in REFUSED} == {
        name: "EPERM" for name, _, _ in REFUSED
    }


async def test_clone3_says_enosys_so_libc_falls_back_and_threads_still_work(runtime):
    """clone3 cannot have its flags checked: it answers ENOSYS; threads and fork still work."""
    code = PROBE.replace("print(json.dumps(out))", "") + (
        "import threading, subprocess, os\n"
        "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
        "out['thread'] = 'ok'\n"
        "out['subprocess'] = subprocess.run(['/bin/true']).returncode\n"
        "out['seccomp'] = open('/proc/self/status').read().split('Seccomp:')[1].split()[0]\n"
        "print(json.dumps(out))\n"
    )
    spec = JobSpec(code=code, argv=(json.dumps([("clone3", 435, [0, 0])]),))
    result = await runtime.execute(spec)
    assert result.status is Status.OK, result
    outcome = json.loads(result.stdout)
    assert outcome == {"clone3": "ENOSYS", "thread": "ok", "subprocess": 0, "seccomp": "2"}


# -- named profiles -------------------------------------------------------------

SOCKETS = """
import errno, json, socket
out = {}
for name, family, kind in (
    ("inet", socket.AF_INET, socket.SOCK_STREAM),
    ("inet6", socket.AF_INET6, socket.SOCK_DGRAM),
    ("netlink", socket.AF_NETLINK, socket.SOCK_RAW),
    ("packet", socket.AF_PACKET, socket.SOCK_RAW),
    ("unix", socket.AF_UNIX, socket.SOCK_STREAM),
):
    try:
        socket.socket(family, kind).close()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
a, b = socket.socketpair()
a.sendall(b"x")
out["socketpair"] = b.recv(1).decode()
print(json.dumps(out))
"""


async def test_strict_profile_allows_unix_sockets_only(runtime):
    result = await runtime.execute(JobSpec(code=SOCKETS, seccomp_profile="strict"))
    assert result.status is Status.OK, result
    seen = json.loads(result.stdout)
    for family in ("inet", "inet6", "netlink", "packet"):
        assert seen[family] == "EACCES", (family, seen)
    assert (seen["unix"], seen["socketpair"]) == ("ok", "x")
    # The default profile leaves sockets to the network namespace (loopback only).
    default = json.loads((await runtime.execute(JobSpec(code=SOCKETS))).stdout)
    assert default["inet"] == "ok"


TRACE_CHILD = """
import ctypes, errno, json, os, signal
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
child = os.fork()
if child == 0:
    signal.pause()
    os._exit(0)
out = {}
rc = libc.ptrace(ctypes.c_long(PTRACE_ATTACH), ctypes.c_long(child), None, None)
out["attach child"] = "ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]
if rc == 0:
    os.waitpid(child, os.WUNTRACED)
    libc.ptrace(ctypes.c_long(PTRACE_DETACH), ctypes.c_long(child), None, None)
rc = libc.ptrace(ctypes.c_long(PTRACE_ATTACH), ctypes.c_long(1), None, None)
out["attach init"] = "ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
print(json.dumps(out))
"""


async def test_ptrace_profile_traces_the_jobs_own_processes_only(settings):
    """For gdb and strace: a job may trace its child, never the container's init."""
    allowed = settings.allowed_seccomp_profiles | {"ptrace"}
    tracing = settings.model_copy(update={"allowed_seccomp_profiles": allowed})
    async with Runtime(tracing, pool_size=0) as rt:
        result = await rt.execute(JobSpec(code=TRACE_CHILD, seccomp_profile="ptrace"))
    assert result.status is Status.OK, result
    seen = json.loads(result.stdout)
    assert seen["attach child"] == "ok", seen
    assert seen["attach init"] == "EPERM", seen  # init is another uid, and not dumpable by it


async def test_ptrace_is_refused_by_the_default_profile(runtime):
    result = await runtime.execute(JobSpec(code=TRACE_CHILD))
    assert json.loads(result.stdout)["attach child"] == "EPERM"


async def test_profiles_the_operator_did_not_allow_are_refused(runtime):
    with pytest.raises(SpecError, match="seccomp profile ptrace is not allowed"):
        await runtime.execute(JobSpec(code="", seccomp_profile="ptrace"))


def test_a_job_cannot_send_its_own_syscall_list():
    with pytest.raises(ValidationError):
        JobSpec(code="", seccomp_profile="allow-everything")
    with pytest.raises(ValidationError):
        JobSpec(code="", seccomp={"allow": ["mount"]})  # type: ignore[call-arg]
