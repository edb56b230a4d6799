"""The security suite's request cases (issue 10), generated from the OpenAPI documents like the
authorization matrix, so a route added later is covered without anyone listing it.

- Bodies (finding 5): every operation that takes a JSON body, called through Caddy with the
  credentials it needs, gets a body nested 10,000 deep, one that is not UTF-8 and one over the
  size limit; each is a 4xx problem+json (never a 5xx, never a hang).
- CSRF (finding 10): every state change a browser's cookies authenticate is refused with 403
  problem+json when sent from another site, without the session's CSRF token or with another
  session's; a JSON body sent as ``text/plain`` is 415. The same calls made as the shop's own
  pages make them are not refused, so each refusal is the case's doing.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory
from ember_shared.cookies import ACCESS_COOKIE, CSRF_COOKIE
from security_testkit import (
    ADMIN,
    INTERNAL,
    PROBLEM,
    PUBLIC,
    SIGNED_IN,
    WEBHOOK,
    Operation,
    Shopper,
    documents,
    enumerate_operations,
    product,
    request_for,
    sign_up,
)

pytestmark = pytest.mark.stack

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
#: Identity's session routes take no body: the session cookie authenticates them.
SESSION_ROUTES = ("/api/auth/refresh", "/api/auth/logout")
#: Every service takes at most 1 MiB (the largest JSON limit; checkout's webhook takes less).
OVER_THE_LIMIT = 1_048_576 + 64 * 1024
DEPTH = 10_000
CROSS_SITE = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}


@dataclass
class Browser:
    """A signed-in browser's cookies and the CSRF token its pages echo."""

    cookies: dict[str, str]
    csrf: str

    def cookie_header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}


@dataclass
class Setting:
    stack: RunningStack
    gateway: httpx.Client
    operations: list[Operation]
    shopper: Shopper
    admin_token: str
    #: Shopper C's browser, the admin's, and another shopper's (its CSRF token is the wrong one).
    browser: Browser
    admin_browser: Browser
    other: Browser
    product_id: str

    def ids(self, name: str) -> str:
        return self.product_id if name in ("product_id", "ref") else str(uuid.uuid4())

    def browser_for(self, op: Operation) -> Browser:
        return self.admin_browser if op.kind == ADMIN else self.browser

    def bearer_for(self, op: Operation) -> dict[str, str]:
        if op.kind == WEBHOOK:
            return {}
        token = self.admin_token if op.kind == ADMIN else self.shopper.token
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def setting(stack: RunningStack, tokens: TokenFactory) -> Iterator[Setting]:
    operations, _ = enumerate_operations(documents(stack))
    admin_token, _ = tokens.admin()
    with httpx.Client(base_url=stack.url, timeout=30) as gateway:
        product_id = product(gateway, tokens.bearer(admin_token))
        shopper, other = sign_up(stack, gateway, "c"), sign_up(stack, gateway, "d")
        assert shopper.csrf
        assert other.csrf
        assert shopper.csrf != other.csrf
        admin_browser = Browser({ACCESS_COOKIE: admin_token}, tokens.csrf(admin_token))
        admin_browser.cookies[CSRF_COOKIE] = admin_browser.csrf
        yield Setting(
            stack,
            gateway,
            operations,
            shopper,
            admin_token,
            Browser(shopper.cookies, shopper.csrf),
            admin_browser,
            Browser(other.cookies, other.csrf),
            product_id,
        )


def takes_json(op: Operation) -> bool:
    body = op.operation.get("requestBody") or {}
    return "application/json" in (body.get("content") or {})


def public_facing(op: Operation) -> bool:
    return op.kind != INTERNAL


def cookie_authenticated(op: Operation) -> bool:
    """A state change a signed-in browser's cookies authenticate: signed-in and admin routes,
    those where signing in is optional (a cart, a checkout) and identity's session routes."""
    if op.method not in UNSAFE or op.kind in (INTERNAL, WEBHOOK):
        return False
    if op.kind in (SIGNED_IN, ADMIN) or op.path in SESSION_ROUTES:
        return True
    return any("BearerToken" in requirement for requirement in op.operation.get("security") or [])


@dataclass
class Answer:
    case: str
    op: Operation
    status: int
    content_type: str
    kind: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.case} {self.op.name} -> {self.status}"


def call(
    setting: Setting,
    op: Operation,
    case: str,
    headers: dict[str, str],
    *,
    content: bytes | None = None,
) -> Answer:
    """One call of ``op`` through Caddy with its smallest plausible request, the body replaced
    by ``content`` when given; a call that does not answer in time is a hang."""
    request = request_for(op, setting.ids)
    request_headers = {**request.pop("headers", {}), **headers}
    if content is not None:
        request.pop("json", None)
        request["content"] = content
        request_headers.setdefault("Content-Type", "application/json")
    setting.gateway.cookies.clear()
    try:
        answer = setting.gateway.request(op.method, headers=request_headers, timeout=20, **request)
    except httpx.TimeoutException:
        return Answer(case, op, 0, "", "", "no answer within 20 s")
    content_type = answer.headers.get("content-type", "")
    kind = ""
    if content_type.startswith(PROBLEM):
        kind = str(answer.json().get("type", "")).rsplit("/", 1)[-1]
    return Answer(case, op, answer.status_code, content_type, kind, answer.text[:200])


def refused(
    answers: list[Answer], statuses: tuple[int, ...], kinds: tuple[str, ...] = ()
) -> list[str]:
    wrong = []
    for a in answers:
        if a.status not in statuses:
            wrong.append(f"{a.where}: expected {statuses} {a.text}")
        elif not a.content_type.startswith(PROBLEM):
            wrong.append(f"{a.where}: refusal not problem+json ({a.content_type})")
        elif kinds and a.kind not in kinds:
            wrong.append(f"{a.where}: problem {a.kind!r}, expected {kinds}")
    return wrong


# --- bodies ------------------------------------------------------------------------------------


def deep_body() -> bytes:
    return b'{"a": ' * DEPTH + b"1" + b"}" * DEPTH


def invalid_utf8() -> bytes:
    return b'{"name": "' + b"\xff\xfe\xc3\x28" + b'", "email": "\xed\xa0\x80@example.com"}'


def oversized() -> bytes:
    return b'{"name": "' + b"x" * OVER_THE_LIMIT + b'"}'


def test_malformed_and_oversized_json_bodies_are_4xx_problems(setting: Setting) -> None:
    # Webhooks read their JSON raw (to check the signature): their documents declare no body.
    targets = [
        op
        for op in setting.operations
        if public_facing(op) and (takes_json(op) or op.kind == WEBHOOK)
    ]
    # Each kind is there: a document that stopped declaring JSON bodies would show here.
    assert {PUBLIC, SIGNED_IN, ADMIN, WEBHOOK} <= {op.kind for op in targets}, targets
    bodies = {"deep": deep_body(), "invalid-utf8": invalid_utf8(), "oversized": oversized()}
    answers = [
        call(setting, op, case, setting.bearer_for(op), content=body)
        for op in targets
        for case, body in bodies.items()
    ]
    wrong = []
    for a in answers:
        if a.status == 0 or a.status >= 500:
            wrong.append(f"{a.where}: {a.text}")
        elif not 400 <= a.status < 500:
            wrong.append(f"{a.where}: taken")
        elif not a.content_type.startswith(PROBLEM):
            wrong.append(f"{a.where}: refusal not problem+json ({a.content_type})")
        # The caller may call the route: only the body can be why it is refused.
        elif a.status in (401, 403):
            wrong.append(f"{a.where}: refused before the body was read ({a.kind})")
        elif a.case == "oversized" and a.status != 413:
            wrong.append(f"{a.where}: expected 413 for {OVER_THE_LIMIT} bytes ({a.kind})")
    statuses = Counter((a.case, a.status) for a in answers)
    print(
        f"bodies: {len(targets)} JSON operations x {len(bodies)} bodies = {len(answers)} calls; "
        + ", ".join(f"{case} {status}: {n}" for (case, status), n in sorted(statuses.items()))
    )
    assert not wrong, "\n".join(wrong)


# --- CSRF --------------------------------------------------------------------------------------


def as_page(setting: Setting, op: Operation, browser: Browser, csrf: str | None) -> dict[str, str]:
    """What the shop's own page sends: the browser's cookies and (unless None) a CSRF token."""
    headers = browser.cookie_header()
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    if op.path in SESSION_ROUTES:
        # A body-less form post: JSON would need a preflight, so only the token can vouch.
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return headers


def session_last(op: Operation) -> tuple[int, str]:
    """Signing out goes after the other calls (after a refresh too)."""
    return (1 if op.path == "/api/auth/logout" else 0, op.name)


def genuine_page(setting: Setting, op: Operation) -> dict[str, str]:
    # The session routes' genuine calls rotate and end a session: the other shopper's, so
    # shopper C's browser stays signed in for the tests that follow.
    browser = setting.other if op.path in SESSION_ROUTES else setting.browser_for(op)
    return as_page(setting, op, browser, browser.csrf)


def test_cross_site_and_tokenless_state_changes_are_refused(setting: Setting) -> None:
    targets = sorted(
        (op for op in setting.operations if cookie_authenticated(op)), key=session_last
    )
    kinds = {op.kind for op in targets}
    assert {SIGNED_IN, ADMIN, PUBLIC} <= kinds, kinds
    assert set(SESSION_ROUTES) <= {op.path for op in targets}
    cross_site, missing, foreign = [], [], []
    for op in targets:
        browser = setting.browser_for(op)
        wrong_token = setting.other.csrf if browser is setting.browser else setting.browser.csrf
        page = as_page(setting, op, browser, browser.csrf)
        cross_site.append(call(setting, op, "cross-site", {**page, **CROSS_SITE}))
        missing.append(call(setting, op, "no-csrf", as_page(setting, op, browser, None)))
        foreign.append(
            call(setting, op, "foreign-csrf", as_page(setting, op, browser, wrong_token))
        )
    wrong = refused(cross_site, (403,), ("cross-site",))
    wrong += refused(missing + foreign, (403,), ("csrf",))

    # The same calls as the shop's pages send them pass these checks (whatever the route then
    # answers): the refusals above were the cases' doing, not a route closed to everyone.
    genuine = [call(setting, op, "genuine", genuine_page(setting, op)) for op in targets]
    wrong += [
        f"{a.where}: the genuine call was refused ({a.kind}) {a.text}"
        for a in genuine
        if a.status >= 500
        or (a.status == 403 and a.kind in ("csrf", "cross-site"))
        or (a.status == 415 and a.kind == "unsupported-media-type")
    ]
    print(
        f"csrf: {len(targets)} cookie-authenticated state changes x 3 cases; genuine answers: "
        + ", ".join(f"{s}: {n}" for s, n in sorted(Counter(a.status for a in genuine).items()))
    )
    assert not wrong, "\n".join(wrong)


def test_a_json_body_sent_as_text_plain_is_415(setting: Setting) -> None:
    targets = [
        op
        for op in setting.operations
        if op.method in UNSAFE and takes_json(op) and op.kind not in (INTERNAL, WEBHOOK)
    ]
    answers = []
    for op in targets:
        browser = setting.browser_for(op)
        headers = {**as_page(setting, op, browser, browser.csrf), "Content-Type": "text/plain"}
        body = request_for(op, setting.ids).get("json")
        answers.append(call(setting, op, "text/plain", headers, content=json.dumps(body).encode()))
    wrong = refused(answers, (415,), ("unsupported-media-type",))
    print(f"text/plain: {len(answers)} JSON operations")
    assert not wrong, "\n".join(wrong)
