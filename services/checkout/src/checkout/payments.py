"""Stripe, through its SDK: the Checkout Session calls checkout makes, and webhook verification.

The base address is configurable (``STRIPE_API_BASE``), so the same calls reach the repo's
stand-in in local runs and tests, and Stripe itself when a real key is configured.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import stripe
import structlog
from ember_shared.problems import Problem
from ember_shared.tracing import tracer
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from checkout.settings import CheckoutSettings

log = structlog.get_logger("checkout.stripe")

# The SDK logs every request at INFO; our own logs say what matters.
logging.getLogger("stripe").setLevel(logging.WARNING)


@dataclass(frozen=True)
class OpenedSession:
    id: str
    url: str
    expires_at: int
    #: What Stripe will charge, and the tax Stripe Tax put in it (0 without automatic tax).
    amount_total: int | None = None
    amount_tax: int = 0


@dataclass(frozen=True)
class VariantPrice:
    """A subscription's new variant as Stripe is to bill it: a price of a Stripe product named
    after the variant, both carrying ``metadata`` (which the subscription's webhook reads)."""

    variant_id: str
    name: str
    unit_amount: int
    metadata: dict[str, str]


class PaymentProviderError(Exception):
    """Stripe refused or could not be reached; ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable

    def problem(self) -> Problem:
        if self.retryable:
            return Problem(
                503,
                "payment-provider-unavailable",
                "The payment provider could not be reached. Try again in a moment.",
                headers={"Retry-After": "5"},
            )
        return Problem(
            502,
            "payment-provider-error",
            "The payment provider refused to open a payment page for this checkout.",
        )


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """What the SDK's httpx client was given (one number: each of its waits, not the whole
    call): a connection within ``seconds`` (a free one from the pool included) and no wait for
    Stripe's next bytes longer than that; a slow but answering Stripe is not cut off."""
    return aiohttp.ClientTimeout(
        total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
    )


def _client_spans() -> aiohttp.TraceConfig:
    """A client span for each call to Stripe under a recorded span, as the httpx instrumentation
    made (nothing is built for an unsampled request). No ``traceparent`` is sent: Stripe joins
    no trace of ours; the checkout's rides in the session's metadata instead."""
    config = aiohttp.TraceConfig()

    async def started(
        _: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        context.span = None
        if trace.get_current_span().is_recording():
            context.span = tracer().start_span(
                params.method,
                kind=SpanKind.CLIENT,
                attributes={"http.request.method": params.method, "url.full": str(params.url)},
            )

    async def ended(
        _: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if context.span is not None:
            context.span.set_attribute("http.response.status_code", params.response.status)
            if params.response.status >= 500:
                context.span.set_status(Status(StatusCode.ERROR))
            context.span.end()

    async def failed(
        _: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        if context.span is not None:
            context.span.record_exception(params.exception)
            context.span.set_status(Status(StatusCode.ERROR, type(params.exception).__name__))
            context.span.end()

    config.on_request_start.append(started)
    config.on_request_end.append(ended)
    config.on_request_exception.append(failed)
    return config


class StripeGateway:
    """The SDK's client on its aiohttp HTTP client, not its httpx one: the same call to the
    stand-in cost ~1.5 ms of CPU through httpx and ~0.5 ms through aiohttp, and a checkout
    makes two. Both are made on the first call (an aiohttp session belongs to the running
    loop) and kept until ``aclose``."""

    def __init__(self, settings: CheckoutSettings) -> None:
        self.settings = settings
        self._client: stripe.StripeClient | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def client(self) -> stripe.StripeClient:
        if self._client is None:
            self._http = aiohttp.ClientSession(
                # What the SDK's own session would verify Stripe's certificate with.
                connector=aiohttp.TCPConnector(
                    ssl=ssl.create_default_context(cafile=stripe.ca_bundle_path)
                ),
                trace_configs=[_client_spans()],
            )
            self._client = stripe.StripeClient(
                self.settings.stripe_secret_key,
                base_addresses={"api": self.settings.stripe_api_base.rstrip("/")},
                max_network_retries=self.settings.stripe_max_network_retries,
                http_client=stripe.AIOHTTPClient(
                    timeout=_timeout(self.settings.stripe_timeout_ms / 1000), session=self._http
                ),
            )
        return self._client

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def open_session(self, params: dict[str, Any], idempotency_key: str) -> OpenedSession:
        try:
            session = await self.client.v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _provider_error("create_checkout_session", exc) from exc
        details = session.total_details
        return OpenedSession(
            id=session.id,
            url=str(session.url),
            expires_at=int(session.expires_at),
            amount_total=session.amount_total,
            amount_tax=int(details.amount_tax or 0) if details is not None else 0,
        )

    async def create_coupon(self, params: dict[str, Any], idempotency_key: str) -> str:
        """A coupon for one checkout's discount: its id, for the session's ``discounts``."""
        try:
            coupon = await self.client.v1.coupons.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _provider_error("create_coupon", exc) from exc
        return str(coupon.id)

    async def create_customer(self, params: dict[str, Any], idempotency_key: str) -> str:
        """A customer carrying the shipping address, where Stripe Tax places the sale."""
        try:
            customer = await self.client.v1.customers.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _provider_error("create_customer", exc) from exc
        return str(customer.id)

    async def open_billing_portal(self, customer_id: str, return_url: str) -> str:
        """Stripe's customer portal for ``customer_id`` (where the card is updated): its URL,
        good for a few minutes, so it is made on demand and never mailed."""
        try:
            portal = await self.client.v1.billing_portal.sessions.create_async(
                params={"customer": customer_id, "return_url": return_url}
            )
        except stripe.InvalidRequestError as exc:
            raise Problem(
                409, "portal-refused", exc.user_message or "Stripe refused to open the portal."
            ) from exc
        except stripe.StripeError as exc:
            raise _provider_error("create_billing_portal_session", exc).problem() from exc
        return str(portal.url)

    async def session_status(self, session_id: str) -> str:
        """``open``, ``complete`` or ``expired``, as Stripe knows it now."""
        try:
            session = await self.client.v1.checkout.sessions.retrieve_async(session_id)
        except stripe.StripeError as exc:
            raise _provider_error("retrieve_checkout_session", exc) from exc
        return str(session.status)

    async def retrieve_session(self, session_id: str) -> dict[str, Any]:
        """The Checkout Session as Stripe knows it now (its PaymentIntent expanded), in the shape
        a webhook carries it."""
        try:
            session = await self.client.v1.checkout.sessions.retrieve_async(
                session_id, params={"expand": ["payment_intent"]}
            )
        except stripe.StripeError as exc:
            raise _provider_error("retrieve_checkout_session", exc) from exc
        found: dict[str, Any] = session.to_dict()
        return found

    async def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        """The subscription as Stripe knows it now, in the shape its webhooks carry it."""
        try:
            found = await self.client.v1.subscriptions.retrieve_async(subscription_id)
        except stripe.StripeError as exc:
            raise _provider_error("retrieve_subscription", exc).problem() from exc
        subscription: dict[str, Any] = found.to_dict()
        return subscription

    async def expire_session(self, session_id: str) -> str:
        """Close an open session; answers the status the session ends up in."""
        try:
            session = await self.client.v1.checkout.sessions.expire_async(session_id)
        except stripe.InvalidRequestError:
            # It was no longer open (paid or expired meanwhile): say what it is.
            return await self.session_status(session_id)
        except stripe.StripeError as exc:
            raise _provider_error("expire_checkout_session", exc) from exc
        return str(session.status)

    async def refund(self, payment_intent_id: str, amount: int | None, idempotency_key: str) -> str:
        params: dict[str, Any] = {
            "payment_intent": payment_intent_id,
            "reason": "requested_by_customer",
        }
        if amount is not None:
            params["amount"] = amount
        try:
            refund = await self.client.v1.refunds.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:
            raise Problem(
                409, "refund-refused", exc.user_message or "Stripe refused the refund."
            ) from exc
        except stripe.StripeError as exc:
            raise _provider_error("create_refund", exc).problem() from exc
        return str(refund.id)

    async def cancel_subscription_at_period_end(
        self, subscription_id: str, idempotency_key: str
    ) -> None:
        """Ask Stripe to end the subscription when its paid period ends. Our state changes
        when Stripe's ``customer.subscription.updated`` webhook says so, not here."""
        try:
            await self.client.v1.subscriptions.update_async(
                subscription_id,
                params={"cancel_at_period_end": True},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:
            raise Problem(
                409,
                "cancel-refused",
                exc.user_message or "Stripe refused to cancel this subscription.",
            ) from exc
        except stripe.StripeError as exc:
            raise _provider_error("cancel_subscription", exc).problem() from exc

    async def pause_subscription(
        self, subscription_id: str, resumes_at: int | None, idempotency_key: str
    ) -> None:
        """Ask Stripe to stop collecting (``pause_collection`` with ``void``: no invoice, no
        delivery) until ``resumes_at`` (None: until resumed). Our state changes when Stripe's
        ``customer.subscription.updated`` webhook says so, not here."""
        pause: dict[str, Any] = {"behavior": "void"}
        if resumes_at is not None:
            pause["resumes_at"] = resumes_at
        await self._update_subscription(
            subscription_id, {"pause_collection": pause}, idempotency_key, "pause"
        )

    async def resume_subscription(self, subscription_id: str, idempotency_key: str) -> None:
        await self._update_subscription(
            subscription_id, {"pause_collection": ""}, idempotency_key, "resume"
        )

    async def change_subscription(
        self,
        subscription_id: str,
        *,
        quantity: int,
        interval: str,
        interval_count: int,
        idempotency_key: str,
        variant: VariantPrice | None = None,
    ) -> bool:
        """Ask Stripe to bill ``quantity`` bags at the cadence ``interval_count`` x ``interval``
        (of ``variant`` when given) from now on; answers False when Stripe has it so already
        (nothing was asked).

        The quantity changes on the subscription's item; another cadence is another price of
        the same Stripe product (at the unit amount the subscriber pays now, with the price's
        metadata, which names the variant); another variant is a price of a new Stripe product
        named after it. No proration: a new quantity or variant is billed at the next renewal,
        and another cadence restarts the cycle (Stripe bills the first period of the new
        cadence at once). Our record changes when Stripe's ``customer.subscription.updated``
        webhook says so, not here."""
        try:
            found = await self.client.v1.subscriptions.retrieve_async(subscription_id)
        except stripe.StripeError as exc:
            raise _provider_error("retrieve_subscription", exc).problem() from exc
        current: dict[str, Any] = found.to_dict()
        items = (current.get("items") or {}).get("data") or []
        if not items:
            raise Problem(409, "change-refused", "Stripe knows no item on this subscription.")
        item: dict[str, Any] = items[0]
        price: dict[str, Any] = item.get("price") or {}
        recurring: dict[str, Any] = price.get("recurring") or {}
        change: dict[str, Any] = {"id": item["id"]}
        if item.get("quantity") != quantity:
            change["quantity"] = quantity
        metadata: dict[str, str] = dict(price.get("metadata") or {})
        if variant is not None and metadata.get("variant_id") == variant.variant_id:
            variant = None
        if variant is not None or (recurring.get("interval"), recurring.get("interval_count")) != (
            interval,
            interval_count,
        ):
            params: dict[str, Any] = {
                "product": str(price.get("product")),
                "currency": str(price.get("currency")),
                "unit_amount": int(price.get("unit_amount") or 0),
                "recurring": {"interval": interval, "interval_count": interval_count},
            }
            if variant is not None:
                del params["product"]
                params["product_data"] = {"name": variant.name, "metadata": variant.metadata}
                params["unit_amount"] = variant.unit_amount
                metadata = variant.metadata
            if metadata:
                params["metadata"] = metadata
            try:
                new_price = await self.client.v1.prices.create_async(
                    params=params,  # type: ignore[arg-type]
                    options={"idempotency_key": f"{idempotency_key}:price"},
                )
            except stripe.InvalidRequestError as exc:
                raise Problem(
                    409, "change-refused", exc.user_message or "Stripe refused the new price."
                ) from exc
            except stripe.StripeError as exc:
                raise _provider_error("create_price", exc).problem() from exc
            change["price"] = new_price.id
            change["quantity"] = quantity
        if len(change) == 1:
            return False
        await self._update_subscription(
            subscription_id,
            {"items": [change], "proration_behavior": "none"},
            idempotency_key,
            "change",
        )
        return True

    async def _update_subscription(
        self, subscription_id: str, params: dict[str, Any], idempotency_key: str, what: str
    ) -> None:
        try:
            await self.client.v1.subscriptions.update_async(
                subscription_id,
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:
            raise Problem(
                409,
                f"{what}-refused",
                exc.user_message or f"Stripe refused to {what} this subscription.",
            ) from exc
        except stripe.StripeError as exc:
            raise _provider_error(f"{what}_subscription", exc).problem() from exc

    def verify(self, payload: bytes, signature: str | None) -> None:
        """Returns if ``payload`` is signed by one of our endpoint secrets within the tolerance;
        raises ``stripe.SignatureVerificationError`` otherwise.

        Only the signature is checked here (the SDK's ``WebhookSignature.verify_header``, which
        ``Webhook.construct_event`` runs first): the caller decodes the body into its own
        structs. ``construct_event`` also built a ``stripe.Event`` of the whole body that
        nothing read, ~0.5 ms of CPU per webhook against 7 us for the signature alone.
        """
        error: Exception | None = None
        for secret in self.settings.webhook_secrets or [""]:
            try:
                stripe.WebhookSignature.verify_header(
                    payload, signature, secret, tolerance=self.settings.stripe_webhook_tolerance
                )
            except stripe.SignatureVerificationError as exc:
                error = exc
                continue
            _not_from_the_future(signature or "", self.settings.stripe_webhook_tolerance)
            return
        assert error is not None
        raise error


def _not_from_the_future(header: str, tolerance: int) -> None:
    """The SDK refuses only old timestamps; one signed far ahead would stay replayable until
    then, so it is refused too (a little clock skew is allowed, as much as the tolerance)."""
    stamps = [p[2:] for p in header.split(",") if p.strip().startswith("t=")]
    try:
        signed_at = int(stamps[0].strip())
    except (IndexError, ValueError):
        raise stripe.SignatureVerificationError(  # type: ignore[no-untyped-call]
            "No timestamp in the header", header
        ) from None
    if signed_at > time.time() + tolerance:
        raise stripe.SignatureVerificationError(  # type: ignore[no-untyped-call]
            "Timestamp in the future", header
        )


def _provider_error(operation: str, exc: stripe.StripeError) -> PaymentProviderError:
    retryable = isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (
        exc.http_status is not None and exc.http_status >= 500
    )
    log.warning(
        "stripe_call_failed",
        operation=operation,
        status=exc.http_status,
        error_type=type(exc).__name__,
        message=exc.user_message,
    )
    return PaymentProviderError(f"{operation}: {exc.user_message}", retryable=retryable)


def unix_to_datetime(value: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC)
