"""Signing in and out, signing up (and opening the emailed link), and the password-reset pair,
over identity's routes.

Identity sets its cookies (access token, session, CSRF) on its answers; the storefront relays them
to the browser unchanged, so a sign-in here is the same session every service sees.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any
from urllib.parse import urlencode

from ember_shared.cookies import ACCESS_COOKIE, CSRF_COOKIE, SESSION_COOKIE
from litestar import Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Redirect

from storefront.api import Api, ApiProblem, Visitor
from storefront.forms import Form
from storefront.messages import SIGN_UP_LINK_INVALID, friendly
from storefront.web import redirect, render, safe_next

Next = Annotated[str | None, Parameter(query="next", max_length=500)]
Refusal = Annotated[str | None, Parameter(query="error", max_length=100)]
MIN_PASSWORD = 10
FORGOT_DONE = (
    "If an account exists for that address, we have sent it a link to choose a new password. "
    "The link works once, for 30 minutes."
)


#: Why identity sent a Google sign-in back (``/sign-in?error=google-<reason>``), as a shopper reads
#: it. Anything else in ``error`` is shown as the generic sentence, never echoed.
GOOGLE_REFUSALS = {
    "cancelled": "You cancelled signing in with Google. Sign in another way, or try Google again.",
    "account-disabled": "This account has been disabled. Write to us if you think that is a mistake.",
    "email-not-verified": (
        "Google has not verified that email address yet, so we cannot sign you in with it."
    ),
    "bad-email": "Google did not tell us a usable email address. Sign in another way.",
    "bad-state": "That Google sign-in took too long or was started elsewhere. Please try again.",
    "provider-unavailable": (
        "Google sign-in is not available just now. Sign in with your password, or try again soon."
    ),
    "provider-mismatch": (
        "Google sign-in is not available just now. Sign in with your password, or try again soon."
    ),
}
GOOGLE_FAILED = "Google could not sign you in. Please try again, or sign in another way."


def google_refusal(error: str | None) -> str:
    if not error or not error.startswith("google-"):
        return ""
    return GOOGLE_REFUSALS.get(error.removeprefix("google-"), GOOGLE_FAILED)


def _google_url(next_path: str) -> str:
    return "/api/auth/google/login?" + urlencode({"next": next_path})


@get("/signin", name="signin", include_in_schema=False, cache=False)
async def signin_page(
    request: Request[Any, Any, Any], visitor: Visitor, next_path: Next = None, error: Refusal = None
) -> Response[Any]:
    target = safe_next(next_path)
    if visitor.signed_in:
        return redirect(request, target)
    return render(
        request,
        "auth/signin.html",
        {
            "next": target,
            "email": "",
            "error": google_refusal(error),
            "google_url": _google_url(target),
            "title": "Sign in",
        },
    )


@get(["/sign-in", "/login"], name="signin-alias", include_in_schema=False, cache=False)
async def signin_alias(next_path: Next = None, error: Refusal = None) -> Redirect:
    """``make run`` prints /sign-in and identity sends refused Google sign-ins there: one page,
    with where the shopper was going and why Google sent them back."""
    params = {"next": safe_next(next_path)}
    if error:
        params["error"] = error
    return Redirect(f"/signin?{urlencode(params)}", status_code=302)


@post("/signin", name="signin-post", include_in_schema=False)
async def signin(request: Request[Any, Any, Any], api: Api) -> Response[Any]:
    form = await Form.of(request)
    email = form.text("email", 254)
    password = form.text("password", 1024)
    target = safe_next(form.text("next", 500))
    error = ""
    if not email or not password:
        error = "Give your email and password."
    else:
        try:
            await api.post(
                "identity",
                "/api/auth/login",
                json={"email": email, "password": password},
                bearer=False,
                # Identity ends the session this browser held before (as the API sign-in does).
                cookies=(SESSION_COOKIE,),
            )
        except ApiProblem as problem:
            error = friendly(problem)
    if error:
        return render(
            request,
            "auth/signin.html",
            {
                "next": target,
                "email": email,
                "error": error,
                "google_url": _google_url(target),
                "title": "Sign in",
            },
            status=400 if not email or not password else 401,
        )
    api.forget_visitor()
    return redirect(request, target, flash="signed-in")


@get("/register", name="register", include_in_schema=False, cache=False)
async def register_page(
    request: Request[Any, Any, Any], visitor: Visitor, next_path: Next = None
) -> Response[Any]:
    target = safe_next(next_path)
    if visitor.signed_in:
        return redirect(request, target)
    return render(
        request,
        "auth/register.html",
        {
            "next": target,
            "values": {},
            "errors": {},
            "error": "",
            "min_password": MIN_PASSWORD,
            "google_url": _google_url(target),
            "title": "Create an account",
        },
    )


@post("/register", name="register-post", include_in_schema=False)
async def register(request: Request[Any, Any, Any], api: Api) -> Response[Any]:
    form = await Form.of(request)
    values = {"name": form.text("name", 120), "email": form.text("email", 254)}
    password = form.text("password", 1024)
    target = safe_next(form.text("next", 500))
    errors: dict[str, str] = {}
    if "@" not in values["email"]:
        errors["email"] = "Give a valid email address."
    if len(password) < MIN_PASSWORD:
        errors["password"] = f"Use at least {MIN_PASSWORD} characters."
    error = ""
    if not errors:
        try:
            await api.post(
                "identity",
                "/api/auth/register",
                json={"email": values["email"], "password": password, "name": values["name"]},
                bearer=False,
                cookies=(),
            )
        except ApiProblem as problem:
            error = friendly(problem)
            if problem.kind == "weak-password":
                errors["password"] = error
                error = ""
            else:
                errors.update(problem.field_errors())
    if errors or error:
        return render(
            request,
            "auth/register.html",
            {
                "next": target,
                "values": values,
                "errors": errors,
                "error": error or "Some fields need another look.",
                "min_password": MIN_PASSWORD,
                "google_url": _google_url(target),
                "title": "Create an account",
            },
            status=400,
        )
    # The same page whether or not the address already has an account: the mail tells.
    return render(
        request,
        "auth/check_email.html",
        {"email": values["email"], "title": "Check your email"},
    )


@get("/verify-email", name="verify-email", include_in_schema=False, cache=False)
async def verify_email_page(
    request: Request[Any, Any, Any], token: Annotated[str, Parameter(max_length=200)] = ""
) -> Response[str]:
    """The link in the sign-up mail lands here. Only the button's POST uses the link, so a mail
    scanner that fetches every link does not spend it."""
    return render(
        request, "auth/verify_email.html", {"token": token, "error": "", "title": "Confirm"}
    )


@post("/verify-email", name="verify-email-post", include_in_schema=False)
async def verify_email(request: Request[Any, Any, Any], api: Api) -> Response[Any]:
    form = await Form.of(request)
    token = form.text("token", 200)
    error = ""
    if not token:
        error = "This page needs the link from your email. Sign up again if it is lost."
    else:
        try:
            await api.post(
                "identity",
                "/api/auth/verify-email",
                json={"token": token},
                bearer=False,
                cookies=(),
            )
        except ApiProblem as problem:
            error = friendly(problem)
            if problem.kind == "validation":
                error = SIGN_UP_LINK_INVALID
    if error:
        return render(
            request,
            "auth/verify_email.html",
            {"token": "", "error": error, "title": "Confirm"},
            status=400,
        )
    api.forget_visitor()
    return redirect(request, "/account", flash="registered")


@post("/signout", name="signout", include_in_schema=False)
async def signout(request: Request[Any, Any, Any], api: Api, visitor: Visitor) -> Response[Any]:
    # Signed out already, or identity is away: the browser's cookies go all the same.
    with contextlib.suppress(ApiProblem):
        await api.post(
            "identity", "/api/auth/logout", json={}, cookies=(SESSION_COOKIE, CSRF_COOKIE)
        )
    response = redirect(request, "/", flash="signed-out")
    for name in (ACCESS_COOKIE, SESSION_COOKIE, CSRF_COOKIE):
        if name not in api.outgoing:
            response.delete_cookie(name, path="/")
    return response


@get("/forgot-password", name="forgot", include_in_schema=False, cache=False)
async def forgot_page(request: Request[Any, Any, Any], visitor: Visitor) -> Response[str]:
    return render(
        request,
        "auth/forgot.html",
        {"sent": False, "email": "", "error": "", "title": "Forgot your password?"},
    )


@post("/forgot-password", name="forgot-post", include_in_schema=False)
async def forgot(request: Request[Any, Any, Any], api: Api) -> Response[str]:
    form = await Form.of(request)
    email = form.text("email", 254)
    if "@" not in email:
        return render(
            request,
            "auth/forgot.html",
            {
                "sent": False,
                "email": email,
                "error": "Give a valid email address.",
                "title": "Forgot your password?",
            },
            status=400,
        )
    error = ""
    try:
        await api.post(
            "identity",
            "/api/auth/forgot-password",
            json={"email": email},
            bearer=False,
            cookies=(),
        )
    except ApiProblem as problem:
        # The answer never says whether the account exists; only a refusal to try is shown.
        if problem.status in (429, 503) or problem.status >= 500:
            error = friendly(problem)
    return render(
        request,
        "auth/forgot.html",
        {
            "sent": not error,
            "message": FORGOT_DONE,
            "email": email,
            "error": error,
            "title": "Forgot your password?",
        },
        status=429 if error else 200,
    )


@get("/reset-password", name="reset", include_in_schema=False, cache=False)
async def reset_page(
    request: Request[Any, Any, Any],
    visitor: Visitor,
    token: Annotated[str, Parameter(max_length=200)] = "",
) -> Response[str]:
    return render(
        request,
        "auth/reset.html",
        {
            "token": token,
            "error": "",
            "min_password": MIN_PASSWORD,
            "title": "Choose a new password",
        },
    )


@post("/reset-password", name="reset-post", include_in_schema=False)
async def reset(request: Request[Any, Any, Any], api: Api) -> Response[Any]:
    form = await Form.of(request)
    token = form.text("token", 200)
    password = form.text("password", 1024)
    confirm = form.text("confirm", 1024)
    error = ""
    if not token:
        error = "This page needs the link from your email. Ask for a new one if it is lost."
    elif len(password) < MIN_PASSWORD:
        error = f"Use at least {MIN_PASSWORD} characters."
    elif password != confirm:
        error = "The two passwords are not the same."
    else:
        try:
            await api.post(
                "identity",
                "/api/auth/reset-password",
                json={"token": token, "password": password},
                bearer=False,
                cookies=(),
            )
        except ApiProblem as problem:
            error = friendly(problem)
            if problem.kind == "validation":
                error = "That reset link is not valid. Ask for a new one."
    if error:
        return render(
            request,
            "auth/reset.html",
            {
                "token": token,
                "error": error,
                "min_password": MIN_PASSWORD,
                "title": "Choose a new password",
            },
            status=400,
        )
    return redirect(request, "/signin", flash="password-reset")


ROUTES = [
    signin_page,
    signin_alias,
    signin,
    register_page,
    register,
    verify_email_page,
    verify_email,
    signout,
    forgot_page,
    forgot,
    reset_page,
    reset,
]
