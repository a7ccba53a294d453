"""The Judge0 CE-compatible HTTP API: the FastAPI app and its routes.

What the routes share, a submission in and out, is :mod:`sandbox.api.service`;
the request size limit is :mod:`sandbox.api.body`. It imports the Celery client
(``worker.tasks``) and the policy models, never the runtime or the kernel
mechanism (an import contract, pyproject.toml): it needs no root.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from redis.exceptions import RedisError

from sandbox.api import judge0
from sandbox.api.body import BodyLimit
from sandbox.api.models import (
    About,
    BatchRequest,
    LanguageDetail,
    LanguageSummary,
    StatusOut,
    SubmissionIn,
    SubmissionOut,
    WorkerQueue,
)
from sandbox.api.service import (
    INDEX_KEY,
    JUDGE0_VERSION,
    PER_PAGE,
    Api,
    ApiError,
    FieldErrors,
    fields_of,
    flag,
)
from sandbox.api.settings import ApiSettings

__all__ = ["create_app"]

log = logging.getLogger("sandbox.api")


def create_app(settings: ApiSettings | None = None) -> Any:
    """The ASGI app: FastAPI's, wrapped in the request size limit.

    Raises:
        ValueError: no authentication tokens on a bind other than loopback.
    """
    settings = settings or ApiSettings()
    state: dict[str, Api] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["api"] = Api(settings)
        resumed = await state["api"].resume_callbacks()
        if resumed:
            log.info("%d pending callbacks resumed", resumed)
        yield
        await state["api"].close()

    app = FastAPI(
        title="sandbox-worker: a Judge0 CE-compatible API",
        version=JUDGE0_VERSION,
        description="Judge0 CE's submissions API over sandbox-worker's Celery workers "
        "(docs/api.md: fields, statuses, where the mapping is lossy).",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )

    def api() -> Api:
        return state["api"]

    def token_of(request: Request, header: str) -> str:
        return request.headers.get(header) or request.query_params.get(header) or ""

    def authenticate(request: Request) -> str:
        """Judge0's authentication: a token in X-Auth-Token (or the query); its caller's key."""
        if settings.authn_tokens:
            given = token_of(request, settings.authn_header)
            if not any(hmac.compare_digest(given, t) for t in settings.authn_tokens):
                raise ApiError(401, None)
            return f"token:{given}"
        return f"address:{request.client.host if request.client else '-'}"

    def authorize(request: Request) -> None:
        given = token_of(request, settings.authz_header)
        if not settings.authz_tokens or not any(
            hmac.compare_digest(given, t) for t in settings.authz_tokens
        ):
            raise ApiError(403, None)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        if exc.error is None:
            return Response(status_code=exc.status, headers=exc.headers)
        return JSONResponse({"error": exc.error}, exc.status, headers=exc.headers)

    @app.exception_handler(FieldErrors)
    async def _field_errors(_: Request, exc: FieldErrors) -> Response:
        return JSONResponse(exc.errors, 422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        errors: dict[str, list[str]] = {}
        for error in exc.errors():
            loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query")]
            if error.get("type") == "json_invalid":
                return JSONResponse({"error": "request body is not valid JSON"}, 400)
            errors.setdefault(loc[-1] if loc else "body", []).append(str(error.get("msg")))
        return JSONResponse(errors, 422)

    @app.exception_handler(RedisError)
    async def _redis_down(_: Request, exc: RedisError) -> Response:
        log.error("redis: %s", exc)
        return JSONResponse(
            {"error": "the queue (Redis) is unreachable"}, 503, {"Retry-After": "5"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        incident = secrets.token_hex(4)
        log.exception("internal error %s", incident)
        if type(exc).__name__ == "SubmitError":
            return JSONResponse(
                {"error": "the queue (Redis) is unreachable"}, 503, {"Retry-After": "5"}
            )
        return JSONResponse({"error": f"internal error (logged as {incident})"}, 500)

    sub_response: dict[int | str, dict[str, Any]] = {
        201: {"model": SubmissionOut},
        422: {"description": "field -> messages"},
    }

    @app.post("/submissions", status_code=201, responses=sub_response, response_model=None)
    async def create_submission(
        submission: SubmissionIn,
        request: Request,
        base64_encoded: str | None = Query(None),
        wait: str | None = Query(None),
        fields: str | None = Query(None),
        who: str = Depends(authenticate),
    ) -> Response:
        """Create a submission; with ``wait=true``, answer with its result."""
        a = api()
        wanted = fields_of(fields)
        encoded = flag(base64_encoded)
        spec, record = a.spec(submission, encoded)
        await a.admit(who, 1)
        token = await a.submit(spec, record)
        if not flag(wait):
            return JSONResponse({"token": token}, 201)
        meta = await a.finished(token, a.settings.wait_timeout)
        stored = await a.record(token) or {**record, "token": token}
        return JSONResponse(a.view(stored, meta, wanted, encoded=encoded), 201)

    @app.post("/submissions/batch", status_code=201, response_model=None)
    async def create_batch(
        batch: BatchRequest,
        base64_encoded: str | None = Query(None),
        who: str = Depends(authenticate),
    ) -> Response:
        """Create up to ``max_submission_batch_size`` submissions; a token or the errors of each."""
        a = api()
        count = len(batch.submissions)
        if count == 0:
            raise ApiError(400, "there should be at least one submission in a batch")
        if count > a.settings.max_submission_batch_size:
            raise ApiError(
                400,
                "number of submissions in a batch should be less than or equal to "
                f"{a.settings.max_submission_batch_size}",
            )
        checked: list[tuple[dict[str, Any], dict[str, Any]] | dict[str, list[str]]] = []
        for sub in batch.submissions:
            try:
                checked.append(a.spec(sub, flag(base64_encoded)))
            except FieldErrors as exc:
                checked.append(exc.errors)
        valid = [c for c in checked if isinstance(c, tuple)]
        if valid:
            await a.admit(who, len(valid))
        answer: list[dict[str, Any]] = []
        for item in checked:
            if isinstance(item, tuple):
                try:
                    answer.append({"token": await a.submit(*item)})
                except FieldErrors as exc:
                    answer.append(dict(exc.errors))
            else:
                answer.append(dict(item))
        ok = any("token" in item for item in answer)
        return JSONResponse(answer, 201 if ok else 422)

    @app.get("/submissions", response_model=None)
    async def list_submissions(
        request: Request,
        page: int = Query(1),
        per_page: int = Query(PER_PAGE),
        base64_encoded: str | None = Query(None),
        fields: str | None = Query(None),
        _: str = Depends(authenticate),
    ) -> Response:
        """The submissions whose results are kept, oldest first, a page at a time (needs
        X-Auth-User, as Judge0's), with Judge0's pagination ``meta``."""
        authorize(request)
        if page <= 0:
            raise ApiError(400, f"invalid page: {page}")
        if per_page < 0:
            raise ApiError(400, f"invalid per_page: {per_page}")
        a = api()
        wanted = fields_of(fields)
        per_page = min(per_page, a.settings.max_submission_batch_size * 5)
        total = int(await a.redis.zcard(INDEX_KEY))
        start = (page - 1) * per_page
        tokens = await a.redis.zrange(INDEX_KEY, start, start + per_page - 1) if per_page else []
        shown = []
        for raw in tokens:
            token = raw.decode() if isinstance(raw, bytes) else str(raw)
            record = await a.record(token)
            if record is not None:
                meta = await a.meta(token)
                shown.append(a.view(record, meta, wanted, encoded=flag(base64_encoded)))
        pages = -(-total // per_page) if per_page else 0
        return JSONResponse(
            {
                "submissions": shown,
                "meta": {
                    "current_page": page,
                    "next_page": page + 1 if page < pages else None,
                    "prev_page": page - 1 if page > 1 else None,
                    "total_pages": pages,
                    "total_count": total,
                },
            }
        )

    @app.get("/submissions/batch", response_model=None)
    async def get_batch(
        tokens: str = Query(""),
        base64_encoded: str | None = Query(None),
        fields: str | None = Query(None),
        _: str = Depends(authenticate),
    ) -> Response:
        """Up to ``max_submission_batch_size`` submissions by token; null for an unknown one."""
        a = api()
        wanted = fields_of(fields)
        names = [t for t in tokens.strip().split(",") if t]
        if not names:
            raise ApiError(400, "there should be at least one submission in a batch")
        if len(names) > a.settings.max_submission_batch_size:
            raise ApiError(
                400,
                "number of submissions in a batch should be less than or equal to "
                f"{a.settings.max_submission_batch_size}",
            )
        found = []
        for token in names:
            record = await a.record(token)
            found.append(
                None
                if record is None
                else a.view(record, await a.meta(token), wanted, encoded=flag(base64_encoded))
            )
        return JSONResponse({"submissions": found})

    @app.get("/submissions/{token}", responses={200: {"model": SubmissionOut}}, response_model=None)
    async def get_submission(
        token: str,
        base64_encoded: str | None = Query(None),
        fields: str | None = Query(None),
        _: str = Depends(authenticate),
    ) -> Response:
        """A submission: In Queue, Processing, or its result."""
        a = api()
        wanted = fields_of(fields)
        record = await a.record(token)
        if record is None:
            raise ApiError(404, "submission not found")
        return JSONResponse(
            a.view(record, await a.meta(token), wanted, encoded=flag(base64_encoded))
        )

    @app.delete("/submissions/{token}", response_model=None)
    async def delete_submission(
        token: str,
        request: Request,
        fields: str | None = Query(None),
        _: str = Depends(authenticate),
    ) -> Response:
        """Delete a finished submission (needs X-Auth-User); answers it, base64-encoded."""
        authorize(request)
        a = api()
        wanted = fields_of(fields)
        record = await a.record(token)
        if record is None:
            raise ApiError(404, "submission not found")
        meta = await a.meta(token)
        shown = a.view(record, meta, (*wanted, "status"), encoded=True)
        if shown["status"]["id"] in (judge0.IN_QUEUE.id, judge0.PROCESSING.id):
            raise ApiError(
                400,
                f"submission cannot be deleted because its status is {shown['status']['id']} "
                f"({shown['status']['description']})",
            )
        await a.forget(token)
        return JSONResponse({k: shown[k] for k in wanted})

    @app.get("/languages", response_model=list[LanguageSummary])
    async def list_languages(_: str = Depends(authenticate)) -> list[LanguageSummary]:
        """Every language id accepted (a language may have several: Judge0's versions of it)."""
        return [
            LanguageSummary(id=number, name=name)
            for number, (_lang, name) in sorted(api().languages.items(), key=lambda i: i[1][1])
        ]

    @app.get("/languages/{language_id}", response_model=LanguageDetail)
    async def get_language(language_id: int, _: str = Depends(authenticate)) -> LanguageDetail:
        a = api()
        if language_id not in a.languages:
            raise ApiError(404, f"language with id {language_id} doesn't exist")
        name, shown = a.languages[language_id]
        info = a.info[name]
        return LanguageDetail(
            id=language_id,
            name=shown,
            source_file=info.source,
            compile_cmd=" ".join(info.compile) if info.compile else None,
            run_cmd=" ".join(info.run),
        )

    @app.get("/statuses", response_model=list[StatusOut])
    async def list_statuses(_: str = Depends(authenticate)) -> list[StatusOut]:
        return [StatusOut(id=s.id, description=s.description) for s in judge0.STATUSES]

    @app.get("/about", response_model=About)
    async def about(_: str = Depends(authenticate)) -> About:
        from importlib.metadata import version

        return About(
            version=JUDGE0_VERSION,
            homepage="https://github.com/sandbox-worker",
            source_code="https://github.com/sandbox-worker",
            maintainer="sandbox-worker",
            sandbox_worker=version("sandbox-worker"),
        )

    @app.get("/version", response_class=PlainTextResponse)
    async def judge0_version(_: str = Depends(authenticate)) -> str:
        return JUDGE0_VERSION

    @app.get("/config_info")
    async def config_info(_: str = Depends(authenticate)) -> dict[str, Any]:
        """Judge0's configuration keys, with this deployment's values."""
        s = api().settings
        return {
            "maintenance_mode": False,
            "enable_wait_result": True,
            "enable_compiler_options": True,
            "allowed_languages_for_compile_options": sorted(
                name
                for _, (lang, name) in api().languages.items()
                if api().info[lang].takes_compile_options
            ),
            "enable_command_line_arguments": True,
            "enable_submission_delete": bool(s.authz_tokens),
            "enable_callbacks": bool(s.callback_hosts),
            "callbacks_max_tries": s.callback_tries,
            "callbacks_timeout": s.callback_timeout,
            "enable_additional_files": True,
            "max_queue_size": s.max_queue_size,
            "cpu_time_limit": s.cpu_time_limit,
            "max_cpu_time_limit": s.max_cpu_time_limit,
            "cpu_extra_time": s.cpu_extra_time,
            "max_cpu_extra_time": s.max_cpu_extra_time,
            "wall_time_limit": s.wall_time_limit,
            "max_wall_time_limit": s.max_wall_time_limit,
            "memory_limit": s.memory_limit,
            "max_memory_limit": s.max_memory_limit,
            "stack_limit": s.stack_limit,
            "max_stack_limit": s.max_stack_limit,
            "max_processes_and_or_threads": s.max_processes_and_or_threads,
            "max_max_processes_and_or_threads": s.max_max_processes_and_or_threads,
            "enable_per_process_and_thread_time_limit": False,
            "allow_enable_per_process_and_thread_time_limit": False,
            "enable_per_process_and_thread_memory_limit": False,
            "allow_enable_per_process_and_thread_memory_limit": False,
            "max_file_size": s.max_file_size,
            "max_max_file_size": s.max_max_file_size,
            "number_of_runs": s.number_of_runs,
            "max_number_of_runs": s.max_number_of_runs,
            "redirect_stderr_to_stdout": s.redirect_stderr_to_stdout,
            "max_extract_size": 16 * 1024,
            "enable_batched_submissions": True,
            "max_submission_batch_size": s.max_submission_batch_size,
            "submission_cache_duration": 0,
            "use_docs_as_homepage": False,
            "allow_enable_network": False,
            "enable_network": False,
            "disable_implicit_base64_encoding": True,
            # Ours.
            "max_request_bytes": s.max_request,
            "rate_per_minute": s.rate,
        }

    @app.get("/workers", response_model=list[WorkerQueue])
    async def workers(_: str = Depends(authenticate)) -> list[WorkerQueue]:
        """Each queue's length and its Celery workers' processes: all, idle, working."""
        a = api()
        inspect = a.celery.control.inspect(timeout=0.5)
        stats, active, queues = await asyncio.gather(
            a.blocking(inspect.stats), a.blocking(inspect.active), a.blocking(inspect.active_queues)
        )
        sizes = [int(await a.redis.llen(q)) for q in a.queues]
        answer = []
        for queue, size in zip(a.queues, sizes, strict=True):
            names = [
                w for w, qs in (queues or {}).items() if any(q.get("name") == queue for q in qs)
            ]
            slots = sum(
                int((stats or {}).get(w, {}).get("pool", {}).get("max-concurrency", 0))
                for w in names
            )
            busy = sum(len((active or {}).get(w, [])) for w in names)
            answer.append(
                WorkerQueue(
                    queue=queue, size=size, available=slots, idle=max(0, slots - busy), working=busy
                )
            )
        return answer

    @app.post("/authenticate")
    async def check_authentication(_: str = Depends(authenticate)) -> Response:
        return Response(status_code=200)

    @app.post("/authorize")
    async def check_authorization(request: Request, _: str = Depends(authenticate)) -> Response:
        authorize(request)
        return Response(status_code=200)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> str:
        return resources.files("sandbox.api").joinpath("playground.html").read_text()

    return BodyLimit(app, settings.max_request)
