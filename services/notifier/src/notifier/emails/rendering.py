"""Rendering mail from the Jinja2 templates shipped in ``notifier/templates``.

Every template has an HTML and a plain-text version. HTML is autoescaped (names, addresses and
product names come from shoppers); styles are inline (mail clients drop ``<style>``) and come
from one map of design tokens, so no colour or size is written in a template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from html import escape
from typing import Any
from urllib.parse import urlsplit

from ember_shared.money import Money
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


class Template(StrEnum):
    ORDER_CONFIRMATION = "order_confirmation"
    SHIPMENT = "shipment"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a template name
    WELCOME = "welcome"
    SIGN_UP = "sign_up"
    EXISTING_ACCOUNT = "existing_account"
    DELIVERED = "delivered"
    REFUNDED = "refunded"
    SUBSCRIPTION_PAYMENT_FAILED = "subscription_payment_failed"


#: The storefront's design tokens, as mail can use them (hex colours, web-safe font stacks): mail
#: clients ignore CSS custom properties. Each colour is the value of the storefront token named
#: beside it (services/storefront/src/storefront/static/tokens.css); a lint in
#: tests/invariants/test_invariants.py refuses any other (invariant 13).
TOKENS: dict[str, str] = {
    "color_page": "#faf6f0",  # --color-bg
    "color_surface": "#ffffff",  # --color-surface
    "color_ink": "#2a1d15",  # --color-ink
    "color_muted": "#75655a",  # --color-ink-muted
    "color_accent": "#b4451f",  # --color-accent
    "color_on_accent": "#ffffff",  # --color-accent-ink
    "color_border": "#e4d9cb",  # --color-line
    "font_body": "Georgia, 'Times New Roman', serif",
    "font_ui": "-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif",
    "size_body": "16px",
    "size_small": "13px",
    "size_title": "24px",
    "line_height": "1.5",
    "radius": "6px",
    "space_1": "4px",
    "space_2": "8px",
    "space_3": "16px",
    "space_4": "24px",
    "space_5": "32px",
    "width_content": "560px",
}

T = TOKENS
#: Inline style strings the templates use, composed from the tokens only.
STYLES: dict[str, str] = {
    "page": f"margin:0;padding:{T['space_5']} 0;background:{T['color_page']};",
    "card": (
        f"max-width:{T['width_content']};margin:0 auto;background:{T['color_surface']};"
        f"border:1px solid {T['color_border']};border-radius:{T['radius']};"
        f"padding:{T['space_5']};font-family:{T['font_body']};font-size:{T['size_body']};"
        f"line-height:{T['line_height']};color:{T['color_ink']};"
    ),
    "brand": (
        f"font-family:{T['font_ui']};font-size:{T['size_small']};letter-spacing:2px;"
        f"text-transform:uppercase;color:{T['color_accent']};margin:0 0 {T['space_3']};"
    ),
    "title": f"font-size:{T['size_title']};margin:0 0 {T['space_3']};color:{T['color_ink']};",
    "text": f"margin:0 0 {T['space_3']};",
    "muted": f"color:{T['color_muted']};font-size:{T['size_small']};margin:0 0 {T['space_3']};",
    "button": (
        f"display:inline-block;background:{T['color_accent']};color:{T['color_on_accent']};"
        f"font-family:{T['font_ui']};text-decoration:none;padding:{T['space_2']} {T['space_4']};"
        f"border-radius:{T['radius']};"
    ),
    "link": f"color:{T['color_accent']};",
    "table": f"width:100%;border-collapse:collapse;margin:0 0 {T['space_3']};",
    "cell": f"padding:{T['space_2']} 0;border-bottom:1px solid {T['color_border']};",
    "cell_right": (
        f"padding:{T['space_2']} 0;border-bottom:1px solid {T['color_border']};text-align:right;"
    ),
    "total": f"padding:{T['space_2']} 0;text-align:right;font-weight:bold;",
    "footer": (
        f"max-width:{T['width_content']};margin:{T['space_3']} auto 0;text-align:center;"
        f"font-family:{T['font_ui']};font-size:{T['size_small']};color:{T['color_muted']};"
    ),
}

SUBJECTS: dict[Template, str] = {
    Template.ORDER_CONFIRMATION: "Your Ember order {order_number} is confirmed",
    Template.SHIPMENT: "Your Ember order {order_number} is on its way",
    Template.PASSWORD_RESET: "Reset your Ember password",
    Template.WELCOME: "Welcome to Ember",
    Template.SIGN_UP: "Confirm your email to finish signing up at Ember",
    Template.EXISTING_ACCOUNT: "You already have an Ember account",
    Template.DELIVERED: "Your Ember order {order_number} has arrived",
    Template.REFUNDED: "We have refunded {refund} of your Ember order {order_number}",
    Template.SUBSCRIPTION_PAYMENT_FAILED: "Your Ember subscription payment failed: update your card",
}

_env = Environment(
    loader=PackageLoader("notifier", "templates"),
    # HTML versions escape every value; the text versions are plain text and must not.
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    # The templates ship inside the package and never change under a running process: without
    # this every render stats each template file (and its base) to see whether to reload it.
    auto_reload=False,
)


def money(amount: int, currency: str) -> str:
    return Money(amount, currency).display()


_env.filters["money"] = money
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def one_line(value: str, limit: int = 300) -> str:
    """A header-safe single line (a shopper's name must not add lines to a subject)."""
    return _CONTROL.sub(" ", value).strip()[:limit]


#: Stands in the stored body for a live link; only the copy handed to Resend has the link.
SEALED_LINK = "https://link-sent-by-mail-only.invalid/"
#: The context key under which a compose function hands over the live link to seal.
SEALED_CONTEXT_KEY = "_sealed_link"


def fill_sealed_link(html: str, text: str, link: str) -> tuple[str, str]:
    """The bodies to send: the placeholder replaced by the opened link (escaped in HTML)."""
    return html.replace(SEALED_LINK, escape(link, quote=True)), text.replace(SEALED_LINK, link)


def safe_link(url: str, fallback: str) -> str:
    """``url`` when it is an absolute http(s) link, else ``fallback`` (never ``javascript:``)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return fallback
    if parts.scheme in ("http", "https") and parts.netloc:
        return url.strip()
    return fallback


def render(template: Template, context: dict[str, Any]) -> Rendered:
    values = {"s": STYLES, "t": TOKENS, **context}
    subject = one_line(SUBJECTS[template].format(**context))
    html = _env.get_template(f"{template.value}.html.j2").render(subject=subject, **values)
    text = _env.get_template(f"{template.value}.txt.j2").render(subject=subject, **values)
    return Rendered(subject=subject, html=html, text=text)
