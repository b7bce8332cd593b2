"""The console's HTTP side (alerts/console): login by session cookie, CSRF on changes, roles on the
release decision, the live stream and the map. The browser test (tests/integration/test_console_browser.py)
drives the page itself on the real stack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.alerts.factories import T0, alert_message
from tests.alerts.test_api_view import USERS, users_file
from tocsin.alerts.api import AlertView, build_app
from tocsin.alerts.auth import Authenticator, Role
from tocsin.alerts.console import COOKIE, CSRF_HEADER, ReleaseView
from tocsin.alerts.release import Action, ReleaseEvent
from tocsin.schemas.alert import AlertArea
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.registry import Area, Device, Registry

TOWN = ((30.25, 120.05), (30.25, 120.15), (30.35, 120.15), (30.35, 120.05), (30.25, 120.05))
# an alert whose area is a town boundary (the map draws it)
ALERT = alert_message("con-1", WarningLevel.ORANGE, Family.HYDRO).model_copy(
    update={"area": AlertArea(code="330110", desc="青山镇", polygons=[TOWN])}
)


def run(
    body: Callable[[TestClient[Any, Any], list[ReleaseEvent], ReleaseView], Awaitable[None]], **console: Any
) -> None:
    view = AlertView()
    view.apply_alert(ALERT)
    view.mark_caught_up()
    releases = ReleaseView()
    published: list[ReleaseEvent] = []

    async def publish(event: ReleaseEvent) -> None:
        published.append(event)
        releases.apply(event)  # as if it came back through Kafka

    registry = Registry(
        devices=[
            Device(device_id="D01", family=Family.HYDRO, site="s", lat=30.3, lon=120.1, area=Area(code="330110")),
            Device(device_id="D02", family=Family.FIRE, site="s2", lat=30.2, lon=120.2, area=Area(code="330110")),
        ]
    )

    async def main() -> None:
        app: web.Application = build_app(
            view,
            auth=Authenticator(users_file()),
            console={"releases": releases, "publish_release": publish, "registry": registry, **console},
        )
        async with TestClient(TestServer(app)) as client:
            await body(client, published, releases)

    asyncio.run(main())


async def login(client: TestClient[Any, Any], name: str) -> str:
    r = await client.post("/console/login", json={"name": name, "password": USERS[name][1]})
    assert r.status == 200, await r.text()
    assert COOKIE in r.cookies and "httponly" in r.headers["Set-Cookie"].lower()
    assert "samesite=strict" in r.headers["Set-Cookie"].lower()
    return str((await r.json())["csrf"])


def test_page_is_public_data_is_not_and_a_bad_password_is_refused() -> None:
    async def body(client: TestClient[Any, Any], *_: Any) -> None:
        assert (await client.get("/console/")).status == 200
        assert (await client.get("/console/static/console.js")).status == 200
        r = await client.get("/console/api/session")
        assert r.status == 401 and "WWW-Authenticate" not in r.headers  # no browser password dialog
        r = await client.get("/alerts")
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic")  # curl and friends
        r = await client.post("/console/login", json={"name": "李值班", "password": "wrong"})
        assert r.status == 401 and COOKIE not in r.cookies

    run(body)


def test_session_cookie_reads_the_api_and_changes_need_the_csrf_token() -> None:
    async def body(client: TestClient[Any, Any], published: list[ReleaseEvent], releases: ReleaseView) -> None:
        csrf = await login(client, "李值班")
        me = await (await client.get("/console/api/session")).json()
        assert me["name"] == "李值班" and me["role"] == Role.SUPERVISOR and me["csrf"] == csrf
        assert (await client.get("/alerts")).status == 200  # the API's own routes, by cookie
        releases.apply(
            ReleaseEvent(
                fingerprint=ALERT.fingerprint, identifier=ALERT.identifier, action=Action.HELD, by="tocsin", at=T0
            )
        )
        url = f"/console/api/alerts/{ALERT.fingerprint}/release"
        assert (await client.post(url, json={"decision": "approve"})).status == 403  # no token: a forged form
        r = await client.post(url, json={"decision": "approve"}, headers={CSRF_HEADER: "guess"})
        assert r.status == 403 and (await r.json())["error"] == "csrf"
        assert published == []
        r = await client.post(url, json={"decision": "approve", "note": "核实属实"}, headers={CSRF_HEADER: csrf})
        assert r.status == 201, await r.text()
        assert [(e.action, e.by, e.note) for e in published] == [(Action.APPROVE, "李值班", "核实属实")]
        # approved: nothing left to decide
        r = await client.post(url, json={"decision": "reject"}, headers={CSRF_HEADER: csrf})
        assert r.status == 409
        r = await client.post(
            f"/console/api/alerts/{ALERT.fingerprint}/note",
            json={"note": "已电话联系村委"},
            headers={CSRF_HEADER: csrf},
        )
        assert r.status == 201 and published[-1].action is Action.NOTE and published[-1].by == "李值班"
        state = await (await client.get(f"/console/api/alerts/{ALERT.fingerprint}/releases")).json()
        assert state["state"] == "approve" and len(state["events"]) == 3
        await client.post("/console/logout", headers={CSRF_HEADER: csrf})
        assert (await client.get("/console/api/session")).status == 401

    run(body)


def test_a_viewer_cannot_approve() -> None:
    async def body(client: TestClient[Any, Any], published: list[ReleaseEvent], releases: ReleaseView) -> None:
        csrf = await login(client, "viewer")
        releases.apply(
            ReleaseEvent(
                fingerprint=ALERT.fingerprint, identifier=ALERT.identifier, action=Action.HELD, by="tocsin", at=T0
            )
        )
        r = await client.post(
            f"/console/api/alerts/{ALERT.fingerprint}/release",
            json={"decision": "approve"},
            headers={CSRF_HEADER: csrf},
        )
        assert r.status == 403 and published == []

    run(body)


def test_stream_sends_the_active_list_with_the_release_state_and_the_map_has_devices() -> None:
    async def body(client: TestClient[Any, Any], published: list[ReleaseEvent], releases: ReleaseView) -> None:
        await login(client, "viewer")
        releases.apply(
            ReleaseEvent(
                fingerprint=ALERT.fingerprint, identifier=ALERT.identifier, action=Action.HELD, by="tocsin", at=T0
            )
        )
        r = await client.get("/console/api/stream")
        assert r.headers["Content-Type"].startswith("text/event-stream")
        line = b""
        while not line.startswith(b"data: "):
            line = await asyncio.wait_for(r.content.readline(), 5)
        data = json.loads(line[len(b"data: ") :])
        assert [(a["identifier"], a["release"]) for a in data["alerts"]] == [(ALERT.identifier, "pending")]
        r.close()
        m = await (await client.get("/console/api/map")).json()
        # D01 is the alert's device (factories: devices=["D01"]): drawn in the alert's colour
        assert {d["id"]: (d["state"], d["alert"]) for d in m["devices"]} == {
            "D01": ("online", "orange"),
            "D02": ("online", None),
        }
        assert m["outline"]["features"][0]["properties"]["code"] == "330110"
        assert [a["fingerprint"] for a in m["areas"]] == [ALERT.fingerprint]
        assert m["areas"][0]["polygons"] == [[list(v) for v in TOWN]] and m["areas"][0]["circle"] is None

    run(body)


def test_series_come_from_the_reader_for_the_alerts_devices_or_are_unavailable() -> None:
    async def body(client: TestClient[Any, Any], *_: Any) -> None:
        await login(client, "viewer")
        r = await (await client.get(f"/console/api/alerts/{ALERT.fingerprint}/series")).json()
        assert r == {"available": False, "series": []}  # no InfluxDB: the page shows the evidence values
        assert (await client.get("/console/api/alerts/nope/series")).status == 404

    run(body)
    asked: list[tuple[str, list[str], float]] = []

    def reader(measurement: str, devices: list[str], hours: float) -> list[dict[str, Any]]:
        asked.append((measurement, devices, hours))
        return [{"device": "D01", "field": "rain_mm", "points": [["2026-07-01T08:00:00+00:00", 6.0]]}]

    async def body2(client: TestClient[Any, Any], *_: Any) -> None:
        await login(client, "viewer")
        r = await (await client.get(f"/console/api/alerts/{ALERT.fingerprint}/series?hours=48")).json()
        assert r["available"] and r["series"][0]["points"] == [["2026-07-01T08:00:00+00:00", 6.0]]

    run(body2, read_series=reader)
    assert asked == [("hydro", ["D01"], 24.0)]  # the alert's hazard and devices; hours capped at 24


def test_device_states_endpoint_lists_the_troubled_first_and_the_metrics_count_them() -> None:
    from tocsin.alerts.console.devices import DeviceHealthModel
    from tocsin.schemas.status import DeviceState, DeviceStatus

    now = [1_780_000_000.0]
    registry = Registry(
        devices=[
            Device(device_id="D01", family=Family.HYDRO, site="s", lat=30.3, lon=120.1, area=Area(code="330110")),
            Device(device_id="D02", family=Family.FIRE, site="s2", lat=30.2, lon=120.2, area=Area(code="330110")),
            Device(
                device_id="D03",
                family=Family.HAZMAT,
                site="s3",
                lat=30.2,
                lon=120.3,
                area=Area(code="330110", town="青山镇"),
                interval_s=10,
            ),
        ]
    )
    model = DeviceHealthModel(registry, clock=lambda: now[0])
    model.reading("D01", now[0])
    model.reading("D03", now[0])
    model.status(DeviceStatus(device_id="D02", site="s2", family=Family.FIRE, state=DeviceState.OFFLINE, ts=T0), now[0])
    now[0] += 30  # D03 reports every 10 s: stale after 20 s

    async def body(client: TestClient[Any, Any], *_: Any) -> None:
        assert (await client.get("/console/api/devices")).status == 401
        await login(client, "viewer")  # read-only, any role
        data = await (await client.get("/console/api/devices")).json()
        assert data["available"] and data["counts"] == {
            "faulty": 0,
            "offline": 1,
            "stale": 1,
            "unknown": 0,
            "reporting": 1,
        }
        rows = [(d["id"], d["state"], d["family"]) for d in data["devices"]]
        assert rows == [("D02", "offline", "fire"), ("D03", "stale", "hazmat"), ("D01", "reporting", "hydro")]
        d03 = data["devices"][1]
        assert d03["area"] == "青山镇" and d03["last_seen"].startswith("2026-") and "无数据" in d03["reason"]
        m = await (await client.get("/console/api/map")).json()
        # the map's devices are those of the console's registry (D01, D02), in the model's states
        assert {d["id"]: d["state"] for d in m["devices"]} == {"D01": "reporting", "D02": "offline"}
        text = await (await client.get("/metrics")).text()
        for state, n in (("faulty", 0), ("offline", 1), ("stale", 1), ("unknown", 0), ("reporting", 1)):
            assert f'tocsin_console_devices{{state="{state}"}} {n}.0' in text

    run(body, devices=model)


def test_without_a_health_model_the_states_are_unavailable_and_the_metric_is_zero() -> None:
    async def body(client: TestClient[Any, Any], *_: Any) -> None:
        await login(client, "viewer")
        data = await (await client.get("/console/api/devices")).json()
        assert data == {"available": False, "counts": dict.fromkeys(data["counts"], 0), "devices": []}
        assert set(data["counts"]) == {"faulty", "offline", "stale", "unknown", "reporting"}
        text = await (await client.get("/metrics")).text()
        assert 'tocsin_console_devices{state="faulty"} 0.0' in text

    run(body)
