"""The published language: every domain event's payload, shared by producers and consumers.

Services never import each other; they agree on these structs. Money is integer minor units
plus a currency code. Add new types (or ``.v2`` versions) here; never change a published one.
"""

from __future__ import annotations

import uuid

import msgspec

from ember_shared.events.envelope import EventData


class Address(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str = ""
    state: str = ""
    phone: str = ""


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    product_id: uuid.UUID
    slug: str
    name: str
    unit_price: int
    quantity: int
    image_url: str = ""
    #: What the order's discount code took off this line (minor units; 0: none).
    discount: int = 0
    #: The variant sold (absent in events from before variants: the product's default
    #: variant, which has the product's id), with its SKU and option values at the sale.
    variant_id: uuid.UUID | None = None
    sku: str = ""
    #: The option values joined ("Espresso / 1 kg"); empty for a product without options.
    variant_title: str = ""
    option_values: list[str] = msgspec.field(default_factory=list)


# --- checkout ---------------------------------------------------------------------------


class CheckoutStarted(EventData, frozen=True, kw_only=True):
    TYPE = "checkout.started.v1"
    PRODUCER = "checkout"
    order_id: uuid.UUID
    checkout_session_id: uuid.UUID
    user_id: uuid.UUID | None
    cart_id: uuid.UUID | None
    email: str
    lines: list[OrderLine]
    subtotal: int
    shipping: int
    total: int
    currency: str
    shipping_address: Address
    reservation_id: uuid.UUID
    expires_at: str
    #: ``total`` = ``subtotal`` - ``discount`` + ``shipping`` + ``tax`` (minor units).
    discount: int = 0
    discount_code: str = ""
    tax: int = 0
    shipping_rate: str = ""
    shipping_name: str = ""


class PaymentSucceeded(EventData, frozen=True, kw_only=True):
    TYPE = "payment.succeeded.v1"
    PRODUCER = "checkout"
    order_id: uuid.UUID
    checkout_session_id: uuid.UUID
    user_id: uuid.UUID | None
    cart_id: uuid.UUID | None
    email: str
    lines: list[OrderLine]
    subtotal: int
    shipping: int
    total: int
    currency: str
    shipping_address: Address
    reservation_id: uuid.UUID
    stripe_session_id: str
    payment_intent_id: str = ""
    #: Why staff should look before shipping (a charge of another amount, money taken after the
    #: checkout closed); empty for an ordinary payment.
    attention: str = ""
    #: ``total`` = ``subtotal`` - ``discount`` + ``shipping`` + ``tax`` (minor units): the tax
    #: as Stripe Tax charged it.
    discount: int = 0
    discount_code: str = ""
    tax: int = 0
    shipping_rate: str = ""
    shipping_name: str = ""


class PaymentFailed(EventData, frozen=True, kw_only=True):
    TYPE = "payment.failed.v1"
    PRODUCER = "checkout"
    order_id: uuid.UUID
    checkout_session_id: uuid.UUID
    reservation_id: uuid.UUID
    email: str
    reason: str = ""


class CheckoutExpired(EventData, frozen=True, kw_only=True):
    TYPE = "checkout.expired.v1"
    PRODUCER = "checkout"
    order_id: uuid.UUID
    checkout_session_id: uuid.UUID
    reservation_id: uuid.UUID
    cart_id: uuid.UUID | None = None


class PaymentRefunded(EventData, frozen=True, kw_only=True):
    TYPE = "payment.refunded.v1"
    PRODUCER = "checkout"
    order_id: uuid.UUID
    checkout_session_id: uuid.UUID
    amount_refunded: int
    currency: str
    fully_refunded: bool
    email: str = ""


# --- identity ---------------------------------------------------------------------------


class UserRegistered(EventData, frozen=True, kw_only=True):
    TYPE = "user.registered.v1"
    PRODUCER = "identity"
    user_id: uuid.UUID
    email: str
    name: str = ""


class SignUpRequested(EventData, frozen=True, kw_only=True):
    """Someone asked for an account with an address that has none: the notifier mails the link
    that proves the mailbox and creates the account (nothing exists before it is opened)."""

    TYPE = "sign_up.requested.v1"
    PRODUCER = "identity"
    email: str
    name: str = ""
    #: The raw single-use token travels only to the notifier, which puts it in the link.
    verify_url: str
    expires_at: str


class SignUpForExistingAccount(EventData, frozen=True, kw_only=True):
    """Someone asked for an account with an address that already has one. The answer to the
    request is the same as for a new address; only the mailbox owner learns the difference."""

    TYPE = "sign_up.existing_account.v1"
    PRODUCER = "identity"
    user_id: uuid.UUID
    email: str
    name: str = ""
    sign_in_url: str
    reset_url: str


class PasswordResetRequested(EventData, frozen=True, kw_only=True):
    TYPE = "password_reset.requested.v1"
    PRODUCER = "identity"
    user_id: uuid.UUID
    email: str
    #: The raw single-use token travels only to the notifier, which puts it in the link.
    reset_url: str
    expires_at: str


class PasswordChanged(EventData, frozen=True, kw_only=True):
    TYPE = "password.changed.v1"
    PRODUCER = "identity"
    user_id: uuid.UUID
    email: str


# --- catalog ----------------------------------------------------------------------------


class StockReleased(EventData, frozen=True, kw_only=True):
    TYPE = "stock.released.v1"
    PRODUCER = "catalog"
    order_id: uuid.UUID
    reservation_id: uuid.UUID
    reason: str


# --- orders -----------------------------------------------------------------------------


class OrderPaid(EventData, frozen=True, kw_only=True):
    """An order became paid (once per order, however it was paid): what the confirmation mail
    follows, so that a payment the orders service refused mails nobody."""

    TYPE = "order.paid.v1"
    PRODUCER = "orders"
    order_id: uuid.UUID
    user_id: uuid.UUID | None
    email: str
    total: int
    currency: str
    # Added after the type was published (empty from older producers): what the mail shows.
    lines: list[OrderLine] = msgspec.field(default_factory=list)
    subtotal: int = 0
    shipping: int = 0
    shipping_address: Address | None = None
    #: The Stripe Checkout Session that paid (none for a subscription's invoice). No longer a
    #: guest's key (it opens the order only briefly after paying) and left empty by orders now.
    stripe_session_id: str = ""
    #: A guest's order link with its capability, sealed for the notifier (``ember_shared.sealing``):
    #: only the notifier opens it, while it sends the mail. Empty for a customer's order.
    sealed_order_url: str = ""
    #: ``total`` = ``subtotal`` - ``discount`` + ``shipping`` + ``tax``; the mail shows each.
    discount: int = 0
    discount_code: str = ""
    tax: int = 0
    shipping_name: str = ""


class OrderShipped(EventData, frozen=True, kw_only=True):
    TYPE = "order.shipped.v1"
    PRODUCER = "orders"
    order_id: uuid.UUID
    email: str
    carrier: str
    tracking_number: str
    tracking_url: str = ""
    #: The shopper's order page, never with a capability in it. Added after the type was
    #: published: empty from older producers (mail then links the plain page).
    order_url: str = ""
    #: As in :class:`OrderPaid`: a guest's link that opens the order, sealed for the notifier.
    sealed_order_url: str = ""


class OrderDelivered(EventData, frozen=True, kw_only=True):
    TYPE = "order.delivered.v1"
    PRODUCER = "orders"
    order_id: uuid.UUID
    email: str
    carrier: str
    tracking_number: str
    #: ISO 8601, as the carrier reported it.
    delivered_at: str
    #: As in :class:`OrderShipped`.
    order_url: str = ""
    sealed_order_url: str = ""


# --- subscriptions ----------------------------------------------------------------------


class SubscriptionInvoicePaid(EventData, frozen=True, kw_only=True):
    """A subscription's invoice was paid (Stripe's verified ``invoice.paid``): one per invoice,
    each under a new order id, so that orders can turn it into an order to ship."""

    TYPE = "subscription.invoice_paid.v1"
    PRODUCER = "checkout"
    order_id: uuid.UUID
    subscription_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    lines: list[OrderLine]
    subtotal: int
    shipping: int
    total: int
    currency: str
    shipping_address: Address
    stripe_invoice_id: str
    stripe_subscription_id: str
    #: The billed period, ISO 8601.
    period_start: str
    period_end: str


class SubscriptionPaymentFailed(EventData, frozen=True, kw_only=True):
    """A subscription's renewal could not be charged (Stripe's verified
    ``invoice.payment_failed``): once per invoice, so the subscriber is mailed a link to the
    subscription's page, where they update their card."""

    TYPE = "subscription.payment_failed.v1"
    PRODUCER = "checkout"
    subscription_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    product_name: str
    amount_due: int
    currency: str
    stripe_invoice_id: str
    #: The variant subscribed to ("Espresso / 1 kg"); empty for a product without options (and
    #: in events from before variants).
    variant_title: str = ""


# --- refunds ----------------------------------------------------------------------------


class RestockLine(msgspec.Struct, frozen=True, kw_only=True):
    product_id: uuid.UUID
    quantity: int
    #: The variant whose stock the units go back to (absent in events from before variants,
    #: or for an item sold before them: the product's default variant, which has its id).
    variant_id: uuid.UUID | None = None


class OrderRefunded(EventData, frozen=True, kw_only=True):
    """Stripe confirmed a refund of an order (its verified ``charge.refunded``, through
    checkout's ``payment.refunded``): once per increase of the refunded amount. Catalog puts
    ``restock`` back on the shelf; the notifier mails the shopper."""

    TYPE = "order.refunded.v1"
    PRODUCER = "orders"
    order_id: uuid.UUID
    email: str
    #: This refund, in minor units; ``amount_refunded`` is the order's running total.
    amount: int
    amount_refunded: int
    total: int
    currency: str
    fully_refunded: bool
    #: What staff chose to put back in stock with this refund (empty: nothing).
    restock: list[RestockLine] = msgspec.field(default_factory=list)
    #: As in :class:`OrderShipped`.
    order_url: str = ""
    sealed_order_url: str = ""
