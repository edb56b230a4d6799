"""The breached-password check: only a 5-character SHA-1 prefix leaves the machine (proved with
a real HTTP server standing in for the range API), and the shipped list serves when the API is
not configured, fails or is slow."""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from identity.security.breached import (
    OFFLINE_LIST,
    BreachedPasswords,
    OfflineList,
    count_in_range,
    sha1_hex,
)
from identity_helpers import Browser, new_email, strong_password

#: Passwords the fake range API "knows" from breaches; none is in the shipped list.
KNOWN_BREACHED = ("Tr0ub4dor&3-ember-test", "Breached-But-Long-Enough-1")


@dataclass
class FakeRangeApi:
    """A tiny HTTP server speaking the Pwned Passwords range protocol, recording every request
    exactly as it arrived on the socket."""

    url: str = ""
    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)

    def body_for(self, prefix: str) -> str:
        lines = [
            f"{sha1_hex(p)[5:]}:{1234 + i}"
            for i, p in enumerate(KNOWN_BREACHED)
            if sha1_hex(p).startswith(prefix)
        ]
        # Padding, as the real API adds on request: entries that match nothing, count 0.
        lines += [f"{hashlib.sha1(str(i).encode()).hexdigest().upper()[5:]}:0" for i in range(5)]
        return "\r\n".join(lines)


@pytest.fixture(scope="module")
def range_api() -> Iterator[FakeRangeApi]:
    api = FakeRangeApi()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            api.requests.append(
                {
                    "request_line": self.requestline,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": self.rfile.read(length) if length else b"",
                }
            )
            if api.mode == "error":
                self.send_response(503)
                self.end_headers()
                return
            if api.mode == "slow":
                time.sleep(3.0)
            prefix = self.path.rsplit("/", 1)[-1]
            body = api.body_for(prefix).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def api(range_api: FakeRangeApi) -> Iterator[FakeRangeApi]:
    range_api.mode = "ok"
    range_api.requests.clear()
    yield range_api
    if range_api.mode == "slow":
        time.sleep(3.2)  # let the slow answers still in flight finish before the next test
    range_api.mode = "ok"
    range_api.requests.clear()


async def test_only_the_five_character_prefix_leaves_the_machine(api: FakeRangeApi) -> None:
    checker = BreachedPasswords(api.url)
    password = KNOWN_BREACHED[0]
    digest = sha1_hex(password)
    assert await checker.times_seen(password) == 1234
    (request,) = api.requests
    assert request["request_line"] == f"GET /range/{digest[:5]} HTTP/1.1"
    assert request["body"] == b""
    sent = (request["request_line"] + repr(request["headers"])).upper()
    assert digest[5:] not in sent
    assert digest[5:10] not in sent
    assert password.upper() not in sent
    assert request["headers"].get("Add-Padding") == "true"


async def test_a_password_absent_from_the_range_passes(api: FakeRangeApi) -> None:
    checker = BreachedPasswords(api.url)
    assert await checker.is_breached(strong_password()) is False
    assert len(api.requests) == 1  # asked, and padding lines (count 0) matched nothing


async def test_registration_asks_the_range_api(
    api: FakeRangeApi, make_app: Callable[..., Any], browsers: Callable[..., Browser]
) -> None:
    async with make_app(hibp_api_url=api.url) as app:
        refused = await browsers(app=app).register(password=KNOWN_BREACHED[1])
        assert refused.status_code == 422
        assert refused.json()["reason"] == "breached"
        ok = await browsers(app=app).register(new_email(), strong_password())
        assert ok.status_code == 201
    prefixes = [r["path"] for r in api.requests]
    assert prefixes[0] == f"/range/{sha1_hex(KNOWN_BREACHED[1])[:5]}"
    assert all(len(p.rsplit("/", 1)[1]) == 5 for p in prefixes)


@pytest.mark.parametrize("mode", ["error", "slow", "down"])
async def test_the_shipped_list_serves_when_the_api_fails(api: FakeRangeApi, mode: str) -> None:
    api.mode = mode if mode != "down" else "ok"
    url = api.url if mode != "down" else "http://127.0.0.1:9"
    checker = BreachedPasswords(url, timeout_ms=300)
    started = time.monotonic()
    _, source = await checker.range(sha1_hex("password1234")[:5])
    assert source == "offline"
    if mode == "slow":
        # The fake API takes 3 s; the check gives up after the 0.3 s timeout.
        assert time.monotonic() - started < 2.5
    assert await checker.is_breached("password1234") is True
    assert await checker.is_breached(strong_password()) is False


async def test_offline_mode_never_calls_out(
    api: FakeRangeApi, browsers: Callable[..., Browser]
) -> None:
    # The session app runs with HIBP_API_URL=offline.
    assert (await browsers().register(password="password1234")).status_code == 422
    assert (
        await browsers().register(password=KNOWN_BREACHED[0])
    ).status_code == 201  # only the API knows it
    assert api.requests == []


def test_the_shipped_list_is_in_range_format() -> None:
    with gzip.open(OFFLINE_LIST, "rt", encoding="ascii") as handle:
        lines = handle.read().splitlines()
    assert len(lines) > 30_000
    assert lines == sorted(lines)
    assert all(len(line) >= 42 and line[40] == ":" and line[41:].isdigit() for line in lines[:1000])
    offline = OfflineList()
    for common in (
        "123456",
        "password",
        "qwerty",
        "iloveyou",
        "dragon",
        "monkey",
        "password1234",
        "1q2w3e4r5t",
    ):
        digest = sha1_hex(common)
        assert count_in_range(offline.range(digest[:5]), digest[5:]) > 0, common


def test_count_in_range_parses_the_api_format() -> None:
    body = "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n00D4F6E8FA6EECAD2A3AA415EEC418D38EC:2\n011053FD0102E94D6AE2F8B83D76FAF94F6:0"
    assert count_in_range(body, "00d4f6e8fa6eecad2a3aa415eec418d38ec") == 2
    assert count_in_range(body, "011053FD0102E94D6AE2F8B83D76FAF94F6") == 0  # padding
    assert count_in_range(body, "FFFFF") == 0
    assert count_in_range("", "ABC") == 0
