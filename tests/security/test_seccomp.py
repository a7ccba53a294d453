"""The seccomp filter: each refused syscall, tried from inside a job, fails with EPERM.

Raw syscall numbers (x86_64) through libc's syscall(), so that no wrapper can
hide what the kernel said. Whatever the arguments, the filter answers first.
"""

from __future__ import annotations

import json

import pytest

from sandbox import JobSpec, Status

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
