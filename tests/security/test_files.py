"""Collected files: a job that plants links or special files gets nothing of the host."""

from __future__ import annotations

import pytest

from sandbox import JobSpec, Status
from tests.security.helpers import assert_host_healthy, limits

pytestmark = [pytest.mark.root, pytest.mark.overlay]

PLANT = """
import os
os.symlink('/etc/shadow', 'shadow')
os.symlink('/proc/1/root/etc/hostname', 'magic')
os.symlink('../../../../../../etc/passwd', 'dotdot')
os.mkfifo('fifo')
os.mkdir('dir')
os.link('/box/main.py', 'hard')
"""


@pytest.mark.parametrize(
    "capabilities", [pytest.param((), id="nobody"), pytest.param(("CAP_CHOWN",), id="root")]
)
async def test_planted_links_and_special_files_are_refused(runtime, capabilities):
    """Symlinks resolve inside the container (and are not followed at all), a FIFO does
    not hang the supervisor, a directory is not a file; a hard link is the job's own."""
    names = ("shadow", "magic", "dotdot", "fifo", "dir", "hard")
    result = await runtime.execute(
        JobSpec(code=PLANT, collect=names, capabilities=capabilities, limits=limits())
    )
    assert result.status is Status.OK, result
    assert set(result.files) == {"hard"}
    assert result.files["hard"].data().decode() == PLANT
    for name in ("shadow", "magic", "dotdot"):
        assert "unreadable" in result.files_skipped[name], result.files_skipped
    assert result.files_skipped["fifo"] == "not a regular file"
    assert result.files_skipped["dir"] == "not a regular file"
    await assert_host_healthy(runtime)


async def test_a_root_job_that_replaces_its_workdir_by_a_link_gets_its_own_files(runtime):
    code = "import os\nos.unlink('/box/main.py')\nos.rmdir('/box')\nos.symlink('/etc', '/box')\n"
    result = await runtime.execute(
        JobSpec(code=code, collect=("shadow", "passwd"), capabilities=("CAP_CHOWN",))
    )
    assert result.status is Status.OK, result
    with open("/etc/passwd", "rb") as host:
        host_passwd = host.read()
    for name, file in result.files.items():  # the image's /etc, never the host's
        assert file.data() != host_passwd, name
    await assert_host_healthy(runtime)
