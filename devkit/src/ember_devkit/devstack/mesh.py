"""How services reach each other when some run as several processes on one machine.

In production a peer's address is one name (a Kubernetes Service, compose's DNS) that spreads
calls over the ready replicas and stops sending to one that is going away. Locally the replicas
sit on ports of their own, so a second Caddy, on loopback only, gives each replicated service one
address (its port + :data:`~ember_devkit.devstack.layout.MESH_PORT_SHIFT`) with the same promise:
every replica an upstream, probed every second, a refused connection retried on another replica.
It proxies ``/internal`` too (the public Caddy never does): it is the services' own network.
"""

from __future__ import annotations

from collections.abc import Mapping

from ember_devkit.devstack.layout import SERVICES, mesh_port, port


def mesh_caddyfile(replicas: Mapping[str, int], offset: int) -> str:
    """The mesh's configuration: one site per service that runs as more than one process."""
    sites = [
        "{",
        "\tadmin off",
        "\tpersist_config off",
        "\tlog {",
        "\t\tlevel ERROR",
        "\t}",
        "}",
    ]
    for service in SERVICES:
        count = replicas.get(service, 1)
        if count < 2:
            continue
        upstreams = " ".join(f"127.0.0.1:{port(service, offset, i)}" for i in range(count))
        sites += [
            "",
            f"http://127.0.0.1:{mesh_port(service, offset)} {{",
            "\tbind 127.0.0.1",
            f"\treverse_proxy {upstreams} {{",
            "\t\tlb_policy least_conn",
            "\t\tlb_try_duration 5s",
            "\t\tlb_try_interval 100ms",
            "\t\tfail_duration 2s",
            f"\t\thealth_uri /api/health/{service}/live?balancer=true",
            "\t\thealth_interval 1s",
            "\t\thealth_timeout 2s",
            "\t}",
            "}",
        ]
    return "\n".join(sites) + "\n"
