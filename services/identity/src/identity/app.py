"""The identity service's ASGI app: ``uvicorn --factory identity.app:create_app``.

Accounts, sign-in and sessions, password reset, Google sign-in, roles, addresses and the
audit log. Identity signs the access tokens every other service verifies on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx
from ember_shared.app import ServiceSpec, create_service_app
from ember_shared.sealing import public_key
from ember_shared.settings import ServiceSettings, read_service_settings
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide

from identity.accounts.controllers import AuthController, well_known_jwks
from identity.admin.controllers import AdminUsersController
from identity.context import Identity, provide_identity, provide_meta
from identity.google.client import OIDCProvider
from identity.google.controllers import GoogleController
from identity.internal.controllers import InternalIdentityController
from identity.models import Base
from identity.profile.controllers import ProfileController
from identity.security.breached import BreachedPasswords
from identity.security.passwords import Passwords
from identity.security.tokens import TokenSigner, load_private_key, local_private_key
from identity.settings import IdentitySettings, load_settings

NAME = "identity"


def make_signer(settings: IdentitySettings, service: ServiceSettings) -> TokenSigner:
    if settings.signing_key_pem:
        key = load_private_key(settings.signing_key_pem)
    elif service.app.is_local:
        key = local_private_key()
    else:
        raise RuntimeError("IDENTITY_SIGNING_KEY_PEM must be set outside local mode")
    return TokenSigner(
        key,
        key_id=settings.signing_key_id,
        issuer=service.auth.issuer,
        audience=service.auth.audience,
        ttl_seconds=settings.access_token_ttl,
    )


def create_app(settings: IdentitySettings | None = None) -> Litestar:
    """Build the app from the environment; tests swap parts through ``app.state.identity``."""
    # Read afresh, not cached: a test sets the environment and builds another app.
    service = read_service_settings(NAME)
    settings = load_settings(settings, service)
    signer = make_signer(settings, service)
    # Identity verifies its own tokens with its own key: no JWKS round trip to itself.
    service = replace(service, auth=replace(service.auth, public_key_pem=signer.public_key_pem))
    identity = Identity(
        settings=settings,
        service=service,
        passwords=Passwords(settings),
        breached=BreachedPasswords(
            None if settings.hibp_offline else settings.hibp_api_url,
            timeout_ms=settings.hibp_timeout_ms,
        ),
        signer=signer,
        mail_seal=public_key(local=service.app.is_local),
    )
    oidc = OIDCProvider(
        settings.google_issuer, settings.google_client_id, settings.google_client_secret
    )

    @asynccontextmanager
    async def identity_resources(app: Litestar) -> AsyncIterator[None]:
        identity.redis = app.state.redis
        identity.engine = app.state.db_engine
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as http:
            identity.http = http
            identity.breached.client = http
            oidc.http = http
            try:
                yield
            finally:
                identity.http = None
                identity.breached.client = None
                oidc.http = None

    def configure(config: AppConfig) -> None:
        config.state["identity"] = identity
        config.state["oidc"] = oidc

    return create_service_app(
        ServiceSpec(
            name=NAME,
            title="Ember identity",
            description=__doc__ or "",
            route_handlers=[
                AuthController,
                GoogleController,
                ProfileController,
                AdminUsersController,
                InternalIdentityController,
                well_known_jwks,
            ],
            base=Base,
            dependencies={
                "identity": Provide(provide_identity),
                "meta": Provide(provide_meta),
            },
            lifespans=[identity_resources],
            configure=configure,
        ),
        settings=service,
    )
