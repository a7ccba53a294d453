"""The tasks ``sandbox.run`` (JobSpec fields) and ``sandbox.judge`` (JudgeSpec fields).

Clients call ``sandbox.run.delay(code, stdin=..., limits=...)``. The task
class validates the arguments on the client before anything is sent (a bad
call raises pydantic's ValidationError there), routes by language, and turns
an unreachable Redis into a clear :class:`SubmitError`. The worker validates
again and runs the job through the process's :class:`sandbox.Runtime`; the
result is the JobResult as a JSON-able dict. Failures of the sandbox itself
come back as ``status: internal_error`` results, never as exceptions the
client has to import.

Delivery is at least once (docs/adr/0010-job-leases.md). A client that may
submit the same job twice (a retried HTTP request, a restarted backend)
passes ``idempotency_key=...``: the job's task id is derived from it, and a
second submit with the same key returns the first one's pending result
instead of sending the job again, for as long as results are kept.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from billiard.einfo import ExceptionWithTraceback  # type: ignore[import-untyped]
from celery import Task, states
from celery.exceptions import TimeoutError as ResultTimeout
from celery.exceptions import WorkerLostError
from celery.result import AsyncResult
from celery.worker.request import Request
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from sandbox.errors import SandboxError
from sandbox.judging import JudgeSpec
from sandbox.result import JobResult
from sandbox.spec import JobSpec
from worker import broker, metrics
from worker.app import JUDGE_LIMIT, app, limits_settings, settings
from worker.judge import judge_budget, shared, submission_size
from worker.runtime import runtime_host

if TYPE_CHECKING:
    from pydantic import BaseModel

    from sandbox.judging import JudgeResult

__all__ = [
    "SandboxResult",
    "SubmitError",
    "idempotent_id",
    "judge",
    "run",
]

log = logging.getLogger("sandbox.worker")
M = TypeVar("M", bound="BaseModel")
ATTEMPTS_KEY = "sandbox:attempts:{}"  # deliveries of a job
STRIKES_KEY = "sandbox:strikes:{}"  # deliveries whose worker process died
IDEMPOTENCY_KEY = "sandbox:submitted:{}"
# A submit holds an idempotency key this long while it sends the job; one
# that dies before sending (the marker still says "claimed") lets a retry
# take over once it expires.
CLAIM_SECONDS = 10


class SubmitError(SandboxError):
    """The job could not be sent (Redis unreachable); says what to check."""


_LOST_REDIS = (RedisError, OperationalError, OSError)
# Celery's result consumer gives up reconnecting with this RuntimeError.
_GAVE_UP = "result store"
_WAIT_SLICE = 1.0  # seconds of Celery's wait between reads of the stored result


def _lost_redis(exc: BaseException) -> bool:
    return isinstance(exc, _LOST_REDIS) or (isinstance(exc, RuntimeError) and _GAVE_UP in str(exc))


class SandboxResult(AsyncResult):  # type: ignore[misc]
    """A job's pending result whose :meth:`get` rides through Redis restarts.

    Celery's pub/sub result consumer may give up after a few reconnection
    attempts ("The Celery application must be restarted"), or, after Redis
    restarts, wait for a message that never comes (its subscription went
    with the old connection). Here Celery's wait runs in slices of a second,
    each followed by a read of the stored result; a lost connection switches
    to reading it every half second, for as long as Redis stays away up to
    ``SANDBOX_REDIS_OUTAGE`` (and within ``timeout``). The worker stores the
    result once Redis is back.
    """

    def get(self, timeout: float | None = None, propagate: bool = True, **kwargs: Any) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _WAIT_SLICE if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return super().get(min(left, _WAIT_SLICE), propagate, **kwargs)
            except ResultTimeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                meta = self._stored_if_final()  # a result the subscription missed
            except Exception as exc:
                if not _lost_redis(exc):
                    raise
                log.warning("lost Redis waiting for job %s (%s): polling its result", self.id, exc)
                meta = self._wait_stored(deadline)
            if meta is not None:
                with contextlib.suppress(Exception):  # only its subscription, maybe gone
                    self.backend.remove_pending_result(self)
                return self._outcome(meta, propagate)

    def _stored_if_final(self) -> dict[str, Any] | None:
        try:
            meta: dict[str, Any] = self.backend.get_task_meta(self.id)
        except Exception as exc:
            if _lost_redis(exc):
                return None  # Redis is away: the next slice finds out
            raise
        return meta if meta["status"] in states.READY_STATES else None

    def _wait_stored(self, deadline: float | None) -> dict[str, Any]:
        """Poll the stored state until it is final (Redis may be away meanwhile)."""
        lost_since = time.monotonic()
        while True:
            try:
                meta: dict[str, Any] = self.backend.get_task_meta(self.id)
                if meta["status"] in states.READY_STATES:
                    return meta
                lost_since = time.monotonic()  # Redis answers: it is the job that runs on
            except Exception as exc:
                if not _lost_redis(exc):
                    raise
                if time.monotonic() - lost_since > settings.redis_outage:
                    raise SubmitError(
                        f"lost Redis at {broker.display_url(settings)} "
                        f"for over {settings.redis_outage:g} s "
                        f"waiting for job {self.id}; its result is kept "
                        f"{settings.result_expires} s once stored (SANDBOX_REDIS_OUTAGE)"
                    ) from exc
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeout(f"job {self.id}: no result in time")
            time.sleep(0.5)

    def _outcome(self, meta: dict[str, Any], propagate: bool) -> Any:
        """What Celery's get() returns or raises for a stored final state."""
        if meta["status"] == states.SUCCESS:
            return meta["result"]
        exc = self.backend.exception_to_python(meta["result"])
        if propagate:
            raise exc
        return exc


_drained: set[str] = set()  # jobs a drain ends (worker/lease.py): no strike, requeued


class SandboxRequest(Request):  # type: ignore[misc]
    """A delivery as the worker's main process sees it: counts those that killed their process.

    A pool process that dies mid-job (the OOM killer, a crash, SIGKILL) is a
    strike against the job, counted here before Celery requeues it
    (``task_reject_on_worker_lost``); a lost host, a drain or a duplicate is
    not, so that only a job that keeps killing its worker is given up on
    (docs/adr/0005-ack-policy.md). A job a drain ended goes back to the
    queue at once: Celery leaves a cancelled job's message to kombu's
    restore-on-close, which is off here (worker/broker.py).
    """

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        # Billiard reports a lost pool process as WorkerLostError, or as the
        # SystemExit it got when it is reported before it has ended.
        lost = isinstance(exc, (WorkerLostError, SystemExit, KeyboardInterrupt))
        drained = self.id in _drained
        if lost and not drained and not getattr(self, "_already_cancelled", False):
            _strike(self.id)
        outcome = super().on_failure(exc_info, send_failed_event, return_ok)
        if drained:
            _drained.discard(self.id)
            if not self.acknowledged:
                self.reject(requeue=True)
        return outcome


def _strike(task_id: str) -> None:
    try:
        with app.backend.client.pipeline(transaction=False) as pipe:
            pipe.incr(STRIKES_KEY.format(task_id))
            pipe.expire(STRIKES_KEY.format(task_id), settings.result_expires)
            pipe.execute()
    except RedisError as exc:  # advisory: the job may then run once more
        log.warning("job %s: the death of its worker not counted: %s", task_id, exc)


class SandboxTask(Task):  # type: ignore[misc]
    """Validates a job on the client before it is sent, and routes it."""

    spec_model: type[JobSpec] | type[JudgeSpec] = JobSpec
    Request = SandboxRequest

    def AsyncResult(self, task_id: str, **kwargs: Any) -> SandboxResult:
        """The pending result of a job: :class:`SandboxResult`."""
        return SandboxResult(
            task_id, backend=self.backend, task_name=self.name, app=self.app, **kwargs
        )

    def check(self, spec: Any) -> None:
        """Refuse on the client what the worker would refuse anyway."""

    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        fields = dict(kwargs or {})
        if args:
            if len(args) != 1:
                raise TypeError(f"{self.name} takes the code as its only positional argument")
            fields["code"] = args[0]
        key = fields.pop("idempotency_key", None) or options.pop("idempotency_key", None)
        spec = self.spec_model.model_validate(fields)  # raises ValidationError, on the client
        self.check(spec)
        options.setdefault("queue", settings.routes.get(spec.language, settings.queue))
        options.setdefault("headers", {})["sandbox_sent_at"] = time.time()  # queue wait
        if not limits_settings.log_debug:  # what logs and events show instead of the code
            options.setdefault("kwargsrepr", f"<{spec.language}: {len(spec.code)} bytes of code>")
        payload = spec.model_dump(mode="json", exclude_unset=True)
        try:
            if key is not None:
                options["task_id"] = idempotent_id(self.name, str(key))
                if not self._claim(options["task_id"]):  # sent before: the same job's result
                    return self.AsyncResult(options["task_id"])
            sent = super().apply_async((), payload, **options)
        except (OperationalError, RedisError, RuntimeError) as exc:
            # RuntimeError: Celery's Redis result backend gives up reconnecting so.
            if isinstance(exc, RuntimeError) and "result store" not in str(exc):
                raise
            if key is not None:
                with contextlib.suppress(RedisError):  # not sent: a retry may send it
                    self.backend.client.delete(IDEMPOTENCY_KEY.format(options["task_id"]))
            raise SubmitError(
                f"cannot reach Redis at {broker.display_url(settings)}: {_first_cause(exc)} "
                "(is redis-server running? check SANDBOX_REDIS_URL and the SANDBOX_REDIS_* "
                "user, password file and TLS files)"
            ) from exc
        if key is not None:  # if this fails, the claim expires and a retry sends it again
            with contextlib.suppress(RedisError):
                self.backend.client.set(
                    IDEMPOTENCY_KEY.format(options["task_id"]), "sent", ex=settings.result_expires
                )
        return sent

    def _claim(self, task_id: str) -> bool:
        """True when this submit is the one to send the job.

        It is the first with its key, or the heir of one that died between
        claiming the key and sending (its claim expired). The marker is
        ``claimed`` (``SET NX``, for :data:`CLAIM_SECONDS`) while a submit
        sends, then ``sent`` as long as results are kept. A submit that finds
        it claimed waits for it to become one or the other.
        """
        key = IDEMPOTENCY_KEY.format(task_id)
        client = self.backend.client
        while True:
            if client.set(key, "claimed", nx=True, ex=CLAIM_SECONDS):
                return True
            marker = client.get(key)
            if marker is not None and marker != b"claimed":
                return False
            time.sleep(0.05)


def _first_cause(exc: BaseException) -> str:
    """What went wrong first, under Celery's and kombu's wrappers (a refused login, a bad CA)."""
    found: dict[type, BaseException] = {}
    seen: BaseException | None = exc
    for _ in range(20):  # the innermost Redis error, else the innermost OS error
        if seen is None:
            break
        for kind in (RedisError, OSError):
            if isinstance(seen, kind):
                found[kind] = seen
        seen = seen.__cause__ or seen.__context__
    first = found.get(RedisError) or found.get(OSError)
    return str(first) if first is not None else "connection refused or timed out"


def idempotent_id(task_name: str, key: str) -> str:
    """The task id of a job submitted with ``idempotency_key=key``: the same for each submit."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-worker:{task_name}:{key}"))


def _count_delivery(task_id: str) -> tuple[int, int]:
    """This job's deliveries so far, this one included, and its strikes, from Redis.

    One round trip (a pipeline, not a transaction: the counts are advisory);
    the keys expire with the result (docs/adr/0005-ack-policy.md). While Redis
    is away it retries, up to ``SANDBOX_REDIS_OUTAGE``, then runs the job uncounted.
    """
    key = ATTEMPTS_KEY.format(task_id)
    deadline = time.monotonic() + settings.redis_outage
    delay = 0.1
    while True:
        try:
            with app.backend.client.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, settings.result_expires)
                pipe.get(STRIKES_KEY.format(task_id))
                deliveries, _, strikes = pipe.execute()
            return int(deliveries), int(strikes or 0)
        except RedisError as exc:  # Redis restarts: the job waits for it, it does not fail
            if time.monotonic() > deadline:
                log.warning("job %s: delivery not counted, Redis unreachable: %s", task_id, exc)
                return 1, 0
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _stored_result(task_id: str) -> Any:
    """The job's stored result, if a run of it has ended; None if not, or unknown."""
    try:
        meta = app.backend.get_task_meta(task_id, cache=False)
    except RedisError:  # unknown: run it (at least once)
        return None
    return meta.get("result") if meta.get("status") == states.SUCCESS else None


def forget_delivery(task_id: str) -> None:
    """Uncount a delivery that a drain ends (worker/lease.py): it did not kill its worker."""
    _drained.add(task_id)
    try:
        app.backend.client.decr(ATTEMPTS_KEY.format(task_id))
    except RedisError as exc:  # advisory: the job may then count one delivery more
        log.warning("job %s: drained delivery not uncounted: %s", task_id, exc)


def _queue_wait(task: Task) -> None:
    sent = task.request.get("sandbox_sent_at") or (task.request.headers or {}).get(
        "sandbox_sent_at"
    )
    if isinstance(sent, (int, float)):
        metrics.observe_queue_wait(task.name, time.time() - sent)


@app.task(name="sandbox.run", bind=True, base=SandboxTask)
def run(self: Task, **fields: Any) -> dict[str, Any]:
    """Run one job in a fresh container; return its JobResult as a dict."""
    _queue_wait(self)
    with metrics.running("sandbox.run"):
        result = _run(self, fields)
    metrics.observe_job(str(fields.get("language", "python")), result)
    metrics.observe_pool(runtime_host().pool_stats())
    return result.model_dump(mode="json")


def _run(self: Task, fields: dict[str, Any]) -> JobResult:
    return _delivered(
        self,
        "job",
        JobResult,
        lambda task_id: runtime_host().execute(JobSpec.model_validate(fields), task_id),
        JobResult.internal_error,
    )


def _delivered(
    task: Task,
    what: str,
    model: type[M],
    work: Callable[[str | None], M],
    failed: Callable[[str], M],
) -> M:
    """Do ``work`` for this delivery of ``task``, unless it is one too many or done already.

    Deliveries and strikes (deliveries that killed their worker process,
    :class:`SandboxRequest`) are counted in Redis, so that a job that kills
    its worker every time, or is passed from lost host to lost host, ends
    with a failed result instead of looping forever. A redelivery whose job
    already has a stored result (its first run ended; its message came back)
    returns that ``model`` without running the job again. Failures of the
    sandbox and invalid fields become ``failed(message)``, a result.
    """
    task_id = task.request.id or ""
    deliveries, strikes = _count_delivery(task_id) if task_id else (1, 0)
    if deliveries > 1:
        metrics.observe_redelivery(task.name)
        stored = _stored_result(task_id)
        if stored is not None:
            log.warning("%s %s already has a result: not run again", what, task_id)
            return model.model_validate(stored)
    if strikes >= settings.max_attempts:
        log.error("%s %s killed its worker %d times; giving up", what, task_id, strikes)
        return failed(f"the {what} ended its worker process {strikes} times; not retried again")
    if deliveries > settings.max_deliveries:
        log.error("%s %s delivered %d times; giving up", what, task_id, deliveries)
        return failed(
            f"the {what} was delivered {deliveries - 1} times without a result "
            "(its workers or their hosts were lost); not retried again"
        )
    try:
        result = work(task_id or None)
    except SandboxError as exc:
        result = failed(str(exc))
    except ValueError as exc:  # pydantic's ValidationError, a judge budget
        result = failed(f"invalid {what}: {exc}")
    return result


class JudgeTask(SandboxTask):
    """``sandbox.judge``: a submission judged on one worker."""

    spec_model = JudgeSpec

    def check(self, spec: Any) -> None:
        size = submission_size(spec)
        if size > settings.max_submission:
            raise ValueError(
                f"this submission is {size} bytes (code, cases, files), more than the "
                f"{settings.max_submission} a judge task may carry (SANDBOX_MAX_SUBMISSION)"
            )
        budget = judge_budget(spec)
        if budget > settings.max_judge_time:
            raise ValueError(
                f"this submission may take {budget:g} s (wall limits of every case, one after "
                f"another), more than the {settings.max_judge_time:g} s a judge task may "
                "(lower limits.wall_time, or raise SANDBOX_MAX_JUDGE_TIME)"
            )


@app.task(name="sandbox.judge", bind=True, base=JudgeTask, time_limit=JUDGE_LIMIT)
def judge(self: Task, **fields: Any) -> dict[str, Any]:
    """Judge a submission: compile once, run every case; return its JudgeResult as a dict."""
    _queue_wait(self)
    with metrics.running("sandbox.judge"):
        result = _judge(self, fields)
    metrics.observe_submission(str(fields.get("language", "python")), result.status.value)
    metrics.observe_pool(runtime_host().pool_stats())
    return result.model_dump(mode="json")


def _with_problem(spec: JudgeSpec, fields: dict[str, Any]) -> JudgeSpec:
    """The submission to a problem package of this worker's: the package's cases, limits
    and validator, under the fields the client gave.

    Raises:
        SpecError: no such package, or one that cannot be judged.
    """
    from sandbox import problem

    package = problem.load(limits_settings.problems_dir / str(spec.problem))
    given = {k: v for k, v in fields.items() if k not in ("code", "language", "problem")}
    return package.spec(spec.code, spec.language, **given)


def _judge(self: JudgeTask, fields: dict[str, Any]) -> JudgeResult:
    from sandbox.judging import JudgeResult, Verdict
    from sandbox.judging import judge as judge_submission

    def work(task_id: str | None) -> JudgeResult:
        spec = JudgeSpec.model_validate(fields)
        if spec.problem is not None:
            spec = _with_problem(spec, fields)
        self.check(spec)
        if spec.spread > 1 and not spec.stop_on_failure and len(spec.tests) > 1:
            return shared(spec, task_id, (self.request.delivery_info or {}).get("routing_key"))
        return runtime_host().call(lambda runtime: judge_submission(spec, runtime, task_id=task_id))

    return _delivered(
        self,
        "submission",
        JudgeResult,
        work,
        lambda message: JudgeResult(status=Verdict.INTERNAL_ERROR, error=message),
    )
