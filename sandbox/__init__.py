"""sandbox: run untrusted code in throwaway Linux containers.

Public API::

    from sandbox import JobSpec, execute, execute_sync
    result = await execute(JobSpec(code="print(1)"))      # here, as root

    import sandbox
    sandbox.run.delay("print(1)").get()                   # through Redis and a worker
    result = await sandbox.submit("print(1)")

Names are imported lazily (PEP 562), so importing :mod:`sandbox` costs
nothing and the spawner process, which imports :mod:`sandbox.init`, never
loads pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sandbox import errors as _errors  # no dependencies: cheap to import

if TYPE_CHECKING:
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
    from sandbox.result import JobResult, Status
    from sandbox.runner import Runtime, execute, execute_sync
    from sandbox.settings import Settings
    from sandbox.spec import JobSpec, Limits
    from worker.client import submit
    from worker.tasks import run

__all__ = [
    "CapabilityError",
    "CgroupError",
    "CleanupError",
    "JobResult",
    "JobSpec",
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
    "UnsupportedError",
    "execute",
    "execute_sync",
    "run",
    "submit",
]

_WHERE = {
    "JobSpec": "sandbox.spec",
    "Limits": "sandbox.spec",
    "JobResult": "sandbox.result",
    "Status": "sandbox.result",
    "Runtime": "sandbox.runner",
    "execute": "sandbox.runner",
    "execute_sync": "sandbox.runner",
    "Settings": "sandbox.settings",
    # The service's front door: `sandbox.run.delay(code)`. Celery loads only here.
    "run": "worker.tasks",
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
