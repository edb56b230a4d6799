"""deploy/kubernetes, rendered as kustomize would and checked offline: every document against the
Kubernetes schemas (kubernetes-validate, strict), then the shop's own policy: probes, limits and
non-root read-only containers everywhere, an autoscaler and a disruption budget per Deployment,
Caddy the only public entry, the network closed by default, and every process of
docker-compose.yml present with the same settings."""

from __future__ import annotations

import base64
import functools
import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from ember_devkit.devstack.layout import SERVICES
from ember_shared.settings import repo_root
from kustomize_lite import render

ROOT = Path(repo_root())
KUBERNETES = ROOT / "deploy" / "kubernetes"
#: The cluster version the manifests target (the newest whose schemas kubernetes-validate ships
#: is checked too, by the default of the tool).
VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
Doc = dict[str, Any]

# The tool reads its (large) schema files again for every document: read each once.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents
)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Doc]]:
    """The production overlay and its migrations, with the example Secret filled in."""
    tree = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBERNETES, tree)
    shared = tree / "overlays" / "production" / "shared"
    shutil.copy(shared / "secrets.env.example", shared / "secrets.env")
    return {
        "base": render(tree / "base"),
        "production": render(tree / "overlays" / "production"),
        "migrate": render(tree / "overlays" / "production" / "migrate"),
    }


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


def test_every_document_is_valid_against_the_kubernetes_schemas(
    rendered: dict[str, list[Doc]],
) -> None:
    checked = 0
    for name, docs in rendered.items():
        for doc in docs:
            for version in VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    pytest.fail(
                        f"{name}: {doc['kind']}/{doc['metadata']['name']} ({version}): {error}"
                    )
                checked += 1
    assert checked >= 2 * 50


def test_a_broken_manifest_is_caught(rendered: dict[str, list[Doc]]) -> None:
    """The validation above can fail: a misspelt field and a wrong type are refused."""
    deployment = dict(by_kind(rendered["production"], "Deployment")["catalog"])
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, VERSIONS[0], strict=True)
    wrong = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, VERSIONS[0], strict=True)


def test_every_container_has_probes_limits_and_runs_non_root_read_only(
    rendered: dict[str, list[Doc]],
) -> None:
    for doc in workloads(rendered["production"] + rendered["migrate"]):
        pod = pod_spec(doc)
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert pod.get("automountServiceAccountToken") is False
        for container in pod["containers"]:
            where = f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}"
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), where
            assert re.fullmatch(
                r"registry\.example\.com/ember/[a-z]+:1\.0\.0", container["image"]
            ), (
                where,
                container["image"],
            )
            if doc["kind"] == "Deployment":
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    assert probe in container, f"{where} has no {probe}"


def test_services_are_probed_on_their_own_health_routes_and_drain_before_stopping(
    rendered: dict[str, list[Doc]],
) -> None:
    deployments = by_kind(rendered["production"], "Deployment")
    for service in SERVICES:
        container = pod_spec(deployments[service])["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == f"/api/health/{service}/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == f"/api/health/{service}/live"
        assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
        strategy = deployments[service]["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0  # a rollout never takes away serving capacity


def test_every_deployment_has_an_autoscaler_and_a_disruption_budget(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    deployments = by_kind(docs, "Deployment")
    autoscalers = by_kind(docs, "HorizontalPodAutoscaler")
    budgets = by_kind(docs, "PodDisruptionBudget")
    assert set(deployments) == {*SERVICES, "notifier-worker", "caddy"}
    for name, deployment in deployments.items():
        hpa = autoscalers[name]
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"], name
        assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
        selector = budgets[name]["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
    # Two replicas or more wherever a restart must cost shoppers nothing.
    for name in ("identity", "catalog", "cart", "checkout", "orders", "storefront", "caddy"):
        assert deployments[name]["spec"]["replicas"] >= 2, name


def test_caddy_is_the_only_public_entry_and_reaches_every_ready_pod(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    services = by_kind(docs, "Service")
    public = {
        n for n, s in services.items() if s["spec"].get("type") in ("LoadBalancer", "NodePort")
    }
    assert public == {"caddy"}
    assert not [d for d in docs if d["kind"] == "Ingress"]
    caddy = pod_spec(by_kind(docs, "Deployment")["caddy"])["containers"][0]
    env = {e["name"]: e.get("value") for e in caddy["env"]}
    for service in SERVICES:
        host = env[f"{service.upper()}_HOST"]
        assert services[host]["spec"]["clusterIP"] == "None", host  # headless: every pod's address
        assert services[host]["spec"]["selector"] == {"app.kubernetes.io/name": service}
        assert services[service]["spec"]["ports"][0]["port"] == 8000


def test_the_network_is_closed_unless_a_policy_opens_it(rendered: dict[str, list[Doc]]) -> None:
    policies = by_kind(rendered["production"], "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    # Services are reached only from Caddy and from their peers.
    sources = policies["services"]["spec"]["ingress"][0]["from"]
    assert {s["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for s in sources} == {
        "gateway",
        "service",
    }
    # Postgres and Redis only from the services, the worker and the migrations: Caddy is not
    # among the pods any policy lets out to their ports.
    stores = policies["data-stores"]["spec"]
    allowed = set(stores["podSelector"]["matchExpressions"][0]["values"])
    assert allowed == {"service", "worker", "migrations"}
    ports = {p["port"] for rule in stores["egress"] for p in rule["ports"]}
    assert ports == {5432, 6379}
    for name, policy in policies.items():
        if name == "data-stores":
            continue
        for rule in policy["spec"].get("egress", []):
            assert not {p["port"] for p in rule.get("ports", [])} & {5432, 6379}, name
    gateway_out = policies["gateway"]["spec"]["egress"]
    assert all(
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "service"
        for rule in gateway_out
        for peer in rule["to"]
    )


def test_configuration_comes_from_the_config_map_and_the_secret(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    config = by_kind(docs, "ConfigMap")["ember-config"]["data"]
    secret = by_kind(docs, "Secret")["ember-secrets"]["data"]
    documented = (ROOT / ".env.example").read_text()
    peers = {f"{service.upper()}_URL" for service in SERVICES}
    for key in [*config, *secret]:
        # Peers' addresses are documented once, as <SERVICE>_URL.
        wanted = "<SERVICE>_URL" if key in peers else key
        assert wanted in documented, f"{key} is not documented in .env.example"
    assert config["EMBER_MODE"] == "production"
    assert config["PUBLIC_URL"].startswith("https://")
    for doc in workloads(docs + rendered["migrate"]):
        for container in pod_spec(doc)["containers"]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "ember-secrets"
                    assert ref["key"] in secret, (
                        f"{container['name']}: {ref['key']} not in the Secret"
                    )
                # Secrets never sit in a manifest as plain values.
                assert not re.search(r"SECRET|TOKEN|PASSWORD|_KEY_PEM|API_KEY", entry["name"]) or (
                    "valueFrom" in entry
                ), entry["name"]
    assert base64.b64decode(secret["DATABASE_URL"]).startswith(b"postgresql://")


# -- docker-compose.yml and the manifests say the same ------------------------------------------

_REQUIRED = re.compile(r"\$\{[A-Z_]+:\?[^}]*\}")
_DEFAULT = re.compile(r"^\$\{[A-Z_]+:-([^}]*)\}$")


def compose() -> dict[str, Doc]:
    services: dict[str, Doc] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def container_settings(doc: Doc, config: dict[str, str]) -> dict[str, str | None]:
    """What a workload's container sees: the ConfigMap's values, then its own env (a secret's
    value is unknown: None)."""
    container = pod_spec(doc)["containers"][0]
    seen: dict[str, str | None] = {}
    if any(src.get("configMapRef") for src in container.get("envFrom", [])):
        seen.update(config)
    for entry in container.get("env", []):
        ref = entry.get("valueFrom", {}).get("configMapKeyRef")
        seen[entry["name"]] = config[ref["key"]] if ref else entry.get("value")
    return seen


def test_every_compose_service_is_in_the_manifests_with_the_same_settings(
    rendered: dict[str, list[Doc]],
) -> None:
    base = by_kind(rendered["base"], "Deployment")
    production = by_kind(rendered["production"], "Deployment")
    jobs = by_kind(rendered["migrate"], "Job")
    base_config = by_kind(rendered["base"], "ConfigMap")["ember-config"]["data"]
    config = by_kind(rendered["production"], "ConfigMap")["ember-config"]["data"]
    compared = 0
    for name, service in compose().items():
        if name in (
            "postgres",
            "redis",
        ):  # external in Kubernetes: a managed service or an operator
            continue
        if service.get("profiles"):  # optional extras (observability): the cluster has its own
            continue
        doc = jobs["migrate"] if name == "migrate" else production[name]
        image = str(service["image"]).split("/", 1)[1].split(":")[0]
        assert pod_spec(doc)["containers"][0]["image"].endswith(f"ember/{image}:1.0.0"), name
        if "command" in service:
            assert pod_spec(doc)["containers"][0]["command"] == service["command"], name
        replicas = (service.get("deploy") or {}).get("replicas")
        if replicas is not None:
            default = _DEFAULT.match(str(replicas))
            assert default, replicas
            assert base[name]["spec"]["replicas"] == int(default.group(1)), f"{name} replicas"
        # Defaults as the base ships them; what compose requires, set by the production overlay.
        defaults = container_settings(base.get(name, doc), base_config)
        settings = container_settings(doc, config)
        for key, raw in (service.get("environment") or {}).items():
            value = str(raw)
            assert key in settings, f"{name}: {key} (docker-compose.yml) is missing"
            compared += 1
            mine = settings[key]
            if mine is None:  # from the Secret
                continue
            if name == "caddy" and key.endswith("_HOST"):
                # Compose's DNS name answers every replica; in Kubernetes that is the headless Service.
                assert mine == f"{value}-pods", (name, key, mine)
            elif key == "EMBER_SITE_ADDRESS" or _REQUIRED.search(value):
                assert mine, f"{name}: {key} must be set"
            elif default := _DEFAULT.match(value):
                assert defaults[key] == default.group(1), (name, key, defaults[key], value)
            elif "${" not in value:
                assert mine == value, (name, key, mine, value)
    assert compared >= 100


# -- least privilege: one Postgres role per service, Redis behind a password (issue 10) ---------

_OWNER = "${POSTGRES_USER:-ember}"
_REDIS_WITH_PASSWORD = re.compile(r"^rediss?://[^:@/]*:[^@/]+@")


def test_only_the_migrations_log_in_as_the_owner_and_redis_asks_for_a_password(
    rendered: dict[str, list[Doc]],
) -> None:
    """No service gets the URL of the schemas' owner: each its own role's (ember_<service>,
    rights on its own schema only, made by the migrations), and every Redis URL has a password."""
    secret = by_kind(rendered["production"], "Secret")["ember-secrets"]["data"]
    seen = set()
    for doc in workloads(rendered["production"] + rendered["migrate"]):
        name = doc["metadata"]["name"]
        for container in pod_spec(doc)["containers"]:
            keys = {
                e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
                for e in container.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            if "DATABASE_URL" not in keys:
                assert name == "caddy", f"{name} has no DATABASE_URL"
                continue
            if name == "migrate":
                assert keys["DATABASE_URL"] == "DATABASE_URL"
                for each in SERVICES:
                    variable = f"{each.upper()}_DATABASE_URL"
                    assert keys[variable] == variable, f"migrate lacks {variable}"
                assert "--roles" in container["command"]
            else:
                own = name.removesuffix("-worker")
                assert keys["DATABASE_URL"] == f"{own.upper()}_DATABASE_URL", name
                seen.add(own)
    assert seen == set(SERVICES)
    for own in SERVICES:
        url = base64.b64decode(secret[f"{own.upper()}_DATABASE_URL"]).decode()
        assert url.startswith(f"postgresql://ember_{own}:"), url
    assert _REDIS_WITH_PASSWORD.match(base64.b64decode(secret["REDIS_URL"]).decode())

    services = compose()
    for name, service in services.items():
        env = service.get("environment") or {}
        if "DATABASE_URL" not in env:
            continue
        url = str(env["DATABASE_URL"])
        if name == "migrate":
            assert url.startswith(f"postgresql://{_OWNER}:"), url
            assert service["command"][-2:] == ["upgrade", "--roles"]
            for other in SERVICES:
                theirs = str(env[f"{other.upper()}_DATABASE_URL"])
                assert theirs.startswith(f"postgresql://ember_{other}:"), theirs
        else:
            owner = name.removesuffix("-worker")
            assert url.startswith(f"postgresql://ember_{owner}:${{{owner.upper()}_DB_"), (name, url)
        assert _OWNER not in url or name == "migrate", name
        assert str(env["REDIS_URL"]).startswith("redis://:${REDIS_PASSWORD:?"), name
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
