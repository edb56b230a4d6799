"""A local stand-in for Resend: ``POST /emails``, an inbox to read what was sent, signed webhooks.

Run it with ``uvicorn --factory standins.resend:create_app --port 8202``; point the ``resend``
SDK at it with ``RESEND_API_URL=http://127.0.0.1:8202`` (or ``resend.api_url``) and any ``re_``
key. It speaks Resend's shapes:

- ``POST /emails`` (Bearer ``re_...``) takes Resend's send body and answers ``{"id": ...}``;
  errors are Resend's ``{"statusCode", "message", "name"}``. The ``Idempotency-Key`` header is
  honoured for 24 hours: the same key and body give the same id and no second mail; the same key
  with another body is refused with 409 ``invalid_idempotent_request``.
- ``GET /emails/{id}`` and ``GET /emails`` answer as Resend's retrieve and list calls.
- Webhooks, signed as Svix signs them (``svix-id``, ``svix-timestamp``, ``svix-signature:
  v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``) with ``RESEND_WEBHOOK_SECRET``, go to
  ``RESEND_STANDIN_WEBHOOK_URL`` (the notifier by default): ``email.sent`` then
  ``email.delivered`` for every mail, except Resend's test addresses ``bounced@resend.dev``
  (``email.bounced``, a hard bounce) and ``complained@resend.dev`` (``email.delivered`` then
  ``email.complained``). A delivery answered with anything but 2xx is retried with backoff.
  ``RESEND_STANDIN_WEBHOOK_EVENTS`` names the types the endpoint subscribes to (``*``: all,
  the default); ``make run`` subscribes it to those the notifier acts on.

For people: ``GET /`` lists the inbox, ``GET /inbox/{id}`` shows one mail. For tests, under
``/_standin/``: ``GET emails?to=`` (JSON), ``DELETE emails`` (forget everything), ``POST fail``
(answer the next N sends with 500 or 429) and ``GET webhooks`` (the delivery log).

State lives in memory and, unless ``RESEND_STANDIN_STATE_FILE`` says ``memory``, in a SQLite
file under ``EMBER_DATA_DIR`` (each change written from a thread, see :mod:`standins.journal`) so
a restart keeps the inbox. Webhooks go out a few at a time (``RESEND_STANDIN_DELIVERY_CONCURRENCY``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import html
import json
import re
import secrets
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import msgspec
import structlog
from ember_shared.heap import freeze_start_up_heap
from ember_shared.logging import configure_logging
from ember_shared.settings import data_dir, env_int, env_str, service_url
from litestar import Litestar, Request, Response, delete, get, post
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import Parameter

from standins.delivery import webhook_client
from standins.journal import Journal

log = structlog.get_logger("standins.resend")

#: The webhook secret the stand-in and the notifier both use when none is configured.
LOCAL_WEBHOOK_SECRET = "whsec_ZW1iZXItbG9jYWwtcmVzZW5kLXdlYmhvb2stc2VjcmV0"  # noqa: S105
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
MAX_RECIPIENTS = 50
MAX_KEPT_EMAILS = 2000
MAX_DELIVERY_LOG = 2000
MAX_RETRY_DELAY = 60.0
WEBHOOKS_OFF = "off"

_ADDRESS = r"[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+"
_PLAIN = re.compile(rf"^{_ADDRESS}$")
_NAMED = re.compile(rf"^[^<>]*<({_ADDRESS})>$")
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TEST_ADDRESS = re.compile(r"^(delivered|bounced|complained)(\+[^@]*)?@resend\.dev$", re.I)


def _env_float(name: str, default: float) -> float:
    raw = env_str(name)
    return float(raw) if raw else default


def _default_webhook_url() -> str:
    return service_url("notifier") + "/api/webhooks/resend"


def _state_file_from_env() -> str:
    value = env_str("RESEND_STANDIN_STATE_FILE")
    if value.strip().lower() == "memory":
        return ""
    return value or str(data_dir() / "resend-standin" / "state.sqlite3")


@dataclass(frozen=True)
class ResendStandinSettings:
    #: Where webhooks go (Resend's "webhook endpoint"); ``off`` sends none.
    webhook_url: str = field(
        default_factory=lambda: env_str("RESEND_STANDIN_WEBHOOK_URL") or _default_webhook_url()
    )
    webhook_secret: str = field(
        default_factory=lambda: env_str("RESEND_WEBHOOK_SECRET") or LOCAL_WEBHOOK_SECRET
    )
    #: SQLite file keeping the inbox across restarts ("" keeps it in memory only; in the
    #: environment, ``memory`` says that and an empty value means the default file). An older
    #: stand-in's JSON state found there (or as ``state.json`` beside it) is taken over.
    state_file: str = field(default_factory=_state_file_from_env)
    #: The event types the webhook endpoint subscribes to, comma-separated ("*": every type),
    #: as a Resend endpoint is set up; the others still move the mail on (its ``last_event``)
    #: but send no request.
    webhook_events: str = field(
        default_factory=lambda: env_str("RESEND_STANDIN_WEBHOOK_EVENTS") or "*"
    )
    #: Pause before a mail's first webhook (Resend reports delivery a moment after accepting).
    webhook_delay_seconds: float = field(
        default_factory=lambda: _env_float("RESEND_STANDIN_WEBHOOK_DELAY_SECONDS", 0.2)
    )
    #: First retry delay after a failed delivery; doubled each attempt, capped at a minute.
    retry_base_seconds: float = field(
        default_factory=lambda: _env_float("RESEND_STANDIN_RETRY_BASE_SECONDS", 1.0)
    )
    max_attempts: int = field(default_factory=lambda: env_int("RESEND_STANDIN_MAX_ATTEMPTS", 6))
    #: Webhook deliveries in flight at once; more wait their turn.
    delivery_concurrency: int = field(
        default_factory=lambda: env_int("RESEND_STANDIN_DELIVERY_CONCURRENCY", 10)
    )

    @property
    def state_path(self) -> Path | None:
        return Path(self.state_file) if self.state_file else None

    @property
    def webhooks_on(self) -> bool:
        return bool(self.webhook_url) and self.webhook_url.lower() != WEBHOOKS_OFF

    def subscribed(self, event_type: str) -> bool:
        types = {t.strip() for t in self.webhook_events.split(",") if t.strip()}
        return "*" in types or event_type in types


class ResendApiError(Exception):
    """An error answered in Resend's own shape."""

    def __init__(
        self, status: int, name: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response[Any]:
        return Response(
            {"statusCode": self.status, "message": self.message, "name": self.name},
            status_code=self.status,
            headers=self.headers,
            media_type="application/json",
        )


# --- signing ------------------------------------------------------------------------------


def svix_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# --- state --------------------------------------------------------------------------------


@dataclass
class Delivery:
    svix_id: str
    type: str
    email_id: str
    attempt: int
    status_code: int | None
    error: str
    at: float


@dataclass
class FailurePlan:
    remaining: int = 0
    status: int = 500
    retry_after: int | None = None
    #: Take the mail, then answer the error anyway: the answer was "lost" on the way back.
    after_accept: bool = False


class Store:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.journal = Journal(path)
        self.emails: OrderedDict[str, dict[str, Any]] = OrderedDict()
        #: idempotency key -> {"fingerprint", "id", "at"}
        self.keys: dict[str, dict[str, Any]] = {}
        self.failures = FailurePlan()
        self.deliveries: deque[Delivery] = deque(maxlen=MAX_DELIVERY_LOG)
        #: Lower-cased recipient -> ids of the mails to it, oldest first: a look for one
        #: address (a test or the benchmark waiting for its mail, many times a second) reads
        #: its own mails, not every mail kept.
        self._to: dict[str, dict[str, None]] = {}
        #: Lower-cased recipient -> the looks waiting for a mail to it (``?wait=``).
        self._awaited: dict[str, set[asyncio.Event]] = {}
        self._load()

    def _load(self) -> None:
        legacy = self.journal.legacy
        if legacy is not None:
            self.emails = OrderedDict((e["id"], e) for e in legacy.get("emails", []))
            self.keys = dict(legacy.get("idempotency", {}))
            self.journal.put_many("email", self.emails.items())
            self.journal.put_many("key", self.keys.items())
            self._index_all()
            return
        self.emails = OrderedDict(self.journal.load("email"))
        self.keys = dict(self.journal.load("key"))
        self._index_all()

    def _index_all(self) -> None:
        self._to = {}
        for email in self.emails.values():
            self._index(email)

    def _index(self, email: dict[str, Any]) -> None:
        for address in email["to"]:
            self._to.setdefault(address.lower(), {})[email["id"]] = None

    def _unindex(self, email: dict[str, Any]) -> None:
        for address in email["to"]:
            ids = self._to.get(address.lower())
            if ids is not None:
                ids.pop(email["id"], None)
                if not ids:
                    del self._to[address.lower()]

    def close(self) -> None:
        self.journal.close()

    def clear(self) -> None:
        self.emails.clear()
        self._to.clear()
        self.keys.clear()
        self.deliveries.clear()
        self.failures = FailurePlan()
        self.journal.clear()

    def take_failure(self) -> FailurePlan | None:
        if self.failures.remaining <= 0:
            return None
        self.failures.remaining -= 1
        return FailurePlan(
            1, self.failures.status, self.failures.retry_after, self.failures.after_accept
        )

    def remembered(self, key: str) -> dict[str, Any] | None:
        entry = self.keys.get(key)
        if entry is not None and time.time() - entry["at"] > IDEMPOTENCY_TTL_SECONDS:
            del self.keys[key]
            self.journal.delete("key", key)
            return None
        return entry

    def add(self, email: dict[str, Any], key: str | None, fingerprint: str) -> None:
        self.emails[email["id"]] = email
        self._index(email)
        for address in email["to"]:
            for arrived in self._awaited.get(address.lower(), ()):
                arrived.set()
        self.journal.put("email", email["id"], email)
        while len(self.emails) > MAX_KEPT_EMAILS:
            dropped, gone = self.emails.popitem(last=False)
            self._unindex(gone)
            self.journal.delete("email", dropped)
        if key is not None:
            self.keys[key] = {"fingerprint": fingerprint, "id": email["id"], "at": time.time()}
            self.journal.put("key", key, self.keys[key])

    def set_last_event(self, email_id: str, event: str) -> None:
        email = self.emails.get(email_id)
        if email is not None:
            email["last_event"] = event.removeprefix("email.")
            email.setdefault("events", []).append(event)
            self.journal.put("email", email_id, email)

    def matching(self, to: str | None) -> list[dict[str, Any]]:
        if not to:
            return list(reversed(self.emails.values()))
        ids = self._to.get(to.strip().lower(), {})
        return [self.emails[i] for i in reversed(ids)]

    async def first_to(self, to: str, seconds: float) -> list[dict[str, Any]]:
        """The mails to ``to``, waiting up to ``seconds`` for the first one to arrive: a test or
        the benchmark learns of a mail when it lands, not at its next look."""
        found = self.matching(to)
        if found or seconds <= 0:
            return found
        address = to.strip().lower()
        arrived = asyncio.Event()
        self._awaited.setdefault(address, set()).add(arrived)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), seconds)
        finally:
            waiting = self._awaited[address]
            waiting.discard(arrived)
            if not waiting:
                del self._awaited[address]
        return self.matching(to)


# --- webhooks -----------------------------------------------------------------------------


def planned_events(recipients: list[str]) -> list[str]:
    """What Resend reports for a mail, by its recipients (Resend's test addresses)."""
    kinds = {m.group(1).lower() for a in recipients if (m := _TEST_ADDRESS.match(a))}
    if "bounced" in kinds:
        return ["email.sent", "email.bounced"]
    if "complained" in kinds:
        return ["email.sent", "email.delivered", "email.complained"]
    return ["email.sent", "email.delivered"]


def webhook_payload(event_type: str, email: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "created_at": email["created_at"],
        "email_id": email["id"],
        "from": email["from"],
        "to": list(email["to"]),
        "subject": email["subject"],
    }
    if email.get("tags"):
        data["tags"] = {t["name"]: t["value"] for t in email["tags"]}
    if event_type == "email.bounced":
        data["bounce"] = {
            "message": (
                "The recipient's email provider sent a hard bounce message: the address "
                "does not exist."
            ),
            "subType": "General",
            "type": "Permanent",
        }
    return {"type": event_type, "created_at": _now_iso(), "data": data}


class WebhookSender:
    def __init__(self, settings: ResendStandinSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._client: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max(1, settings.delivery_concurrency))

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(max(1, self.settings.delivery_concurrency))
        self._client = webhook_client(self.settings.delivery_concurrency)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.close()

    @property
    def pending(self) -> int:
        """Mails whose webhooks are still on their way (tests wait for none)."""
        return len(self._tasks)

    def schedule(self, email: dict[str, Any]) -> None:
        if not self.settings.webhooks_on:
            return
        task = asyncio.get_running_loop().create_task(self._report(email))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, email: dict[str, Any]) -> None:
        # One mail's events go out in order, each retried until taken or given up (as at Svix,
        # giving up on one message does not hold back the next).
        await asyncio.sleep(self.settings.webhook_delay_seconds)
        for event_type in planned_events(email["to"]):
            if self.settings.subscribed(event_type):
                await self._deliver_with_retries(event_type, email)
            else:
                self.store.set_last_event(email["id"], event_type)

    async def _deliver_with_retries(self, event_type: str, email: dict[str, Any]) -> None:
        svix_id = "msg_" + secrets.token_urlsafe(18)
        body = json.dumps(webhook_payload(event_type, email)).encode()
        for attempt in range(1, self.settings.max_attempts + 1):
            # A burst of mails must not become a burst of timeouts at the notifier; the
            # backoff below is spent outside a slot.
            async with self._slots:
                status, error = await self._post(svix_id, body)
            self.store.deliveries.append(
                Delivery(svix_id, event_type, email["id"], attempt, status, error, time.time())
            )
            taken = status is not None and 200 <= status < 300
            # A delivery taken is in the delivery log (GET /_standin/webhooks); a line for each
            # cost as much as the delivery itself, so only a refused one is logged by default.
            (log.debug if taken else log.info)(
                "webhook_delivered",
                svix_id=svix_id,
                type=event_type,
                attempt=attempt,
                status=status,
                error=error or None,
            )
            if taken:
                self.store.set_last_event(email["id"], event_type)
                return
            if attempt == self.settings.max_attempts:
                break
            await asyncio.sleep(
                min(self.settings.retry_base_seconds * 2 ** (attempt - 1), MAX_RETRY_DELAY)
            )
        log.warning("webhook_gave_up", svix_id=svix_id, type=event_type)

    async def _post(self, svix_id: str, body: bytes) -> tuple[int | None, str]:
        assert self._client is not None
        timestamp = int(time.time())  # each attempt is signed afresh, as Svix does
        headers = {
            "content-type": "application/json",
            "user-agent": "Svix-Webhooks/1.0 (ember resend stand-in)",
            "svix-id": svix_id,
            "svix-timestamp": str(timestamp),
            "svix-signature": svix_signature(
                self.settings.webhook_secret, svix_id, timestamp, body
            ),
        }
        try:
            async with self._client.post(
                self.settings.webhook_url, data=body, headers=headers
            ) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status, ""


# --- the API ------------------------------------------------------------------------------


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _store(request: Request[Any, Any, Any]) -> Store:
    store: Store = request.app.state.store
    return store


def _authenticate(request: Request[Any, Any, Any]) -> None:
    authorization = request.headers.get("authorization", "")
    if not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
        raise ResendApiError(401, "missing_api_key", "Missing API key in the authorization header.")
    if not authorization[7:].strip().startswith("re_"):
        raise ResendApiError(403, "invalid_api_key", "API key is invalid.")


def _address_list(body: dict[str, Any], name: str, *, required: bool = False) -> list[str]:
    value = body.get(name)
    if value is None or value in ([], ""):
        if required:
            raise ResendApiError(422, "missing_required_field", f"Missing `{name}` field.")
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ResendApiError(422, "validation_error", f"Invalid `{name}` field.")
    if len(items) > MAX_RECIPIENTS:
        raise ResendApiError(
            422, "validation_error", f"Too many recipients in `{name}`: at most {MAX_RECIPIENTS}."
        )
    for item in items:
        if not (_PLAIN.match(item.strip()) or _NAMED.match(item.strip())):
            raise ResendApiError(
                422,
                "validation_error",
                f"Invalid `{name}` field. The email address needs to follow the "
                "`email@example.com` or `Name <email@example.com>` format.",
            )
    return [i.strip() for i in items]


def _bare(address: str) -> str:
    named = _NAMED.match(address)
    return named.group(1) if named else address


def validate_send(body: Any) -> dict[str, Any]:
    """The mail to keep, from Resend's send body; :class:`ResendApiError` when it is wrong."""
    if not isinstance(body, dict):
        raise ResendApiError(422, "validation_error", "The body must be a JSON object.")
    sender = body.get("from")
    if not isinstance(sender, str) or not sender.strip():
        raise ResendApiError(422, "missing_required_field", "Missing `from` field.")
    if not (_PLAIN.match(sender.strip()) or _NAMED.match(sender.strip())):
        raise ResendApiError(
            422,
            "validation_error",
            "Invalid `from` field. The email address needs to follow the "
            "`email@example.com` or `Name <email@example.com>` format.",
        )
    to = _address_list(body, "to", required=True)
    subject = body.get("subject")
    if not isinstance(subject, str) or not subject:
        raise ResendApiError(422, "missing_required_field", "Missing `subject` field.")
    html_body, text_body = body.get("html"), body.get("text")
    if not html_body and not text_body and not body.get("template"):
        raise ResendApiError(
            422, "missing_required_field", "Missing `html`, `text`, or `template` field."
        )
    for name, value in (("html", html_body), ("text", text_body)):
        if value is not None and not isinstance(value, str):
            raise ResendApiError(422, "validation_error", f"Invalid `{name}` field.")
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(
        isinstance(t, dict)
        and _TAG.match(str(t.get("name", "")))
        and _TAG.match(str(t.get("value", "")))
        for t in tags
    ):
        raise ResendApiError(
            422,
            "validation_error",
            "Invalid `tags` field: names and values may hold ASCII letters, numbers, "
            "underscores and dashes only.",
        )
    headers = body.get("headers") or {}
    if not isinstance(headers, dict):
        raise ResendApiError(422, "validation_error", "Invalid `headers` field.")
    return {
        "object": "email",
        "id": str(uuid.uuid4()),
        "from": sender.strip(),
        "to": [_bare(a) for a in to],
        "cc": _address_list(body, "cc") or None,
        "bcc": _address_list(body, "bcc") or None,
        "reply_to": _address_list(body, "reply_to") or None,
        "subject": subject,
        "html": html_body or None,
        "text": text_body or None,
        "tags": [{"name": str(t["name"]), "value": str(t["value"])} for t in tags],
        "headers": {str(k): str(v) for k, v in headers.items()},
        "created_at": _now_iso(),
        "scheduled_at": None,
        "last_event": "queued",
        "events": [],
    }


def fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


_PUBLIC_FIELDS = (
    "object",
    "id",
    "to",
    "from",
    "created_at",
    "subject",
    "html",
    "text",
    "bcc",
    "cc",
    "reply_to",
    "last_event",
    "scheduled_at",
    "tags",
)


def public(email: dict[str, Any]) -> dict[str, Any]:
    """An email as Resend's ``GET /emails/{id}`` shows it."""
    return {k: email.get(k) for k in _PUBLIC_FIELDS}


def _failure(plan: FailurePlan) -> ResendApiError:
    headers = {"retry-after": str(plan.retry_after)} if plan.retry_after is not None else {}
    if plan.status == 429:
        return ResendApiError(
            429, "rate_limit_exceeded", "Too many requests. Please slow down.", headers
        )
    if plan.status >= 500:
        return ResendApiError(plan.status, "application_error", "Internal server error.", headers)
    return ResendApiError(plan.status, "validation_error", "Injected failure.", headers)


@post("/emails", status_code=200, include_in_schema=False)
async def send_email(request: Request[Any, Any, Any]) -> Response[Any]:
    _authenticate(request)
    store = _store(request)
    plan = store.take_failure()
    if plan is not None and not plan.after_accept:
        raise _failure(plan)
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 256:
        raise ResendApiError(400, "invalid_idempotency_key", "The key must be between 1-256 chars.")
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise ResendApiError(422, "validation_error", "The body is not valid JSON.") from exc
    print_ = fingerprint(body)
    if key is not None:
        seen = store.remembered(key)
        if seen is not None:
            if seen["fingerprint"] != print_:
                raise ResendApiError(
                    409,
                    "invalid_idempotent_request",
                    "Same idempotency key used with a different request payload. Change your "
                    "idempotency key or payload.",
                )
            log.info("email_replayed", id=seen["id"], idempotency_key=key)
            if plan is not None:
                raise _failure(plan)
            return Response({"id": seen["id"]}, status_code=200)
    email = validate_send(body)
    store.add(email, key, print_)
    request.app.state.webhooks.schedule(email)
    log.info("email_accepted", id=email["id"], to=email["to"], subject=email["subject"])
    if plan is not None:
        raise _failure(plan)
    return Response({"id": email["id"]}, status_code=200)


@get("/emails/{email_id:str}", include_in_schema=False, cache=False)
async def get_email(request: Request[Any, Any, Any], email_id: str) -> Response[Any]:
    _authenticate(request)
    email = _store(request).emails.get(email_id)
    if email is None:
        raise ResendApiError(404, "not_found", "Email not found")
    return Response(public(email))


@get("/emails", include_in_schema=False, cache=False)
async def list_emails(
    request: Request[Any, Any, Any],
    limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
) -> Response[Any]:
    _authenticate(request)
    emails = _store(request).matching(None)
    return Response(
        {
            "object": "list",
            "has_more": len(emails) > limit,
            "data": [public(e) for e in emails[:limit]],
        }
    )


# --- test controls ------------------------------------------------------------------------


class FailRequest(msgspec.Struct, kw_only=True):
    count: Annotated[int, msgspec.Meta(ge=0, le=1000)]
    status: Annotated[int, msgspec.Meta(ge=400, le=599)] = 500
    retry_after: Annotated[int, msgspec.Meta(ge=0, le=3600)] | None = None
    #: True: keep the mail, then answer the error (a lost answer; the sender will retry).
    after_accept: bool = False


@get("/_standin/emails", include_in_schema=False, cache=False)
async def standin_emails(
    request: Request[Any, Any, Any],
    to: Annotated[str | None, Parameter(max_length=320)] = None,
    wait: Annotated[float, Parameter(ge=0, le=30)] = 0,
) -> dict[str, Any]:
    """Every mail received (newest first), optionally only those to one address; with ``to``
    and ``wait``, answered when the first mail to it arrives (or after ``wait`` seconds)."""
    store = _store(request)
    found = await store.first_to(to, wait) if to else store.matching(None)
    return {"data": [dict(e) for e in found]}


@delete("/_standin/emails", include_in_schema=False, status_code=204)
async def standin_clear(request: Request[Any, Any, Any]) -> None:
    _store(request).clear()


@post("/_standin/fail", include_in_schema=False, status_code=200)
async def standin_fail(request: Request[Any, Any, Any], data: FailRequest) -> dict[str, Any]:
    """Answer the next ``count`` sends with ``status`` (500, 429, ...)."""
    store = _store(request)
    store.failures = FailurePlan(data.count, data.status, data.retry_after, data.after_accept)
    return {"remaining": data.count, "status": data.status, "after_accept": data.after_accept}


@get("/_standin/webhooks", include_in_schema=False, cache=False)
async def standin_webhooks(
    request: Request[Any, Any, Any],
    email_id: Annotated[str | None, Parameter(max_length=100)] = None,
) -> dict[str, Any]:
    return {
        "data": [
            asdict(d)
            for d in _store(request).deliveries
            if email_id is None or d.email_id == email_id
        ],
        "pending": request.app.state.webhooks.pending,
    }


@get("/_standin/health", include_in_schema=False, cache=False)
async def standin_health() -> dict[str, str]:
    return {"status": "ok", "service": "resend-standin"}


# --- pages --------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font:15px/1.5 system-ui,sans-serif;margin:0;background:#f5f5f4;color:#1c1917}}
main{{max-width:960px;margin:0 auto;padding:24px}}
h1{{font-size:20px}} table{{width:100%;border-collapse:collapse;background:#fff}}
td,th{{text-align:left;padding:8px;border-bottom:1px solid #e7e5e4;vertical-align:top}}
.tag{{display:inline-block;padding:0 6px;border-radius:4px;background:#e7e5e4;font-size:12px}}
iframe{{width:100%;height:640px;border:1px solid #e7e5e4;background:#fff}}
pre{{white-space:pre-wrap;background:#fff;padding:12px;border:1px solid #e7e5e4}}
</style></head><body><main>{body}</main></body></html>"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str) -> Response[str]:
    return Response(
        _PAGE.format(title=_e(title), body=body),
        media_type="text/html",
        headers={
            # The mail's own HTML is shown in a sandboxed frame; nothing on the page runs code.
            "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "img-src * data:; frame-src 'self'",
            "x-content-type-options": "nosniff",
        },
    )


@get("/", include_in_schema=False, cache=False)
async def inbox(request: Request[Any, Any, Any]) -> Response[str]:
    rows = "".join(
        f"<tr><td>{_e(e['created_at'])}</td><td>{_e(', '.join(e['to']))}</td>"
        f'<td><a href="/inbox/{_e(e["id"])}">{_e(e["subject"])}</a></td>'
        f'<td><span class="tag">{_e(e.get("last_event"))}</span></td></tr>'
        for e in _store(request).matching(None)
    )
    body = (
        "<h1>Resend stand-in: inbox</h1>"
        "<p>Every mail Ember sent through the local Resend stand-in, newest first.</p>"
        "<table><thead><tr><th>When</th><th>To</th><th>Subject</th><th>Status</th></tr></thead>"
        f"<tbody>{rows or '<tr><td colspan=4>No mail yet.</td></tr>'}</tbody></table>"
    )
    return page("Inbox: Resend stand-in", body)


@get("/inbox/{email_id:str}", include_in_schema=False, cache=False)
async def inbox_email(request: Request[Any, Any, Any], email_id: str) -> Response[str]:
    email = _store(request).emails.get(email_id)
    if email is None:
        return page("Not found", "<h1>No such mail</h1><p><a href='/'>Back to the inbox</a></p>")
    html_part = (
        f'<iframe sandbox="" title="HTML version" srcdoc="{_e(email["html"])}"></iframe>'
        if email.get("html")
        else "<p>No HTML version.</p>"
    )
    body = (
        "<p><a href='/'>&larr; Inbox</a></p>"
        f"<h1>{_e(email['subject'])}</h1>"
        "<table>"
        f"<tr><th>From</th><td>{_e(email['from'])}</td></tr>"
        f"<tr><th>To</th><td>{_e(', '.join(email['to']))}</td></tr>"
        f"<tr><th>Sent</th><td>{_e(email['created_at'])}</td></tr>"
        f"<tr><th>Id</th><td>{_e(email['id'])}</td></tr>"
        f"<tr><th>Events</th><td>{_e(', '.join(email.get('events', [])) or 'none yet')}</td></tr>"
        "</table>"
        f"<h2>HTML</h2>{html_part}"
        f"<h2>Text</h2><pre>{_e(email.get('text') or 'No text version.')}</pre>"
    )
    return page(email["subject"], body)


# --- the app ------------------------------------------------------------------------------


def _on_resend_error(_: Request[Any, Any, Any], exc: ResendApiError) -> Response[Any]:
    return exc.response()


def _on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    return ResendApiError(422, "validation_error", f"Invalid request: {exc.detail}").response()


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code == 404:
        return ResendApiError(404, "not_found", f"Route not found: {request.url.path}").response()
    if exc.status_code == 405:
        return ResendApiError(405, "method_not_allowed", "Method not allowed.").response()
    return ResendApiError(exc.status_code, "application_error", str(exc.detail)).response()


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("standin_error", path=request.url.path, exc_info=exc)
    return ResendApiError(500, "application_error", "Internal server error.").response()


def create_app(settings: ResendStandinSettings | None = None) -> Litestar:
    settings = settings or ResendStandinSettings()
    configure_logging("resend-standin", env_str("LOG_LEVEL", "INFO"), env_str("LOG_FORMAT", "json"))
    store = Store(settings.state_path)
    webhooks = WebhookSender(settings, store)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await webhooks.start()
        try:
            yield
        finally:
            await webhooks.stop()
            await asyncio.to_thread(store.close)

    app = Litestar(
        route_handlers=[
            send_email,
            get_email,
            list_emails,
            standin_emails,
            standin_clear,
            standin_fail,
            standin_webhooks,
            standin_health,
            inbox,
            inbox_email,
        ],
        lifespan=[lifespan],
        exception_handlers={
            ResendApiError: _on_resend_error,
            ValidationException: _on_validation,
            HTTPException: _on_http,
            Exception: _on_unexpected,
        },
        openapi_config=None,
        request_max_body_size=10 * 1_048_576,
        debug=False,
        # As a service does: collections walk what the stand-in keeps, not its start-up.
        on_startup=[freeze_start_up_heap],
    )
    app.state.store = store
    app.state.webhooks = webhooks
    app.state.settings = settings
    return app
