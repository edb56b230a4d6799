"""The docker compose observability profile, checked without Docker: every config parses, every
service is scraped and traced, and the dashboard charts only series the services export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember_devkit.devstack.layout import SERVICES
from litestar import Litestar, get
from litestar.testing import TestClient
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
PROFILE = ("otel-collector", "jaeger", "prometheus", "grafana")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load(ROOT / "docker-compose.yml"))


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> the repo file or folder bound there."""
    found: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def test_the_profile_runs_collector_jaeger_prometheus_and_grafana(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in PROFILE:
        service = services[name]
        assert service["profiles"] == ["observability"], name
        for target, source in mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the host"
    # Nothing of the shop itself hides behind the profile.
    for name in SERVICES:
        assert "profiles" not in services[name], name
        env = services[name]["environment"]
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" in env, name
        assert "OTEL_TRACES_SAMPLER_ARG" in env, name
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in services["notifier-worker"]["environment"]


def test_prometheus_scrapes_every_replica_of_every_service(compose: dict[str, Any]) -> None:
    config = load(OBS / "prometheus.yml")
    targets: dict[str, tuple[str, int]] = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics", job["job_name"]
        for sd in job["dns_sd_configs"]:
            assert sd["type"] == "A", "every replica's address, not one"
            for name in sd["names"]:
                targets[name] = (job["job_name"], int(sd["port"]))
    assert set(targets) == set(SERVICES)
    for name, (_job, port) in targets.items():
        assert name in compose["services"]
        # The service's own port (the one its peers use), not Caddy's.
        assert f"http://{name}:{port}" == compose["x-service-env"][f"{name.upper()}_URL"]
    mounted = mounts(compose["services"]["prometheus"])
    assert mounted["/etc/prometheus/prometheus.yml"] == OBS / "prometheus.yml"


def test_collector_pipeline_is_whole_and_forwards_to_jaeger(compose: dict[str, Any]) -> None:
    config = load(OBS / "otel-collector.yaml")
    for pipeline in config["service"]["pipelines"].values():
        for part in ("receivers", "processors", "exporters"):
            for name in pipeline.get(part, []):
                assert name in config[part], f"{part}: {name} is used but not defined"
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http.endswith(":4318")
    for exporter in config["exporters"].values():
        host = str(exporter["endpoint"]).split("://")[-1].split(":")[0]
        assert host in compose["services"], host
    # What the services are told to export to is the collector's OTLP/HTTP receiver.
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert "http://otel-collector:4318" in example
    command = compose["services"]["otel-collector"]["command"][0]
    assert command.split("=", 1)[1] in mounts(compose["services"]["otel-collector"])


def exported_series() -> set[str]:
    """Every series name a service exports: the request metrics (as the app factory's request
    layer registers them) and the gauges and counters of the services."""
    # Imported for the metrics they register.
    import catalog.metrics  # noqa: F401
    import notifier.metrics  # noqa: F401
    from ember_shared.request_layer import service_requests

    @get("/ping", sync_to_thread=False)
    def ping() -> str:
        return "pong"

    app = Litestar([ping], middleware=[service_requests("config-test")])
    with TestClient(app) as client:
        assert client.get("/ping").status_code == 200
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    names: set[str] = set()
    for family in REGISTRY.collect():
        # A labelled family with no series yet has no samples: its name says what it will have.
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_grafana_is_provisioned_with_a_dashboard_of_real_series(compose: dict[str, Any]) -> None:
    grafana = mounts(compose["services"]["grafana"])
    provisioning = grafana["/etc/grafana/provisioning"]
    sources = load(provisioning / "datasources" / "datasources.yaml")["datasources"]
    urls = {s["type"]: s["url"] for s in sources}
    assert urls == {"prometheus": "http://prometheus:9090", "jaeger": "http://jaeger:16686"}
    providers = load(provisioning / "dashboards" / "dashboards.yaml")["providers"]
    dashboards_dir = providers[0]["options"]["path"]
    assert dashboards_dir in grafana, "the dashboards folder is not mounted where Grafana reads"
    uids = {s["uid"] for s in sources}

    series = exported_series()
    dashboard = json.loads((grafana[dashboards_dir] / "ember.json").read_text(encoding="utf-8"))
    charted: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            for name in re.findall(r"\bember_[a-z_]+", target["expr"]):
                assert name in series, f"{panel['title']}: {name} is exported by nobody"
                charted.add(name)
    # The figures the issue names are all on it.
    for wanted in (
        "ember_requests_total",
        "ember_request_duration_seconds_bucket",
        "ember_outbox_backlog",
        "ember_outbox_oldest_unpublished_seconds",
        "ember_consumer_lag",
        "ember_consumer_pending",
        "ember_dead_letters",
        "ember_webhooks_total",
        "ember_reservations_held",
        "ember_mails",
        "ember_reconciliations_total",
    ):
        assert wanted in charted, wanted
