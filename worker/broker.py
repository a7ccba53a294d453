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

The broker is kombu's Redis transport with two changes (:class:`Transport`),
both for a worker whose connection drops while its jobs run on (a Redis
restart or fail-over); docs/adr/0010-job-leases.md:

- a channel that closes restores nothing to the queue: the worker is alive
  and still runs those jobs, and kombu's restore-on-close would queue each
  again (a duplicate), or, with Redis down, fail inside Celery's
  reconnection and end the worker ("Unrecoverable error: AttributeError:
  'NoneType' object has no attribute 'hostname'", seen in bench/fleet.py with
  kombu 5.7). Leases bring back the jobs of a worker that is gone;
- a message delivered on a channel that has since closed can still be
  acknowledged (kombu's own ack then fails on the closed channel, and the
  finished job ran again once its lease ran out): Redis keeps unacknowledged
  messages by delivery tag, not by connection, so a fresh connection removes
  it. One rejected back to the queue is left to its lease (requeueing it
  needs the closed channel's exchange table).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError

from worker.settings import WorkerSettings

__all__ = [
    "FileCredentials",
    "Transport",
    "celery_options",
    "client",
    "display_url",
    "transport_options",
]


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, which acknowledges the messages of a closed channel too."""

    def ack(self, delivery_tag: str) -> None:
        if self.channel.connection is not None:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]
            return
        with self.channel.client_after_close() as client, client.pipeline() as pipe:
            self._remove_from_indices(delivery_tag, pipe).execute()  # type: ignore[no-untyped-call]
        virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if self.channel.connection is not None:
            super().reject(delivery_tag, requeue)  # type: ignore[no-untyped-call]
        elif requeue:  # kept in Redis, unrenewed: its lease brings it back
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
        else:
            self.ack(delivery_tag)


class Channel(kombu_redis.Channel):
    """kombu's Redis channel: restores nothing when closed; its messages outlive it."""

    QoS = QoS
    do_restore = False
    _params: dict[str, Any] | None = None

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = super()._connparams(  # type: ignore[no-untyped-call]
            asynchronous=asynchronous
        )
        if not asynchronous:
            self._params = dict(params)  # for client_after_close
        return params

    @contextlib.contextmanager
    def client_after_close(self) -> Iterator[redis.Redis]:
        """A client to this channel's Redis, from what it connected with before it closed."""
        if self._params is None:
            raise redis.ConnectionError("the channel never connected")
        pool = redis.ConnectionPool(**self._params)
        try:
            yield self.Client(connection_pool=pool)
        finally:
            pool.disconnect()


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


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
        "broker_transport": f"{Transport.__module__}:{Transport.__qualname__}",
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


def transport_options(settings: WorkerSettings) -> dict[str, Any]:
    """kombu's Redis transport options: leases and their sweep (docs/adr/0010-job-leases.md)."""
    return {
        "visibility_timeout": settings.lease,
        "unacked_restore_interval": max(1.0, settings.lease / 10),
        "unacked_restore_throttle": 1,  # every sweep looks
        # The sweep's lock, held for milliseconds: one left by a sweeper that
        # died (or lost Redis) mid-sweep stalls every sweep until it expires
        # (kombu's default: 300 s). Two sweeps at once are safe: each restore
        # is a transaction on the message's tag.
        "unacked_mutex_expire": max(1.0, settings.lease / 5),
        "socket_connect_timeout": settings.connect_timeout,
    }


def client(settings: WorkerSettings, **kwargs: Any) -> redis.Redis:
    """A redis-py client to Redis as ``settings`` say (``sandbox health``, tools)."""
    if settings.redis_password_file is not None:
        kwargs["credential_provider"] = FileCredentials(settings)
    elif settings.redis_username:
        kwargs["username"] = settings.redis_username
    return redis.Redis.from_url(settings.redis_url, **(_tls(settings) or {}), **kwargs)


def async_client(settings: WorkerSettings, **kwargs: Any) -> redis.asyncio.Redis:
    """An asyncio redis-py client to Redis as ``settings`` say (the HTTP API, sandbox/api/)."""
    if settings.redis_password_file is not None:
        kwargs["credential_provider"] = FileCredentials(settings)
    elif settings.redis_username:
        kwargs["username"] = settings.redis_username
    return redis.asyncio.Redis.from_url(settings.redis_url, **(_tls(settings) or {}), **kwargs)


def display_url(settings: WorkerSettings) -> str:
    """The Redis URL for messages: any password in it masked, the user named."""
    parts = urlsplit(settings.redis_url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = parts.username or settings.redis_username
    auth = f"{user}@" if user else ""
    return f"{parts.scheme}://{auth}{host}{port}{parts.path}"
