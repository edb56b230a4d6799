"""Money is an integer count of minor units plus an ISO 4217 code: never a float."""

from __future__ import annotations

from typing import Annotated

import msgspec

#: Amount in minor units (cents). Bounded so sums stay far inside a BIGINT.
MinorUnits = Annotated[
    int, msgspec.Meta(ge=0, le=100_000_000, description="Amount in minor units (cents).")
]
CurrencyCode = Annotated[
    str,
    msgspec.Meta(pattern="^[A-Z]{3}$", min_length=3, max_length=3, description="ISO 4217 code."),
]


class Money(msgspec.Struct, frozen=True):
    amount: MinorUnits
    currency: CurrencyCode = "USD"

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)

    def times(self, quantity: int) -> Money:
        return Money(self.amount * quantity, self.currency)

    def display(self) -> str:
        symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(self.currency, self.currency + " ")
        return f"{symbol}{self.amount // 100:,}.{self.amount % 100:02d}"
