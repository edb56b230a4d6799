"""An OpenID Connect client for one provider (Google, or the local stand-in).

Reads the provider's discovery document, exchanges an authorization code (with the PKCE
verifier and our client credentials) at its token endpoint, and verifies the ID token it
returns: signature from the provider's JWKS, issuer, audience, expiry and nonce.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import httpx
import jwt
import structlog
from ember_shared.jwks import JwksCache

log = structlog.get_logger("identity.oidc")

#: Algorithms we accept on an ID token; never ``none``, never an HMAC one (the "secret" would be
#: our client secret, which the provider's JWKS does not describe).
ID_TOKEN_ALGORITHMS = ["RS256", "ES256", "EdDSA"]
DISCOVERY_TTL = 3600.0
#: At most one key set fetch per this long for a key id the provider's set does not hold.
KEY_REFETCH_AFTER_S = 5.0
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")


class OIDCError(Exception):
    """The sign-in cannot be completed; ``reason`` is a short slug for logs and the user."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OIDCProvider:
    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.http = http
        self.timeout = timeout
        self._discovery: dict[str, Any] | None = None
        self._discovered_at = 0.0
        self._keys = JwksCache(
            self._fetch_keys, refetch_after_s=KEY_REFETCH_AFTER_S, max_age_s=DISCOVERY_TTL
        )

    async def _get(self, url: str) -> dict[str, Any]:
        try:
            if self.http is not None:
                response = await self.http.get(url, timeout=self.timeout)
            else:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.get(url)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("oidc_fetch_failed", url=url, error=type(exc).__name__)
            raise OIDCError("provider-unavailable", "The sign-in provider did not answer.") from exc
        if not isinstance(body, dict):
            raise OIDCError("provider-unavailable", "The sign-in provider answered nonsense.")
        return body

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None or time.monotonic() - self._discovered_at > DISCOVERY_TTL:
            document = await self._get(f"{self.issuer}/.well-known/openid-configuration")
            if str(document.get("issuer", "")).rstrip("/") != self.issuer:
                # OIDC Discovery 4.3: the document must name the issuer we asked.
                raise OIDCError(
                    "provider-mismatch", "The provider's discovery document names another issuer."
                )
            for required in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(document.get(required), str):
                    raise OIDCError(
                        "provider-unavailable", f"The discovery document lacks {required}."
                    )
            self._discovery = document
            self._discovered_at = time.monotonic()
        return self._discovery

    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str, login_hint: str = ""
    ) -> str:
        document = await self.discovery()
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile",
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        if login_hint:
            params["login_hint"] = login_hint
        return str(httpx.URL(document["authorization_endpoint"], params=params))

    async def exchange(self, *, code: str, redirect_uri: str, code_verifier: str) -> dict[str, Any]:
        document = await self.discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "code_verifier": code_verifier,
        }
        try:
            if self.http is not None:
                response = await self.http.post(
                    document["token_endpoint"], data=form, timeout=self.timeout
                )
            else:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.post(document["token_endpoint"], data=form)
        except httpx.HTTPError as exc:
            raise OIDCError("provider-unavailable", "The sign-in provider did not answer.") from exc
        if response.status_code != 200:
            log.warning("oidc_token_refused", status=response.status_code, body=response.text[:200])
            raise OIDCError("code-refused", "The sign-in provider refused the authorization code.")
        try:
            body = response.json()
        except ValueError as exc:
            raise OIDCError("code-refused", "The token endpoint answered nonsense.") from exc
        if not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
            raise OIDCError("code-refused", "The token endpoint sent no ID token.")
        return body

    async def _key(self, kid: str | None) -> Any:
        key = await self._keys.get(kid)
        if key is None:
            raise OIDCError(
                "bad-id-token", "The ID token is signed with a key the provider does not publish."
            )
        return key

    async def _fetch_keys(self) -> dict[str, Any]:
        document = await self.discovery()
        return await self._get(document["jwks_uri"])

    async def verify_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise OIDCError("bad-id-token", "The ID token is malformed.") from exc
        algorithm = header.get("alg")
        if algorithm not in ID_TOKEN_ALGORITHMS:
            raise OIDCError("bad-id-token", "The ID token's algorithm is not allowed.")
        key = await self._key(header.get("kid"))
        issuers = GOOGLE_ISSUERS if self.issuer in GOOGLE_ISSUERS else (self.issuer,)
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key,
                algorithms=[algorithm],
                audience=self.client_id,
                issuer=issuers,
                options={"require": ["iss", "aud", "sub", "exp", "iat"]},
                leeway=60,
            )
        except jwt.PyJWTError as exc:
            log.warning("oidc_id_token_refused", error=type(exc).__name__)
            raise OIDCError("bad-id-token", "The ID token did not verify.") from exc
        azp = claims.get("azp")
        if azp is not None and azp != self.client_id:
            raise OIDCError("bad-id-token", "The ID token was issued to another client.")
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise OIDCError(
                "bad-nonce", "The ID token does not answer this sign-in (nonce mismatch)."
            )
        return claims
