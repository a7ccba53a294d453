"""The exception tree of the sandbox runtime.

Job outcomes (a time, memory or output limit, a signal, a non-zero exit) are
:class:`sandbox.result.Status` values, never exceptions. Exceptions mean that
the sandbox itself could not do its work::

    SandboxError                 base; carries fields (path, step, errno), not only text
    ├── SpecError(ValueError)    bad job input: names field and value; never retried
    ├── UnsupportedError         host lacks a feature; says how to fix it
    ├── SetupError               building the container failed
    │   ├── NamespaceError
    │   ├── MountError
    │   ├── CgroupError
    │   ├── CapabilityError
    │   └── SeccompError
    └── CleanupError             could not remove something; reclaimed at next start

Messages are lowercase, without a final period, and name the path or value.
"""

from __future__ import annotations

__all__ = [
    "CapabilityError",
    "CgroupError",
    "CleanupError",
    "MountError",
    "NamespaceError",
    "SandboxError",
    "SeccompError",
    "SetupError",
    "SpecError",
    "UnsupportedError",
]


class SandboxError(Exception):
    """Base of every error the sandbox raises.

    Attributes:
        path: the file or directory involved, if any.
        step: the setup step that failed, if any (``mount``, ``pivot_root``...).
        errno: the OS error number, if the kernel refused something.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        step: str | None = None,
        errno: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.step = step
        self.errno = errno


class SpecError(SandboxError, ValueError):
    """The job spec is invalid or exceeds what the operator allows.

    Attributes:
        field: dotted name of the offending field (``limits.memory``).
        value: the value that was refused.
    """

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class UnsupportedError(SandboxError):
    """This host cannot run sandboxes; ``hint`` says how to fix it."""

    def __init__(self, message: str, *, hint: str = "", path: str | None = None) -> None:
        super().__init__(f"{message}: {hint}" if hint else message, path=path)
        self.hint = hint


class SetupError(SandboxError):
    """Building the container failed (a kernel call was refused)."""


class NamespaceError(SetupError):
    """Creating or entering a namespace failed."""


class MountError(SetupError):
    """A mount, pivot_root or unmount failed."""


class CgroupError(SetupError):
    """Creating, configuring or reading a cgroup failed."""


class CapabilityError(SetupError):
    """Dropping capabilities or switching user failed."""


class SeccompError(SetupError):
    """Building or loading the seccomp filter failed."""


class CleanupError(SandboxError):
    """Something of a job could not be removed; the next start reclaims it."""


_STEP_ERRORS: dict[str, type[SetupError]] = {
    "unshare": NamespaceError,
    "hostname": NamespaceError,
    "loopback": NamespaceError,
    "mount": MountError,
    "rootfs": MountError,
    "pivot_root": MountError,
    "cgroup": CgroupError,
    "capabilities": CapabilityError,
    "user": CapabilityError,
    "seccomp": SeccompError,
}


def setup_error_for(step: str) -> type[SetupError]:
    """Return the SetupError subclass for a failed setup step of the child."""
    return _STEP_ERRORS.get(step, SetupError)
