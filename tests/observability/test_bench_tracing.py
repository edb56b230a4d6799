"""The benchmark's tracing comparison (``bench/tracing.py``) measures what it says: of its two
catalogs only the second traces, it exports over real OTLP/HTTP to the sink, and it keeps about
one trace in ten of the requests that arrive without a ``traceparent``.

Both catalogs run under uvicorn on ports of this session's offset, on a database of their own
with the catalog's migrations.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from ember_devkit.testing.plugin import TestEnv, database_beside, drop_database
from ember_devkit.testing.traces import SpanStore
from ember_shared.settings import env_int

ROOT = Path(__file__).resolve().parents[2]
# ``bench`` is a folder of the checkout, not an installed package.
sys.path.insert(0, str(ROOT))

from bench.tracing import SAMPLE_RATIO, TracingPair, start_pair  # noqa: E402

PLAIN = 300
SAMPLED = 20


@pytest.fixture
def leak() -> Iterator[tuple[SpanStore, str]]:
    """Where the stack's own tracing settings point: the untraced catalog must not use them."""
    store = SpanStore()
    yield store, store.start()
    store.stop()


@pytest.fixture
def pair(ember_env: TestEnv, tmp_path: Path, leak: tuple[SpanStore, str]) -> Iterator[TracingPair]:
    url = database_beside(ember_env.database_url, "_bench_tracing")
    leaked_to = leak[1]
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": leaked_to,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": leaked_to + "/v1/traces",
        "OTEL_TRACES_SAMPLER_ARG": "1",
        "DATABASE_URL": url,
        "CATALOG_SWEEP_INTERVAL_SECONDS": "0",
        "MEDIA_ROOT": str(tmp_path / "media"),
        # The bench's own figure is at the SDK's 5 s; a test need not wait that long.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    migrated = subprocess.run(
        [sys.executable, "-m", "ember_shared.migrations", "upgrade", "catalog"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    with (tmp_path / "catalogs.log").open("w") as log:
        started = start_pair(env, env_int("EMBER_TEST_STACK_OFFSET", 0), cwd=ROOT, log=log)
    try:
        yield started
    finally:
        started.stop()
        drop_database(url)


def test_only_the_traced_catalog_exports_and_it_keeps_about_one_trace_in_ten(
    pair: TracingPair, leak: tuple[SpanStore, str]
) -> None:
    assert SAMPLE_RATIO == "0.1"
    assert pair.untraced_url != pair.traced_url

    def listing(base: str, headers: dict[str, str] | None = None) -> int:
        return httpx.get(base + "/api/products", headers=headers, timeout=30).status_code

    # A sampled traceparent is always kept by a tracing process (ParentBased): sent to the
    # untraced catalog first, its spans would reach the leak before the traced catalog's of
    # the same requests, sent afterwards, reach the sink (the same export interval).
    sent = [SpanStore.traceparent() for _ in range(SAMPLED)]
    with ThreadPoolExecutor(8) as pool:
        untraced = list(
            pool.map(lambda tp: listing(pair.untraced_url, {"traceparent": tp[0]}), sent)
        )
        plain = list(pool.map(lambda _: listing(pair.traced_url), range(PLAIN)))
        followed = list(pool.map(lambda tp: listing(pair.traced_url, {"traceparent": tp[0]}), sent))
    assert plain == [200] * PLAIN
    assert untraced == [200] * SAMPLED
    assert followed == [200] * SAMPLED

    followed_ids = {trace_id for _, trace_id in sent}

    def all_followed() -> bool:
        return followed_ids <= {s.trace_id for s in pair.sink.snapshot()}

    pair.sink.wait_for(all_followed, "the traced catalog's spans of the sampled requests", 60)
    assert leak[0].snapshot() == []
    spans = pair.sink.snapshot()
    assert {s.service for s in spans} == {"catalog"}
    servers = [s for s in spans if s.kind == 2 and s.trace_id not in followed_ids]
    # 300 requests at 0.1: 30 expected; 8..60 is more than four standard deviations each way.
    assert 8 <= len(servers) <= 60, len(servers)
    # Litestar names a request's span and its http.route "<method> <path>".
    assert {s.name for s in servers} == {"GET /api/products"}
    received = pair.received()
    assert received["requests_traced"] == len(servers) + SAMPLED
    assert received["spans"] == len(spans)
