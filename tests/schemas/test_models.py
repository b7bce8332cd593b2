"""Unit tests for schemas/: warning levels, telemetry models and their physical ranges, topic
names, the wire encoding, dead letters and the device registry."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tocsin.schemas import topics
from tocsin.schemas.alert import Alert, AlertArea, AlertStatus, MsgType
from tocsin.schemas.common import Family, WarningLevel, max_level
from tocsin.schemas.deadletter import DeadLetter, Reason
from tocsin.schemas.delivery import DeliveryRecord
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Area, Device, Registry, load_registry
from tocsin.schemas.status import DeviceState, DeviceStatus
from tocsin.schemas.telemetry import (
    TELEMETRY_ADAPTER,
    FireDetection,
    GasReading,
    RainIncrement,
    SeismicPacket,
    WaterLevel,
    family_of,
)
from tocsin.schemas.wire import decode, encode

CST = timezone(timedelta(hours=8))
T0 = datetime(2024, 7, 1, 8, 30, 15, 250000, tzinfo=CST)
IDENT = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", fullmatch=True)


def _device(**kw) -> Device:
    fields = dict(
        device_id="wl-01",
        family=Family.HYDRO,
        site="river.bridge",
        lat=39.9,
        lon=116.4,
        area=Area(code="110105", district="朝阳区", town="东坝", village="单店"),
        thresholds={"warning_level_m": 10.0, "guaranteed_level_m": 11.0},
    )
    fields.update(kw)
    return Device(**fields)


def _errors(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str, str]]:
    return [(".".join(str(p) for p in e["loc"]), e["type"]) for e in exc.value.errors()]


# ---------------------------------------------------------------------------------------------
# WarningLevel
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "rank", "roman", "severity", "zh"),
    [
        (WarningLevel.BLUE, 1, "IV", "Minor", "蓝色"),
        (WarningLevel.YELLOW, 2, "III", "Moderate", "黄色"),
        (WarningLevel.ORANGE, 3, "II", "Severe", "橙色"),
        (WarningLevel.RED, 4, "I", "Extreme", "红色"),
    ],
)
def test_warning_level_attributes(level: WarningLevel, rank: int, roman: str, severity: str, zh: str) -> None:
    assert level.rank == rank
    assert level.roman == roman
    assert level.cap_severity == severity
    assert level.zh == zh
    assert WarningLevel.from_rank(rank) is level
    assert WarningLevel(level.value) is level


def test_warning_level_values_and_unknown_rank() -> None:
    assert [lv.value for lv in WarningLevel] == ["blue", "yellow", "orange", "red"]
    with pytest.raises(KeyError):
        WarningLevel.from_rank(0)
    with pytest.raises(KeyError):
        WarningLevel.from_rank(5)


def test_max_level_orders_by_severity_not_by_name() -> None:
    # Alphabetically "yellow" > "red" > "orange" > "blue"; by severity red is highest.
    assert max_level([WarningLevel.YELLOW, WarningLevel.RED, WarningLevel.BLUE]) is WarningLevel.RED
    assert max_level([None, WarningLevel.BLUE, None, WarningLevel.ORANGE]) is WarningLevel.ORANGE
    assert max_level([WarningLevel.YELLOW]) is WarningLevel.YELLOW
    assert max_level([None, None]) is None
    assert max_level([]) is None


# ---------------------------------------------------------------------------------------------
# Telemetry models
# ---------------------------------------------------------------------------------------------

BASE = {"device_id": "dev-01", "site": "site.A", "ts": "2024-07-01T08:30:15.250+08:00", "seq": 42}

VALID = {
    "fire.detection": {
        **BASE,
        "type": "fire.detection",
        "kind": "smoke",
        "confidence": 0.82,
        "bearing_deg": 123.4,
        "elevation_deg": -2.5,
        "sweep": 17,
    },
    "hydro.rain": {**BASE, "type": "hydro.rain", "rain_mm": 5.5, "interval_s": 300},
    "hydro.level": {**BASE, "type": "hydro.level", "level_m": 12.34},
    "seismic.waveform": {
        **BASE,
        "type": "seismic.waveform",
        "channel": "HNZ",
        "sample_rate_hz": 100,
        "unit": "m/s",
        "samples": [0.0, 1.5e-6, -2.5e-6],
    },
    "hazmat.gas": {**BASE, "type": "hazmat.gas", "gas": "H2S", "value": 12.5, "unit": "mg/m3"},
}
MODEL = {
    "fire.detection": (FireDetection, Family.FIRE),
    "hydro.rain": (RainIncrement, Family.HYDRO),
    "hydro.level": (WaterLevel, Family.HYDRO),
    "seismic.waveform": (SeismicPacket, Family.SEISMIC),
    "hazmat.gas": (GasReading, Family.HAZMAT),
}
# A float field of each model, for the NaN / infinity checks.
FLOAT_FIELD = {
    "fire.detection": "confidence",
    "hydro.rain": "rain_mm",
    "hydro.level": "level_m",
    "hazmat.gas": "value",
}


@pytest.mark.parametrize("type_name", sorted(VALID))
def test_each_model_accepts_a_valid_payload(type_name: str) -> None:
    cls, family = MODEL[type_name]
    payload = VALID[type_name]
    direct = cls.model_validate(payload)
    via_union = TELEMETRY_ADAPTER.validate_python(payload)
    assert type(via_union) is cls
    assert via_union == direct
    assert direct.family is family
    assert family_of(type_name) is family
    assert direct.device_id == "dev-01" and direct.site == "site.A" and direct.seq == 42
    assert direct.ts == datetime(2024, 7, 1, 0, 30, 15, 250000, tzinfo=UTC)
    assert direct.ts.utcoffset() == timedelta(hours=8)


def test_model_field_values_are_kept() -> None:
    fire = FireDetection.model_validate(VALID["fire.detection"])
    assert (fire.kind, fire.confidence, fire.bearing_deg, fire.elevation_deg, fire.sweep) == (
        "smoke",
        0.82,
        123.4,
        -2.5,
        17,
    )
    seis = SeismicPacket.model_validate(VALID["seismic.waveform"])
    assert seis.samples == [0.0, 1.5e-6, -2.5e-6]
    # ts is the first sample; end is one sample period after the last: 3 samples at 100 Hz = 30 ms.
    assert seis.end - seis.ts == timedelta(milliseconds=30)


def test_family_of_unknown_type() -> None:
    assert family_of("hydro.snow") is None
    assert family_of("") is None


def test_models_are_frozen_and_forbid_extra_fields() -> None:
    rain = RainIncrement.model_validate(VALID["hydro.rain"])
    with pytest.raises(ValidationError):
        rain.rain_mm = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError) as exc:
        RainIncrement.model_validate({**VALID["hydro.rain"], "battery_v": 3.6})
    assert ("battery_v", "extra_forbidden") in _errors(exc)


@pytest.mark.parametrize("type_name", sorted(FLOAT_FIELD))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_rejected(type_name: str, bad: float) -> None:
    cls, _ = MODEL[type_name]
    field = FLOAT_FIELD[type_name]
    with pytest.raises(ValidationError) as exc:
        cls.model_validate({**VALID[type_name], field: bad})
    assert (field, "finite_number") in _errors(exc)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_seismic_sample_is_rejected(bad: float) -> None:
    with pytest.raises(ValidationError) as exc:
        SeismicPacket.model_validate({**VALID["seismic.waveform"], "samples": [0.0, bad, 0.0]})
    assert ("samples.1", "finite_number") in _errors(exc)


@pytest.mark.parametrize("type_name", sorted(VALID))
def test_naive_timestamps_are_rejected(type_name: str) -> None:
    cls, _ = MODEL[type_name]
    with pytest.raises(ValidationError) as exc:
        cls.model_validate({**VALID[type_name], "ts": "2024-07-01T08:30:15"})
    assert ("ts", "timezone_aware") in _errors(exc)
    with pytest.raises(ValidationError):
        cls.model_validate({**VALID[type_name], "ts": datetime(2024, 7, 1, 8, 30)})


@pytest.mark.parametrize(
    "ident",
    ["", "a/b", "a+b", "a#b", "a b", "-lead", "_lead", "x" * 65, "dev\n"],
)
def test_identifiers_must_be_topic_safe(ident: str) -> None:
    with pytest.raises(ValidationError) as exc:
        WaterLevel.model_validate({**VALID["hydro.level"], "device_id": ident})
    assert ("device_id", "string_pattern_mismatch") in _errors(exc)


def test_identifier_limits_accept_64_chars_and_punctuation() -> None:
    ident = "A" + "b" * 62 + "9"
    assert len(ident) == 64
    assert WaterLevel.model_validate({**VALID["hydro.level"], "device_id": ident}).device_id == ident
    assert WaterLevel.model_validate({**VALID["hydro.level"], "site": "a_b.c:d-e"}).site == "a_b.c:d-e"


@pytest.mark.parametrize(
    ("rain_mm", "interval_s", "ok"),
    [
        # limit = 60 mm per minute, and at least 60 mm for intervals under a minute
        (60.0, 60.0, True),
        (60.01, 60.0, False),
        (60.0, 10.0, True),
        (60.5, 10.0, False),
        (300.0, 300.0, True),
        (300.5, 300.0, False),
        (500.0, 3600.0, True),  # under the intensity limit, at the absolute cap
        (0.0, 86_400.0, True),
    ],
)
def test_rain_intensity_limit(rain_mm: float, interval_s: float, ok: bool) -> None:
    payload = {**VALID["hydro.rain"], "rain_mm": rain_mm, "interval_s": interval_s}
    if ok:
        assert RainIncrement.model_validate(payload).rain_mm == rain_mm
    else:
        with pytest.raises(ValidationError) as exc:
            RainIncrement.model_validate(payload)
        assert [t for _, t in _errors(exc)] == ["out_of_range"]


@pytest.mark.parametrize(
    ("field", "value", "err"),
    [
        ("rain_mm", -0.1, "greater_than_equal"),
        ("rain_mm", 500.1, "less_than_equal"),
        ("interval_s", 0.0, "greater_than"),
        ("interval_s", 86_400.5, "less_than_equal"),
    ],
)
def test_rain_field_bounds(field: str, value: float, err: str) -> None:
    with pytest.raises(ValidationError) as exc:
        RainIncrement.model_validate({**VALID["hydro.rain"], field: value})
    assert (field, err) in _errors(exc)


@pytest.mark.parametrize(
    ("unit", "limit"),
    [("m/s", 10.0), ("m/s2", 100.0), ("counts", float(2**31))],
)
def test_seismic_amplitude_limit_per_unit(unit: str, limit: float) -> None:
    payload = {**VALID["seismic.waveform"], "unit": unit}
    ok = SeismicPacket.model_validate({**payload, "samples": [0.0, limit, -limit]})
    assert ok.unit == unit
    for over in ([0.0, limit * 1.001], [-limit * 1.001, 0.0]):
        with pytest.raises(ValidationError) as exc:
            SeismicPacket.model_validate({**payload, "samples": over})
        assert [t for _, t in _errors(exc)] == ["out_of_range"]


def test_seismic_limits_differ_between_units() -> None:
    # 50 is a plausible acceleration in m/s2 but not a velocity in m/s.
    base = {**VALID["seismic.waveform"], "samples": [50.0]}
    assert SeismicPacket.model_validate({**base, "unit": "m/s2"}).samples == [50.0]
    with pytest.raises(ValidationError):
        SeismicPacket.model_validate({**base, "unit": "m/s"})


@pytest.mark.parametrize(
    ("patch", "loc", "err"),
    [
        ({"samples": []}, "samples", "too_short"),
        # below 10 Hz or above 1000 Hz: outside tocsin.schemas.seismic_band (the detector's filters)
        ({"sample_rate_hz": 0}, "sample_rate_hz", "out_of_range"),
        ({"sample_rate_hz": 9.99}, "sample_rate_hz", "out_of_range"),
        ({"sample_rate_hz": 1000.5}, "sample_rate_hz", "out_of_range"),
        ({"channel": "hhz"}, "channel", "string_pattern_mismatch"),
        ({"unit": "g"}, "unit", "literal_error"),
    ],
)
def test_seismic_field_bounds(patch: dict, loc: str, err: str) -> None:
    with pytest.raises(ValidationError) as exc:
        SeismicPacket.model_validate({**VALID["seismic.waveform"], **patch})
    assert (loc, err) in _errors(exc)


@pytest.mark.parametrize(
    ("unit", "limit"),
    [("%LEL", 100.0), ("%vol", 100.0), ("ppm", 1_000_000.0), ("mg/m3", 1_000_000.0)],
)
def test_gas_limit_per_unit(unit: str, limit: float) -> None:
    payload = {**VALID["hazmat.gas"], "unit": unit}
    assert GasReading.model_validate({**payload, "value": limit}).value == limit
    assert GasReading.model_validate({**payload, "value": 0.0}).value == 0.0
    with pytest.raises(ValidationError) as exc:
        GasReading.model_validate({**payload, "value": limit + 0.5})
    assert [t for _, t in _errors(exc)] == ["out_of_range"]
    with pytest.raises(ValidationError) as exc:
        GasReading.model_validate({**payload, "value": -0.5})
    assert ("value", "greater_than_equal") in _errors(exc)


def test_gas_unit_and_name_are_checked() -> None:
    with pytest.raises(ValidationError) as exc:
        GasReading.model_validate({**VALID["hazmat.gas"], "unit": "ppb"})
    assert ("unit", "literal_error") in _errors(exc)
    with pytest.raises(ValidationError) as exc:
        GasReading.model_validate({**VALID["hazmat.gas"], "gas": "H2S!"})
    assert ("gas", "string_pattern_mismatch") in _errors(exc)


@pytest.mark.parametrize(
    ("patch", "loc", "err"),
    [
        ({"confidence": 1.01}, "confidence", "less_than_equal"),
        ({"confidence": -0.01}, "confidence", "greater_than_equal"),
        ({"bearing_deg": 360.0}, "bearing_deg", "less_than"),
        ({"bearing_deg": -0.5}, "bearing_deg", "greater_than_equal"),
        ({"elevation_deg": 90.5}, "elevation_deg", "less_than_equal"),
        ({"sweep": -1}, "sweep", "greater_than_equal"),
        ({"kind": "steam"}, "kind", "literal_error"),
        ({"seq": -1}, "seq", "greater_than_equal"),
        ({"seq": 2**63}, "seq", "less_than_equal"),
    ],
)
def test_fire_field_bounds(patch: dict, loc: str, err: str) -> None:
    with pytest.raises(ValidationError) as exc:
        FireDetection.model_validate({**VALID["fire.detection"], **patch})
    assert (loc, err) in _errors(exc)


def test_fire_bearing_just_below_north_is_accepted() -> None:
    assert FireDetection.model_validate({**VALID["fire.detection"], "bearing_deg": 359.99}).bearing_deg == 359.99


@pytest.mark.parametrize(("level", "ok"), [(-500.0, True), (9000.0, True), (-500.01, False), (9000.01, False)])
def test_water_level_range(level: float, ok: bool) -> None:
    payload = {**VALID["hydro.level"], "level_m": level}
    if ok:
        assert WaterLevel.model_validate(payload).level_m == level
    else:
        with pytest.raises(ValidationError):
            WaterLevel.model_validate(payload)


def test_union_rejects_unknown_or_missing_type() -> None:
    with pytest.raises(ValidationError) as exc:
        TELEMETRY_ADAPTER.validate_python({**VALID["hydro.rain"], "type": "hydro.snow"})
    assert [t for _, t in _errors(exc)] == ["union_tag_invalid"]
    no_type = {k: v for k, v in VALID["hydro.rain"].items() if k != "type"}
    with pytest.raises(ValidationError) as exc:
        TELEMETRY_ADAPTER.validate_python(no_type)
    assert [t for _, t in _errors(exc)] == ["union_tag_not_found"]


# ---------------------------------------------------------------------------------------------
# Topics
# ---------------------------------------------------------------------------------------------


def test_topic_builders_golden() -> None:
    assert topics.mqtt_telemetry(Family.HYDRO, "s1", "rg-01") == "tocsin/v1/hydro/s1/rg-01/telemetry"
    assert topics.mqtt_status("fire", "ridge", "cam.2") == "tocsin/v1/fire/ridge/cam.2/status"
    assert topics.mqtt_alert("110105", Family.SEISMIC, "earthquake") == "tocsin/v1/alerts/110105/seismic/earthquake"
    assert topics.alert_incident("hydro:330110:rainstorm", "330110", "hydro") == "rainstorm"
    assert topics.alert_incident("hydro:330110:gw1:offline", "330110", Family.HYDRO) == "gw1:offline"
    assert topics.alert_incident("odd/fp+#", "330110", "hydro") == "odd_fp__"
    assert topics.kafka_telemetry("hazmat") == "telemetry.hazmat"
    assert topics.MQTT_TELEMETRY_FILTER == "tocsin/v1/+/+/+/telemetry"
    assert topics.MQTT_STATUS_FILTER == "tocsin/v1/+/+/+/status"
    assert topics.TELEMETRY_TOPICS == (
        "telemetry.fire",
        "telemetry.hydro",
        "telemetry.seismic",
        "telemetry.hazmat",
    )
    assert len(set(topics.ALL_KAFKA_TOPICS)) == len(topics.ALL_KAFKA_TOPICS) == 12
    assert topics.DETECTIONS_URGENT in topics.ALL_KAFKA_TOPICS
    with pytest.raises(ValueError):
        topics.mqtt_telemetry("volcano", "s", "d")


@settings(max_examples=200, deadline=None)
@given(family=st.sampled_from(list(Family)), site=IDENT, device_id=IDENT)
def test_parse_device_topic_round_trip(family: Family, site: str, device_id: str) -> None:
    tel = topics.parse_device_topic(topics.mqtt_telemetry(family, site, device_id))
    assert tel == topics.DeviceTopic(family, site, device_id, "telemetry")
    assert tel is not None and tel.family is family
    sta = topics.parse_device_topic(topics.mqtt_status(family.value, site, device_id))
    assert sta == topics.DeviceTopic(family, site, device_id, "status")


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "tocsin/v1/hydro/s1/d1/other",
        "tocsin/v1/hydro/s1/d1/Telemetry",
        "tocsin/v2/hydro/s1/d1/telemetry",
        "Tocsin/v1/hydro/s1/d1/telemetry",
        "tocsin/v1/volcano/s1/d1/telemetry",
        "tocsin/v1/HYDRO/s1/d1/telemetry",
        "tocsin/v1/hydro//d1/telemetry",
        "tocsin/v1/hydro/s1//telemetry",
        "tocsin/v1/hydro/s1/telemetry",
        "tocsin/v1/hydro/s1/d1/telemetry/extra",
        "/tocsin/v1/hydro/s1/d1/telemetry",
        "tocsin/v1/hydro/s1/d1/telemetry/",
        "tocsin/v1/alerts/110105/hydro",
    ],
)
def test_parse_device_topic_off_scheme(topic: str) -> None:
    assert topics.parse_device_topic(topic) is None


# ---------------------------------------------------------------------------------------------
# Wire encoding
# ---------------------------------------------------------------------------------------------


def _alert(level: WarningLevel = WarningLevel.ORANGE, **kw) -> Alert:
    fields = dict(
        identifier="110105TOCSIN20240701083015-hydro-rainstorm-000",
        fingerprint="hydro:110105:rainstorm",
        revision=0,
        msg_type=MsgType.ALERT,
        hazard=Family.HYDRO,
        event="暴雨",
        level=level,
        sent=T0,
        onset=T0 - timedelta(minutes=5),
        area=AlertArea(code="110105", desc="朝阳区", town="t", village="v", circle=(39.9, 116.4, 5.0)),
        headline="朝阳区发布暴雨橙色预警",
        description="desc",
        references=["a", "b"],
        detections=["rg-01:rainfall:1:0"],
        devices=["rg-01"],
        value=51.5,
        unit="mm",
    )
    fields.update(kw)
    return Alert(**fields)


def _every_model() -> list:
    readings = [MODEL[t][0].model_validate(p) for t, p in VALID.items()]
    return [
        *readings,
        DeviceStatus(device_id="d1", site="s1", family=Family.FIRE, state=DeviceState.OFFLINE, ts=T0, reason="x"),
        DeadLetter.of(b"\xff\x00raw", reason=Reason.SCHEMA, message="m", mqtt_topic="t", received_at=T0, field="f"),
        Detection(
            id="rg-01:rainfall:1719793815250:0",
            device_id="rg-01",
            site="s1",
            family=Family.HYDRO,
            kind="rainfall",
            state=DetectionState.OPEN,
            level=WarningLevel.BLUE,
            value=35.0,
            threshold=35.0,
            unit="mm",
            window_s=3600.0,
            onset=T0,
            ts=T0,
            area_code="110105",
            lat=39.9,
            lon=116.4,
            evidence={"rain_1h_mm": 35.0, "rule": "flash-flood", "nested": [1, {"a": None}]},
        ),
        _alert(),
        DeliveryRecord(
            alert_id="a",
            fingerprint="f",
            revision=2,
            channel="sms",
            recipient="+86138****0000",
            outcome="ok",
            attempts=1,
            ts=T0,
        ),
        Registry(devices=[_device()], sms_recipients={"110105": ["+8613800000000"]}),
    ]


@pytest.mark.parametrize("model", _every_model(), ids=lambda m: type(m).__name__)
def test_wire_round_trip_every_model(model) -> None:
    data = encode(model)
    assert isinstance(data, bytes)
    assert b"\n" not in data and b'", "' not in data  # compact
    back = decode(type(model), data)
    assert back == model
    assert decode(type(model), data.decode("utf-8")) == model  # str accepted too
    assert encode(back) == data  # canonical: re-encoding is byte-identical


def test_wire_keeps_the_utc_offset() -> None:
    rain = RainIncrement.model_validate(VALID["hydro.rain"])
    data = encode(rain)
    assert json.loads(data)["ts"] == "2024-07-01T08:30:15.250000+08:00"
    assert decode(RainIncrement, data).ts.utcoffset() == timedelta(hours=8)
    assert TELEMETRY_ADAPTER.validate_json(data) == rain


def test_wire_is_utf8_not_escaped() -> None:
    data = encode(_alert())
    assert "暴雨".encode() in data


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_wire_decode_refuses_non_finite(constant: str) -> None:
    good = json.loads(encode(RainIncrement.model_validate(VALID["hydro.rain"])))
    text = json.dumps(good).replace('"rain_mm": 5.5', f'"rain_mm": {constant}')
    assert constant in text
    with pytest.raises(ValidationError):
        decode(RainIncrement, text)


@pytest.mark.parametrize("level", list(WarningLevel))
def test_alert_severity_is_on_the_wire_and_derived(level: WarningLevel) -> None:
    alert = _alert(level)
    assert alert.severity == level.cap_severity
    wire = json.loads(encode(alert))
    assert wire["severity"] == level.cap_severity
    assert wire["level"] == level.value
    back = decode(Alert, encode(alert))
    assert back == alert and back.severity == level.cap_severity
    # decoding without the computed field also works
    del wire["severity"]
    assert decode(Alert, json.dumps(wire)) == alert


def test_alert_mismatched_severity_is_refused() -> None:
    wire = json.loads(encode(_alert(WarningLevel.ORANGE)))
    assert wire["severity"] == "Severe"
    wire["severity"] = "Minor"
    with pytest.raises(ValidationError, match="severity 'Minor' does not match level 'orange'"):
        decode(Alert, json.dumps(wire))
    with pytest.raises(ValidationError):
        Alert.model_validate({**_alert().model_dump(), "severity": "Extreme"})


def test_alert_defaults_and_status() -> None:
    alert = _alert()
    assert alert.status is AlertStatus.ACTUAL
    assert (alert.urgency, alert.certainty, alert.sender) == (
        "Immediate",
        "Observed",
        "tocsin@district.example",
    )
    ex = _alert(status="Exercise")
    assert decode(Alert, encode(ex)).status is AlertStatus.EXERCISE
    with pytest.raises(ValidationError):
        _alert(area=AlertArea(code="010105", desc="x"))  # admin codes do not start with 0


# ---------------------------------------------------------------------------------------------
# Dead letters
# ---------------------------------------------------------------------------------------------


def test_dead_letter_preserves_raw_bytes_golden() -> None:
    raw = b'\x00\xff{"a":NaN}\xfe\n'
    dl = DeadLetter.of(raw, reason=Reason.NON_FINITE, message="m", mqtt_topic="tocsin/x", received_at=T0)
    assert dl.raw_b64 == base64.b64encode(raw).decode("ascii") == "AP97ImEiOk5hTn3+Cg=="
    assert dl.raw == raw
    assert dl.raw_size == 13
    assert dl.field is None
    back = decode(DeadLetter, encode(dl))
    assert back.raw == raw and back.reason is Reason.NON_FINITE and back.received_at == T0


def test_dead_letter_message_is_truncated() -> None:
    dl = DeadLetter.of(b"", reason=Reason.SCHEMA, message="x" * 5000, mqtt_topic="t", received_at=T0)
    assert dl.message == "x" * 2000
    assert dl.raw == b"" and dl.raw_size == 0


def test_dead_letter_needs_aware_received_at() -> None:
    with pytest.raises(ValidationError):
        DeadLetter.of(b"x", reason=Reason.SCHEMA, message="m", mqtt_topic="t", received_at=datetime(2024, 1, 1))


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=512), reason=st.sampled_from(list(Reason)))
def test_dead_letter_raw_round_trip_property(raw: bytes, reason: Reason) -> None:
    dl = DeadLetter.of(raw, reason=reason, message="m", mqtt_topic="t", received_at=T0)
    assert dl.raw == raw
    assert dl.raw_size == len(raw)
    back = decode(DeadLetter, encode(dl))
    assert back.raw == raw and back.reason is reason


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


REGISTRY_YAML = """\
devices:
  - device_id: wl-01
    family: hydro
    site: river.bridge
    lat: 39.9
    lon: 116.4
    area: {code: "110105", district: 朝阳区, town: 东坝, village: 单店}
    thresholds: {warning_level_m: 10.0, guaranteed_level_m: 11.0}
  - device_id: cam-01
    family: fire
    site: ridge
    lat: 40.1
    lon: 116.1
    interval_s: 300
    area: {code: "110111"}
sms_recipients:
  "110105": ["+8613800000000"]
"""


def _check_registry(reg: Registry) -> None:
    assert [d.device_id for d in reg.devices] == ["wl-01", "cam-01"]
    wl = reg.get("wl-01")
    assert wl is not None and wl == _device()
    assert wl.interval_s == 60.0  # default
    assert wl.area.desc == "朝阳区东坝单店"
    cam = reg.get("cam-01")
    assert cam is not None and cam.family is Family.FIRE and cam.interval_s == 300.0
    assert cam.area.desc == "110111"  # falls back to the code
    assert cam.thresholds == {}
    assert reg.get("nope") is None
    assert set(reg.by_id()) == {"wl-01", "cam-01"}
    assert reg.sms_recipients == {"110105": ["+8613800000000"]}


def test_load_registry_yaml(tmp_path) -> None:
    p = tmp_path / "devices.yaml"
    p.write_text(REGISTRY_YAML, encoding="utf-8")
    _check_registry(load_registry(p))
    p2 = tmp_path / "devices.yml"
    p2.write_text(REGISTRY_YAML, encoding="utf-8")
    _check_registry(load_registry(str(p2)))


def test_load_registry_json(tmp_path) -> None:
    import yaml

    p = tmp_path / "devices.json"
    p.write_text(json.dumps(yaml.safe_load(REGISTRY_YAML), ensure_ascii=False), encoding="utf-8")
    _check_registry(load_registry(p))


def test_load_registry_empty_yaml_is_empty(tmp_path) -> None:
    p = tmp_path / "empty.yaml"
    p.write_text("", encoding="utf-8")
    reg = load_registry(p)
    assert reg.devices == [] and reg.sms_recipients == {}


@pytest.mark.parametrize(
    ("name", "content", "detail"),
    [
        ("bad.json", b"{", "Expecting property name"),
        ("bad.yaml", b"devices: [\n  - {", "while parsing"),
        ("schema.yaml", REGISTRY_YAML.replace('{code: "110111"}', '{code: "0123"}').encode(), "area.code"),
        ("extra.json", b'{"devices": [], "owner": "me"}', "owner"),
        ("latin1.yaml", b"devices: []\n# caf\xe9\n", "utf-8"),
    ],
)
def test_load_registry_errors_name_the_file(tmp_path, name: str, content: bytes, detail: str) -> None:
    assert content != REGISTRY_YAML.encode()
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ValueError) as exc:
        load_registry(p)
    assert str(p) in str(exc.value)
    assert detail in str(exc.value)


def test_load_registry_missing_file_names_the_file(tmp_path) -> None:
    p = tmp_path / "missing.yaml"
    with pytest.raises(ValueError, match="missing.yaml"):
        load_registry(p)


def test_device_coordinates_are_checked() -> None:
    with pytest.raises(ValidationError):
        _device(lat=90.5)
    with pytest.raises(ValidationError):
        _device(lon=-180.5)
    with pytest.raises(ValidationError):
        _device(interval_s=0)
