"""A small HTTP/1.1 load generator on raw asyncio streams (uvloop when available).

Each of ``connections`` keep-alive connections sends one request, reads the whole answer, and
sends the next, for a warm-up and then a measured window; latency is the time from writing a
request to having read its last byte. Written for throughput: requests are pre-encoded bytes,
responses are parsed just enough (status, Content-Length or chunked), so one Python process can
drive a few thousand requests a second without becoming the bottleneck it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Target:
    """Where requests go: the gateway's host and port, and a Host header for it."""

    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError("the load generator speaks plain HTTP/1.1 only (http://...)")
        return cls(parts.hostname or "127.0.0.1", parts.port or 80)


@dataclass
class Outcome:
    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    window_s: float = 0.0
    #: Latencies per path (its index in the paths given), for scenarios that mix variants.
    by_path: dict[int, list[int]] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies_ns)

    @property
    def rps(self) -> float:
        return self.requests / self.window_s if self.window_s else 0.0

    def percentile_ms(self, p: float) -> float:
        if not self.latencies_ns:
            return 0.0
        ordered = sorted(self.latencies_ns)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index] / 1e6

    @property
    def mean_ms(self) -> float:
        return sum(self.latencies_ns) / len(self.latencies_ns) / 1e6 if self.latencies_ns else 0.0


def encode_requests(target: Target, paths: Sequence[str], headers: dict[str, str]) -> list[bytes]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return [
        (
            f"GET {path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
            f"Accept: application/json\r\nAccept-Encoding: identity\r\nUser-Agent: ember-bench\r\n"
            f"{extra}\r\n"
        ).encode("latin-1")
        for path in paths
    ]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; its status and whether the connection may be reused."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = -1
    chunked = False
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            keep_alive = False
    if chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length > 0:
        await reader.readexactly(length)
    elif length < 0 and status not in (204, 304) and status >= 200:
        keep_alive = False
        await reader.read()
    return status, keep_alive


async def _connection(
    target: Target,
    requests: list[bytes],
    offset: int,
    outcome: Outcome,
    *,
    record_from: float,
    stop_at: float,
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    n = offset
    clock = time.perf_counter_ns
    record_from_ns = int(record_from * 1e9)
    stop_at_ns = int(stop_at * 1e9)
    while True:
        now = clock()
        if now >= stop_at_ns:
            break
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(target.host, target.port)
            except OSError:
                outcome.errors += 1
                await asyncio.sleep(0.05)
                continue
        assert reader is not None
        index = n % len(requests)
        request = requests[index]
        n += 1
        started = clock()
        try:
            writer.write(request)
            status, keep_alive = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            if started >= record_from_ns:
                outcome.errors += 1
            writer.close()
            writer = None
            continue
        finished = clock()
        if started >= record_from_ns and finished <= stop_at_ns:
            outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
            if 200 <= status < 400:
                outcome.latencies_ns.append(finished - started)
                outcome.by_path.setdefault(index, []).append(finished - started)
            else:
                outcome.errors += 1
        if not keep_alive:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def load(
    url: str,
    paths: Sequence[str],
    *,
    headers: dict[str, str] | None = None,
    connections: int = 16,
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
) -> Outcome:
    """Drive ``paths`` (round robin) over ``connections`` for ``warmup_s`` + ``duration_s``;
    only the second part is measured."""
    target = Target.from_url(url)
    requests = encode_requests(target, paths, headers or {})
    outcome = Outcome()
    begin = time.perf_counter()
    record_from = begin + warmup_s
    stop_at = record_from + duration_s
    await asyncio.gather(
        *(
            _connection(target, requests, i * 7, outcome, record_from=record_from, stop_at=stop_at)
            for i in range(connections)
        )
    )
    outcome.window_s = duration_s
    return outcome
