"""The 17track stand-in speaks 17track's register / gettrackinfo protocol and tells each number
the same believable story, advancing with time since registration."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from litestar.testing import TestClient
from standins.tracking import MAX_BATCH, create_app

TOKEN = "standin-test-token"
HEADERS = {"17token": TOKEN}


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(clock: Clock) -> Any:
    with TestClient(create_app(stage_seconds=60, token=TOKEN, clock=clock)) as http:
        yield http


def register(client: Any, *numbers: str, **extra: Any) -> dict[str, Any]:
    body = [{"number": n, **extra} for n in numbers]
    response = client.post("/track/v2/register", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def track(client: Any, *numbers: str, prefix: str = "/track/v2") -> dict[str, Any]:
    response = client.post(
        f"{prefix}/gettrackinfo", json=[{"number": n} for n in numbers], headers=HEADERS
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def events_of(answer: dict[str, Any], index: int = 0) -> list[dict[str, Any]]:
    info = answer["data"]["accepted"][index]["track_info"]
    events: list[dict[str, Any]] = info["tracking"]["providers"][0]["events"]
    return events


def test_register_accepts_and_detects_the_carrier(client) -> None:
    answer = register(client, "1Z999AA10123456784", "9400111899223397541123")
    assert answer["code"] == 0
    assert answer["data"]["rejected"] == []
    accepted = {a["number"]: a for a in answer["data"]["accepted"]}
    assert accepted["1Z999AA10123456784"]["carrier"] == 100002  # UPS
    assert accepted["9400111899223397541123"]["carrier"] == 21051  # USPS
    assert accepted["1Z999AA10123456784"]["origin"] == 1  # detected, not given


def test_register_keeps_a_given_carrier_and_refuses_repeats(client) -> None:
    first = register(client, "ABC123456789", carrier=100003)
    assert first["data"]["accepted"] == [{"origin": 2, "number": "ABC123456789", "carrier": 100003}]
    again = register(client, "ABC123456789")
    assert again["data"]["accepted"] == []
    assert again["data"]["rejected"][0]["error"]["code"] == -18019901


def test_bad_numbers_are_rejected_one_by_one(client) -> None:
    answer = register(client, "GOOD12345", "x", "has spaces 123")
    assert [a["number"] for a in answer["data"]["accepted"]] == ["GOOD12345"]
    assert [r["error"]["code"] for r in answer["data"]["rejected"]] == [-18010012, -18010012]


def test_unregistered_numbers_are_rejected_by_gettrackinfo(client) -> None:
    answer = track(client, "NEVERSEEN123")
    assert answer["data"]["accepted"] == []
    assert answer["data"]["rejected"][0]["error"]["code"] == -18019902


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"17token": "wrong"}, 401)],
)
def test_the_17token_is_required(client, headers, status) -> None:
    response = client.post("/track/v2/register", json=[{"number": "GOOD12345"}], headers=headers)
    assert response.status_code == status
    assert response.json()["code"] == -18010002


@pytest.mark.parametrize(
    "body",
    [{"number": "GOOD12345"}, [], [{"num": "x"}], [1, 2], "text"],
)
def test_malformed_requests_answer_an_error_code(client, body) -> None:
    response = client.post("/track/v2/register", json=body, headers=HEADERS)
    assert response.status_code == 200
    assert response.json()["code"] != 0
    assert response.json()["data"]["errors"]


def test_at_most_40_numbers_per_call(client) -> None:
    body = [{"number": f"BATCH{i:06d}"} for i in range(MAX_BATCH + 1)]
    response = client.post("/track/v2/register", json=body, headers=HEADERS)
    assert response.json()["code"] == -18010013
    ok = client.post("/track/v2/register", json=body[:MAX_BATCH], headers=HEADERS)
    assert len(ok.json()["data"]["accepted"]) == MAX_BATCH


def test_the_journey_advances_with_time(client, clock) -> None:
    number = "1ZJOURNEY0000001"
    register(client, number)
    answer = track(client, number)
    info = answer["data"]["accepted"][0]["track_info"]
    assert info["latest_status"]["status"] == "InfoReceived"
    assert len(events_of(answer)) == 1
    assert info["time_metrics"]["estimated_delivery_date"]["to"] is not None

    seen: list[str] = []
    for _ in range(12):
        clock.tick(60)
        status = track(client, number)["data"]["accepted"][0]["track_info"]["latest_status"]
        if not seen or seen[-1] != status["status"]:
            seen.append(status["status"])
    assert seen == ["InTransit", "OutForDelivery", "Delivered"]

    final = track(client, number)
    events = events_of(final)
    assert [e["stage"] for e in reversed(events)] == [
        "InfoReceived",
        "PickedUp",
        "Departure",
        "Arrival",
        "OutForDelivery",
        "Delivered",
    ]
    times = [e["time_utc"] for e in events]
    assert times == sorted(times, reverse=True)  # newest first, as 17track lists them
    assert all(e["location"] and e["sub_status"] for e in events)
    info = final["data"]["accepted"][0]["track_info"]
    assert info["latest_event"] == events[0]
    assert info["time_metrics"]["estimated_delivery_date"]["to"] is None
    assert [m["key_stage"] for m in info["milestone"]][-1] == "Delivered"


def test_the_story_is_the_same_for_the_same_number(clock) -> None:
    stories = []
    for _ in range(2):
        with TestClient(create_app(stage_seconds=60, token=TOKEN, clock=clock)) as http:
            register(http, "1ZSAMESTORY00001")
            clock.tick(3600)
            stories.append(events_of(track(http, "1ZSAMESTORY00001")))
            clock.tick(-3600)
    assert stories[0] == stories[1]
    with TestClient(create_app(stage_seconds=60, token=TOKEN, clock=clock)) as http:
        register(http, "1ZOTHERSTORY0001")
        clock.tick(3600)
        other = events_of(track(http, "1ZOTHERSTORY0001"))
    assert [e["time_utc"] for e in other] != [e["time_utc"] for e in stories[0]] or [
        e["location"] for e in other
    ] != [e["location"] for e in stories[0]]


def test_reported_scans_keep_their_times(client, clock) -> None:
    register(client, "1ZSTABLE00000001")
    clock.tick(150)
    before = events_of(track(client, "1ZSTABLE00000001"))
    response = client.post("/standin/advance", json={"number": "1ZSTABLE00000001", "seconds": 600})
    assert response.status_code == 200
    after = events_of(track(client, "1ZSTABLE00000001"))
    assert len(after) > len(before)
    assert after[-len(before) :] == before


def test_special_numbers(client, clock) -> None:
    register(client, "NOTFOUND12345", "EXCEPTION12345")
    clock.tick(3600)
    answer = track(client, "NOTFOUND12345", "EXCEPTION12345", prefix="/track/v2.2")
    by_number = {a["number"]: a["track_info"] for a in answer["data"]["accepted"]}
    assert by_number["NOTFOUND12345"]["latest_status"]["status"] == "NotFound"
    assert by_number["NOTFOUND12345"]["tracking"]["providers"][0]["events"] == []
    assert by_number["EXCEPTION12345"]["latest_status"]["status"] == "Exception"


def test_stop_retrack_delete_and_quota(client) -> None:
    register(client, "LIFECYCLE123")
    stop = client.post("/track/v2/stoptrack", json=[{"number": "LIFECYCLE123"}], headers=HEADERS)
    assert stop.json()["data"]["accepted"][0]["number"] == "LIFECYCLE123"
    retrack = client.post("/track/v2/retrack", json=[{"number": "LIFECYCLE123"}], headers=HEADERS)
    assert retrack.json()["data"]["accepted"][0]["number"] == "LIFECYCLE123"
    deleted = client.post(
        "/track/v2/deletetrack", json=[{"number": "LIFECYCLE123"}], headers=HEADERS
    )
    assert deleted.json()["data"]["accepted"][0]["number"] == "LIFECYCLE123"
    assert track(client, "LIFECYCLE123")["data"]["rejected"][0]["error"]["code"] == -18019902
    quota = client.post("/track/v2/getquota", headers=HEADERS).json()["data"]
    assert quota["quota_used"] == 1
    assert quota["quota_remain"] == quota["quota_total"] - 1


def test_pages_for_people(client) -> None:
    register(client, "1ZPAGE000000001")
    page = client.get("/track?nums=1ZPAGE000000001")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "Shipping label created" in page.text
    assert "1ZPAGE000000001" in client.get("/").text
    escaped = client.get("/track?nums=<script>")
    assert "<script>" not in escaped.text
    assert client.get("/health").json()["status"] == "ok"
