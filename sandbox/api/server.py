"""``sandbox api``: the app under uvicorn, refusing an open bind without tokens."""

from __future__ import annotations

import logging
import sys

from sandbox.api.settings import ApiSettings, is_loopback
from sandbox.logs import use_json
from sandbox.settings import Settings

__all__ = ["serve"]


def serve(host: str | None = None, port: int | None = None) -> int:
    """Serve the API until SIGINT or SIGTERM; the exit status.

    Args:
        host: the address to listen on (default: ``SANDBOX_API_HOST``).
        port: the port (default: ``SANDBOX_API_PORT``).
    """
    import uvicorn

    from sandbox.api.app import create_app

    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = ApiSettings(**overrides)  # type: ignore[arg-type]
    if settings.open_to_anyone and not is_loopback(settings.host):
        print(
            f"sandbox api: refusing to listen on {settings.host} without authentication: "
            "set SANDBOX_API_AUTHN_TOKENS (or bind 127.0.0.1)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if Settings().log_format == "json":  # SANDBOX_LOG_FORMAT, as the workers' logs
        use_json()
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=None,  # uvicorn's loggers go to the root logger's handler, formatted as ours
        access_log=False,
        server_header=False,
        # Stack traces stay in the log: clients get {"error": ...} (sandbox/api/app.py).
        lifespan="on",
        # Within the 30 s that compose and Kubernetes give a stop; a wait=true
        # request still waiting then is cut (its job goes on; docs/api.md).
        timeout_graceful_shutdown=25,
    )
    uvicorn.Server(config).run()
    return 0
