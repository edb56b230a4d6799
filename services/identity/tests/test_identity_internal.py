"""``/internal/identity/*``: a user's saved address for checkout, behind the service credential."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import msgspec
from ember_shared.contracts.identity import Address, saved_address_path
from identity_helpers import Account, Browser, new_email, strong_password

PROBLEM = "application/problem+json"
HOME = {
    "name": "Ada Roaster",
    "phone": "+1 555 0100",
    "line1": "12 Bean Street",
    "line2": "Unit 4",
    "city": "Portland",
    "state": "OR",
    "postal_code": "97201",
    "country": "us",
}


def service_headers() -> dict[str, str]:
    return {"X-Service-Token": os.environ["INTERNAL_SERVICE_TOKEN"]}


async def saved(browser: Browser) -> uuid.UUID:
    response = await browser.post("/api/user/addresses", HOME)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def test_the_saved_address_route_needs_the_service_credential(
    signed_in: tuple[Browser, Account],
) -> None:
    browser, account = signed_in
    path = saved_address_path(account.user_id, await saved(browser))
    refusals = [
        await browser.get(path),
        await browser.get(path, headers={"X-Service-Token": "guess"}),
        # The owner's own token (and cookies) are not a service credential.
        await browser.get(path, headers={"Authorization": f"Bearer {account.access_token}"}),
    ]
    for refused in refusals:
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"].startswith(PROBLEM)
        assert refused.json()["type"].endswith("/service-credential")
        assert "Ada" not in refused.text


async def test_a_users_saved_address_in_the_shared_contract(
    signed_in: tuple[Browser, Account],
) -> None:
    browser, account = signed_in
    address_id = await saved(browser)
    response = await browser.get(
        saved_address_path(account.user_id, address_id), headers=service_headers()
    )
    assert response.status_code == 200, response.text
    assert msgspec.json.decode(response.content, type=Address) == Address(
        name="Ada Roaster",
        line1="12 Bean Street",
        line2="Unit 4",
        city="Portland",
        state="OR",
        postal_code="97201",
        country="US",
        phone="+1 555 0100",
    )


async def test_another_users_address_is_no_address(
    signed_in: tuple[Browser, Account], browsers: Callable[..., Browser]
) -> None:
    owner_browser, owner = signed_in
    address_id = await saved(owner_browser)
    other_browser = browsers()
    registered = await other_browser.register(new_email(), strong_password())
    assert registered.status_code == 201, registered.text
    other_id = uuid.UUID(registered.json()["user"]["id"])

    for user_id, wanted in (
        (other_id, address_id),  # the other user asking for the owner's address
        (owner.user_id, uuid.uuid4()),  # an address that does not exist
        (uuid.uuid4(), address_id),  # a user that does not exist
    ):
        response = await other_browser.get(
            saved_address_path(user_id, wanted), headers=service_headers()
        )
        assert response.status_code == 404, response.text
        assert response.json()["type"].endswith("/not-found")
        assert "Ada" not in response.text
    # The owner still has it: the 404s above are about ownership, not a broken route.
    still = await owner_browser.get(
        saved_address_path(owner.user_id, address_id), headers=service_headers()
    )
    assert still.status_code == 200
