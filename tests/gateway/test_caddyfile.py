"""The Caddyfile as Caddy reads it, in both of its modes (no stack needed: `caddy adapt`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ember_devkit.devstack.layout import caddy_binary
from ember_devkit.testing.ports import free_port
from ember_shared.settings import SERVICE_PORTS, repo_root

CADDYFILE = Path(repo_root()) / "Caddyfile"

#: What ARCHITECTURE.md routes to each service (one sample path per rule), plus docs and probes.
ROUTES = {
    "identity": ["/api/auth/login", "/api/user/me", "/api/admin/users", "/api/admin/users/1"],
    "catalog": [
        "/api/products",
        "/api/products/some-slug",
        "/api/categories",
        "/api/admin/products/1",
        "/api/admin/categories",
        "/api/admin/inventory/1",
        "/api/admin/upload-image",
    ],
    "cart": ["/api/cart", "/api/cart/items/1"],
    "checkout": [
        "/api/checkout/session",
        "/api/webhooks/stripe",
        "/api/subscriptions",
        "/api/subscriptions/1",
    ],
    "orders": ["/api/orders", "/api/orders/1", "/api/admin/orders/1", "/api/admin/stats"],
    "notifier": ["/api/webhooks/resend", "/api/admin/emails", "/api/admin/emails/1/replay"],
    "storefront": ["/", "/coffee/some-slug", "/order/1", "/sign-in"],
}


def adapt(**env: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_HOST", "_PORT"))}
    clean.pop("EMBER_SITE_ADDRESS", None)
    clean.pop("EMBER_MODE", None)
    result = subprocess.run(
        [caddy_binary(), "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def validate(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [caddy_binary(), "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def server(config: dict[str, Any]) -> dict[str, Any]:
    servers = config["apps"]["http"]["servers"]
    assert len(servers) == 1
    return next(iter(servers.values()))


def test_the_caddyfile_is_valid_in_both_modes() -> None:
    local = validate()
    assert local.returncode == 0, local.stderr
    production = validate(EMBER_MODE="production", EMBER_SITE_ADDRESS="shop.example.com")
    assert production.returncode == 0, production.stderr


def test_the_caddyfile_is_formatted() -> None:
    result = subprocess.run(
        [caddy_binary(), "fmt", str(CADDYFILE)], capture_output=True, text=True, check=True
    )
    assert result.stdout == CADDYFILE.read_text()


def test_local_mode_is_plain_http_on_one_port_without_hsts() -> None:
    config = adapt()
    assert config["admin"]["disabled"] is True
    srv = server(config)
    assert srv["listen"] == [":8080"]
    text = json.dumps(srv)
    assert '\\"local\\" == \\"production\\"' in text  # the HSTS rule never matches
    assert "tls_connection_policies" not in srv


def test_production_mode_is_https_on_the_shop_domain_with_hsts() -> None:
    config = adapt(EMBER_MODE="production", EMBER_SITE_ADDRESS="shop.example.com")
    srv = server(config)
    assert srv["listen"] == [":443"]
    assert '"host": ["shop.example.com"]' in json.dumps(srv)
    # Automatic HTTPS (certificates and the HTTP->HTTPS redirect) is left on.
    assert "automatic_https" not in srv
    text = json.dumps(srv)
    assert '\\"production\\" == \\"production\\"' in text
    assert "Strict-Transport-Security" in text
    assert "max-age=63072000" in text


def handlers(node: Any) -> list[dict[str, Any]]:
    """Every handler inside a route, however deeply nested in subroutes."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "handler" in node:
            found.append(node)
        for value in node.values():
            found.extend(handlers(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(handlers(value))
    return found


def routes_in_order(config: dict[str, Any]) -> list[tuple[list[str], str | None]]:
    srv = server(config)
    routes = srv["routes"]
    if len(routes) == 1 and routes[0]["handle"][0]["handler"] == "subroute":
        routes = routes[0]["handle"][0]["routes"]  # production wraps the site in a host route
    found = []
    for route in routes:
        if route.get("group") is None:
            continue
        patterns = [p for matcher in route.get("match") or [{}] for p in matcher.get("path", ["*"])]
        kinds = {h["handler"]: h for h in handlers(route.get("handle"))}
        upstream = None
        if "reverse_proxy" in kinds:
            proxy = kinds["reverse_proxy"]
            if "dynamic_upstreams" in proxy:
                dynamic = proxy["dynamic_upstreams"]
                upstream = f"{dynamic['name']}:{dynamic['port']}"
            else:
                upstream = " ".join(u["dial"] for u in proxy["upstreams"])
        elif "static_response" in kinds:
            upstream = "gateway"
        elif "file_server" in kinds:
            upstream = "files"
        found.append((patterns, upstream))
    return found


def route_for(path: str, routes: list[tuple[list[str], str | None]]) -> str | None:
    from fnmatch import fnmatchcase

    return next(
        upstream
        for patterns, upstream in routes
        if any(fnmatchcase(path.lower(), p.lower()) for p in patterns)
    )


@pytest.mark.parametrize("service", sorted(ROUTES))
def test_paths_go_to_the_service_architecture_md_names(service: str) -> None:
    routes = routes_in_order(adapt())
    for path in [
        *ROUTES[service],
        f"/api/docs/{service}",
        f"/api/docs/{service}/openapi.json",
        f"/api/health/{service}/ready",
    ]:
        assert route_for(path, routes) == f"127.0.0.1:{SERVICE_PORTS[service]}", path


def test_upstreams_come_from_the_environment_for_compose() -> None:
    routes = routes_in_order(
        adapt(
            EMBER_MODE="production",
            EMBER_SITE_ADDRESS="shop.example.com",
            CATALOG_HOST="catalog",
            CATALOG_PORT="8000",
        )
    )
    assert route_for("/api/products", routes) == "catalog:8000"
    assert route_for("/api/cart", routes) == f"127.0.0.1:{SERVICE_PORTS['cart']}"


def test_listed_replicas_are_each_an_upstream_probed_and_retried() -> None:
    """`make run` with EMBER_REPLICAS lists every replica's address: each is an upstream, probed
    on its service's liveness route, and a request is retried on another while one restarts."""
    config = adapt(
        EMBER_UPSTREAMS="list",
        CATALOG_UPSTREAMS="127.0.0.1:8102 127.0.0.1:8112 127.0.0.1:8122",
    )
    routes = routes_in_order(config)
    assert route_for("/api/products", routes) == "127.0.0.1:8102 127.0.0.1:8112 127.0.0.1:8122"
    assert route_for("/api/cart", routes) == f"127.0.0.1:{SERVICE_PORTS['cart']}"
    proxies = [h for h in handlers(server(config)["routes"]) if h["handler"] == "reverse_proxy"]
    catalog = next(p for p in proxies if len(p["upstreams"]) == 3)
    # Asked as a balancer: a replica told to stop says "draining" and leaves the rotation.
    assert catalog["health_checks"]["active"]["uri"] == "/api/health/catalog/live?balancer=true"
    assert catalog["health_checks"]["active"]["interval"] == 1_000_000_000
    assert catalog["load_balancing"]["try_duration"] >= 5_000_000_000
    for proxy in proxies:  # every service is probed on its own route
        uri = proxy["health_checks"]["active"]["uri"]
        assert uri.startswith("/api/health/"), uri
        assert uri.endswith("/live?balancer=true"), uri


def test_internal_unknown_api_and_media_paths_never_reach_a_service() -> None:
    routes = routes_in_order(adapt())
    for path in ("/internal", "/internal/catalog/products/lookup", "/INTERNAL/cart/resolve"):
        assert route_for(path, routes) == "gateway", path
    for path in ("/api/nothing", "/api/admin/nothing", "/api/docs/nothing"):
        assert route_for(path, routes) == "gateway", path
    assert route_for("/media/products/a.webp", routes) == "files"


def test_a_lone_gateway_answers_problems_and_production_headers(tmp_path: Path) -> None:
    """Caddy by itself, every service down, in production mode on plain HTTP (no certificate
    needed): its own answers carry the security headers, HSTS included, and are problems."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    class Catalog(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"items":[]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    # One live service behind the gateway: what Caddy adds to a proxied answer shows.
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Catalog)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port, dead = free_port(), free_port()
    env = {
        **os.environ,
        "EMBER_MODE": "production",
        "EMBER_SITE_ADDRESS": f"http://:{port}",
        "MEDIA_ORIGIN": "https://res.cloudinary.com",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "CADDY_BIND": "127.0.0.1",
        "CADDY_ACCESS_LOG": "stderr",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        **{f"{name.upper()}_PORT": str(dead) for name in ROUTES},
        "CATALOG_PORT": str(upstream.server_port),
    }
    pictures = tmp_path / "media" / "products"
    pictures.mkdir(parents=True)
    (pictures / "bag.webp").write_bytes(b"RIFF-full")
    (pictures / "bag-w320.webp").write_bytes(b"RIFF-320")
    access_log = tmp_path / "caddy.log"
    with access_log.open("wb") as sink:
        caddy = subprocess.Popen(
            [caddy_binary(), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/internal", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "caddy did not start"
                time.sleep(0.1)
        proxied = httpx.get(base + "/api/products", timeout=20)
        assert proxied.status_code == 200, proxied.text
        assert proxied.json() == {"items": []}
        # Neither the gateway's make nor the upstream's software is told to the client.
        assert "via" not in proxied.headers, proxied.headers["via"]
        assert "server" not in proxied.headers, proxied.headers["server"]
        down = httpx.get(base + "/api/cart", timeout=20)
        assert down.status_code == 502
        assert down.headers["content-type"] == "application/problem+json"
        assert down.json()["status"] == 502
        assert down.headers["x-content-type-options"] == "nosniff"
        # A guest's order link and Stripe's return address are capabilities: the access log
        # keeps the request, never the secret.
        secret, stripe_session = "tok3n-" + "s" * 40, "cs_test_" + "c" * 56
        httpx.get(f"{base}/order/01?token={secret}&session_id={stripe_session}&page=2", timeout=20)
        deadline = time.monotonic() + 20
        while "/order/01" not in (access_log.read_text() if access_log.exists() else ""):
            assert time.monotonic() < deadline, "the request never reached the access log"
            time.sleep(0.1)
        logged = access_log.read_text()
        assert secret not in logged
        assert stripe_session not in logged
        assert "token=REDACTED" in logged
        assert "page=2" in logged
        hidden = httpx.get(base + "/internal/cart/resolve", timeout=5)
        assert hidden.status_code == 404
        assert hidden.json()["request_id"] == hidden.headers["x-request-id"]
        for response in (down, hidden):
            # Two years, subdomains and preload: what the HSTS preload list requires.
            assert response.headers["strict-transport-security"] == (
                "max-age=63072000; includeSubDomains; preload"
            )
            assert response.headers["x-frame-options"] == "DENY"
        # A size made at upload is served; one never made (an older upload) is the full picture.
        sized = {
            w: httpx.get(f"{base}/media/products/bag-w{w}.webp", timeout=5) for w in (320, 640)
        }
        assert sized[320].content == b"RIFF-320"
        assert sized[640].content == b"RIFF-full"
        assert httpx.get(f"{base}/media/products/none-w640.webp", timeout=5).status_code == 404
        # Product images delivered by Cloudinary are allowed by the pages' policy (else every
        # product image would be blank with MEDIA_STORE=cloudinary).
        directives = dict(
            part.strip().split(" ", 1)
            for part in hidden.headers["content-security-policy"].split(";")
            if " " in part.strip()
        )
        assert directives["img-src"].split() == [
            "'self'",
            "data:",
            "blob:",
            "https://*.stripe.com",
            "https://res.cloudinary.com",
        ]
    finally:
        caddy.terminate()
        caddy.wait(10)
        upstream.shutdown()
        upstream.server_close()
