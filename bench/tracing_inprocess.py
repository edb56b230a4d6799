"""What tracing costs one cached listing, measured inside the catalog process, without HTTP.

``python -m bench.tracing_inprocess`` beside a running stack (``make run``, or a devstack of
your own: the same ``DATABASE_URL``, ``REDIS_URL`` and ``EMBER_PORT_OFFSET`` as it has) builds
the catalog app from its factory in a process of its own per setting, runs its lifespan, and
calls it with the ASGI scopes of the benchmark's cached listing variants (``listing_variants``:
the same paths and headers as ``make bench`` sends; every answer must be a 200 cache hit).
Each measure is ``time.process_time()`` over ``--requests`` requests: the whole process, the
span processor's export thread included (the traced settings export over OTLP/HTTP to a sink,
:class:`ember_devkit.testing.traces.SpanStore`, in *this* process, so that receiving costs the
measured process nothing). The settings alternate, in a rotated order, for ``--rounds`` rounds
(one fresh process per setting and round, so that no setting always runs first on a machine
whose load drifts); the report is the median and the minimum of the measures per setting, and
its CPU per request over everything measured (exports come in batches every
``OTEL_BSP_SCHEDULE_DELAY``: the total over several batches counts them at their share).

Settings: ``off`` (no OTLP endpoint: tracing not set up), or a sampling ratio (``0``, ``0.1``,
``1``: tracing on, ``OTEL_TRACES_SAMPLER_ARG`` as given). Machines shared with other work:
compare settings measured in the same rounds only, never runs of different minutes.

Example (the issue-13 figures): ``python -m bench.tracing_inprocess --settings off,0.1,1
--rounds 6``. ``--json`` writes the measures too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
TRACING_KEYS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def stack_env(base: dict[str, str]) -> dict[str, str]:
    """The environment a devstack gives its catalog (its offset, Postgres, Redis and secrets)."""
    from ember_devkit.devstack.environment import load_secrets, read_dotenv, stack_environment
    from ember_shared.settings import data_dir, env_int

    given = {k: v for k, v in read_dotenv(ROOT / ".env").items() if v}
    given.update(base)
    folder = data_dir()
    database_url, redis_url = given.get("DATABASE_URL", ""), given.get("REDIS_URL", "")
    if not (database_url and redis_url):
        raise SystemExit("set DATABASE_URL and REDIS_URL to the stack's (as it was started with)")
    return stack_environment(
        offset=env_int("EMBER_PORT_OFFSET", 0),
        data_dir=folder,
        database_url=database_url,
        redis_url=redis_url,
        given=given,
        local_secrets=load_secrets(folder, given),
        log_format="json",
    )


#: The code a setting may run instead of the working tree's (``<setting>@<git ref or folder>``).
CODE_FOLDERS = ("shared/src", "services/catalog/src")


def code_of(source: str, scratch: Path) -> str:
    """``PYTHONPATH`` entries (before the workspace's editable installs) for the shared
    library and the catalog of ``source``: a checkout's folder, or a git ref of this one
    (exported into ``scratch``)."""
    folder = Path(source)
    if not folder.is_dir():
        folder = scratch / source.replace("/", "_")
        if not folder.exists():
            folder.mkdir(parents=True)
            archive = subprocess.run(  # noqa: S603 - git, our own arguments
                ["git", "archive", source, *CODE_FOLDERS],  # noqa: S607
                cwd=ROOT,
                capture_output=True,
                check=True,
            )
            subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)  # noqa: S603, S607
    return os.pathsep.join(str(folder / f) for f in CODE_FOLDERS)


def setting_env(env: dict[str, str], setting: str, sink: str, scratch: Path) -> dict[str, str]:
    own = {k: v for k, v in env.items() if k not in (*TRACING_KEYS, "OTEL_TRACES_SAMPLER_ARG")}
    ratio, _, source = setting.partition("@")
    if source:
        own["PYTHONPATH"] = code_of(source, scratch)
    if ratio != "off":
        own["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink
        own["OTEL_TRACES_SAMPLER_ARG"] = ratio
        own.setdefault("OTEL_BSP_SCHEDULE_DELAY", "5000")
    # Answers filled by a measured process outlive the run (a miss is a build from Postgres).
    own["CATALOG_CACHE_TTL_SECONDS"] = "3600"
    # Requests are not logged at info; keep warnings (a failing export would say so).
    own.setdefault("LOG_LEVEL", "WARNING")
    return own


# --- the measured process ----------------------------------------------------------------


def scope_of(target: str, port: int) -> dict[str, Any]:
    parts = urlsplit(target)
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", port),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        # What the benchmark's load generator sends (bench.loadgen.encode_requests).
        "headers": [
            (b"host", f"127.0.0.1:{port}".encode()),
            (b"accept", b"application/json"),
            (b"accept-encoding", b"identity"),
            (b"user-agent", b"ember-bench"),
        ],
        "state": {},
    }


async def serve_measures(requests: int, warmup: int, concurrency: int) -> None:
    """Warm up, say READY, then one measure per ``go`` line on stdin until ``stop``: the CPU
    the whole process used since the end of its previous measure (so what ran in between,
    the export thread above all, is counted too), over the requests of this one."""
    from catalog.app import create_app
    from ember_devkit.devstack import layout
    from ember_shared.settings import env_int

    from bench.__main__ import listing_variants

    app = create_app()
    port = layout.port("catalog", env_int("EMBER_PORT_OFFSET", 0))
    loop = asyncio.get_running_loop()
    async with app.lifespan():
        count = await app_products(app, port)
        scopes = [scope_of(path, port) for path in listing_variants(count)]
        statuses: dict[str, int] = {}
        misses = 0

        async def one(scope: dict[str, Any]) -> None:
            nonlocal misses
            seen: dict[str, Any] = {}

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    seen["status"] = message["status"]
                    seen["headers"] = message["headers"]

            await app(dict(scope), receive, send)
            status = str(seen["status"])
            statuses[status] = statuses.get(status, 0) + 1
            if (b"x-cache", b"hit") not in seen["headers"]:
                misses += 1

        async def run(n: int) -> None:
            async def worker(first: int) -> None:
                for i in range(first, n, concurrency):
                    await one(scopes[i % len(scopes)])

            await asyncio.gather(*(worker(k) for k in range(concurrency)))

        await run(warmup)
        statuses.clear()
        misses = 0
        print(f"READY {count}", flush=True)
        since = time.process_time()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "go":
            await run(requests)
            now = time.process_time()
            print(f"MEASURE {(now - since) * 1e6 / requests:.2f}", flush=True)
            since = now
        print("DONE " + json.dumps({"statuses": statuses, "misses": misses}), flush=True)


async def app_products(app: Any, port: int) -> int:
    """The catalog's size as a shopper sees it (the deep pages' numbers depend on it)."""
    body = bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope_of("/api/products?page_size=1", port), receive, send)
    return int(json.loads(bytes(body))["total"])


def child(args: argparse.Namespace) -> int:
    import uvloop

    uvloop.run(serve_measures(args.requests, args.warmup, args.concurrency))
    return 0


# --- the driver ----------------------------------------------------------------------------


class Measured:
    """One catalog process of one setting, measuring when told."""

    def __init__(
        self, setting: str, env: dict[str, str], sink: str, args: argparse.Namespace, scratch: Path
    ) -> None:
        self.setting = setting
        argv = [
            sys.executable,
            "-m",
            "bench.tracing_inprocess",
            "--child",
            f"--requests={args.requests}",
            f"--warmup={args.warmup}",
            f"--concurrency={args.concurrency}",
        ]
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            argv,
            env=setting_env(env, setting, sink, scratch),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def expect(self, word: str) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(word + " "):
                return line.removeprefix(word + " ").strip()
        raise RuntimeError(f"the {self.setting} catalog ended (exit {self.process.wait()})")

    def say(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()

    def measure(self) -> float:
        self.say("go")
        return float(self.expect("MEASURE"))

    def finish(self) -> None:
        self.say("stop")
        done = json.loads(self.expect("DONE"))
        self.process.wait(timeout=60)
        if set(done["statuses"]) != {"200"}:
            raise RuntimeError(f"{self.setting}: not every answer was a 200: {done}")
        if done["misses"]:
            # A build from Postgres in a measure: the median is robust to one such measure.
            print(f"  ({self.setting}: {done['misses']} cache misses while measured)", flush=True)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_inprocess", description=__doc__)
    parser.add_argument(
        "--settings",
        default="off,0.1,1",
        help="off or sampling ratios, each optionally @<git ref or checkout folder> (its code)",
    )
    parser.add_argument(
        "--sessions", type=int, default=2, help="fresh processes, one after another"
    )
    parser.add_argument("--measures", type=int, default=10, help="measures per process")
    parser.add_argument("--requests", type=int, default=4000, help="requests per measure")
    parser.add_argument("--warmup", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--json", type=Path, help="write every measure here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    from ember_devkit.testing.traces import SpanStore

    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    env = stack_env(dict(os.environ))
    sink = SpanStore()
    endpoint = sink.start()
    scratch = Path(tempfile.mkdtemp(prefix="tracing-inprocess-"))
    measures: dict[str, list[float]] = {s: [] for s in settings}
    #: Each setting's measure over the first setting's in the same cycle.
    paired: dict[str, list[float]] = {s: [] for s in settings}
    loads = []
    try:
        for session in range(args.sessions):
            running = [Measured(s, env, endpoint, args, scratch) for s in settings]
            try:
                products = ", ".join(sorted({m.expect("READY") for m in running}))
                loads.append(os.getloadavg()[0])
                for number in range(args.measures):
                    # Rotated: no setting always measures right after another one.
                    k = (number + session) % len(running)
                    cycle = {m.setting: m.measure() for m in running[k:] + running[:k]}
                    for setting, value in cycle.items():
                        measures[setting].append(value)
                        paired[setting].append(value / cycle[settings[0]])
                    shown = "  ".join(f"{s} {cycle[s]:.0f}" for s in settings)
                    print(f"session {session + 1} measure {number + 1}: {shown} us", flush=True)
                loads.append(os.getloadavg()[0])
                for m in running:
                    m.finish()
            finally:
                for m in running:
                    m.kill()
    finally:
        sink.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"\nus of CPU per cached listing ({products} products; {args.sessions} sessions x "
        f"{args.measures} measures x {args.requests} requests, load average "
        f"{min(loads):.1f}-{max(loads):.1f}):"
    )
    summary = {}
    for setting in settings:
        values = measures[setting]
        summary[setting] = {
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "mean": round(statistics.fmean(values), 1),
            "median_paired_ratio": round(statistics.median(paired[setting]), 3),
        }
        print(
            f"  {setting:>4}: median {statistics.median(values):.0f}  min {min(values):.0f}  "
            f"mean {statistics.fmean(values):.0f}  this/{settings[0]} in the same cycle: "
            f"median {statistics.median(paired[setting]):.3f}"
        )
    spans = sink.snapshot()
    print(f"  the sink received {len(spans)} spans of {len({s.trace_id for s in spans})} traces")
    if args.json:
        args.json.write_text(
            json.dumps({"summary": summary, "measures": measures, "load": loads}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
