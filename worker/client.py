"""Submitting jobs from asyncio programs (FastAPI judge backends...).

``await sandbox.submit(code, stdin=..., limits=...)`` sends the job through
Redis and awaits its JobResult without blocking the event loop: the publish
and the wait run in a worker thread. It needs no root and imports nothing of
the kernel machinery.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sandbox.result import JobResult
from worker.tasks import run

__all__ = ["submit"]


async def submit(code: str, *, within: float | None = None, **fields: Any) -> JobResult:
    """Run ``code`` on a worker and return its result.

    Args:
        code: the program's source.
        within: seconds to wait for the result (None: as long as it takes); a
            parameter rather than asyncio.timeout, so that the waiting thread ends too.
        **fields: the other JobSpec fields (``language``, ``stdin``, ``limits``...).

    Raises:
        pydantic.ValidationError: the job is invalid (nothing was sent).
        worker.tasks.SubmitError: Redis is unreachable.
        celery.exceptions.TimeoutError: no result within ``within`` seconds.
    """
    pending = await asyncio.to_thread(run.delay, code, **fields)
    data = await asyncio.to_thread(pending.get, timeout=within)
    return JobResult.model_validate(data)
