"""Templates: everything a shopper typed is escaped; styles come from the tokens map only."""

from __future__ import annotations

import re

import pytest
from ember_shared.events.contracts import (
    OrderDelivered,
    OrderLine,
    OrderRefunded,
    OrderShipped,
    PasswordResetRequested,
    SignUpForExistingAccount,
    SignUpRequested,
    SubscriptionPaymentFailed,
    UserRegistered,
)
from ember_shared.ids import new_id
from notifier.emails import compose
from notifier.emails.rendering import TOKENS, Template, render
from notifier_testkit import order_paid

PUBLIC = "https://shop.example.com"
NASTY = '<script>alert("x")</script> & <b onmouseover=alert(1)>'


def all_rendered() -> list[tuple[Template, str, str, str]]:
    data = order_paid("a@example.com", name=NASTY)
    order = render(Template.ORDER_CONFIRMATION, compose.order_confirmation(data, PUBLIC))
    shipped = OrderShipped(
        order_id=new_id(), email="a@example.com", carrier=NASTY, tracking_number=NASTY
    )
    ship = render(Template.SHIPMENT, compose.shipment(shipped, PUBLIC))
    reset = PasswordResetRequested(
        user_id=new_id(),
        email="a@example.com",
        reset_url=f"{PUBLIC}/account/reset?token=t",
        expires_at="2030-01-01T00:00:00Z",
    )
    password = render(Template.PASSWORD_RESET, compose.password_reset(reset, PUBLIC))
    welcome = render(
        Template.WELCOME,
        compose.welcome(
            UserRegistered(user_id=new_id(), email="a@example.com", name=NASTY), PUBLIC
        ),
    )
    arrived = render(
        Template.DELIVERED,
        compose.delivered(
            OrderDelivered(
                order_id=new_id(),
                email="a@example.com",
                carrier=NASTY,
                tracking_number=NASTY,
                delivered_at="2030-01-02T09:15:00Z",
            ),
            PUBLIC,
        ),
    )
    link = render(
        Template.SIGN_UP,
        compose.sign_up(
            SignUpRequested(
                email="a@example.com",
                name=NASTY,
                verify_url=f"{PUBLIC}/verify-email?token=t",
                expires_at="2030-01-01T00:00:00Z",
            ),
            PUBLIC,
        ),
    )
    existing = render(
        Template.EXISTING_ACCOUNT,
        compose.existing_account(
            SignUpForExistingAccount(
                user_id=new_id(),
                email="a@example.com",
                name=NASTY,
                sign_in_url=f"{PUBLIC}/signin",
                reset_url="javascript:alert(1)",
            ),
            PUBLIC,
        ),
    )
    refund = render(
        Template.REFUNDED,
        compose.refunded(
            OrderRefunded(
                order_id=new_id(),
                email="a@example.com",
                amount=1250,
                amount_refunded=1250,
                total=5000,
                currency="USD",
                fully_refunded=False,
                order_url="javascript:alert(1)",
            ),
            PUBLIC,
        ),
    )
    failed = render(
        Template.SUBSCRIPTION_PAYMENT_FAILED,
        compose.subscription_payment_failed(payment_failed(NASTY), PUBLIC),
    )
    return [
        (Template.SUBSCRIPTION_PAYMENT_FAILED, failed.subject, failed.html, failed.text),
        (Template.REFUNDED, refund.subject, refund.html, refund.text),
        (Template.DELIVERED, arrived.subject, arrived.html, arrived.text),
        (Template.SIGN_UP, link.subject, link.html, link.text),
        (Template.EXISTING_ACCOUNT, existing.subject, existing.html, existing.text),
        (Template.ORDER_CONFIRMATION, order.subject, order.html, order.text),
        (Template.SHIPMENT, ship.subject, ship.html, ship.text),
        (Template.PASSWORD_RESET, password.subject, password.html, password.text),
        (Template.WELCOME, welcome.subject, welcome.html, welcome.text),
    ]


def payment_failed(product_name: str, variant_title: str = "") -> SubscriptionPaymentFailed:
    return SubscriptionPaymentFailed(
        variant_title=variant_title,
        subscription_id=new_id(),
        user_id=new_id(),
        email="a@example.com",
        product_name=product_name,
        amount_due=3000,
        currency="USD",
        stripe_invoice_id="in_1",
    )


def test_a_failed_renewal_mail_links_to_the_subscription_page_to_update_the_card() -> None:
    data = payment_failed(NASTY)
    mail = render(
        Template.SUBSCRIPTION_PAYMENT_FAILED, compose.subscription_payment_failed(data, PUBLIC)
    )
    page = f"{PUBLIC}/account/subscriptions/{data.subscription_id}"
    assert "update your card" in mail.subject
    assert f'href="{page}"' in mail.html
    assert "Update your card" in mail.html
    assert f"Update your card: {page}" in mail.text
    assert "$30.00" in mail.text
    assert "<script>" not in mail.html
    assert NASTY in mail.text


def test_a_failed_renewal_mail_names_the_variant_subscribed_to() -> None:
    kilo = compose.subscription_payment_failed(
        payment_failed("Ethiopia Guji", "Espresso / 1 kg"), PUBLIC
    )
    mail = render(Template.SUBSCRIPTION_PAYMENT_FAILED, kilo)
    assert "your Ethiopia Guji (Espresso / 1 kg) subscription" in mail.text
    plain = render(
        Template.SUBSCRIPTION_PAYMENT_FAILED,
        compose.subscription_payment_failed(payment_failed("Ethiopia Guji"), PUBLIC),
    )
    assert "your Ethiopia Guji subscription" in plain.text


def test_every_template_has_html_and_text() -> None:
    rendered = all_rendered()
    assert {t for t, *_ in rendered} == set(Template)
    for _, subject, html, text in rendered:
        assert subject
        assert "\n" not in subject
        assert html.startswith("<!doctype html>")
        assert "<html" not in text
        assert "EMBER COFFEE" in text


def test_a_sign_up_mail_does_not_repeat_the_name_its_requester_chose() -> None:
    # Anyone can ask for an account for any address: a name would carry their words, under
    # the shop's name, to a stranger's inbox (issue 10 finding 13). Even an event that still
    # carries one (sent before identity stopped) is mailed without it.
    pitch = "Ada, claim your prize at evil.example"
    asked = SignUpRequested(
        email="a@example.com",
        name=pitch,
        verify_url=f"{PUBLIC}/verify-email?token=t",
        expires_at="2030-01-01T00:00:00Z",
    )
    mail = render(Template.SIGN_UP, compose.sign_up(asked, PUBLIC))
    for part in (mail.subject, mail.html, mail.text):
        assert "evil.example" not in part
        assert "Ada" not in part
    assert "Confirm your email" in mail.text


def test_names_are_escaped_in_html_and_kept_in_text() -> None:
    data = order_paid("a@example.com", name=NASTY)
    rendered = render(Template.ORDER_CONFIRMATION, compose.order_confirmation(data, PUBLIC))

    assert "<script>" not in rendered.html
    assert "<b onmouseover" not in rendered.html
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b onmouseover=alert(1)&gt;"
        in (rendered.html)
    )
    # Plain text is not HTML: escaping it would show the shopper "&lt;".
    assert NASTY in rendered.text


def test_product_names_and_carrier_are_escaped() -> None:
    line = order_paid("a@example.com").lines[0]
    data = order_paid(
        "a@example.com", lines=[type(line)(**{**_fields(line), "name": "<img src=x onerror=1>"})]
    )
    order = render(Template.ORDER_CONFIRMATION, compose.order_confirmation(data, PUBLIC))
    assert "<img src=x" not in order.html
    assert "&lt;img src=x onerror=1&gt;" in order.html

    shipped = OrderShipped(
        order_id=new_id(), email="a@example.com", carrier="<i>UPS</i>", tracking_number="1Z"
    )
    ship = render(Template.SHIPMENT, compose.shipment(shipped, PUBLIC))
    assert "<i>UPS</i>" not in ship.html
    assert "&lt;i&gt;UPS&lt;/i&gt;" in ship.html


def _fields(struct: object) -> dict[str, object]:
    return {f: getattr(struct, f) for f in struct.__struct_fields__}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "data:text/html,hi", "//evil.example/x", "", "not a url"],
)
def test_a_tracking_link_that_is_not_http_falls_back_to_the_order_page(url: str) -> None:
    shipped = OrderShipped(
        order_id=new_id(),
        email="a@example.com",
        carrier="UPS",
        tracking_number="1Z",
        tracking_url=url,
    )
    context = compose.shipment(shipped, PUBLIC)
    assert context["tracking_url"] == f"{PUBLIC}/order/{shipped.order_id}"
    html = render(Template.SHIPMENT, context).html
    assert "javascript:" not in html
    assert "data:text" not in html


def test_a_name_cannot_add_lines_to_the_subject() -> None:
    rendered = render(
        Template.ORDER_CONFIRMATION,
        {
            **compose.order_confirmation(order_paid("a@example.com"), PUBLIC),
            "order_number": "ABC\r\nBcc: victim@example.com",
        },
    )
    assert "\n" not in rendered.subject
    assert "\r" not in rendered.subject


def test_styles_use_design_tokens_only() -> None:
    token_values = set(TOKENS.values())
    for _, _, html, _ in all_rendered():
        colours = set(re.findall(r"#[0-9a-fA-F]{3,8}\b", html))
        assert colours, "the mail should be styled"
        assert colours <= token_values, f"colours not from the tokens: {colours - token_values}"
        sizes = set(re.findall(r"\b\d+px\b", html))
        # 1px borders and the brand's letter spacing are the only literal sizes.
        assert sizes - {"1px", "2px"} <= token_values
        assert "<style" not in html  # mail clients drop <style>: inline only


def test_money_is_formatted_from_minor_units() -> None:
    data = order_paid("a@example.com", subtotal=100, shipping=5, total=105, lines=[])
    rendered = render(Template.ORDER_CONFIRMATION, compose.order_confirmation(data, PUBLIC))
    assert "$1.00" in rendered.text
    assert "$0.05" in rendered.text
    assert "$1.05" in rendered.text


def test_the_confirmation_shows_discount_shipping_method_and_tax_that_make_the_total() -> None:
    data = order_paid(
        "a@example.com",
        subtotal=5300,
        discount=530,
        discount_code="WELCOME10",
        shipping=1500,
        shipping_name="Express",
        tax=455,
        total=5300 - 530 + 1500 + 455,
    )
    mail = render(Template.ORDER_CONFIRMATION, compose.order_confirmation(data, PUBLIC))
    for part in (mail.html, mail.text):
        assert "Discount (WELCOME10)" in part
        assert "-$5.30" in part
        assert "Shipping (Express)" in part
        assert "$15.00" in part
        assert "Tax" in part
        assert "$4.55" in part
        assert "$67.25" in part

    plain = render(
        Template.ORDER_CONFIRMATION, compose.order_confirmation(order_paid("a@example.com"), PUBLIC)
    )
    assert "Discount" not in plain.text
    assert "Tax" not in plain.text


def test_the_confirmation_names_the_variant_of_each_line() -> None:
    kilo = OrderLine(
        product_id=new_id(),
        variant_id=new_id(),
        slug="ethiopia",
        name="Ethiopia Guji",
        unit_price=5600,
        quantity=1,
        sku="ETH-ES-1KG",
        variant_title="Espresso / 1 kg",
    )
    bag = OrderLine(
        product_id=new_id(), slug="colombia", name="Colombia Huila", unit_price=1600, quantity=1
    )
    data = order_paid("a@example.com", lines=[kilo, bag], subtotal=7200, total=7695)
    mail = render(Template.ORDER_CONFIRMATION, compose.order_confirmation(data, PUBLIC))
    assert "Ethiopia Guji (Espresso / 1 kg) x 1" in mail.text
    assert "Ethiopia Guji (Espresso / 1 kg) &times; 1" in mail.html
    # A product without options has only its default variant, which is not named.
    assert "Colombia Huila x 1" in mail.text
