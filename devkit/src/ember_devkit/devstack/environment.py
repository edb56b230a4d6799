"""The environment every child of the local stack gets, and the secrets a local run needs.

Precedence, lowest first: what this module derives (ports from the offset, stand-in addresses),
the repo's ``.env`` file, the real environment. The places the stack itself decides (the
database and Redis it started, the ports it listens on) always win, since nothing else would work.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ember_shared.settings import SERVICE_PORTS

from ember_devkit.devstack.layout import SERVICES, mesh_port, port


def _ed25519_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


#: Secrets a local run makes for itself when the environment does not give them.
SECRET_MAKERS: dict[str, Callable[[], str]] = {
    # Presented by one service on another's /internal/... routes.
    "INTERNAL_SERVICE_TOKEN": lambda: secrets.token_urlsafe(32),
    # Identity signs access tokens with it (EdDSA); the others verify with its public half (JWKS).
    "IDENTITY_SIGNING_KEY_PEM": _ed25519_pem,
    # Signs the guest cart cookie.
    "CART_COOKIE_SECRET": lambda: secrets.token_urlsafe(32),
    # Signs the Stripe stand-in's webhooks, as Stripe's endpoint secret does.
    "STRIPE_WEBHOOK_SECRET": lambda: "whsec_" + secrets.token_urlsafe(24),
    # Signs the Resend stand-in's webhooks (Svix: "whsec_" + base64 key).
    "RESEND_WEBHOOK_SECRET": lambda: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    # The demo admin account identity's seed creates (with ADMIN_EMAIL).
    "ADMIN_PASSWORD": lambda: "ember-" + secrets.token_urlsafe(9),
}


def load_secrets(folder: Path, given: Mapping[str, str]) -> dict[str, str]:
    """The local secrets: from ``given`` when set there, else kept in ``folder/secrets.json``
    (made on the first run, reused after, so sessions and cookies survive a restart)."""
    path = folder / "secrets.json"
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    changed = False
    for name, make in SECRET_MAKERS.items():
        if name not in stored:
            stored[name] = make()
            changed = True
    if changed:
        folder.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(stored, indent=2) + "\n")
        path.chmod(0o600)
    return {name: given.get(name) or stored[name] for name in SECRET_MAKERS}


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a ``.env`` file (comments, blanks and ``export`` allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = (
                value[1:-1].encode().decode("unicode_escape") if value[0] == '"' else value[1:-1]
            )
        values[key.strip()] = value
    return values


def env_name(process: str) -> str:
    return process.upper().replace("-", "_")


def stack_environment(
    *,
    offset: int,
    data_dir: Path,
    database_url: str,
    redis_url: str,
    given: Mapping[str, str],
    local_secrets: Mapping[str, str],
    log_format: str = "console",
    replicas: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """The environment of every child: ``given`` (os.environ and .env) completed for this stack.

    ``replicas`` (service -> count): a service run as more than one process is reached by its
    peers through the mesh's address for it, and by Caddy at each replica's own address."""
    replicas = replicas or {}
    gateway = port("gateway", offset)
    public_url = f"http://localhost:{gateway}"
    derived: dict[str, str] = {
        "EMBER_MODE": "local",
        "LOG_FORMAT": log_format,
        "PUBLIC_URL": public_url,
        "MEDIA_ROOT": str(data_dir / "media"),
        "ADMIN_EMAIL": "admin@ember.shop",
    }
    derived.update(local_secrets)
    env = {**derived, **given}
    # Decided by the stack: where things listen and what they are stored in.
    env.update(
        {
            "EMBER_PORT_OFFSET": str(offset),
            "EMBER_DATA_DIR": str(data_dir),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    # Calls between the stack's processes stay on loopback even behind an HTTP proxy.
    bypass = ",".join(
        dict.fromkeys(
            [*filter(None, given.get("NO_PROXY", "").split(",")), "127.0.0.1", "localhost", "::1"]
        )
    )
    env["NO_PROXY"] = env["no_proxy"] = bypass
    for name in SERVICE_PORTS:
        listens = mesh_port(name, offset) if replicas.get(name, 1) > 1 else port(name, offset)
        env[f"{env_name(name)}_URL"] = f"http://127.0.0.1:{listens}"
    env.update(_provider_defaults(env, offset))
    env.update(_gateway_environment(env, offset, replicas))
    return env


#: The stand-in's webhook endpoint listens for what checkout acts on, as the real endpoint is
#: configured (README): Stripe also sends payment_intent.* and charge.succeeded for every
#: payment, two more signed requests per order that checkout would only note.
STRIPE_EVENTS_CHECKOUT_ACTS_ON = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "charge.refunded",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
)


#: The Resend stand-in's endpoint listens for what the notifier acts on, as the real endpoint
#: is configured (notifier README): ``email.sent`` for every mail would be one more signed
#: request and transaction per mail that the notifier only records.
RESEND_EVENTS_NOTIFIER_ACTS_ON = (
    "email.delivered",
    "email.delivery_delayed",
    "email.bounced",
    "email.complained",
)


def _provider_defaults(env: Mapping[str, str], offset: int) -> dict[str, str]:
    """Without a provider's key, point its SDK at the local stand-in.

    Only Stripe needs telling: the other services fall back to their stand-in by themselves
    when their provider's key is unset (a key set here would make them think they had a real one).
    """
    out: dict[str, str] = {}
    if not env.get("STRIPE_SECRET_KEY"):
        stripe = port("stripe-standin", offset)
        out |= {
            "STRIPE_API_BASE": env.get("STRIPE_API_BASE") or f"http://127.0.0.1:{stripe}",
            # The CSP lets the shopper's browser reach the stand-in's pay page.
            "STRIPE_STANDIN_ORIGIN": f"http://localhost:{stripe} http://127.0.0.1:{stripe}",
            "STRIPE_STANDIN_ENABLED_EVENTS": env.get("STRIPE_STANDIN_ENABLED_EVENTS")
            or ",".join(STRIPE_EVENTS_CHECKOUT_ACTS_ON),
        }
    # Read by the Resend stand-in only (the notifier itself needs no telling).
    out["RESEND_STANDIN_WEBHOOK_EVENTS"] = env.get("RESEND_STANDIN_WEBHOOK_EVENTS") or ",".join(
        RESEND_EVENTS_NOTIFIER_ACTS_ON
    )
    return out


def _gateway_environment(
    env: Mapping[str, str], offset: int, replicas: Mapping[str, int]
) -> dict[str, str]:
    """What the Caddyfile reads: the site address and where each service listens (every
    replica listed, so that Caddy probes each one and retries another while one restarts)."""
    out = {
        "EMBER_SITE_ADDRESS": env.get("EMBER_SITE_ADDRESS") or f"http://:{port('gateway', offset)}",
        "STRIPE_STANDIN_ORIGIN": env.get("STRIPE_STANDIN_ORIGIN", ""),
        # The CSP's img-src must allow wherever product images are delivered from.
        "MEDIA_ORIGIN": env.get("MEDIA_ORIGIN")
        or ("https://res.cloudinary.com" if env.get("MEDIA_STORE") == "cloudinary" else ""),
        "CADDY_BIND": env.get("CADDY_BIND") or "127.0.0.1",
        "CADDY_LOG_LEVEL": env.get("CADDY_LOG_LEVEL") or "ERROR",
    }
    out["EMBER_UPSTREAMS"] = "list"
    for name in SERVICES:
        out[f"{env_name(name)}_HOST"] = "127.0.0.1"
        out[f"{env_name(name)}_PORT"] = str(port(name, offset))
        out[f"{env_name(name)}_UPSTREAMS"] = " ".join(
            f"127.0.0.1:{port(name, offset, replica)}" for replica in range(replicas.get(name, 1))
        )
    return out


def child_env_for_caddy(env: Mapping[str, str], data_dir: Path) -> dict[str, str]:
    """Caddy keeps its state (autosaved config, certificates) under the stack's data folder."""
    caddy = data_dir / "caddy"
    return {**env, "XDG_DATA_HOME": str(caddy / "data"), "XDG_CONFIG_HOME": str(caddy / "config")}
