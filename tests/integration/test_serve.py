"""`sandbox serve`: `sandbox run` hands its job to a resident warm runtime.

A real server process and real `sandbox run` clients: the client parses
nothing and imports no pydantic, the server runs the job exactly as the
command would have (files relative to the client's directory, `-` from its
stdin, its exit status, its stdout and stderr), and without a server the
command runs the job itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.paths import serve_socket
from tests.conftest import TEST_SETTINGS

pytestmark = [pytest.mark.root, pytest.mark.overlay]

ENV = {
    **os.environ,
    "SANDBOX_RUN_DIR": str(TEST_SETTINGS.run_dir),
    "SANDBOX_CGROUP_PARENT": TEST_SETTINGS.cgroup_parent,
    "SANDBOX_POOL_SIZE": "1",
}
# The client as the console script runs it, reporting what heavy modules it loaded.
CLIENT = (
    "import sys\nfrom sandbox.cli import main\ncode = main(sys.argv[1:])\n"
    "sys.stderr.write('pydantic loaded\\n' if 'pydantic' in sys.modules else '')\n"
    "sys.stderr.write('socket loaded\\n' if 'socket' in sys.modules else '')\nsys.exit(code)"
)


def _client(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLIENT, "run", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )


@pytest.fixture
def server() -> Iterator[subprocess.Popen[str]]:
    socket_path = serve_socket(TEST_SETTINGS.run_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve"],
        env=ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not os.path.exists(socket_path):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "sandbox serve did not listen"
        time.sleep(0.05)
    yield proc
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    if proc.stderr:
        proc.stderr.close()
    assert not os.path.exists(socket_path), "the server left its socket"


def test_run_goes_through_the_server(server, tmp_path: Path):
    (tmp_path / "prog.sh").write_text('echo "out $1"; echo err >&2; exit 3\n')
    done = _client("--lang", "sh", "prog.sh", "A", cwd=tmp_path)  # relative to the client
    assert done.returncode == 3, done.stderr
    assert done.stdout == "out A\n"
    assert "err\n" in done.stderr
    assert "pydantic loaded" not in done.stderr  # the client only forwarded
    assert "socket loaded" not in done.stderr  # with _socket: no enum, selectors...


def test_code_and_input_from_the_clients_stdin(server, tmp_path: Path):
    (tmp_path / "in.txt").write_text("2 3\n")
    code = "print(sum(map(int, input().split())))\n"
    done = _client("--stdin", "in.txt", "-", cwd=tmp_path, stdin=code)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "5\n"
    as_json = _client("--json", "--memory", "64M", "-", cwd=tmp_path, stdin="print(1)")
    result = json.loads(as_json.stdout)
    assert result["status"] == "ok"
    assert result["stdout"] == "1\n"


def test_bad_usage_is_reported_to_the_client(server, tmp_path: Path):
    unknown = _client("--lang", "cobol", "x.cob", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown language" in unknown.stderr
    missing = _client("nowhere.py", cwd=tmp_path)
    assert missing.returncode == 2
    assert "cannot read source file nowhere.py" in missing.stderr
    refused = _client("--memory", "1000G", "-", cwd=tmp_path, stdin="print(1)")
    assert refused.returncode == 2
    assert "SANDBOX_MAX_MEMORY" in refused.stderr
    assert server.poll() is None  # the server lives on


def test_without_a_server_run_runs_the_job_itself(tmp_path: Path):
    assert not os.path.exists(serve_socket(TEST_SETTINGS.run_dir))
    done = _client("-", cwd=tmp_path, stdin="print('alone')")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "alone\n"
    assert "pydantic loaded" in done.stderr
