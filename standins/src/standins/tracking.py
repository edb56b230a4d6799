"""A local stand-in for 17track's tracking API (v2.x), for development and tests offline.

``uvicorn --factory standins.tracking:create_app --port 8204``

It speaks the calls Ember makes, with 17track's request and response shapes:

* ``POST /track/v2/register`` and ``POST /track/v2/gettrackinfo`` (also under ``/track/v2.2``
  and ``/track/v2.4``): a JSON array of ``{"number", "carrier"?}`` (at most 40), header ``17token``;
  answers ``{"code": 0, "data": {"accepted": [...], "rejected": [...]}}``.
* ``stoptrack``, ``retrack``, ``deletetrack`` and ``getquota``, so a client can be complete.

A registered number gets a believable parcel journey: label created, picked up, departed,
arrived at the destination hub, out for delivery, delivered. Each scan happens a few "stages"
after registration (``TRACKING_STANDIN_STAGE_SECONDS``, default 60 s, so a demo order arrives in
minutes); the cities and the exact spacing are derived from the number, so the same number always
tells the same story. Numbers containing ``NOTFOUND`` never get scans (the carrier does not know
them yet); numbers containing ``EXCEPTION`` stop at a customs hold.

Stand-in only, for tests and demos: ``GET /track?nums=...`` shows the timeline as a page (the
tracking link Ember shows in local mode), ``GET /`` lists the registered numbers and
``POST /standin/advance`` ``{"number", "seconds"}`` moves a parcel's clock forward (its later
scans then carry times ahead of the wall clock).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, Request, get, post
from litestar.response import Response

TOKEN_HEADER = "17token"  # noqa: S105 - a header name, not a secret
MAX_BATCH = 40
NUMBER_PATTERN = re.compile(r"^[A-Za-z0-9-]{5,50}$")
API_PREFIXES = ("/track/v2", "/track/v2.2", "/track/v2.4")

# 17track's error codes, as its documentation lists them.
ERR_INVALID_KEY = -18010002
ERR_BAD_REQUEST = -18010001
ERR_TOO_MANY = -18010013
ERR_BAD_NUMBER = -18010012
ERR_ALREADY_REGISTERED = -18019901
ERR_NOT_REGISTERED = -18019902
ERR_STOPPED = -18019906

#: 17track carrier keys the stand-in knows (the real list has thousands).
CARRIERS: dict[int, tuple[str, str, str]] = {
    100001: ("DHL Express", "DE", "https://www.dhl.com"),
    100002: ("UPS", "US", "https://www.ups.com"),
    100003: ("FedEx", "US", "https://www.fedex.com"),
    21051: ("USPS", "US", "https://www.usps.com"),
    11031: ("Royal Mail", "GB", "https://www.royalmail.com"),
    3041: ("Canada Post", "CA", "https://www.canadapost-postescanada.ca"),
    1151: ("Australia Post", "AU", "https://auspost.com.au"),
    3011: ("China Post", "CN", "https://www.ems.com.cn"),
}

#: (city, state, country) of sorting centres a parcel may pass through.
HUBS: tuple[tuple[str, str, str], ...] = (
    ("Louisville", "KY", "US"),
    ("Memphis", "TN", "US"),
    ("Indianapolis", "IN", "US"),
    ("Chicago", "IL", "US"),
    ("Dallas", "TX", "US"),
    ("Ontario", "CA", "US"),
    ("Newark", "NJ", "US"),
    ("Atlanta", "GA", "US"),
    ("Portland", "OR", "US"),
    ("Denver", "CO", "US"),
)

#: (stage, main status, sub status, description) in the order a parcel goes through them.
JOURNEY: tuple[tuple[str, str, str, str], ...] = (
    ("InfoReceived", "InfoReceived", "InfoReceived", "Shipping label created, awaiting item"),
    ("PickedUp", "InTransit", "InTransit_PickedUp", "Package picked up by the carrier"),
    ("Departure", "InTransit", "InTransit_Departure", "Departed from origin facility"),
    ("Arrival", "InTransit", "InTransit_Arrival", "Arrived at destination facility"),
    ("OutForDelivery", "OutForDelivery", "OutForDelivery_Other", "Out for delivery"),
    ("Delivered", "Delivered", "Delivered_Other", "Delivered, left at front door"),
)
CUSTOMS_HOLD = ("Exception", "Exception", "Exception_Other", "Held by customs, awaiting clearance")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Parcel:
    number: str
    carrier: int
    registered_at: dt.datetime
    tag: str = ""
    stopped: bool = False
    #: How far this parcel's clock runs ahead of the wall clock (``/standin/advance``); scans
    #: keep the times they were first reported with, as a real carrier's do.
    ahead_seconds: float = 0.0

    def now(self, clock: Callable[[], dt.datetime]) -> dt.datetime:
        return clock() + dt.timedelta(seconds=self.ahead_seconds)


@dataclass
class TrackingState:
    stage_seconds: float
    token: str
    clock: Callable[[], dt.datetime]
    parcels: dict[str, Parcel] = field(default_factory=dict)
    quota_total: int = 100_000
    quota_used: int = 0


def _digest(number: str) -> bytes:
    return hashlib.sha256(number.upper().encode()).digest()


def detect_carrier(number: str) -> int:
    """Pick a carrier key from the number's shape, as 17track's auto-detection would."""
    n = number.upper()
    if n.startswith("1Z"):
        return 100002
    if re.fullmatch(r"9\d{19,21}", n):
        return 21051
    if re.fullmatch(r"\d{12}|\d{15}", n):
        return 100003
    if re.fullmatch(r"\d{10}", n):
        return 100001
    if re.fullmatch(r"[A-Z]{2}\d{9}GB", n):
        return 11031
    if re.fullmatch(r"[A-Z]{2}\d{9}CN", n):
        return 3011
    keys = sorted(CARRIERS)
    return keys[_digest(n)[0] % len(keys)]


def _iso(moment: dt.datetime) -> tuple[str, str]:
    utc = moment.astimezone(dt.UTC).replace(microsecond=0)
    return utc.isoformat(), utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _address(hub: tuple[str, str, str] | None) -> dict[str, Any]:
    city, state, country = hub if hub else (None, None, None)
    return {
        "country": country,
        "state": state,
        "city": city,
        "street": None,
        "postal_code": None,
        "coordinates": {"longitude": None, "latitude": None},
    }


def journey(parcel: Parcel, stage_seconds: float) -> list[dict[str, Any]]:
    """Every scan of the parcel's journey with its due time, oldest first (due or not)."""
    digest = _digest(parcel.number)
    origin = HUBS[digest[1] % len(HUBS)]
    destination = HUBS[(digest[1] + 1 + digest[2] % (len(HUBS) - 1)) % len(HUBS)]
    steps = list(JOURNEY)
    if "EXCEPTION" in parcel.number.upper():
        steps = [*steps[:4], CUSTOMS_HOLD]
    places: list[tuple[str, str, str] | None] = [
        origin,
        origin,
        origin,
        destination,
        destination,
        destination,
    ]
    scans: list[dict[str, Any]] = []
    offset = 0.0
    for index, (stage, status, sub_status, description) in enumerate(steps):
        if index:
            # Each leg takes between 0.75 and 1.5 stages, fixed per number and leg.
            offset += stage_seconds * (0.75 + (digest[3 + index] / 255) * 0.75)
        due = parcel.registered_at + dt.timedelta(seconds=offset)
        place = places[min(index, len(places) - 1)]
        scans.append(
            {
                "due": due,
                "stage": stage,
                "status": status,
                "sub_status": sub_status,
                "description": description,
                "place": place,
            }
        )
    return scans


def _event(scan: dict[str, Any]) -> dict[str, Any]:
    time_iso, time_utc = _iso(scan["due"])
    place = scan["place"]
    return {
        "time_iso": time_iso,
        "time_utc": time_utc,
        "time_raw": {"date": time_utc[:10], "time": time_utc[11:19], "timezone": "+00:00"},
        "description": scan["description"],
        "description_translation": None,
        "location": ", ".join(place) if place else "",
        "stage": scan["stage"],
        "sub_status": scan["sub_status"],
        "address": _address(place),
    }


def track_info(parcel: Parcel, state: TrackingState) -> dict[str, Any]:
    """17track's ``track_info`` for a parcel as it stands now."""
    now = parcel.now(state.clock)
    scans = journey(parcel, state.stage_seconds)
    known = "NOTFOUND" not in parcel.number.upper()
    done = [s for s in scans if s["due"] <= now] if known else []
    events = [_event(s) for s in reversed(done)]  # 17track lists the newest first
    latest = done[-1] if done else None
    name, country, homepage = CARRIERS.get(parcel.carrier, ("Carrier", "US", ""))
    first_time = scans[0]["due"]
    last_time = scans[-1]["due"]
    window = dt.timedelta(seconds=max(state.stage_seconds, 1.0))
    eta_from, _ = _iso(last_time - window)
    eta_to, _ = _iso(last_time + window)
    sync_iso, _ = _iso(now)
    delivered = bool(latest and latest["status"] == "Delivered")
    return {
        "shipping_info": {
            "shipper_address": _address(scans[0]["place"]),
            "recipient_address": _address(scans[-1]["place"]),
        },
        "latest_status": {
            "status": latest["status"] if latest else "NotFound",
            "sub_status": latest["sub_status"] if latest else "NotFound_Other",
            "sub_status_descr": None,
        },
        "latest_event": _event(latest) if latest else None,
        "time_metrics": {
            "days_after_order": max(0, (now - first_time).days),
            "days_of_transit": max(0, (now - first_time).days),
            "days_of_transit_done": max(0, ((latest["due"] if latest else now) - first_time).days),
            "days_after_last_update": max(0, (now - latest["due"]).days) if latest else 0,
            "estimated_delivery_date": {
                "source": "Official" if known else None,
                "from": None if delivered or not known else eta_from,
                "to": None if delivered or not known else eta_to,
            },
        },
        "milestone": [
            {
                "key_stage": s["stage"],
                "time_iso": _iso(s["due"])[0] if s in done else None,
                "time_utc": _iso(s["due"])[1] if s in done else None,
                "time_raw": {"date": None, "time": None, "timezone": None},
            }
            for s in scans
        ],
        "misc_info": {
            "risk_factor": 0,
            "service_type": "Ground",
            "weight_raw": None,
            "weight_kg": None,
            "pieces": "1",
            "dimensions": None,
            "customer_number": None,
            "reference_number": None,
            "local_number": None,
            "local_provider": None,
            "local_key": 0,
        },
        "tracking": {
            "providers_hash": int.from_bytes(_digest(parcel.number)[:4], "big"),
            "providers": [
                {
                    "provider": {
                        "key": parcel.carrier,
                        "name": name,
                        "alias": name,
                        "tel": None,
                        "homepage": homepage,
                        "country": country,
                    },
                    "service_type": "Ground",
                    "latest_sync_status": "Success",
                    "latest_sync_time": sync_iso,
                    "events_hash": len(events),
                    "events": events,
                }
            ],
        },
    }


def _envelope(accepted: list[dict[str, Any]], rejected: list[dict[str, Any]]) -> dict[str, Any]:
    return {"code": 0, "data": {"accepted": accepted, "rejected": rejected}}


def _request_error(code: int, message: str, status: int = 200) -> Response[Any]:
    # 17track answers request-level errors with a non-zero code (and 200, except for the key).
    return Response(
        {"code": code, "data": {"errors": [{"code": code, "message": message}]}},
        status_code=status,
    )


def _rejection(number: str, code: int, message: str) -> dict[str, Any]:
    return {"number": number, "error": {"code": code, "message": message}}


async def _items(request: Request[Any, Any, Any]) -> list[dict[str, Any]] | Response[Any]:
    """The request's numbers, or the error 17track would answer (bad key, bad body)."""
    state: TrackingState = request.app.state.tracking
    given = request.headers.get(TOKEN_HEADER, "")
    if not given or (state.token and given != state.token):
        return _request_error(ERR_INVALID_KEY, "Invalid access key.", status=401)
    try:
        body = await request.json()
    except Exception:
        return _request_error(ERR_BAD_REQUEST, "The request body is not valid JSON.")
    if not isinstance(body, list) or not body:
        return _request_error(ERR_BAD_REQUEST, "The request must be a non-empty JSON array.")
    if len(body) > MAX_BATCH:
        return _request_error(ERR_TOO_MANY, f"At most {MAX_BATCH} numbers per request.")
    items: list[dict[str, Any]] = []
    for entry in body:
        if not isinstance(entry, dict) or not isinstance(entry.get("number"), str):
            return _request_error(ERR_BAD_REQUEST, "Each item needs a 'number' string.")
        items.append(entry)
    return items


def _valid_number(entry: dict[str, Any]) -> str | None:
    number = str(entry["number"]).strip()
    return number.upper() if NUMBER_PATTERN.fullmatch(number) else None


def _carrier_of(entry: dict[str, Any], number: str) -> int:
    carrier = entry.get("carrier")
    if isinstance(carrier, int) and carrier > 0:
        return carrier
    return detect_carrier(number)


def _batch(
    items: list[dict[str, Any]],
    state: TrackingState,
    act: Callable[[str, dict[str, Any]], dict[str, Any]],
) -> Response[Any]:
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for entry in items:
        number = _valid_number(entry)
        if number is None:
            raw = str(entry["number"])
            rejected.append(_rejection(raw, ERR_BAD_NUMBER, f"The format of '{raw}' is invalid."))
            continue
        outcome = act(number, entry)
        (rejected if "error" in outcome else accepted).append(outcome)
    return Response(_envelope(accepted, rejected))


def _registered(state: TrackingState, number: str) -> Parcel | dict[str, Any]:
    parcel = state.parcels.get(number)
    if parcel is None:
        return _rejection(
            number,
            ERR_NOT_REGISTERED,
            f"The tracking number '{number}' does not register, please register first.",
        )
    return parcel


@post([f"{p}/register" for p in API_PREFIXES], status_code=200, summary="Register numbers")
async def register(request: Request[Any, Any, Any]) -> Response[Any]:
    items = await _items(request)
    if isinstance(items, Response):
        return items
    state: TrackingState = request.app.state.tracking

    def act(number: str, entry: dict[str, Any]) -> dict[str, Any]:
        if number in state.parcels:
            return _rejection(
                number,
                ERR_ALREADY_REGISTERED,
                f"The tracking number '{number}' has been registered, don't need to repeat "
                "registration.",
            )
        parcel = Parcel(
            number=number,
            carrier=_carrier_of(entry, number),
            registered_at=state.clock(),
            tag=str(entry.get("tag") or "")[:100],
        )
        state.parcels[number] = parcel
        state.quota_used += 1
        origin = 2 if isinstance(entry.get("carrier"), int) else 1
        return {"origin": origin, "number": number, "carrier": parcel.carrier}

    return _batch(items, state, act)


@post([f"{p}/gettrackinfo" for p in API_PREFIXES], status_code=200, summary="Get tracking details")
async def get_track_info(request: Request[Any, Any, Any]) -> Response[Any]:
    items = await _items(request)
    if isinstance(items, Response):
        return items
    state: TrackingState = request.app.state.tracking

    def act(number: str, entry: dict[str, Any]) -> dict[str, Any]:
        parcel = _registered(state, number)
        if isinstance(parcel, dict):
            return parcel
        return {
            "number": number,
            "carrier": parcel.carrier,
            "param": None,
            "tag": parcel.tag,
            "track_info": track_info(parcel, state),
        }

    return _batch(items, state, act)


@post([f"{p}/stoptrack" for p in API_PREFIXES], status_code=200, summary="Stop tracking")
async def stop_track(request: Request[Any, Any, Any]) -> Response[Any]:
    items = await _items(request)
    if isinstance(items, Response):
        return items
    state: TrackingState = request.app.state.tracking

    def act(number: str, entry: dict[str, Any]) -> dict[str, Any]:
        parcel = _registered(state, number)
        if isinstance(parcel, dict):
            return parcel
        parcel.stopped = True
        return {"number": number, "carrier": parcel.carrier}

    return _batch(items, state, act)


@post([f"{p}/retrack" for p in API_PREFIXES], status_code=200, summary="Restart tracking")
async def retrack(request: Request[Any, Any, Any]) -> Response[Any]:
    items = await _items(request)
    if isinstance(items, Response):
        return items
    state: TrackingState = request.app.state.tracking

    def act(number: str, entry: dict[str, Any]) -> dict[str, Any]:
        parcel = _registered(state, number)
        if isinstance(parcel, dict):
            return parcel
        if not parcel.stopped:
            return _rejection(number, ERR_STOPPED, f"The tracking number '{number}' is active.")
        parcel.stopped = False
        return {"number": number, "carrier": parcel.carrier}

    return _batch(items, state, act)


@post([f"{p}/deletetrack" for p in API_PREFIXES], status_code=200, summary="Delete numbers")
async def delete_track(request: Request[Any, Any, Any]) -> Response[Any]:
    items = await _items(request)
    if isinstance(items, Response):
        return items
    state: TrackingState = request.app.state.tracking

    def act(number: str, entry: dict[str, Any]) -> dict[str, Any]:
        parcel = _registered(state, number)
        if isinstance(parcel, dict):
            return parcel
        del state.parcels[number]
        return {"number": number, "carrier": parcel.carrier}

    return _batch(items, state, act)


@post([f"{p}/getquota" for p in API_PREFIXES], status_code=200, summary="Quota left")
async def get_quota(request: Request[Any, Any, Any]) -> Response[Any]:
    state: TrackingState = request.app.state.tracking
    given = request.headers.get(TOKEN_HEADER, "")
    if not given or (state.token and given != state.token):
        return _request_error(ERR_INVALID_KEY, "Invalid access key.", status=401)
    return Response(
        {
            "code": 0,
            "data": {
                "quota_total": state.quota_total,
                "quota_used": state.quota_used,
                "quota_remain": state.quota_total - state.quota_used,
                "today_used": state.quota_used,
                "max_track_daily": state.quota_total,
                "free_email_quota": 0,
                "free_email_quotaused": 0,
            },
        }
    )


@post("/standin/advance", status_code=200, summary="Move a parcel's clock forward (stand-in only)")
async def advance(request: Request[Any, Any, Any]) -> Response[Any]:
    state: TrackingState = request.app.state.tracking
    try:
        body = await request.json()
        number = str(body["number"]).upper()
        seconds = float(body["seconds"])
    except Exception:
        return Response({"error": "send {'number': str, 'seconds': number}"}, status_code=400)
    parcel = state.parcels.get(number)
    if parcel is None or not 0 <= seconds <= 365 * 86_400:
        return Response({"error": "unknown number or seconds out of range"}, status_code=404)
    parcel.ahead_seconds += seconds
    return Response({"number": number, "now": parcel.now(state.clock).isoformat()})


def _page(title: str, body: str) -> Response[str]:
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:16px system-ui,sans-serif;max-width:42rem;margin:2rem auto;"
        "padding:0 1rem}li{margin:.6rem 0}small{color:#666}</style></head>"
        f"<body><p><small>17track stand-in: not a real carrier</small></p>{body}</body></html>"
    )
    return Response(document, media_type="text/html")


@get("/track", summary="A parcel's timeline as a page (stand-in only)")
async def track_page(request: Request[Any, Any, Any], nums: str = "") -> Response[str]:
    state: TrackingState = request.app.state.tracking
    sections: list[str] = []
    for raw in nums.split(",")[:10]:
        number = raw.strip().upper()
        parcel = state.parcels.get(number)
        if parcel is None:
            sections.append(f"<h2>{html.escape(number or '?')}</h2><p>Not registered.</p>")
            continue
        info = track_info(parcel, state)
        events = info["tracking"]["providers"][0]["events"]
        rows = "".join(
            f"<li><strong>{html.escape(e['description'])}</strong><br>"
            f"<small>{html.escape(e['time_utc'])} · {html.escape(e['location'])}</small></li>"
            for e in events
        )
        status = info["latest_status"]["status"]
        carrier = CARRIERS.get(parcel.carrier, ("Carrier",))[0]
        sections.append(
            f"<h2>{html.escape(number)}</h2><p>{html.escape(carrier)}: "
            f"<strong>{html.escape(status)}</strong></p><ol>{rows}</ol>"
        )
    return _page("Tracking", "".join(sections) or "<p>Give ?nums=NUMBER</p>")


@get("/", summary="Registered numbers (stand-in only)")
async def index(request: Request[Any, Any, Any]) -> Response[str]:
    state: TrackingState = request.app.state.tracking
    rows = "".join(
        f"<li><a href='/track?nums={html.escape(n)}'>{html.escape(n)}</a> "
        f"<small>{html.escape(track_info(p, state)['latest_status']['status'])}</small></li>"
        for n, p in sorted(state.parcels.items())
    )
    return _page("Tracking stand-in", f"<h1>Registered parcels</h1><ul>{rows}</ul>")


@get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok", "service": "tracking-standin"}


def create_app(
    *,
    stage_seconds: float | None = None,
    token: str | None = None,
    clock: Callable[[], dt.datetime] = _now,
) -> Litestar:
    """The stand-in app. ``stage_seconds``: time between scans (env
    ``TRACKING_STANDIN_STAGE_SECONDS``, default 60); ``token``: the only ``17token`` accepted
    (env ``TRACKING_STANDIN_TOKEN``; when empty any non-empty token is)."""
    if stage_seconds is None:
        stage_seconds = float(os.environ.get("TRACKING_STANDIN_STAGE_SECONDS") or 60)
    if token is None:
        token = os.environ.get("TRACKING_STANDIN_TOKEN", "")
    state = TrackingState(stage_seconds=max(0.0, stage_seconds), token=token, clock=clock)
    app = Litestar(
        route_handlers=[
            register,
            get_track_info,
            stop_track,
            retrack,
            delete_track,
            get_quota,
            advance,
            track_page,
            index,
            health,
        ],
        openapi_config=None,
    )
    app.state.tracking = state
    return app
