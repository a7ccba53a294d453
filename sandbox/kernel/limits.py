"""Resource limits the cgroup does not cover (setrlimit(2)).

Memory, processes and CPU accounting live in the job's cgroup
(:mod:`sandbox.kernel.cgroups`). Per-process rlimits add: no core dumps, a cap on one
file's size (the writable layer is capped by its tmpfs too), open files, and a
CPU-time backstop per process; the supervisor enforces the job's total CPU
time from the cgroup's counter, which includes every process.
"""

from __future__ import annotations

import resource

__all__ = ["apply_rlimits"]


def apply_rlimits(rlimits: tuple[tuple[int, int, int], ...]) -> None:
    """Set each ``(resource, soft, hard)`` on the current process.

    Raises:
        OSError, ValueError: the kernel refused a value.
    """
    for res, soft, hard in rlimits:
        resource.setrlimit(res, (soft, hard))
