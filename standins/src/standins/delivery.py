"""The HTTP client the stand-ins send their webhooks with."""

from __future__ import annotations

import aiohttp


def webhook_client(concurrency: int) -> aiohttp.ClientSession:
    """Kept-alive connections, ``concurrency`` deliveries at a time and as many again for the
    test controls' own. aiohttp, not httpx: the stand-ins run on the shop's cores, and httpx
    took several times the CPU per delivery. Nothing of an endpoint's answer (a cookie) is
    kept between deliveries, as at Stripe or Svix."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10.0, connect=3.0),
        connector=aiohttp.TCPConnector(limit=max(1, concurrency) * 2),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
