"""The exception tree, as drawn in sandbox/errors.py."""

from __future__ import annotations

import pytest

from sandbox import errors
from sandbox.errors import (
    CapabilityError,
    CgroupError,
    CleanupError,
    MountError,
    NamespaceError,
    SandboxError,
    SetupError,
    SpecError,
    UnsupportedError,
    setup_error_for,
)


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (SpecError, SandboxError),
        (SpecError, ValueError),
        (UnsupportedError, SandboxError),
        (SetupError, SandboxError),
        (NamespaceError, SetupError),
        (MountError, SetupError),
        (CgroupError, SetupError),
        (CapabilityError, SetupError),
        (CleanupError, SandboxError),
    ],
)
def test_tree(cls: type[Exception], parent: type[Exception]):
    assert issubclass(cls, parent)


@pytest.mark.parametrize("cls", [UnsupportedError, SetupError, CleanupError])
def test_only_spec_errors_are_value_errors(cls: type[Exception]):
    assert not issubclass(cls, ValueError)


def test_setup_and_cleanup_are_separate_branches():
    assert not issubclass(CleanupError, SetupError)
    assert not issubclass(SpecError, SetupError)


@pytest.mark.parametrize(
    ("step", "cls"),
    [
        ("unshare", NamespaceError),
        ("hostname", NamespaceError),
        ("loopback", NamespaceError),
        ("mount", MountError),
        ("rootfs", MountError),
        ("pivot_root", MountError),
        ("cgroup", CgroupError),
        ("capabilities", CapabilityError),
        ("user", CapabilityError),
        ("execve", SetupError),
        ("", SetupError),
    ],
)
def test_setup_error_for(step: str, cls: type[SetupError]):
    assert setup_error_for(step) is cls


def test_sandbox_error_carries_fields():
    err = MountError("mount proc on /proc: EPERM", path="/proc", step="mount", errno=1)
    assert (err.message, err.path, err.step, err.errno) == (
        "mount proc on /proc: EPERM",
        "/proc",
        "mount",
        1,
    )
    assert str(err) == "mount proc on /proc: EPERM"
    bare = SandboxError("x")
    assert (bare.path, bare.step, bare.errno) == (None, None, None)


def test_spec_error_names_field_and_value():
    err = SpecError("limits.pids 5000 exceeds the maximum", field="limits.pids", value=5000)
    assert (err.field, err.value) == ("limits.pids", 5000)
    with pytest.raises(ValueError, match=r"limits\.pids"):
        raise err


def test_unsupported_error_puts_the_hint_in_its_message():
    err = UnsupportedError("no overlayfs", hint="modprobe overlay", path="/proc/filesystems")
    assert str(err) == "no overlayfs: modprobe overlay"
    assert (err.hint, err.path) == ("modprobe overlay", "/proc/filesystems")
    assert str(UnsupportedError("no overlayfs")) == "no overlayfs"


def test_errors_all_is_complete():
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, SandboxError)
    }
    assert set(errors.__all__) == defined
