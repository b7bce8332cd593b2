"""The validation fast path (ingest/validate.py ``_fast_reading``: pydantic's JSON reader in one pass)
never accepts what the strict reference path (``_strict_reading``: ``json.loads`` semantics, then the
model) refuses, and when both accept they give the same reading and the same Kafka record. The fast
path may refuse more: the reference path then decides, so the dead-letter reasons do not change."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tocsin.ingest.validate import DuplicateWindow, _fast_reading, _strict_reading, validate_telemetry
from tocsin.schemas.common import Family
from tocsin.schemas.deadletter import DeadLetter, Reason
from tocsin.schemas.telemetry import RainIncrement, family_of
from tocsin.schemas.topics import DeviceTopic
from tocsin.schemas.wire import encode

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RAIN = b'{"type":"hydro.rain","device_id":"RG1","site":"s1","ts":"2026-03-01T11:59:00Z","rain_mm":0.5,"interval_s":60}'

_numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 0.5, 60, 1e308, -0.0, 500.0, 500.0000001, 86_400, 1.5e-320]),
)
_values: st.SearchStrategy[object] = st.one_of(
    _numbers,
    st.sampled_from(["0.5", "", "RG1", True, False, None, [], {}, "2026-03-01T11:59:00+00:00", "1709294340"]),
    st.text(max_size=8),
)
_ts = st.sampled_from(
    [
        "2026-03-01T11:59:00+00:00",
        "2026-03-01T11:59:00.123Z",
        "2026-03-01T19:59:00+08:00",
        "2026-03-01T11:59:00",  # naive: refused
        "2026-03-01",
        "1709294340",
        1709294340,
        " 2026-03-01T11:59:00Z",
    ]
)
_base: dict[str, dict[str, object]] = {
    "hydro.rain": {"rain_mm": 0.5, "interval_s": 60},
    "hydro.level": {"level_m": 2.25},
    "fire.detection": {"kind": "smoke", "confidence": 0.5, "bearing_deg": 10},
    "hazmat.gas": {"gas": "CH4", "value": 12.5, "unit": "%LEL"},
    "seismic.waveform": {"sample_rate_hz": 100, "samples": [0.0, 1e-6, -2e-6]},
}


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, bytes]:
    type_name = draw(st.sampled_from(sorted(_base)))
    obj: dict[str, object] = {"type": type_name, "device_id": "RG1", "site": "s1", "ts": draw(_ts)}
    obj |= _base[type_name]
    if draw(st.booleans()):
        obj["seq"] = draw(st.one_of(st.integers(-5, 2**64), st.sampled_from([1.0, "7", True])))
    for _ in range(draw(st.integers(0, 2))):  # change, add or drop fields
        key = draw(st.sampled_from([*obj, "extra", "type", "device_id"]))
        if draw(st.booleans()):
            obj[key] = draw(_values)
        else:
            obj.pop(key, None)
    if draw(st.booleans()):
        obj["type"] = draw(st.sampled_from(sorted(_base)))  # another family's type
    text = json.dumps(obj, separators=(",", ":") if draw(st.booleans()) else (", ", ": "))
    if draw(st.booleans()):  # a duplicate key: both readers keep the last
        text = text[:-1] + ',"rain_mm":' + json.dumps(draw(_values)) + "}"
    return type_name, text.encode()


@settings(max_examples=600, deadline=None)
@given(case=payloads(), family=st.sampled_from(list(Family)))
@example(case=("hydro.rain", RAIN[:-1] + b',"rain_mm":NaN}'), family=Family.HYDRO)
@example(case=("hydro.rain", RAIN[:-1] + b',"seq":12345678901234567890}'), family=Family.HYDRO)
def test_fast_path_accepts_only_what_the_reference_accepts_and_reads_it_the_same(
    case: tuple[str, bytes], family: Family
) -> None:
    _type_name, payload = case
    where = DeviceTopic(family, "s1", "RG1", "telemetry")

    def dead(reason: Reason, message: str, field: str | None = None) -> DeadLetter:
        return DeadLetter.of(payload, reason=reason, message=message, mqtt_topic="t", received_at=NOW, field=field)

    fast = _fast_reading(payload, family)
    strict = _strict_reading(payload, where, dead)
    if fast is not None:
        assert not isinstance(strict, DeadLetter), (payload, strict)
        assert fast == strict
        assert encode(fast) == encode(strict)
        assert fast.family is family


def test_a_well_formed_rain_reading_takes_the_fast_path_and_is_accepted() -> None:
    payload = RAIN[:-1] + b',"seq":3}'
    assert _fast_reading(payload, Family.HYDRO) is not None
    assert _fast_reading(payload, Family.FIRE) is None  # the topic's family decides
    result = validate_telemetry("tocsin/v1/hydro/s1/RG1/telemetry", payload, NOW, duplicates=DuplicateWindow())
    assert not isinstance(result, DeadLetter)
    assert isinstance(result.reading, RainIncrement)
    assert result.reading.seq == 3 and result.reading.rain_mm == 0.5
    assert family_of("hydro.rain") is Family.HYDRO
