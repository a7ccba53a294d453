"""/proc and /sys as a job sees them: nothing that tells which host, or which boot.

A job walks /proc (its top level, /proc/sys, /proc/self and the other
directories that are not processes) and /sys, and reports what it can read.
The host's boot parameters (/proc/cmdline, /proc/bootconfig), kernel build
configuration (/proc/config.gz) and boot id must read empty or be absent,
and appear in nothing else it can read; there is no /sys (so no
/sys/firmware). docs/security.md, "What a job sees of /proc and /sys", says
what stays visible and why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.plan import PROC_MASKED
from tests.security.helpers import assert_host_healthy, limits, probe

pytestmark = [pytest.mark.root, pytest.mark.overlay]

NOBODY = pytest.param((), id="nobody")
# Root of its user namespace, overriding file modes there: the host's /proc stays the host's.
ROOT = pytest.param(("CAP_DAC_OVERRIDE",), id="root-dac-override")

# What the job can read: {"files": {path: text}, "dirs": {path: [names]},
# "errors": {path: errno name}}: the first 64 KiB of each regular file (and of
# each character device: a masked file is /dev/null bound over it). argv: paths
# to read besides.
WALK = """
import errno, json, os, stat, sys
files, dirs, errors = {}, {}, {}
def read(path):
    try:
        st = os.lstat(path)
    except OSError as e:
        errors[path] = errno.errorcode[e.errno]
        return
    if stat.S_ISDIR(st.st_mode):
        try:
            dirs[path] = sorted(os.listdir(path))
        except OSError as e:
            errors[path] = errno.errorcode[e.errno]
    elif stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode):
        try:
            with open(path, 'rb') as f:
                files[path] = f.read(65536).decode(errors='replace')
        except OSError as e:
            errors[path] = errno.errorcode[e.errno]
def walk(top):
    read(top)
    for parent, subdirs, names in os.walk(top):
        for name in subdirs + names:
            read(os.path.join(parent, name))
def top_level(top, skip=()):
    read(top)
    for name in dirs.get(top, []):
        if not name.isdigit() and name not in skip:
            read(os.path.join(top, name))
top_level('/proc', skip=('kmsg',))  # kmsg blocks; it is the host's log (EACCES anyway)
top_level('/proc/self')
for top in ('/proc/sys', '/proc/bus', '/proc/fs', '/proc/tty', '/proc/driver', '/proc/pressure',
            '/proc/sysvipc', '/sys'):
    walk(top)
for path in ('/proc/config.gz', '/proc/bootconfig', '/sys/firmware', *sys.argv[1:]):
    read(path)
print(json.dumps({'files': files, 'dirs': dirs, 'errors': errors}))
"""


def _host(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _empty_or_absent(seen: dict[str, dict[str, object]], path: str) -> bool:
    if path in seen["files"]:
        return seen["files"][path] == ""
    if path in seen["dirs"]:
        return seen["dirs"][path] == []
    return seen["errors"].get(path) == "ENOENT"


@pytest.mark.parametrize("capabilities", [NOBODY, ROOT])
async def test_proc_and_sys_tell_nothing_of_the_hosts_boot(runtime, capabilities):
    """/proc/cmdline, /proc/config.gz, boot_id, /sys/firmware: empty or absent, and the
    host's boot parameters and boot id in nothing the job can read."""
    seen = await probe(
        runtime,
        WALK,
        argv=PROC_MASKED,
        capabilities=capabilities,
        limits=limits(output="8M", memory="256M"),
    )
    assert len(seen["files"]) > 500, "the walk read almost nothing"  # /proc/sys alone
    for path in ("/proc/cmdline", "/proc/sys/kernel/random/boot_id", "/proc/bootconfig"):
        assert _empty_or_absent(seen, path), (path, seen["files"].get(path))
    if Path("/proc/config.gz").exists():  # only if the kernel has CONFIG_IKCONFIG_PROC
        assert _empty_or_absent(seen, "/proc/config.gz"), seen["files"].get("/proc/config.gz")
    assert _empty_or_absent(seen, "/sys/firmware")
    for path in PROC_MASKED:  # each reads empty, lists nothing, or is not there
        assert _empty_or_absent(seen, path), (path, seen["files"].get(path), seen["dirs"].get(path))
    # Nothing else carries them: not the boot id, nor the kernel command line.
    boot_id, cmdline = _host("/proc/sys/kernel/random/boot_id"), _host("/proc/cmdline")
    assert boot_id
    for path, text in seen["files"].items():
        assert boot_id not in text, f"{path} holds the host's boot id"
        if cmdline:
            assert cmdline not in text, f"{path} holds the host's kernel command line"
    await assert_host_healthy(runtime)
