"""What the security suites share: the services' operations read from their own OpenAPI
documents and classified (public, signed-in, admin, internal, webhook), the smallest plausible
request for each, and shoppers signed up through the stack.

Used by the authorization matrix and the request suite (CSRF, body fuzz), so a route added to a
service is covered by both without anyone listing it.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from ember_devkit.testing.stack import RunningStack
from ember_shared.cookies import CSRF_COOKIE

T = TypeVar("T")
PROBLEM = "application/problem+json"
METHODS = ("get", "post", "put", "patch", "delete")
CARD_OK = "4242 4242 4242 4242"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
}

PUBLIC, SIGNED_IN, ADMIN, INTERNAL, WEBHOOK = "public", "signed-in", "admin", "internal", "webhook"
ROLES = ("anonymous", "shopper-a", "shopper-b", "admin", "service")

#: Routes whose document says nothing about who may call them (no security requirement, no
#: admin tag, no /internal/ prefix). Each is listed with what it is; a route missing from here
#: and from the document's own classification fails the test.
UNDOCUMENTED: dict[tuple[str, str], str] = {
    ("POST", "/api/auth/forgot-password"): PUBLIC,
    ("GET", "/api/auth/jwks.json"): PUBLIC,
    ("GET", "/.well-known/jwks.json"): PUBLIC,
    ("POST", "/api/auth/login"): PUBLIC,
    ("POST", "/api/auth/logout"): PUBLIC,
    ("POST", "/api/auth/refresh"): PUBLIC,
    ("POST", "/api/auth/register"): PUBLIC,
    ("POST", "/api/auth/reset-password"): PUBLIC,
    ("POST", "/api/auth/verify-email"): PUBLIC,
    ("GET", "/api/auth/google/callback"): PUBLIC,
    ("GET", "/api/auth/google/login"): PUBLIC,
    ("GET", "/api/products/{ref}"): PUBLIC,
    ("GET", "/api/products"): PUBLIC,
    ("GET", "/api/products/search"): PUBLIC,
    ("GET", "/api/categories"): PUBLIC,
    # The owner (signed in) or the guest holding the order link's secret; anyone else 404.
    ("GET", "/api/orders/{order_id}"): PUBLIC,
    ("GET", "/api/orders/{order_id}/tracking"): PUBLIC,
    # Anyone may send; only a valid provider signature is accepted.
    ("POST", "/api/webhooks/stripe"): WEBHOOK,
    ("POST", "/api/webhooks/resend"): WEBHOOK,
}

#: Path parameters that name a resource a shopper owns: they get shopper A's id.
OWNED = ("order_id", "address_id", "subscription_id", "session_id")


def classify(path: str, operation: dict[str, Any]) -> str | None:
    """What the document says of the route; None when it does not say."""
    if path.startswith("/internal/"):
        return INTERNAL
    tags = operation.get("tags") or []
    if any(str(tag).startswith("admin") for tag in tags):
        return ADMIN
    if tags == ["health"]:
        return PUBLIC
    security = operation.get("security")
    if security is None:
        return None
    if {} in security:
        return PUBLIC  # signing in is optional (a guest's cart, a guest's checkout)
    if security == [{"BearerToken": []}]:
        return SIGNED_IN
    return None


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    path: str
    kind: str
    operation: dict[str, Any] = field(hash=False, compare=False)
    document: dict[str, Any] = field(hash=False, compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.service} {self.method} {self.path}"

    @property
    def params(self) -> list[dict[str, Any]]:
        return list(self.operation.get("parameters") or [])

    @property
    def owned(self) -> bool:
        return any(p["in"] == "path" and p["name"] in OWNED for p in self.params)


# --- minimal valid inputs from the JSON schemas -----------------------------------------------

#: Values by property name, for fields whose pattern or meaning a generic value would miss.
KNOWN_VALUES: dict[str, Any] = {
    **ADDRESS,
    "email": "matrix@example.com",
    "password": "Matrix-" + "q7Zr!x2Lp9",
    "current_password": "Matrix-wrong-1A!",
    "new_password": "Matrix-" + "n3W!pw9Kq2",
    "currency": "USD",
    "phone": "",
    "line2": "",
    "state": "",
    "q": "coffee",
    "reason": "matrix",
    "interval": "month",
}


#: Optional fields sent all the same: without one of them the operation refuses every body.
ALSO_SENT = ("shipping_address",)


def fits(schema: dict[str, Any], value: Any) -> bool:
    if not isinstance(value, str):
        return True
    pattern = schema.get("pattern")
    return int(schema.get("minLength", 0)) <= len(value) <= int(
        schema.get("maxLength", 10_000)
    ) and (pattern is None or re.search(pattern, value) is not None)


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


class Values:
    """Builds the smallest plausible value for a schema, with the test's ids for uuid fields."""

    def __init__(self, ids: Callable[[str], str]) -> None:
        self.ids = ids

    def build(self, document: dict[str, Any], schema: dict[str, Any], name: str = "") -> Any:
        schema = resolve(document, schema)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                options = [
                    resolve(document, s)
                    for s in schema[key]
                    if resolve(document, s) != {"type": "null"}
                ]
                options = [o for o in options if o.get("type") != "null"] or options
                return self.build(document, options[0], name) if options else None
        known = KNOWN_VALUES.get(name)
        if known is not None and not schema.get("enum") and fits(schema, known):
            return known
        if "enum" in schema:
            return schema["enum"][0]
        if "const" in schema:
            return schema["const"]
        kind = schema.get("type", "object")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object":
            properties = schema.get("properties", {})
            keys = list(schema.get("required") or [])
            keys += [k for k in ALSO_SENT if k in properties and k not in keys]
            # Nothing required (a PATCH): every field, so the body changes something.
            keys = keys or list(properties)
            return {
                key: self.build(document, properties[key], key) for key in keys if key in properties
            }
        if kind == "array":
            item = schema.get("items", {})
            return [self.build(document, item, name) for _ in range(schema.get("minItems", 1) or 1)]
        if kind == "integer":
            return int(schema.get("minimum", 1) or 1)
        if kind == "number":
            return schema.get("minimum", 1)
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return self.string(schema, name)

    def string(self, schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            return self.ids(name)
        if fmt == "email":
            return "matrix@example.com"
        if fmt == "date-time":
            return dt.datetime.now(dt.UTC).isoformat()
        if fmt == "date":
            return dt.datetime.now(dt.UTC).date().isoformat()
        if fmt in ("uri", "url"):
            return "https://example.com/"
        candidates = [str(e) for e in schema.get("examples") or []]
        candidates += ["matrix", "GB", "ab12", "x", "1732370000000-0"]
        pattern = schema.get("pattern")
        low, high = int(schema.get("minLength", 0)), int(schema.get("maxLength", 10_000))
        for raw in candidates:
            candidate = raw.ljust(low, "x")[:high]
            if pattern is None or re.search(pattern, candidate):
                return candidate
        return candidates[0]


# --- the callers -------------------------------------------------------------------------------


@dataclass
class Shopper:
    email: str
    token: str
    session_id: str
    user_id: str
    #: The cookies identity set when the link was opened (a browser's sign-in).
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def csrf(self) -> str:
        return self.cookies.get(CSRF_COOKIE, "")


def sign_up(stack: RunningStack, gateway: httpx.Client, label: str) -> Shopper:
    email = f"matrix-{label}-{uuid.uuid4().hex[:8]}@example.com"
    password = "Roast-" + secrets.token_urlsafe(12)
    asked = gateway.post("/api/auth/register", json={"email": email, "password": password})
    assert asked.status_code == 202, asked.text
    opened = gateway.post(
        "/api/auth/verify-email", json={"token": stack.mailed_token(email, "/verify-email")}
    )
    assert opened.status_code == 201, opened.text
    body = opened.json()
    cookies = {c.name: c.value or "" for c in gateway.cookies.jar}
    gateway.cookies.clear()
    return Shopper(
        email,
        body["access_token"],
        str(body["session_id"]),
        str(body["user"]["id"]),
        cookies,
    )


def documents(stack: RunningStack) -> dict[str, dict[str, Any]]:
    """Every service's full document (internal routes included), from its own port."""
    found = {}
    token = {"X-Service-Token": stack.env["INTERNAL_SERVICE_TOKEN"]}
    with httpx.Client(timeout=15) as client:
        for service in stack.services:
            url = f"{stack.service_url(service)}/internal/docs/openapi.json"
            answer = client.get(url, headers=token)
            assert answer.status_code == 200, f"{url}: {answer.status_code}"
            found[service] = answer.json()
    return found


def enumerate_operations(docs: dict[str, dict[str, Any]]) -> tuple[list[Operation], list[str]]:
    operations, unclassified = [], []
    for service, document in docs.items():
        for path, item in document["paths"].items():
            for method in METHODS:
                if method not in item:
                    continue
                operation = {
                    **item[method],
                    "parameters": [
                        *(item.get("parameters") or []),
                        *(item[method].get("parameters") or []),
                    ],
                }
                kind = classify(path, operation) or UNDOCUMENTED.get((method.upper(), path))
                if kind is None:
                    unclassified.append(f"{service} {method.upper()} {path}")
                    continue
                operations.append(
                    Operation(service, method.upper(), path, kind, operation, document)
                )
    return operations, unclassified


def product(gateway: httpx.Client, admin: dict[str, str]) -> str:
    made = gateway.post(
        "/api/admin/products/",
        json={
            "name": f"Matrix Coffee {uuid.uuid4().hex[:8]}",
            "price": 1500,
            "on_hand": 50,
            "currency": "USD",
        },
        headers=admin,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def request_for(op: Operation, ids: Callable[[str], str]) -> dict[str, Any]:
    """The URL (path filled), query and body of one call of ``op``; ``ids`` gives the id for a
    uuid path parameter or field by its name."""
    values = Values(ids)
    path = op.path
    query: dict[str, Any] = {}
    for param in op.params:
        name = param["name"]
        if param["in"] == "path":
            schema = param.get("schema", {})
            if schema.get("format") == "uuid" or name == "ref":
                value = ids(name)
            else:
                value = str(values.build(op.document, schema, name))
            path = path.replace("{" + name + "}", value)
        elif param["in"] == "query" and param.get("required"):
            query[name] = values.build(op.document, param.get("schema", {}), name)
    call: dict[str, Any] = {"url": path, "params": query}
    body = op.operation.get("requestBody")
    if body:
        content = body.get("content", {})
        if "application/json" in content:
            call["json"] = values.build(op.document, content["application/json"]["schema"])
        elif "multipart/form-data" in content:
            schema = resolve(op.document, content["multipart/form-data"].get("schema", {}))
            field_name = next(iter(schema.get("properties", {"file": {}})))
            call["files"] = {field_name: ("matrix.png", b"\x89PNG\r\n\x1a\n", "image/png")}
        else:
            call["content"] = b"{}"
            call["headers"] = {"Content-Type": next(iter(content), "application/json")}
    return call
