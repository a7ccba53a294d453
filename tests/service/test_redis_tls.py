"""Workers and clients on a Redis that a fleet can trust: ACL user, password file, TLS.

A real redis-server of the test's own, on loopback, with TLS only (no
plain port), client certificates required, the default user off and an ACL
user ``sandbox`` limited to what Celery and kombu use (``-@dangerous``).
CA, certificates, password and ACL file come from deploy/redis-secrets.sh,
the script the deploy files tell operators to run. Worker and client get
the password from a file and the TLS files from settings (worker/broker.py);
the URL carries neither.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.service.conftest import free_port, wait_listening
from tests.unit.test_deploy import REDIS_SECRETS

pytestmark = [pytest.mark.root, pytest.mark.overlay, pytest.mark.redis]

SANDBOX = str(Path(sys.executable).with_name("sandbox"))
SECRETS = Path(__file__).resolve().parents[2] / "deploy/redis-secrets.sh"


@dataclass
class SecureRedis:
    port: int
    secrets: Path

    @property
    def password(self) -> str:
        return (self.secrets / "password").read_text()

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "SANDBOX_REDIS_URL": f"rediss://localhost:{self.port}/0",
            "SANDBOX_REDIS_USERNAME": "sandbox",
            "SANDBOX_REDIS_PASSWORD_FILE": str(self.secrets / "password"),
            "SANDBOX_REDIS_TLS_CA_FILE": str(self.secrets / "ca.crt"),
            "SANDBOX_REDIS_TLS_CERT_FILE": str(self.secrets / "tls.crt"),
            "SANDBOX_REDIS_TLS_KEY_FILE": str(self.secrets / "tls.key"),
            **extra,
        }


@pytest.fixture
def secure_redis(tmp_path: Path) -> Iterator[SecureRedis]:
    secrets = tmp_path / "secrets"
    made = subprocess.run(
        [str(SECRETS), str(secrets), "localhost", "127.0.0.1"], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    listing = {path.name: path.read_bytes() for path in secrets.iterdir()}
    assert set(listing) == REDIS_SECRETS | {"ca.key", "ca.srl"}
    again = subprocess.run([str(SECRETS), str(secrets)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert {path.name: path.read_bytes() for path in secrets.iterdir()} == listing  # kept
    assert listing["password"].decode() not in listing["users.acl"].decode()  # its hash only
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(secrets / "server.crt"),
            "--tls-key-file", str(secrets / "server.key"),
            "--tls-ca-cert-file", str(secrets / "ca.crt"), "--tls-auth-clients", "yes",
            "--aclfile", str(secrets / "users.acl"),
            "--dir", str(tmp_path), "--appendonly", "yes", "--save", "",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port, process, "redis-server with TLS")
        yield SecureRedis(port, secrets)
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
    # A short lease: sweeps and renewals (every second) run under the ACL too.
    worker = start_worker("tls", concurrency=1, SANDBOX_LEASE="3", **env)
    submitted = _client(env, SUBMIT)
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.split() == ["ok", "42"]
    slow = _client(env, SUBMIT.replace("print(6 * 7)", "import time; time.sleep(2.5); print(42)"))
    assert slow.stdout.split() == ["ok", "42"], slow.stderr
    assert "NOPERM" not in worker.text()
    assert "cannot renew job leases" not in worker.text()
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
