"""The public names of ``sandbox`` and what importing it costs.

Like httpx's tests/test_exported_members.py, adapted to lazy (PEP 562)
exports: each name in ``__all__`` resolves to the object of the module that
defines it, and importing the package loads neither pydantic nor the runtime.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import sandbox
from sandbox import errors

HOME = {
    "JobSpec": "sandbox.spec",
    "Limits": "sandbox.spec",
    "JobResult": "sandbox.result",
    "Status": "sandbox.result",
    "Runtime": "sandbox.runtime.runner",
    "execute": "sandbox.runtime.shared",
    "execute_sync": "sandbox.runtime.shared",
    "Settings": "sandbox.settings",
    "run": "worker.tasks",
    "judge": "worker.tasks",
    "submit": "worker.client",
    "JudgeSpec": "sandbox.judging",
    "JudgeResult": "sandbox.judging",
    "TestCase": "sandbox.judging",
    "Verdict": "sandbox.judging",
    **dict.fromkeys(errors.__all__, "sandbox.errors"),
}


def test_all_is_sorted_and_unique():
    assert sandbox.__all__ == sorted(set(sandbox.__all__))


def test_all_is_exactly_the_public_api():
    assert set(sandbox.__all__) == set(HOME)


@pytest.mark.parametrize("name", sorted(HOME))
def test_each_name_is_the_defining_modules_object(name: str):
    assert getattr(sandbox, name) is getattr(importlib.import_module(HOME[name]), name)


def test_dir_lists_the_public_names():
    assert dir(sandbox) == sorted(sandbox.__all__)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'spec_error'"):
        _ = sandbox.spec_error


def _modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the modules it left loaded."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    modules: list[str] = json.loads(out.stdout)
    return modules


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in ("pydantic", "pydantic_core", "celery")]


def test_import_sandbox_is_light():
    modules = _modules_after("import sandbox")
    assert _heavy(modules) == []
    assert [m for m in modules if m.startswith("sandbox.")] == ["sandbox.errors"]


def test_errors_from_the_package_need_no_pydantic():
    modules = _modules_after("import sandbox\nsandbox.SpecError, sandbox.CgroupError")
    assert _heavy(modules) == []
    assert "sandbox.runtime.runner" not in modules


def test_lazy_names_do_load_their_module():
    modules = _modules_after("import sandbox\nsandbox.JobSpec")
    assert "sandbox.spec" in modules
    assert "sandbox.runtime.runner" not in modules
