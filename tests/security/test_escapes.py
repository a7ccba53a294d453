"""Filesystem and privilege escapes: the job stays in its own root, unprivileged.

Each hostile program tries a classic way out (host files, /proc links, the
chroot escape, mounts, device nodes, setuid binaries, kernel tunables) and
reports what it reached as JSON; the test asserts it reached nothing of the
host. A job "with capabilities" runs as root inside, with only those.

Nothing here ever writes to a kernel tunable: a write would change the host
if the attack worked. Opening for writing is the probe.
"""

from __future__ import annotations

import json
import os
import platform
import stat
from pathlib import Path

import pytest

from sandbox import JobSpec, SpecError, Status
from sandbox.plan import DEVICES
from tests.security.helpers import JOB_UID, assert_host_healthy, probe, run

pytestmark = [pytest.mark.root, pytest.mark.overlay]

NOBODY = pytest.param((), id="nobody")
# This checkout, wherever it lives: the host's, never in a job's view.
CHECKOUT = Path(__file__).resolve().parents[2]
HOST_PATHS = (
    f"SOURCE, CHECKOUT = {str(CHECKOUT / 'sandbox/runtime/runner.py')!r}, {str(CHECKOUT)!r}\n"
)

READ_HOST_FILES = (
    HOST_PATHS
    + """
import errno, json, os
def attempt(fn, *args):
    try:
        return ['ok', fn(*args)]
    except OSError as e:
        return [errno.errorcode[e.errno], None]
def read(path):
    with open(path, 'rb') as f:
        return f.read().decode(errors='replace')
print(json.dumps({
    'shadow': attempt(read, '/etc/shadow'),
    'gshadow': attempt(read, '/etc/gshadow'),
    'passwd': attempt(read, '/etc/passwd'),
    'root': attempt(os.listdir, '/root'),
    'source': attempt(read, SOURCE),
    'checkout': attempt(os.listdir, CHECKOUT),
    'state': attempt(os.listdir, '/var/lib/sandbox'),
    'run': attempt(os.listdir, '/run'),
    'ssh': attempt(os.listdir, '/etc/ssh'),
    'config': attempt(read, '/etc/sandbox-worker/env'),
    'config dir': attempt(os.listdir, '/etc/sandbox-worker'),
    'unit': attempt(read, '/etc/systemd/system/sandbox-worker.service'),
    'top': sorted(os.listdir('/')),
}))
"""
)


@pytest.mark.parametrize(
    "capabilities", [NOBODY, pytest.param(("CAP_DAC_OVERRIDE",), id="root-dac-override")]
)
async def test_host_files_are_out_of_reach(runtime, settings, capabilities):
    """/etc/shadow, /root, the project's source, the state dir: not there, or the image's own."""
    seen = await probe(runtime, READ_HOST_FILES, capabilities=capabilities)
    for key in ("shadow", "gshadow", "source", "checkout", "state", "ssh"):
        assert seen[key][0] == "ENOENT", (key, seen[key])
    for key in ("config", "config dir", "unit"):  # the worker's configuration
        assert seen[key][0] == "ENOENT", (key, seen[key])
    with open("/etc/passwd") as f:
        host_passwd = f.read()
    status, passwd = seen["passwd"]
    assert status == "ok"
    assert passwd != host_passwd
    assert {line.split(":")[0] for line in passwd.splitlines()} <= {"root", "nobody"}
    # The image's own /root (0700): its owner, the host's root, is not mapped into
    # the job's user namespace, so CAP_DAC_OVERRIDE does not apply to it.
    assert seen["root"][0] == "EACCES"
    assert seen["run"] == ["ok", []]
    assert settings.run_dir.name not in seen["run"][1]
    await assert_host_healthy(runtime)


PROC_LINKS = (
    HOST_PATHS
    + """
import errno, json, os
out = {}
for pid in sorted(p for p in os.listdir('/proc') if p.isdigit()):
    for link in ('root', 'cwd'):
        path = f'/proc/{pid}/{link}'
        try:
            out[path] = sorted(os.listdir(path))
        except OSError as e:
            out[path] = errno.errorcode[e.errno]
        try:
            os.stat(path + CHECKOUT)
            out[path + CHECKOUT] = 'exists'
        except OSError as e:
            out[path + CHECKOUT] = errno.errorcode[e.errno]
out['self'] = os.getpid()
out['top'] = sorted(os.listdir('/'))
print(json.dumps(out))
"""
)


@pytest.mark.parametrize(
    "capabilities",
    [NOBODY, pytest.param(("CAP_DAC_OVERRIDE", "CAP_SYS_CHROOT"), id="root")],
)
async def test_proc_root_and_cwd_links_stay_inside(runtime, capabilities):
    """/proc/1/root and /proc/*/cwd lead nowhere outside the container's own root."""
    seen = await probe(runtime, PROC_LINKS, capabilities=capabilities)
    top = seen.pop("top")
    own = seen.pop("self")
    assert "/proc/1/root" in seen, "pid 1 (our init) should be visible"
    for path, value in seen.items():
        if path.endswith(str(CHECKOUT)):
            assert value in ("ENOENT", "EACCES"), (path, value)
        elif path.endswith("/root") and isinstance(value, list):
            assert value == top, (path, value)
    # The job's init is root with every capability: no way in through its links.
    assert seen["/proc/1/root"] == "EACCES"
    assert seen[f"/proc/{own}/root"] == top
    await assert_host_healthy(runtime)


CHROOT_ESCAPE = (
    HOST_PATHS
    + """
import errno, json, os
out = {}
before = os.stat('/')
out['before'] = [before.st_dev, before.st_ino]
try:
    os.mkdir('/box/jail', 0o755)
    fd = os.open('/', os.O_RDONLY | os.O_DIRECTORY)
    os.chroot('/box/jail')
    os.fchdir(fd)  # the cwd is now outside the new root
    for _ in range(256):
        os.chdir('..')
    os.chroot('.')
    os.chdir('/')
    out['chroot'] = 'escaped?'
except OSError as e:
    out['chroot'] = errno.errorcode[e.errno]
after = os.stat('/')
out['after'] = [after.st_dev, after.st_ino]
out['top'] = sorted(os.listdir('/'))
for path in (CHECKOUT, '/etc/shadow', '/var/lib/sandbox', '/home/..', '/run/sandbox-test'):
    out[path] = os.path.exists(path) if path != '/home/..' else sorted(os.listdir(path))
with open('/etc/passwd') as f:
    out['passwd'] = f.read()
print(json.dumps(out))
"""
)


@pytest.mark.parametrize(
    "capabilities", [NOBODY, pytest.param(("CAP_SYS_CHROOT",), id="root-sys-chroot")]
)
async def test_classic_chroot_escape(runtime, capabilities):
    """chroot into a subdirectory, chdir('..') from outside it, chroot('.'): still inside.

    Unprivileged, chroot itself fails (EPERM). With CAP_SYS_CHROOT it works, but
    the container's root came from pivot_root with the old root detached, so
    walking up stops at the container's own root.
    """
    seen = await probe(runtime, CHROOT_ESCAPE, capabilities=capabilities)
    if capabilities:
        assert seen["chroot"] == "escaped?", seen
    else:
        assert seen["chroot"] == "EPERM", seen
    assert seen["after"] == seen["before"]
    assert seen["/home/.."] == seen["top"]
    for path in (str(CHECKOUT), "/etc/shadow", "/var/lib/sandbox", "/run/sandbox-test"):
        assert seen[path] is False, (path, seen)
    with open("/etc/passwd") as f:
        assert seen["passwd"] != f.read()
    await assert_host_healthy(runtime)


MOUNTS = """
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
def call(fn, *args):
    r = fn(*args)
    return 'ok' if r == 0 else errno.errorcode[ctypes.get_errno()]
os.makedirs('/tmp/m', exist_ok=True)
out = {
    'proc': call(libc.mount, b'proc', b'/tmp/m', b'proc', 0, None),
    'sysfs': call(libc.mount, b'sysfs', b'/tmp/m', b'sysfs', 0, None),
    'tmpfs': call(libc.mount, b'tmpfs', b'/tmp/m', b'tmpfs', 0, None),
    'cgroup': call(libc.mount, b'cgroup', b'/tmp/m', b'cgroup', 0, b'memory'),
    'bind-usr': call(libc.mount, b'/usr', b'/tmp/m', None, MS_BIND | MS_REC, None),
    'remount-usr-rw': call(libc.mount, None, b'/usr', None, MS_REMOUNT | MS_BIND, None),
    'remount-root': call(libc.mount, None, b'/', None, MS_REMOUNT, None),
    'umount-proc-sys': call(libc.umount2, b'/proc/sys', 2),
    'umount-proc': call(libc.umount2, b'/proc', 2),
    'unshare-mnt': call(libc.unshare, 0x00020000),
    'pivot_root': call(libc.syscall, 155, b'/tmp', b'/tmp/m'),
}
print(json.dumps(out))
"""


@pytest.mark.skipif(
    platform.machine() != "x86_64", reason="the probe calls pivot_root by its x86_64 number"
)
@pytest.mark.parametrize(
    "capabilities",
    [NOBODY, pytest.param(("CAP_DAC_OVERRIDE", "CAP_SYS_CHROOT", "CAP_MKNOD"), id="root")],
)
async def test_mounts_are_refused(runtime, capabilities):
    """proc, sysfs, tmpfs, cgroup, bind mounts, remounts, umounts: EPERM without CAP_SYS_ADMIN."""
    seen = await probe(runtime, MOUNTS, capabilities=capabilities)
    assert set(seen.values()) == {"EPERM"}, seen
    await assert_host_healthy(runtime)


PROC_SYS_THROUGH_USERNS = """
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
MS_REMOUNT, MS_BIND = 32, 4096
def call(fn, *args):
    r = fn(*args)
    return 'ok' if r == 0 else errno.errorcode[ctypes.get_errno()]
def open_for_write(path):
    try:
        os.close(os.open(path, os.O_WRONLY))  # never write: it would change the host
        return 'opened'
    except OSError as e:
        return errno.errorcode[e.errno]
uid = os.getuid()
out = {'userns': call(libc.unshare, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID)}
if out['userns'] == 'ok':
    try:
        with open('/proc/self/setgroups', 'w') as f:
            f.write('deny')
        with open('/proc/self/uid_map', 'w') as f:
            f.write(f'{uid} {uid} 1')
        out['map'] = 'ok'
    except OSError as e:
        out['map'] = errno.errorcode[e.errno]
    out['umount-proc-sys'] = call(libc.umount2, b'/proc/sys', 2)
    out['remount-proc-sys-rw'] = call(
        libc.mount, None, b'/proc/sys', None, MS_REMOUNT | MS_BIND, None)
    pid = os.fork()
    if pid == 0:  # pid 1 of the new pid namespace: try a fresh, unmasked procfs
        os.makedirs('/tmp/p', exist_ok=True)
        r = call(libc.mount, b'proc', b'/tmp/p', b'proc', 0, None)
        w = open_for_write('/tmp/p/sys/kernel/core_pattern') if r == 'ok' else 'no mount'
        os.write(1, json.dumps({'fresh-proc': r, 'fresh-core_pattern': w}).encode() + b'\\n')
        os._exit(0)
    os.waitpid(pid, 0)
for path in ('/proc/sys/kernel/core_pattern', '/proc/sys/vm/drop_caches', '/proc/sysrq-trigger'):
    out[path] = open_for_write(path)
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "capabilities", [NOBODY, pytest.param(("CAP_SYS_CHROOT",), id="root-sys-chroot")]
)
async def test_proc_sys_stays_read_only_through_a_user_namespace(runtime, capabilities):
    """A job that makes itself a user namespace (all capabilities in it) still cannot lift
    the read-only /proc/sys, nor mount a fresh, unmasked procfs.

    This does not assert that the user namespace is refused (that is for seccomp):
    only that nothing of the host becomes writable either way.
    """
    result, _ = await run(runtime, PROC_SYS_THROUGH_USERNS, capabilities=capabilities)
    assert result.status is Status.OK, result
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    seen = {k: v for report in reports for k, v in report.items()}
    for key in ("umount-proc-sys", "remount-proc-sys-rw", "fresh-proc"):
        if key in seen:
            assert seen[key] != "ok", seen
    assert seen.get("fresh-core_pattern", "no mount") != "opened", seen
    for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches"):
        assert seen[path] in ("EACCES", "EROFS", "EPERM"), seen
    assert seen["/proc/sysrq-trigger"] in ("EACCES", "EROFS", "EPERM", "ENOENT"), seen
    await assert_host_healthy(runtime)


KERNEL_TUNABLES = """
import errno, glob, json, os
paths = [
    '/proc/sys/kernel/core_pattern', '/proc/sys/kernel/modprobe', '/proc/sys/kernel/panic',
    '/proc/sys/vm/drop_caches', '/proc/sys/vm/overcommit_memory', '/proc/sys/fs/file-max',
    '/proc/sys/kernel/hostname', '/proc/sysrq-trigger',
    *sorted(glob.glob('/proc/irq/*/smp_affinity'))[:2],
    # No /sys at all: a job has no business with the host's devices and drivers.
    '/sys/kernel/mm/transparent_hugepage/enabled', '/sys/power/state',
    '/sys/fs/cgroup/cgroup.procs', '/sys/kernel/uevent_helper',
]
out = {}
for path in paths:
    try:
        os.close(os.open(path, os.O_WRONLY))  # never write: it would change the host
        out[path] = 'opened'
    except OSError as e:
        out[path] = errno.errorcode[e.errno]
for path in ('/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/sched_debug'):
    try:
        with open(path, 'rb') as f:
            out[path] = len(f.read(4096))
    except OSError as e:
        out[path] = errno.errorcode[e.errno]
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "capabilities",
    [
        NOBODY,
        pytest.param(("CAP_CHOWN",), id="root-chown"),
        pytest.param(("CAP_DAC_OVERRIDE", "CAP_FOWNER"), id="root-dac-override"),
    ],
)
async def test_kernel_tunables_are_not_writable(runtime, capabilities):
    """/proc/sys, /proc/sysrq-trigger and /sys cannot be opened for writing, even by a root job.

    A root job is root of its user namespace only, which the kernel does not
    let write the host's /proc/sys (core_pattern runs a program as host root);
    and /proc/sys is read-only besides (the layer that holds with
    SANDBOX_USERNS=false). There is no /sys. Masked files read empty.
    """
    seen = await probe(runtime, KERNEL_TUNABLES, capabilities=capabilities)
    for path, value in seen.items():
        if isinstance(value, int):
            assert value == 0, (path, value)  # masked: empty or absent
        else:
            assert value in ("EACCES", "EROFS", "EPERM", "ENOENT"), (path, value)
    assert seen["/proc/sys/kernel/core_pattern"] != "ENOENT"
    assert seen["/sys/power/state"] == "ENOENT"
    await assert_host_healthy(runtime)


MKNOD = """
import errno, json, os, stat, sys
major, minor = int(sys.argv[1]), int(sys.argv[2])
out = {}
for where in ('/tmp', '/box', '/dev/shm', '/dev'):
    for kind, mode, dev in (
        ('null', stat.S_IFCHR, os.makedev(1, 3)),
        ('disk', stat.S_IFBLK, os.makedev(major, minor)),
    ):
        path = f'{where}/{kind}-node'
        try:
            os.mknod(path, mode | 0o666, dev)
            made = 'made'
        except OSError as e:
            made = errno.errorcode[e.errno]
        try:
            os.close(os.open(path, os.O_RDONLY))  # read-only: harmless even if it worked
            opened = 'opened'
        except OSError as e:
            opened = errno.errorcode[e.errno]
        out[path] = [made, opened]
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "capabilities",
    [NOBODY, pytest.param(("CAP_MKNOD", "CAP_DAC_OVERRIDE"), id="root-mknod")],
)
async def test_device_nodes(runtime, capabilities):
    """mknod is EPERM, even with CAP_MKNOD (it is held in the job's user namespace only);
    a node could not be opened anyway: every filesystem the job can write is nodev."""
    disk = os.stat("/usr").st_dev
    seen = await probe(
        runtime,
        MKNOD,
        argv=(str(os.major(disk)), str(os.minor(disk))),
        capabilities=capabilities,
    )
    for path, (made, opened) in seen.items():
        # Device nodes are the initial user namespace's to make: CAP_MKNOD inside
        # the job's does not suffice (and every writable mount is nodev besides).
        assert made in ("EPERM", "EACCES"), (path, made)
        assert opened in ("EACCES", "ENOENT", "EPERM"), (path, opened)
    await assert_host_healthy(runtime)


SETUID = """
import json, os, stat, subprocess, sys, time
binary = sys.argv[1]
assert os.stat(binary).st_mode & stat.S_ISUID
p = subprocess.Popen([binary, 'root'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
status = {}
deadline = time.monotonic() + 3
while time.monotonic() < deadline:  # until the exec has happened, while su waits for a password
    try:
        with open(f'/proc/{p.pid}/status') as f:
            fields = dict(line.split(':', 1) for line in f)
    except OSError:
        break
    if fields['Name'].strip() == os.path.basename(binary):
        status = {k: fields[k].split() for k in ('Uid', 'Gid', 'CapEff', 'CapPrm', 'NoNewPrivs')}
        break
    time.sleep(0.01)
p.kill()
p.communicate()
mount = subprocess.run(['/usr/bin/mount', '-t', 'tmpfs', 'none', '/tmp'], capture_output=True)
print(json.dumps({'su': status, 'mount': mount.returncode, 'self': os.geteuid()}))
"""


SU = "/usr/bin/su"


@pytest.mark.skipif(
    not os.path.exists(SU) or not os.stat(SU).st_mode & stat.S_ISUID,
    reason=f"{SU} is not a setuid binary on this host",
)
async def test_setuid_binaries_give_nothing(runtime):
    """/usr/bin/su is setuid root on the host; inside (/usr nosuid, no_new_privs) euid stays."""
    binary = SU
    seen = await probe(runtime, SETUID, argv=(binary,))
    su = seen["su"]
    assert su, "su never ran"
    assert su["Uid"] == [str(JOB_UID)] * 4, su
    assert su["Gid"] == [str(JOB_UID)] * 4, su
    assert int(su["CapEff"][0], 16) == 0
    assert int(su["CapPrm"][0], 16) == 0
    assert su["NoNewPrivs"] == ["1"]
    assert seen["mount"] != 0
    assert seen["self"] == JOB_UID
    await assert_host_healthy(runtime)


WRITES = """
import errno, json, os
out = {}
for path in ('/usr/pwned', '/usr/bin/python3', '/pwned', '/etc/pwned', '/etc/passwd',
             '/proc/pwned'):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.close(fd)
        out[path] = 'opened'
    except OSError as e:
        out[path] = errno.errorcode[e.errno]
for path in ('/usr/lib', '/'):
    try:
        os.chmod(path, 0o777)
        out['chmod ' + path] = 'ok'
    except OSError as e:
        out['chmod ' + path] = errno.errorcode[e.errno]
print(json.dumps(out))
"""


async def test_job_user_cannot_write_the_system(runtime):
    """/usr is read-only, / and /etc belong to root: EROFS or EACCES for the job user."""
    seen = await probe(runtime, WRITES)
    for path in ("/usr/pwned", "/usr/bin/python3"):
        assert seen[path] in ("EROFS", "EACCES"), (path, seen)
    for path in ("/pwned", "/etc/pwned", "/etc/passwd", "/proc/pwned"):
        assert seen[path] in ("EACCES", "ENOENT"), (path, seen)
    assert seen["chmod /usr/lib"] in ("EPERM", "EROFS")
    assert seen["chmod /"] == "EPERM"
    await assert_host_healthy(runtime)


async def test_root_job_writes_stay_in_its_layer(runtime, settings):
    """A root job cannot change the image (its files are the host root's, unmapped in the
    job's user namespace) nor /usr; what it writes in / stays in its own layer."""
    image_passwd = Path("/var/lib/sandbox/images/host/rootfs/etc/passwd")
    code = (
        "import errno, json, os\n"
        "out = {}\n"
        "for path in ('/etc/passwd', '/usr/pwned', '/usr/bin/env', '/pwned'):\n"
        "    try:\n"
        "        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))\n"
        "        out[path] = 'opened'\n"
        "    except OSError as e:\n"
        "        out[path] = errno.errorcode[e.errno]\n"
        "print(json.dumps(out))\n"
    )
    host_image = image_passwd.read_bytes() if image_passwd.exists() else None
    seen = await probe(runtime, code, capabilities=("CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER"))
    assert seen.pop("/usr/bin/env") in ("EACCES", "EROFS")  # both hold; the kernel says one
    assert seen == {
        "/etc/passwd": "EACCES",
        "/usr/pwned": "EROFS",
        "/pwned": "opened",  # the container's root owns its / (in the upper layer)
    }
    if host_image is not None:
        assert image_passwd.read_bytes() == host_image
    assert not Path("/pwned").exists()
    after = await probe(runtime, "import json, os\nprint(json.dumps(os.path.exists('/pwned')))")
    assert after is False
    await assert_host_healthy(runtime)


@pytest.mark.parametrize("cap", ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_BPF"])
async def test_dangerous_capabilities_are_refused(runtime, cap):
    """Capabilities beyond Docker's default set are refused before any container is made."""
    with pytest.raises(SpecError, match=cap):
        await runtime.execute(JobSpec(code="print(1)", capabilities=[cap]))


FILE_PRIVILEGES = """
import json, os, shutil, struct, subprocess
out = {}
REPORT = "import os; s = open('/proc/self/status').read(); " \\
    "f = dict(l.split(':', 1) for l in s.splitlines()); " \\
    "print(os.geteuid(), int(f['CapEff'], 16), int(f['CapPrm'], 16))"
# A copy of python3 with the file capability CAP_SYS_ADMIN (permitted + effective).
shutil.copy('/usr/bin/python3', '/box/capped')
CAP_SYS_ADMIN = 21
try:
    os.setxattr('/box/capped', 'security.capability',
                struct.pack('<IIIII', 0x02000001, 1 << CAP_SYS_ADMIN, 0, 0, 0))
    out['setcap'] = 'ok'
except OSError as e:
    out['setcap'] = e.strerror
run = subprocess.run(['/box/capped', '-c', REPORT], capture_output=True, text=True)
out['capped'] = run.stdout.split() or run.stderr
# A setuid-root copy, run after dropping to the job user.
shutil.copy('/usr/bin/python3', '/box/suid')
os.chmod('/box/suid', 0o4755)
out['suid mode'] = oct(os.stat('/box/suid').st_mode)
def drop():
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
run = subprocess.run(['/box/suid', '-c', REPORT], capture_output=True, text=True, preexec_fn=drop)
out['suid'] = run.stdout.split() or run.stderr
print(json.dumps(out))
"""


async def test_file_capabilities_and_setuid_copies_grant_nothing(runtime):
    """A root job stamps CAP_SYS_ADMIN on a binary, or makes a setuid-root copy and drops
    to the job user: exec gains nothing (nosuid, no_new_privs, bounding set)."""
    caps = ("CAP_SETFCAP", "CAP_FOWNER", "CAP_FSETID", "CAP_SETUID", "CAP_SETGID")
    seen = await probe(
        runtime, FILE_PRIVILEGES, capabilities=caps, limits={"disk": "64M", "memory": "256M"}
    )
    euid, eff, prm = (int(v) for v in seen["capped"])
    assert not eff & (1 << 21), seen
    assert not prm & (1 << 21), seen
    assert seen["suid mode"] == "0o104755", seen
    assert [int(v) for v in seen["suid"]] == [65534, 0, 0], seen
    assert euid == 0
    await assert_host_healthy(runtime)


@pytest.mark.parametrize("image", ["..", "../host", "host/../../etc", "/", "HOST", ".hidden"])
def test_image_name_cannot_name_a_path(image):
    """The image name is a name, never a path out of the image store."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        JobSpec(code="print(1)", image=image)


MOUNTINFO = """
import json
print(json.dumps([line.split() for line in open('/proc/self/mountinfo')]))
"""


async def test_every_writable_mount_is_nosuid_nodev_and_names_no_host_path(runtime, settings):
    """What the job sees of its mounts: nothing writable carries setuid bits or device
    nodes (devpts and the bound device nodes aside), and no host path of ours shows."""
    lines = await probe(runtime, MOUNTINFO, capabilities=("CAP_CHOWN",))
    for fields in lines:
        point, options = fields[4], set(fields[5].split(","))
        fstype = fields[fields.index("-") + 1]
        assert "nosuid" in options, (point, options)
        devices = fstype == "devpts" or point in {f"/dev/{n}" for n in DEVICES}
        if "rw" in options and not devices:
            assert "nodev" in options, (point, options)
    text = " ".join(" ".join(fields) for fields in lines)
    for host_path in (str(settings.run_dir), str(settings.state_dir), "/var/lib/sandbox"):
        assert host_path not in text, host_path
    await assert_host_healthy(runtime)
