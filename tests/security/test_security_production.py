"""Production never trusts a stand-in: a service started with a provider unset, a stand-in's
public secret or a mistyped mode exits before it serves anything, naming what is wrong."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from ember_devkit.testing import plugin
from ember_shared.settings import SettingsError, service_settings
from litestar import Litestar

#: Every provider setting a production stack sets; each case below takes some away again.
PROVIDERS = {
    "GOOGLE_CLIENT_ID": "1234-shop.apps.googleusercontent.com",
    "GOOGLE_CLIENT_SECRET": "GOCSPX-shop-secret",
    "STRIPE_SECRET_KEY": "sk_live_shopkey",
    "STRIPE_WEBHOOK_SECRET": "whsec_shop_endpoint_secret",
    "RESEND_API_KEY": "re_shopkey",
    "RESEND_WEBHOOK_SECRET": "whsec_c2hvcC1yZXNlbmQtc2VjcmV0",
    "TRACKING_API_URL": "https://api.17track.net/track/v2",
    "TRACKING_API_KEY": "shop-tracking-key",
    "MAIL_SEAL_PRIVATE_KEY": "qPnvX0kE4M883MHZ-4AKXRUMeqnnESdVTlICeirAPH4",
    "MAIL_SEAL_PUBLIC_KEY": "M6qQg83ZGHZeeEepDAHQR1XxVg58CtJ6eX91JuhAWg0",
}
LOCAL_RESEND_SECRET = "whsec_ZW1iZXItbG9jYWwtcmVzZW5kLXdlYmhvb2stc2VjcmV0"
#: Provider settings a developer's shell or the test plugin may carry; a case starts clean.
UNSET = (*PROVIDERS, "GOOGLE_ISSUER", "STRIPE_API_BASE", "RESEND_API_URL", "HIBP_API_URL")


def production_env(ember_env: plugin.TestEnv, **changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(PROVIDERS)
    env.update(
        EMBER_MODE="production",
        PUBLIC_URL="https://shop.example.com",
        INTERNAL_SERVICE_TOKEN="t" * 40,
        DATABASE_URL=ember_env.database_url,
        REDIS_URL=ember_env.redis_url,
        IDENTITY_SIGNING_KEY_PEM=ember_env.private_key_pem,
    )
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def start(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Start the service as its container does; a refused start exits before binding."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            f"{service}.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        # A refused start exits at once; the margin is for a loaded machine importing the app.
        timeout=180,
    )


@pytest.mark.parametrize(
    ("service", "changes", "named"),
    [
        pytest.param(
            "identity",
            {"GOOGLE_CLIENT_ID": None, "GOOGLE_CLIENT_SECRET": None},
            ["GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET", "GOOGLE_ISSUER"],
            id="identity-without-google",
        ),
        pytest.param(
            "checkout",
            {
                "STRIPE_SECRET_KEY": None,
                "STRIPE_WEBHOOK_SECRET": None,
                "INTERNAL_SERVICE_TOKEN": "",
            },
            [
                "STRIPE_SECRET_KEY",
                "STRIPE_WEBHOOK_SECRET",
                "STRIPE_API_BASE",
                "INTERNAL_SERVICE_TOKEN",
            ],
            id="checkout-without-stripe",
        ),
    ],
)
def test_production_refuses_to_start_naming_what_is_missing(
    ember_env: plugin.TestEnv, service: str, changes: dict[str, str | None], named: list[str]
) -> None:
    result = start(service, production_env(ember_env, **changes))
    assert result.returncode != 0
    for name in named:
        assert name in result.stderr, (name, result.stderr[-2000:])


def build(service: str) -> Litestar:
    factory: Callable[[], Litestar] = importlib.import_module(f"{service}.app").create_app
    return factory()


@pytest.fixture
def production(
    ember_env: plugin.TestEnv, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., None]]:
    """Sets a production environment in this process (``None`` unsets a variable)."""

    def apply(**changes: str | None) -> None:
        for name in UNSET:
            monkeypatch.delenv(name, raising=False)
        for name, value in production_env(ember_env, **changes).items():
            monkeypatch.setenv(name, value)
        for name, value in changes.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
        service_settings.cache_clear()

    try:
        yield apply
    finally:
        monkeypatch.undo()
        service_settings.cache_clear()


def test_a_fully_configured_production_builds(production: Callable[..., None]) -> None:
    """The control: the same settings with every provider set do build each app."""
    production()
    for service in ("identity", "checkout", "notifier", "orders", "catalog"):
        assert isinstance(build(service), Litestar)
    production(**CLOUDINARY)
    assert isinstance(build("catalog"), Litestar)


#: Product images on Cloudinary, as a production shop sets them (issue 9: without MEDIA_ORIGIN
#: the pages' Content-Security-Policy blanks every image).
CLOUDINARY = {
    "MEDIA_STORE": "cloudinary",
    "CLOUDINARY_URL": "cloudinary://123456:secret@ember-shop",
    "MEDIA_ORIGIN": "https://res.cloudinary.com",
}


@pytest.mark.parametrize(
    ("service", "changes", "named"),
    [
        (
            "checkout",
            {"STRIPE_WEBHOOK_SECRET": "whsec_ember_local_standin"},
            "STRIPE_WEBHOOK_SECRET",
        ),
        ("checkout", {"STRIPE_API_BASE": "http://127.0.0.1:8201"}, "STRIPE_API_BASE"),
        ("identity", {"GOOGLE_CLIENT_ID": "ember-local"}, "GOOGLE_CLIENT_ID"),
        ("identity", {"GOOGLE_CLIENT_SECRET": "ember-local-secret"}, "GOOGLE_CLIENT_SECRET"),
        ("identity", {"GOOGLE_ISSUER": "http://127.0.0.1:8203"}, "GOOGLE_ISSUER"),
        ("notifier", {"RESEND_WEBHOOK_SECRET": LOCAL_RESEND_SECRET}, "RESEND_WEBHOOK_SECRET"),
        ("notifier", {"RESEND_API_KEY": None}, "RESEND_API_KEY"),
        ("notifier", {"MAIL_SEAL_PRIVATE_KEY": None}, "MAIL_SEAL_PRIVATE_KEY"),
        ("identity", {"MAIL_SEAL_PUBLIC_KEY": None}, "MAIL_SEAL_PUBLIC_KEY"),
        ("orders", {"MAIL_SEAL_PUBLIC_KEY": None}, "MAIL_SEAL_PUBLIC_KEY"),
        ("orders", {"TRACKING_API_URL": None}, "TRACKING_API_URL"),
        ("catalog", {**CLOUDINARY, "MEDIA_ORIGIN": None}, "MEDIA_ORIGIN"),
        (
            "catalog",
            {**CLOUDINARY, "CLOUDINARY_API_BASE": "http://127.0.0.1:8205"},
            "CLOUDINARY_API_BASE",
        ),
        ("catalog", {**CLOUDINARY, "CLOUDINARY_URL": None}, "CLOUDINARY_URL"),
        ("catalog", {"EMBER_MODE": "prodution"}, "EMBER_MODE"),
        ("catalog", {"EMBER_MODE": "Production"}, "EMBER_MODE"),
    ],
)
def test_production_never_takes_a_standin_or_a_stray_mode(
    production: Callable[..., None], service: str, changes: dict[str, str | None], named: str
) -> None:
    production(**changes)
    with pytest.raises(SettingsError, match=named):
        build(service)


def test_the_storefronts_form_token_cookie_is_host_locked_in_production(
    production: Callable[..., None],
) -> None:
    """Not tied to a session, the form token's cookie must at least be one no other origin
    (a sibling subdomain) can set: the ``__Host-`` prefix, Secure, path /."""
    production(STOREFRONT_CSRF_SECRET="f" * 40)
    from litestar.testing import TestClient

    with TestClient(build("storefront"), base_url="https://shop.example.com") as client:
        answered = client.get("/api/health/storefront/live")
        assert answered.status_code == 200, answered.text
    [cookie] = [c for c in answered.headers.get_list("set-cookie") if "form_csrf" in c]
    assert cookie.startswith("__Host-ember_form_csrf="), cookie
    assert "Secure" in cookie
    assert "Path=/" in cookie
    assert "Domain" not in cookie
