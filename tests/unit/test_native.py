"""The launcher binary: found when built and fresh; refused, saying how to build it, otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.errors import UnsupportedError
from sandbox.kernel import native


def _source_and_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    source, binary = tmp_path / "launch.c", tmp_path / "sandbox-launch"
    source.write_text("int main(void) { return 0; }\n")
    monkeypatch.setattr(native, "SOURCE", source)
    monkeypatch.setattr(native, "BINARY", binary)
    monkeypatch.delenv("SANDBOX_LAUNCHER", raising=False)
    return source, binary


def test_a_missing_launcher_says_how_to_build_it(tmp_path, monkeypatch):
    _source_and_binary(tmp_path, monkeypatch)
    with pytest.raises(UnsupportedError) as info:
        native.path()
    assert "scripts/install" in info.value.hint


def test_a_launcher_older_than_its_source_is_refused(tmp_path, monkeypatch):
    source, binary = _source_and_binary(tmp_path, monkeypatch)
    binary.write_text("#!/bin/true\n")
    binary.chmod(0o755)
    os.utime(binary, (1, 1))  # built long before the source changed
    with pytest.raises(UnsupportedError, match=r"older than launch\.c"):
        native.path()
    os.utime(binary, None)
    os.utime(source, (1, 1))
    assert native.path() == str(binary)


def test_sandbox_launcher_names_another_binary(tmp_path, monkeypatch):
    _source_and_binary(tmp_path, monkeypatch)
    other = tmp_path / "elsewhere"
    other.write_text("#!/bin/true\n")
    other.chmod(0o755)
    monkeypatch.setenv("SANDBOX_LAUNCHER", str(other))
    assert native.path() == str(other)
