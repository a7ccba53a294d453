"""The walk-through's two capability facts, and their positive counterparts.

A job that asks for capabilities runs as root inside with exactly those
capabilities (like ``docker run --cap-drop ALL --cap-add ...``): being uid 0
grants nothing the capability sets do not.
"""

from __future__ import annotations

import pytest

from sandbox import JobSpec, Runtime, Status
from tests.security.helpers import assert_host_healthy

pytestmark = [pytest.mark.root, pytest.mark.overlay]

CHOWN = """
import errno, os
open('/box/file', 'w').close()
try:
    os.chown('/box/file', 65534, 65534)
    st = os.stat('/box/file')
    print('chowned', st.st_uid, st.st_gid)
except OSError as e:
    print(errno.errorcode[e.errno])
"""

BIND_80 = """
import errno, socket
s = socket.socket()
try:
    s.bind(('127.0.0.1', 80))
    s.listen()
    print('bound', s.getsockname()[1])
except OSError as e:
    print(errno.errorcode[e.errno])
"""

STATUS = """
import os
print(os.getuid(), os.getgid())
print(open('/proc/self/status').read())
"""


async def _run(runtime: Runtime, code: str, caps: list[str]) -> str:
    result = await runtime.execute(JobSpec(code=code, capabilities=caps))
    assert result.status is Status.OK, result
    await assert_host_healthy(runtime)
    return result.stdout


async def test_chown_without_cap_chown_is_eperm_even_as_root(runtime):
    """Root inside, holding only CAP_NET_BIND_SERVICE: chown of its own file is EPERM."""
    assert await _run(runtime, CHOWN, ["CAP_NET_BIND_SERVICE"]) == "EPERM\n"


async def test_chown_with_cap_chown_succeeds(runtime):
    """With CAP_CHOWN the same chown works."""
    assert await _run(runtime, CHOWN, ["CAP_CHOWN"]) == "chowned 65534 65534\n"


async def test_bind_80_without_cap_net_bind_service_is_eacces(runtime):
    """Root inside, holding only CAP_CHOWN: binding port 80 is EACCES."""
    assert await _run(runtime, BIND_80, ["CAP_CHOWN"]) == "EACCES\n"


async def test_bind_80_with_cap_net_bind_service_succeeds(runtime):
    """With CAP_NET_BIND_SERVICE the job binds port 80 (in its own network namespace)."""
    assert await _run(runtime, BIND_80, ["CAP_NET_BIND_SERVICE"]) == "bound 80\n"


async def test_unprivileged_job_cannot_bind_80_or_chown(runtime):
    """The default job (uid 65534, no capabilities) can do neither."""
    assert await _run(runtime, BIND_80, []) == "EACCES\n"
    # /box is the job's own; chown to another user still needs CAP_CHOWN.
    code = CHOWN.replace("65534, 65534", "0, 0")
    assert await _run(runtime, code, []) == "EPERM\n"


@pytest.mark.parametrize(
    ("caps", "want"),
    [
        # Bit numbers from linux/capability.h.
        pytest.param(["CAP_NET_BIND_SERVICE"], 1 << 10, id="net_bind_service"),
        pytest.param(["CAP_CHOWN"], 1 << 0, id="chown"),
        pytest.param(["chown", "CAP_KILL", "cap_setuid"], 1 | 1 << 5 | 1 << 7, id="mixed-case"),
    ],
)
async def test_cap_sets_equal_the_granted_set(runtime, caps, want):
    """Root inside; effective, permitted and bounding sets are exactly the grant, no ambient."""
    out = await _run(runtime, STATUS, caps)
    ids, status = out.split("\n", 1)
    assert ids == "0 0"
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert int(fields["CapEff"], 16) == want
    assert int(fields["CapPrm"], 16) == want
    assert int(fields["CapBnd"], 16) == want
    assert int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"


async def test_inheritable_set_is_empty_with_grants(runtime):
    """Granted capabilities are not put in the inheritable set.

    Docker and runc keep CapInh empty since CVE-2022-24769: an inheritable
    capability would be passed to a program with matching file capabilities
    across execve. The issue asks for "only the named capabilities", held as
    effective/permitted/bounding; nothing needs them inheritable.
    """
    out = await _run(runtime, STATUS, ["CAP_NET_BIND_SERVICE"])
    fields = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert int(fields["CapInh"], 16) == 0


async def test_root_job_cannot_write_host_kernel_settings(runtime):
    """Root inside without CAP_SYS_ADMIN cannot open host-wide /proc knobs for writing.

    uid 0 passes the DAC check on /proc/sys files (mode 0644, owner root) and
    most sysctl handlers check no capability, so /proc/sys must be read-only
    (as runc and Docker mount it). Only open() is tried: nothing is written.
    """
    code = (
        "import errno, os\n"
        "for path in ('/proc/sys/kernel/core_pattern', '/proc/sys/vm/drop_caches',\n"
        "             '/proc/sysrq-trigger'):\n"
        "    try:\n"
        "        os.close(os.open(path, os.O_WRONLY))\n"
        "        print(path, 'OPEN')\n"
        "    except OSError as e:\n"
        "        print(path, errno.errorcode[e.errno])\n"
    )
    out = await _run(runtime, code, ["CAP_NET_BIND_SERVICE"])
    opened = [line for line in out.splitlines() if line.endswith(" OPEN")]
    assert opened == []
