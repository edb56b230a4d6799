"""The hosted pay page: what Stripe Checkout shows the shopper, in miniature.

``GET /pay/{session}`` shows the lines, the total and a card form; ``POST /pay/{session}`` takes
the card. A test card that succeeds completes the session and redirects to its success URL (the
webhook tells the shop); one that declines shows the error and leaves the session open.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request, Response, Router, get, post
from litestar.response import Redirect

from standins.stripe import billing
from standins.stripe.errors import StripeError
from standins.stripe.store import Store

MAX_FORM_BYTES = 16_384

_STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;background:#f6f9fc;color:#30313d;margin:0}
main{max-width:880px;margin:40px auto;display:flex;gap:40px;flex-wrap:wrap;padding:0 16px}
section{flex:1 1 360px} h1{font-size:1.1rem;color:#6a7383;font-weight:500}
.total{font-size:2rem;font-weight:600;margin:.2rem 0 1.5rem}
.line{display:flex;justify-content:space-between;padding:.45rem 0;border-bottom:1px solid #e6ebf1}
.muted{color:#6a7383;font-size:.9rem}
form{background:#fff;border-radius:8px;padding:24px;box-shadow:0 2px 5px rgba(60,66,87,.08)}
label{display:block;font-size:.85rem;margin:.8rem 0 .3rem}
input{width:100%;box-sizing:border-box;padding:.6rem;border:1px solid #d5dbe1;border-radius:6px;font-size:1rem}
.row{display:flex;gap:12px} .row>div{flex:1}
button{margin-top:1.2rem;width:100%;padding:.8rem;border:0;border-radius:6px;background:#0074d4;
color:#fff;font-size:1rem;font-weight:600;cursor:pointer}
.error{background:#fde8e8;color:#b42318;padding:.7rem;border-radius:6px;margin-bottom:1rem}
table{border-collapse:collapse;width:100%;font-size:.85rem} td,th{text-align:left;padding:.3rem;border-bottom:1px solid #e6ebf1}
.banner{background:#fff4e5;color:#8a4b00;padding:.5rem 1rem;text-align:center;font-size:.85rem}
"""


def _money(amount: int, currency: str) -> str:
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency.lower(), currency.upper() + " ")
    return f"{symbol}{amount // 100:,}.{amount % 100:02d}"


def _page(title: str, body: str, status: int = 200) -> Response[str]:
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        "<div class='banner'>Stripe stand-in: test mode. Use card 4242 4242 4242 4242 to pay, "
        "4000 0000 0000 0002 to be declined.</div>"
        f"{body}</body></html>"
    )
    return Response(
        html,
        status_code=status,
        media_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            # The form posts here, then redirects to the shop's success URL: form-action must
            # allow that other origin, or the browser stops the redirect.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "form-action 'self' http: https:; img-src * data:",
        },
    )


def _store(request: Request[Any, Any, Any]) -> Store:
    store: Store = request.app.state.store
    return store


def render_pay_page(
    store: Store, session: dict[str, Any], error: str = "", status: int = 200
) -> Response[str]:
    currency = session["currency"]
    lines = "".join(
        f"<div class='line'><span>{escape(str(item['description']))} &times; {int(item['quantity'])}</span>"
        f"<span>{_money(int(item['amount_subtotal']), currency)}</span></div>"
        for item in store.session_line_items(session["id"])
    )
    details = session.get("total_details") or {}
    shipping = details.get("amount_shipping", 0)
    if details.get("amount_discount"):
        lines += (
            "<div class='line' id='discount'><span>Discount</span>"
            f"<span>-{_money(int(details['amount_discount']), currency)}</span></div>"
        )
    if session.get("shipping_cost"):
        lines += (
            f"<div class='line'><span>{escape(str(session['shipping_cost'].get('display_name') or 'Shipping'))}"
            f"</span><span>{_money(int(shipping), currency)}</span></div>"
        )
    if (session.get("automatic_tax") or {}).get("enabled"):
        lines += (
            "<div class='line' id='tax'><span>Tax</span>"
            f"<span>{_money(int(details.get('amount_tax') or 0), currency)}</span></div>"
        )
    if session.get("mode") == "subscription":
        items = store.session_line_items(session["id"])
        recurring = (items[0]["price"].get("recurring") if items else None) or {}
        count = int(recurring.get("interval_count") or 1)
        unit = str(recurring.get("interval") or "month")
        every = unit if count == 1 else f"{count} {unit}s"
        lines += (
            f"<p class='muted' id='recurring'>Subscription: billed every {escape(every)} "
            "until canceled.</p>"
        )
    email = escape(str(session.get("customer_email") or ""))
    error_html = (
        f"<div class='error' role='alert' id='card-errors'>{escape(error)}</div>" if error else ""
    )
    cancel = (
        f"<p><a href='{escape(str(session['cancel_url']), quote=True)}' id='cancel'>← Back</a></p>"
        if session.get("cancel_url")
        else ""
    )
    body = f"""
<main>
  <section>
    {cancel}
    <h1>Pay Ember</h1>
    <div class='total' id='total'>{_money(int(session["amount_total"]), currency)}</div>
    {lines}
    <div class='line'><strong>Total due</strong>
      <strong>{_money(int(session["amount_total"]), currency)}</strong></div>
  </section>
  <section>
    <form method='post' action='/pay/{escape(session["id"], quote=True)}' id='payment-form'>
      {error_html}
      <label for='email'>Email</label>
      <input id='email' name='email' type='email' value='{email}' autocomplete='email'>
      <label for='cardNumber'>Card number</label>
      <input id='cardNumber' name='card_number' inputmode='numeric' autocomplete='cc-number'
             placeholder='1234 1234 1234 1234' required>
      <div class='row'>
        <div><label for='cardExpiry'>Expiry</label>
          <input id='cardExpiry' name='exp' placeholder='MM / YY' value='12 / 34'></div>
        <div><label for='cardCvc'>CVC</label>
          <input id='cardCvc' name='cvc' placeholder='CVC' value='123'></div>
      </div>
      <label for='billingName'>Name on card</label>
      <input id='billingName' name='name' autocomplete='cc-name'>
      <button type='submit' id='submit'>Pay {_money(int(session["amount_total"]), currency)}</button>
      <p class='muted'>Session expires at {int(session["expires_at"])} (unix time).</p>
    </form>
  </section>
</main>"""
    return _page("Pay Ember", body, status)


def _closed_page(session: dict[str, Any], store: Store) -> Response[str]:
    if session["status"] == "complete":
        target = escape(store.success_redirect(session), quote=True)
        return _page(
            "Already paid",
            f"<main><section><h1>This session is complete.</h1>"
            f"<p><a href='{target}' id='continue'>Continue</a></p></section></main>",
        )
    back = (
        f"<p><a href='{escape(str(session['cancel_url']), quote=True)}'>Return to the shop</a></p>"
        if session.get("cancel_url")
        else ""
    )
    return _page(
        "Expired",
        f"<main><section><h1 id='expired'>This checkout session has expired.</h1>"
        f"{back}</section></main>",
        410,
    )


@get("/pay/{session_id:str}", summary="Hosted pay page")
async def pay_page(request: Request[Any, Any, Any], session_id: str) -> Response[str]:
    store = _store(request)
    try:
        session = store.session(session_id)
    except StripeError:
        return _page(
            "Not found", "<main><section><h1>No such checkout session.</h1></section></main>", 404
        )
    if session["status"] != "open":
        return _closed_page(session, store)
    return render_pay_page(store, session)


@post("/pay/{session_id:str}", summary="Submit the card form", status_code=200)
async def pay_submit(request: Request[Any, Any, Any], session_id: str) -> Response[Any]:
    store = _store(request)
    try:
        session = store.session(session_id)
    except StripeError:
        return _page(
            "Not found", "<main><section><h1>No such checkout session.</h1></section></main>", 404
        )
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return render_pay_page(store, session, "The form is too large.", 413)
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    cvc = "".join(ch for ch in form.get("cvc", "") if ch.isdigit())
    if len(cvc) not in (3, 4):
        return render_pay_page(store, session, "Your card's security code is incomplete.", 402)
    result = store.pay(
        session_id,
        form.get("card_number", ""),
        email=form.get("email", "")[:200],
        name=form.get("name", "")[:200],
    )
    request.app.state.runtime.after_pay(session_id, result)
    if result.redirect_url:
        return Redirect(result.redirect_url, status_code=303)
    if result.outcome == "expired":
        return _closed_page(store.session(session_id), store)
    return render_pay_page(store, store.session(session_id), result.message, 402)


def _portal_page(
    store: Store, portal: dict[str, Any] | None, error: str = "", status: int = 200
) -> Response[str]:
    """The customer portal, in miniature: the card on file and a form to replace it."""
    if portal is None:
        return _page(
            "Expired",
            "<main><section><h1 id='expired'>This portal session has expired.</h1>"
            "<p>Go back to the shop and open it again.</p></section></main>",
            410,
        )
    last4 = billing.customer_card(store, portal["customer"])
    back = (
        f"<p><a href='{escape(str(portal['return_url']), quote=True)}' id='return'>"
        "← Return to the shop</a></p>"
        if portal.get("return_url")
        else ""
    )
    error_html = (
        f"<div class='error' role='alert' id='card-errors'>{escape(error)}</div>" if error else ""
    )
    body = f"""
<main>
  <section>
    {back}
    <h1>Ember: payment method</h1>
    <p id='current-card'>{"Card on file: •••• " + escape(last4) if last4 else "No card on file."}</p>
  </section>
  <section>
    <form method='post' action='/billing/{escape(portal["id"], quote=True)}' id='card-form'>
      {error_html}
      <label for='cardNumber'>New card number</label>
      <input id='cardNumber' name='card_number' inputmode='numeric' autocomplete='cc-number'
             placeholder='1234 1234 1234 1234' required>
      <div class='row'>
        <div><label for='cardExpiry'>Expiry</label>
          <input id='cardExpiry' name='exp' placeholder='MM / YY' value='12 / 34'></div>
        <div><label for='cardCvc'>CVC</label>
          <input id='cardCvc' name='cvc' placeholder='CVC' value='123'></div>
      </div>
      <button type='submit' id='submit'>Update card</button>
    </form>
  </section>
</main>"""
    return _page("Ember: payment method", body, status)


@get("/billing/{portal_id:str}", summary="Hosted customer portal")
async def portal_page(request: Request[Any, Any, Any], portal_id: str) -> Response[str]:
    store = _store(request)
    return _portal_page(store, billing.portal_session(store, portal_id))


@post("/billing/{portal_id:str}", summary="Save a new card in the portal", status_code=200)
async def portal_submit(request: Request[Any, Any, Any], portal_id: str) -> Response[Any]:
    store = _store(request)
    portal = billing.portal_session(store, portal_id)
    if portal is None:
        return _portal_page(store, None)
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return _portal_page(store, portal, "The form is too large.", 413)
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    cvc = "".join(ch for ch in form.get("cvc", "") if ch.isdigit())
    if len(cvc) not in (3, 4):
        return _portal_page(store, portal, "Your card's security code is incomplete.", 402)
    error = billing.update_card(store, portal, form.get("card_number", ""))
    if error:
        return _portal_page(store, portal, error, 402)
    if portal.get("return_url"):
        return Redirect(str(portal["return_url"]), status_code=303)
    return _portal_page(store, portal)


def _when(timestamp: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(timestamp or 0)))


@get("/", summary="What the stand-in has seen")
async def dashboard(request: Request[Any, Any, Any]) -> Response[str]:
    store = _store(request)
    sessions = sorted(store.state.sessions.values(), key=lambda s: s["created"], reverse=True)[:50]
    session_rows = "".join(
        f"<tr><td><a href='/pay/{escape(s['id'], quote=True)}'>{escape(s['id'][:24])}...</a></td>"
        f"<td>{escape(str(s.get('client_reference_id') or ''))}</td>"
        f"<td>{_money(int(s['amount_total']), s['currency'])}</td><td>{escape(s['status'])}</td>"
        f"<td>{escape(s['payment_status'])}</td><td>{_when(s['created'])}</td></tr>"
        for s in sessions
    )
    deliveries = list(request.app.state.deliverer.log)[-50:][::-1]
    delivery_rows = "".join(
        f"<tr><td>{escape(d.event_type)}</td><td>{escape(d.event_id)}</td><td>{d.attempt}</td>"
        f"<td>{d.status_code if d.status_code is not None else escape(d.error[:60])}</td>"
        f"<td>{_when(d.at)}</td></tr>"
        for d in deliveries
    )
    body = f"""
<main><section>
  <h1>Stripe stand-in</h1>
  <p class='muted'>Test cards: 4242 4242 4242 4242 pays; 4000 0000 0000 0002 is declined;
  4000 0000 0000 3220 pays later (a delayed payment method). Webhooks go to
  <code>{escape(request.app.state.deliverer.url)}</code>.</p>
  <h1>Checkout Sessions</h1>
  <table><tr><th>session</th><th>order</th><th>total</th><th>status</th><th>payment</th><th>created (UTC)</th></tr>
  {session_rows or "<tr><td colspan='6'>none yet</td></tr>"}</table>
  <h1>Webhook deliveries</h1>
  <table><tr><th>type</th><th>event</th><th>attempt</th><th>answer</th><th>at (UTC)</th></tr>
  {delivery_rows or "<tr><td colspan='5'>none yet</td></tr>"}</table>
</section></main>"""
    return _page("Stripe stand-in", body)


pages_router = Router(
    path="/",
    route_handlers=[dashboard, pay_page, pay_submit, portal_page, portal_submit],
    include_in_schema=False,
)
