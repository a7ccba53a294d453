"""The package's surface: exported names, cheap imports, the CLI's usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sandbox
from sandbox.cli import main
from sandbox.errors import (
    CgroupError,
    MountError,
    SandboxError,
    SetupError,
    SpecError,
    setup_error_for,
)


def test_every_exported_name_resolves():
    for name in sandbox.__all__:
        assert getattr(sandbox, name) is not None, name
    assert {"JobSpec", "JobResult", "execute", "execute_sync", "Runtime"} <= set(sandbox.__all__)
    with pytest.raises(AttributeError):
        _ = sandbox.nothing_here


@pytest.mark.parametrize(
    ("module", "absent"),
    [("sandbox", "pydantic"), ("sandbox", "sandbox.runner"), ("sandbox.spawner", "pydantic")],
)
def test_imports_stay_light(module, absent):
    """Importing the package or the spawner loads neither pydantic nor the runtime."""
    code = f"import sys, {module}; print({absent!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_error_tree():
    assert issubclass(SpecError, ValueError)
    assert issubclass(SpecError, SandboxError)
    assert issubclass(MountError, SetupError)
    assert setup_error_for("mount") is MountError
    assert setup_error_for("cgroup") is CgroupError
    assert setup_error_for("something new") is SetupError


def test_run_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--lang",
        "--stdin",
        "--memory",
        "--pids",
        "--time",
        "--cpu-time",
        "--output",
        "--disk",
        "--cap",
        "--network",
        "--json",
        "--image",
    ):
        assert flag in text


def test_missing_source_file_is_a_usage_error(capsys, tmp_path):
    assert main(["run", str(tmp_path / "nope.py")]) == 2
    assert "nope.py" in capsys.readouterr().err


def test_bad_memory_is_a_usage_error_naming_the_field(capsys, tmp_path):
    prog = tmp_path / "p.py"
    prog.write_text("print(1)")
    assert main(["run", "--memory", "lots", str(prog)]) == 2
    assert "limits.memory" in capsys.readouterr().err


def test_bad_env_flag(capsys, tmp_path):
    prog = tmp_path / "p.py"
    prog.write_text("print(1)")
    assert main(["run", "--env", "NOEQUALS", str(prog)]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
