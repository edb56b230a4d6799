"""``/metrics`` of a service run with several uvicorn workers: every scrape reaches one worker,
and still answers the figures of all of them (prometheus_client's multiprocess mode, with the
directory the dev stack gives each service process).

A real catalog (migrated into a database of its own) runs under uvicorn with two workers, as
``EMBER_WORKERS=2 make run`` runs it, on a port of this session's offset.
"""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from ember_devkit.devstack.stack import MULTIPROC_ENV, metrics_environment, uvicorn_argv
from ember_shared.settings import env_int
from served_processes import catalog_process, wait_ready

REQUESTS = 40
SCRAPES = 6
LISTING = re.compile(
    r'^ember_requests_total\{(?=[^}]*path="/api/products")(?=[^}]*method="GET")'
    r'(?=[^}]*status_code="200")[^}]*\} ([0-9.e+]+)$',
    re.MULTILINE,
)


def listing_count(text: str) -> float:
    return sum(float(value) for value in LISTING.findall(text))


def test_every_scrape_counts_the_requests_of_every_worker(
    catalog_database: str, tmp_path: Path
) -> None:
    offset = env_int("EMBER_TEST_STACK_OFFSET", 0)
    app, env = catalog_process(catalog_database, tmp_path, 2, 9)
    folder = Path(env[MULTIPROC_ENV])
    assert folder.is_dir()
    assert not any(folder.iterdir())
    log = tmp_path / "catalog.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            uvicorn_argv(app, offset, 2), env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    base = app.url(offset)
    try:
        wait_ready(base + "/api/health/catalog/ready", server, log)
        # A new connection per request, several at once, until both workers have taken some
        # (the kernel may hand a quiet machine's connections to one worker for a while).
        sent = 0
        deadline = time.monotonic() + 60
        while True:
            with ThreadPoolExecutor(8) as pool:
                statuses = list(
                    pool.map(
                        lambda _: httpx.get(base + "/api/products", timeout=30).status_code,
                        range(REQUESTS),
                    )
                )
            assert statuses == [200] * REQUESTS
            sent += REQUESTS
            counted_by = {p.name.rsplit("_", 1)[1] for p in folder.glob("counter_*.db")}
            if len(counted_by) == 2 or time.monotonic() > deadline:
                break
        assert len(counted_by) == 2, f"both workers should have served: {counted_by}"

        seen: list[float] = []
        for _ in range(SCRAPES):
            text = httpx.get(base + "/metrics", timeout=30).text
            seen.append(listing_count(text))
            # A scrape probe's gauge: one series, the value the scraped worker set last, not
            # one per worker (``pid`` label).
            held = re.findall(r"^ember_reservations_held\{([^}]*)\} (\S+)$", text, re.MULTILINE)
            assert held == [('service="catalog"', "0.0")], held
        assert all(count >= sent for count in seen), (sent, seen)
        assert seen == sorted(seen), f"a counter went down between scrapes: {seen}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    # Each worker left: its live gauges are gone, its counts are kept.
    assert not list(folder.glob("gauge_live*.db"))
    assert len(list(folder.glob("counter_*.db"))) == 2


def test_the_dev_stack_gives_each_service_process_its_own_empty_directory(
    tmp_path: Path,
) -> None:
    given = {"PATH": "/bin", MULTIPROC_ENV: "/somewhere/shared"}
    first = metrics_environment(given, "catalog", 2, tmp_path)
    second = metrics_environment(given, "catalog-2", 2, tmp_path)
    assert first[MULTIPROC_ENV] != second[MULTIPROC_ENV]
    left = Path(first[MULTIPROC_ENV]) / "counter_123.db"
    left.write_bytes(b"stale")
    again = metrics_environment(given, "catalog", 2, tmp_path)
    assert again[MULTIPROC_ENV] == first[MULTIPROC_ENV]
    assert not left.exists()  # a new start never adds the last run's counts
    # One worker: no directory, even one given by the environment (two services would share it).
    assert MULTIPROC_ENV not in metrics_environment(given, "cart", 1, tmp_path)
    assert given[MULTIPROC_ENV] == "/somewhere/shared"
