"""How workers and clients reach Redis: its URL, an ACL user, a password file, TLS.

A fleet reaches Redis over a network, so the connection is authenticated
and encrypted, and its secrets come from files (a Kubernetes Secret or a
compose secret mounted read-only), never from a URL that process lists, logs
and `celery inspect` could show:

- ``SANDBOX_REDIS_URL``: ``redis://`` or ``rediss://`` (TLS), host, port, db;
- ``SANDBOX_REDIS_USERNAME`` and ``SANDBOX_REDIS_PASSWORD_FILE``: the ACL
  user and a file holding its password, read at each new connection (a
  rotated secret is picked up without a restart);
- ``SANDBOX_REDIS_TLS_CA_FILE`` (the CA that signed the server's
  certificate; the system's CAs when unset), and for servers that ask for
  client certificates ``SANDBOX_REDIS_TLS_CERT_FILE`` and
  ``SANDBOX_REDIS_TLS_KEY_FILE``. The server's certificate is always
  verified, its host name too.

The same options reach Celery's broker (kombu's Redis transport) and result
backend, the lease thread and ``sandbox health``: :func:`celery_options` and
:func:`client` are the one place they are put together.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError

from worker.settings import WorkerSettings

__all__ = ["FileCredentials", "celery_options", "client", "display_url"]


class FileCredentials(CredentialProvider):
    """The ACL user from settings, its password from a file read at each connection.

    kombu makes one from its dotted name with no arguments (the broker URL's
    ``credential_provider`` parameter), hence the settings read here.
    """

    def __init__(self, settings: WorkerSettings | None = None) -> None:
        self.settings = settings if settings is not None else WorkerSettings()

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        path = self.settings.redis_password_file
        if path is None:
            raise AuthenticationError("FileCredentials needs SANDBOX_REDIS_PASSWORD_FILE")
        try:
            password = path.read_text().strip()
        except OSError as exc:  # a connection error: kombu and the backend retry, then say it
            raise AuthenticationError(
                f"cannot read the Redis password from {path} (SANDBOX_REDIS_PASSWORD_FILE): {exc}"
            ) from exc
        username = self.settings.redis_username
        return (username, password) if username else (password,)


_PROVIDER = f"{FileCredentials.__module__}.{FileCredentials.__qualname__}"


def _tls(settings: WorkerSettings) -> dict[str, Any] | None:
    if urlsplit(settings.redis_url).scheme != "rediss":
        return None
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    for key, path in (
        ("ssl_ca_certs", settings.redis_tls_ca_file),
        ("ssl_certfile", settings.redis_tls_cert_file),
        ("ssl_keyfile", settings.redis_tls_key_file),
    ):
        if path is not None:
            options[key] = str(path)
    return options


def _with_query(url: str, parameter: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{parameter}"


def celery_options(settings: WorkerSettings) -> dict[str, Any]:
    """The Celery settings that reach Redis as ``settings`` say (broker and backend)."""
    options: dict[str, Any] = {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
    }
    if settings.redis_password_file is not None:
        # kombu takes a credential provider only by name, in the URL.
        options["broker_url"] = _with_query(settings.redis_url, f"credential_provider={_PROVIDER}")
        options["redis_backend_credential_provider"] = FileCredentials(settings)
    elif settings.redis_username:
        options["redis_username"] = settings.redis_username
    tls = _tls(settings)
    if tls is not None:
        options["broker_use_ssl"] = tls
        options["redis_backend_use_ssl"] = tls
    return options


def client(settings: WorkerSettings, **kwargs: Any) -> redis.Redis:
    """A redis-py client to Redis as ``settings`` say (``sandbox health``, tools)."""
    if settings.redis_password_file is not None:
        kwargs["credential_provider"] = FileCredentials(settings)
    elif settings.redis_username:
        kwargs["username"] = settings.redis_username
    return redis.Redis.from_url(settings.redis_url, **(_tls(settings) or {}), **kwargs)


def display_url(settings: WorkerSettings) -> str:
    """The Redis URL for messages: any password in it masked, the user named."""
    parts = urlsplit(settings.redis_url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = parts.username or settings.redis_username
    auth = f"{user}@" if user else ""
    return f"{parts.scheme}://{auth}{host}{port}{parts.path}"
