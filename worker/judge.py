"""A judge through the service: its budget and size, and its cases shared among the
fleet's free workers (``JudgeSpec.spread``).

The worker that takes a ``sandbox.judge`` task with ``spread`` > 1 compiles
the submission once and deals its cases into ``spread`` shares (round robin,
so that each share has small and large cases). It sends all but the first
as ``sandbox.judge_share`` tasks, the compiled artifacts with them, to the
judge's own queue, and judges the first share itself. Then it takes back
every share no worker has started and judges it too; it waits only for
shares that other workers hold, each at most its budget (every case's wall
limit, one after another), and judges itself a share whose worker did not
answer by then.

Each share is claimed once, in Redis (``SET NX``), by the coordinator or by
the worker that takes its message; a worker that finds it claimed returns
at once. So a judge never waits for a worker to come free (no deadlock when
every worker is a coordinator), a busy fleet costs it a message and a claim
per share, and an idle one divides its cases among the workers it finds.
A lost share worker costs the coordinator that share's budget (and 10 s) at most.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task
from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from sandbox import languages
from sandbox.judging import (
    CaseResult,
    JudgeResult,
    JudgeSpec,
    TestCase,
    Verdict,
    compile_submission,
    run_cases,
    verdict_of,
)
from sandbox.spec import File, Limits
from worker.app import JUDGE_LIMIT, app, settings
from worker.runtime import runtime_host

__all__ = ["judge_budget", "judge_share", "shared", "submission_size"]

log = logging.getLogger("sandbox.worker")
CLAIM_KEY = "sandbox:share:{}"
# Seconds a coordinator waits for a share beyond its budget (results through Redis,
# container starts): a share taken by a worker was running when it was claimed.
_SLACK = 10.0


def shared(spec: JudgeSpec, task_id: str | None, queue: str | None) -> JudgeResult:
    """Judge ``spec`` here and on free workers: compile once, share the cases."""
    host = runtime_host()
    compiled, artifacts = host.call(lambda rt: compile_submission(spec, rt, task_id))
    if compiled is not None and compiled.status is not Verdict.ACCEPTED:
        return verdict_of(spec, compiled, [])
    count = min(spec.spread, settings.max_spread, len(spec.tests))
    shares = [list(range(len(spec.tests)))[k::count] for k in range(count)]
    sent = [_send(spec, share, artifacts, queue) for share in shares[1:]]
    done: dict[int, CaseResult] = {}

    def here(share: list[int]) -> None:
        cases = [spec.tests[i] for i in share]
        results = host.call(lambda rt: run_cases(spec, cases, artifacts, rt, task_id=task_id))
        done.update(zip(share, results, strict=True))

    here(shares[0])
    elsewhere = []
    for share, pending in zip(shares[1:], sent, strict=True):
        if pending is None or _claim(pending.id):  # not sent, or not started: judge it here
            here(share)
        else:
            elsewhere.append((share, pending))
    taken = 0
    for share, pending in elsewhere:
        got = _wait(pending, _budget(spec, len(share)))
        if got is None:
            log.warning("judge %s: share %s had no answer; judged here", task_id, pending.id)
            here(share)
        else:
            done.update(zip(share, got, strict=True))
            taken += 1
    log.info(
        "judge %s: %d cases in %d shares, %d judged elsewhere", task_id, len(done), count, taken
    )
    return verdict_of(spec, compiled, [done[i] for i in range(len(spec.tests))])


def _send(
    spec: JudgeSpec, share: list[int], artifacts: dict[str, File], queue: str | None
) -> AsyncResult | None:
    """The share sent as a task (None: it could not be, and is judged here)."""
    # The coordinator scores the groups: a share's own would name cases it lacks.
    update = {"tests": [spec.tests[i] for i in share], "spread": 1, "groups": []}
    part = spec.model_copy(update=update)
    size = submission_size(part) + sum(len(f.content) for f in artifacts.values())
    if size > settings.max_submission:
        return None
    try:
        return judge_share.apply_async(
            kwargs={
                "spec": part.model_dump(mode="json"),
                "artifacts": {n: f.model_dump(mode="json") for n, f in artifacts.items()},
            },
            task_id=f"share-{uuid.uuid4()}",
            queue=queue,
            expires=_budget(spec, len(share)) + settings.time_margin,
        )
    except (OperationalError, RedisError) as exc:  # not sent: judged here
        log.warning("a judge's share not sent (%s); judged here", exc)
        return None


def _claim(share_id: str) -> bool:
    """True if this caller is the one to judge the share (SET NX in Redis)."""
    try:
        claimed = app.backend.client.set(
            CLAIM_KEY.format(share_id), "1", nx=True, ex=settings.result_expires
        )
    except RedisError:
        return True  # Redis away: the coordinator judges it (a duplicate at worst)
    return bool(claimed)


def _wait(pending: AsyncResult, budget: float) -> list[CaseResult] | None:
    """A share's results from the worker that took it (None: none within ``budget``)."""
    try:
        data = pending.get(timeout=budget + _SLACK, propagate=False, disable_sync_subtasks=False)
    except (ResultTimeout, OperationalError, RedisError):  # judged here
        return None
    finally:
        pending.forget()
    if isinstance(data, BaseException):
        log.warning("share %s failed on its worker: %r", pending.id, data)
    if not isinstance(data, list):
        return None
    return [CaseResult.model_validate(c) for c in data]


def judge_budget(spec: JudgeSpec) -> float:
    """Seconds a judge task takes at worst: compile, then every case one after another."""
    lang = languages.get(spec.language)
    compile_limits = spec.compile_limits or Limits.model_validate(lang.compile_limits)
    compile_time = compile_limits.wall_time if lang.compiled else 0.0
    return float(compile_time + _budget(spec, len(spec.tests)))


def submission_size(spec: JudgeSpec) -> int:
    """Bytes a submission carries through Redis, about: code, cases, files."""
    size = len(spec.code.encode())
    size += sum(len(f.content) for f in spec.files.values())
    for case in spec.tests:
        size += len(case.stdin.encode()) + len((case.expected or "").encode())
        size += sum(len(f.content) for f in case.files.values())
    for program in (spec.checker, spec.interactor):
        if program is not None:
            size += len(program.code.encode())
    return size


def _budget(spec: JudgeSpec, cases: int) -> float:
    """Seconds ``cases`` of ``spec`` take at worst, one after another."""
    per_case = spec.limits.wall_time * languages.get(spec.language).time_factor
    for judge_program in (spec.checker, spec.interactor):
        if judge_program is not None:
            per_case += judge_program.limits.wall_time
    return float(per_case * cases)


@app.task(name="sandbox.judge_share", bind=True, time_limit=JUDGE_LIMIT)
def judge_share(self: Task, spec: dict[str, Any], artifacts: dict[str, Any]) -> Any:
    """A share of a judge's cases: their results as dicts, or None if claimed by another."""
    if not _claim(self.request.id or ""):
        log.info("share %s: taken back by its judge", self.request.id)
        return None
    part = JudgeSpec.model_validate(spec)
    files = {name: File.model_validate(f) for name, f in artifacts.items()}
    cases: list[TestCase] = part.tests
    results = runtime_host().call(
        lambda rt: run_cases(part, cases, files, rt, task_id=self.request.id)
    )
    log.info("share %s: %d cases judged", self.request.id, len(results))
    return [c.model_dump(mode="json") for c in results]
