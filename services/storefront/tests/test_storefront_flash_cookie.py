"""The flash cookie rides on redirects: Secure wherever the shop is not a developer's plain-http
machine (issue 10 finding 13)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.testing import TestClient
from storefront.web import FLASH_COOKIE, redirect


@get("/go", sync_to_thread=False)
def go(request: Request[Any, Any, Any]) -> Response[Any]:
    return redirect(request, "/account", flash="signed-in")


@pytest.mark.parametrize(("state", "secure"), [({}, True), ({"cookie_secure": False}, False)])
def test_the_flash_cookie_is_secure_unless_the_app_says_it_runs_locally(
    state: dict[str, Any], secure: bool
) -> None:
    with TestClient(Litestar([go], state=State(state))) as client:
        answer = client.get("/go", follow_redirects=False)
    assert answer.status_code == 303
    (cookie,) = [c for c in answer.headers.get_list("set-cookie") if c.startswith(FLASH_COOKIE)]
    assert ("; Secure" in cookie) is secure, cookie
    assert "HttpOnly" in cookie
