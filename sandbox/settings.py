"""What the operator allows and where state lives (``SANDBOX_*`` variables).

The job submitter's wishes are in :class:`sandbox.spec.JobSpec`; these
settings bound them. Every field can be set from the environment, e.g.
``SANDBOX_MAX_MEMORY=1G`` or ``SANDBOX_CGROUP_PARENT=judge``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandbox.kernel.cpus import parse_cpu_list
from sandbox.limits import Size
from sandbox.paths import DEFAULT_RUN_DIR
from sandbox.resources import LIMITS, Limit, by_name
from sandbox.spec import normalise_capabilities

__all__ = ["DOCKER_DEFAULT_CAPABILITIES", "KERNEL_LIMITS", "USERNS_BASE", "Settings"]

# 0x70000000: host uids from here on are the jobs', 65536 per live container
# (256 ranges by default: up to 0x70FFFFFF). systemd leaves 0x70000000-0x7FFDFFFF
# unallocated (docs/UIDS-GIDS.md); `sandbox doctor` checks that /etc/passwd,
# /etc/group, /etc/subuid and /etc/subgid give none of it away.
USERNS_BASE = 0x70000000


# Docker's default set: what `docker run` grants without --cap-add. A job may
# ask for any of these; anything else (CAP_SYS_ADMIN, CAP_SYS_PTRACE...) only
# if the operator adds it to SANDBOX_ALLOWED_CAPABILITIES.
DOCKER_DEFAULT_CAPABILITIES = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)


# Per-job ceilings of the kernel's per-user counters (docs/security.md,
# "Kernel-wide resources"). Each container's user namespace belongs to its own
# host uid, so what a job takes is charged to that uid alone; these cap it
# further. The ``*_namespaces`` and notify names are /proc/sys/user/max_<name>
# in the container's namespace (per uid inside; the job's own namespaces
# count apart from the 6 the container itself makes as its root); the
# others are rlimits the namespace's owner has when it creates it, which the
# kernel applies to the whole container. The host's own per-user limits
# (fs.inotify.max_user_instances...) still bound each from above.
KERNEL_LIMITS: dict[str, int] = {
    "inotify_instances": 64,
    "inotify_watches": 8192,
    "fanotify_groups": 16,
    "fanotify_marks": 1024,
    "user_namespaces": 8,
    "pid_namespaces": 8,
    "mnt_namespaces": 8,
    "net_namespaces": 8,
    "ipc_namespaces": 8,
    "uts_namespaces": 8,
    "cgroup_namespaces": 8,
    "time_namespaces": 8,
    "msgqueue_bytes": 819200,
    "sigpending": 4096,
    "memlock_bytes": 8 * 2**20,
}


def _maximum_field(limit: Limit) -> tuple[Any, Any]:
    kinds: dict[str, Any] = {"seconds": float, "cpus": float, "count": int, "bytes": Size}
    annotation = kinds[limit.kind] if limit.maximum is not None else kinds[limit.kind] | None
    bounds: dict[str, Any] = {"ge" if limit.minimum == 0 and limit.kind != "seconds" else "gt": 0}
    if limit.bound is not None:
        bounds["le"] = limit.bound
    default = f"; default: max_{limit.default_from}" if limit.default_from else ""
    return annotation, Field(
        limit.maximum, description=f"the most a job may ask for: {limit.help}{default}", **bounds
    )


# max_<name> for each limit of sandbox/resources.py (SANDBOX_MAX_<NAME>): mypy sees them as Any.
_MAXIMA: dict[str, Any] = {f"max_{limit.name}": _maximum_field(limit) for limit in LIMITS}
_Maxima: Any = create_model("_Maxima", __base__=BaseSettings, **_MAXIMA)


class Settings(_Maxima):
    """Operator configuration of the runtime."""

    if TYPE_CHECKING:  # max_<limit> are made from the list: to mypy, each is Any

        def __getattr__(self, name: str) -> Any: ...

    model_config = SettingsConfigDict(env_prefix="SANDBOX_", frozen=True, extra="ignore")

    run_dir: Path = Field(
        Path(DEFAULT_RUN_DIR), description="locks, mount points, the serve socket"
    )
    state_dir: Path = Field(Path("/var/lib/sandbox"), description="images")
    cgroup_root: Path = Field(Path("/sys/fs/cgroup"), description="where cgroupfs is mounted")
    cgroup_parent: str = Field(
        "sandbox", pattern=r"^[A-Za-z0-9_.-]+$", description="our cgroup, under the root"
    )

    max_input: Size = Field(64 * 2**20, gt=0, description="bytes of code plus stdin")

    allowed_capabilities: Annotated[frozenset[str], BeforeValidator(normalise_capabilities)] = (
        DOCKER_DEFAULT_CAPABILITIES
    )
    allow_network: bool = Field(
        False,
        description="let jobs ask for network egress (their own stack, sandbox/kernel/egress.py)",
    )
    network_stack: str = Field("/usr/bin/pasta", description="the user-mode network stack")
    network_connections: int = Field(
        32, ge=1, le=65536, description="connections at once per job with a network"
    )
    network_rate: Size = Field(
        8 * 2**20, ge=1024, description="bytes a second a job with a network may send"
    )
    allowed_seccomp_profiles: frozenset[str] = Field(
        frozenset({"default", "strict"}),
        description='seccomp profiles a job may ask for, e.g. ["default", "strict", "ptrace"]',
    )

    job_uid: int = Field(65534, ge=1, description="uid of a job that asks no capabilities")
    job_gid: int = Field(65534, ge=1)
    seccomp: bool = Field(
        True, description="load the default seccomp filter (sandbox/kernel/seccomp.py)"
    )
    userns: bool = Field(
        True, description="run each container in its own user namespace (root inside is not root)"
    )
    userns_base: int = Field(
        USERNS_BASE,
        ge=1,
        description="first host uid and gid of the range reserved for jobs: uid 0 inside maps here",
    )
    userns_size: int = Field(65536, ge=2, le=2**16, description="ids mapped, from 0 inside")
    userns_ranges: int = Field(
        256,
        ge=1,
        le=4096,
        description="ranges of userns_size ids from userns_base: each live container has its own",
    )
    init_uid: int = Field(
        65533, ge=1, description="uid of the container's init once the job runs: not the job's"
    )
    kernel_limits: dict[str, int] = Field(
        default_factory=lambda: dict(KERNEL_LIMITS),
        description="per-job ceilings of kernel counters; SANDBOX_KERNEL_LIMITS="
        '{"inotify_instances": 16} changes the ones it names',
    )
    pin_cpus: str = Field(
        "",
        description="pin each job to one CPU of this list, none shared (e.g. '2-3'); empty: off",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per line (sandbox/logs.py)"
    )
    log_debug: bool = Field(False, description="log each job's code, input and output too")
    hostname: str = "sandbox"
    setup_timeout: float = Field(30.0, gt=0, description="seconds to build a container")
    pool_size: int = Field(
        4, ge=0, le=64, description="ready containers kept per container plan (0: no warm pool)"
    )
    problems_dir: Path = Field(
        Path("/var/lib/sandbox/problems"),
        description="problem packages that sandbox.judge may name (problem=NAME)",
    )
    pool_max: int = Field(
        0,
        ge=0,
        le=256,
        description="ready containers per plan that misses may grow the pool to "
        "(0: 4 per job slot; at most pool_size sets a fixed pool)",
    )
    reuse_netns: bool = Field(
        True,
        description="keep a job's loopback-only network namespace for a later job when it "
        "left no socket and moved no counter (docs/adr/0013-shared-network-namespaces.md)",
    )
    pool_sizes: dict[str, int] = Field(
        default_factory=dict,
        description='per image, overriding pool_size: SANDBOX_POOL_SIZES={"busybox": 0}',
    )

    def maximum(self, name: str) -> float | None:
        """The most a job may ask for of the limit ``name`` (sandbox/resources.py).

        Raises:
            KeyError: no such limit.
        """
        limit = by_name(name)
        value: float | None = getattr(self, f"max_{name}")
        if value is None and limit.default_from:
            return self.maximum(limit.default_from)
        return value

    @field_validator("kernel_limits", mode="before")
    @classmethod
    def _kernel_limits(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(value) - set(KERNEL_LIMITS))
        if unknown:
            raise ValueError(
                f"unknown kernel limit {unknown[0]!r}; known: {', '.join(sorted(KERNEL_LIMITS))}"
            )
        bad = sorted(k for k, v in value.items() if not isinstance(v, int) or v < 0)
        if bad:
            raise ValueError(f"kernel limit {bad[0]} must be a non-negative integer")
        return {**KERNEL_LIMITS, **value}

    @field_validator("pin_cpus")
    @classmethod
    def _cpu_list(cls, value: str) -> str:
        parse_cpu_list(value)
        return value

    def job_uids(self) -> range:
        """Every host uid a job may run as: all the user namespaces' ranges."""
        return range(self.userns_base, self.userns_base + self.userns_ranges * self.userns_size)

    def host_id(self, inside: int, id_range: int = 0) -> int:
        """The host uid (or gid) of id ``inside`` the user namespace of range ``id_range``."""
        if not self.userns:
            return inside
        return self.userns_base + id_range * self.userns_size + inside

    def inside_id(self, host: int) -> int | None:
        """The id inside a job's user namespace of host uid ``host``; None if not a job's."""
        if not self.userns:
            return host
        if host in self.job_uids():
            return (host - self.userns_base) % self.userns_size
        return None

    @model_validator(mode="after")
    def _ids_mapped(self) -> Settings:
        last = self.job_uids()[-1]
        if self.userns and last > 2**32 - 2:  # (uid_t) -1 is no id
            raise ValueError(
                f"userns_base + userns_ranges * userns_size ends at {last}, past the last uid "
                f"{2**32 - 2}: lower SANDBOX_USERNS_BASE or SANDBOX_USERNS_RANGES"
            )
        if self.userns:
            for name in ("job_uid", "job_gid", "init_uid"):
                if getattr(self, name) >= self.userns_size:
                    raise ValueError(
                        f"{name} {getattr(self, name)} is not mapped into the user namespace "
                        f"(SANDBOX_USERNS_SIZE={self.userns_size})"
                    )
        return self
