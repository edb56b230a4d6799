"""The gateway, through Caddy, with the whole stack running: routing, probes, errors, headers."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ember_devkit.devstack.layout import SERVICES
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory

pytestmark = pytest.mark.stack

PROBLEM = "application/problem+json"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

#: Paths that must never reach a service's /internal routes, whatever their spelling.
INTERNAL_SPELLINGS = (
    "/internal",
    "/internal/",
    "/internal/catalog/products/lookup",
    "/internal/cart/resolve",
    "/INTERNAL/catalog/products/lookup",
    "/Internal/cart/resolve",
    "//internal/cart/resolve",
    "/api/../internal/cart/resolve",
    "/api/products/../../internal/catalog/products/lookup",
    "/%69nternal/cart/resolve",
    "/internal%2Fcart%2Fresolve",
    "/./internal/cart/resolve",
)


@pytest.fixture(scope="module")
def gateway(stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=15, follow_redirects=False) as client:
        yield client


@pytest.fixture(scope="module")
def openapi_documents(stack: RunningStack, gateway: httpx.Client) -> dict[str, dict[str, Any]]:
    documents = {}
    for service in SERVICES:
        response = gateway.get(f"/api/docs/{service}/openapi.json")
        assert response.status_code == 200, (service, response.status_code, response.text[:300])
        documents[service] = response.json()
    return documents


def assert_problem(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    assert response.headers["content-type"].startswith(PROBLEM), (
        response.status_code,
        response.headers.get("content-type"),
        response.text[:300],
    )
    body = response.json()
    for member in ("type", "title", "status", "detail"):
        assert member in body, body
    assert body["status"] == response.status_code
    if status is not None:
        assert response.status_code == status, body
    assert "Traceback" not in response.text
    return body


# -- routing and probes ---------------------------------------------------------------------


def test_every_service_is_running(stack: RunningStack) -> None:
    assert sorted(stack.services) == sorted(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("probe", ["live", "ready"])
def test_every_service_answers_its_probes_through_caddy(
    gateway: httpx.Client, service: str, probe: str
) -> None:
    response = gateway.get(f"/api/health/{service}/{probe}")
    assert response.status_code == 200, response.text
    assert response.json()["service"] == service
    if probe == "ready":
        assert response.json()["status"] == "ready"
        assert set(response.json()["checks"].values()) == {"ok"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_serves_its_api_reference_through_caddy(
    gateway: httpx.Client, openapi_documents: dict[str, dict[str, Any]], service: str
) -> None:
    document = openapi_documents[service]
    assert document["openapi"].startswith("3.")
    assert f"/api/health/{service}/ready" in document["paths"]
    # The public document shows no route of the services' own and not how they authenticate
    # (issue 10 finding 13): those are in the full one, on the service's own port.
    assert not [p for p in document["paths"] if p.startswith("/internal")], service
    assert "X-Service-Token" not in json.dumps(document)
    assert "ServiceToken" not in document.get("components", {}).get("securitySchemes", {})
    page = gateway.get(f"/api/docs/{service}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/internal/" not in page.text


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/auth/no-such-thing/x/y/z", "identity"),
        ("/api/user/no-such-thing/x/y/z", "identity"),
        ("/api/admin/users/no-such-thing/x/y/z", "identity"),
        ("/api/products/no-such-thing/x/y/z", "catalog"),
        ("/api/categories/no-such-thing/x/y/z", "catalog"),
        ("/api/admin/inventory/no-such-thing/x/y/z", "catalog"),
        ("/api/cart/no-such-thing/x/y/z", "cart"),
        ("/api/checkout/no-such-thing/x/y/z", "checkout"),
        ("/api/subscriptions/no-such-thing/x/y/z", "checkout"),
        ("/api/orders/no-such-thing/x/y/z", "orders"),
        ("/api/admin/orders/no-such-thing/x/y/z", "orders"),
        ("/api/admin/emails/no-such-thing/x/y/z", "notifier"),
    ],
)
def test_paths_are_routed_to_the_service_that_owns_them(
    gateway: httpx.Client, path: str, service: str
) -> None:
    # A service's own 404 names the path it saw ("instance"); the gateway's own 404 does not.
    response = gateway.get(path)
    body = assert_problem(response)
    assert response.status_code in (404, 405), body
    assert body.get("instance") == path, (service, body)


def test_unknown_api_routes_get_problem_json_from_the_gateway(gateway: httpx.Client) -> None:
    for path in ("/api/nothing-here", "/api/", "/api/admin/nothing", "/api/docs/nothing"):
        response = gateway.get(path)
        body = assert_problem(response, 404)
        assert body["type"].endswith("/not-found")
        assert UUID_RE.match(body["request_id"])


def test_a_wrong_method_gets_problem_json(gateway: httpx.Client) -> None:
    response = gateway.delete("/api/health/catalog/live")
    assert_problem(response, 405)


# -- error shapes ---------------------------------------------------------------------------


def _json_body_operations(documents: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    found = []
    for service, document in documents.items():
        for path, item in document.get("paths", {}).items():
            if path.startswith("/internal"):
                continue
            for method in ("post", "put", "patch"):
                operation = item.get(method)
                if not operation:
                    continue
                content = (operation.get("requestBody") or {}).get("content") or {}
                if any("json" in media for media in content):
                    found.append(
                        (service, method.upper(), re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path))
                    )
    return found


def test_malformed_json_gets_problem_json_from_every_endpoint_that_takes_json(
    gateway: httpx.Client,
    openapi_documents: dict[str, dict[str, Any]],
    tokens: TokenFactory,
) -> None:
    token, _ = tokens.admin()
    targets = [("storefront", "POST", "/csp-report"), *_json_body_operations(openapi_documents)]
    for service, method, path in targets:
        for broken in (b'{"quantity": ', b"not json at all", b"\xff\xfe{"):
            response = gateway.request(
                method,
                path,
                content=broken,
                headers={"Content-Type": "application/json", **tokens.bearer(token)},
            )
            assert 400 <= response.status_code < 500, (
                service,
                method,
                path,
                response.status_code,
                response.text[:300],
            )
            assert_problem(response)


# -- internal routes ------------------------------------------------------------------------


@pytest.mark.parametrize("path", INTERNAL_SPELLINGS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_internal_routes_are_not_reachable_through_caddy(
    gateway: httpx.Client, stack: RunningStack, path: str, method: str
) -> None:
    headers = {
        "X-Service-Token": stack.env["INTERNAL_SERVICE_TOKEN"],
        "Content-Type": "application/json",
    }
    response = gateway.request(method, path, content=b'{"product_ids": []}', headers=headers)
    assert response.status_code == 404, (path, response.status_code, response.text[:300])
    assert_problem(response, 404)


def test_internal_routes_that_services_serve_are_blocked_at_the_gateway(
    gateway: httpx.Client, stack: RunningStack
) -> None:
    token = {"X-Service-Token": stack.env["INTERNAL_SERVICE_TOKEN"]}
    # The catalog lookup (a fixed contract) answers when called directly with the credential...
    lookup = "/internal/catalog/products/lookup"
    direct = httpx.post(
        stack.service_url("catalog") + lookup, json={"product_ids": []}, headers=token, timeout=15
    )
    assert direct.status_code == 200, direct.text
    # ...and is not there for anyone going through the gateway, credential or not.
    assert_problem(gateway.post(lookup, json={"product_ids": []}, headers=token), 404)
    # So is every internal route a service documents.
    for service in SERVICES:
        document = httpx.get(
            f"{stack.service_url(service)}/internal/docs/openapi.json", headers=token, timeout=15
        )
        assert document.status_code == 200
        for path in document.json().get("paths", {}):
            if path.startswith("/internal"):
                concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
                assert_problem(gateway.post(concrete, json={}, headers=token), 404)


# -- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/api/health/catalog/live", "/api/nothing-here", "/internal/x"]
)
def test_security_headers_are_on_every_response(
    gateway: httpx.Client, stack: RunningStack, path: str
) -> None:
    response = gateway.get(path)
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "server" not in headers
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'self'" in csp
    for origin in (
        "https://js.stripe.com",
        "https://checkout.stripe.com",
        "https://api.stripe.com",
    ):
        assert origin in csp, origin
    standin = stack.env["STRIPE_STANDIN_ORIGIN"].split()
    assert standin, "a local stack points Stripe at its stand-in"
    assert all(origin in csp for origin in standin)
    # Local mode is plain HTTP: no HSTS (it belongs to the production site only).
    assert "strict-transport-security" not in headers


def test_api_reference_pages_get_a_policy_that_lets_their_viewer_load(
    gateway: httpx.Client,
) -> None:
    csp = gateway.get("/api/docs/catalog").headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "https://cdn.jsdelivr.net" in csp
    assert "js.stripe.com" not in csp


def test_every_request_gets_an_id_that_the_service_sees(gateway: httpx.Client) -> None:
    first = gateway.post("/csp-report", content=b"{", headers={"Content-Type": "application/json"})
    second = gateway.post(
        "/csp-report",
        content=b"{",
        headers={"Content-Type": "application/json", "X-Request-ID": "chosen-by-the-client"},
    )
    for response in (first, second):
        request_id = response.headers["x-request-id"]
        assert UUID_RE.match(request_id), request_id
        # The service logged and answered with the id the gateway gave it.
        assert assert_problem(response, 400)["request_id"] == request_id
        assert response.headers.get_list("x-request-id") == [request_id]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_responses_are_compressed(gateway: httpx.Client, encoding: str) -> None:
    response = gateway.get("/api/docs/catalog/openapi.json", headers={"Accept-Encoding": encoding})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == encoding
    if encoding == "gzip":
        assert response.json()["openapi"].startswith("3.")  # httpx decoded the gzip body


def test_gateway_failures_are_problems(stack: RunningStack) -> None:
    # A client of its own: Caddy answers 413 before reading the whole body, and the rest of it
    # on a kept-alive connection would be read as the next test's request headers (431).
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        response = client.post(
            "/csp-report",
            content=b"x" * (13 * 1024 * 1024),
            headers={"Content-Type": "application/json"},
        )
    assert_problem(response, 413)
    assert response.headers["x-content-type-options"] == "nosniff"


# -- pages and media ------------------------------------------------------------------------


def test_the_storefront_page_renders(gateway: httpx.Client) -> None:
    response = gateway.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<title>" in page
    assert "Ember" in page


def test_unknown_pages_go_to_the_storefront(gateway: httpx.Client) -> None:
    # The storefront answers (a page for a browser, a problem for an API client), not the gateway.
    page = gateway.get("/no/such/page", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith(("text/html", PROBLEM))
    api_client = gateway.get("/no/such/page", headers={"Accept": "application/json"})
    assert api_client.status_code == 404
    if api_client.headers["content-type"].startswith(PROBLEM):
        assert api_client.json()["instance"] == "/no/such/page"


def test_media_files_are_served_from_the_media_folder(
    gateway: httpx.Client, stack: RunningStack
) -> None:
    from pathlib import Path

    folder = Path(stack.env["MEDIA_ROOT"]) / "gateway-test"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.txt"
    (folder / name).write_text("roasted")
    response = gateway.get(f"/media/gateway-test/{name}")
    assert response.status_code == 200
    assert response.text == "roasted"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert gateway.get(f"/media/gateway-test/missing-{name}").status_code == 404
    assert gateway.get("/media/../Caddyfile").status_code == 404


def _gateway_routes() -> list[tuple[list[str], str | None]]:
    """(path patterns, upstream port) of each route of the Caddyfile as Caddy reads it, in order."""
    import json
    import subprocess
    from pathlib import Path

    from ember_devkit.devstack.layout import caddy_binary
    from ember_shared.settings import repo_root

    adapted = subprocess.run(
        [
            caddy_binary(),
            "adapt",
            "--config",
            str(Path(repo_root()) / "Caddyfile"),
            "--adapter",
            "caddyfile",
        ],
        capture_output=True,
        check=True,
        text=True,
    )
    server = json.loads(adapted.stdout)["apps"]["http"]["servers"]["srv0"]
    routes = []
    for route in server["routes"]:
        if route.get("group") is None:
            continue
        patterns = [p for matcher in route.get("match") or [{}] for p in matcher.get("path", ["*"])]
        text = json.dumps(route)
        found = re.search(r'"port": "(\d+)"', text)
        routes.append((patterns, found.group(1) if found else None))
    return routes


def test_every_documented_public_path_is_routed_to_its_service(
    openapi_documents: dict[str, dict[str, Any]],
) -> None:
    from fnmatch import fnmatchcase

    from ember_shared.settings import SERVICE_PORTS

    routes = _gateway_routes()
    for service, document in openapi_documents.items():
        for path in document.get("paths", {}):
            # Public routes live under /api (the storefront's pages aside); others stay inside,
            # and /internal (every service's, the storefront's too) is never routed by Caddy.
            if path.startswith("/internal/") or (
                not path.startswith("/api/") and service != "storefront"
            ):
                continue
            concrete = re.sub(r"\{[^}]+\}", "x", path).lower()
            target = next(
                port
                for patterns, port in routes
                if any(fnmatchcase(concrete, p.lower()) for p in patterns)
            )
            assert target == str(SERVICE_PORTS[service]), (service, path, target)
