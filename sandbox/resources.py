"""The resource limits of a job: one declared list, from which the rest is made.

Each :class:`Limit` below makes, with no other change:

- a field of :class:`sandbox.spec.Limits` (``JobSpec.limits.<name>``), its
  default, bounds and description;
- the operator's maximum, :class:`sandbox.settings.Settings` ``max_<name>``
  (``SANDBOX_MAX_<NAME>``), which :func:`sandbox.plan.build_plan` refuses a
  job beyond (a ``SpecError`` naming the field);
- the flag of ``sandbox run`` and ``sandbox judge`` (:func:`add_flags`, the
  same name as Docker's or isolate's where they have one);
- where the kernel enforces it: an rlimit set on every process of the job
  (soft = hard), or a cgroup file that both back-ends write
  (:mod:`sandbox.kernel.cgroups`; named as on v2, the v1 controller is the
  part before the dot).

Memory, CPU bandwidth, CPU and wall time and output have rules of their own
(memory+swap ordering, the CFS quota, the watches, the stream caps), in the
code that applies them; their entries here still give their field, maximum
and flag. CONTRIBUTING.md says how to add one.

Pure data, importable without pydantic: the CLI builds its parser from it.
"""

from __future__ import annotations

import argparse
import os
import resource
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["LIMITS", "Limit", "add_flags", "by_name", "flag_values"]

# seconds and cpus are floats; bytes a size (a number or "64M"); count an int.
Kind = Literal["seconds", "cpus", "bytes", "count"]


@dataclass(frozen=True)
class Limit:
    """One resource limit of a job."""

    name: str
    kind: Kind
    default: float | None  # None: the limit named by `default_from`
    minimum: float  # the least a job may ask for (more than it, for seconds)
    maximum: float | None  # the operator's maximum by default; None: `default_from`'s
    help: str  # what it bounds: the spec's description and the flag's help
    flag: str  # sandbox run / sandbox judge
    bound: float | None = None  # no maximum may exceed this
    default_from: str | None = None
    rlimit: int | None = None  # resource.RLIMIT_*: soft = hard = the limit, every process
    cgroup_file: str | None = None  # a cgroup file set to the limit (its v2 name)

    @property
    def metavar(self) -> str:
        return {"seconds": "SEC", "cpus": "N", "bytes": "SIZE", "count": "N"}[self.kind]


LIMITS: tuple[Limit, ...] = (
    Limit("wall_time", "seconds", 10.0, 0, 300.0, "wall-clock seconds", "--time", bound=86400),
    Limit("cpu_time", "seconds", 10.0, 0, 300.0, "CPU seconds, all processes", "--cpu-time",
          bound=86400),
    Limit("cpus", "cpus", 1.0, 0.01, float(os.cpu_count() or 1),
          "CPUs used at once, at most (CFS bandwidth quota)", "--cpus", bound=1024),
    Limit("memory", "bytes", 256 * 2**20, 4 * 2**20, 4 * 2**30, "bytes of RAM, no swap",
          "--memory"),
    Limit("pids", "count", 64, 1, 1024, "processes and threads at once", "--pids",
          bound=2**22, cgroup_file="pids.max"),
    Limit("output", "bytes", 2**20, 0, 64 * 2**20, "bytes kept per stream (stdout, stderr)",
          "--output"),
    Limit("disk", "bytes", 64 * 2**20, 2**20, 2**30, "bytes writable in the container", "--disk"),
    Limit("open_files", "count", 256, 8, 4096, "file descriptors per process", "--open-files",
          bound=2**20, rlimit=resource.RLIMIT_NOFILE),
    Limit("stack", "bytes", None, 64 * 2**10, None,
          "bytes of stack per thread; default: the memory limit, as contest judges set it, "
          "never what the worker inherited", "--stack", default_from="memory",
          rlimit=resource.RLIMIT_STACK),
    Limit("file_size", "bytes", None, 0, None,
          "bytes of one file the job writes (EFBIG beyond); default: the disk limit",
          "--file-size", default_from="disk", rlimit=resource.RLIMIT_FSIZE),
)  # fmt: skip

_BY_NAME = {limit.name: limit for limit in LIMITS}


def by_name(name: str) -> Limit:
    """The limit called ``name``.

    Raises:
        KeyError: no such limit.
    """
    return _BY_NAME[name]


def add_flags(parser: argparse.ArgumentParser, *, per: str = "") -> None:
    """Add a flag per limit (values checked later, by the spec: sizes are strings here).

    Args:
        per: said after each help text (``"per case"`` for the judge).
    """
    for limit in LIMITS:
        kind: Any = {"seconds": float, "cpus": float, "count": int, "bytes": str}[limit.kind]
        parser.add_argument(
            limit.flag,
            dest=f"limit_{limit.name}",
            type=kind,
            metavar=limit.metavar,
            help=f"{limit.help}{', ' + per if per else ''}{_default(limit)}",
        )


def _default(limit: Limit) -> str:
    """`` (default: 256M)``, as a flag's help shows it."""
    value = limit.default
    if value is None:
        return ""
    if limit.kind == "bytes":
        shown = next(
            f"{value / scale:g}{unit}"
            for scale, unit in ((2**30, "G"), (2**20, "M"), (2**10, "K"), (1, ""))
            if value >= scale or scale == 1
        )
    else:
        shown = f"{value:g}"
    return f" (default: {shown})"


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The limits given on the command line (by :func:`add_flags`), by name."""
    values = {limit.name: getattr(args, f"limit_{limit.name}", None) for limit in LIMITS}
    return {name: value for name, value in values.items() if value is not None}
