"""A local OpenID Connect provider that stands in for Google sign-in:
``uvicorn --factory standins.oidc:create_app --port 8203``.

It speaks the part of the protocol Ember uses, as Google does: a discovery document, a JWKS,
``/authorize`` (authorization code flow, PKCE with S256 or plain, ``state`` and ``nonce`` passed
through), ``/token`` (checks the code, its single use and expiry, the client credentials, the
``redirect_uri`` and the PKCE verifier; answers an RS256-signed ID token) and ``/userinfo``.

``/authorize`` shows a page where you type the test email to sign in as and approve (or cancel).
Tests skip the page with ``standin_approve=1`` (the email comes from ``login_hint``), and can
shape the answer with ``standin_name``, ``standin_email_verified=false`` and ``standin_sub``.

Settings: ``OIDC_STANDIN_CLIENT_ID`` / ``OIDC_STANDIN_CLIENT_SECRET`` (default ``ember-local`` /
``ember-local-secret``, what identity uses when ``GOOGLE_CLIENT_ID`` is unset) and
``OIDC_STANDIN_ISSUER`` (default: the address the request came to, e.g. ``http://127.0.0.1:8203``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from ember_shared.settings import env_str
from jwt.algorithms import RSAAlgorithm
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.response import Redirect

DEFAULT_CLIENT_ID = "ember-local"
DEFAULT_CLIENT_SECRET = "ember-local-secret"  # noqa: S105 - a public, local-only test credential
CODE_TTL = 60
TOKEN_TTL = 3600
PENDING_TTL = 900
MAX_FORM_BYTES = 16_384
MAX_ENTRIES = 10_000

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f1f3f4;color:#202124;margin:0}
.banner{background:#fef7e0;color:#7a4f01;padding:.5rem 1rem;text-align:center;font-size:.85rem}
main{max-width:450px;margin:48px auto;background:#fff;border:1px solid #dadce0;border-radius:8px;padding:40px 36px}
h1{font-size:1.5rem;font-weight:400;margin:.2rem 0 .4rem;text-align:center}
p{color:#5f6368;text-align:center;margin:.2rem 0 1.2rem}
label{display:block;font-size:.85rem;margin:.9rem 0 .3rem;color:#3c4043}
input[type=email],input[type=text]{width:100%;box-sizing:border-box;padding:.75rem;border:1px solid #dadce0;
border-radius:4px;font-size:1rem}
.check{display:flex;gap:.5rem;align-items:center;margin-top:1rem;font-size:.9rem}
.actions{display:flex;justify-content:space-between;margin-top:1.8rem}
button{padding:.6rem 1.4rem;border-radius:4px;font-size:.95rem;font-weight:500;cursor:pointer;border:0}
.primary{background:#1a73e8;color:#fff} .secondary{background:none;color:#1a73e8}
.logo{text-align:center;font-size:1.4rem;font-weight:500;letter-spacing:-.5px}
.logo span:nth-child(1){color:#4285f4}.logo span:nth-child(2){color:#ea4335}.logo span:nth-child(3){color:#fbbc05}
.logo span:nth-child(4){color:#4285f4}.logo span:nth-child(5){color:#34a853}.logo span:nth-child(6){color:#ea4335}
.error{background:#fce8e6;color:#c5221f;padding:.7rem;border-radius:4px}
code{background:#f1f3f4;padding:.1rem .3rem;border-radius:3px}
table{width:100%;border-collapse:collapse;font-size:.9rem} td{padding:.3rem;border-bottom:1px solid #eee}
"""


def _page(title: str, body: str, status: int = 200) -> Response[str]:
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        "<div class='banner'>Google sign-in stand-in: local test provider, no real accounts.</div>"
        f"<main><div class='logo'><span>G</span><span>o</span><span>o</span><span>g</span>"
        f"<span>l</span><span>e</span></div>{body}</main></body></html>"
    )
    return Response(
        html,
        status_code=status,
        media_type="text/html",
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def subject_for(email: str) -> str:
    """A stable, Google-like numeric subject for a test email."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return str(int(digest[:17], 16)).rjust(21, "1")[:21]


class OAuthError(Exception):
    """An RFC 6749 error answer of the token or userinfo endpoint."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass
class AuthRequest:
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    nonce: str
    code_challenge: str
    code_challenge_method: str
    login_hint: str
    created: float = field(default_factory=time.monotonic)


@dataclass
class Grant:
    request: AuthRequest
    email: str
    name: str
    email_verified: bool
    subject: str
    issued: float = field(default_factory=time.monotonic)
    used: bool = False


@dataclass
class Provider:
    client_id: str
    client_secret: str
    issuer: str | None
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    key_id: str = field(default_factory=lambda: "standin-" + secrets.token_hex(4))
    pending: dict[str, AuthRequest] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    access_tokens: dict[str, Grant] = field(default_factory=dict)
    #: The latest sign-ins, for the index page.
    history: list[tuple[str, str]] = field(default_factory=list)

    def issuer_for(self, request: Request[Any, Any, Any]) -> str:
        if self.issuer:
            return self.issuer.rstrip("/")
        return str(request.base_url).rstrip("/")

    def prune(self) -> None:
        now = time.monotonic()
        for key, pending in list(self.pending.items()):
            if now - pending.created > PENDING_TTL:
                del self.pending[key]
        for code, grant in list(self.codes.items()):
            if now - grant.issued > CODE_TTL * 5:
                del self.codes[code]
        for token, grant in list(self.access_tokens.items()):
            if now - grant.issued > TOKEN_TTL:
                del self.access_tokens[token]
        # A local tool still must not grow without bound if something hammers it.
        for store in (self.pending, self.codes, self.access_tokens):
            while len(store) > MAX_ENTRIES:
                store.pop(next(iter(store)))

    def jwks(self) -> dict[str, Any]:
        jwk = dict(RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True))
        jwk.update({"kid": self.key_id, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def id_token(self, grant: Grant, issuer: str, access_token: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "azp": grant.request.client_id,
            "aud": grant.request.client_id,
            "sub": grant.subject,
            "email": grant.email,
            "email_verified": grant.email_verified,
            "name": grant.name,
            "iat": now,
            "exp": now + TOKEN_TTL,
            # Google's at_hash: the left half of the access token's SHA-256.
            "at_hash": _b64url(hashlib.sha256(access_token.encode()).digest()[:16]),
        }
        if grant.request.nonce:
            claims["nonce"] = grant.request.nonce
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.key_id})


def _provider(request: Request[Any, Any, Any]) -> Provider:
    provider: Provider = request.app.state.provider
    return provider


def _valid_redirect(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment


def _redirect_with(uri: str, params: dict[str, str]) -> Redirect:
    separator = "&" if urlsplit(uri).query else "?"
    return Redirect(uri + separator + urlencode(params), status_code=302)


@get("/", summary="What this stand-in is", include_in_schema=False)
async def index(request: Request[Any, Any, Any]) -> Response[str]:
    provider = _provider(request)
    issuer = provider.issuer_for(request)
    rows = "".join(
        f"<tr><td>{escape(email)}</td><td>{escape(client)}</td></tr>"
        for email, client in reversed(provider.history[-20:])
    )
    body = (
        "<h1>OIDC stand-in</h1><p>Ember's local Google sign-in.</p>"
        f"<p>Issuer <code>{escape(issuer)}</code><br>Client id <code>{escape(provider.client_id)}</code></p>"
        f"<p><a href='{escape(issuer)}/.well-known/openid-configuration'>Discovery document</a></p>"
        + (f"<h1>Recent sign-ins</h1><table>{rows}</table>" if rows else "")
    )
    return _page("OIDC stand-in", body)


@get("/.well-known/openid-configuration", summary="Discovery document")
async def discovery(request: Request[Any, Any, Any]) -> dict[str, Any]:
    issuer = _provider(request).issuer_for(request)
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "name", "sub"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "grant_types_supported": ["authorization_code"],
    }


@get("/jwks", summary="The keys ID tokens are signed with")
async def jwks(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return _provider(request).jwks()


@get("/authorize", summary="Ask the user to sign in", include_in_schema=False)
async def authorize(request: Request[Any, Any, Any]) -> Response[Any]:
    provider = _provider(request)
    provider.prune()
    query = {k: v[:2048] for k, v in request.query_params.items()}
    client_id = query.get("client_id", "")
    redirect_uri = query.get("redirect_uri", "")
    # Never send the browser to an address we cannot vouch for: these two fail on the page.
    if client_id != provider.client_id:
        return _page(
            "Error", "<p class='error'>Error 401: invalid_client. Unknown client_id.</p>", 401
        )
    if not _valid_redirect(redirect_uri):
        return _page("Error", "<p class='error'>Error 400: redirect_uri_mismatch.</p>", 400)
    state = query.get("state", "")
    fail = {"state": state} if state else {}
    if query.get("response_type") != "code":
        return _redirect_with(redirect_uri, {"error": "unsupported_response_type", **fail})
    if "openid" not in query.get("scope", "").split():
        return _redirect_with(
            redirect_uri, {"error": "invalid_scope", "error_description": "openid required", **fail}
        )
    method = query.get("code_challenge_method", "plain" if query.get("code_challenge") else "")
    if method not in ("", "plain", "S256"):
        return _redirect_with(redirect_uri, {"error": "invalid_request", **fail})
    auth = AuthRequest(
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=query.get("scope", ""),
        state=state,
        nonce=query.get("nonce", ""),
        code_challenge=query.get("code_challenge", ""),
        code_challenge_method=method,
        login_hint=query.get("login_hint", ""),
    )
    if query.get("standin_approve") in ("1", "true"):
        if not auth.login_hint:
            return _redirect_with(
                redirect_uri,
                {"error": "login_required", "error_description": "login_hint needed", **fail},
            )
        return _approve(
            provider,
            auth,
            email=auth.login_hint,
            name=query.get("standin_name", ""),
            verified=query.get("standin_email_verified", "true") != "false",
            subject=query.get("standin_sub", ""),
        )
    request_id = secrets.token_urlsafe(16)
    provider.pending[request_id] = auth
    email = escape(auth.login_hint or "shopper@example.com")
    body = f"""
      <h1>Sign in</h1><p>to continue to <b>Ember</b></p>
      <form method='post' action='authorize/decision'>
        <input type='hidden' name='request_id' value='{request_id}'>
        <label for='email'>Email (any test address)</label>
        <input id='email' type='email' name='email' value='{email}' required maxlength='254'>
        <label for='name'>Name</label>
        <input id='name' type='text' name='name' value='Test Shopper' maxlength='120'>
        <label class='check'><input type='checkbox' name='email_verified' value='true' checked>
          Google has verified this email</label>
        <div class='actions'>
          <button class='secondary' name='action' value='deny'>Cancel</button>
          <button class='primary' name='action' value='approve'>Continue</button>
        </div>
      </form>"""
    return _page("Sign in - Google accounts (stand-in)", body)


@post(
    "/authorize/decision", summary="The user's answer on the sign-in page", include_in_schema=False
)
async def decision(request: Request[Any, Any, Any]) -> Response[Any]:
    provider = _provider(request)
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return _page("Error", "<p class='error'>Form too large.</p>", 413)
    form = dict(parse_qsl(raw.decode("utf-8", "replace")))
    auth = provider.pending.pop(form.get("request_id", ""), None)
    if auth is None:
        return _page("Error", "<p class='error'>This sign-in has expired. Start again.</p>", 400)
    if form.get("action") != "approve":
        params = {"error": "access_denied"}
        if auth.state:
            params["state"] = auth.state
        return _redirect_with(auth.redirect_uri, params)
    email = form.get("email", "").strip()
    if "@" not in email or len(email) > 254:
        provider.pending[form.get("request_id", "")] = auth
        return _page(
            "Error", "<p class='error'>Enter an email address. Go back and retry.</p>", 400
        )
    return _approve(
        provider,
        auth,
        email=email,
        name=form.get("name", "")[:120],
        verified=form.get("email_verified") == "true",
        subject="",
    )


def _approve(
    provider: Provider, auth: AuthRequest, *, email: str, name: str, verified: bool, subject: str
) -> Redirect:
    code = secrets.token_urlsafe(32)
    provider.codes[code] = Grant(
        request=auth,
        email=email,
        name=name or email.split("@", 1)[0].replace(".", " ").title(),
        email_verified=verified,
        subject=subject[:255] or subject_for(email),
    )
    provider.history.append((email, auth.client_id))
    del provider.history[:-100]
    params = {"code": code, "scope": auth.scope}
    if auth.state:
        params["state"] = auth.state
    return _redirect_with(auth.redirect_uri, params)


def _client_credentials(request: Request[Any, Any, Any], form: dict[str, str]) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise OAuthError("invalid_client", "Malformed Basic credentials.", 401) from exc
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    return form.get("client_id", ""), form.get("client_secret", "")


def _pkce_ok(grant: Grant, verifier: str) -> bool:
    challenge = grant.request.code_challenge
    if not grant.request.code_challenge_method:
        return not verifier
    if not verifier or not 43 <= len(verifier) <= 128:
        return False
    if grant.request.code_challenge_method == "S256":
        computed = _b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
    else:
        computed = verifier
    return hmac.compare_digest(computed.encode(), challenge.encode())


@post("/token", summary="Exchange an authorization code", status_code=200)
async def token(request: Request[Any, Any, Any]) -> Response[Any]:
    provider = _provider(request)
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "Body too large.")
    form = dict(parse_qsl(raw.decode("utf-8", "replace")))
    client_id, secret = _client_credentials(request, form)
    if not (
        hmac.compare_digest(client_id.encode(), provider.client_id.encode())
        and hmac.compare_digest(secret.encode(), provider.client_secret.encode())
    ):
        raise OAuthError(
            "invalid_client", "The OAuth client was not found or the secret is wrong.", 401
        )
    if form.get("grant_type") != "authorization_code":
        raise OAuthError("unsupported_grant_type", "Only authorization_code is supported.")
    grant = provider.codes.get(form.get("code", ""))
    if grant is None or grant.used or time.monotonic() - grant.issued > CODE_TTL:
        raise OAuthError("invalid_grant", "Malformed, expired or already used authorization code.")
    # Single use, even when this attempt fails below: a code is never tried twice.
    grant.used = True
    if grant.request.client_id != client_id:
        raise OAuthError("invalid_grant", "The code was issued to another client.")
    if form.get("redirect_uri", "") != grant.request.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request.")
    if not _pkce_ok(grant, form.get("code_verifier", "")):
        raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge.")
    access_token = "standin." + secrets.token_urlsafe(32)
    provider.access_tokens[access_token] = grant
    body = {
        "access_token": access_token,
        "expires_in": TOKEN_TTL - 1,
        "id_token": provider.id_token(grant, provider.issuer_for(request), access_token),
        "scope": grant.request.scope,
        "token_type": "Bearer",
    }
    return Response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@get("/userinfo", summary="Claims about the signed-in user")
async def userinfo(request: Request[Any, Any, Any]) -> dict[str, Any]:
    provider = _provider(request)
    header = request.headers.get("authorization", "")
    grant = (
        provider.access_tokens.get(header[7:].strip())
        if header.lower().startswith("bearer ")
        else None
    )
    if grant is None:
        raise OAuthError("invalid_token", "Invalid or missing access token.", 401)
    return {
        "sub": grant.subject,
        "email": grant.email,
        "email_verified": grant.email_verified,
        "name": grant.name,
    }


def _on_oauth_error(_: Request[Any, Any, Any], exc: OAuthError) -> Response[Any]:
    headers = {"Cache-Control": "no-store"}
    if exc.status == 401:
        headers["WWW-Authenticate"] = f'Bearer error="{exc.error}"'
    return Response(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers=headers,
    )


def _on_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return Response(
        {"error": "invalid_request", "error_description": str(exc.detail)},
        status_code=exc.status_code,
    )


def create_app(
    *,
    issuer: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> Litestar:
    provider = Provider(
        client_id=client_id or env_str("OIDC_STANDIN_CLIENT_ID", DEFAULT_CLIENT_ID),
        client_secret=client_secret or env_str("OIDC_STANDIN_CLIENT_SECRET", DEFAULT_CLIENT_SECRET),
        issuer=issuer or env_str("OIDC_STANDIN_ISSUER") or None,
    )
    app = Litestar(
        route_handlers=[index, discovery, jwks, authorize, decision, token, userinfo],
        exception_handlers={OAuthError: _on_oauth_error, HTTPException: _on_http},
        openapi_config=None,
        request_max_body_size=1_048_576,
        debug=False,
    )
    app.state.provider = provider
    return app
