"""sandbox: run untrusted code in throwaway Linux containers.

Public API::

    from sandbox import JobSpec, execute, execute_sync
    result = await execute(JobSpec(code="print(1)"))      # here, as root

    import sandbox
    sandbox.run.delay("print(1)").get()                   # through Redis and a worker
    sandbox.judge.delay(code=src, language="cpp", tests=[...]).get()  # judge mode
    result = await sandbox.submit("print(1)")

Names are imported lazily (PEP 562), so importing :mod:`sandbox` costs
nothing: not even :mod:`typing` (the ``sandbox run`` client of `sandbox
serve` starts in a few milliseconds).
"""

from __future__ import annotations

import importlib

from sandbox import errors as _errors  # no dependencies: cheap to import

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from sandbox.errors import (
        CapabilityError,
        CgroupError,
        CleanupError,
        MountError,
        NamespaceError,
        SandboxError,
        SeccompError,
        SetupError,
        SpecError,
        UnsupportedError,
    )
    from sandbox.judging import JudgeResult, JudgeSpec, TestCase, Verdict
    from sandbox.result import JobResult, Status
    from sandbox.runtime.runner import Runtime
    from sandbox.runtime.shared import execute, execute_sync
    from sandbox.settings import Settings
    from sandbox.spec import JobSpec, Limits
    from worker.client import submit
    from worker.tasks import judge, run

__all__ = [
    "CapabilityError",
    "CgroupError",
    "CleanupError",
    "JobResult",
    "JobSpec",
    "JudgeResult",
    "JudgeSpec",
    "Limits",
    "MountError",
    "NamespaceError",
    "Runtime",
    "SandboxError",
    "SeccompError",
    "Settings",
    "SetupError",
    "SpecError",
    "Status",
    "TestCase",
    "UnsupportedError",
    "Verdict",
    "execute",
    "execute_sync",
    "judge",
    "run",
    "submit",
]

_WHERE = {
    "JobSpec": "sandbox.spec",
    "Limits": "sandbox.spec",
    "JobResult": "sandbox.result",
    "Status": "sandbox.result",
    "Runtime": "sandbox.runtime.runner",
    "execute": "sandbox.runtime.shared",
    "execute_sync": "sandbox.runtime.shared",
    "Settings": "sandbox.settings",
    # The service's front door: `sandbox.run.delay(code)`. Celery loads only here.
    "run": "worker.tasks",
    "judge": "worker.tasks",
    "JudgeSpec": "sandbox.judging",
    "JudgeResult": "sandbox.judging",
    "TestCase": "sandbox.judging",
    "Verdict": "sandbox.judging",
    "submit": "worker.client",
    **dict.fromkeys(_errors.__all__, "sandbox.errors"),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
