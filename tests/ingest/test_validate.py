"""Unit tests for ingest/validate.py: every dead-letter reason, the accepted path, duplicate
suppression, device status parsing, and the "never raises, raw bytes preserved" property."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tocsin.ingest.validate import Accepted, DuplicateWindow, Limits, parse_status, validate_telemetry
from tocsin.schemas.common import Family
from tocsin.schemas.deadletter import DeadLetter, Reason
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.status import DeviceState, DeviceStatus
from tocsin.schemas.telemetry import TELEMETRY_ADAPTER, RainIncrement
from tocsin.schemas.wire import decode, encode

NOW = datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC)
TS = "2024-07-01T19:59:30+08:00"  # 30 s before NOW
RAIN_TOPIC = "tocsin/v1/hydro/site.A/rg-01/telemetry"
STATUS_TOPIC = "tocsin/v1/hydro/site.A/rg-01/status"

RAIN = {
    "type": "hydro.rain",
    "device_id": "rg-01",
    "site": "site.A",
    "ts": TS,
    "seq": 7,
    "rain_mm": 2.5,
    "interval_s": 300,
}

# One valid payload per telemetry type, with the topic it belongs on.
CASES = {
    "fire.detection": (
        "tocsin/v1/fire/ridge/cam-01/telemetry",
        {
            "type": "fire.detection",
            "device_id": "cam-01",
            "site": "ridge",
            "ts": TS,
            "kind": "flame",
            "confidence": 0.9,
            "bearing_deg": 45.5,
        },
    ),
    "hydro.rain": (RAIN_TOPIC, RAIN),
    "hydro.level": (
        "tocsin/v1/hydro/bridge/wl-01/telemetry",
        {"type": "hydro.level", "device_id": "wl-01", "site": "bridge", "ts": TS, "level_m": 9.87},
    ),
    "seismic.waveform": (
        "tocsin/v1/seismic/st.1/BJ01/telemetry",
        {
            "type": "seismic.waveform",
            "device_id": "BJ01",
            "site": "st.1",
            "ts": TS,
            "sample_rate_hz": 100,
            "samples": [1e-6, -2e-6, 3.5e-6],
        },
    ),
    "hazmat.gas": (
        "tocsin/v1/hazmat/plant/gas-9/telemetry",
        {
            "type": "hazmat.gas",
            "device_id": "gas-9",
            "site": "plant",
            "ts": TS,
            "gas": "CO",
            "value": 12,
            "unit": "ppm",
        },
    ),
}


def _bytes(obj: object) -> bytes:
    return json.dumps(obj).encode("utf-8")


def _rain(**patch: object) -> bytes:
    return _bytes({**RAIN, **patch})


def _dead(result: Accepted | DeadLetter, reason: Reason, payload: bytes, topic: str = RAIN_TOPIC) -> DeadLetter:
    assert isinstance(result, DeadLetter), result
    assert result.reason is reason, (result.reason, result.message)
    assert result.raw == payload
    assert result.raw_size == len(payload)
    assert result.mqtt_topic == topic
    assert result.received_at == NOW
    return result


def _registry(**kw: object) -> Registry:
    fields = dict(device_id="rg-01", family=Family.HYDRO, site="site.A", lat=39.9, lon=116.4, area=Area(code="110105"))
    fields.update(kw)
    return Registry(devices=[Device(**fields)])


# ---------------------------------------------------------------------------------------------
# Accepted
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", sorted(CASES))
def test_accepted_path(type_name: str) -> None:
    topic, obj = CASES[type_name]
    payload = _bytes(obj)
    result = validate_telemetry(topic, payload, NOW)
    assert isinstance(result, Accepted)
    family = type_name.split(".")[0]
    assert result.kafka_topic == f"telemetry.{family}"
    assert result.key == obj["device_id"].encode("utf-8")
    expected = TELEMETRY_ADAPTER.validate_python(obj)
    assert result.reading == expected
    assert result.value == encode(expected)
    assert TELEMETRY_ADAPTER.validate_json(result.value) == expected


def test_accepted_value_is_canonical_not_the_raw_payload() -> None:
    # Pretty-printed input with an integer interval: the value is the compact re-encoding.
    payload = json.dumps(RAIN, indent=2).encode()
    result = validate_telemetry(RAIN_TOPIC, payload, NOW)
    assert isinstance(result, Accepted)
    assert result.value != payload
    assert json.loads(result.value) == {
        **RAIN,
        "ts": "2024-07-01T19:59:30+08:00",
        "interval_s": 300.0,
    }
    back = decode(RainIncrement, result.value)
    assert back == result.reading
    assert back.ts == NOW - timedelta(seconds=30)


def test_accepted_with_matching_registry() -> None:
    result = validate_telemetry(RAIN_TOPIC, _rain(), NOW, registry=_registry())
    assert isinstance(result, Accepted)
    assert result.key == b"rg-01"


# ---------------------------------------------------------------------------------------------
# One test per dead-letter reason
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe{}",  # invalid UTF-8
        b'{"type": "hydro.rain", "site": "caf\xe9"}',  # Latin-1, not UTF-8
        b"hello",
        b"",
        b'{"type": "hydro.rain",',
        b"{'single': 'quotes'}",
    ],
)
def test_undecodable(payload: bytes) -> None:
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW), Reason.UNDECODABLE, payload)
    assert dl.message.startswith("payload is not UTF-8 JSON")


def test_undecodable_deeply_nested_json_does_not_raise() -> None:
    # 100k brackets are well below the size limit but beyond the JSON parser's recursion limit.
    for payload in (b"[" * 100_000, b'{"a":' + b"[" * 100_000):
        _dead(validate_telemetry(RAIN_TOPIC, payload, NOW), Reason.UNDECODABLE, payload)


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        (_bytes({k: v for k, v in RAIN.items() if k != "rain_mm"}), "rain_mm", "Field required"),
        (_rain(rain_mm="lots"), "rain_mm", "valid number"),
        (_rain(battery_v=3.7), "battery_v", "Extra inputs"),
        (_rain(ts="2024-07-01T11:59:30"), "ts", "timezone"),
        (_rain(device_id="rg 01"), "device_id", "pattern"),
        (_rain(seq="first"), "seq", "valid integer"),
    ],
)
def test_schema_names_the_field(payload: bytes, field: str, fragment: str) -> None:
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW), Reason.SCHEMA, payload)
    assert dl.field == field
    assert dl.message.startswith(f"{field}: ")
    assert fragment in dl.message


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_schema_non_object(payload: bytes) -> None:
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW), Reason.SCHEMA, payload)
    assert "JSON object" in dl.message


def test_schema_unknown_or_missing_type() -> None:
    payload = _rain(type="hydro.snow")
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW), Reason.SCHEMA, payload)
    assert "hydro.snow" in dl.message
    payload = _bytes({k: v for k, v in RAIN.items() if k != "type"})
    _dead(validate_telemetry(RAIN_TOPIC, payload, NOW), Reason.SCHEMA, payload)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_literals(literal: str) -> None:
    payload = _rain().replace(b'"rain_mm": 2.5', b'"rain_mm": ' + literal.encode())
    assert literal.encode() in payload
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW), Reason.NON_FINITE, payload)
    assert literal in dl.message


def test_non_finite_literal_inside_a_list() -> None:
    topic, obj = CASES["seismic.waveform"]
    payload = _bytes(obj).replace(b"-2e-06", b"NaN")
    assert b"NaN" in payload
    _dead(validate_telemetry(topic, payload, NOW), Reason.NON_FINITE, payload, topic)


def test_non_finite_by_overflow() -> None:
    payload = _rain().replace(b'"rain_mm": 2.5', b'"rain_mm": 1e400')
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW), Reason.NON_FINITE, payload)
    assert dl.field == "rain_mm"


def test_integers_stay_exact_whatever_their_length() -> None:
    # The JSON fast path (orjson) reads integers beyond 64 bits as floats; such payloads take the
    # exact path. Seq is 0..2**63-1 (tocsin.schemas.common.Seq): its largest value is accepted as is, and one
    # beyond 64 bits is out of range (an integer), not a float refused as "not an integer" (schema).
    top = 2**63 - 1
    accepted = validate_telemetry(RAIN_TOPIC, _rain(seq=top), NOW)
    assert isinstance(accepted, Accepted) and accepted.reading.seq == top
    payload = _rain(seq=2**70)
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW), Reason.OUT_OF_RANGE, payload)
    assert dl.field == "seq"


@pytest.mark.parametrize(
    ("type_name", "patch", "field"),
    [
        ("hydro.rain", {"rain_mm": 600}, "rain_mm"),
        ("hydro.rain", {"rain_mm": -1}, "rain_mm"),
        ("hydro.rain", {"rain_mm": 100, "interval_s": 60}, None),  # intensity: a model-level check
        ("fire.detection", {"confidence": 1.5}, "confidence"),
        ("fire.detection", {"bearing_deg": 360}, "bearing_deg"),
        ("hydro.level", {"level_m": 9001}, "level_m"),
        ("seismic.waveform", {"samples": [0.0, 11.0]}, None),
        ("hazmat.gas", {"unit": "%LEL", "value": 101}, None),
        ("hazmat.gas", {"value": -3}, "value"),
    ],
)
def test_out_of_range(type_name: str, patch: dict, field: str | None) -> None:
    topic, obj = CASES[type_name]
    payload = _bytes({**obj, **patch})
    dl = _dead(validate_telemetry(topic, payload, NOW), Reason.OUT_OF_RANGE, payload, topic)
    assert dl.field == field


def test_range_and_schema_errors_together_are_schema() -> None:
    payload = _rain(rain_mm=600, battery_v=1)
    _dead(validate_telemetry(RAIN_TOPIC, payload, NOW), Reason.SCHEMA, payload)


@pytest.mark.parametrize(
    ("topic", "payload", "field"),
    [
        ("tocsin/v1/hydro/site.A/rg-02/telemetry", _rain(), "device_id"),
        ("tocsin/v1/hydro/site.B/rg-01/telemetry", _rain(), "site"),
        # the payload type belongs to another family than the topic, even if the payload is invalid
        ("tocsin/v1/fire/site.A/rg-01/telemetry", _rain(), "type"),
        ("tocsin/v1/seismic/site.A/rg-01/telemetry", _rain(rain_mm="lots"), "type"),
    ],
)
def test_identity_mismatch(topic: str, payload: bytes, field: str) -> None:
    dl = _dead(validate_telemetry(topic, payload, NOW), Reason.IDENTITY_MISMATCH, payload, topic)
    assert dl.field == field


def test_unknown_device_with_registry() -> None:
    payload = _rain()
    reg = _registry(device_id="rg-99")
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW, registry=reg), Reason.UNKNOWN_DEVICE, payload)
    assert dl.field == "device_id"
    assert "rg-01" in dl.message
    # without a registry, the same message is accepted
    assert isinstance(validate_telemetry(RAIN_TOPIC, payload, NOW), Accepted)


@pytest.mark.parametrize("patch", [{"family": Family.FIRE}, {"site": "site.Z"}])
def test_registry_family_or_site_mismatch(patch: dict) -> None:
    payload = _rain()
    reg = _registry(**patch)
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW, registry=reg), Reason.IDENTITY_MISMATCH, payload)
    assert "registry has rg-01" in dl.message


def test_future_timestamp() -> None:
    limits = Limits(max_future_skew_s=60.0)
    at_limit = _rain(ts=(NOW + timedelta(seconds=60)).isoformat())
    assert isinstance(validate_telemetry(RAIN_TOPIC, at_limit, NOW, limits=limits), Accepted)
    payload = _rain(ts=(NOW + timedelta(seconds=61)).isoformat())
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW, limits=limits), Reason.FUTURE_TIMESTAMP, payload)
    assert dl.field == "ts"
    assert "61 s ahead" in dl.message
    # the default skew guard is 300 s
    assert isinstance(validate_telemetry(RAIN_TOPIC, payload, NOW), Accepted)


def test_future_timestamp_compares_instants_across_offsets() -> None:
    limits = Limits(max_future_skew_s=60.0)
    # 20:01:30+08:00 is 12:01:30Z: 90 s ahead although the wall-clock digits look far ahead/behind.
    payload = _rain(ts="2024-07-01T20:01:30+08:00")
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW, limits=limits), Reason.FUTURE_TIMESTAMP, payload)
    assert "90 s ahead" in dl.message
    west = timezone(timedelta(hours=-5))
    ok = _rain(ts=datetime(2024, 7, 1, 7, 0, 30, tzinfo=west).isoformat())  # 12:00:30Z
    assert isinstance(validate_telemetry(RAIN_TOPIC, ok, NOW, limits=limits), Accepted)


def test_stale_timestamp() -> None:
    limits = Limits(max_age_s=3600.0)
    at_limit = _rain(ts=(NOW - timedelta(seconds=3600)).isoformat())
    assert isinstance(validate_telemetry(RAIN_TOPIC, at_limit, NOW, limits=limits), Accepted)
    payload = _rain(ts=(NOW - timedelta(seconds=3601)).isoformat())
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW, limits=limits), Reason.STALE_TIMESTAMP, payload)
    assert dl.field == "ts"
    assert "3601 s old (limit 3600 s)" in dl.message
    assert isinstance(validate_telemetry(RAIN_TOPIC, payload, NOW), Accepted)  # default: 7 days


def test_too_large() -> None:
    limits = Limits(max_payload_bytes=len(_rain()))
    assert isinstance(validate_telemetry(RAIN_TOPIC, _rain(), NOW, limits=limits), Accepted)
    payload = _rain(site="site.A ")  # one byte more (and invalid, but size is checked first)
    assert len(payload) == limits.max_payload_bytes + 1
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW, limits=limits), Reason.TOO_LARGE, payload)
    assert str(len(payload)) in dl.message
    # size is checked before anything else, even the topic
    dl = validate_telemetry("elsewhere", payload, NOW, limits=limits)
    _dead(dl, Reason.TOO_LARGE, payload, "elsewhere")


def test_duplicate_and_forget() -> None:
    dup = DuplicateWindow()
    first = validate_telemetry(RAIN_TOPIC, _rain(seq=5), NOW, duplicates=dup)
    assert isinstance(first, Accepted)
    payload = _rain(seq=5, rain_mm=3.0)
    dl = _dead(validate_telemetry(RAIN_TOPIC, payload, NOW, duplicates=dup), Reason.DUPLICATE, payload)
    assert dl.field == "seq"
    assert "seq 5 of rg-01" in dl.message
    assert isinstance(validate_telemetry(RAIN_TOPIC, _rain(seq=6), NOW, duplicates=dup), Accepted)
    # the same seq from another device is not a duplicate
    other = "tocsin/v1/hydro/site.A/rg-02/telemetry"
    assert isinstance(validate_telemetry(other, _rain(device_id="rg-02", seq=5), NOW, duplicates=dup), Accepted)
    # forget: the record could not be delivered, so its redelivery is accepted once more
    dup.forget("rg-01", 5)
    assert isinstance(validate_telemetry(RAIN_TOPIC, _rain(seq=5), NOW, duplicates=dup), Accepted)
    _dead(validate_telemetry(RAIN_TOPIC, _rain(seq=5), NOW, duplicates=dup), Reason.DUPLICATE, _rain(seq=5))
    dup.forget("nobody", 1)  # unknown device: no effect, no error
    # readings without seq are never duplicates
    no_seq = _bytes({k: v for k, v in RAIN.items() if k != "seq"})
    for _ in range(2):
        assert isinstance(validate_telemetry(RAIN_TOPIC, no_seq, NOW, duplicates=dup), Accepted)


def test_rejected_reading_does_not_consume_its_seq() -> None:
    dup = DuplicateWindow()
    stale = _rain(seq=9, ts=(NOW - timedelta(days=8)).isoformat())
    _dead(validate_telemetry(RAIN_TOPIC, stale, NOW, duplicates=dup), Reason.STALE_TIMESTAMP, stale)
    assert isinstance(validate_telemetry(RAIN_TOPIC, _rain(seq=9), NOW, duplicates=dup), Accepted)


def test_duplicate_window_bounds() -> None:
    w = DuplicateWindow(size=2, max_devices=2)
    assert [w.check_and_add("a", s) for s in (1, 2, 2, 3)] == [False, False, True, False]
    assert w.check_and_add("a", 1) is False  # 1 was evicted by 3 (window of 2)
    assert w.check_and_add("a", 3) is True
    w.check_and_add("b", 1)
    w.check_and_add("a", 3)  # touch a: b is now the least recently used device
    w.check_and_add("c", 1)  # third device evicts b
    assert w.check_and_add("b", 1) is False
    assert w.check_and_add("c", 1) is True


@pytest.mark.parametrize(
    "topic",
    [
        STATUS_TOPIC,
        "tocsin/v1/hydro/site.A/rg-01",
        "tocsin/v1/volcano/site.A/rg-01/telemetry",
        "tocsin/v2/hydro/site.A/rg-01/telemetry",
        "tocsin/v1/hydro//rg-01/telemetry",
        "",
    ],
)
def test_bad_topic(topic: str) -> None:
    payload = _rain()
    dl = _dead(validate_telemetry(topic, payload, NOW), Reason.BAD_TOPIC, payload, topic)
    assert dl.field is None


# ---------------------------------------------------------------------------------------------
# Properties: never raises; dead letters carry the exact input
# ---------------------------------------------------------------------------------------------

TOPICS = st.sampled_from([t for t, _ in CASES.values()] + [STATUS_TOPIC, "tocsin/v1/x/y/z/telemetry", "a/b"])

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from([TS, "2024-07-01T12:00:00", "hydro.rain", "rg-01", "site.A", "m/s", "ppm", "smoke"]),
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    [
        "type",
        "device_id",
        "site",
        "ts",
        "seq",
        "rain_mm",
        "interval_s",
        "level_m",
        "samples",
        "sample_rate_hz",
        "unit",
        "gas",
        "value",
        "kind",
        "confidence",
        "bearing_deg",
        "channel",
        "extra",
    ]
)


def _finite(obj: object) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, list):
        return all(_finite(x) for x in obj)
    if isinstance(obj, dict):
        return all(_finite(x) for x in obj.values())
    return True


def _telemetry_topic(topic: str) -> bool:
    parts = topic.split("/")
    return (
        len(parts) == 6
        and parts[:2] == ["tocsin", "v1"]
        and parts[2] in {f.value for f in Family}
        and all(parts[3:5])
        and parts[5] == "telemetry"
    )


def _expected_reasons(topic: str, payload: bytes) -> set[Reason]:
    """The dead-letter reasons a payload can earn, worked out from the checks' order (topic, then
    UTF-8 JSON, then finite numbers, then an object) without the code under test."""
    if not _telemetry_topic(topic):
        return {Reason.BAD_TOPIC}
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {Reason.UNDECODABLE}
    if not _finite(obj):
        return {Reason.NON_FINITE}
    if not isinstance(obj, dict):
        return {Reason.SCHEMA}
    # an object: wrong or missing fields, or a type of another family
    return {Reason.SCHEMA, Reason.IDENTITY_MISMATCH}


def _check_outcome(
    result: Accepted | DeadLetter, topic: str, payload: bytes, expected: set[Reason] | None = None
) -> None:
    if isinstance(result, DeadLetter):
        assert result.raw == payload
        assert result.raw_size == len(payload)
        assert result.mqtt_topic == topic
        assert result.reason in (expected if expected is not None else _expected_reasons(topic, payload))
        assert decode(DeadLetter, encode(result)).raw == payload
    else:
        assert isinstance(result, Accepted)
        fam = result.reading.family
        assert topic.split("/")[2] == fam.value
        assert result.kafka_topic == f"telemetry.{fam.value}"
        assert result.key == result.reading.device_id.encode()
        assert TELEMETRY_ADAPTER.validate_json(result.value) == result.reading


@settings(max_examples=300, deadline=None)
@given(topic=TOPICS, payload=st.binary(max_size=300))
def test_property_arbitrary_bytes_never_raise(topic: str, payload: bytes) -> None:
    result = validate_telemetry(topic, payload, NOW, registry=_registry(), duplicates=DuplicateWindow())
    _check_outcome(result, topic, payload)
    assert isinstance(result, DeadLetter)  # random bytes are never a valid reading


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(sorted(CASES)),
    drop=st.sets(FIELD_NAMES, max_size=3),
    replace=st.dictionaries(FIELD_NAMES, JSON_VALUE, max_size=3),
    extra=st.dictionaries(st.text(max_size=6), JSON_VALUE, max_size=2),
    use_registry=st.booleans(),
    compact=st.booleans(),
)
def test_property_jsonish_dicts_never_raise(
    case: str, drop: set, replace: dict, extra: dict, use_registry: bool, compact: bool
) -> None:
    topic, base = CASES[case]
    obj = {k: v for k, v in base.items() if k not in drop}
    obj.update(replace)
    obj.update(extra)
    payload = json.dumps(obj, allow_nan=True, separators=(",", ":") if compact else None).encode()
    reg = _registry(device_id=base["device_id"], site=base["site"], family=topic.split("/")[2])
    result = validate_telemetry(
        topic, payload, NOW, registry=reg if use_registry else None, duplicates=DuplicateWindow()
    )
    # a JSON object on a good topic: non-finite numbers are refused first; otherwise a field check
    # (never a topic, decoding, size or duplicate reason; unknown device only with a registry)
    if not _finite(obj):
        expected = {Reason.NON_FINITE}
    else:
        expected = {Reason.SCHEMA, Reason.OUT_OF_RANGE, Reason.IDENTITY_MISMATCH}
        expected |= {Reason.FUTURE_TIMESTAMP, Reason.STALE_TIMESTAMP}
        expected |= {Reason.UNKNOWN_DEVICE} if use_registry else set()
    _check_outcome(result, topic, payload, expected)
    if not drop and not replace and not extra:
        assert isinstance(result, Accepted)


@settings(max_examples=80, deadline=None)
@given(obj=JSON_VALUE)
def test_property_arbitrary_json_never_raises(obj: object) -> None:
    payload = json.dumps(obj, allow_nan=True).encode()
    result = validate_telemetry(RAIN_TOPIC, payload, NOW)
    _check_outcome(result, RAIN_TOPIC, payload)


# ---------------------------------------------------------------------------------------------
# Device status
# ---------------------------------------------------------------------------------------------


def _status(result: DeviceStatus | DeadLetter) -> DeviceStatus:
    assert isinstance(result, DeviceStatus), result
    assert (result.device_id, result.site, result.family) == ("rg-01", "site.A", Family.HYDRO)
    return result


@pytest.mark.parametrize("payload", [b"offline", b" offline\n"])
def test_status_bare_offline_is_last_will(payload: bytes) -> None:
    s = _status(parse_status(STATUS_TOPIC, payload, NOW))
    assert s.state is DeviceState.OFFLINE
    assert s.reason == "last-will"
    assert s.ts == NOW


def test_status_bare_online() -> None:
    s = _status(parse_status(STATUS_TOPIC, b"online", NOW))
    assert s.state is DeviceState.ONLINE
    assert s.reason == ""
    assert s.ts == NOW


def test_status_json_online() -> None:
    s = _status(parse_status(STATUS_TOPIC, b'{"state":"online"}', NOW))
    assert s.state is DeviceState.ONLINE and s.reason == "" and s.ts == NOW


def test_status_json_with_ts_and_reason() -> None:
    payload = b'{"state": "offline", "reason": "shutdown", "ts": "2024-07-01T19:00:00+08:00"}'
    s = _status(parse_status(STATUS_TOPIC, payload, NOW))
    assert s.state is DeviceState.OFFLINE
    assert s.reason == "shutdown"  # an orderly offline is not a last will
    assert s.ts == NOW - timedelta(hours=1)


def test_status_json_repeating_its_identity_is_accepted() -> None:
    payload = b'{"state": "online", "device_id": "rg-01", "site": "site.A", "family": "hydro"}'
    s = _status(parse_status(STATUS_TOPIC, payload, NOW))
    assert s.state is DeviceState.ONLINE


@pytest.mark.parametrize(
    ("key", "value"), [("device_id", "rg-02"), ("site", "site.B"), ("family", "fire"), ("family", 3)]
)
def test_status_json_contradicting_the_topic(key: str, value: object) -> None:
    payload = _bytes({"state": "online", key: value})
    dl = _dead(parse_status(STATUS_TOPIC, payload, NOW), Reason.IDENTITY_MISMATCH, payload, STATUS_TOPIC)
    assert dl.field == key


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"garbage", Reason.SCHEMA),
        (b"OFFLINE", Reason.SCHEMA),
        (b"", Reason.SCHEMA),
        (b"[1]", Reason.SCHEMA),
        (b'{"state": "online", "battery": 3}', Reason.SCHEMA),
        (b'{"state": "online", "ts": "2024-07-01T12:00:00"}', Reason.SCHEMA),
        (b'{"reason": "x"}', Reason.SCHEMA),
        (b"\xff\xfeoffline", Reason.UNDECODABLE),
        (b"{not json", Reason.UNDECODABLE),
        (b'{"state": NaN}', Reason.UNDECODABLE),
        (b'{"a":' + b"[" * 4_000, Reason.UNDECODABLE),  # deeper than the JSON parser's recursion limit
        (b'{"state": "online", "reason": "' + b"x" * 5_000 + b'"}', Reason.TOO_LARGE),
    ],
)
def test_status_garbage_is_dead_lettered(payload: bytes, reason: Reason) -> None:
    _dead(parse_status(STATUS_TOPIC, payload, NOW), reason, payload, STATUS_TOPIC)


def test_status_unknown_state_names_the_field() -> None:
    # Only a payload starting with "{" is parsed as JSON; anything else is taken as the bare state.
    dl = _dead(parse_status(STATUS_TOPIC, b"[1]", NOW), Reason.SCHEMA, b"[1]", STATUS_TOPIC)
    assert dl.field == "state"


@pytest.mark.parametrize("topic", [RAIN_TOPIC, "tocsin/v1/hydro/site.A/status", "x"])
def test_status_bad_topic(topic: str) -> None:
    _dead(parse_status(topic, b"online", NOW), Reason.BAD_TOPIC, b"online", topic)


@settings(max_examples=80, deadline=None)
@given(payload=st.one_of(st.binary(max_size=200), JSON_VALUE.map(lambda v: json.dumps(v).encode())))
def test_property_status_never_raises(payload: bytes) -> None:
    result = parse_status(STATUS_TOPIC, payload, NOW)
    if isinstance(result, DeadLetter):
        assert result.raw == payload and result.mqtt_topic == STATUS_TOPIC
    else:
        assert isinstance(result, DeviceStatus)
        assert (result.device_id, result.site, result.family) == ("rg-01", "site.A", Family.HYDRO)
