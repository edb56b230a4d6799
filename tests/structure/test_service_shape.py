"""Every service has the shape AGENTS.md's "Service template" shows (rules in service_shape.py).

The check also runs on copies of the services with one rule broken each, so a pass on the real
tree means something.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from service_shape import all_problems

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "shared" / "src" / "ember_shared" / "events" / "contracts.py"
#: What the check never reads: assets, templates, data.
UNREAD = shutil.ignore_patterns(
    "__pycache__", "static", "templates", "images", "data", "*.json", "*.gz"
)


#: Problems tolerated only while another change holds the file that fixes them (issue 16): the
#: test fails on any other. Each goes when its fix lands; then the entry goes too.
PENDING: dict[str, str] = {}


def test_every_service_has_the_template_shape() -> None:
    problems = all_problems(ROOT / "services", CONTRACTS)
    assert [problem for problem in problems if problem not in PENDING] == []


def _edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(package_root: Path) -> None:
        file = package_root / path
        text = file.read_text(encoding="utf-8")
        assert old in text, f"{path} no longer contains {old!r}: update this case"
        _rewrite(file, text.replace(old, new, 1))

    return apply


def _append(path: str, text: str) -> Callable[[Path], None]:
    def apply(package_root: Path) -> None:
        file = package_root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        _rewrite(file, (file.read_text(encoding="utf-8") if file.exists() else "") + text)

    return apply


def _rewrite(file: Path, text: str) -> None:
    # The copy's files are hard links to the pristine copy's: a new file, not a write through.
    file.unlink(missing_ok=True)
    file.write_text(text, encoding="utf-8")


def _remove(path: str) -> Callable[[Path], None]:
    def apply(package_root: Path) -> None:
        target = package_root / path
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()

    return apply


#: (one rule broken, what the check must then say).
DRIFT: dict[str, tuple[Callable[[Path], None], str]] = {
    "create_app-takes-more": (
        _edit(
            "cart/src/cart/app.py",
            "def create_app(settings: CartSettings | None = None)",
            "def create_app(settings: CartSettings | None = None, debug: bool = False)",
        ),
        "cart/app.py: create_app must be create_app(settings: CartSettings | None = None)",
    ),
    "create_app-settings-required": (
        _edit(
            "orders/src/orders/app.py",
            "def create_app(settings: OrdersSettings | None = None)",
            "def create_app(settings: OrdersSettings | None)",
        ),
        "orders/app.py: create_app must be",
    ),
    "create_app-bypasses-the-loader": (
        _edit(
            "storefront/src/storefront/app.py",
            "load_settings(settings, service)",
            "settings or StorefrontSettings()",
        ),
        "storefront/app.py: create_app must load its settings with load_settings",
    ),
    "a-second-loader": (
        _append(
            "notifier/src/notifier/worker.py",
            "\n\ndef load_worker_settings() -> None:\n    pass\n",
        ),
        "notifier/worker.py: load_worker_settings is a second settings loader",
    ),
    "loader-not-on-the-shared-helper": (
        _edit(
            "catalog/src/catalog/settings.py",
            "return checked_settings(",
            "return (lambda own, service: own)(",
        ),
        "catalog/settings.py: load_settings must use checked_settings",
    ),
    "no-events-module": (
        _remove("identity/src/identity/events.py"),
        "identity/events.py is missing",
    ),
    "an-outbox-elsewhere": (
        _append(
            "checkout/src/checkout/sessions/services.py",
            '\noutbox_too = Outbox("checkout", Base.metadata)\n',
        ),
        "checkout/sessions/services.py makes an Outbox: only events.py does",
    ),
    "publishes-what-it-does-not-produce": (
        _edit(
            "identity/src/identity/events.py",
            "PUBLISHES: tuple[type[EventData], ...] = (",
            "PUBLISHES: tuple[type[EventData], ...] = (\n    StockReleased,",
        ),
        "identity/events.py: PUBLISHES must be what contracts say identity produces",
    ),
    "handlers-outside-events": (
        _append("cart/src/cart/sweeper.py", '\nmore = EventHandlers("cart")\n'),
        "cart/sweeper.py makes an EventHandlers: only events.py does",
    ),
    "a-domain-without-repositories": (
        _remove("cart/src/cart/carts/repositories.py"),
        "cart/carts has routes but no repositories.py",
    ),
    "a-folder-neither-domain-nor-support": (
        _append("catalog/src/catalog/pricing/__init__.py", ""),
        "catalog/pricing has no controllers.py and is not a listed support folder",
    ),
    "internal-grows-rules": (
        _append("cart/src/cart/internal/services.py", ""),
        "cart/internal holds only controllers.py",
    ),
    "tables-without-migrations": (
        _remove("orders/src/orders/migrations"),
        "orders has tables but no migrations/",
    ),
    "a-stale-exception": (
        _append("identity/src/identity/google/schemas.py", ""),
        "identity/google has schemas.py now: drop its exception",
    ),
    "sql-in-a-domain-without-repositories": (
        _append("identity/src/identity/admin/services.py", "\nfrom sqlalchemy import select\n"),
        "identity/admin/services.py builds SQL (select) but the domain has no repositories",
    ),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """A copy of the services' sources, and what the check says of it."""
    copy = tmp_path_factory.mktemp("pristine") / "services"
    for service in sorted((ROOT / "services").iterdir()):
        if (service / "src").is_dir():
            shutil.copytree(service / "src", copy / service.name / "src", ignore=UNREAD)
    return copy, set(all_problems(copy, CONTRACTS))


@pytest.mark.parametrize("case", sorted(DRIFT))
def test_the_check_names_each_drift(
    case: str, pristine: tuple[Path, set[str]], tmp_path: Path
) -> None:
    source, before = pristine
    services = tmp_path / "services"
    shutil.copytree(source, services, copy_function=os.link)
    drift, expected = DRIFT[case]
    drift(services)
    new = set(all_problems(services, CONTRACTS)) - before
    assert any(expected in problem for problem in new), sorted(new)
