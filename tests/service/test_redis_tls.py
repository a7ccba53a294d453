"""Workers and clients on a Redis that a fleet can trust: ACL user, password file, TLS.

A real redis-server of the test's own, on loopback, with TLS only (no
plain port), client certificates required, the default user off and an ACL
user ``sandbox`` limited to what Celery and kombu use (``-@dangerous``).
Certificates come from a CA the test makes with ``openssl``. Worker and
client get the password from a file and the TLS files from settings
(worker/broker.py); the URL carries neither.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.service.conftest import free_port

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.redis]

SANDBOX = str(Path(sys.executable).with_name("sandbox"))
# What the deploy files give the sandbox user (deploy/kubernetes/redis.yaml).
ACL = "user sandbox on >{password} ~* &* +@all -@dangerous"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost and 127.0.0.1, a client certificate."""
    files = {name: directory / name for name in ("ca.crt", "ca.key", "server.crt", "server.key",
                                                 "client.crt", "client.key")}  # fmt: skip
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", "/CN=sandbox test CA",
             "-keyout", str(files["ca.key"]), "-out", str(files["ca.crt"]))  # fmt: skip
    for who, extra in (
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        csr = directory / f"{who}.csr"
        key = str(files[f"{who}.key"])
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-subj", f"/CN={who}", "-keyout", key, "-out", str(csr))  # fmt: skip
        ext = directory / f"{who}.ext"
        ext.write_text(extra + "\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(files["ca.crt"]),
                 "-CAkey", str(files["ca.key"]), "-CAcreateserial", "-days", "2",
                 "-extfile", str(ext), "-out", str(files[f"{who}.crt"]))  # fmt: skip
    return files


@dataclass
class SecureRedis:
    port: int
    password: str
    files: dict[str, Path]
    password_file: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "SANDBOX_REDIS_URL": f"rediss://localhost:{self.port}/0",
            "SANDBOX_REDIS_USERNAME": "sandbox",
            "SANDBOX_REDIS_PASSWORD_FILE": str(self.password_file),
            "SANDBOX_REDIS_TLS_CA_FILE": str(self.files["ca.crt"]),
            "SANDBOX_REDIS_TLS_CERT_FILE": str(self.files["client.crt"]),
            "SANDBOX_REDIS_TLS_KEY_FILE": str(self.files["client.key"]),
            **extra,
        }


@pytest.fixture
def secure_redis(tmp_path: Path) -> Iterator[SecureRedis]:
    files = _certificates(tmp_path)
    password = secrets.token_urlsafe(24)
    password_file = tmp_path / "redis-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o400)
    acl = tmp_path / "users.acl"
    acl.write_text(f"user default off\n{ACL.format(password=password)}\n")
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(files["server.crt"]), "--tls-key-file", str(files["server.key"]),
            "--tls-ca-cert-file", str(files["ca.crt"]), "--tls-auth-clients", "yes",
            "--aclfile", str(acl), "--dir", str(tmp_path), "--appendonly", "yes", "--save", "",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            assert process.poll() is None, "redis-server with TLS did not start"
            assert time.monotonic() < deadline, "redis-server with TLS did not start"
            time.sleep(0.05)
        yield SecureRedis(port, password, files, password_file)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


def _client(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


SUBMIT = """
import sandbox
result = sandbox.run.delay("print(6 * 7)").get(timeout=60)
print(result["status"], result["stdout"].strip())
"""


def test_jobs_run_through_redis_with_an_acl_user_a_password_file_and_tls(
    start_worker, secure_redis
):
    env = secure_redis.env()
    worker = start_worker("tls", concurrency=1, **env)
    submitted = _client(env, SUBMIT)
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.split() == ["ok", "42"]
    # Health reaches the same Redis the same way, and names it without secrets.
    health = subprocess.run(
        [SANDBOX, "health"], capture_output=True, text=True, env={**worker.env}, timeout=120
    )
    assert health.returncode == 0, health.stdout + health.stderr
    assert f"rediss://sandbox@localhost:{secure_redis.port}/0" in health.stdout + health.stderr
    # The secret is in a file only: not in the worker's command line, environment or log.
    pid = worker.process.pid
    assert secure_redis.password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert secure_redis.password.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    assert secure_redis.password not in worker.text()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"SANDBOX_REDIS_TLS_CA_FILE": ""}, "certificate verify failed"),  # the system's CAs
        # The default user is off.
        ({"SANDBOX_REDIS_USERNAME": "default"}, "invalid username-password pair"),
        ({"SANDBOX_REDIS_PASSWORD_FILE": "/nonexistent/password"}, "SANDBOX_REDIS_PASSWORD_FILE"),
    ],
    ids=["unknown-ca", "wrong-user", "missing-password-file"],
)
def test_a_client_that_cannot_authenticate_gets_a_clear_error(secure_redis, change, expected):
    env = {key: value for key, value in {**secure_redis.env(), **change}.items() if value}
    submitted = _client({**env, "SANDBOX_CONNECT_TIMEOUT": "2"}, SUBMIT)
    assert submitted.returncode != 0
    error = submitted.stderr.strip().splitlines()[-1]  # what the user reads
    assert "SubmitError: cannot reach Redis at rediss://" in error, submitted.stderr
    assert expected in error, submitted.stderr
    assert secure_redis.password not in submitted.stderr


def test_tls_files_without_rediss_are_refused_naming_the_settings(secure_redis):
    env = {**secure_redis.env(), "SANDBOX_REDIS_URL": f"redis://localhost:{secure_redis.port}/0"}
    submitted = _client(env, "import worker.app")
    assert submitted.returncode != 0
    assert "redis_url must be rediss://" in submitted.stderr, submitted.stderr
