"""Shipping rates and discount codes: staff manage them under ``/api/checkout/admin/...``;
shoppers see the rates that ship to them at ``/api/checkout/shipping-options``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from ember_shared.auth import requires_admin
from litestar import Controller, Request, Response, get, patch, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.offers.schemas import (
    DiscountCodeIn,
    DiscountCodeOut,
    DiscountCodePage,
    DiscountCodePatch,
    ShippingOptions,
    ShippingRateIn,
    ShippingRateOut,
    ShippingRatePatch,
)
from checkout.offers.services import Offers
from checkout.sessions.controllers import (
    NO_STORE,
    buyer_of,
    provide_checkout_service,
    refuses_failed_credentials,
)
from checkout.sessions.services import CheckoutService

CountryParam = Annotated[
    str | None,
    Parameter(
        query="country",
        pattern="^[A-Z]{2}$",
        description="ISO 3166-1 alpha-2 code of the destination.",
    ),
]


async def provide_offers(db_session: AsyncSession, state: State) -> Offers:
    return Offers(db_session, state.checkout_settings)


class ShippingOptionsController(Controller):
    path = "/api/checkout/shipping-options"
    tags = ["checkout"]
    guards = [refuses_failed_credentials]
    dependencies = {"checkout": Provide(provide_checkout_service)}
    security = [{"BearerToken": []}, {}]

    @get(
        "/",
        summary="The shipping rates that ship the cart to a country",
        description="Each with what it costs for this cart now (free from its threshold on), "
        "cheapest position first. The first is the one a checkout takes when none is picked.",
        cache=False,
    )
    async def options(
        self,
        request: Request[Any, Any, Any],
        checkout: CheckoutService,
        country: CountryParam = None,
        discount_code: Annotated[
            str | None, Parameter(query="discount_code", max_length=40)
        ] = None,
    ) -> Response[ShippingOptions]:
        quote = await checkout.quote(
            buyer_of(request), discount_code=discount_code, country=country
        )
        async with AsyncSession(checkout.engine) as session:
            options = await Offers(session, checkout.settings).shipping_options(
                country, quote.subtotal - quote.discount
            )
        return Response(ShippingOptions(options=options), headers=NO_STORE)


class AdminShippingRateController(Controller):
    path = "/api/checkout/admin/shipping-rates"
    tags = ["admin: checkout"]
    guards = [requires_admin]
    dependencies = {"offers": Provide(provide_offers)}
    security = [{"BearerToken": []}]

    @get("/", summary="Every shipping rate", cache=False)
    async def list_rates(self, offers: Offers) -> list[ShippingRateOut]:
        return await offers.list_rates()

    @post("/", summary="Add a shipping rate", status_code=201)
    async def create_rate(self, offers: Offers, data: ShippingRateIn) -> ShippingRateOut:
        return await offers.create_rate(data)

    @patch("/{rate_id:uuid}", summary="Change a shipping rate (or retire it: active false)")
    async def update_rate(
        self, offers: Offers, rate_id: uuid.UUID, data: ShippingRatePatch
    ) -> ShippingRateOut:
        return await offers.update_rate(rate_id, data)


class AdminDiscountCodeController(Controller):
    path = "/api/checkout/admin/discount-codes"
    tags = ["admin: checkout"]
    guards = [requires_admin]
    dependencies = {"offers": Provide(provide_offers)}
    security = [{"BearerToken": []}]

    @get("/", summary="Discount codes, newest first (at most 500)", cache=False)
    async def list_codes(self, offers: Offers) -> DiscountCodePage:
        return DiscountCodePage(items=await offers.list_codes())

    @post("/", summary="Create a discount code", status_code=201)
    async def create_code(self, offers: Offers, data: DiscountCodeIn) -> DiscountCodeOut:
        return await offers.create_code(data)

    @get("/{code_id:uuid}", summary="A discount code with its uses and holds", cache=False)
    async def get_code(self, offers: Offers, code_id: uuid.UUID) -> DiscountCodeOut:
        return await offers.get_code(code_id)

    @patch("/{code_id:uuid}", summary="Change a discount code (or retire it: active false)")
    async def update_code(
        self, offers: Offers, code_id: uuid.UUID, data: DiscountCodePatch
    ) -> DiscountCodeOut:
        return await offers.update_code(code_id, data)
