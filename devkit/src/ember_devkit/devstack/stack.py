"""The whole shop on one machine: databases, migrations, seeds, every process, one supervisor.

Used by ``python -m ember_devkit.devstack run`` (``make run``) and by the tests' ``stack`` fixture,
which differ only in their :class:`StackOptions`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from ember_shared.http import SERVER_KEEP_ALIVE_S
from ember_shared.settings import data_dir as default_data_dir
from ember_shared.settings import env_int, repo_root

from ember_devkit.devstack import layout
from ember_devkit.devstack.environment import (
    child_env_for_caddy,
    load_secrets,
    read_dotenv,
    stack_environment,
)
from ember_devkit.devstack.mesh import mesh_caddyfile
from ember_devkit.devstack.supervisor import (
    Probe,
    ProcessSpec,
    StackError,
    Supervisor,
    answers_http,
)
from ember_devkit.embedded import EmbeddedPostgres, EmbeddedRedis

#: Provider keys and addresses that would send a test stack anywhere but the local stand-ins.
PROVIDER_KEYS = (
    "STRIPE_SECRET_KEY",
    "STRIPE_API_BASE",
    "RESEND_API_KEY",
    "RESEND_API_URL",
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "GOOGLE_ISSUER",
    "TRACKING_API_KEY",
    "TRACKING_API_URL",
    "CLOUDINARY_URL",
    "HIBP_API_URL",
)


@dataclass
class StackOptions:
    offset: int = field(default_factory=lambda: env_int("EMBER_PORT_OFFSET", 0))
    root: Path = field(default_factory=repo_root)
    data_dir: Path = field(default_factory=default_data_dir)
    #: Postgres / Redis to use; empty starts embedded ones with their data in ``data_dir``.
    database_url: str = field(default_factory=lambda: os.environ.get("DATABASE_URL", ""))
    redis_url: str = field(default_factory=lambda: os.environ.get("REDIS_URL", ""))
    #: uvicorn worker processes per service.
    workers: int = field(default_factory=lambda: env_int("EMBER_WORKERS", 1))
    migrate: bool = True
    seed: bool = True
    #: Values that win over the environment and ``.env`` (the tests' keys and tokens).
    overrides: dict[str, str] = field(default_factory=dict)
    #: Leave out the providers' keys and addresses so that only the local stand-ins are called.
    standins_only: bool = False
    #: The environment to start from (default: this process's).
    environ: dict[str, str] | None = None
    read_dotenv: bool = True
    log_format: str = "console"
    ready_timeout: float = field(default_factory=lambda: float(env_int("EMBER_READY_TIMEOUT", 240)))
    sink: TextIO | None = None
    colours: bool | None = None


class DevStack:
    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.supervisor = Supervisor(self.options.sink, colours=self.options.colours)
        self.env: dict[str, str] = {}
        self.apps: list[layout.App] = []
        self.workers: list[str] = []
        #: How many processes run each service and worker (``catalog``, ``notifier-worker``).
        self.replicas: dict[str, int] = {}
        self._postgres: EmbeddedPostgres | None = None
        self._redis: EmbeddedRedis | None = None
        self._started = False

    # -- addresses ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The gateway (Caddy): the shop as a browser sees it."""
        return f"http://localhost:{layout.port('gateway', self.options.offset)}"

    def service_url(self, name: str) -> str:
        """A service's (or stand-in's) own address, bypassing Caddy."""
        return f"http://127.0.0.1:{layout.port(name, self.options.offset)}"

    def say(self, message: str) -> None:
        self.supervisor.say(message)

    # -- start --------------------------------------------------------------------------

    def start(self) -> None:
        """Bring everything up and wait until every probe answers (or raise :class:`StackError`)."""
        began = time.monotonic()
        options = self.options
        options.data_dir.mkdir(parents=True, exist_ok=True)
        given = self._given_environment()
        self.workers = layout.workers()
        try:
            self.replicas = {
                name: layout.replicas(name, given)
                for name in [*layout.SERVICES, *(f"{w}-worker" for w in self.workers)]
            }
        except ValueError as error:
            raise StackError(str(error)) from None
        self.apps = [
            *layout.standins(),
            *(
                layout.App(app.name, app.target, app.port_name, app.ready_path, replica)
                for app in layout.services()
                for replica in range(self.replicas[app.name])
            ),
        ]
        seeds = layout.seeds() if options.seed else []
        self.supervisor.reserve(
            [
                *(a.process for a in self.apps),
                *(name for name, _ in self._worker_processes()),
                *(f"seed {s}" for s in seeds),
            ]
        )
        try:
            self._check_ports()
            database_url = self._database(given.get("DATABASE_URL", ""))
            redis_url = self._redis_url(given.get("REDIS_URL", ""))
            self.env = stack_environment(
                offset=options.offset,
                data_dir=options.data_dir,
                database_url=database_url,
                redis_url=redis_url,
                given=given,
                local_secrets=load_secrets(options.data_dir, given),
                log_format=given.get("LOG_FORMAT") or options.log_format,
                replicas=self.replicas,
            )
            # Only a service with several workers gets a metrics directory, its own.
            self.env.pop(MULTIPROC_ENV, None)
            Path(self.env["MEDIA_ROOT"]).mkdir(parents=True, exist_ok=True)
            if options.migrate:
                self._run_step(
                    "migrate", [sys.executable, "-m", "ember_shared.migrations", "upgrade"]
                )
            if options.seed:
                for service in seeds:
                    self._run_step(
                        f"seed {service}",
                        [sys.executable, "-m", "ember_devkit.devstack", "seed", service],
                    )
            self._start_processes()
            self.supervisor.wait_ready(options.ready_timeout)
        except BaseException:
            self.stop()
            raise
        self.say(f"everything is ready in {time.monotonic() - began:.1f}s")

    def _worker_processes(self) -> list[tuple[str, str]]:
        """(process name, service) of every worker process."""
        return [
            (layout.replica_name(f"{service}-worker", replica), service)
            for service in self.workers
            for replica in range(self.replicas.get(f"{service}-worker", 1))
        ]

    @property
    def mesh(self) -> bool:
        """Whether some service runs as replicas (its peers then call it through the mesh)."""
        return any(self.replicas.get(name, 1) > 1 for name in layout.SERVICES)

    def processes(self, service: str) -> list[str]:
        """The supervised processes of a service (``catalog``, ``catalog-2``...) or worker."""
        if service.endswith("-worker"):
            return [name for name, _ in self._worker_processes() if name.startswith(service)]
        return [app.process for app in self.apps if app.name == service]

    def _given_environment(self) -> dict[str, str]:
        options = self.options
        given = read_dotenv(options.root / ".env") if options.read_dotenv else {}
        given.update(os.environ if options.environ is None else options.environ)
        if options.standins_only:
            for key in PROVIDER_KEYS:
                given.pop(key, None)
        given.update(options.overrides)
        if options.database_url:
            given["DATABASE_URL"] = options.database_url
        if options.redis_url:
            given["REDIS_URL"] = options.redis_url
        # An empty setting (`KEY=` as .env.example has it) means "the default", as if unset.
        return {key: value for key, value in given.items() if value != ""}

    def _database(self, url: str) -> str:
        if url:
            self.say(f"using Postgres at {_redact(url)}")
            ensure_database(url)
            return url
        self.say(f"starting embedded Postgres (data in {self.options.data_dir / 'pg'})")
        self._postgres = EmbeddedPostgres(self.options.data_dir / "pg", database="ember")
        return self._postgres.start(stop_at_exit=False)

    def _redis_url(self, url: str) -> str:
        if url:
            self.say(f"using Redis at {_redact(url)}")
            return url
        folder = self.options.data_dir / "redis"
        _stop_stale(folder / "devstack.pid")
        self.say(f"starting embedded Redis (data in {folder})")
        self._redis = EmbeddedRedis(folder, persist=True)
        url = self._redis.start()
        (folder / "devstack.pid").write_text(str(self._redis.pid))
        return url

    def _run_step(self, name: str, argv: list[str]) -> None:
        began = time.monotonic()
        result = subprocess.run(  # noqa: S603 - our own interpreter and module
            argv,
            env=self.env,
            cwd=self.options.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        for line in result.stdout.splitlines():
            self.supervisor.say(line, name)
        if result.returncode != 0:
            raise StackError(f"{name} failed with exit code {result.returncode}")
        self.say(f"{name}: done in {time.monotonic() - began:.1f}s")

    def _check_ports(self) -> None:
        options = self.options
        ports = (
            [(a.process, a.port(options.offset)) for a in self.apps]
            + [("caddy", layout.port("gateway", options.offset))]
            + [
                (f"mesh for {service}", layout.mesh_port(service, options.offset))
                for service in layout.SERVICES
                if self.replicas.get(service, 1) > 1
            ]
        )
        ephemeral = ephemeral_ports()
        if ephemeral is not None:
            low, high = ephemeral
            inside = [f"{name} ({number})" for name, number in ports if low <= number <= high]
            if inside:
                # The kernel gives these ports to outgoing connections: one to a port nobody
                # listens on yet (a readiness probe's) may get that very port as its own and
                # connect to itself, and the service can then never bind it.
                raise StackError(
                    f"EMBER_PORT_OFFSET={options.offset} puts {', '.join(inside)} in this "
                    f"machine's ephemeral port range ({low}-{high}), which the kernel gives to "
                    f"outgoing connections. Choose an offset that keeps every port below {low}."
                )
        busy = [f"{name} ({number})" for name, number in ports if port_in_use(number)]
        if busy:
            raise StackError(
                f"ports already in use: {', '.join(busy)}. Is another stack running? "
                "Stop it, or shift this one with EMBER_PORT_OFFSET."
            )

    def _start_processes(self) -> None:
        options = self.options
        # First, so that a service calling a peer as it starts finds the peer's address.
        if self.mesh:
            config = options.data_dir / "caddy" / "mesh.Caddyfile"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(mesh_caddyfile(self.replicas, options.offset))
            replicated = [s for s in layout.SERVICES if self.replicas.get(s, 1) > 1]
            self.supervisor.add(
                ProcessSpec(
                    name="mesh",
                    argv=[
                        layout.caddy_binary(),
                        "run",
                        "--config",
                        str(config),
                        "--adapter",
                        "caddyfile",
                    ],
                    env=child_env_for_caddy(self.env, options.data_dir),
                    cwd=options.root,
                    ready=Probe(
                        f"http://127.0.0.1:{layout.mesh_port(replicated[0], options.offset)}/",
                        answers_http,
                    ),
                )
            )
        for app in self.apps:
            is_service = app.name in layout.SERVICES
            ready = (
                Probe(app.url(options.offset) + app.ready_path)
                if app.ready_path
                else Probe(app.url(options.offset) + "/", answers_http)
            )
            workers = options.workers if is_service else 1
            env = drain_environment(
                metrics_environment(self.env, app.process, workers, options.data_dir),
                self.replicas.get(app.name, 1),
            )
            self.supervisor.add(
                ProcessSpec(
                    name=app.process,
                    argv=uvicorn_argv(app, options.offset, workers),
                    env=env,
                    cwd=options.root,
                    ready=ready,
                )
            )
        for name, service in self._worker_processes():
            self.supervisor.add(
                ProcessSpec(
                    name=name,
                    argv=[sys.executable, "-m", f"{service}.worker"],
                    env=self.env,
                    cwd=options.root,
                )
            )
        gateway = layout.port("gateway", options.offset)
        self.supervisor.add(
            ProcessSpec(
                name="caddy",
                argv=[
                    layout.caddy_binary(),
                    "run",
                    "--config",
                    str(layout.caddyfile(options.root)),
                    "--adapter",
                    "caddyfile",
                ],
                env=child_env_for_caddy(self.env, options.data_dir),
                cwd=options.root,
                # Caddy itself answers /internal (404): up, whatever the services do.
                ready=Probe(f"http://127.0.0.1:{gateway}/internal", answers_http),
            )
        )
        self._started = True

    # -- stop ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the processes, then the embedded servers. Safe to call twice."""
        self.supervisor.stop()
        if self._redis is not None:
            self.say("stopping embedded Redis")
            self._redis.stop()
            with contextlib.suppress(FileNotFoundError):
                (self.options.data_dir / "redis" / "devstack.pid").unlink()
            self._redis = None
        if self._postgres is not None:
            self.say("stopping embedded Postgres")
            stop_postgres(self._postgres)
            self._postgres = None

    # -- what to tell the person who started it ------------------------------------------

    def summary(self) -> list[tuple[str, str]]:
        rows = [("shop", self.url + "/")]
        for app in self.apps:
            if app.name in layout.SERVICES and app.replica == 0:
                rows.append((f"{app.name} API docs", f"{self.url}/api/docs/{app.name}"))
        if self.mesh:
            counts = ", ".join(f"{name} x{n}" for name, n in self.replicas.items() if n > 1)
            rows.append(("replicas", counts))
        pages = {
            "resend-standin": ("mail inbox (Resend stand-in)", "/"),
            "stripe-standin": ("payments (Stripe stand-in)", "/"),
            "oidc-standin": ("Google sign-in (OIDC stand-in)", "/"),
            "tracking-standin": ("parcel tracking (17track stand-in)", "/"),
        }
        for app in self.apps:
            if app.name in pages:
                label, path = pages[app.name]
                rows.append(
                    (label, f"http://localhost:{layout.port(app.name, self.options.offset)}{path}")
                )
        if self.env.get("ADMIN_EMAIL") and "identity" in {a.name for a in self.apps}:
            rows.append(
                (
                    "admin sign-in",
                    f"{self.env['ADMIN_EMAIL']} / {self.env.get('ADMIN_PASSWORD', '')}",
                )
            )
        rows.append(("database", _redact(self.env.get("DATABASE_URL", ""))))
        rows.append(("redis", _redact(self.env.get("REDIS_URL", ""))))
        return rows


#: prometheus_client's multiprocess mode (:mod:`ember_shared.metrics`).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_environment(
    env: dict[str, str], process: str, workers: int, data_dir: Path
) -> dict[str, str]:
    """A service process's environment: with several uvicorn workers, a metrics directory of
    its own (one per replica), emptied now, that its workers share so that ``/metrics`` sums
    them all; with one worker none (a directory shared by two processes would mix them)."""
    own = dict(env)
    own.pop(MULTIPROC_ENV, None)
    if workers > 1:
        folder = data_dir / "prometheus" / process
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        own[MULTIPROC_ENV] = str(folder)
    return own


#: How long a stopping replica keeps serving while Caddy's 1 s probes take it out of rotation.
REPLICA_DRAIN_MS = 2500


def drain_environment(env: dict[str, str], replicas: int) -> dict[str, str]:
    """A replica told to stop leaves Caddy's rotation first (:mod:`ember_shared.drain`); a lone
    process has no other to send its callers to, so it stops at once."""
    if replicas < 2 or env.get("SHUTDOWN_DRAIN_MS"):
        return env
    return {**env, "SHUTDOWN_DRAIN_MS": str(REPLICA_DRAIN_MS)}


#: How long uvicorn keeps an idle connection (longer than any client of it keeps one).
def uvicorn_argv(app: layout.App, offset: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        app.target,
        "--host",
        "127.0.0.1",
        "--port",
        str(app.port(offset)),
        # Caddy, on loopback, says who the client is.
        "--proxy-headers",
        "--forwarded-allow-ips",
        "127.0.0.1",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--workers",
        str(max(1, workers)),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "5",
        # Idle connections outlive their clients' (services 5 s, Caddy 2 min).
        "--timeout-keep-alive",
        str(SERVER_KEEP_ALIVE_S),
    ]


def ephemeral_ports() -> tuple[int, int] | None:
    """The range the kernel picks outgoing connections' own ports from (Linux), if known."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return None


def port_in_use(number: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", number)) == 0


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` on its server when it is missing."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        return
    plain = urlunsplit(parts._replace(scheme="postgresql"))
    try:
        with psycopg.connect(plain, connect_timeout=10):
            return
    except psycopg.OperationalError as error:
        if "does not exist" not in str(error):
            raise StackError(f"cannot reach Postgres at {_redact(url)}: {error}") from error
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
        found = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not found:
            connection.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]


def stop_postgres(server: EmbeddedPostgres) -> None:
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    handle = server._server
    with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
        pg_ctl(
            ["-w", "-m", "fast", "stop"],
            pgdata=server.data_dir,
            user=getattr(handle, "system_user", None),
            timeout=30,
        )


def _stop_stale(pid_file: Path) -> None:
    """An embedded Redis left running by a stack that was killed must not share its files."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    import psutil

    with contextlib.suppress(psutil.Error):
        process = psutil.Process(pid)
        if "redis" in process.name():
            process.send_signal(signal.SIGTERM)
            process.wait(10)
    pid_file.unlink(missing_ok=True)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
