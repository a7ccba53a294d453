"""The ``sandbox`` command end to end, as a user runs it (a subprocess).

The command runs with the test settings (``SANDBOX_RUN_DIR``,
``SANDBOX_CGROUP_PARENT``) so the leak check sees its cgroups, and with a
marker variable in its environment that the job must not see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import JobResult

pytestmark = [pytest.mark.root, pytest.mark.overlay]

SANDBOX = str(Path(sys.executable).with_name("sandbox"))
SECRET = "cli-worker-secret"


@pytest.fixture
def cli(settings, tmp_path):
    """Run ``sandbox ARGS...`` in ``tmp_path``; return the completed process."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SANDBOX_RUN_DIR": str(settings.run_dir),
        "SANDBOX_CGROUP_PARENT": settings.cgroup_parent,
        "WORKER_SECRET": SECRET,
    }

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SANDBOX, *args],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=env,
        )

    return run


def test_run_prints_and_exits_with_the_programs_code(cli, tmp_path):
    """`sandbox run hello.py` prints what the program prints and exits with its code."""
    (tmp_path / "hello.py").write_text(
        "import sys\nprint('hello from the box')\nprint('oops', file=sys.stderr)\nsys.exit(7)\n"
    )
    proc = cli("run", "hello.py")
    assert proc.stdout == "hello from the box\n"
    assert "oops" in proc.stderr
    assert proc.returncode == 7


def test_run_success_exits_0(cli, tmp_path):
    """A program that succeeds gives exit code 0 and only its own output."""
    (tmp_path / "ok.py").write_text("print(6 * 7)\n")
    proc = cli("run", "ok.py")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "42\n", "")


def test_run_passes_arguments(cli, tmp_path):
    """Arguments after the file reach the program's argv."""
    (tmp_path / "args.py").write_text("import sys\nprint(sys.argv[1:])\n")
    proc = cli("run", "args.py", "one", "--two")
    assert proc.stdout == "['one', '--two']\n", proc.stderr


def test_run_json_on_failure(cli, tmp_path):
    """--json prints one JobResult object and exits 0 though the program failed."""
    (tmp_path / "fail.py").write_text("import sys\nprint('partial')\nsys.exit(3)\n")
    proc = cli("run", "--json", "fail.py")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == set(JobResult.model_fields)
    result = JobResult.model_validate(data)
    assert result.status == "runtime_error"
    assert result.exit_code == 3
    assert result.stdout == "partial\n"


def test_run_json_with_limits(cli, tmp_path):
    """The issue's example: --json --memory 64M --pids 16 --time 2 on a balloon."""
    (tmp_path / "bomb.py").write_text("x = bytearray(256 * 2**20)\n")
    proc = cli("run", "--json", "--memory", "64M", "--pids", "16", "--time", "2", "bomb.py")
    assert proc.returncode == 0, proc.stderr
    result = JobResult.model_validate_json(proc.stdout)
    assert result.status == "memory_limit"
    assert result.oom_killed


def test_run_code_from_stdin_with_input_file(cli, tmp_path):
    """`cat prog.py | sandbox run --stdin input.txt -`: code from stdin, input from the file."""
    (tmp_path / "input.txt").write_text("3\n4\n")
    prog = "import sys\nprint(sum(int(line) for line in sys.stdin))\n"
    proc = cli("run", "--stdin", "input.txt", "-", stdin=prog)
    assert (proc.returncode, proc.stdout) == (0, "7\n"), proc.stderr


def test_run_lang_sh(cli, tmp_path):
    """`sandbox run --lang sh script.sh` runs the file with /bin/sh."""
    (tmp_path / "script.sh").write_text('echo "sh says $((6 * 7))"\nexit 5\n')
    proc = cli("run", "--lang", "sh", "script.sh")
    assert (proc.returncode, proc.stdout) == (5, "sh says 42\n"), proc.stderr


def test_run_lang_sh_overrides_the_extension(cli, tmp_path):
    """--lang wins over the file name: a .txt file runs as sh."""
    (tmp_path / "script.txt").write_text("echo $0\n")
    proc = cli("run", "--lang", "sh", "script.txt")
    assert (proc.returncode, proc.stdout) == (0, "main.sh\n"), proc.stderr


def test_run_does_not_leak_the_worker_environment(cli, tmp_path):
    """Variables of the `sandbox` process do not reach the job; --env ones do."""
    (tmp_path / "env.py").write_text("import os\nprint(sorted(os.environ.items()))\n")
    proc = cli("run", "--env", "MINE=1", "env.py")
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout
    assert "SANDBOX_RUN_DIR" not in proc.stdout
    assert "('MINE', '1')" in proc.stdout


def test_run_timeout_exit_code(cli, tmp_path):
    """Without --json, a wall-time kill exits 124 and says so on stderr."""
    (tmp_path / "sleep.py").write_text("import time\ntime.sleep(60)\n")
    proc = cli("run", "--time", "0.5", "sleep.py")
    assert proc.returncode == 124
    assert "time limit" in proc.stderr


def test_run_signal_exit_code(cli, tmp_path):
    """Without --json, death by signal N exits 128+N, like a shell."""
    (tmp_path / "segv.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    proc = cli("run", "segv.py")
    assert proc.returncode == 128 + 11


def test_run_missing_file_is_a_usage_error(cli):
    """A code file that does not exist gives exit 2 and a message naming it."""
    proc = cli("run", "nonexistent.py")
    assert proc.returncode == 2
    assert "nonexistent.py" in proc.stderr


def test_doctor(cli):
    """`sandbox doctor` passes on this host and ends with its verdict."""
    proc = cli("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "this host can run sandboxes" in proc.stdout


def test_doctor_json(cli):
    """`sandbox doctor --json` prints parseable findings, all ok, including a real job."""
    proc = cli("doctor", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True
    names = {check["name"] for check in data["checks"]}
    assert {"root", "namespaces", "overlayfs", "cgroups", "container"} <= names
    assert all(check["ok"] for check in data["checks"])
