"""What the API's routes share (:class:`Api`): a submission into a ``sandbox.judge``
task and its stored record, the task's result out as Judge0 shows it, the rate and
queue limits, callbacks; and Judge0's errors (:class:`ApiError`, :class:`FieldErrors`).

Stateless: a submission's token is its Celery task id (a UUID4, as Judge0's),
its request is a Redis key that expires with its result
(``SANDBOX_RESULT_EXPIRES``), and its result is the task's result; any API
process answers for any submission. Each submission is one ``sandbox.judge``
task with one test case per run, so the worker compiles once (with the
language's compile limits) and Judge0's fields come from the judge's
compile step and cases (:func:`sandbox.api.judge0.outcome`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import shlex
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from sandbox import languages
from sandbox.api import judge0
from sandbox.api.models import (
    SubmissionIn,
    SubmissionOut,
)
from sandbox.api.results import Results, Unsubscribed
from sandbox.api.settings import ApiSettings

__all__ = [
    "DEFAULT_FIELDS",
    "INDEX_KEY",
    "JUDGE0_VERSION",
    "PER_PAGE",
    "Api",
    "ApiError",
    "FieldErrors",
    "fields_of",
    "flag",
]

log = logging.getLogger("sandbox.api")
JUDGE0_VERSION = "1.13.1"  # the Judge0 CE API spoken (the official client keys its ids by it)
RECORD_KEY = "sandbox:api:submission:{}"
INDEX_KEY = "sandbox:api:submissions"  # tokens by creation time, for GET /submissions
CALLBACKS_KEY = "sandbox:api:callbacks"  # tokens whose callback is not sent yet
SENT_KEY = "sandbox:api:callback-sent:{}"  # one API process sends a callback
PER_PAGE = 20  # Judge0's page of GET /submissions
RATE_KEY = "sandbox:api:rate:{}:{}"
QUEUE_FULL_RETRY = 5  # seconds a client waits after 503 "queue is full"

# Judge0's fields of a submission, in its order; ours after them. ``fields=*``
# is Judge0's only: the official client sets each field it is given on a model
# that has no others (it raises on ours), so ours come by name or by default.
FIELDS: tuple[str, ...] = tuple(SubmissionOut.model_fields)
OURS = ("oom_killed", "memory_peak", "verdict")
JUDGE0_FIELDS = tuple(f for f in FIELDS if f not in OURS)
DEFAULT_FIELDS = (
    "token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status",
    "oom_killed", "memory_peak", "verdict",
)  # fmt: skip
_ENCODED = ("source_code", "stdin", "expected_output", "stdout", "stderr", "compile_output")
_DECIMALS = ("time", "wall_time", "cpu_time_limit", "cpu_extra_time", "wall_time_limit")
_READY = ("SUCCESS", "FAILURE", "REVOKED")
_OPTIONS = re.compile(r"[A-Za-z0-9 _+=.,/:@-]*")  # JudgeSpec.compile_options's characters


class FieldErrors(Exception):
    """A submission refused: field -> messages, as Judge0 (Rails) answers 422."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class ApiError(Exception):
    """An answer other than 2xx: status, Judge0's ``{"error": ...}``, headers."""

    def __init__(self, status: int, error: str | None, headers: dict[str, str] | None = None):
        super().__init__(error)
        self.status, self.error, self.headers = status, error, headers or {}


def _stamp(moment: datetime) -> str:
    """Rails' JSON time: ``2024-01-31T12:00:00.123Z`` (what the official client parses)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _decimal(value: Any) -> str | None:
    """A decimal as Rails shows one: a string, ``"5.0"``, ``"0.002"``."""
    if value is None:
        return None
    text = f"{float(value):.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _b64(text: str | None) -> str | None:
    return None if text is None else base64.b64encode(text.encode()).decode()


def _unb64(name: str, text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text.replace("\n", ""), validate=True).decode(errors="replace")
    except (binascii.Error, ValueError) as exc:
        raise FieldErrors({name: ["is not valid base64"]}) from exc


class Api:
    """What the routes share: settings, Redis, the Celery client, the languages."""

    def __init__(self, settings: ApiSettings) -> None:
        from worker import broker
        from worker.app import app as celery
        from worker.app import settings as worker_settings
        from worker.tasks import judge

        self.settings = settings
        self.worker_settings = worker_settings
        self.celery = celery
        self.judge = judge
        self.redis: aioredis.Redis = broker.async_client(worker_settings)
        self.results = Results(self.redis, celery.backend.decode, self._meta_at)
        # Publishing is kombu's blocking I/O: a few threads of our own do it.
        self.threads = ThreadPoolExecutor(8, thread_name_prefix="sandbox-api")
        self.http = httpx.AsyncClient(timeout=settings.callback_timeout, follow_redirects=False)
        self.tasks: set[asyncio.Task[None]] = set()
        known = languages.known()
        self.languages = judge0.language_ids({name: name for name in known}, settings.language_ids)
        self.info = known
        self.queues = sorted({worker_settings.queue, *worker_settings.routes.values()})

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.http.aclose()
        await self.results.close()
        await self.redis.aclose()
        self.threads.shutdown(wait=False, cancel_futures=True)

    async def blocking(self, work: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.threads, work)

    # -- a submission in, a judge task out -----------------------------------------

    def spec(self, sub: SubmissionIn, encoded: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """The submission's ``sandbox.judge`` fields and its stored record.

        Raises:
            FieldErrors: what Judge0 would refuse, by field.
        """
        s = self.settings
        errors: dict[str, list[str]] = {}

        def bad(name: str, message: str) -> None:
            errors.setdefault(name, []).append(message)

        def number(
            name: str, value: Any, default: Any, low: float, high: float, *, gt: bool = False
        ) -> Any:
            value = default if value is None else value
            if (value <= low) if gt else (value < low):
                bad(name, f"must be greater than {'' if gt else 'or equal to '}{low:g}")
            elif value > high:
                bad(name, f"must be less than or equal to {high:g}")
            return value

        try:
            source = _unb64("source_code", sub.source_code) if encoded else sub.source_code
            stdin = _unb64("stdin", sub.stdin) if encoded else sub.stdin
            expected = (
                _unb64("expected_output", sub.expected_output) if encoded else sub.expected_output
            )
        except FieldErrors as exc:
            raise FieldErrors(exc.errors) from None
        language = None
        if sub.language_id is None:
            bad("language_id", "can't be blank")
        elif sub.language_id not in self.languages:
            bad("language_id", f"language with id {sub.language_id} doesn't exist")
        else:
            language = self.languages[sub.language_id][0]
        if not source and not sub.additional_files:
            bad("source_code", "can't be blank")
        runs = number(
            "number_of_runs", sub.number_of_runs, s.number_of_runs, 0, s.max_number_of_runs, gt=True
        )
        cpu = number(
            "cpu_time_limit", sub.cpu_time_limit, s.cpu_time_limit, 0, s.max_cpu_time_limit, gt=True
        )
        extra = number(
            "cpu_extra_time", sub.cpu_extra_time, s.cpu_extra_time, 0, s.max_cpu_extra_time
        )
        wall = number(
            "wall_time_limit", sub.wall_time_limit, s.wall_time_limit, 1, s.max_wall_time_limit
        )
        memory = number("memory_limit", sub.memory_limit, s.memory_limit, 4096, s.max_memory_limit)
        stack = number("stack_limit", sub.stack_limit, s.stack_limit, 0, s.max_stack_limit)
        pids = number(
            "max_processes_and_or_threads", sub.max_processes_and_or_threads,
            s.max_processes_and_or_threads, 0, s.max_max_processes_and_or_threads, gt=True,
        )  # fmt: skip
        file_size = number(
            "max_file_size", sub.max_file_size, s.max_file_size, 0, s.max_max_file_size
        )
        for name in (
            "enable_per_process_and_thread_time_limit",
            "enable_per_process_and_thread_memory_limit",
        ):
            if getattr(sub, name):
                bad(name, "this option cannot be enabled")
        if sub.enable_network:
            bad("enable_network", "enabling network is not allowed")
        if sub.compiler_options and language is not None:
            if not self.info[language].takes_compile_options:
                bad("compiler_options", "setting compiler options is only allowed for "
                    "compiled languages")  # fmt: skip
            elif len(sub.compiler_options) > 512:
                bad("compiler_options", "is too long (maximum is 512 characters)")
            elif not _OPTIONS.fullmatch(sub.compiler_options):
                bad("compiler_options", "may hold only letters, digits, spaces and _+=.,/:@-")
        arguments: list[str] = []
        if sub.command_line_arguments:
            try:
                arguments = shlex.split(sub.command_line_arguments)
            except ValueError as exc:  # an unclosed quote
                bad("command_line_arguments", f"cannot be split into arguments ({exc})")
            if len(sub.command_line_arguments) > 512:
                bad("command_line_arguments", "is too long (maximum is 512 characters)")
        if sub.callback_url:
            why = self._callback_refused(sub.callback_url)
            if why:
                bad("callback_url", why)
        if errors:
            raise FieldErrors(errors)
        assert language is not None
        info = self.info[language]
        limits = {
            "cpu_time": cpu + extra,
            "wall_time": wall,
            "memory": int(memory) * 1024,
            "pids": pids,
            "output": max(file_size * 1024, 1024),
            "file_size": file_size * 1024,
        }
        if stack:
            limits["stack"] = max(int(stack) * 1024, 64 * 1024)
        fields: dict[str, Any] = {
            "code": source or "",
            "language": language,
            "tests": [{"stdin": stdin or "", "name": f"run {i + 1}"} for i in range(runs)],
            "limits": limits,
            "stop_on_failure": True,
            "output_preview": min(max(file_size * 1024, 1024), 2**20),
        }
        if sub.compiler_options:
            fields["compile_options"] = sub.compiler_options
        if arguments:
            fields["argv"] = arguments
        if sub.additional_files:
            fields["archive"] = sub.additional_files
        record = {
            "language_id": sub.language_id,
            "language": language,
            "source_code": source,
            "stdin": stdin,
            "expected_output": expected,
            "number_of_runs": runs,
            "cpu_time_limit": cpu,
            "cpu_extra_time": extra,
            "wall_time_limit": wall,
            "memory_limit": int(memory),
            "stack_limit": stack,
            "max_processes_and_or_threads": pids,
            "enable_per_process_and_thread_time_limit": False,
            "enable_per_process_and_thread_memory_limit": False,
            "max_file_size": file_size,
            "redirect_stderr_to_stdout": bool(
                s.redirect_stderr_to_stdout
                if sub.redirect_stderr_to_stdout is None
                else sub.redirect_stderr_to_stdout
            ),
            "enable_network": False,
            "compiler_options": sub.compiler_options,
            "command_line_arguments": sub.command_line_arguments,
            "callback_url": sub.callback_url,
            "additional_files": sub.additional_files,
            "time_factor": info.time_factor,
            "syntax_check_only": info.compiled and not info.artifacts,
        }
        return fields, record

    def _callback_refused(self, url: str) -> str | None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "must be an http or https URL"
        host = parts.hostname.lower()
        allowed = {h.lower() for h in self.settings.callback_hosts}
        if not allowed:
            return "setting callback is not allowed"
        if host in allowed or (parts.port and f"{host}:{parts.port}" in allowed):
            return None
        return f"host {host} is not an allowed callback host"

    async def admit(self, who: str, count: int) -> None:
        """Refuse ``count`` more submissions from ``who`` beyond the rate, or a full queue.

        Raises:
            ApiError: 429 (rate, with Retry-After) or 503 (queue full, with Retry-After).
        """
        now = time.time()
        window = int(now // 60)
        key = RATE_KEY.format(hashlib.sha256(who.encode()).hexdigest()[:24], window)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incrby(key, count)
            pipe.expire(key, 61)
            for queue in self.queues:
                pipe.llen(queue)
            done = await pipe.execute()
        used, waiting = int(done[0]), sum(int(n) for n in done[2:])
        if used > self.settings.rate:
            retry = max(1, int((window + 1) * 60 - now))
            raise ApiError(
                429,
                f"rate limit: {self.settings.rate} submissions a minute per token",
                {"Retry-After": str(retry)},
            )
        if waiting + count > self.settings.max_queue_size:
            raise ApiError(503, "queue is full", {"Retry-After": str(QUEUE_FULL_RETRY)})

    async def submit(self, fields: dict[str, Any], record: dict[str, Any]) -> str:
        """Store the record, send the task; its token."""
        token = str(uuid.uuid4())
        record = {**record, "token": token, "created_at": _stamp(datetime.now(UTC))}
        ttl = self.worker_settings.result_expires
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(RECORD_KEY.format(token), json.dumps(record), ex=ttl)
            pipe.zadd(INDEX_KEY, {token: now})
            pipe.zremrangebyscore(INDEX_KEY, "-inf", now - ttl)  # their records expired
            pipe.expire(INDEX_KEY, ttl)
            if record.get("callback_url"):  # any API process sends it if this one stops
                pipe.zadd(CALLBACKS_KEY, {token: now})
                pipe.zremrangebyscore(CALLBACKS_KEY, "-inf", now - ttl)
            await pipe.execute()
        try:
            await self.blocking(partial(self.judge.apply_async, kwargs=fields, task_id=token))
        except ValidationError as exc:
            await self.forget(token)
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "source_code"
            name = "additional_files" if where.startswith(("archive", "files")) else "source_code"
            raise FieldErrors({name: [str(first.get("msg", "is invalid"))]}) from None
        except Exception:
            await self.forget(token)
            raise
        if record.get("callback_url"):
            self._spawn(self._call_back(token))
        return token

    async def forget(self, token: str) -> None:
        """A submission's record, result, place in the index and callback, removed."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(RECORD_KEY.format(token), self.celery.backend.get_key_for_task(token))
            pipe.zrem(INDEX_KEY, token)
            pipe.zrem(CALLBACKS_KEY, token)
            await pipe.execute()

    async def resume_callbacks(self) -> int:
        """Wait for, and send, every callback not sent yet: those of API processes that
        stopped before their submissions' results came (each is sent once: a claim)."""
        try:
            pending = await self.redis.zrange(CALLBACKS_KEY, 0, -1)
        except RedisError as exc:
            log.warning("pending callbacks not resumed: %s", exc)
            return 0
        for raw in pending:
            self._spawn(self._call_back(raw.decode() if isinstance(raw, bytes) else str(raw)))
        return len(pending)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _key(self, token: str) -> str:
        key = self.celery.backend.get_key_for_task(token)
        return key.decode() if isinstance(key, bytes) else str(key)

    async def meta(self, token: str) -> dict[str, Any] | None:
        return await self._meta_at(self._key(token))

    async def _meta_at(self, key: str) -> dict[str, Any] | None:
        raw = await self.redis.get(key)
        if raw is None:
            return None
        meta: dict[str, Any] = self.celery.backend.decode(raw)
        return meta

    async def record(self, token: str) -> dict[str, Any] | None:
        raw = await self.redis.get(RECORD_KEY.format(token))
        return None if raw is None else dict(json.loads(raw))

    async def finished(self, token: str, within: float | None) -> dict[str, Any] | None:
        """The task's meta once it is ready, None if not within ``within`` seconds: told by
        the result's channel (:mod:`sandbox.api.results`), or by polling if that fails."""
        deadline = None if within is None else time.monotonic() + within
        try:
            return await self.results.wait(self._key(token), within)
        except Unsubscribed:
            pass
        delay = 0.002
        while True:
            meta = await self.meta(token)
            if meta is not None and meta.get("status") in _READY:
                return meta
            if deadline is not None and time.monotonic() >= deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.05)

    async def _call_back(self, token: str) -> None:
        """PUT the result to the submission's callback_url, as Judge0 does (base64, its
        fields), once: the API process that claims it first sends it. With Redis away,
        it stays pending for the next API process that starts."""
        try:
            await self._send_callback(token)
        except (RedisError, Unsubscribed) as exc:
            log.warning("callback of %s left pending: %s", token, exc)

    async def _send_callback(self, token: str) -> None:
        ttl = self.worker_settings.result_expires
        meta = await self.finished(token, float(ttl))
        record = await self.record(token)
        if meta is None or record is None:
            await self.redis.zrem(CALLBACKS_KEY, token)  # expired: nothing to send
            return
        if not await self.redis.set(SENT_KEY.format(token), "1", nx=True, ex=ttl):
            return  # another API process sends it
        await self.redis.zrem(CALLBACKS_KEY, token)
        body = self.view(record, meta, DEFAULT_FIELDS, encoded=True)
        for attempt in range(self.settings.callback_tries):
            try:
                await self.http.put(record["callback_url"], json=body)
                return
            except httpx.HTTPError as exc:
                log.warning("callback of %s, try %d: %s", token, attempt + 1, exc)

    # -- a submission out -------------------------------------------------------

    def view(
        self,
        record: dict[str, Any],
        meta: dict[str, Any] | None,
        fields: tuple[str, ...],
        *,
        encoded: bool,
    ) -> dict[str, Any]:
        """The submission as Judge0 shows it, with ``fields`` only."""
        state = (meta or {}).get("status", "PENDING")
        out: dict[str, Any] = {k: record.get(k) for k in FIELDS if k in record}
        status = judge0.IN_QUEUE
        if state in ("STARTED", "RETRY"):
            status = judge0.PROCESSING
        elif state == "SUCCESS" and isinstance(meta, dict):
            done = judge0.outcome(
                meta.get("result") or {},
                expected_output=record.get("expected_output"),
                cpu_time_limit=float(record["cpu_time_limit"]) * record.get("time_factor", 1),
                wall_time_limit=float(record["wall_time_limit"]) * record.get("time_factor", 1),
                redirect_stderr_to_stdout=bool(record.get("redirect_stderr_to_stdout")),
                syntax_check_only=bool(record.get("syntax_check_only")),
            )
            status = done.status
            out.update(
                stdout=done.stdout,
                stderr=done.stderr,
                compile_output=done.compile_output,
                message=done.message,
                exit_code=done.exit_code,
                exit_signal=done.exit_signal,
                time=done.time,
                wall_time=done.wall_time,
                memory=done.memory,
                oom_killed=done.oom_killed,
                memory_peak=done.memory_peak,
                verdict=done.verdict,
            )
        elif state in _READY:
            status = judge0.INTERNAL_ERROR
            out["message"] = "the job failed on its worker"
        if state in _READY and meta and meta.get("date_done"):
            done_at = datetime.fromisoformat(str(meta["date_done"]))
            out["finished_at"] = _stamp(done_at if done_at.tzinfo else done_at.replace(tzinfo=UTC))
        out["status"] = {"id": status.id, "description": status.description}
        out["status_id"] = status.id
        language = self.languages.get(record.get("language_id") or -1)
        out["language"] = {
            "id": record.get("language_id"),
            "name": language[1] if language else None,
        }
        for name in _DECIMALS:
            if out.get(name) is not None:
                out[name] = _decimal(out[name])
        if encoded:
            for name in _ENCODED:
                out[name] = _b64(out.get(name))
            out["message"] = _b64(out.get("message"))
        return {name: out.get(name) for name in fields}


def fields_of(fields: str | None) -> tuple[str, ...]:
    """Judge0's ``fields=``: a comma list, ``*`` for all; none: the default ones."""
    if not fields:
        return DEFAULT_FIELDS
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    invalid = [f for f in wanted if f not in FIELDS and f != "*"]
    if invalid:
        raise ApiError(400, f"invalid fields: [{', '.join(invalid)}]")
    if "*" in wanted:
        return JUDGE0_FIELDS + tuple(f for f in OURS if f in wanted)
    return tuple(wanted) or DEFAULT_FIELDS


def flag(value: str | None) -> bool:
    return value == "true"
