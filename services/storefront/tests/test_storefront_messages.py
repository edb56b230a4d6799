"""The shopper's sentence for each problem kind the services answer with.

The table's kinds are checked against the kinds the services' code can raise (read from their
sources: the kind argument of every ``Problem(...)``, ``problem_response(...)`` and the shared
shorthand helpers), so a kind renamed in a service cannot silently fall back to the generic line.
"""

from __future__ import annotations

import ast

import pytest
from ember_shared.settings import repo_root
from storefront.api import ApiProblem, ApiUnavailable
from storefront.messages import BY_STATUS, GENERIC, SAID, WORDED, friendly

ROOT = repo_root()
RAISERS = {"Problem": 1, "problem_response": 2, "_problem": 1, "_unavailable": 0}


def emitted_kinds() -> set[str]:
    kinds: set[str] = set()
    sources = [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("shared/src/**/*.py")]
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            for arg in node.args:
                # The kind is the call's first slug-shaped literal after the status.
                if (
                    name in RAISERS
                    and isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and arg.value == arg.value.lower()
                    and " " not in arg.value
                ):
                    kinds.add(arg.value)
                    break
            for keyword in node.keywords:
                if keyword.arg == "kind" and isinstance(keyword.value, ast.Constant):
                    kinds.add(str(keyword.value.value))
    return kinds


def problem(status: int, kind: str, **body: object) -> ApiProblem:
    return ApiProblem(status, {"type": f"https://ember.shop/problems/{kind}", **body})


def test_every_kind_in_the_table_is_one_a_service_answers_with() -> None:
    emitted = emitted_kinds()
    assert {"sold-out", "validation", "unauthenticated"} <= emitted  # the reader works
    unknown = sorted((SAID.keys() | WORDED.keys()) - emitted)
    assert not unknown, f"no service answers with {unknown}: renamed?"
    assert not SAID.keys() & WORDED.keys()


@pytest.mark.parametrize("kind", sorted(SAID))
def test_a_fixed_sentence_per_kind(kind: str) -> None:
    said = friendly(problem(409, kind, detail="raw {json} detail"))
    assert said == SAID[kind]
    assert "{" not in said


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        (
            "insufficient-stock",
            {"available": 2, "in_cart": 1},
            "We have only 2 of Kenya left and 1 are in your cart already.",
        ),
        ("insufficient-stock", {"available": 0}, "Sorry, Kenya has just sold out."),
        ("insufficient-stock", {}, "We do not have that many of Kenya left."),
        ("quantity-limit", {"max_quantity": 5}, "A cart can hold at most 5 of one coffee."),
        ("quantity-limit", {}, "That is more than one cart can hold."),
        (
            "price-changed",
            {"total": 4400, "currency": "USD"},
            "Prices changed since you opened your cart. The new total is $44.00: check it, then pay.",
        ),
        ("rate-limited", {"retry_after": 30}, "Too many tries. Wait 30 seconds and try again."),
        ("rate-limited", {}, BY_STATUS[429]),
        ("sold-out", {}, "Sorry, Kenya has just sold out."),
        ("product-archived", {}, "Sorry, Kenya is no longer sold."),
        ("weak-password", {"detail": "Use 12 characters or more."}, "Use 12 characters or more."),
    ],
)
def test_worded_kinds_use_the_problems_figures(
    kind: str, body: dict[str, object], expected: str
) -> None:
    assert friendly(problem(409, kind, **body), "Kenya") == expected


def test_without_a_known_kind_the_status_or_a_plain_detail_speaks() -> None:
    assert friendly(problem(401, "who-knows")) == BY_STATUS[401]
    assert friendly(problem(404, "who-knows"), "that order") == "That order could not be found."
    assert friendly(problem(409, "who-knows", detail="Pick a size first.")) == "Pick a size first."
    assert friendly(problem(500, "who-knows", detail='{"raw": "json"}')) == GENERIC
    unavailable = friendly(ApiUnavailable("cart", "down"))
    assert unavailable.startswith("We could not reach that part of the shop")
