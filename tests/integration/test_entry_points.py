"""execute_sync: one warm process-wide runtime, started on first use, safe across fork.

A script that calls ``execute_sync`` in a loop pays a warm job's cost each
time, not a runtime's start; a forked child gets a runtime of its own and
never touches its parent's containers.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sandbox import JobSpec, Status
from sandbox.runtime import shared
from tests.conftest import TEST_SETTINGS

pytestmark = [pytest.mark.root, pytest.mark.overlay]

TRUE = JobSpec(code="exec /bin/true\n", language="sh")


@pytest.fixture
def background(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process-wide runtime, on the test's run dir and cgroup parent; closed after."""
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(TEST_SETTINGS.run_dir))
    monkeypatch.setenv("SANDBOX_CGROUP_PARENT", TEST_SETTINGS.cgroup_parent)
    assert shared._background is None
    yield
    if shared._background is not None:
        shared._background.stop()
        shared._background = None


def _settle() -> None:
    """Let the background runtime finish its teardowns and refills (a pause between calls)."""
    bg = shared._background
    assert bg is not None
    bg.call(lambda runtime: runtime.pool_settled())


def test_execute_sync_reuses_one_warm_runtime(background):
    first = shared.execute_sync(TRUE)
    assert first.status is Status.OK, first
    rt = shared._background.runtime if shared._background else None
    assert rt is not None
    for _ in range(5):
        _settle()
        assert shared.execute_sync(TRUE).status is Status.OK
    assert shared._background is not None
    assert shared._background.runtime is rt
    stats = rt.pool_stats()
    assert stats is not None
    assert stats.hits == 5  # the pool built ahead served every later call


def test_a_forked_child_gets_a_runtime_of_its_own(background):
    assert shared.execute_sync(TRUE).status is Status.OK
    parent = shared._background
    assert parent is not None
    assert parent.runtime is not None
    theirs = parent.runtime.launcher_pid
    pid = os.fork()
    if pid == 0:  # the child: a fresh runtime, its own launcher; then exit cleanly
        code = 1
        try:
            result = shared.execute_sync(JobSpec(code="print(2)"))
            own = shared._background  # the parent's was forgotten at the fork
            if own is not None and own.runtime is not None:
                ok = own is not parent and own.runtime.launcher_pid != theirs
                code = 0 if ok and result.stdout == "2\n" else 1
                own.stop()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    again = shared.execute_sync(TRUE)  # the parent's runtime is untouched
    assert again.status is Status.OK, again
    assert shared._background is parent


EXITS_WITHOUT_STOP = """
from sandbox import JobSpec
from sandbox.runtime.shared import RuntimeThread
host = RuntimeThread()  # as worker.runtime.runtime_host() makes one
for _ in range(3):
    assert host.execute(JobSpec(code="exec /bin/true", language="sh")).exit_code == 0
print(host.runtime.owner)
"""


def test_a_runtime_thread_is_stopped_at_exit():
    """A process that never calls stop() leaves no container or cgroup of its
    runtime behind (nothing for the next start to reclaim)."""
    parent = f"{TEST_SETTINGS.cgroup_parent}-exit"
    env = {**os.environ, "SANDBOX_RUN_DIR": str(TEST_SETTINGS.run_dir)}
    env["SANDBOX_CGROUP_PARENT"] = parent
    out = subprocess.run(
        [sys.executable, "-c", EXITS_WITHOUT_STOP], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    owner = out.stdout.strip()
    root = TEST_SETTINGS.cgroup_root
    left = [*root.glob(f"*/{parent}/{owner}*"), *root.glob(f"{parent}/{owner}*")]
    for path in [*root.glob(f"*/{parent}"), root / parent]:
        with contextlib.suppress(OSError):
            path.rmdir()
    assert left == []
