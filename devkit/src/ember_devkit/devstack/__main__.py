"""``python -m ember_devkit.devstack run|migrate|seed <service>``.

``run`` is what ``make run`` calls: the whole shop on this machine until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import signal
import sys
import time
from types import FrameType

from ember_shared.settings import repo_root

from ember_devkit.devstack.environment import read_dotenv
from ember_devkit.devstack.stack import DevStack, StackOptions
from ember_devkit.devstack.supervisor import StackError


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _print_summary(stack: DevStack) -> None:
    rows = stack.summary()
    width = max(len(label) for label, _ in rows)
    bold, reset = (
        ("\x1b[1m", "\x1b[0m")
        if sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        else ("", "")
    )
    lines = ["", f"{bold}Ember is running.{reset}", ""]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    lines += ["", "Press Ctrl-C to stop everything.", ""]
    print("\n".join(lines), flush=True)


def run(options: StackOptions) -> int:
    stack = DevStack(options)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        stack.start()
        _print_summary(stack)
        while True:
            time.sleep(3600)
    except Interrupted as signal_name:
        stack.say(f"{signal_name} received: stopping")
    except StackError as error:
        stack.say(f"could not start the stack:\n{error}")
        code = 1
    finally:
        # A second Ctrl-C while stopping must not leave half the stack behind: finish first.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        stack.say("stopped")
    return code


def migrate(options: StackOptions) -> int:
    """Apply every service's migrations (embedded Postgres when no DATABASE_URL), then stop."""
    options.seed = False
    stack = DevStack(options)
    try:
        given = stack._given_environment()
        url = stack._database(given.get("DATABASE_URL", ""))
        env = {**given, "DATABASE_URL": url}
        import subprocess

        result = subprocess.run(
            [sys.executable, "-m", "ember_shared.migrations", "upgrade"], env=env, check=False
        )
        return result.returncode
    finally:
        stack.stop()


def seed(service: str) -> int:
    """Run ``<service>.seed.seed()`` (called by ``run`` in a process of its own per service)."""
    module = importlib.import_module(f"{service}.seed")
    hook = getattr(module, "seed", None)
    if hook is None or not inspect.iscoroutinefunction(hook):
        print(f"{service}.seed has no `async def seed() -> None`", file=sys.stderr)
        return 2
    asyncio.run(hook())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ember_devkit.devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run the whole shop until Ctrl-C")
    run_parser.add_argument("--no-seed", action="store_true", help="skip the demo data hooks")
    run_parser.add_argument(
        "--workers", type=int, help="uvicorn workers per service (EMBER_WORKERS)"
    )
    sub.add_parser("migrate", help="apply every service's migrations")
    seed_parser = sub.add_parser("seed", help="run one service's seed hook")
    seed_parser.add_argument("service")
    args = parser.parse_args(argv)
    if args.command == "seed":
        return seed(args.service)
    # .env counts as environment for every setting (the real environment wins).
    for key, value in read_dotenv(repo_root() / ".env").items():
        if value:
            os.environ.setdefault(key, value)
    options = StackOptions()
    if args.command == "migrate":
        return migrate(options)
    options.seed = not args.no_seed
    if args.workers:
        options.workers = args.workers
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
