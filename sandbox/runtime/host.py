"""What this host offers: the checks behind ``sandbox doctor``.

Each check says what it found and, when something is missing, how to fix it.
:func:`require_capable` runs the essential ones before a runtime opens, so a
host that cannot sandbox fails early with a clear message instead of at the
first job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.errors import UnsupportedError
from sandbox.kernel.namespaces import NAMESPACES
from sandbox.settings import Settings

if TYPE_CHECKING:
    pass

__all__ = ["Check", "prepare", "require_capable", "run_checks"]


@dataclass(frozen=True)
class Check:
    """One finding about the host."""

    name: str
    ok: bool
    detail: str
    hint: str = ""
    essential: bool = True


def _root() -> Check:
    if os.geteuid() == 0:
        return Check("root", True, "running as root")
    return Check("root", False, f"running as uid {os.geteuid()}", "run as root (sudo sandbox ...)")


def _namespaces() -> Check:
    missing = [n for n in NAMESPACES if not os.path.exists(f"/proc/self/ns/{n}")]
    if missing:
        return Check(
            "namespaces",
            False,
            f"missing: {', '.join(missing)}",
            "use a kernel built with CONFIG_NAMESPACES and each *_NS option",
        )
    return Check("namespaces", True, ", ".join(NAMESPACES))


def _overlay() -> Check:
    try:
        with open("/proc/filesystems") as f:
            found = any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        found = False
    if not found:
        # A module not yet loaded is loaded on first mount; modprobe says if it can be.
        found = any(Path("/lib/modules", os.uname().release).rglob("overlay.ko*"))
    if found:
        return Check("overlayfs", True, "overlay filesystem available")
    return Check(
        "overlayfs", False, "no overlay filesystem", "modprobe overlay (CONFIG_OVERLAY_FS)"
    )


def _cgroups(settings: Settings) -> Check:
    from sandbox.kernel.cgroups import detect_setup

    try:
        setup = detect_setup(settings.cgroup_root, settings.cgroup_parent)
    except UnsupportedError as exc:
        return Check("cgroups", False, exc.message, exc.hint)
    missing = setup.missing()
    if missing:
        return Check(
            "cgroups",
            False,
            f"cgroup v{setup.version}: controller {', '.join(missing)} missing",
            "enable the memory, pids, cpu(acct) and freezer controllers",
        )
    return Check("cgroups", True, f"cgroup v{setup.version} at {settings.cgroup_root}")


def _seccomp() -> Check:
    from sandbox.kernel.seccomp import SeccompUnavailable, build_filter

    try:
        build_filter()
    except (SeccompUnavailable, OSError) as exc:
        return Check("seccomp", False, str(exc), "apt-get install libseccomp2")
    return Check("seccomp", True, "libseccomp builds the default filter")


def _userns(settings: Settings) -> Check:
    if not settings.userns:
        return Check(
            "user namespace",
            False,
            "off (SANDBOX_USERNS=false): a job granted capabilities is the host's root "
            "inside its namespaces",
            "unset SANDBOX_USERNS to map root inside to an unprivileged host uid",
            essential=False,
        )
    from sandbox.kernel.namespaces import new_user_namespace

    first, size = settings.userns_base, settings.userns_size
    end = first + settings.userns_ranges * size
    try:
        os.close(new_user_namespace(first, size))
    except OSError as exc:
        return Check(
            "user namespace",
            False,
            f"cannot create one: {exc.strerror or exc}",
            "check sysctl user.max_user_namespaces (> 0) and run as root; "
            "or set SANDBOX_USERNS=false to run without this layer",
        )
    clash = _ids_in_use(first, end)
    if clash:
        return Check(
            "user namespace",
            False,
            f"host ids {first}-{end - 1} are not free: {clash}",
            "set SANDBOX_USERNS_BASE to a range nobody else uses",
            essential=False,
        )
    ranges = settings.userns_ranges
    return Check(
        "user namespace",
        True,
        f"host ids {first}-{end - 1}: {ranges} ranges of {size}, one per live container",
    )


def _ids_in_use(first: int, end: int, etc: Path = Path("/etc")) -> str:
    """Who on this host already owns a uid or gid in ``[first, end)``, if anyone."""
    for path in (etc / "passwd", etc / "group"):
        try:
            with open(path) as f:
                for line in f:
                    fields = line.split(":")
                    if len(fields) > 2 and fields[2].isdigit() and first <= int(fields[2]) < end:
                        return f"{fields[0]} in {path}"
        except OSError:
            continue
    for path in (etc / "subuid", etc / "subgid"):
        try:
            with open(path) as f:
                for line in f:
                    fields = line.strip().split(":")
                    if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                        start, count = int(fields[1]), int(fields[2])
                        if start < end and first < start + count:
                            return f"{fields[0]}'s range in {path}"
        except OSError:
            continue
    return ""


def _languages() -> Check:
    """The commands of the host image's languages are there (gcc for c...)."""
    from sandbox import languages

    missing = [
        f"{name} ({argv[0]})"
        for name, info in sorted(languages.known().items())
        if info.image == "host"
        for argv in (info.compile, info.run)
        if argv and argv[0].startswith("/") and not os.access(argv[0], os.X_OK)
    ]
    if missing:
        return Check(
            "languages",
            False,
            f"missing: {', '.join(missing)}",
            "install them (scripts/install installs gcc, g++) or drop those languages",
            essential=False,
        )
    return Check("languages", True, ", ".join(sorted(languages.known())))


def _python() -> Check:
    if os.access("/usr/bin/python3", os.X_OK):
        return Check("python3", True, "/usr/bin/python3 (the default image's python)")
    return Check(
        "python3", False, "no /usr/bin/python3", "apt-get install python3", essential=False
    )


def _state(settings: Settings) -> Check:
    bad = []
    for path in (settings.run_dir, settings.state_dir):
        probe = path
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            bad.append(str(path))
    if bad:
        return Check("state dirs", False, f"not writable: {', '.join(bad)}", "run as root")
    return Check("state dirs", True, f"{settings.run_dir}, {settings.state_dir}")


def _pidfd() -> Check:
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as exc:
        return Check("pidfd", False, f"pidfd_open: {exc.strerror}", "use Linux 5.3 or newer")
    os.close(fd)
    return Check("pidfd", True, "pidfd_open works")


def run_checks(settings: Settings | None = None) -> list[Check]:
    """Run every check and return the findings, essential ones first."""
    settings = settings or Settings()
    return [
        _root(),
        _namespaces(),
        _overlay(),
        _cgroups(settings),
        _pidfd(),
        _seccomp(),
        _userns(settings),
        _state(settings),
        _python(),
        _languages(),
    ]


def require_capable(settings: Settings) -> None:
    """Raise on the first essential check that fails.

    Raises:
        UnsupportedError: what is missing and how to fix it.
    """
    checks = [_root(), _namespaces(), _overlay(), _pidfd()]
    if settings.seccomp:
        checks.append(_seccomp())
    if settings.userns:
        checks.append(_userns(settings))
    for check in checks:
        if not check.ok and check.essential:
            raise UnsupportedError(f"{check.name}: {check.detail}", hint=check.hint)


def prepare(settings: Settings) -> None:
    """What a worker does before it takes jobs: :func:`require_capable`, then our
    cgroup parent made in every hierarchy (a misconfigured cgroup tree fails here,
    not in the first job).

    Raises:
        UnsupportedError, CgroupError: what is missing and how to fix it.
    """
    from sandbox.kernel.cgroups import detect_setup

    require_capable(settings)
    detect_setup(settings.cgroup_root, settings.cgroup_parent).ensure_parent()
