"""The console in a real browser (headless Debian Chromium driven by selenium) on the real stack:
SMS emulator, worker and operator API on the local Kafka.

A duty operator logs in, sees the registered gauge in the device states panel (stale: it sent
nothing), sees a new orange rainstorm warning appear without reloading (within 2 s of
its issue: issue 17), opens it, sees the public SMS held by the release gate, approves it and the SMS
carrier emulator receives it; creates a silence; sees the audit entries under their name. A viewer
cannot approve. Screenshots of every step go to var/console-screenshots/; the measured issue-to-display
times are written next to them (latency.json).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.integration.procs import wait_until
from tests.integration.stack import API_USERS, Stack, rain_gauge, running_stack
from tocsin.schemas import topics
from tocsin.schemas.alert import Alert, AlertArea, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.wire import encode

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "var" / "console-screenshots"
GAUGE = rain_gauge("+86137")
SUPERVISOR_PHONE = "+8613700000999"
VILLAGE = ((30.3, 120.0), (30.3, 120.1), (30.4, 120.1), (30.3, 120.0))  # the warned area's boundary
DISPLAY_BOUND_S = 2.0  # issue 17: a new alert shows within 2 s of its issue, without reloading


def chromedriver() -> str:
    """The Debian chromedriver; installed by deploy/local/services.sh (apt) when missing."""
    proc = subprocess.run(  # a no-op when chromium, chromedriver and a CJK font are there
        ["bash", str(ROOT / "deploy/local/services.sh"), "browser"], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"could not install chromium:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    path = shutil.which("chromedriver")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def stack(services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("console")
    routing = {
        "routes": [
            {"name": "public", "audience": "public", "channels": ["sms"], "residents": True},
            {"name": "operators", "audience": "agency", "channels": ["mqtt"], "exercise": True},
        ],
        "release": {
            "rules": [{"hazards": ["hydro"], "levels": ["blue", "yellow", "orange"], "mode": "approve"}],
            "supervisors": [SUPERVISOR_PHONE],
        },
    }
    (tmp / "routing.json").write_text(json.dumps(routing), encoding="utf-8")
    env = {"TOCSIN_ROUTING_FILE": str(tmp / "routing.json")}
    with running_stack(services, tmp, GAUGE.run_id, GAUGE.registry, env, roles=("sms", "worker", "api")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1366,768",
        "--lang=zh-CN",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver()), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def login(driver: Any, base: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/console/")
    field = wait_until(lambda: _visible(driver, "login-name"), 15, "the login form")
    field.send_keys(name)
    driver.find_element(By.ID, "login-password").send_keys(API_USERS[name][1])
    driver.find_element(By.ID, "login-submit").click()
    wait_until(lambda: name in text_of(driver, "who"), 15, f"{name} logged in")
    wait_until(lambda: text_of(driver, "conn") == "实时", 15, "the live stream connected")


def _visible(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    els = driver.find_elements(By.ID, element_id)
    return els[0] if els and els[0].is_displayed() else None


def act(driver: Any, element_id: str, keys: str | None = None) -> None:
    """Type into or click an element, again if the page re-rendered it in between."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(10):
        try:
            el = driver.find_element(By.ID, element_id)
            if keys is not None:
                el.send_keys(keys)
            else:
                el.click()
            return
        except StaleElementReferenceException:
            time.sleep(0.1)
    raise AssertionError(f"#{element_id} kept being re-rendered")


def text_of(driver: Any, element_id: str) -> str:
    """The text of an element, "" while it is not there (the page re-renders)."""
    got = driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText : ''", element_id
    )
    return str(got or "")


def row_info(driver: Any, selector: str) -> tuple[str, str] | None:
    got = driver.execute_script(
        "const r = document.querySelector(arguments[0]); return r ? [r.className, r.innerText] : null", selector
    )
    return (got[0], got[1]) if got else None


def write_rain(stack: Stack, values: list[float]) -> list[float]:
    """Rain readings of the gauge, 10 minutes apart up to now, written to the local InfluxDB."""
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    now = datetime.now(UTC)
    points = [
        Point("hydro")
        .tag("device", GAUGE.device)
        .tag("site", GAUGE.site)
        .tag("type", "hydro.rain")
        .field("rain_mm", v)
        .field("seq", i)
        .time(now - timedelta(minutes=10 * (len(values) - 1 - i)), WritePrecision.MS)
        for i, v in enumerate(values)
    ]
    with InfluxDBClient(url=stack.env["TOCSIN_INFLUX_URL"], token="", org="-") as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=stack.env["TOCSIN_INFLUX_BUCKET"], record=points)
    return values


def issue(producer: KafkaProducer, run: str) -> Alert:
    """An orange rainstorm warning for the gauge's village, issued (``sent``) now and produced to ``alerts``."""
    now = datetime.now(UTC)
    fp = f"hydro:{GAUGE.area}:{run}"
    a = Alert(
        identifier=f"{GAUGE.area}{run}-hydro-000",
        fingerprint=fp,
        revision=0,
        msg_type=MsgType.ALERT,
        hazard=Family.HYDRO,
        event="暴雨",
        level=WarningLevel.ORANGE,
        sent=now,
        onset=now,
        area=AlertArea(code=GAUGE.area, desc="青山镇横溪村", polygons=[VILLAGE]),
        headline="青山镇横溪村暴雨橙色预警",
        description="1小时降雨量62毫米，超过橙色阈值50毫米。",
        instruction="请远离河道和低洼地带。",
        devices=[GAUGE.device],
        sites=[GAUGE.site],
        value=62.0,
        unit="mm/h",
    )
    producer.send(topics.ALERTS, key=fp.encode(), value=encode(a)).get(timeout=30)
    return a


def test_operator_sees_approves_silences_and_a_viewer_cannot_approve(stack: Stack, browser: Any) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base = f"http://127.0.0.1:{stack.api_port}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    login(browser, base, "李值班")
    shot(browser, "01-logged-in")

    # 0. the device states panel: the gauge has sent nothing in the console's look-back, so it is
    # listed as stale (数据陈旧), with its area, under its group's heading
    dev_sel = f'#devices tr[data-device="{GAUGE.device}"]'
    dev = wait_until(lambda: row_info(browser, dev_sel), 15, "the gauge in the device states panel")
    assert dev[0] == "dev stale" and "数据陈旧" in dev[1] and "无数据" in dev[1], dev
    assert "数据陈旧 1" in text_of(browser, "device-counts") and "故障 0" in text_of(browser, "device-counts")
    browser.execute_script("document.getElementById('devices-h').scrollIntoView()")
    shot(browser, "01b-device-states")
    browser.execute_script("window.scrollTo(0, 0)")

    # 1. a new alert appears without reloading
    run = uuid.uuid4().hex[:8]
    browser.execute_script("window.tocsinNoReload = 1")  # lost if the page reloads
    producer = KafkaProducer(bootstrap_servers=stack.env["TOCSIN_KAFKA_BOOTSTRAP"], acks="all")
    producer.partitions_for(topics.ALERTS)  # connected before the clock starts
    try:
        alert = issue(producer, run)
        row_sel = f'tr[data-identifier="{alert.identifier}"]'
        deadline = time.monotonic() + 10
        row = None
        while time.monotonic() < deadline and row is None:
            row = row_info(browser, row_sel)  # (class, text); the list is re-rendered on every change
            if row is None:
                time.sleep(0.02)
        seen = time.time()
    finally:
        producer.close(10)
    assert row is not None, stack.logs()
    assert browser.execute_script("return window.tocsinNoReload") == 1  # the same page: no reload
    browser_ms = browser.execute_script(f"return window.tocsinLatency[{json.dumps(alert.identifier)}]")
    polled_s = seen - alert.sent.timestamp()  # issue to the row found through WebDriver (same machine clock)
    (SHOTS / "latency.json").write_text(
        json.dumps(
            {
                "identifier": alert.identifier,
                "browser_issue_to_display_ms": browser_ms,
                "test_issue_to_row_found_s": round(polled_s, 3),
            }
        ),
        encoding="utf-8",
    )
    print(f"issue-to-display: browser {browser_ms} ms (sent -> rendered), test {polled_s * 1000:.0f} ms")
    assert browser_ms is not None and browser_ms <= DISPLAY_BOUND_S * 1000
    assert polled_s <= DISPLAY_BOUND_S
    assert "orange" in row[0]
    # the worker holds the public SMS: the list says so, the carrier has nothing
    wait_until(lambda: "待审批" in (row_info(browser, row_sel) or ("", ""))[1], 30, "held for approval")
    # the map draws the warned area's boundary in the alert's colour
    drawn = f"return document.querySelectorAll('#map svg polygon[data-area={json.dumps(alert.fingerprint)}]').length"
    wait_until(lambda: browser.execute_script(drawn) == 1, 15, "the alert's boundary on the map")
    shot(browser, "02-new-alert-live")
    assert stack.sms_messages(GAUGE.phones) == []

    # the gauge's last hours in InfluxDB (as the gateway's sink writes them: measurement per family, tag device)
    rain = write_rain(stack, [1.5, 4.0, 6.5])

    # 2. open it from the keyboard
    for _ in range(5):  # the row may be re-rendered between finding and typing
        try:
            browser.find_element(By.CSS_SELECTOR, row_sel).send_keys(Keys.ENTER)
            break
        except StaleElementReferenceException:
            continue
    wait_until(lambda: _visible(browser, "approve"), 15, "the alert page")
    assert "待审批" in text_of(browser, "release-state")
    assert "62" in text_of(browser, "main")
    cap = browser.execute_script("return document.querySelector('pre.cap').textContent")
    assert "<alert" in cap and "<polygon>30.3,120 30.3,120.1 30.4,120.1 30.3,120</polygon>" in cap
    chart = "const e = document.querySelector('#series svg.series-chart'); return e ? e.textContent : ''"
    wait_until(lambda: "rain_mm" in browser.execute_script(chart), 15, "the chart of the last hours from InfluxDB")
    series = browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; fetch(arguments[0]).then(r => r.json()).then(done);",
        f"/console/api/alerts/{alert.fingerprint}/series?hours=3",
    )
    got = [p[1] for x in series["series"] if x["field"] == "rain_mm" for p in x["points"]]
    assert series["available"] and got == rain
    shot(browser, "03-alert-page")

    # 3. approve: the SMS carrier receives the warning
    act(browser, "release-note", "已电话核实，同意发布")
    act(browser, "approve")
    msgs = wait_until(
        lambda: len(stack.sms_messages(GAUGE.phones)) == 2 and stack.sms_messages(GAUGE.phones),
        30,
        "the SMS carrier got the approved warning",
    )
    assert all("暴雨橙色预警" in m["text"] for m in msgs)
    wait_until(lambda: "已批准发布" in text_of(browser, "release-state"), 15, "approved shown")
    shot(browser, "04-approved-sms-sent")

    # 4. a silence of the gauge within policy
    act(browser, "silence-reason", "雨量计检修")
    act(browser, "silence")
    wait_until(lambda: "静默已创建" in text_of(browser, "action-result"), 15, "silence created")
    shot(browser, "05-silence-created")
    sil = [s for s in _silences(stack) if s.get("device") == GAUGE.device]
    assert sil and sil[0]["creator"] == "李值班"

    # 5. the audit trail names the operator
    browser.refresh()
    wait_until(lambda: "批准发布" in text_of(browser, "audit"), 15, "approval in the audit trail")
    audit = text_of(browser, "audit")
    assert "李值班 批准发布：已电话核实，同意发布" in audit
    assert "公众渠道等待审批" in audit
    shot(browser, "06-audit-trail")

    # 6. a viewer cannot approve: no button, and the API refuses the request
    act(browser, "logout")
    login(browser, base, "张查看")
    browser.get(f"{base}/console/#/alert/{alert.fingerprint}")
    wait_until(lambda: _visible(browser, "read-only"), 15, "the viewer's alert page")
    assert not browser.find_elements(By.ID, "approve")
    status = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch('/console/api/session').then(r => r.json()).then(me =>
          fetch(arguments[0], {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf},
                body: JSON.stringify({decision: 'approve'})})).then(r => done(r.status));""",
        f"/console/api/alerts/{alert.fingerprint}/release",
    )
    assert status == 403
    shot(browser, "07-viewer-cannot-approve")
    assert sorted(p.name for p in SHOTS.glob("*.png")) == [
        "01-logged-in.png",
        "01b-device-states.png",
        "02-new-alert-live.png",
        "03-alert-page.png",
        "04-approved-sms-sent.png",
        "05-silence-created.png",
        "06-audit-trail.png",
        "07-viewer-cannot-approve.png",
    ]


def _silences(stack: Stack) -> list[dict[str, Any]]:
    import base64
    import urllib.request

    token = base64.b64encode(f"张查看:{API_USERS['张查看'][1]}".encode()).decode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{stack.api_port}/silences", headers={"Authorization": f"Basic {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return list(json.loads(resp.read())["silences"])
