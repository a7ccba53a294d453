"""CPU pinning: each running job gets a CPU of its own, host-wide.

Judges want a job's timing to be stable: with ``SANDBOX_PIN_CPUS=2-3`` every
job runs pinned to one of those CPUs, and no two jobs of this host (whatever
worker process runs them) share one at a time: each CPU is a host-wide slot
(:class:`sandbox.kernel.slots.Slots` on ``<run_dir>/cpus``). A job waits for a free
CPU before it starts; its wall clock starts after.
"""

from __future__ import annotations

import re

__all__ = ["parse_cpu_list"]

_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """``"0-2,5"`` -> ``(0, 1, 2, 5)``, the kernel's cpu list syntax (cpuset(7)).

    Raises:
        ValueError: not a cpu list, or a range that runs backwards.
    """
    text = text.strip()
    if not text:
        return ()
    if not _LIST.match(text):
        raise ValueError(f"not a CPU list: {text!r} (use e.g. '2-3' or '0,2,4')")
    cpus: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        start, end = int(first), int(last or first)
        if end < start:
            raise ValueError(f"CPU range {part} runs backwards")
        cpus.extend(range(start, end + 1))
    return tuple(dict.fromkeys(cpus))
