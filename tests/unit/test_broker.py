"""Reaching Redis as the settings say (worker/broker.py): pure option building, no Redis."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from worker import broker
from worker.settings import WorkerSettings


def test_a_plain_url_is_used_as_it_is():
    options = broker.celery_options(WorkerSettings(redis_url="redis://r:6379/1"))
    assert options == {
        "broker_url": "redis://r:6379/1",
        "broker_transport": "worker.broker:Transport",
        "result_backend": "redis://r:6379/1",
    }


def test_the_broker_leaves_unacknowledged_messages_to_their_leases():
    """A channel that closes (a lost connection, a shutdown) queues nothing again (ADR 0010)."""
    from worker.app import app

    connection = app.connection_for_write()
    assert isinstance(connection.transport, broker.Transport)
    assert connection.transport.Channel.do_restore is False
    assert connection.transport.Channel.QoS is broker.QoS


def test_tls_and_a_password_file_reach_broker_and_backend(tmp_path: Path):
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    settings = WorkerSettings(
        redis_url="rediss://r:6380/0",
        redis_username="sandbox",
        redis_password_file=password,
        redis_tls_ca_file=tmp_path / "ca.crt",
    )
    options = broker.celery_options(settings)
    assert options["broker_url"] == (
        "rediss://r:6380/0?credential_provider=worker.broker.FileCredentials"
    )
    assert options["result_backend"] == "rediss://r:6380/0"  # the secret is never in a URL
    tls = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(tmp_path / "ca.crt")}
    assert options["broker_use_ssl"] == options["redis_backend_use_ssl"] == tls
    credentials = options["redis_backend_credential_provider"]
    assert credentials.get_credentials() == ("sandbox", "s3cret")
    password.write_text("rotated")  # read at each new connection
    assert credentials.get_credentials() == ("sandbox", "rotated")
    assert broker.display_url(settings) == "rediss://sandbox@r:6380/0"


def test_a_password_in_a_url_is_never_displayed():
    settings = WorkerSettings(redis_url="redis://user:hunter2@r:6379/0")
    assert broker.display_url(settings) == "redis://user@r:6379/0"


def test_an_unreadable_password_file_is_a_connection_error_naming_the_setting(tmp_path: Path):
    from redis.exceptions import AuthenticationError

    settings = WorkerSettings(redis_password_file=tmp_path / "absent")
    with pytest.raises(AuthenticationError, match="SANDBOX_REDIS_PASSWORD_FILE"):
        broker.FileCredentials(settings).get_credentials()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"redis_url": "redis://r/0", "redis_tls_ca_file": "/ca"}, "must be rediss://"),
        ({"redis_url": "rediss://r/0", "redis_tls_cert_file": "/c"}, "both redis_tls_cert_file"),
        ({"redis_url": "http://r/0"}, "redis_url must be"),
    ],
)
def test_inconsistent_redis_settings_are_refused(fields: dict[str, str], message: str):
    with pytest.raises(ValidationError, match=message):
        WorkerSettings(**fields)  # type: ignore[arg-type]


def test_the_sweep_lock_expires_within_a_fifth_of_a_lease():
    """A sweeper that dies holding kombu's unacked_mutex stalls sweeps only that long."""
    assert "unacked_mutex_expire" in broker.Channel.from_transport_options  # kombu takes it
    for lease, expire in ((3.0, 1.0), (30.0, 6.0), (600.0, 120.0)):
        options = broker.transport_options(WorkerSettings(lease=lease))
        assert options["unacked_mutex_expire"] == expire
        assert options["visibility_timeout"] == lease
