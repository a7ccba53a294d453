"""Host-level failure paths: a host that cannot sandbox, and a killed supervisor."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from sandbox.errors import UnsupportedError
from sandbox.runtime.runner import Runtime
from sandbox.settings import Settings

pytestmark = [pytest.mark.root, pytest.mark.overlay]

SANDBOX = str(Path(sys.executable).with_name("sandbox"))


def test_not_root_is_refused_clearly(tmp_path):
    """Run as nobody, `sandbox run` says to run as root, exits 125, leaves nothing."""
    # pytest's tmp_path sits in a root-only directory; nobody must read the program.
    public = Path(tempfile.mkdtemp(dir="/tmp"))
    public.chmod(0o755)
    prog = public / "hello.py"
    prog.write_text("print(1)\n")
    prog.chmod(0o644)
    try:
        proc = _run_as_nobody(prog, tmp_path)
    finally:
        shutil.rmtree(public)
    assert proc.returncode == 125
    assert "root" in proc.stderr
    assert "sudo" in proc.stderr
    assert not (tmp_path / "run").exists()


def _run_as_nobody(prog: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SANDBOX, "run", str(prog)],
        user=65534,
        group=65534,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "SANDBOX_RUN_DIR": str(tmp_path / "run")},
    )


def test_no_cgroup_filesystem_is_refused(tmp_path):
    """A cgroup root that is not cgroupfs gives UnsupportedError with a hint."""
    settings = Settings(run_dir=tmp_path / "run", cgroup_root=tmp_path, cgroup_parent="t")
    with pytest.raises(UnsupportedError, match="cgroup") as info:
        Runtime(settings).open()
    assert info.value.hint


def _cgroup_pids(settings: Settings, owner_pid: int) -> set[int]:
    """Pids in the cgroups of the runtime that ``owner_pid`` runs (names ``<pid>-<id>.<n>``)."""
    pids: set[int] = set()
    for pattern in (f"*/{settings.cgroup_parent}", settings.cgroup_parent):
        for procs in settings.cgroup_root.glob(f"{pattern}/{owner_pid}-*/job/cgroup.procs"):
            pids.update(int(p) for p in procs.read_text().split())
    return pids


def _cgroup_dirs(settings: Settings) -> list[Path]:
    dirs = list(settings.cgroup_root.glob(f"*/{settings.cgroup_parent}/*/"))
    dirs += settings.cgroup_root.glob(f"{settings.cgroup_parent}/*/")
    return dirs


def _supervisor(settings: Settings) -> subprocess.Popen[bytes]:
    """A supervisor (a runtime of its own process) running one 60 s job."""
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from sandbox import JobSpec, Limits, Runtime, Settings
        settings = Settings(run_dir=Path({str(settings.run_dir)!r}),
                            cgroup_parent={settings.cgroup_parent!r})
        async def main():
            async with Runtime(settings) as rt:
                await rt.execute(JobSpec(code="import time; time.sleep(60)",
                                         limits=Limits(wall_time=60, cpu_time=60)))
        asyncio.run(main())
        """
    )
    return subprocess.Popen([sys.executable, "-c", script])


@pytest.mark.slow
def test_killed_supervisor_leaves_nothing_after_reclaim(settings):
    """SIGKILL a supervisor mid-job: its container dies, the next start reclaims the rest."""
    before = set(_cgroup_dirs(settings))
    proc = _supervisor(settings)
    try:
        deadline = time.monotonic() + 30
        # Running: its record is written. (Its cgroup has a process sooner:
        # the job's process joins it while the container is built.)
        while not (
            _cgroup_pids(settings, proc.pid)
            and list((settings.run_dir / "jobs").glob(f"{proc.pid}-*.json"))
        ):
            assert time.monotonic() < deadline, "the job never started"
            assert proc.poll() is None, "the supervisor died early"
            time.sleep(0.05)
        job_pids = _cgroup_pids(settings, proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in job_pids):
            assert time.monotonic() < deadline, "the job outlived its supervisor"
            time.sleep(0.05)
        leftover = set(_cgroup_dirs(settings)) - before
        assert leftover, "expected the dead supervisor's cgroups to be left for reclaim"
        env = {
            **os.environ,
            "SANDBOX_RUN_DIR": str(settings.run_dir),
            "SANDBOX_CGROUP_PARENT": settings.cgroup_parent,
        }
        # Its job's record is stale: `sandbox ps` does not show it, gc removes it.
        records = [p.stem for p in (settings.run_dir / "jobs").glob(f"{proc.pid}-*.json")]
        assert len(records) == 1
        ps = subprocess.run(
            [SANDBOX, "ps", "--json"], capture_output=True, text=True, env=env, check=True
        )
        assert records[0] not in {row["job"] for row in json.loads(ps.stdout)}
        out = subprocess.run(
            [SANDBOX, "gc", "--json"], capture_output=True, text=True, env=env, check=True
        )
        report = json.loads(out.stdout)
        assert report["errors"] == []
        assert report["job_records"] == records
        assert not list((settings.run_dir / "jobs").glob(f"{proc.pid}-*"))
        assert {name.split(".")[0] for name in report["cgroups"]} == {
            p.name.split(".")[0] for p in leftover
        }
        assert set(_cgroup_dirs(settings)) - before == set()
        owners = settings.run_dir / "owners"
        assert not any(p.name.startswith(f"{proc.pid}-") for p in owners.iterdir())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_gc_of_another_run_dir_leaves_a_live_runtimes_jobs_alone(settings, tmp_path):
    """Two runtimes share a cgroup parent but not a run dir (containers with a tmpfs each,
    one host's cgroup tree): the other one's gc, as every runtime runs at start, finds
    no owner lock for the live runtime's cgroups. They are left alone and reported,
    never taken for a dead runtime's: its job runs on. Its own run dir's gc reclaims
    them once it is dead."""
    proc = _supervisor(settings)
    env = {**os.environ, "SANDBOX_CGROUP_PARENT": settings.cgroup_parent}
    try:
        deadline = time.monotonic() + 30
        while not _cgroup_pids(settings, proc.pid):
            assert time.monotonic() < deadline, "the job never started"
            assert proc.poll() is None, "the supervisor died early"
            time.sleep(0.05)
        job_pids = _cgroup_pids(settings, proc.pid)
        other = {**env, "SANDBOX_RUN_DIR": str(tmp_path / "other-run")}
        out = subprocess.run([SANDBOX, "gc", "--json"], capture_output=True, text=True,
                             env=other, check=True)  # fmt: skip
        report = json.loads(out.stdout)
        assert report["cgroups"] == [], report
        assert any(name.startswith(f"{proc.pid}-") for name in report["foreign"]), report
        assert "must share SANDBOX_RUN_DIR" in out.stderr
        time.sleep(0.5)
        assert all(Path(f"/proc/{pid}").exists() for pid in job_pids), "the live job was ended"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    ours = {**env, "SANDBOX_RUN_DIR": str(settings.run_dir)}
    out = subprocess.run([SANDBOX, "gc", "--json"], capture_output=True, text=True,
                         env=ours, check=True)  # fmt: skip
    report = json.loads(out.stdout)
    assert any(name.startswith(f"{proc.pid}-") for name in report["cgroups"]), report
    assert not list((settings.run_dir / "owners").glob(f"{proc.pid}-*"))  # its lock went last
    shutil.rmtree(tmp_path / "other-run", ignore_errors=True)


def test_a_runtime_that_closes_with_a_cgroup_left_keeps_its_lock_file_for_gc(settings):
    """A job's cgroup still there as its runtime closes (a pool process ended mid-job):
    the owner's lock file stays, free, so gc knows a dead runtime's cgroup and
    reclaims it; without it the cgroup would look like another run dir's."""
    from sandbox.kernel.cgroups import detect_setup
    from sandbox.runtime.reclaim import collect

    runtime = Runtime(settings, pool_size=0)
    runtime.open()
    owner = runtime.owner
    left = detect_setup(settings.cgroup_root, settings.cgroup_parent).create(f"{owner}.99")
    runtime.close()
    lock = settings.run_dir / "owners" / f"{owner}.lock"
    assert lock.exists()
    report = collect(settings)
    assert f"{owner}.99" in report.cgroups, report
    assert not lock.exists()
    del left
