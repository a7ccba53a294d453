"""Deploy files stay consistent with the code (no Docker engine runs here to try them).

The compose file is checked as YAML against the parts of the compose spec we
use; environment names against the settings classes; the systemd unit and the
Dockerfile against the files and commands they name. The entrypoint itself
runs in tests/integration/test_deploy_entrypoint.py.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml

from sandbox.settings import Settings
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICE_KEYS = {
    "image", "build", "command", "environment", "depends_on", "cap_add", "security_opt",
    "cgroup", "volumes", "tmpfs", "stop_signal", "stop_grace_period", "privileged",
    "expose", "healthcheck", "secrets", "entrypoint", "user", "ports",
}  # fmt: skip
# What deploy/redis-secrets.sh makes.
REDIS_SECRETS = {
    "ca.crt", "server.crt", "server.key", "tls.crt", "tls.key", "password", "users.acl",
}  # fmt: skip


def _seconds(duration: str) -> float:
    """A compose duration (``330s``, ``7m``) in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]]


def _known_env() -> set[str]:
    from sandbox.api.settings import ApiSettings

    fields = set(Settings.model_fields) | set(WorkerSettings.model_fields)
    api = {f"SANDBOX_API_{name.upper()}" for name in ApiSettings.model_fields}
    return {f"SANDBOX_{name.upper()}" for name in fields} | api


def test_compose_file_is_valid_and_scales_workers():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(compose) <= {"services", "volumes", "networks", "secrets"}
    services = compose["services"]
    assert set(services) == {"redis", "worker", "api"}
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, name
    worker = services["worker"]
    assert "container_name" not in worker  # would forbid --scale
    assert (ROOT / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    assert set(worker["environment"]) <= _known_env()
    env = worker["environment"]
    assert {"SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"} <= set(worker["cap_add"])
    # Scaled workers of one host share its run dir, as they share its cgroup tree.
    assert "/run/sandbox:/run/sandbox" in worker["volumes"]
    assert worker["cgroup"] == "host"
    assert "tmpfs" not in worker
    assert "privileged" not in worker  # the documented fallback, not the default
    for volume in [*worker["volumes"], *services["redis"]["volumes"]]:
        source = volume.split(":")[0]
        assert source.startswith("/") or source in compose["volumes"]
    assert "--appendonly" in services["redis"]["command"]
    # Redis speaks TLS only, to the ACL user, with the files redis-secrets.sh makes.
    redis_args = services["redis"]["command"]
    tls_port = redis_args[redis_args.index("--tls-port") + 1]
    assert redis_args[redis_args.index("--port") + 1] == "0"
    assert env["SANDBOX_REDIS_URL"] == f"rediss://redis:{tls_port}/0"
    assert env["SANDBOX_REDIS_USERNAME"] == "sandbox"
    secrets = compose["secrets"]
    assert {Path(secret["file"]).name for secret in secrets.values()} == REDIS_SECRETS
    assert all(secret["file"].startswith("deploy/secrets/") for secret in secrets.values())
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text().split()
    for name, service in services.items():
        for secret in service["secrets"]:
            assert secret in secrets, (name, secret)
    mounted = {f"/run/secrets/{secret}" for secret in worker["secrets"]}
    redis_mounted = {f"/run/secrets/{secret}" for secret in services["redis"]["secrets"]}
    assert {value for key, value in env.items() if key.endswith("_FILE")} == mounted
    assert {arg for arg in redis_args if arg.startswith("/run/secrets/")} == redis_mounted
    # Stopping lets running jobs drain (worker/lease.py), within the grace period.
    assert _seconds(worker["stop_grace_period"]) > WorkerSettings().drain_timeout
    # Metrics on, health checked, in the deploy files (off by default in the CLI).
    port = worker["environment"]["SANDBOX_METRICS_PORT"]
    assert worker["expose"] == [port]
    assert worker["healthcheck"]["test"] == ["CMD", "sandbox", "health"]
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    assert f"EXPOSE {port}" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert '"sandbox", "health"' in dockerfile
    assert WorkerSettings().metrics_port is None


def test_example_environment_names_are_settings():
    names = set()
    for line in (ROOT / "deploy/env.example").read_text().splitlines():
        line = line.lstrip("# ").strip()
        if re.match(r"^SANDBOX_[A-Z_]+=", line):
            names.add(line.split("=", 1)[0])
    assert names
    assert names <= _known_env()


def test_systemd_unit_runs_the_worker_with_a_warm_shutdown():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "deploy/sandbox-worker.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].split()[1:3] == ["worker", "--concurrency"]
    assert service["ExecStartPre"].endswith("sandbox doctor")
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > WorkerSettings().drain_timeout  # drains first
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_unit_serves_sandbox_run_warm():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "deploy/sandbox-serve.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].split()[1:] == ["serve"]
    assert service["KillSignal"] == "SIGTERM"  # sandbox serve stops on it, socket first
    assert int(service["TimeoutStopSec"]) > 300  # above the largest wall limit
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_unit_serves_the_api_without_root():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "deploy/sandbox-api.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].split()[1] == "api"
    assert service["DynamicUser"] == "yes"  # no root, no capabilities
    assert service["CapabilityBoundingSet"] == ""


def test_compose_api_needs_no_privilege_and_a_token():
    api = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]
    assert api["entrypoint"][:2] == ["sandbox", "api"]
    assert "privileged" not in api
    assert "cap_add" not in api
    assert api["user"] != "0"
    assert "SANDBOX_API_AUTHN_TOKENS" in api["environment"]


def test_dockerfile_copies_what_exists_and_runs_the_entrypoint():
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["sandbox-entrypoint"]' in dockerfile
    assert "deploy/entrypoint.sh /usr/local/bin/sandbox-entrypoint" in dockerfile
    assert "STOPSIGNAL SIGTERM" in dockerfile


def test_compose_api_checks_its_own_health_not_a_workers():
    """The image's HEALTHCHECK is the worker's (`sandbox health`): the API's service
    replaces it with a request to its own page, on the port it serves."""
    api = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]
    port = api["entrypoint"][api["entrypoint"].index("--port") + 1]
    test = api["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python3"]
    assert f"http://127.0.0.1:{port}/" in test[-1]


def test_constraints_pin_every_dependency_the_project_names():
    """constraints.txt (scripts/install, deploy/Dockerfile) pins each requirement of
    pyproject.toml, dev tools included, at a version the requirement allows: a
    clean install gets what CI tested, not the registry's newest release."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name}: not in constraints.txt (scripts/install --refreeze)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    assert "-c /opt/sandbox-worker/constraints.txt" in dockerfile
