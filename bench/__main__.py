"""``make bench`` (``uv run python -m bench [all|read|checkout]``): Ember measured through Caddy.

1. Finds the shop: ``BENCH_URL`` if set; else a stack already answering on this machine's
   gateway port (``EMBER_PORT_OFFSET`` shifts it); else it starts one itself with the devstack,
   with data of its own (``.data/bench[-N]``, or a ``<db>_bench[_N]`` database beside
   ``DATABASE_URL``) so that your ``make run`` data is left alone, and stops it at the end.
   ``BENCH_PRODUCTS=N`` grows the catalog of a stack it starts to N products (``bench.grow``).
2. The read path (``read``): the floor (``GET /api/health/catalog/live``), listing variants,
   product pages and searches, each cached and uncached (``X-Cache-Bypass: 1``, honoured only
   with ``EMBER_MODE=local``), ``BENCH_DURATION`` seconds each over ``BENCH_CONNECTIONS``
   keep-alive connections in interleaved rounds; then a cold-cache window (an admin edit every
   second while listing and search are read through the cache); beside a stack it started, the
   cached listing on an untraced and a traced catalog (10 % sampled, OTLP to a local sink) in
   the same rounds (:mod:`bench.tracing`).
3. The write path (``checkout``, :mod:`bench.checkout`): ``BENCH_BUYERS`` guest buyers,
   ``BENCH_BUYERS_CONCURRENT`` at a time, each a whole purchase to the confirmation mail.
4. Prints the figures and the targets' verdicts and saves them as JSON in
   ``bench/results/<timestamp>.json`` and ``bench/results/latest.json``.

The exit status is 0 whether or not the targets are met (the JSON says); 2 when the run failed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.loadgen import Outcome, load

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
BYPASS = {"X-Cache-Bypass": "1"}
MIN_RPS = 500
MIN_RATIO = 0.5
#: Tracing on at 10 % keeps at least this share of the cached listing's rate (same run).
TRACED_MIN_RATIO = 0.9
#: Typos ("etiopia", "chocolat", "grnder"), prefixes ("yirg"), several words, rare words (a
#: grown catalog's farm names: "kalomi" is in about 6 products of 50,000, "kalomy" is its typo),
#: and words nearly every product has ("coffee", "lot").
SEARCHES = (
    "ethiopia",
    "etiopia",
    "chocolat",
    "yirg",
    "kenya berry",
    "ethiopia yirgacheffe washed",
    "grnder",
    "geisha",
    "kalomi",
    "kalomy",
    "coffee",
    "lot",
)


#: Every benchmark buyer comes through Caddy from 127.0.0.1: the per-address budgets of open
#: checkouts and held units (an abuse guard, tested in checkout's suite) would refuse all but
#: the first few of them, as they would behind a shared NAT.
BENCH_OVERRIDES = {
    "CHECKOUT_MAX_OPEN_PER_CLIENT": "100",
    "CHECKOUT_MAX_OPEN_PER_EMAIL": "100",
    "CHECKOUT_MAX_HELD_UNITS": "10000",
}


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw else default


@dataclass
class Scenario:
    name: str
    description: str
    paths: list[str]
    cached: bool | None  # None: not a cache scenario (the floor)
    #: Another address than the gateway's (the tracing comparison's own catalogs).
    base: str = ""


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


def bench_products() -> int:
    """``BENCH_PRODUCTS``: the catalog size to measure (0: the demo catalog as seeded)."""
    return int(env_number("BENCH_PRODUCTS", 0))


def own_database(url: str, products: int) -> str:
    """The benchmark's own database beside ``url``'s (never the ``make run`` data), one per
    catalog size, so that a grown catalog never slows the quick default run."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "ember"
    suffix = f"_bench_{products}" if products else "_bench"
    return urlunsplit(parts._replace(path="/" + name + suffix))


class Shop:
    """The stack under test: found running, or started (and later stopped) here."""

    def __init__(self) -> None:
        self.url = ""
        self.started = False
        self.env: dict[str, str] = dict(os.environ)
        self._stack: Any = None
        self._log: Any = None
        self.offset = 0

    @property
    def log(self) -> Any:
        """The stack's log file (``None`` for a stack found running)."""
        return self._log

    def service_url(self, name: str) -> str:
        from ember_devkit.devstack import layout

        return f"http://127.0.0.1:{layout.port(name, self.offset)}"

    def __enter__(self) -> Shop:
        from ember_shared.settings import env_int

        self.offset = env_int("EMBER_PORT_OFFSET", 0)
        given = os.environ.get("BENCH_URL", "").rstrip("/")
        if given:
            self.url = given
            return self
        from ember_devkit.devstack import layout

        running = f"http://127.0.0.1:{layout.port('gateway', self.offset)}"
        if answers(running + "/api/health/catalog/live"):
            print(f"using the stack already running at {running}")
            self.url = running
            return self
        from ember_devkit.devstack.stack import DevStack, StackOptions
        from ember_shared.settings import data_dir

        products = bench_products()
        RESULTS.mkdir(parents=True, exist_ok=True)
        log_path = RESULTS / "stack.log.tmp"
        self._log = log_path.open("w")
        folder = "bench" + (f"-{products}" if products else "")
        bench_data = Path(os.environ.get("BENCH_DATA_DIR", str(data_dir() / folder)))
        database = os.environ.get("DATABASE_URL", "")
        options = StackOptions(
            data_dir=bench_data, sink=self._log, colours=False, overrides=dict(BENCH_OVERRIDES)
        )
        if database:
            options.database_url = own_database(database, products)
        print(f"starting a stack for the benchmark (data in {bench_data}, log in {log_path}) ...")
        self._stack = DevStack(options)
        try:
            self._stack.start()
        except BaseException:
            self._log.close()
            raise
        self.started = True
        self.env = dict(self._stack.env)
        self.url = self._stack.url.replace("localhost", "127.0.0.1")
        print(f"stack ready at {self.url}")
        if products:
            self.grow(products)
        return self

    def grow(self, products: int) -> None:
        """Grow the catalog (its own database only), then drop every cached answer: they were
        built from the smaller catalog."""
        from catalog.cache import CatalogCache
        from redis.asyncio import Redis

        from bench.grow import grow

        grow(self.env["DATABASE_URL"], products)

        async def invalidate() -> None:
            redis = Redis.from_url(self.env["REDIS_URL"])
            try:
                await CatalogCache(redis, ttl_seconds=60, lock_ms=1000).invalidate_everything()
            finally:
                await redis.aclose()

        asyncio.run(invalidate())

    def admin_headers(self) -> dict[str, str]:
        """Signs the demo admin in (its credentials are in the stack's environment)."""
        email, password = self.env.get("ADMIN_EMAIL", ""), self.env.get("ADMIN_PASSWORD", "")
        if not (email and password):
            raise RuntimeError("ADMIN_EMAIL / ADMIN_PASSWORD are not known for this stack")
        request = urllib.request.Request(  # noqa: S310 - our own URL
            self.url + "/api/auth/login",
            data=json.dumps({"email": email, "password": password}).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            token = json.loads(response.read())["access_token"]
        return {"Authorization": f"Bearer {token}"}

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            print("stopping the stack ...")
            self._stack.stop()
        if self._log is not None:
            self._log.close()


def listing_variants(total: int) -> list[str]:
    """Every sort, category filters, and deep pages (most of the way through the catalog)."""
    deep = max(1, (total * 4 // 5) // 24)
    middle = max(1, (total // 2) // 24)
    variants = [
        "/api/products?page=1&page_size=24",
        "/api/products?sort=price",
        "/api/products?sort=price_desc",
        "/api/products?sort=name",
        "/api/products?category=single-origin",
        "/api/products?category=brewing-gear&sort=price",
        f"/api/products?page={deep}&page_size=24",
        f"/api/products?page={middle}&page_size=24&sort=name",
    ]
    # A small catalog's deep pages are its first.
    return list(dict.fromkeys(variants))


def scenarios(slugs: list[str], total: int) -> list[Scenario]:
    listings = listing_variants(total)
    products = [f"/api/products/{slug}" for slug in slugs]
    searches = [f"/api/products/search?q={q.replace(' ', '+')}" for q in SEARCHES]
    n_list, n_search = len(listings), len(searches)
    return [
        Scenario(
            "floor",
            "GET /api/health/catalog/live (the framework's floor)",
            ["/api/health/catalog/live"],
            None,
        ),
        Scenario(
            "listing_cached", f"GET /api/products ({n_list} variants), from Redis", listings, True
        ),
        Scenario(
            "listing_uncached",
            f"GET /api/products ({n_list} variants), from Postgres",
            listings,
            False,
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
            f"GET /api/products/search ({n_search} queries), from Redis",
            searches,
            True,
        ),
        Scenario(
            "search_uncached",
            f"GET /api/products/search ({n_search} queries), from Postgres",
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


def row(outcome: Outcome, paths: list[str] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "requests": outcome.requests,
        "rps": round(outcome.rps, 1),
        "p50_ms": round(outcome.percentile_ms(50), 2),
        "p99_ms": round(outcome.percentile_ms(99), 2),
        "mean_ms": round(outcome.mean_ms, 2),
        "errors": outcome.errors,
        "statuses": {str(k): v for k, v in sorted(outcome.statuses.items())},
    }
    if paths and len(paths) > 1:
        # Each variant's own latency (a mixed load has no per-variant rate; the mean is what
        # one request of it costs under the same load).
        found["variants"] = {}
        for index, path in enumerate(paths):
            one = Outcome(latencies_ns=outcome.by_path.get(index, []))
            found["variants"][path] = {
                "requests": one.requests,
                "mean_ms": round(one.mean_ms, 2),
                "p99_ms": round(one.percentile_ms(99), 2),
            }
    return found


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
            scenario.base or url,
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
                scenario.base or url,
                scenario.paths,
                headers=BYPASS if scenario.cached is False else None,
                connections=connections,
                duration_s=duration / rounds,
                warmup_s=min(0.5, warmup),
            )
            total = totals[scenario.name]
            total.latencies_ns.extend(outcome.latencies_ns)
            for index, latencies in outcome.by_path.items():
                total.by_path.setdefault(index, []).extend(latencies)
            total.errors += outcome.errors
            total.window_s += outcome.window_s
            for status, count in outcome.statuses.items():
                total.statuses[status] = total.statuses.get(status, 0) + count
    for scenario in runnable:
        results[scenario.name] = {
            "description": scenario.description,
            "paths": len(scenario.paths),
            **row(totals[scenario.name], scenario.paths),
        }
    # Keep the table in the plan's order.
    return {scenario.name: results[scenario.name] for scenario in plan}


async def cold_cache(
    shop: Shop, paths: list[str], product_id: str, *, seconds: float, connections: int
) -> dict[str, Any]:
    """Listing and search, through the cache, while an admin edits a product every second:
    each edit invalidates every listing and search answer, so the window measures answers
    rebuilt from Postgres under load (with the cache's single flight) as shoppers get them."""
    import httpx

    headers = shop.admin_headers()
    edits = 0

    async def edit() -> None:
        nonlocal edits
        async with httpx.AsyncClient(base_url=shop.url, headers=headers, timeout=30) as staff:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                answer = await staff.patch(
                    f"/api/admin/products/{product_id}",
                    json={"summary": f"Edited by the benchmark ({edits})."},
                )
                answer.raise_for_status()
                edits += 1
                await asyncio.sleep(1.0)

    editing = asyncio.create_task(edit())
    outcome = await load(shop.url, paths, connections=connections, duration_s=seconds, warmup_s=0)
    await editing
    return {
        "description": f"GET /api/products and /search ({len(paths)} variants) from the cache "
        f"while an admin edit invalidates them every second ({edits} edits)",
        "edits": edits,
        **row(outcome, paths),
    }


def start_tracing_pair(shop: Shop) -> Any:
    """Two more catalogs, untraced and traced at 10 % (:mod:`bench.tracing`); only beside a
    stack the benchmark started (it knows that stack's environment)."""
    if not shop.started or os.environ.get("BENCH_TRACING", "1") == "0":
        return None
    from bench.tracing import start_pair

    print("  starting an untraced and a traced catalog (OTLP to a local sink, sampling 0.1) ...")
    return start_pair(shop.env, shop.offset, cwd=ROOT, log=shop.log)


def tracing_scenarios(pair: Any, listings: list[str]) -> list[Scenario]:
    n = len(listings)
    return [
        Scenario(
            "listing_untraced",
            f"GET /api/products ({n} variants), from Redis, on a catalog of its own with "
            "tracing off (its port, no Caddy)",
            listings,
            True,
            pair.untraced_url,
        ),
        Scenario(
            "listing_traced",
            f"GET /api/products ({n} variants), from Redis, on a catalog of its own with "
            "tracing on: OTLP/HTTP to a local sink, OTEL_TRACES_SAMPLER_ARG=0.1",
            listings,
            True,
            pair.traced_url,
        ),
    ]


def tracing_figures(pair: Any, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if pair is None:
        return {"skipped": "only beside a stack the benchmark starts (BENCH_TRACING=0: off)"}
    from bench.tracing import SAMPLE_RATIO, cpu_per_request, settle

    # Before the last batch is exported (settle): its encoding was paid while measuring.
    cpu = cpu_per_request(pair.baseline, pair.usage())
    print(f"  tracing: CPU ms per request {cpu['cpu_ms_per_request']}")

    off = float(results.get("listing_untraced", {}).get("rps", 0.0))
    on = float(results.get("listing_traced", {}).get("rps", 0.0))
    received = settle(pair)
    requests = int(results.get("listing_traced", {}).get("requests", 0))
    return {
        "sample_ratio": float(SAMPLE_RATIO),
        "untraced_rps": off,
        "traced_rps": on,
        "ratio": round(on / off, 3) if off else None,
        # Warm-up requests are traced too: the share is of everything the catalog answered.
        "sink_received": received,
        "measured_requests_traced_catalog": requests,
        # Every request each catalog answered while measured (warm-ups too) and its CPU.
        "cpu": cpu,
    }


def read_path(shop: Shop, report: dict[str, Any]) -> int:
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
    only_tracing = report.get("run") == "tracing"
    plan = [] if only_tracing else scenarios(slugs, total)
    pair = start_tracing_pair(shop)
    if pair is not None:
        plan += tracing_scenarios(pair, listing_variants(total))
    elif only_tracing:
        print("bench tracing needs a stack the benchmark starts", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(measure(url, plan, bypass_honoured))
        tracing = tracing_figures(pair, results)
    finally:
        if pair is not None:
            pair.stop()
    connections = int(env_number("BENCH_CONNECTIONS", 16))
    if only_tracing:
        results["cold_cache"] = {"skipped": "bench tracing: the tracing comparison only"}
    elif shop.env.get("ADMIN_PASSWORD"):
        listing = next(s for s in plan if s.name == "listing_cached").paths
        searching = next(s for s in plan if s.name == "search_cached").paths
        first, _ = get_json(url + "/api/products?page_size=1")
        print("  cold cache: listing and search while an admin edits a product every second")
        results["cold_cache"] = asyncio.run(
            cold_cache(
                shop,
                listing + searching,
                str(first["items"][0]["id"]),
                seconds=env_number("BENCH_COLD_SECONDS", 10),
                connections=connections,
            )
        )
    else:
        results["cold_cache"] = {"skipped": "no admin credentials for this stack"}

    def rps(name: str) -> float:
        return float(results.get(name, {}).get("rps", 0.0))

    def p99(name: str) -> float:
        return float(results.get(name, {}).get("p99_ms", 0.0))

    floor, cached = rps("floor"), rps("listing_cached")
    ratio = cached / floor if floor else 0.0
    product_uncached = rps("product_uncached")
    # Each listing variant's rate, had the whole load been that variant: its mean latency
    # against the mixed scenario's.
    uncached = results.get("listing_uncached", {})
    variant_ratios = {
        path: round(uncached["mean_ms"] / v["mean_ms"] * uncached["rps"] / product_uncached, 3)
        for path, v in uncached.get("variants", {}).items()
        if v["mean_ms"] and product_uncached
    }
    targets = {
        "cached_listing_vs_floor": {
            "value": round(ratio, 3),
            "min": MIN_RATIO,
            "met": cached >= MIN_RPS and ratio >= MIN_RATIO,
        },
        "uncached_listing_vs_product_page": {
            "value": round(rps("listing_uncached") / product_uncached, 3)
            if product_uncached
            else None,
            "worst_variant": min(variant_ratios.values()) if variant_ratios else None,
            "variants": variant_ratios,
            "min": 0.5,
            "met": bool(variant_ratios) and min(variant_ratios.values()) >= 0.5,
        },
        "uncached_search_p99_ms": {
            "value": p99("search_uncached"),
            "max": 100,
            "met": 0 < p99("search_uncached") <= 100,
        },
        "cold_cache_p99_ms": {
            "value": p99("cold_cache"),
            "max": 100,
            "met": 0 < p99("cold_cache") <= 100,
        },
        "cached_listing_traced_vs_untraced": {
            "value": tracing.get("ratio"),
            "min": TRACED_MIN_RATIO,
            "met": (tracing.get("ratio") or 0) >= TRACED_MIN_RATIO,
        },
    }
    report["catalog_products"] = total
    report["scenarios"] = results
    report["target"] = {
        "cached_listing_rps": cached,
        "floor_rps": floor,
        "ratio": round(ratio, 3),
        "min_rps": MIN_RPS,
        "min_ratio": MIN_RATIO,
        "met": targets["cached_listing_vs_floor"]["met"],
    }
    if only_tracing:
        targets = {
            "cached_listing_traced_vs_untraced": targets["cached_listing_traced_vs_untraced"]
        }
        del report["target"]
    report["targets"] = targets
    report["tracing"] = tracing
    print_table(results)
    for name, target in targets.items():
        bound = f">= {target['min']}" if "min" in target else f"<= {target['max']}"
        print(f"{name}: {target['value']} ({bound}): {'met' if target['met'] else 'NOT met'}")
    return 0


def write_path(shop: Shop, report: dict[str, Any]) -> int:
    from bench.checkout import run

    if not shop.env.get("ADMIN_PASSWORD"):
        print("bench checkout needs the stack's admin credentials", file=sys.stderr)
        return 2
    buyers = int(env_number("BENCH_BUYERS", 500))
    concurrency = int(env_number("BENCH_BUYERS_CONCURRENT", 16))
    warmup = int(env_number("BENCH_BUYERS_WARMUP", 2 * concurrency))
    print(
        f"checkout: {warmup} buyers to warm up, then {buyers} guest buyers, "
        f"{concurrency} at a time ...",
        flush=True,
    )
    result = asyncio.run(
        run(
            shop.url,
            stripe_url=shop.service_url("stripe-standin"),
            resend_url=shop.service_url("resend-standin"),
            service_urls={
                name: shop.service_url(name)
                for name in ("cart", "checkout", "catalog", "orders", "notifier")
            },
            admin=shop.admin_headers,
            buyers=buyers,
            concurrency=concurrency,
            warmup=warmup,
        )
    )
    once = result["exactly_once"]
    result["targets"] = {
        "paid_orders_per_s": {"value": result["paid_orders_per_s"], "min": 25},
        "session_creation_p99_ms": {"value": result["session_creation"]["p99_ms"], "max": 250},
        "pay_to_mail_p95_ms": {"value": result["pay_to_mail"]["p95_ms"], "max": 1000},
        "exactly_once": {
            "value": once["mails_per_buyer"] == [1]
            and once["buyers_mailed"] == buyers + warmup
            and once["stock_taken"] == buyers + warmup,
        },
    }
    for target in result["targets"].values():
        if "min" in target:
            target["met"] = target["value"] >= target["min"]
        elif "max" in target:
            target["met"] = 0 < target["value"] <= target["max"]
        else:
            target["met"] = bool(target["value"])
    report["checkout"] = result
    print(json.dumps(result, indent=2))
    return 0


def main() -> int:
    """``python -m bench`` runs the read path and then the write path; ``python -m bench read``
    or ``python -m bench checkout`` runs one of them."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop ships with the workspace
        pass
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which not in ("all", "read", "checkout", "tracing"):
        print("usage: python -m bench [all|read|checkout|tracing]", file=sys.stderr)
        return 2
    load_before = [round(x, 2) for x in os.getloadavg()]
    report: dict[str, Any] = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "run": which,
    }
    status = 0
    with Shop() as shop:
        if bench_products() and not shop.started:
            print("BENCH_PRODUCTS is ignored: the catalog is grown only in a stack bench starts")
        report["url"] = shop.url
        report["stack_started_by_bench"] = shop.started
        if which in ("all", "read", "tracing"):
            status = read_path(shop, report)
        if status == 0 and which in ("all", "checkout"):
            status = write_path(shop, report)
    report["machine"] = {
        "cpus": os.cpu_count(),
        # Other work on the machine while it ran (the figures depend on it).
        "load_average_1_5_15_at_start": load_before,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    report["settings"] = {
        "products_asked": bench_products() or None,
        "connections": int(env_number("BENCH_CONNECTIONS", 16)),
        "duration_s": env_number("BENCH_DURATION", 10),
        "warmup_s": env_number("BENCH_WARMUP", 2),
        "rounds": int(env_number("BENCH_ROUNDS", 5)),
        "uncached": "X-Cache-Bypass: 1 (honoured only with EMBER_MODE=local): built from Postgres, Redis untouched",
        "client": "bench.loadgen: raw asyncio HTTP/1.1 keep-alive, Accept-Encoding: identity",
    }
    if status:
        return status
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(report, indent=2) + "\n"
    (RESULTS / f"{stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(f"saved bench/results/{stamp}.json and bench/results/latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
