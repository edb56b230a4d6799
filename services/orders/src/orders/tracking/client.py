"""A client for 17track's tracking API (v2.x): register numbers and fetch their scans.

The base URL is configurable (``TRACKING_API_URL``); by default it is the local stand-in, which
speaks the same protocol. Every call sends at most 40 numbers and the ``17token`` header.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import structlog

from orders.settings import PROVIDER_MAX_BATCH, TrackingSettings

log = structlog.get_logger("orders.tracking")

#: 17track's answers to a number already registered / never registered.
ALREADY_REGISTERED = -18019901
NOT_REGISTERED = -18019902

#: 17track's main statuses, in no particular order; "Delivered" is the one that ends a journey.
DELIVERED = "Delivered"


class ProviderError(Exception):
    """The tracking provider could not be reached or refused the whole request."""


@dataclass(frozen=True)
class TrackRequest:
    number: str
    carrier_key: int | None = None

    def body(self) -> dict[str, Any]:
        item: dict[str, Any] = {"number": self.number}
        if self.carrier_key is not None:
            item["carrier"] = self.carrier_key
        return item


@dataclass(frozen=True)
class ProviderScan:
    occurred_at: dt.datetime
    status: str
    sub_status: str
    description: str
    location: str


@dataclass(frozen=True)
class ProviderTracking:
    number: str
    status: str
    sub_status: str
    scans: list[ProviderScan]
    summary: dict[str, Any]

    @property
    def delivered(self) -> bool:
        return self.status == DELIVERED

    @property
    def delivered_at(self) -> dt.datetime | None:
        times = [s.occurred_at for s in self.scans if s.status == DELIVERED]
        return max(times) if times else None


@dataclass
class BatchResult:
    accepted: set[str] = field(default_factory=set)
    tracking: dict[str, ProviderTracking] = field(default_factory=dict)
    #: number -> (17track error code, message)
    rejected: dict[str, tuple[int, str]] = field(default_factory=dict)


# --- 17track's response shapes (only what we read; unknown members are ignored) ---------


class _Error(msgspec.Struct):
    code: int = 0
    message: str = ""


class _Rejected(msgspec.Struct):
    number: str = ""
    error: _Error = msgspec.field(default_factory=_Error)


class _Event(msgspec.Struct):
    time_iso: str | None = None
    time_utc: str | None = None
    description: str | None = None
    location: str | None = None
    stage: str | None = None
    sub_status: str | None = None


class _Provider(msgspec.Struct):
    events: list[_Event] = []
    provider: dict[str, Any] = {}


class _Tracking(msgspec.Struct):
    providers: list[_Provider] = []


class _LatestStatus(msgspec.Struct):
    status: str | None = None
    sub_status: str | None = None


class _TrackInfo(msgspec.Struct):
    latest_status: _LatestStatus | None = None
    latest_event: _Event | None = None
    tracking: _Tracking | None = None
    time_metrics: dict[str, Any] | None = None


class _Accepted(msgspec.Struct):
    number: str = ""
    carrier: int | None = None
    track_info: _TrackInfo | None = None


class _Data(msgspec.Struct):
    accepted: list[_Accepted] = []
    rejected: list[_Rejected] = []
    errors: list[_Error] = []


class _Answer(msgspec.Struct):
    code: int = 0
    data: _Data = msgspec.field(default_factory=_Data)


def _parse_time(event: _Event) -> dt.datetime | None:
    for raw in (event.time_utc, event.time_iso):
        if not raw:
            continue
        try:
            moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC)
    return None


def _main_status(sub_status: str | None, fallback: str) -> str:
    """17track sub statuses are ``<Main>_<Detail>``; the main status is the part before ``_``."""
    if sub_status:
        return sub_status.split("_", 1)[0][:40]
    return fallback[:40]


def _tracking_from(item: _Accepted) -> ProviderTracking:
    info = item.track_info or _TrackInfo()
    latest = info.latest_status or _LatestStatus()
    scans: list[ProviderScan] = []
    for provider in (info.tracking or _Tracking()).providers:
        for event in provider.events:
            moment = _parse_time(event)
            if moment is None:
                continue
            scans.append(
                ProviderScan(
                    occurred_at=moment,
                    status=_main_status(event.sub_status, event.stage or "InTransit"),
                    sub_status=(event.sub_status or "")[:80],
                    description=(event.description or event.stage or "Update")[:500],
                    location=(event.location or "")[:200],
                )
            )
    scans.sort(key=lambda s: s.occurred_at)
    status = latest.status or (scans[-1].status if scans else "NotFound")
    summary: dict[str, Any] = {
        "carrier_key": item.carrier,
        "status": status,
        "sub_status": latest.sub_status,
    }
    if info.latest_event is not None:
        summary["latest_event"] = msgspec.to_builtins(info.latest_event)
    if info.time_metrics is not None:
        eta = info.time_metrics.get("estimated_delivery_date")
        if isinstance(eta, dict):
            summary["estimated_delivery"] = {"from": eta.get("from"), "to": eta.get("to")}
    return ProviderTracking(
        number=item.number,
        status=status[:40],
        sub_status=(latest.sub_status or "")[:80],
        scans=scans,
        summary=summary,
    )


class TrackingClient:
    """Talks to a 17track-compatible API. Create once per process; close with ``aclose``."""

    def __init__(
        self, settings: TrackingSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(
            base_url=settings.api_url.rstrip("/") + "/",
            timeout=settings.timeout_ms / 1000,
            headers={"17token": settings.local_key, "Accept": "application/json"},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def register(self, items: Iterable[TrackRequest]) -> BatchResult:
        """Register numbers; one already registered counts as accepted."""
        result = BatchResult()
        for chunk in _chunks(list(items)):
            answer = await self._call("register", chunk)
            result.accepted.update(a.number for a in answer.data.accepted)
            for rejected in answer.data.rejected:
                if rejected.error.code == ALREADY_REGISTERED:
                    result.accepted.add(rejected.number)
                else:
                    result.rejected[rejected.number] = (
                        rejected.error.code,
                        rejected.error.message,
                    )
        return result

    async def track(self, items: Iterable[TrackRequest]) -> BatchResult:
        """The latest tracking of each number; unregistered ones come back as rejected."""
        result = BatchResult()
        for chunk in _chunks(list(items)):
            answer = await self._call("gettrackinfo", chunk)
            for accepted in answer.data.accepted:
                result.accepted.add(accepted.number)
                result.tracking[accepted.number] = _tracking_from(accepted)
            for rejected in answer.data.rejected:
                result.rejected[rejected.number] = (rejected.error.code, rejected.error.message)
        return result

    async def _call(self, operation: str, items: list[TrackRequest]) -> _Answer:
        try:
            response = await self._http.post(operation, json=[i.body() for i in items])
        except httpx.HTTPError as exc:
            raise ProviderError(f"{operation}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise ProviderError(f"{operation}: HTTP {response.status_code}")
        try:
            answer = msgspec.json.decode(response.content, type=_Answer)
        except msgspec.MsgspecError as exc:
            raise ProviderError(f"{operation}: unreadable answer: {exc}") from exc
        if answer.code != 0:
            message = answer.data.errors[0].message if answer.data.errors else ""
            raise ProviderError(f"{operation}: provider code {answer.code} {message}".strip())
        return answer


def _chunks(items: list[TrackRequest]) -> list[list[TrackRequest]]:
    return [items[i : i + PROVIDER_MAX_BATCH] for i in range(0, len(items), PROVIDER_MAX_BATCH)]
