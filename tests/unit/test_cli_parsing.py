"""``sandbox run`` without running anything: parsing, the JobSpec it builds, exit codes.

``sandbox.runtime.shared.execute_sync`` is replaced for every test here: either by a
guard that fails the test (a usage error must stop before any job), or by a
fake that records the spec and returns a canned result.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.errors import SpecError, UnsupportedError
from sandbox.result import JobResult, Status
from sandbox.runtime import shared
from sandbox.spec import JobSpec, Limits

RUN_FLAGS = (
    "--lang",
    "--image",
    "--stdin",
    "--memory",
    "--pids",
    "--time",
    "--cpu-time",
    "--cpus",
    "--output",
    "--disk",
    "--open-files",
    "--cap",
    "--env",
    "--network",
    "--seccomp-profile",
    "--json",
)


def _exit_code(argv: list[str]) -> int:
    """main()'s status, whether returned or raised as SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        code = exc.code
    assert isinstance(code, int)
    return code


@pytest.fixture
def no_job(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(spec: JobSpec, **_: object) -> JobResult:
        pytest.fail(f"a job was run: {spec!r}")

    monkeypatch.setattr(shared, "execute_sync", refuse)


@pytest.fixture
def specs(monkeypatch: pytest.MonkeyPatch) -> Callable[[JobResult | Exception], list[JobSpec]]:
    """Make execute_sync return (or raise) the given outcome; returns the specs it saw."""

    def install(outcome: JobResult | Exception) -> list[JobSpec]:
        seen: list[JobSpec] = []

        def fake(spec: JobSpec, **_: object) -> JobResult:
            seen.append(spec)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        monkeypatch.setattr(shared, "execute_sync", fake)
        return seen

    return install


@pytest.fixture
def prog(tmp_path: Path) -> Path:
    path = tmp_path / "prog.py"
    path.write_text("print(1)\n")
    return path


# -- help and usage errors -----------------------------------------------------


def test_run_help(capsys: pytest.CaptureFixture[str]):
    assert _exit_code(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in RUN_FLAGS:
        assert flag in out, flag
    assert "FILE" in out


def test_top_level_help_lists_the_commands(capsys: pytest.CaptureFixture[str]):
    assert _exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "doctor", "image", "pool", "gc"):
        assert command in out


@pytest.mark.usefixtures("no_job")
@pytest.mark.parametrize(
    "argv", [[], ["run"], ["launch", "x.py"], ["run", "--lang", "cobol", "x.py"], ["run", "--pids"]]
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]):
    assert _exit_code(argv) == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.usefixtures("no_job")
def test_missing_source_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    missing = tmp_path / "does-not-exist.py"
    assert _exit_code(["run", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "source file" in err


@pytest.mark.usefixtures("no_job")
def test_missing_stdin_file(prog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    missing = tmp_path / "input.txt"
    assert _exit_code(["run", "--stdin", str(missing), str(prog)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "stdin file" in err


@pytest.mark.usefixtures("no_job")
@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--memory", "lots"], "limits.memory"),
        (["--memory", "1M"], "limits.memory"),
        (["--time", "0"], "limits.wall_time"),
        (["--cpu-time", "-1"], "limits.cpu_time"),
        (["--pids", "0"], "limits.pids"),
        (["--output", "1X"], "limits.output"),
        (["--disk", "1K"], "limits.disk"),
        (["--open-files", "1"], "limits.open_files"),
        (["--image", "Not/An/Image"], "image"),
        (["--env", "1X=y"], "env"),
    ],
)
def test_invalid_values_name_the_field(
    flags: list[str], field: str, prog: Path, capsys: pytest.CaptureFixture[str]
):
    assert _exit_code(["run", *flags, str(prog)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sandbox: invalid {field}:")


# -- the spec it builds ----------------------------------------------------------


def test_every_flag_reaches_the_spec(specs, tmp_path: Path):
    seen = specs(JobResult(status=Status.OK, exit_code=0))
    source = tmp_path / "job.sh"
    source.write_text("echo hi\n")
    stdin = tmp_path / "in.txt"
    stdin.write_bytes(b"line\n\xff")
    argv = [
        "run",
        "--memory", "64M",
        "--pids", "8",
        "--time", "2.5",
        "--cpu-time", "1",
        "--cpus", "0.5",
        "--output", "1K",
        "--disk", "2M",
        "--open-files", "32",
        "--cap", "net_bind_service",
        "--cap", "CAP_CHOWN",
        "--env", "A=1=2",
        "--env", "B=",
        "--network",
        "--seccomp-profile", "strict",
        "--image", "busybox",
        "--stdin", str(stdin),
        str(source), "x", "--not-ours",
    ]  # fmt: skip
    assert _exit_code(argv) == 0
    assert seen == [
        JobSpec(
            code="echo hi\n",
            language="sh",
            image="busybox",
            stdin="line\n\ufffd",
            argv=("x", "--not-ours"),
            env={"A": "1=2", "B": ""},
            limits=Limits(
                memory=64 * 2**20,
                pids=8,
                wall_time=2.5,
                cpu_time=1,
                cpus=0.5,
                output=1024,
                disk=2 * 2**20,
                open_files=32,
            ),
            capabilities=frozenset({"CAP_NET_BIND_SERVICE", "CAP_CHOWN"}),
            network=True,
            seccomp_profile="strict",
        )
    ]


@pytest.mark.parametrize(
    ("name", "flags", "language"),
    [
        ("a.py", [], "python"),
        ("a.sh", [], "sh"),
        ("a.txt", [], "python"),
        ("a.py", ["--lang", "sh"], "sh"),
    ],
)
def test_language_from_the_extension_or_the_flag(
    specs, tmp_path: Path, name: str, flags: list[str], language: str
):
    seen = specs(JobResult(status=Status.OK, exit_code=0))
    (tmp_path / name).write_text("")
    assert _exit_code(["run", *flags, str(tmp_path / name)]) == 0
    assert seen[0].language == language


def test_options_after_the_file_belong_to_the_program(specs, prog: Path):
    seen = specs(JobResult(status=Status.OK, exit_code=0))
    assert _exit_code(["run", str(prog), "--memory", "1G"]) == 0
    assert seen[0].argv == ("--memory", "1G")
    assert seen[0].limits == Limits()


def test_source_from_stdin(specs, monkeypatch: pytest.MonkeyPatch):
    seen = specs(JobResult(status=Status.OK, exit_code=0))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"print('piped')\n")))
    assert _exit_code(["run", "-"]) == 0
    assert (seen[0].code, seen[0].language) == ("print('piped')\n", "python")


# -- exit codes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (JobResult(status=Status.OK, exit_code=0), 0),
        (JobResult(status=Status.RUNTIME_ERROR, exit_code=3), 3),
        (JobResult(status=Status.RUNTIME_ERROR, signal=9), 137),
        (JobResult(status=Status.TIMEOUT, signal=9, timed_out=True), 124),
        (JobResult(status=Status.MEMORY_LIMIT, signal=9, oom_killed=True), 137),
    ],
)
def test_exit_code_follows_the_result(specs, prog: Path, result: JobResult, code: int):
    specs(result)
    assert _exit_code(["run", str(prog)]) == code


def test_output_is_passed_through(specs, prog: Path, capsys: pytest.CaptureFixture[str]):
    specs(JobResult(status=Status.OK, exit_code=0, stdout="out\n", stderr="err\n"))
    assert _exit_code(["run", str(prog)]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("out\n", "err\n")


def test_limits_hit_are_reported_on_stderr(specs, prog: Path, capsys: pytest.CaptureFixture[str]):
    specs(JobResult(status=Status.TIMEOUT, timed_out=True, wall_time=1.5))
    assert _exit_code(["run", str(prog)]) == 124
    assert "time limit exceeded" in capsys.readouterr().err
    specs(JobResult(status=Status.MEMORY_LIMIT, oom_killed=True, memory_peak=99, signal=9))
    _exit_code(["run", str(prog)])
    assert "memory limit exceeded (peak 99 bytes)" in capsys.readouterr().err


def test_json_prints_the_result_and_exits_0(specs, prog: Path, capsys: pytest.CaptureFixture[str]):
    result = JobResult(status=Status.RUNTIME_ERROR, exit_code=1, stdout="x")
    specs(result)
    assert _exit_code(["run", "--json", str(prog)]) == 0
    assert JobResult.model_validate_json(capsys.readouterr().out) == result


def test_a_refused_spec_is_a_usage_error(specs, prog: Path, capsys: pytest.CaptureFixture[str]):
    specs(SpecError("limits.memory too big (set SANDBOX_MAX_MEMORY)", field="limits.memory"))
    assert _exit_code(["run", str(prog)]) == 2
    assert "limits.memory" in capsys.readouterr().err


def test_a_sandbox_failure_is_125(specs, prog: Path, capsys: pytest.CaptureFixture[str]):
    specs(UnsupportedError("no overlayfs", hint="modprobe overlay"))
    assert _exit_code(["run", str(prog)]) == 125
    assert "no overlayfs: modprobe overlay" in capsys.readouterr().err


def test_a_sandbox_failure_in_json_is_an_internal_error_result(
    specs, prog: Path, capsys: pytest.CaptureFixture[str]
):
    specs(UnsupportedError("no overlayfs"))
    assert _exit_code(["run", "--json", str(prog)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["status"], printed["error"]) == ("internal_error", "no overlayfs")
