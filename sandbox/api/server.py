"""``sandbox api``: the app under uvicorn, refusing an open bind without tokens."""

from __future__ import annotations

import logging
import sys

from sandbox.api.settings import ApiSettings, is_loopback

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
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
        server_header=False,
        # Stack traces stay in the log: clients get {"error": ...} (sandbox/api/app.py).
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
    return 0
