"""Shared test setup: host probes for markers, a runtime, and the leak check.

The autouse ``no_leaks`` fixture, for tests under integration/ and security/,
snapshots before and after each test: the mount table, the cgroups under our
test parent (every hierarchy), this process's descendants other than the
runtime's launcher, our open file descriptors, and the per-job mount point;
any difference fails the test.

Markers name what a test needs (``root``, ``cgroup_v1``, ``cgroup2``,
``overlay``). A probe decides whether this host has it; if not the test is
skipped with the reason, except under CI (``CI=true``), where a missing
requirement is a failure: CI must run everything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from sandbox.runtime.runner import Runtime
from sandbox.settings import Settings
from tests.proc import descendants, made, remove_made

_MISSING = pytest.StashKey[str]()
_LEAK_CHECKED = {"integration", "security"}

TEST_SETTINGS = Settings(
    run_dir=Path("/run/sandbox-test"),
    cgroup_parent="sandbox-test",
)
# What a session's jobs may make: the tests' own parents, and the defaults that the
# `sandbox` commands some tests run use (Settings()).
_PARENTS = {
    (TEST_SETTINGS.cgroup_parent, TEST_SETTINGS.run_dir),
    ("sandbox-test-svc", Path("/run/sandbox-test-svc")),
    (Settings().cgroup_parent, Settings().run_dir),
}


@pytest.fixture(scope="session", autouse=True)
def _parents_removed() -> Iterator[None]:
    """At the end of the session (after every runtime of it): the cgroup parents and run
    dirs it made, removed once empty; those that were there before are left alone."""
    before = {(parent, run_dir) for parent, run_dir in _PARENTS if made(parent, run_dir)}
    yield
    for parent, run_dir in _PARENTS - before:
        remove_made(parent, run_dir)


def _cgroup_version() -> int | None:
    try:
        from sandbox.kernel.cgroups import detect_setup

        return detect_setup(TEST_SETTINGS.cgroup_root, TEST_SETTINGS.cgroup_parent).version
    except Exception:
        return None


def _probe(marker: str) -> str | None:
    """Return why this host lacks ``marker``'s requirement, or None."""
    if marker in ("root", "overlay", "cgroup_v1", "cgroup2") and os.geteuid() != 0:
        return "needs root"
    if marker == "overlay":
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read():
                return "needs overlayfs"
    if marker == "cgroup_v1" and _cgroup_version() != 1:
        return "needs a cgroup v1/hybrid host"
    if marker == "cgroup2" and _cgroup_version() != 2:
        return "needs a cgroup v2 host (run under shared/tools/cgroup2-vm)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    in_ci = os.environ.get("CI") == "true"
    version = _cgroup_version()
    for item in items:
        for marker in ("root", "overlay", "cgroup_v1", "cgroup2"):
            if item.get_closest_marker(marker) is None:
                continue
            reason = _probe(marker)
            if reason is None:
                continue
            # The other cgroup version's tests are expected to skip on any one host.
            other_version = (marker == "cgroup_v1" and version == 2) or (
                marker == "cgroup2" and version == 1
            )
            if in_ci and not other_version:
                item.stash[_MISSING] = reason
            else:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_setup(item: pytest.Item) -> None:
    reason = item.stash.get(_MISSING, None)
    if reason is not None:
        pytest.fail(f"CI host lacks a requirement: {reason}", pytrace=False)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return TEST_SETTINGS


def open_runtime(settings: Settings) -> Iterator[Runtime]:
    """An open runtime for a fixture; at the end its pool drains and it closes."""
    rt = Runtime(settings)
    rt.open()
    yield rt
    _on_idle_loop(rt, rt.aclose)
    rt.close()


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Iterator[Runtime]:
    """One runtime for the whole session, as in a worker: its launcher and warm pool are reused."""
    yield from open_runtime(settings)


def _on_idle_loop(runtime: Runtime, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` on the runtime's pool loop, which is idle between tests."""
    loop = runtime.pool_loop
    if loop is not None and not loop.is_closed() and not loop.is_running():
        loop.run_until_complete(work())


def settle(runtime: Runtime) -> None:
    """Let the warm pool finish refilling (it refills after each job)."""
    _on_idle_loop(runtime, runtime.pool_settled)


def mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        # Drop the mount id and parent id, which say nothing about what is mounted.
        return {" ".join(line.split()[2:]) for line in f}


def cgroups(settings: Settings) -> set[str]:
    """Every cgroup directory under our test parent, in every hierarchy.

    os.walk, not rglob: another run's cgroups may vanish while we look.
    """
    found: set[str] = set()
    bases = [*settings.cgroup_root.glob(f"*/{settings.cgroup_parent}")]
    bases.append(settings.cgroup_root / settings.cgroup_parent)
    for base in bases:
        for dirpath, dirnames, _ in os.walk(base, onerror=lambda _: None):
            found.update(os.path.join(dirpath, d) for d in dirnames)
    return found


def open_fds() -> set[str]:
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.add(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            continue
    return fds


def foreign_cgroups(settings: Settings, owner: str) -> set[str]:
    """Cgroups of other live runtimes on this host (say, a test run in another checkout)."""
    foreign = set()
    for path in cgroups(settings):
        parts = Path(path).parts
        # <root>/<hierarchy>/<parent>/<owner>.<n>[/job...]: the name under our parent
        name = parts[parts.index(settings.cgroup_parent) + 1]
        other = name.rsplit(".", 1)[0]
        if other == owner:
            continue
        try:
            fd = os.open(settings.run_dir / "owners" / f"{other}.lock", os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            foreign.add(path)  # its owner holds the lock: alive, not ours
        finally:
            os.close(fd)
    return foreign


def snapshot(settings: Settings, runtime: Runtime) -> dict[str, object]:
    """What of ours exists now, less the runtime's launcher and warm pool."""
    mnt = settings.run_dir / "mnt"
    spared_pids: set[int] = set()
    spared_cgroups: set[str] = set()
    if runtime.launcher_pid is not None:
        spared_pids.add(runtime.launcher_pid)
    spared_fds: set[int] = set()
    loop = runtime.pool_loop
    if loop is not None:  # the session's event loop: its selector and self-pipe
        for name in ("_selector", "_ssock", "_csock"):
            with contextlib.suppress(AttributeError, ValueError):
                spared_fds.add(getattr(loop, name).fileno())
    for name in runtime.idle_cgroups():  # emptied, kept for the next containers
        spared_cgroups |= {p for p in cgroups(settings) if f"/{name}/" in f"{p}/"}
    spared_fds |= runtime.idle_fds()
    for container in runtime.pool_containers():
        assert container.pid is not None, "a pool container is still being built"
        spared_pids |= {container.pid} | descendants(container.pid)
        name = container.cgroup.name
        spared_cgroups |= {p for p in cgroups(settings) if f"/{name}/" in f"{p}/"}
        spared_fds |= {container.sock.fileno(), container.pidfd, container.init_pidfd}
        spared_fds |= set(container.cgroup.held_fds())
        if container.netns is not None:
            spared_fds |= container.netns.held_fds()
        if container.id_range is not None:
            spared_fds.add(container.id_range.fileno())
    return {
        "mounts": mounts(),
        "cgroups": cgroups(settings) - spared_cgroups - foreign_cgroups(settings, runtime.owner),
        "processes": descendants(os.getpid()) - spared_pids,
        "fds": {fd for fd in open_fds() if int(fd.split("->")[0]) not in spared_fds},
        "mount point": sorted(os.listdir(mnt)) if mnt.is_dir() else [],
    }


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest, settings: Settings) -> Iterator[None]:
    """Fail a test that ran real jobs and left anything behind (see module doc).

    The warm pool's containers are not leaks: the pool is let settle (it
    refills after each job) before each snapshot, and its containers spared.
    """
    if os.geteuid() != 0 or not _LEAK_CHECKED.intersection(request.node.path.parts):
        yield
        return
    runtime = request.getfixturevalue("runtime")
    settle(runtime)
    before = snapshot(settings, runtime)
    yield
    settle(runtime)
    after = snapshot(settings, runtime)
    leaks: dict[str, object] = {}
    for key, value in after.items():
        old = before[key]
        extra = value - old if isinstance(value, set) and isinstance(old, set) else None
        if extra or (extra is None and value != old):
            leaks[key] = extra or value
    assert not leaks, f"left behind: {leaks}"
