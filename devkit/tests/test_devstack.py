"""The local stack's machinery: the supervisor, the environment and secrets, the port checks."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from ember_devkit.devstack import layout
from ember_devkit.devstack.environment import load_secrets, read_dotenv, stack_environment
from ember_devkit.devstack.stack import DevStack, StackOptions, ephemeral_ports
from ember_devkit.devstack.supervisor import Probe, ProcessSpec, StackError, Supervisor
from ember_devkit.testing.waiting import eventually


def wait_for(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    eventually(predicate, "the condition", within=timeout, every=0.05)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


# -- supervisor -----------------------------------------------------------------------------


def test_output_is_prefixed_with_the_process_name() -> None:
    sink = io.StringIO()
    supervisor = Supervisor(sink, colours=False)
    try:
        supervisor.add(
            ProcessSpec(
                "greeter", python("print('hello'); import time; time.sleep(30)"), dict(os.environ)
            )
        )
        wait_for(lambda: "hello" in sink.getvalue())
    finally:
        supervisor.stop()
    line = next(line for line in sink.getvalue().splitlines() if "hello" in line)
    assert line.startswith("greeter")
    assert line.endswith("| hello")


def test_a_child_that_dies_is_reported_and_restarted_with_backoff(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    sink = io.StringIO()
    supervisor = Supervisor(sink, colours=False)
    code = f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)"
    began = time.monotonic()
    try:
        supervisor.add(ProcessSpec("crasher", python(code), dict(os.environ)))
        wait_for(lambda: starts.exists() and len(starts.read_text()) >= 3)
    finally:
        supervisor.stop()
    output = sink.getvalue()
    assert "exited with code 3" in output
    assert "restarting in 0.5s" in output
    assert "restarting in 1.0s" in output  # the delay doubles while it keeps failing
    assert supervisor.exited() == ["crasher"]
    assert time.monotonic() - began >= 1.5


def test_stop_ends_every_child_even_one_that_ignores_sigterm() -> None:
    supervisor = Supervisor(io.StringIO(), colours=False)
    stubborn = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('up', flush=True)
        time.sleep(60)
    """
    supervisor.add(ProcessSpec("stubborn", python(stubborn), dict(os.environ), stop_timeout=1.0))
    supervisor.add(ProcessSpec("sleeper", python("import time; time.sleep(60)"), dict(os.environ)))
    pids = supervisor.pids()
    began = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - began < 10
    for pid in pids.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_children_die_with_a_supervisor_that_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f"""
        import os, sys, time
        from ember_devkit.devstack.supervisor import ProcessSpec, Supervisor
        supervisor = Supervisor(open(os.devnull, "w"), colours=False)
        code = "import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
        supervisor.add(ProcessSpec("orphan", [sys.executable, "-c", code], dict(os.environ)))
        time.sleep(120)
    """
    parent = subprocess.Popen(python(script))
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
        child = int(pid_file.read_text())
        assert psutil.pid_exists(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_for(
            lambda: (
                not psutil.pid_exists(child)
                or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
            )
        )
    finally:
        parent.kill()


def test_wait_ready_names_the_laggard_and_its_last_lines() -> None:
    supervisor = Supervisor(io.StringIO(), colours=False)
    try:
        supervisor.add(
            ProcessSpec(
                "mute",
                python("print('still booting', flush=True); import time; time.sleep(30)"),
                dict(os.environ),
                ready=Probe("http://127.0.0.1:9/never"),
            )
        )
        with pytest.raises(StackError) as caught:
            supervisor.wait_ready(2)
    finally:
        supervisor.stop()
    assert "mute: not ready" in str(caught.value)
    assert "still booting" in str(caught.value)


def test_probe_accepts_only_what_it_is_told() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
    assert Probe(f"http://127.0.0.1:{port}/")() is False  # nothing listens


# -- environment and secrets ----------------------------------------------------------------


def test_local_secrets_are_made_once_and_kept(tmp_path: Path) -> None:
    first = load_secrets(tmp_path, {})
    second = load_secrets(tmp_path, {})
    assert first == second
    assert first["IDENTITY_SIGNING_KEY_PEM"].startswith("-----BEGIN PRIVATE KEY-----")
    assert first["STRIPE_WEBHOOK_SECRET"].startswith("whsec_")
    assert first["RESEND_WEBHOOK_SECRET"].startswith("whsec_")
    assert len(first["INTERNAL_SERVICE_TOKEN"]) >= 32
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
    # What the environment gives wins, and is not written down.
    given = load_secrets(tmp_path, {"INTERNAL_SERVICE_TOKEN": "from-the-environment"})
    assert given["INTERNAL_SERVICE_TOKEN"] == "from-the-environment"
    stored = json.loads((tmp_path / "secrets.json").read_text())
    assert stored["INTERNAL_SERVICE_TOKEN"] == first["INTERNAL_SERVICE_TOKEN"]


def test_dotenv_lines_are_read_like_a_shell_would(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# a comment\n\nPLAIN=value\nexport EXPORTED=yes\nQUOTED=\"two\\nlines\"\nSINGLE='a b'\nEMPTY=\nnot a line\n"
    )
    values = read_dotenv(env_file)
    assert values == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "QUOTED": "two\nlines",
        "SINGLE": "a b",
        "EMPTY": "",
    }
    assert read_dotenv(tmp_path / "missing") == {}


def test_the_environment_follows_the_port_offset(tmp_path: Path) -> None:
    env = stack_environment(
        offset=3000,
        data_dir=tmp_path,
        database_url="postgresql://db/ember",
        redis_url="redis://cache/0",
        given={"DATABASE_URL": "postgresql://elsewhere/x", "LOG_LEVEL": "DEBUG"},
        local_secrets={"INTERNAL_SERVICE_TOKEN": "t"},
    )
    assert env["EMBER_PORT_OFFSET"] == "3000"
    assert env["PUBLIC_URL"] == "http://localhost:11080"
    assert env["CATALOG_URL"] == "http://127.0.0.1:11102"
    assert env["STRIPE_STANDIN_URL"] == "http://127.0.0.1:11201"
    assert env["CATALOG_PORT"] == "11102"
    assert env["EMBER_SITE_ADDRESS"] == "http://:11080"
    # The stack decides where its data lives; the rest of what was given is kept.
    assert env["DATABASE_URL"] == "postgresql://db/ember"
    assert env["LOG_LEVEL"] == "DEBUG"
    assert env["INTERNAL_SERVICE_TOKEN"] == "t"
    assert env["MEDIA_ROOT"] == str(tmp_path / "media")


def test_replicas_each_get_a_port_caddy_lists_them_and_peers_go_through_the_mesh(
    tmp_path: Path,
) -> None:
    given = {"EMBER_REPLICAS": "2", "CATALOG_REPLICAS": "3"}
    counts = {name: layout.replicas(name, given) for name in layout.SERVICES}
    assert counts["catalog"] == 3
    assert counts["cart"] == 2
    env = stack_environment(
        offset=3000,
        data_dir=tmp_path,
        database_url="postgresql://db/ember",
        redis_url="redis://cache/0",
        given=given,
        local_secrets={},
        replicas={**counts, "cart": 1},
    )
    assert env["EMBER_UPSTREAMS"] == "list"
    assert env["CATALOG_UPSTREAMS"] == "127.0.0.1:11102 127.0.0.1:11112 127.0.0.1:11122"
    assert env["CART_UPSTREAMS"] == "127.0.0.1:11103"
    # Peers reach a replicated service through the mesh, a lone one directly.
    assert env["CATALOG_URL"] == f"http://127.0.0.1:{layout.mesh_port('catalog', 3000)}"
    assert env["CART_URL"] == "http://127.0.0.1:11103"
    for bad in ("0", "11", "two"):
        with pytest.raises(ValueError, match="CATALOG_REPLICAS"):
            layout.replicas("catalog", {"CATALOG_REPLICAS": bad})
    from ember_devkit.devstack.mesh import mesh_caddyfile

    mesh = mesh_caddyfile({**counts, "cart": 1}, 3000)
    assert "127.0.0.1:11102 127.0.0.1:11112 127.0.0.1:11122" in mesh
    assert "health_uri /api/health/catalog/live?balancer=true" in mesh
    assert "11103" not in mesh  # a lone cart needs no mesh
    result = subprocess.run(
        [layout.caddy_binary(), "adapt", "--adapter", "caddyfile", "--config", "-"],
        input=mesh,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_restart_stops_gracefully_then_starts_again_without_counting_a_death(
    tmp_path: Path,
) -> None:
    """One step of a rolling restart: SIGTERM (the child finishes what it was doing), a new
    process at once, ready before restart() returns; a SIGKILL is a death, restarted too."""
    marks = tmp_path / "marks"
    code = f"""
        import os, signal, sys, time
        def bye(*_):
            open({str(marks)!r}, 'a').write('graceful\\n')
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        open({str(marks)!r}, 'a').write(f'start {{os.getpid()}}\\n')
        time.sleep(60)
    """
    supervisor = Supervisor(io.StringIO(), colours=False)
    try:
        supervisor.add(ProcessSpec("web-2", python(code), dict(os.environ), ready=marks.exists))
        supervisor.wait_ready(10)
        first = supervisor.pids()["web-2"]
        # From a thread that ends at once: the new process must outlive it (a deploy script's
        # thread is not the stack's).
        step = threading.Thread(target=supervisor.restart, args=("web-2",))
        step.start()
        step.join(30)
        second = supervisor.pids()["web-2"]
        assert second != first
        assert marks.read_text().splitlines()[1] == "graceful"
        assert supervisor.exited() == []
        wait_for(lambda: marks.read_text().count("start") == 2)
        supervisor.kill("web-2")
        wait_for(lambda: supervisor.pids()["web-2"] != second)
        assert supervisor.exited() == ["web-2"]
        wait_for(lambda: marks.read_text().count("start") == 3)
        assert marks.read_text().count("graceful") == 1  # the second was killed, never stopped
    finally:
        supervisor.stop()


def test_stripe_goes_to_the_stand_in_only_without_a_key(tmp_path: Path) -> None:
    common = {
        "offset": 0,
        "data_dir": tmp_path,
        "database_url": "postgresql://db/ember",
        "redis_url": "redis://cache/0",
        "local_secrets": {},
    }
    local = stack_environment(given={}, **common)  # type: ignore[arg-type]
    assert local["STRIPE_API_BASE"] == "http://127.0.0.1:8201"
    assert "http://localhost:8201" in local["STRIPE_STANDIN_ORIGIN"]
    real = stack_environment(given={"STRIPE_SECRET_KEY": "sk_live_x"}, **common)  # type: ignore[arg-type]
    assert "STRIPE_API_BASE" not in real
    assert real["STRIPE_STANDIN_ORIGIN"] == ""


def test_the_csp_allows_the_media_origin_of_the_configured_store(tmp_path: Path) -> None:
    common = {
        "offset": 0,
        "data_dir": tmp_path,
        "database_url": "postgresql://db/ember",
        "redis_url": "redis://cache/0",
        "local_secrets": {},
    }
    assert stack_environment(given={}, **common)["MEDIA_ORIGIN"] == ""  # type: ignore[arg-type]
    cloudinary = stack_environment(given={"MEDIA_STORE": "cloudinary"}, **common)  # type: ignore[arg-type]
    assert cloudinary["MEDIA_ORIGIN"] == "https://res.cloudinary.com"
    chosen = stack_environment(  # type: ignore[arg-type]
        given={"MEDIA_STORE": "cloudinary", "MEDIA_ORIGIN": "https://img.example.com"}, **common
    )
    assert chosen["MEDIA_ORIGIN"] == "https://img.example.com"


def test_every_service_of_the_shop_is_found() -> None:
    assert [app.name for app in layout.services()] == list(layout.SERVICES)
    assert "notifier" in layout.workers()
    assert Path(layout.caddy_binary()).exists()


# -- the stack ------------------------------------------------------------------------------


def _unreachable_stack(offset: int, data_dir: Path) -> DevStack:
    """A stack whose Postgres and Redis answer nowhere: what it refuses, it refuses first."""
    return DevStack(
        StackOptions(
            offset=offset,
            data_dir=data_dir,
            database_url="postgresql://nobody@127.0.0.1:1/none",
            redis_url="redis://127.0.0.1:1/0",
            sink=io.StringIO(),
        )
    )


def test_a_busy_port_stops_the_stack_before_it_touches_anything(tmp_path: Path) -> None:
    offset = 5000
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", layout.port("catalog", offset)))
        taken.listen()
        stack = _unreachable_stack(offset, tmp_path)
        with pytest.raises(StackError, match=r"catalog \(13102\)"):
            stack.start()
    assert not (tmp_path / "secrets.json").exists()


def test_a_test_stack_reaches_only_the_stand_ins(tmp_path: Path) -> None:
    leaked = {
        "STRIPE_SECRET_KEY": "sk_live_real",
        "STRIPE_API_BASE": "http://127.0.0.1:1/a-test-fake",
        "RESEND_API_KEY": "re_real",
        "HIBP_API_URL": "https://api.pwnedpasswords.com",
        "LOG_LEVEL": "DEBUG",
        "EMPTY": "",
    }
    stack = DevStack(
        StackOptions(
            offset=1000,
            data_dir=tmp_path,
            environ=leaked,
            standins_only=True,
            read_dotenv=False,
            overrides={"HIBP_API_URL": "offline"},
            sink=io.StringIO(),
        )
    )
    given = stack._given_environment()
    assert "STRIPE_SECRET_KEY" not in given
    assert "RESEND_API_KEY" not in given
    assert "EMPTY" not in given  # empty means unset
    assert given["HIBP_API_URL"] == "offline"  # what the caller decides is kept
    assert given["LOG_LEVEL"] == "DEBUG"
    env = stack_environment(
        offset=1000,
        data_dir=tmp_path,
        database_url="postgresql://db/x",
        redis_url="redis://r/0",
        given=given,
        local_secrets={},
    )
    assert env["STRIPE_API_BASE"] == "http://127.0.0.1:9201"


def test_an_offset_into_the_ephemeral_port_range_is_refused(tmp_path: Path) -> None:
    """A port the kernel also hands to outgoing connections: the readiness probe's connection
    to it, before the service listens, can get that port as its own and connect to itself
    (as it did to catalog at offset 25000, which then never bound its port)."""
    ephemeral = ephemeral_ports()
    assert ephemeral is not None, "this test runs on Linux"
    low, high = ephemeral
    # What the probe ran into: a connection from the port to itself, holding the port.
    with socket.socket() as probe:
        port = _bind_free(probe, range(low + 100, high))
        probe.connect(("127.0.0.1", port))
        assert probe.getpeername() == probe.getsockname()
        with socket.socket() as service:
            service.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            with pytest.raises(OSError):
                service.bind(("127.0.0.1", port))
    offset = port - layout.port("catalog", 0)
    stack = _unreachable_stack(offset, tmp_path)
    with pytest.raises(StackError, match=rf"catalog \({port}\).*ephemeral port range"):
        stack.start()
    assert not (tmp_path / "secrets.json").exists()


def _bind_free(sock: socket.socket, ports: range) -> int:
    """Bind ``sock`` to the first port of ``ports`` nothing holds (a run a minute ago may have
    left its port in TIME_WAIT)."""
    for port in ports:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise AssertionError(f"no free port in {ports}")
