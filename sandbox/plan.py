"""Describe, then act: the plan of one container as plain data.

:func:`build_plan` is a pure function from what the submitter asks
(:class:`~sandbox.spec.JobSpec`) and what the operator allows
(:class:`~sandbox.settings.Settings`) to a :class:`Plan`: clamped limits,
namespace flags, ordered mounts, capabilities kept, rlimits, argv and env.
It has two parts: the :class:`ContainerPlan` (namespaces and root filesystem,
all a container needs before a job is known, so the warm pool can build it
ahead) and the :class:`JobPlan` (user, capabilities, rlimits, command). The
child side (the native launcher, ``sandbox/kernel/native/launch.c``) receives each
through an inherited memfd as NUL-terminated tokens (:meth:`ContainerPlan.to_wire`,
:meth:`JobPlan.to_wire`) and carries it out; it makes no policy of its own.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.errors import SpecError
from sandbox.kernel import egress
from sandbox.kernel import syscalls as sc
from sandbox.kernel.caps import CAPABILITIES, NETWORK_CAPABILITIES, capability_mask
from sandbox.paths import MOUNTS
from sandbox.resources import LIMITS

if TYPE_CHECKING:
    from sandbox.image.store import Image
    from sandbox.languages import LanguageInfo
    from sandbox.settings import Settings
    from sandbox.spec import JobSpec, Limits

_PLANS_KEPT = 64  # container plans a runtime remembers (images x disk sizes x network)

__all__ = ["DEVICES", "ContainerPlan", "JobPlan", "MountOp", "Plan", "build_plan"]

WORKDIR = "/box"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Device nodes bound from the host into the container's own /dev, as bubblewrap's --dev.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# As runc's defaults: kernel surfaces a root job must not read or write.
# Beyond runc's: what tells the host apart (its boot parameters, kernel
# build, boot id, modules, disks, other users' key counts); docs/security.md
# lists what a job sees of /proc and why.
PROC_MASKED = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/key-users",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/cmdline",
    "/proc/config.gz",
    "/proc/kallsyms",
    "/proc/modules",
    "/proc/partitions",
    "/proc/diskstats",
    "/proc/swaps",
    "/proc/sys/kernel/random/boot_id",
    "/proc/sys/dev",
    "/proc/bootconfig",
    "/proc/dynamic_debug",
    "/proc/softirqs",
    "/proc/consoles",
    "/proc/fs",
    "/proc/bus",
)
# Settings.kernel_limits names that are rlimits of the user namespace's owner.
RLIMIT_CEILINGS = {
    "msgqueue_bytes": resource.RLIMIT_MSGQUEUE,
    "sigpending": resource.RLIMIT_SIGPENDING,
    "memlock_bytes": resource.RLIMIT_MEMLOCK,
}
PROC_READONLY = ("/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass(frozen=True)
class MountOp:
    """One step of building the root filesystem, relative to the new root.

    ``op`` is ``bind`` (host ``source`` onto ``target``, read-only if
    ``readonly``), ``rebind`` (``target`` onto itself, read-only: for a
    subtree of a filesystem mounted earlier), ``mask`` (hide ``target``: an
    empty read-only tmpfs over a directory, /dev/null over a file; skipped if
    absent), ``mount`` (a fresh ``fstype`` filesystem), ``mkdir`` (with
    ``mode``, owned by the container's root), ``mountpoint`` (a ``mkdir``
    only if the image lacks the directory: an image's own is left as it is,
    not copied up into the overlay, since a mount covers it), ``symlink``
    (``target`` pointing to ``source``) or ``file`` (an empty file, a bind
    target for a device node).
    """

    op: str
    target: str
    source: str | None = None
    fstype: str | None = None
    flags: int = 0
    data: str | None = None
    mode: int = 0o755
    readonly: bool = False

    def fields(self) -> tuple[object, ...]:
        """The launcher's order of this step's fields (None as the empty string)."""
        return (
            self.op,
            self.target,
            self.source,
            self.fstype,
            self.flags,
            self.data,
            self.mode,
            int(self.readonly),
        )


@dataclass(frozen=True)
class ContainerPlan:
    """What a container needs before any job: namespaces and root filesystem.

    Equal plans give interchangeable containers, so this is the warm pool's key.
    """

    image_id: str
    init_uid: int
    seccomp: bool
    userns: tuple[int, int] | None
    namespaces: int
    hostname: str
    loopback: bool
    mount_base: str
    lower_dirs: tuple[str, ...]
    disk_bytes: int
    disk_inodes: int
    mounts: tuple[MountOp, ...]
    proc_mounts: tuple[MountOp, ...]
    # The user namespace's owner sets these rlimits before creating it: the
    # kernel caps the whole container's count of each at them (ucounts).
    ceilings: tuple[tuple[int, int], ...] = ()
    # /proc/sys/user/<name> inside the container's user namespace.
    sysctls: tuple[tuple[str, int], ...] = ()
    # A user-mode network stack's argv for egress (sandbox/kernel/egress.py), or ().
    netstack: tuple[str, ...] = ()
    # A loopback-only network namespace owned by the host, which the
    # container joins (or makes, when it is handed none) before it enters its
    # user namespace: the runtime keeps it for later containers while jobs
    # leave it untouched (sandbox/kernel/netns.py, ADR 0013).
    shared_net: bool = False

    @property
    def root_owner(self) -> int:
        """Host uid and gid of the container's root: what it creates shows as root inside."""
        return self.userns[0] if self.userns else 0

    def to_wire(self, root_owner: int | None = None, *, netns: bool = False) -> bytes:
        """Serialise for the launcher: NUL-terminated tokens, keyed records, ``end``.

        Args:
            root_owner: the host uid of root inside (the container's own id
                range); by default :attr:`root_owner`.
            netns: a network namespace to join comes with the plan (the
                first descriptor after it); only with :attr:`shared_net`.
        """
        head: list[tuple[object, ...]] = []
        if self.userns:
            owner = self.userns[0] if root_owner is None else root_owner
            head.append(("userns", owner, self.userns[1]))
        if netns:
            head.append(("netns",))
        return wire(head) + self._wire_body if head else self._wire_body

    @functools.cached_property
    def _wire_body(self) -> bytes:
        """Everything but the user namespace's owner: the same for each container of a plan."""
        records: list[tuple[object, ...]] = [
            ("ns", self.namespaces),
            ("hostname", self.hostname),
            ("loopback", int(self.loopback)),
            ("sharednet", int(self.shared_net)),
            ("init_uid", self.init_uid),
            ("base", self.mount_base),
            *(("lower", d) for d in self.lower_dirs),
            ("disk", self.disk_bytes, self.disk_inodes),
            *(("ceiling", res, value) for res, value in self.ceilings),
            *(("sysctl", name, value) for name, value in self.sysctls),
            *(("mount", *op.fields()) for op in self.mounts),
            *(("proc", *op.fields()) for op in self.proc_mounts),
            *(("netstack", arg) for arg in self.netstack),
            ("end",),
        ]
        return wire(records)

    # The warm pool's key: hashed and compared on every job, so through the
    # serialised form (cached), not field by field over every mount step.
    def __hash__(self) -> int:
        return hash(self._wire_body) ^ hash(self.userns)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContainerPlan):
            return NotImplemented
        return self.userns == other.userns and self._wire_body == other._wire_body


@dataclass(frozen=True)
class JobPlan:
    """What one job needs inside a ready container: its user, limits and command."""

    workdir: str
    source_file: str
    uid: int
    gid: int
    capabilities: int
    last_cap: int
    rlimits: tuple[tuple[int, int, int], ...]
    seccomp_profile: str
    files: tuple[tuple[str, int, bool], ...]  # name, size, executable: in the files memfd
    collect: tuple[str, ...]
    argv: tuple[str, ...]
    env: tuple[str, ...]

    def to_wire(self, code: bytes, files: bytes, seccomp_filter: bytes = b"") -> bytes:
        """Serialise for the launcher, followed by its blobs.

        Args:
            code: the source file's content.
            files: the extra files' contents back to back, as ``files`` sizes them.
            seccomp_filter: a compiled BPF program (empty: none), loaded last.
        """
        records: list[tuple[object, ...]] = [
            ("workdir", self.workdir),
            ("source", self.source_file),
            ("uid", self.uid),
            ("gid", self.gid),
            ("caps", self.capabilities),
            ("last_cap", self.last_cap),
            *(("rlimit", *r) for r in self.rlimits),
            *(("file", name, size, int(executable)) for name, size, executable in self.files),
            *(("argv", arg) for arg in self.argv),
            *(("env", item) for item in self.env),
            ("seccomp", len(seccomp_filter)),
            ("code", len(code)),
            ("end",),
        ]
        return wire(records) + seccomp_filter + code + files


@dataclass(frozen=True)
class Plan:
    """Everything the child side needs to build a container and run one job in it.

    ``limits`` are the job's effective limits (the language's adjustments
    applied), which the supervisor enforces.
    """

    container: ContainerPlan
    job: JobPlan
    limits: Limits


def wire(records: Iterable[tuple[object, ...]]) -> bytes:
    """NUL-terminated tokens: ints in decimal, None as the empty string.

    Raises:
        ValueError: a token holds a NUL byte (the spec refuses them earlier).
    """
    tokens = [
        "" if item is None else str(int(item)) if isinstance(item, int) else str(item)
        for record in records
        for item in record
    ]
    text = "\0".join(tokens) + "\0"
    if text.count("\0") != len(tokens):
        raise ValueError(f"plan token holds a NUL byte: {next(t for t in tokens if chr(0) in t)!r}")
    return os.fsencode(text)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _check_max(name: str, value: float, maximum: float) -> None:
    if value > maximum:
        raise SpecError(
            f"limits.{name} {_number(value)} exceeds the maximum {_number(maximum)} "
            "allowed by this host "
            f"(set SANDBOX_MAX_{name.upper()} to raise it)",
            field=f"limits.{name}",
            value=value,
        )


# execve(2): one string may be at most MAX_ARG_STRLEN (32 pages, NUL included);
# argv and environment together at most a quarter of the stack limit (2 MiB by
# default). Refused here, with the field named, not as E2BIG from the job.
MAX_ARG_STRLEN = 32 * 4096
MAX_EXEC_BYTES = 2**20


def _check_exec_size(spec: JobSpec) -> None:
    total = 0
    for field, strings in (
        ("argv", list(spec.argv)),
        ("env", [f"{k}={v}" for k, v in spec.env.items()]),
    ):
        for text in strings:
            size = len(text.encode()) + 1
            if size > MAX_ARG_STRLEN:
                raise SpecError(
                    f"{field} has a string of {size} bytes; execve takes at most {MAX_ARG_STRLEN}",
                    field=field,
                    value=size,
                )
            total += size
    if total > MAX_EXEC_BYTES:
        raise SpecError(
            f"argv and env are {total} bytes together, more than the {MAX_EXEC_BYTES} allowed",
            field="argv",
            value=total,
        )


def rootfs_mounts(
    binds: tuple[str, ...], mount_base: str
) -> tuple[tuple[MountOp, ...], tuple[MountOp, ...]]:
    """The ordered mounts on top of the image, in two parts.

    Args:
        binds: host directories bound read-only at the same path (e.g. /usr).
        mount_base: where the job's disk tmpfs is mounted (/dev/shm lives there).

    Returns:
        ``(mounts, proc_mounts)``: the root filesystem (host binds, /dev,
        /tmp, mount points), made with the host's privileges before the user
        namespace exists; then /proc with its masked and read-only parts,
        mounted inside the new pid namespace.
    """
    ro = sc.MS_NOSUID | sc.MS_NODEV
    ops: list[MountOp] = [
        MountOp("bind", path, source=path, flags=ro, readonly=True) for path in binds
    ]
    ops += [
        MountOp("mountpoint", "/proc"),
        MountOp("mountpoint", "/dev"),
        MountOp(
            "mount",
            "/dev",
            source="tmpfs",
            fstype="tmpfs",
            flags=ro | sc.MS_NOEXEC,
            data="mode=0755,size=64k,nr_inodes=64",
        ),
    ]
    for name in DEVICES:
        ops += [
            MountOp("file", f"/dev/{name}", mode=0o666),
            MountOp(
                "bind", f"/dev/{name}", source=f"/dev/{name}", flags=sc.MS_NOSUID | sc.MS_NOEXEC
            ),
        ]
    ops += [
        MountOp("mkdir", "/dev/pts"),
        MountOp(
            "mount",
            "/dev/pts",
            source="devpts",
            fstype="devpts",
            flags=sc.MS_NOSUID | sc.MS_NOEXEC,
            data="newinstance,ptmxmode=0666,mode=0620",
        ),
        MountOp("symlink", "/dev/ptmx", source="pts/ptmx"),
        MountOp("mkdir", "/dev/shm", mode=0o1777),
        # On the job's disk tmpfs, beside the overlay's upper layer: limits.disk
        # bounds /tmp, /box and /dev/shm together.
        MountOp("bind", "/dev/shm", source=f"{mount_base}/shm", flags=ro | sc.MS_NOEXEC),
        MountOp("symlink", "/dev/fd", source="/proc/self/fd"),
        MountOp("symlink", "/dev/stdin", source="/proc/self/fd/0"),
        MountOp("symlink", "/dev/stdout", source="/proc/self/fd/1"),
        MountOp("symlink", "/dev/stderr", source="/proc/self/fd/2"),
        MountOp("mkdir", "/tmp", mode=0o1777),
        MountOp("mkdir", WORKDIR),
    ]
    proc = [MountOp("mount", "/proc", source="proc", fstype="proc", flags=ro | sc.MS_NOEXEC)]
    proc += [MountOp("mask", path) for path in PROC_MASKED]
    proc += [
        MountOp("rebind", path, flags=ro | sc.MS_NOEXEC, readonly=True) for path in PROC_READONLY
    ]
    return tuple(ops), tuple(proc)


def build_plan(
    spec: JobSpec,
    settings: Settings,
    image: Image,
    *,
    last_cap: int = len(CAPABILITIES) - 1,
    containers: dict[tuple[object, ...], ContainerPlan] | None = None,
) -> Plan:
    """Turn a job spec into a container plan, refusing what the host does not allow.

    Args:
        spec: what the submitter asked for.
        settings: what the operator allows.
        image: the root filesystem's read-only layers and host binds.
        last_cap: highest capability number of the running kernel.
        containers: container plans made before, kept by the caller for the
            same ``settings``: equal jobs then share one plan (the warm pool's
            key, hashed through its cached wire form) instead of building it.

    Returns:
        The plan, ready for :mod:`sandbox.init`.

    Raises:
        SpecError: a limit beyond its maximum, a capability not allowed,
            network not allowed, or input too large.
    """
    from sandbox import languages  # pydantic-free callers never reach here

    try:
        lang = languages.get(spec.language)
    except ValueError as exc:
        raise SpecError(str(exc), field="language", value=spec.language) from exc
    file_data = _refuse_what_the_host_forbids(spec, settings, lang)
    # The root filesystem is built in a mount namespace of its own with the
    # host's privileges; then, with a user namespace, the container enters it
    # and unshares the rest, a copy of the mounts included, owned by it.
    # CLONE_NEWCGROUP is unshared by the job itself, once it sits in its cgroup.
    userns = (settings.userns_base, settings.userns_size) if settings.userns else None
    namespaces = _namespaces(spec, settings, userns)
    lim = _adjusted(spec.limits, lang, settings) if spec.step != "compile" else spec.limits
    key = (image.id or image.name, str(image.root), image.binds, lim.disk, spec.network, namespaces)
    container = containers.get(key) if containers is not None else None
    if container is None:
        container = _container_plan(settings, image, lim.disk, spec.network, userns, namespaces)
        if containers is not None:
            if len(containers) >= _PLANS_KEPT:
                containers.clear()
            containers[key] = container
    job = _job_plan(spec, settings, lang, lim, file_data, last_cap)
    return Plan(container=container, job=job, limits=lim)


def _refuse_what_the_host_forbids(
    spec: JobSpec, settings: Settings, lang: LanguageInfo
) -> dict[str, bytes]:
    """Check the spec against the operator's maxima and allowances; return its files' bytes.

    Raises:
        SpecError: naming the field.
    """
    lim = spec.limits
    for limit in LIMITS:
        value, ceiling = getattr(lim, limit.name), settings.maximum(limit.name)
        if value is not None and ceiling is not None:
            _check_max(limit.name, value, ceiling)
    file_data = {name: file.data() for name, file in spec.files.items()}
    size = len(spec.code.encode()) + len(spec.stdin.encode())
    size += sum(len(data) for data in file_data.values())
    if size > settings.max_input:
        raise SpecError(
            f"code, stdin and files are {size} bytes, more than the {settings.max_input} allowed",
            field="code",
            value=size,
        )
    if lang.source in spec.files:
        raise SpecError(
            f"files: {lang.source} is the source file's name", field="files", value=lang.source
        )
    _check_exec_size(spec)

    unknown = sorted(c for c in spec.capabilities if c not in CAPABILITIES)
    if unknown:
        raise SpecError(f"unknown capability {unknown[0]}", field="capabilities", value=unknown[0])
    refused = sorted(spec.capabilities - settings.allowed_capabilities)
    if refused:
        raise SpecError(
            f"capability {refused[0]} is not allowed on this host "
            "(add it to SANDBOX_ALLOWED_CAPABILITIES to allow it)",
            field="capabilities",
            value=refused[0],
        )
    if spec.network and not settings.allow_network:
        raise SpecError(
            "network access is not allowed on this host (set SANDBOX_ALLOW_NETWORK=true)",
            field="network",
            value=True,
        )
    if spec.network and not settings.userns:
        raise SpecError(
            "network egress needs user namespaces on this host (SANDBOX_USERNS)",
            field="network",
            value=True,
        )
    profile = spec.seccomp_profile
    if profile not in settings.allowed_seccomp_profiles:
        raise SpecError(
            f"seccomp profile {profile} is not allowed on this host "
            "(add it to SANDBOX_ALLOWED_SECCOMP_PROFILES to allow it)",
            field="seccomp_profile",
            value=profile,
        )
    if profile != "default" and not settings.seccomp:
        raise SpecError(
            f"seccomp profile {profile} asked, but seccomp is off on this host (SANDBOX_SECCOMP)",
            field="seccomp_profile",
            value=profile,
        )
    return file_data


def _namespaces(spec: JobSpec, settings: Settings, userns: tuple[int, int] | None) -> int:
    """The CLONE_NEW* flags the container unshares.

    A network apart from the host's always: egress through a user-mode stack
    that needs the user namespace (sandbox/kernel/egress.py), or loopback
    only. Loopback only is a namespace the host owns, kept from job to job
    while they leave it untouched (ADR 0013), unless the job is granted a
    network capability: that takes a namespace its own root owns.
    """
    shared_net = (
        settings.reuse_netns and not spec.network and not spec.capabilities & NETWORK_CAPABILITIES
    )
    namespaces = sc.CLONE_NEWPID | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC
    if not shared_net:
        namespaces |= sc.CLONE_NEWNET
    if userns:
        namespaces |= sc.CLONE_NEWNS
    return namespaces


def _job_plan(
    spec: JobSpec,
    settings: Settings,
    lang: LanguageInfo,
    lim: Limits,
    file_data: dict[str, bytes],
    last_cap: int,
) -> JobPlan:
    """The job part of a plan: its command, user, capabilities, rlimits, files and environment."""
    argv, collect = _command(spec, lang)
    privileged = bool(spec.capabilities)
    cpu_seconds = math.ceil(lim.cpu_time)
    rlimits = (
        (resource.RLIMIT_CORE, 0, 0),
        # A per-process backstop; the supervisor enforces the total from the cgroup.
        (resource.RLIMIT_CPU, cpu_seconds + 1, cpu_seconds + 2),
        *_declared_rlimits(lim),
    )
    env = {
        "PATH": PATH,
        "HOME": WORKDIR,
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        **spec.env,
    }
    return JobPlan(
        workdir=WORKDIR,
        source_file=f"{WORKDIR}/{lang.source}",
        uid=0 if privileged else settings.job_uid,
        gid=0 if privileged else settings.job_gid,
        capabilities=capability_mask(spec.capabilities),
        last_cap=last_cap,
        rlimits=rlimits,
        seccomp_profile=spec.seccomp_profile,
        files=tuple(
            (name, len(file_data[name]), file.executable) for name, file in spec.files.items()
        ),
        collect=collect,
        argv=argv,
        env=tuple(f"{k}={v}" for k, v in env.items()),
    )


def _container_plan(
    settings: Settings,
    image: Image,
    disk: int,
    network: bool,
    userns: tuple[int, int] | None,
    namespaces: int,
) -> ContainerPlan:
    """The container part of a plan: the same for every job of an image, disk size and network."""
    mounts, proc_mounts = rootfs_mounts(image.binds, str(settings.run_dir / MOUNTS))
    return ContainerPlan(
        image_id=image.id or image.name,
        init_uid=settings.init_uid,
        seccomp=settings.seccomp,
        userns=userns,
        namespaces=namespaces,
        hostname=settings.hostname,
        loopback=bool(namespaces & sc.CLONE_NEWNET),
        shared_net=not namespaces & sc.CLONE_NEWNET,
        mount_base=str(settings.run_dir / MOUNTS),
        lower_dirs=(str(image.root),),
        disk_bytes=disk,
        disk_inodes=max(1024, disk // 4096),
        mounts=mounts,
        proc_mounts=proc_mounts,
        ceilings=tuple(
            (res, _ceiling(name, settings.kernel_limits[name]))
            for name, res in RLIMIT_CEILINGS.items()
        )
        if userns
        else (),
        sysctls=tuple(
            (f"max_{name}", value)
            for name, value in sorted(settings.kernel_limits.items())
            if name not in RLIMIT_CEILINGS
        )
        if userns
        else (),
        netstack=egress.pasta_argv(settings.network_stack) if network else (),
    )


def _declared_rlimits(lim: Limits) -> tuple[tuple[int, int, int], ...]:
    """The rlimit of each declared limit that is one (sandbox/resources.py), soft = hard.

    Each is set for every job: an unset one takes the limit it defaults to
    (the stack: the memory limit), never what the worker inherited (8 MiB of
    stack from a login shell, unlimited elsewhere, would decide verdicts).
    """
    rlimits = []
    for limit in LIMITS:
        if limit.rlimit is not None:
            value = getattr(lim, limit.name)
            if value is None and limit.default_from:
                value = getattr(lim, limit.default_from)
            rlimits.append((limit.rlimit, int(value), int(value)))
    return tuple(rlimits)


def _ceiling(name: str, value: int) -> int:
    """The owner's rlimit that makes ``value`` the container's ceiling.

    The kernel counts SHM_LOCK'd memory in pages but takes the namespace's
    ceiling from its creator's RLIMIT_MEMLOCK as it is, a number of bytes
    (user_shm_lock; tests/security/test_kernel_counters.py): so it is given
    in pages here, which the kernel reads as the page count it compares.
    """
    if name == "memlock_bytes":
        return max(1, value // resource.getpagesize())
    return value


def _command(spec: JobSpec, lang: LanguageInfo) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The job's argv for its step, and the files to collect after it."""
    collect = tuple(spec.collect)
    if lang.compile is None:
        if spec.step == "compile":
            raise SpecError(
                f"language {spec.language} has no compile step", field="step", value=spec.step
            )
        return (*lang.run, *spec.argv), collect
    if spec.step == "compile":
        return lang.compile, tuple(dict.fromkeys((*lang.artifacts, *collect)))
    if spec.step == "run" or not lang.artifacts:
        # A compile step that leaves nothing (a syntax check) is for judge mode only.
        return (*lang.run, *spec.argv), collect
    script = f'{shlex.join(lang.compile)} && exec {shlex.join(lang.run)} "$@"'
    return ("/bin/sh", "-c", script, spec.language, *spec.argv), collect


def _adjusted(lim: Limits, lang: LanguageInfo, settings: Settings) -> Limits:
    """A run's limits with the language's time factor, extra memory and extra threads,
    within the maxima."""
    if lang.time_factor == 1 and not lang.extra_memory and not lang.extra_pids:
        return lim
    return lim.model_copy(
        update={
            "cpu_time": min(lim.cpu_time * lang.time_factor, settings.max_cpu_time),
            "wall_time": min(lim.wall_time * lang.time_factor, settings.max_wall_time),
            "memory": min(lim.memory + lang.extra_memory, settings.max_memory),
            "pids": min(lim.pids + lang.extra_pids, settings.max_pids),
        }
    )
