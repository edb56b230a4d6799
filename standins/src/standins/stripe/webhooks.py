"""Delivering events to the webhook endpoint, signed exactly as Stripe signs them.

``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the
endpoint secret>``. A delivery answered with anything but 2xx (or not answered) is tried again
with exponential backoff, as Stripe does (faster here, and configurable). Like Stripe, the
stand-in keeps only a few deliveries in flight to one endpoint at a time; the rest wait their
turn (a burst of payments must not become a burst of timeouts at the shop). Tests can also ask for
a delivery on the spot, several times, in a given order, or deliberately signed wrongly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import msgspec
import structlog

from standins.delivery import webhook_client
from standins.stripe.store import Store

log = structlog.get_logger("standins.stripe.webhooks")

MAX_DELIVERY_LOG = 2000
MAX_RETRY_DELAY = 60.0


class SignatureMode:
    VALID = "valid"
    WRONG_SECRET = "wrong_secret"  # noqa: S105 - a mode name, not a secret
    OLD_TIMESTAMP = "old_timestamp"
    MISSING = "missing"
    TAMPERED = "tampered"

    ALL = (VALID, WRONG_SECRET, OLD_TIMESTAMP, MISSING, TAMPERED)


def sign(payload: str, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.{payload}".encode()
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class Delivery:
    event_id: str
    event_type: str
    attempt: int
    signature: str
    status_code: int | None
    error: str
    at: float
    duration_ms: int
    response_body: str = ""
    #: From the event's creation to the end of this attempt (automatic deliveries only).
    since_event_ms: int | None = None


@dataclass
class SignedRequest:
    url: str
    payload: str
    headers: dict[str, str]


class WebhookDeliverer:
    def __init__(
        self,
        store: Store,
        *,
        url: str,
        secret: str,
        retry_base_seconds: float,
        max_attempts: int,
        concurrency: int = 10,
        enabled_events: frozenset[str] | None = None,
    ) -> None:
        self.store = store
        self.url = url
        self.secret = secret
        self.retry_base_seconds = retry_base_seconds
        self.max_attempts = max_attempts
        self.concurrency = max(1, concurrency)
        self.enabled_events = enabled_events
        self.log: deque[Delivery] = deque(maxlen=MAX_DELIVERY_LOG)
        self._client: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.concurrency)
        #: When each event still being delivered automatically was first scheduled (monotonic).
        self._since: dict[str, float] = {}
        self._started = False

    async def start(self, *, resume: bool = True) -> None:
        self._slots = asyncio.Semaphore(self.concurrency)
        # Manual deliveries (test controls) get room beside the automatic ones.
        self._client = webhook_client(self.concurrency)
        self._started = True
        if resume:
            # Deliveries that never succeeded before a restart are owed still.
            for event in self.store.undelivered():
                self.schedule(event)

    async def stop(self) -> None:
        self._started = False
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.close()

    # --- automatic delivery -------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """Store sink: deliver every new event the endpoint listens for, unless its session's
        webhooks are held."""
        if self.enabled_events is not None and event["type"] not in self.enabled_events:
            # Nothing is owed to this endpoint (the operation that made the event saves it).
            self.store.mark_delivered(event["id"], save=False)
            return
        if self._started and not self.store.is_held(event["id"]):
            self.schedule(event)

    @property
    def pending(self) -> int:
        """Automatic deliveries not finished yet (waiting for a slot, in flight or to retry)."""
        return len(self._tasks)

    def schedule(self, event: dict[str, Any], attempt: int = 1, delay: float = 0.0) -> None:
        self._since.setdefault(event["id"], time.monotonic())
        task = asyncio.get_running_loop().create_task(
            self._deliver_with_retries(event, attempt, delay)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_with_retries(
        self, event: dict[str, Any], attempt: int, delay: float
    ) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            while True:
                async with self._slots:
                    delivery = await self.deliver(event, attempt=attempt, automatic=True)
                if delivery.status_code is not None and 200 <= delivery.status_code < 300:
                    self.store.mark_delivered(event["id"])
                    return
                if attempt >= self.max_attempts:
                    log.warning("webhook_gave_up", event_id=event["id"], attempts=attempt)
                    return
                # The wait is spent outside a slot: a failing delivery holds back no other.
                wait = min(self.retry_base_seconds * 2 ** (attempt - 1), MAX_RETRY_DELAY)
                attempt += 1
                await asyncio.sleep(wait)
        finally:
            self._since.pop(event["id"], None)

    # --- one delivery -------------------------------------------------------------------

    def signed_request(
        self,
        event: dict[str, Any],
        *,
        signature: str = SignatureMode.VALID,
        timestamp_offset: int = 0,
        url: str | None = None,
    ) -> SignedRequest:
        # Pretty-printed, as Stripe sends it; msgspec's encoder and formatter give what
        # json.dumps(indent=2) gives (UTF-8 left as it is) for a fraction of its CPU.
        payload = msgspec.json.format(msgspec.json.encode(event), indent=2).decode()
        timestamp = int(time.time()) + timestamp_offset
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        if signature == SignatureMode.OLD_TIMESTAMP:
            # Correctly signed, but long ago: a replay of a captured delivery.
            timestamp = int(time.time()) - 3600 + timestamp_offset
        if signature == SignatureMode.WRONG_SECRET:
            headers["Stripe-Signature"] = sign(payload, "whsec_" + secrets.token_hex(16), timestamp)
        elif signature != SignatureMode.MISSING:
            headers["Stripe-Signature"] = sign(payload, self.secret, timestamp)
        if signature == SignatureMode.TAMPERED:
            payload = payload.replace('"livemode": false', '"livemode": true', 1) + " "
        return SignedRequest(url=url or self.url, payload=payload, headers=headers)

    async def deliver(
        self,
        event: dict[str, Any],
        *,
        attempt: int = 1,
        signature: str = SignatureMode.VALID,
        timestamp_offset: int = 0,
        automatic: bool = False,
    ) -> Delivery:
        request = self.signed_request(event, signature=signature, timestamp_offset=timestamp_offset)
        client = self._client or webhook_client(1)
        started = time.monotonic()
        status: int | None = None
        error = ""
        body = ""
        try:
            async with client.post(
                request.url, data=request.payload.encode(), headers=request.headers
            ) as response:
                status = response.status
                body = (await response.text(errors="replace"))[:2000]
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if client is not self._client:
                await client.close()
        delivery = Delivery(
            event_id=event["id"],
            event_type=event["type"],
            attempt=attempt,
            signature=signature,
            status_code=status,
            error=error,
            at=time.time(),
            duration_ms=int((time.monotonic() - started) * 1000),
            response_body=body,
        )
        since = self._since.get(event["id"]) if automatic else None
        if since is not None:
            delivery.since_event_ms = int((time.monotonic() - since) * 1000)
        self.log.append(delivery)
        taken = status is not None and 200 <= status < 300
        # A delivery taken is in the delivery log (GET /_standin/deliveries); a line for each
        # cost as much as the delivery itself, so only a refused one is logged by default.
        (log.debug if taken else log.info)(
            "webhook_delivered",
            event_id=event["id"],
            type=event["type"],
            attempt=attempt,
            status=status,
            error=error or None,
            signature=signature,
        )
        return delivery

    def deliveries(self, event_id: str | None = None) -> list[dict[str, Any]]:
        return [asdict(d) for d in self.log if event_id is None or d.event_id == event_id]
