"""One supervisor for every process of the local stack (``make run`` and the tests' ``stack``).

Plain threads and :mod:`subprocess`, no event loop, so the same code runs under a CLI and inside
a pytest session (whose event loop it must not touch). Each child:

* runs in a session of its own, so a Ctrl-C in the terminal reaches the supervisor only and the
  supervisor stops the children in order, instead of everything dying at once in a heap;
* is started through a tiny launcher that asks the kernel to SIGTERM it when the supervisor
  dies (``PR_SET_PDEATHSIG``): a supervisor that is SIGKILLed leaves no orphan servers behind;
* has its output prefixed with its name (coloured on a terminal) and written to one sink;
* is restarted with capped exponential backoff when it dies on its own, and the death reported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

#: Runs in the child before the real program: die with the parent, then become the program.
#: ``python -c`` keeps it free of any import of ours (it starts in ~20 ms).
_LAUNCHER = """
import ctypes, os, signal, sys
parent = int(sys.argv[1])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != parent:
    sys.exit(0)
os.execvp(sys.argv[2], sys.argv[2:])
"""

#: Probes go straight to loopback, whatever HTTP(S)_PROXY says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_COLOURS = ("36", "33", "35", "32", "34", "96", "93", "95", "92", "94", "91", "37")
_RESET = "\x1b[0m"

#: A child that ran this long before dying is restarted at once, as if it never failed.
_STABLE_AFTER_S = 30.0
_MAX_BACKOFF_S = 30.0


class Probe:
    """Decides whether a child is ready. The default: an HTTP GET that answers 2xx."""

    def __init__(self, url: str, accept: Callable[[int], bool] | None = None) -> None:
        self.url = url
        self.accept = accept or (lambda status: 200 <= status < 300)

    def __call__(self) -> bool:
        try:
            with _DIRECT.open(self.url, timeout=2) as response:
                return self.accept(int(response.status))
        except urllib.error.HTTPError as error:
            return self.accept(int(error.code))
        except (OSError, ValueError):
            return False

    def __repr__(self) -> str:
        return f"GET {self.url}"


def answers_http(status: int) -> bool:
    """For programs without a probe of their own: any HTTP answer means it is up."""
    return 100 <= status < 600


@dataclass
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path | None = None
    ready: Callable[[], bool] | None = None
    restart: bool = True
    #: Seconds the child gets between SIGTERM and SIGKILL.
    stop_timeout: float = 10.0


@dataclass
class _Child:
    spec: ProcessSpec
    colour: str
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    exits: int = 0
    ready: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=60))
    pump: threading.Thread | None = None


class StackError(RuntimeError):
    """The stack could not be brought up; the message says which process and why."""


class Supervisor:
    def __init__(self, sink: TextIO | None = None, *, colours: bool | None = None) -> None:
        self.sink = sink or sys.stdout
        if colours is None:
            colours = bool(getattr(self.sink, "isatty", lambda: False)()) and not os.environ.get(
                "NO_COLOR"
            )
        self.colours = colours
        self._children: list[_Child] = []
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._width = 10

    # -- output -----------------------------------------------------------------------------

    def say(self, message: str, name: str = "devstack", colour: str = "1") -> None:
        prefix = f"{name:<{self._width}} |"
        if self.colours:
            prefix = f"\x1b[{colour}m{prefix}{_RESET}"
        with self._write_lock:
            try:
                self.sink.write(f"{prefix} {message}\n")
                self.sink.flush()
            except (ValueError, OSError):
                pass  # the sink was closed under us (interpreter shutdown): nothing to tell

    def _pump(self, child: _Child, stream: TextIO) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            child.tail.append(line)
            self.say(line, child.spec.name, child.colour)
        stream.close()

    def reserve(self, names: Sequence[str]) -> None:
        """Line the prefixes up for processes that will be added."""
        self._width = max(self._width, *(len(n) for n in names))

    # -- lifecycle --------------------------------------------------------------------------

    def add(self, spec: ProcessSpec) -> None:
        """Start a process now and keep it running until :meth:`stop`."""
        with self._lock:
            if any(c.spec.name == spec.name for c in self._children):
                raise ValueError(f"a process named {spec.name!r} is already supervised")
            child = _Child(spec, _COLOURS[len(self._children) % len(_COLOURS)])
            self._width = max(self._width, len(spec.name))
            self._children.append(child)
            self._spawn(child)
        if self._monitor is None:
            self._monitor = threading.Thread(
                target=self._watch, name="devstack-monitor", daemon=True
            )
            self._monitor.start()

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        argv = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *spec.argv]
        process = subprocess.Popen(  # noqa: S603 - argv built by the devstack itself
            argv,
            env=dict(spec.env),
            cwd=spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child.process = process
        child.started_at = time.monotonic()
        child.restart_at = None
        child.ready = False
        assert process.stdout is not None
        stream = open(process.stdout.fileno(), encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        child.pump = threading.Thread(
            target=self._pump, args=(child, stream), name=f"log-{spec.name}", daemon=True
        )
        child.pump.start()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            with self._lock:
                for child in self._children:
                    self._check(child, now)
            self._stopping.wait(0.25)

    def _check(self, child: _Child, now: float) -> None:
        process = child.process
        if process is not None and process.poll() is not None and child.restart_at is None:
            code = process.returncode
            child.exits += 1
            ran = now - child.started_at
            child.failures = 0 if ran > _STABLE_AFTER_S else child.failures + 1
            if not child.spec.restart:
                self.say(f"exited with code {code}; not restarting", child.spec.name, "31")
                child.restart_at = float("inf")
                return
            delay = (
                min(_MAX_BACKOFF_S, 0.5 * 2 ** max(0, child.failures - 1))
                if child.failures
                else 0.0
            )
            self.say(
                f"exited with code {code} after {ran:.1f}s; restarting in {delay:.1f}s",
                child.spec.name,
                "31",
            )
            child.restart_at = now + delay
        if child.restart_at is not None and now >= child.restart_at and not self._stopping.is_set():
            self._spawn(child)

    def exited(self) -> list[str]:
        """Names of processes that died at least once since they were started."""
        with self._lock:
            return [c.spec.name for c in self._children if c.exits]

    def wait_ready(self, timeout: float, names: Sequence[str] | None = None) -> None:
        """Block until every (named) process with a probe answers it; raise :class:`StackError`."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [
                    c
                    for c in self._children
                    if c.spec.ready is not None
                    and not c.ready
                    and (names is None or c.spec.name in names)
                ]
            for child in pending:
                if (
                    child.process is not None
                    and child.process.poll() is None
                    and child.spec.ready is not None
                ):
                    child.ready = child.spec.ready()
                    if child.ready:
                        self.say("ready", child.spec.name, child.colour)
            pending = [c for c in pending if not c.ready]
            if not pending:
                return
            if self._stopping.is_set():
                raise StackError("the stack is stopping")
            if time.monotonic() > deadline:
                lines = []
                for child in pending:
                    lines.append(
                        f"{child.spec.name}: not ready after {timeout:.0f}s ({child.spec.ready!r})"
                    )
                    lines.extend(f"    {line}" for line in list(child.tail)[-25:])
                raise StackError("\n".join(lines))
            time.sleep(0.3)

    def stop(self) -> None:
        """Stop every child: the last started (the gateway) first, then all the others at once;
        SIGTERM, then SIGKILL for any that outlives its timeout."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(5)
        with self._lock:
            children = list(reversed(self._children))
        if children:
            self._terminate([children[0]])
            self._terminate(children[1:])
        for child in children:
            if child.pump is not None:
                child.pump.join(2)

    def _terminate(self, children: Sequence[_Child]) -> None:
        running = [c for c in children if c.process is not None and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
        for child in running:
            process = child.process
            assert process is not None
            try:
                process.wait(child.spec.stop_timeout)
            except subprocess.TimeoutExpired:
                self.say(
                    f"did not stop in {child.spec.stop_timeout:.0f}s; killing it",
                    child.spec.name,
                    "31",
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        for child in children:
            # uvicorn's worker processes share the group: none may outlive its master.
            if child.process is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)

    def _child(self, name: str) -> _Child:
        with self._lock:
            for child in self._children:
                if child.spec.name == name:
                    return child
        raise KeyError(f"no process named {name!r}")

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        """Send ``signum`` to a process (and its uvicorn workers); the monitor restarts it as it
        would any process that died on its own."""
        child = self._child(name)
        with self._lock:
            # Until its successor answers its probe (wait_ready() waits for that).
            child.ready = False
            process = child.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)

    def restart(self, name: str, ready_timeout: float = 60.0) -> None:
        """Stop a process gracefully (SIGTERM: it stops taking requests and finishes those in
        flight), start it again at once, and wait until its probe answers: one step of a
        rolling restart. Not counted among the processes that died (:meth:`exited`)."""
        child = self._child(name)
        with self._lock:
            # The monitor must neither report this stop nor schedule a restart of its own.
            child.restart_at = float("inf")
            child.ready = False
        self._terminate([child])
        if child.pump is not None:
            child.pump.join(2)
        with self._lock:
            # The monitor thread starts it: a child dies with the thread that forked it
            # (PR_SET_PDEATHSIG is per thread), and the caller's thread may end before the stack.
            child.restart_at = time.monotonic()
        self.wait_ready(ready_timeout, [name])

    def set_env(self, name: str, env: Mapping[str, str]) -> None:
        """The environment a process gets from its next start on (a :meth:`restart` applies it)."""
        child = self._child(name)
        with self._lock:
            child.spec = replace(child.spec, env=dict(env))

    def env(self, name: str) -> dict[str, str]:
        """The environment a process was (or will next be) started with."""
        return dict(self._child(name).spec.env)

    def pids(self) -> dict[str, int]:
        with self._lock:
            return {c.spec.name: c.process.pid for c in self._children if c.process is not None}
