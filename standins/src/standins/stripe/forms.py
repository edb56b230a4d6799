"""Stripe's request encoding: ``application/x-www-form-urlencoded`` with bracketed nested keys.

``line_items[0][price_data][unit_amount]=1200&metadata[order_id]=...`` becomes
``{"line_items": [{"price_data": {"unit_amount": "1200"}}], "metadata": {"order_id": "..."}}``.
Values stay strings; each endpoint converts and validates what it reads.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from standins.stripe.errors import StripeError

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
MAX_PARAMS = 2000
MAX_DEPTH = 6


def parse_form(body: bytes | str) -> dict[str, Any]:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_PARAMS)
    return parse_pairs(pairs)


def parse_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise StripeError(400, f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        if len(parts) > MAX_DEPTH:
            raise StripeError(400, f"Parameter nested too deeply: {key}", param=key)
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            name = part if part != "" else str(_next_index(node))
            if last:
                node[name] = value
            else:
                child = node.setdefault(name, {})
                if not isinstance(child, dict):
                    raise StripeError(400, f"Invalid parameter: {key}", param=key)
                node = child
    parsed: dict[str, Any] = _listify(root)
    return parsed


def _next_index(node: dict[str, Any]) -> int:
    return len(node)


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {k: _listify(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def as_int(
    params: dict[str, Any],
    key: str,
    *,
    minimum: int | None = None,
    required: bool = False,
    param: str | None = None,
) -> int | None:
    raw = params.get(key)
    name = param or key
    if raw is None or raw == "":
        if required:
            raise StripeError(
                400, f"Missing required param: {name}.", param=name, code="parameter_missing"
            )
        return None
    try:
        number = int(str(raw))
    except ValueError:
        raise StripeError(
            400, f"Invalid integer: {raw}", param=name, code="parameter_invalid_integer"
        ) from None
    if minimum is not None and number < minimum:
        raise StripeError(
            400,
            f"This value must be greater than or equal to {minimum}.",
            param=name,
            code="parameter_invalid_integer",
        )
    return number


def as_str(
    params: dict[str, Any],
    key: str,
    *,
    required: bool = False,
    max_length: int = 5000,
    param: str | None = None,
) -> str | None:
    raw = params.get(key)
    name = param or key
    if raw is None or raw == "":
        if required:
            raise StripeError(
                400, f"Missing required param: {name}.", param=name, code="parameter_missing"
            )
        return None
    if not isinstance(raw, str):
        raise StripeError(
            400, f"Invalid string: {name}", param=name, code="parameter_invalid_string"
        )
    if len(raw) > max_length:
        raise StripeError(
            400,
            f"{name} must be at most {max_length} characters.",
            param=name,
            code="parameter_invalid_string_too_long",
        )
    return raw


def as_metadata(params: dict[str, Any], key: str = "metadata") -> dict[str, str]:
    raw = params.get(key)
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise StripeError(400, "Invalid object", param=key)
    if len(raw) > 50:
        raise StripeError(400, "Metadata can have at most 50 keys.", param=key)
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(v, str) or len(k) > 40 or len(v) > 500:
            raise StripeError(400, f"Invalid metadata value for {k}.", param=f"{key}[{k}]")
        out[k] = v
    return out
