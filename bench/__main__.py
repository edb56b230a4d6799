"""``make bench`` (``uv run python -m bench``): the catalog's read path, measured through Caddy.

What it does:

1. Finds the shop: ``BENCH_URL`` if set; else a stack already answering on this machine's
   gateway port (``EMBER_PORT_OFFSET`` shifts it); else it starts one itself with the devstack
   (``ember_shared.devstack``), with its data in ``.data/bench`` so that your ``make run`` data
   is left alone, and stops it at the end. A stack it starts seeds the 20-product demo catalog.
2. Runs each scenario for ``BENCH_DURATION`` seconds (10) in all, over ``BENCH_CONNECTIONS``
   keep-alive connections (16), with the raw asyncio client in :mod:`bench.loadgen`, after
   ``BENCH_WARMUP`` seconds (2) of warm-up; the time is split into ``BENCH_ROUNDS`` (5) rounds
   that interleave the scenarios, so a machine whose load drifts weighs on all of them alike:

   - ``floor``: ``GET /api/health/catalog/live``, a trivial route of the same service behind the
     same middleware: what Litestar + uvicorn + Caddy cost before the catalog does anything;
   - ``listing``, ``product`` and ``search``, each **cached** (answered from Redis) and
     **uncached**. Uncached requests carry ``X-Cache-Bypass: 1``, which the catalog honours only
     when ``EMBER_MODE=local``: it then builds the answer from Postgres and does not touch Redis.
     (When the header is not honoured the uncached rows say so instead of measuring the cache.)

3. Prints a table (requests per second, p50 and p99 latency, errors) and saves it as JSON in
   ``bench/results/<timestamp>.json`` and ``bench/results/latest.json``.

The target: the cached listing answers at least 500 requests a second and at least half of the
floor's throughput. The exit status is 0 whether or not it is met (the JSON says); 2 when the
run itself failed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import Outcome, load

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
BYPASS = {"X-Cache-Bypass": "1"}
MIN_RPS = 500
MIN_RATIO = 0.5
SEARCHES = (
    "ethiopia",
    "espresso",
    "chocolate",
    "etiopia",
    "yirg",
    "decaf",
    "kenya berry",
    "grinder",
)


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw else default


@dataclass
class Scenario:
    name: str
    description: str
    paths: list[str]
    cached: bool | None  # None: not a cache scenario (the floor)


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[Any, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own URL
        return json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}


def answers(url: str) -> bool:
    try:
        get_json(url)
    except OSError:
        return False
    return True


def git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
    except OSError:
        return ""
    return result.stdout.strip()


class Shop:
    """The stack under test: found running, or started (and later stopped) here."""

    def __init__(self) -> None:
        self.url = ""
        self.started = False
        self._stack: Any = None
        self._log: Any = None

    def __enter__(self) -> Shop:
        given = os.environ.get("BENCH_URL", "").rstrip("/")
        if given:
            self.url = given
            return self
        from ember_shared.devstack import layout
        from ember_shared.settings import env_int

        offset = env_int("EMBER_PORT_OFFSET", 0)
        running = f"http://127.0.0.1:{layout.port('gateway', offset)}"
        if answers(running + "/api/health/catalog/live"):
            print(f"using the stack already running at {running}")
            self.url = running
            return self
        from ember_shared.devstack.stack import DevStack, StackOptions
        from ember_shared.settings import data_dir

        RESULTS.mkdir(parents=True, exist_ok=True)
        log_path = RESULTS / "stack.log.tmp"
        self._log = log_path.open("w")
        bench_data = Path(os.environ.get("BENCH_DATA_DIR", str(data_dir() / "bench")))
        print(f"starting a stack for the benchmark (data in {bench_data}, log in {log_path}) ...")
        self._stack = DevStack(StackOptions(data_dir=bench_data, sink=self._log, colours=False))
        try:
            self._stack.start()
        except BaseException:
            self._log.close()
            raise
        self.started = True
        self.url = self._stack.url.replace("localhost", "127.0.0.1")
        print(f"stack ready at {self.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            print("stopping the stack ...")
            self._stack.stop()
        if self._log is not None:
            self._log.close()


def scenarios(slugs: list[str]) -> list[Scenario]:
    listings = [
        "/api/products?page=1&page_size=24",
        "/api/products?sort=price",
        "/api/products?category=single-origin",
        "/api/products?page=2&page_size=12&sort=name",
    ]
    products = [f"/api/products/{slug}" for slug in slugs]
    searches = [f"/api/products/search?q={q.replace(' ', '+')}" for q in SEARCHES]
    return [
        Scenario(
            "floor",
            "GET /api/health/catalog/live (the framework's floor)",
            ["/api/health/catalog/live"],
            None,
        ),
        Scenario("listing_cached", "GET /api/products (4 variants), from Redis", listings, True),
        Scenario(
            "listing_uncached", "GET /api/products (4 variants), from Postgres", listings, False
        ),
        Scenario(
            "product_cached",
            f"GET /api/products/{{slug}} ({len(products)} products), from Redis",
            products,
            True,
        ),
        Scenario(
            "product_uncached",
            f"GET /api/products/{{slug}} ({len(products)} products), from Postgres",
            products,
            False,
        ),
        Scenario(
            "search_cached",
            f"GET /api/products/search ({len(searches)} queries), from Redis",
            searches,
            True,
        ),
        Scenario(
            "search_uncached",
            f"GET /api/products/search ({len(searches)} queries), from Postgres",
            searches,
            False,
        ),
    ]


def image_served(url: str, listing: dict[str, Any]) -> str:
    """Whether the first product image is served by the gateway (a check of the setup)."""
    images = [i["image"]["url"] for i in listing["items"] if i.get("image")]
    if not images:
        return "no product has an image"
    target = images[0] if images[0].startswith("http") else url + images[0]
    try:
        with urllib.request.urlopen(target, timeout=10) as response:  # noqa: S310 - our own URL
            kind = response.headers.get("Content-Type", "")
            return f"{images[0]} served ({kind}, {len(response.read())} bytes)"
    except OSError as exc:
        return f"{images[0]} NOT served: {exc}"


def catalog_facts(url: str) -> tuple[list[str], int, bool]:
    """The product slugs, how many products, and whether the cache bypass is honoured."""
    listing, _ = get_json(url + "/api/products?page_size=100")
    print(f"image check: {image_served(url, listing)}")
    slugs = [item["slug"] for item in listing["items"]]
    get_json(url + "/api/products?page_size=100")
    _, headers = get_json(url + "/api/products?page_size=100", BYPASS)
    return slugs, int(listing["total"]), headers.get("x-cache") == "miss"


def row(outcome: Outcome) -> dict[str, Any]:
    return {
        "requests": outcome.requests,
        "rps": round(outcome.rps, 1),
        "p50_ms": round(outcome.percentile_ms(50), 2),
        "p99_ms": round(outcome.percentile_ms(99), 2),
        "mean_ms": round(outcome.mean_ms, 2),
        "errors": outcome.errors,
        "statuses": {str(k): v for k, v in sorted(outcome.statuses.items())},
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = f"{'scenario':<18} {'rps':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    print()
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        if "skipped" in r:
            print(f"{name:<18} {'n/a':>9} {'':>8} {'':>8} {'':>7}  ({r['skipped']})")
            continue
        print(
            f"{name:<18} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}"
        )
    print()


async def measure(
    url: str, plan: list[Scenario], bypass_honoured: bool
) -> dict[str, dict[str, Any]]:
    """Each scenario runs ``BENCH_ROUNDS`` times, interleaved with the others, for an equal
    share of the duration: a machine whose load drifts (other work on it) then weighs on every
    scenario alike, and the ratios between them stay fair."""
    connections = int(env_number("BENCH_CONNECTIONS", 16))
    duration = env_number("BENCH_DURATION", 10)
    warmup = env_number("BENCH_WARMUP", 2)
    rounds = max(1, int(env_number("BENCH_ROUNDS", 5)))
    results: dict[str, dict[str, Any]] = {}
    runnable = []
    for scenario in plan:
        if scenario.cached is False and not bypass_honoured:
            results[scenario.name] = {
                "description": scenario.description,
                "skipped": "the catalog ignores X-Cache-Bypass (not EMBER_MODE=local)",
            }
        else:
            runnable.append(scenario)
    totals = {scenario.name: Outcome() for scenario in runnable}
    for scenario in runnable:
        # Warm every connection path (and, for cached scenarios, every cache key) once.
        print(f"  warming {scenario.name:<18} {scenario.description}", flush=True)
        await load(
            url,
            scenario.paths,
            headers=BYPASS if scenario.cached is False else None,
            connections=connections,
            duration_s=warmup,
            warmup_s=0,
        )
    for number in range(1, rounds + 1):
        print(f"  round {number}/{rounds}: " + ", ".join(s.name for s in runnable), flush=True)
        for scenario in runnable:
            outcome = await load(
                url,
                scenario.paths,
                headers=BYPASS if scenario.cached is False else None,
                connections=connections,
                duration_s=duration / rounds,
                warmup_s=min(0.5, warmup),
            )
            total = totals[scenario.name]
            total.latencies_ns.extend(outcome.latencies_ns)
            total.errors += outcome.errors
            total.window_s += outcome.window_s
            for status, count in outcome.statuses.items():
                total.statuses[status] = total.statuses.get(status, 0) + count
    for scenario in runnable:
        results[scenario.name] = {
            "description": scenario.description,
            "paths": len(scenario.paths),
            **row(totals[scenario.name]),
        }
    # Keep the table in the plan's order.
    return {scenario.name: results[scenario.name] for scenario in plan}


def main() -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop ships with the workspace
        pass
    with Shop() as shop:
        url = shop.url
        try:
            slugs, total, bypass_honoured = catalog_facts(url)
        except OSError as exc:
            print(f"the catalog at {url} does not answer: {exc}", file=sys.stderr)
            return 2
        if not slugs:
            print(
                "the catalog has no products: run `make run` once (it loads the demo catalog)",
                file=sys.stderr,
            )
            return 2
        print(
            f"catalog: {total} products; cache bypass {'honoured' if bypass_honoured else 'NOT honoured'}"
        )
        plan = scenarios(slugs)
        results = asyncio.run(measure(url, plan, bypass_honoured))
    floor = results["floor"]["rps"]
    cached = results["listing_cached"]["rps"]
    ratio = cached / floor if floor else 0.0
    report: dict[str, Any] = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "url": url,
        "stack_started_by_bench": shop.started,
        "machine": {
            "cpus": os.cpu_count(),
            # Other work on the machine while it ran (the figures depend on it).
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "connections": int(env_number("BENCH_CONNECTIONS", 16)),
            "duration_s": env_number("BENCH_DURATION", 10),
            "warmup_s": env_number("BENCH_WARMUP", 2),
            "rounds": int(env_number("BENCH_ROUNDS", 5)),
            "uncached": "X-Cache-Bypass: 1 (honoured only with EMBER_MODE=local): built from Postgres, Redis untouched",
            "client": "bench.loadgen: raw asyncio HTTP/1.1 keep-alive, Accept-Encoding: identity",
        },
        "catalog_products": total,
        "scenarios": results,
        "target": {
            "cached_listing_rps": cached,
            "floor_rps": floor,
            "ratio": round(ratio, 3),
            "min_rps": MIN_RPS,
            "min_ratio": MIN_RATIO,
            "met": cached >= MIN_RPS and ratio >= MIN_RATIO,
        },
    }
    print_table(results)
    verdict = "met" if report["target"]["met"] else "NOT met"
    print(
        f"cached listing: {cached:.0f} rps = {ratio:.0%} of the floor's {floor:.0f} rps "
        f"(target: >= {MIN_RPS} rps and >= {MIN_RATIO:.0%}): {verdict}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(report, indent=2) + "\n"
    (RESULTS / f"{stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(f"saved bench/results/{stamp}.json and bench/results/latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
