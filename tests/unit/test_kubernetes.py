"""The Kubernetes manifests (deploy/kubernetes) are valid, and agree with compose and the code.

No cluster runs here, and nothing is fetched: every manifest is validated
strictly (unknown fields refused) against the Kubernetes API's own schemas,
which kubernetes-validate ships for each release, at the versions of
KUBERNETES_VERSIONS. KEDA's kinds (ScaledObject, TriggerAuthentication) are
not in those: they are checked against cloudcoil-models-keda, pydantic models
generated from KEDA's released CRD file (keda-2.16.1-crds.yaml) and installed
from PyPI with the dev tools (scripts/install). The models ignore fields they
do not know, so strictness comes from a round trip: an object whose dump
differs from the manifest had a field KEDA's CRD lacks (or a value of another
type). Then the facts these files share with docker-compose.yml, the settings,
deploy/redis-secrets.sh and one another, as tests/unit/test_deploy.py does for
compose.
"""

from __future__ import annotations

import copy
import importlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from sandbox.settings import Settings
from tests.unit.test_deploy import REDIS_SECRETS
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy/kubernetes"
# The oldest release with securityContext.appArmorProfile (worker.yaml), the newest checked.
KUBERNETES_VERSIONS = ("1.30", "1.37")
KEDA_API = "keda.sh/v1alpha1"
SECRET = "sandbox-redis"
# Docker's default capabilities: compose's worker has these and its cap_add.
DOCKER_DEFAULTS = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
# Those the runtime uses (a job fails without each): the pod drops ALL and adds them.
DOCKER_DEFAULTS_USED = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "MKNOD", "SETGID", "SETUID"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _manifests() -> dict[str, list[dict[str, Any]]]:
    """Each manifest file's objects, by file name (the kustomization is not one)."""
    return {
        path.name: _documents(path)
        for path in sorted(KUBE.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


OBJECTS = [obj for objects in _manifests().values() for obj in objects]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def _config() -> dict[str, str]:
    data: dict[str, str] = _one("ConfigMap", "sandbox-worker")["data"]
    return data


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def _pod(kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = _one(kind, name)["spec"]["template"]["spec"]
    return spec


def _seconds(duration: str) -> float:
    """A compose duration (``330s``, ``20s``) in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]]


def _secret_files(pod: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Path of each file the pod's container mounts from a Secret -> (secret, key)."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = {}
    for mount in pod["containers"][0]["volumeMounts"]:
        secret = volumes.get(mount["name"], {}).get("secret")  # not a claim template's
        if secret is None:
            continue
        assert mount["readOnly"] is True, mount
        for item in secret["items"]:  # only what this pod needs, never the whole Secret
            files[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    return files


def _options(args: list[str]) -> dict[str, str]:
    """redis-server's ``--name value`` arguments."""
    assert args[0] == "redis-server"
    assert len(args) % 2 == 1
    return {
        name.removeprefix("--"): value for name, value in zip(args[1::2], args[2::2], strict=True)
    }


def _unknown(given: Any, dumped: Any, path: str = "") -> list[str]:
    """Where ``given`` has what ``dumped`` (its round trip through a model) lost or changed."""
    if isinstance(given, dict) and isinstance(dumped, dict):
        return [
            problem
            for key, value in given.items()
            for problem in (
                _unknown(value, dumped[key], f"{path}.{key}")
                if key in dumped
                else [f"{path}.{key}: unknown field"]
            )
        ]
    if isinstance(given, list) and isinstance(dumped, list) and len(given) == len(dumped):
        return [
            p
            for i, (g, d) in enumerate(zip(given, dumped, strict=True))
            for p in _unknown(g, d, f"{path}[{i}]")
        ]
    return [] if given == dumped else [f"{path}: {given!r} read as {dumped!r}"]


def _keda_problems(obj: dict[str, Any]) -> list[str]:
    """What KEDA's CRD (through cloudcoil's models of it) refuses in ``obj``."""
    models = importlib.import_module("cloudcoil.models.keda.v1alpha1")
    model = getattr(models, obj["kind"])
    try:
        parsed = model.model_validate(obj, strict=True)
    except ValueError as exc:  # pydantic's ValidationError
        return [str(exc)]
    return _unknown(obj, parsed.model_dump(mode="json", by_alias=True, exclude_unset=True))


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert set(kustomization) == {"apiVersion", "kind", "resources"}
    assert sorted(kustomization["resources"]) == sorted(_manifests())
    assert {o["metadata"].get("namespace", "sandbox") for o in OBJECTS} == {"sandbox"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_are_valid_kubernetes_objects(version):
    failures = []
    for obj in OBJECTS:
        if obj["apiVersion"] == KEDA_API:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
    assert not failures


def test_keda_objects_are_valid_for_kedas_crds():
    keda = [obj for obj in OBJECTS if obj["apiVersion"] == KEDA_API]
    assert {obj["kind"] for obj in keda} == {"ScaledObject", "TriggerAuthentication"}
    for obj in keda:
        assert _keda_problems(obj) == [], obj["kind"]


def test_validation_is_strict():
    """A misspelt field fails both checks, rather than being ignored as it would be by default."""
    deployment = copy.deepcopy(_one("Deployment", "sandbox-worker"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capability"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    scaled = copy.deepcopy(_one("ScaledObject", "sandbox-worker"))
    scaled["spec"]["triggers"][0]["authRef"] = {"name": SECRET}
    assert _keda_problems(scaled) == [".spec.triggers[0].authRef: unknown field"]
    scaled["spec"]["maxReplicaCount"] = "20"
    assert len(_keda_problems(scaled)) == 1


def test_worker_settings_are_settings_and_agree_with_compose(monkeypatch):
    config = _config()
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    settings, worker = Settings(), WorkerSettings()  # every value parses, TLS files pair up
    env = _compose()["services"]["worker"]["environment"]
    assert set(env) <= set(config)
    fields = {
        f"SANDBOX_{name.upper()}" for name in {*Settings.model_fields, *WorkerSettings.model_fields}
    }
    assert set(config) <= fields
    for name in env:
        if name != "SANDBOX_REDIS_URL" and not name.endswith("_FILE"):
            assert config[name] == env[name], name
    url, compose_url = urlsplit(worker.redis_url), urlsplit(env["SANDBOX_REDIS_URL"])
    assert (url.scheme, url.port, url.path) == (compose_url.scheme, compose_url.port, "/0")
    assert url.username is None  # secrets come from files, never the URL
    assert worker.redis_username == "sandbox"  # the ACL user of redis-secrets.sh
    assert worker.metrics_port == int(config["SANDBOX_METRICS_PORT"])
    assert str(settings.cgroup_parent) == config["SANDBOX_CGROUP_PARENT"]


def test_stopping_drains_within_the_grace_period():
    pod = _pod("Deployment", "sandbox-worker")
    grace = pod["terminationGracePeriodSeconds"]
    drain = float(_config()["SANDBOX_DRAIN_TIMEOUT"])
    assert grace > drain
    assert grace == _seconds(_compose()["services"]["worker"]["stop_grace_period"])
    # The autoscaler lets a drained worker finish before it counts a scale-in done.
    scaled = _one("ScaledObject", "sandbox-worker")["spec"]
    assert scaled["cooldownPeriod"] > drain
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > drain


def test_probes_run_sandbox_health():
    container = _pod("Deployment", "sandbox-worker")["containers"][0]
    healthcheck = _compose()["services"]["worker"]["healthcheck"]
    assert healthcheck["test"] == ["CMD", "sandbox", "health"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == ["sandbox", "health"], probe
        # It runs a real job: as long as compose gives it.
        assert container[probe]["timeoutSeconds"] == _seconds(healthcheck["timeout"]), probe


def test_the_autoscaler_watches_the_workers_queue():
    config = _config()
    scaled = _one("ScaledObject", "sandbox-worker")["spec"]
    assert (
        scaled["scaleTargetRef"]["name"] == _one("Deployment", "sandbox-worker")["metadata"]["name"]
    )
    assert 0 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    assert metadata["listName"] == config["SANDBOX_QUEUE"] == WorkerSettings().queue
    url = urlsplit(config["SANDBOX_REDIS_URL"])
    assert metadata["address"] == url.netloc
    assert metadata["databaseIndex"] == url.path.removeprefix("/")
    # Its credentials: the workers' user, and files of the Secret that redis-secrets.sh fills.
    auth = _one("TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    params = {}
    for ref in auth["configMapTargetRef"]:
        params[ref["parameter"]] = _one("ConfigMap", ref["name"])["data"][ref["key"]]
    assert params == {"username": config["SANDBOX_REDIS_USERNAME"], "tls": "enable"}
    secret_keys = {ref["parameter"]: ref["key"] for ref in auth["secretTargetRef"]}
    assert {ref["name"] for ref in auth["secretTargetRef"]} == {SECRET}
    assert secret_keys == {
        "password": "password",
        "ca": "ca.crt",
        "cert": "tls.crt",
        "key": "tls.key",
    }


def test_secrets_are_files_that_redis_secrets_makes():
    config = _config()
    worker_files = _secret_files(_pod("Deployment", "sandbox-worker"))
    settings_files = {value for name, value in config.items() if name.endswith("_FILE")}
    assert settings_files == set(worker_files)
    redis_pod = _pod("StatefulSet", "redis")
    redis_files = _secret_files(redis_pod)
    redis_args = _options(redis_pod["containers"][0]["args"])
    assert {v for v in redis_args.values() if v.startswith("/")} <= set(redis_files)
    used = {*worker_files.values(), *redis_files.values()}
    assert {secret for secret, _ in used} == {SECRET}
    keys = {key for _, key in used}
    assert keys <= REDIS_SECRETS
    # The Secret as worker-config.yaml says to make it: what the pods use, and not the CA's key.
    for doc in (KUBE / "worker-config.yaml", ROOT / "deploy/README.md"):
        text = doc.read_text()
        assert f"create secret generic {SECRET}" in text, doc
        documented = set(re.findall(r"--from-file=\S+/([\w.]+)", text))
        assert documented == keys == REDIS_SECRETS, doc
    volumes = [*_pod("Deployment", "sandbox-worker")["volumes"], *redis_pod["volumes"]]
    for volume in volumes:
        if "secret" in volume:
            assert volume["secret"]["defaultMode"] & 0o077 <= 0o040, volume["name"]


def test_capabilities_are_what_compose_grants_and_uses():
    compose_worker = _compose()["services"]["worker"]
    context = _pod("Deployment", "sandbox-worker")["containers"][0]["securityContext"]
    assert context["capabilities"]["drop"] == ["ALL"]
    added = context["capabilities"]["add"]
    assert len(added) == len(set(added))
    assert DOCKER_DEFAULTS_USED <= DOCKER_DEFAULTS
    assert set(added) == set(compose_worker["cap_add"]) | DOCKER_DEFAULTS_USED
    assert context["privileged"] is False  # compose's documented fallback, not the default
    assert "allowPrivilegeEscalation" not in context  # refused with SYS_ADMIN
    # compose's security_opt, as a pod says it.
    assert {"apparmor=unconfined", "seccomp=unconfined"} <= set(compose_worker["security_opt"])
    assert context["seccompProfile"] == {"type": "Unconfined"}
    assert context["appArmorProfile"] == {"type": "Unconfined"}
    assert (
        _one("Namespace", "sandbox")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == "privileged"
    )


def test_worker_volumes_and_command():
    pod = _pod("Deployment", "sandbox-worker")
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    settings = Settings()
    assert mounts[str(settings.run_dir)]["emptyDir"]["medium"] == "Memory"  # compose's tmpfs
    assert "emptyDir" in mounts[str(settings.state_dir)]
    assert str(settings.cgroup_root) not in mounts  # its own cgroup, made writable (worker.yaml)
    assert not any("hostPath" in v for v in volumes.values())
    compose_worker = _compose()["services"]["worker"]
    script, *args = container["args"]
    assert container["command"] == ["/bin/sh", "-c"]
    assert script.rstrip().endswith('exec sandbox-entrypoint "$@"')  # deploy/entrypoint.sh
    assert args == ["sandbox-entrypoint", *compose_worker["command"]]
    assert container["envFrom"] == [{"configMapRef": {"name": "sandbox-worker"}}]


def test_metrics_are_served_and_scraped():
    template = _one("Deployment", "sandbox-worker")["spec"]["template"]
    port = int(_config()["SANDBOX_METRICS_PORT"])
    assert [str(port)] == _compose()["services"]["worker"]["expose"]
    [metrics] = template["spec"]["containers"][0]["ports"]
    assert (metrics["name"], metrics["containerPort"]) == ("metrics", port)
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)


def test_redis_runs_as_compose_runs_it():
    compose = _compose()
    service = compose["services"]["redis"]
    pod = _pod("StatefulSet", "redis")
    container = pod["containers"][0]
    assert container["image"] == service["image"]
    ours, theirs = _options(container["args"]), _options(service["command"])
    assert set(ours) == set(theirs)
    files = _secret_files(pod)
    for name, value in theirs.items():
        if value.startswith(
            "/run/secrets/"
        ):  # the same file of redis-secrets.sh, mounted elsewhere
            compose_file = compose["secrets"][value.removeprefix("/run/secrets/")]["file"]
            assert files[ours[name]][1] == Path(compose_file).name, name
        else:
            assert ours[name] == value, name  # TLS only, client certificates, AOF and its fsync
    assert ours["port"] == "0"
    [port] = container["ports"]
    assert port["containerPort"] == int(ours["tls-port"])
    assert _one("Service", "redis")["spec"]["ports"][0]["port"] == int(ours["tls-port"])
    assert urlsplit(_config()["SANDBOX_REDIS_URL"]).port == int(ours["tls-port"])
    claim = _one("StatefulSet", "redis")["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert {"name": claim, "mountPath": "/data"} in container["volumeMounts"]  # the AOF persists
    for probe in ("readinessProbe", "livenessProbe"):
        assert "--tls" in container[probe]["exec"]["command"][-1]


def test_selectors_match_the_pods_they_mean():
    worker = _one("Deployment", "sandbox-worker")
    redis = _one("StatefulSet", "redis")
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return selector.items() <= labels.items()

    assert selects(worker["spec"]["selector"]["matchLabels"], worker_labels)
    assert selects(redis["spec"]["selector"]["matchLabels"], redis_labels)
    assert selects(_one("Service", "redis")["spec"]["selector"], redis_labels)
    assert redis["spec"]["serviceName"] == "redis"
    assert _one("Service", "redis")["spec"]["clusterIP"] == "None"  # headless
    assert selects(
        _one("PodDisruptionBudget", "sandbox-worker")["spec"]["selector"]["matchLabels"],
        worker_labels,
    )
    [anti] = worker["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert anti["topologyKey"] == "kubernetes.io/hostname"  # one worker per node
    assert selects(anti["labelSelector"]["matchLabels"], worker_labels)
    # Workers reach Redis and DNS only; Redis takes workers (and labelled clients, KEDA).
    workers = _one("NetworkPolicy", "sandbox-worker")["spec"]
    assert selects(workers["podSelector"]["matchLabels"], worker_labels)
    assert set(workers["policyTypes"]) == {"Ingress", "Egress"}
    to_redis, to_dns = workers["egress"]
    assert selects(to_redis["to"][0]["podSelector"]["matchLabels"], redis_labels)
    assert to_redis["ports"] == [{"port": 6380, "protocol": "TCP"}]
    assert {p["port"] for p in to_dns["ports"]} == {53}
    assert workers["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    broker = _one("NetworkPolicy", "redis")["spec"]
    assert selects(broker["podSelector"]["matchLabels"], redis_labels)
    assert "egress" not in broker
    assert "Egress" in broker["policyTypes"]
    assert selects(broker["ingress"][0]["from"][0]["podSelector"]["matchLabels"], worker_labels)


# The HTTP API (api.yaml): no root, the workers' Redis settings, Judge0's port.
API = "sandbox-api"
API_SECRET = "sandbox-api"


def _api_env() -> dict[str, dict[str, Any]]:
    """The API container's environment: name -> its ``valueFrom`` (``{}`` for a plain value)."""
    env = _pod("Deployment", API)["containers"][0]["env"]
    return {e["name"]: e.get("valueFrom", {}) for e in env}


def test_api_runs_as_nobody_with_nothing():
    """Pod Security's "restricted" level, as compose's `user`; none of the worker's privileges."""
    pod = _pod("Deployment", API)
    [container] = pod["containers"]
    context = {**pod["securityContext"], **container["securityContext"]}  # the container's wins
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == context["runAsGroup"] == 65534
    assert (
        _compose()["services"]["api"]["user"] == f"{context['runAsUser']}:{context['runAsGroup']}"
    )
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in context
    assert "appArmorProfile" not in context  # the runtime's default
    assert pod["automountServiceAccountToken"] is False
    volumes = pod["volumes"]
    assert all(set(v) <= {"name", "secret", "emptyDir"} for v in volumes)  # no hostPath
    # The secret files are readable by its group, not by root alone as the worker's.
    for volume in volumes:
        if "secret" in volume:
            assert volume["secret"]["defaultMode"] & 0o077 <= 0o040, volume["name"]
    assert pod["securityContext"]["fsGroup"] == context["runAsGroup"]


def test_api_settings_are_settings_and_agree_with_compose(monkeypatch):
    from sandbox.api.settings import ApiSettings

    config = _config()
    env = _api_env()
    fields = {
        f"SANDBOX_{name.upper()}" for name in {*Settings.model_fields, *WorkerSettings.model_fields}
    } | {f"SANDBOX_API_{name.upper()}" for name in ApiSettings.model_fields}
    assert set(env) <= fields
    # The workers' settings come from their ConfigMap, each under its own name.
    shared = {name for name, source in env.items() if "configMapKeyRef" in source}
    for name in shared:
        assert env[name]["configMapKeyRef"] == {"name": "sandbox-worker", "key": name}
        assert name in config, name
    # A client's settings, not the worker's: with this one, importing worker.app would
    # make a metrics directory under /run/sandbox, which the API cannot write.
    assert "SANDBOX_METRICS_PORT" not in env
    assert {"SANDBOX_QUEUE", "SANDBOX_MAX_MEMORY", "SANDBOX_MAX_WALL_TIME"} <= shared
    # Tokens from the Secret the comments say how to make; DELETE's optionally.
    secrets_ = {
        name: source["secretKeyRef"] for name, source in env.items() if "secretKeyRef" in source
    }
    assert secrets_ == {
        "SANDBOX_API_AUTHN_TOKENS": {"name": API_SECRET, "key": "authn-tokens"},
        "SANDBOX_API_AUTHZ_TOKENS": {"name": API_SECRET, "key": "authz-tokens", "optional": True},
    }
    for doc in (KUBE / "api.yaml", ROOT / "deploy/README.md"):
        text = doc.read_text()
        assert f"create secret generic {API_SECRET}" in text, doc
        assert "--from-literal=authn-tokens=" in text, doc
    compose_env = _compose()["services"]["api"]["environment"]
    assert set(compose_env) <= set(env)
    for name in shared & set(compose_env):
        if name != "SANDBOX_REDIS_URL" and not name.endswith("_FILE"):
            assert config[name] == compose_env[name], name
    # Every value parses, as the pod would read it (a token list as the Secret holds it).
    for name in shared:
        monkeypatch.setenv(name, config[name])
    monkeypatch.setenv("SANDBOX_API_AUTHN_TOKENS", '["a-token"]')
    api, worker = ApiSettings(), WorkerSettings()
    assert api.authn_tokens == ["a-token"]
    assert worker.queue == config["SANDBOX_QUEUE"]
    # The Redis client files: the workers', at the same paths, where the settings point.
    files = _secret_files(_pod("Deployment", API))
    assert files == _secret_files(_pod("Deployment", "sandbox-worker"))
    assert {config[name] for name in shared if name.endswith("_FILE")} == set(files)


def test_api_agrees_with_compose():
    compose_api = _compose()["services"]["api"]
    pod = _pod("Deployment", API)
    [container] = pod["containers"]
    assert container["command"] == compose_api["entrypoint"]
    assert "args" not in container  # the image's CMD is the worker's
    worker = _pod("Deployment", "sandbox-worker")["containers"][0]
    assert container["image"] == worker["image"]  # one image, deploy/Dockerfile
    assert compose_api["build"] == _compose()["services"]["worker"]["build"]
    command = container["command"]
    port = int(command[command.index("--port") + 1])
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert port == 2358  # Judge0's
    assert compose_api["ports"] == [f"{port}:{port}"]
    [http] = container["ports"]
    assert (http["name"], http["containerPort"]) == ("http", port)
    assert pod["terminationGracePeriodSeconds"] == _seconds(compose_api["stop_grace_period"])


def test_api_service_and_policies_select_its_pods():
    api = _one("Deployment", API)
    labels = api["spec"]["template"]["metadata"]["labels"]
    redis_pod = _pod("StatefulSet", "redis")
    redis_labels = _one("StatefulSet", "redis")["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], pod_labels: dict[str, str]) -> bool:
        return selector.items() <= pod_labels.items()

    assert selects(api["spec"]["selector"]["matchLabels"], labels)
    assert not selects(api["spec"]["selector"]["matchLabels"], redis_labels)
    worker_labels = _one("Deployment", "sandbox-worker")["spec"]["template"]["metadata"]["labels"]
    assert not selects(api["spec"]["selector"]["matchLabels"], worker_labels)
    assert labels["app.kubernetes.io/part-of"] == worker_labels["app.kubernetes.io/part-of"]
    # Judge0's port, to the container's named port.
    service = _one("Service", API)["spec"]
    assert selects(service["selector"], labels)
    [port] = service["ports"]
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert port["port"] == 2358
    assert port["targetPort"] == container["ports"][0]["name"]
    # A Service named sandbox-api would otherwise inject SANDBOX_API_* variables.
    assert api["spec"]["template"]["spec"]["enableServiceLinks"] is False
    # Stateless: two replicas, one of which a drain may take.
    assert api["spec"]["replicas"] == 2
    budget = _one("PodDisruptionBudget", API)["spec"]
    assert selects(budget["selector"]["matchLabels"], labels)
    assert budget["maxUnavailable"] < api["spec"]["replicas"]
    # Its policy: clients on its port; Redis and DNS out, nothing else (callbacks off).
    policy = _one("NetworkPolicy", API)["spec"]
    assert selects(policy["podSelector"]["matchLabels"], labels)
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [ingress] = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    to_redis, to_dns = policy["egress"]
    assert selects(to_redis["to"][0]["podSelector"]["matchLabels"], redis_labels)
    assert to_redis["ports"] == [
        {"port": redis_pod["containers"][0]["ports"][0]["containerPort"], "protocol": "TCP"}
    ]
    assert to_dns == _one("NetworkPolicy", "sandbox-worker")["spec"]["egress"][1]
    # Redis takes it.
    redis_from = _one("NetworkPolicy", "redis")["spec"]["ingress"][0]["from"]
    assert any(
        "namespaceSelector" not in peer and selects(peer["podSelector"]["matchLabels"], labels)
        for peer in redis_from
    )


async def test_api_probes_hit_a_route_that_needs_no_token():
    import httpx

    from sandbox.api.app import create_app
    from sandbox.api.settings import ApiSettings

    app = create_app(ApiSettings(authn_tokens=["a-token"]))
    routes = {(route.path, method) for route in app.app.routes for method in route.methods or ()}
    container = _pod("Deployment", API)["containers"][0]
    # No lifespan (ASGITransport runs none): no Redis client, as the probed route needs none.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["port"] == container["ports"][0]["name"], probe
            assert (get["path"], "GET") in routes, probe
            assert "httpHeaders" not in get  # a probe cannot read a token from a Secret
            assert (await client.get(get["path"])).status_code == 200, probe
        # Why not Judge0's /about or /version: they answer 401 without the token.
        assert (await client.get("/about")).status_code == 401
