"""What tracing costs the cached listing, measured in one run (issue 13: "with tracing on at
10 % sampling, the cached listing keeps >= 90 % of its rps without tracing").

Tracing is decided when a process starts (``OTEL_EXPORTER_OTLP_ENDPOINT``), so the benchmark
starts two more catalog processes beside its stack's, alike in every way (same code, database,
Redis and cache, one uvicorn worker each, ports of replicas 8 and 9) but one: the second exports
over OTLP/HTTP to a sink in the benchmark's process and keeps ``OTEL_TRACES_SAMPLER_ARG`` = 0.1
of the traces. Both are read directly on their own ports (Caddy is not in the comparison: the
same proxy in front of both would only make the share of tracing smaller), in the same
interleaved rounds as every other scenario, so the machine's load weighs on both alike.

The sink (:class:`ember_devkit.testing.traces.SpanStore`) keeps what it receives: the number of
traces and spans is reported, proof that the traced catalog did trace.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ember_devkit.devstack import layout
from ember_devkit.devstack.stack import MULTIPROC_ENV, uvicorn_argv
from ember_devkit.testing.traces import SpanStore

#: The issue's 10 %; ``BENCH_TRACING_RATIO`` measures another share (what a sampled request costs).
SAMPLE_RATIO = os.environ.get("BENCH_TRACING_RATIO", "0.1")
#: Replica slots of the catalog that no stack runs (its replicas count from 0).
UNTRACED_SLOT, TRACED_SLOT = 8, 9
TRACING_KEYS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


@dataclass
class TracingPair:
    """The two catalogs, their addresses and the sink; :meth:`stop` ends them."""

    untraced_url: str
    traced_url: str
    sink: SpanStore
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: :meth:`usage` once both answered, before any load.
    baseline: dict[str, tuple[float, float]] = field(default_factory=dict)

    def received(self) -> dict[str, Any]:
        spans = self.sink.snapshot()
        servers = [s for s in spans if s.kind == 2]  # SPAN_KIND_SERVER: one per traced request
        return {
            "spans": len(spans),
            "traces": len({s.trace_id for s in spans}),
            "requests_traced": len(servers),
        }

    def usage(self) -> dict[str, tuple[float, float]]:
        """Each catalog's CPU seconds so far and the requests it has answered (its own
        ``/metrics``): CPU per request does not depend on how much of the machine the catalog
        got, which the rates do on a machine shared with other work."""
        return {
            name: (cpu_seconds(process), requests_answered(url))
            for name, process, url in zip(
                ("untraced", "traced"),
                self.processes,
                (self.untraced_url, self.traced_url),
                strict=True,
            )
        }

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.sink.stop()


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """User and system CPU time of a process (one uvicorn worker: the process itself)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_answered(url: str) -> float:
    """Requests counted by the catalog's Prometheus middleware (probes and scrapes excluded)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:  # noqa: S310 - ours
        text = answer.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ember_requests_total{")
    )


def cpu_per_request(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, Any]:
    """CPU ms per request of each catalog between two :meth:`TracingPair.usage` readings, and
    the untraced one's over the traced one's: the share of its rate tracing leaves a catalog
    that has the CPU to itself."""
    per_request = {}
    for name in ("untraced", "traced"):
        cpu = after[name][0] - before[name][0]
        answered = after[name][1] - before[name][1]
        per_request[name] = round(cpu * 1000 / answered, 4) if answered else None
    off, on = per_request["untraced"], per_request["traced"]
    return {
        "cpu_ms_per_request": per_request,
        "ratio": round(off / on, 3) if off and on else None,
    }


def catalog_env(env: dict[str, str], *, traced_to: str = "") -> dict[str, str]:
    own = {k: v for k, v in env.items() if k not in (*TRACING_KEYS, MULTIPROC_ENV)}
    if traced_to:
        own["OTEL_EXPORTER_OTLP_ENDPOINT"] = traced_to
        own["OTEL_TRACES_SAMPLER_ARG"] = SAMPLE_RATIO
        # The SDK's default: a batch every 5 s. Said here so that the figure states it.
        own.setdefault("OTEL_BSP_SCHEDULE_DELAY", "5000")
    return own


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the catalog for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our own URL
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def start_pair(
    env: dict[str, str], offset: int, *, cwd: Path, log: IO[str] | IO[bytes] | None = None
) -> TracingPair:
    """Start the untraced and the traced catalog (``env``: the stack's environment)."""
    catalog = next(app for app in layout.services() if app.name == "catalog")
    sink = SpanStore()
    endpoint = sink.start()
    pair = TracingPair("", "", sink)
    try:
        for slot, traced_to in ((UNTRACED_SLOT, ""), (TRACED_SLOT, endpoint)):
            app = layout.App(catalog.name, catalog.target, catalog.port_name, None, slot)
            process = subprocess.Popen(  # noqa: S603 - uvicorn, our own argv
                uvicorn_argv(app, offset, 1),
                env=catalog_env(env, traced_to=traced_to),
                cwd=cwd,
                stdout=log or subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            pair.processes.append(process)
            if traced_to:
                pair.traced_url = app.url(offset)
            else:
                pair.untraced_url = app.url(offset)
        for process, url in zip(pair.processes, (pair.untraced_url, pair.traced_url), strict=True):
            wait_ready(url + "/api/health/catalog/ready", process)
        pair.baseline = pair.usage()
    except BaseException:
        pair.stop()
        raise
    return pair


def settle(pair: TracingPair, seconds: float | None = None) -> dict[str, Any]:
    """Wait one export interval (the last batch), then say what the sink received."""
    delay = float(os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "5000")) / 1000
    time.sleep(seconds if seconds is not None else delay + 1.0)
    return pair.received()
