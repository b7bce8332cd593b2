"""Strict validation at the gateway, and no exception out of GatewayCore.handle."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tocsin.ingest.gateway import GatewayCore
from tocsin.ingest.metrics import GatewayMetrics
from tocsin.ingest.validate import Accepted, validate_telemetry
from tocsin.schemas.deadletter import DeadLetter, Reason
from tocsin.schemas.topics import DEADLETTER

NOW = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
TS = (NOW - timedelta(seconds=5)).isoformat()
GOLDEN = Path(__file__).parent / "golden"


def _reading(type_name: str, **patch: Any) -> tuple[str, bytes]:
    base: dict[str, dict[str, Any]] = {
        "hydro.level": {"level_m": 1.5},
        "seismic.waveform": {"sample_rate_hz": 100, "samples": [0.0, 1e-6]},
        "fire.detection": {"kind": "smoke", "confidence": 0.9, "bearing_deg": 10.0},
    }
    family, dev = {"hydro.level": ("hydro", "RG01"), "seismic.waveform": ("seismic", "TOC01")}.get(
        type_name, ("fire", "CAM01")
    )
    obj = {"type": type_name, "device_id": dev, "site": "s1", "ts": TS, **base[type_name], **patch}
    return f"tocsin/v1/{family}/s1/{dev}/telemetry", json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("type_name", "patch", "field"),
    [
        ("hydro.level", {"level_m": "1.5"}, "level_m"),
        ("seismic.waveform", {"sample_rate_hz": True}, "sample_rate_hz"),
        ("fire.detection", {"bearing_deg": False}, "bearing_deg"),
        ("hydro.level", {"seq": " 7 "}, "seq"),
        ("hydro.level", {"seq": 7.0}, "seq"),
        ("hydro.level", {"ts": 1782892800}, "ts"),
        ("hydro.level", {"ts": "1782892800"}, "ts"),
    ],
)
def test_no_coercion_into_numbers_or_times(type_name: str, patch: dict, field: str) -> None:
    topic, payload = _reading(type_name, **patch)
    result = validate_telemetry(topic, payload, NOW)
    assert isinstance(result, DeadLetter) and result.reason is Reason.SCHEMA
    assert result.field == field


def test_json_integer_is_still_a_valid_decimal() -> None:
    topic, payload = _reading("hydro.level", level_m=2, seq=7)
    result = validate_telemetry(topic, payload, NOW)
    assert isinstance(result, Accepted) and result.reading.level_m == 2.0  # type: ignore[union-attr]


@pytest.mark.parametrize("rate", [0.1, 1, 9.99])
def test_seismic_rate_the_detector_cannot_filter_is_refused(rate: float) -> None:
    # the 1-20 Hz trigger band needs a Nyquist frequency above 1 Hz; the floor is 10 Hz (tocsin.schemas.seismic_band)
    topic, payload = _reading("seismic.waveform", sample_rate_hz=rate)
    result = validate_telemetry(topic, payload, NOW)
    assert isinstance(result, DeadLetter) and result.reason is Reason.OUT_OF_RANGE
    assert result.field == "sample_rate_hz"


def _mseed(factor: int, mult: int, b100: float | None) -> bytes:
    """int16_be_100hz's first record with its rate factor/multiplier and an optional blockette 100."""
    data = bytearray((GOLDEN / "int16_be_100hz.mseed").read_bytes()[:512])
    struct.pack_into(">hh", data, 32, factor, mult)
    if b100 is not None:
        first = struct.unpack_from(">H", data, 46)[0]
        # chain a blockette 100 after blockette 1000 (SEED 2.4: type, next, rate float, flags, reserved)
        nxt_pos = first + 2
        struct.pack_into(">H", data, nxt_pos, 56)
        struct.pack_into(">HHf4x", data, 56, 100, 0, b100)
    start = struct.unpack_from(">HHBBB", data, 20)
    return bytes(data), start


@pytest.mark.parametrize(("factor", "mult", "b100"), [(100, 1, 1e-30), (-32768, -32768, None), (-32768, 1, None)])
def test_miniseed_rates_that_used_to_overflow_are_dead_letters(factor: int, mult: int, b100: float | None) -> None:
    payload, _ = _mseed(factor, mult, b100)
    core, records = _core()
    core.handle("tocsin/v1/seismic/s1/TOC01/telemetry", payload, lambda: records.append(("ack", b"", b"")))
    assert [r[0] for r in records] == [DEADLETTER, "ack"]
    letter = DeadLetter.model_validate_json(records[0][2])
    assert letter.reason in (Reason.UNDECODABLE, Reason.OUT_OF_RANGE, Reason.STALE_TIMESTAMP)


def _core(sink: Any = None) -> tuple[GatewayCore, list[tuple[str, bytes, bytes]]]:
    records: list[tuple[str, bytes, bytes]] = []

    class Sink:
        def send(self, topic: str, key: bytes | None, value: bytes, on_done: Any) -> None:
            records.append((topic, key or b"", value))
            on_done(None)

        def flush(self, timeout_s: float) -> None:
            return None

        def close(self) -> None:
            return None

    return GatewayCore(sink or Sink(), GatewayMetrics(CollectorRegistry()), clock=lambda: NOW), records


def test_status_reason_with_control_characters_is_a_dead_letter() -> None:
    core, records = _core()
    payload = json.dumps({"state": "online", "reason": "a\x1b[31m\ud800"}).encode()
    core.handle("tocsin/v1/hydro/s1/RG01/status", payload, lambda: None)
    letter = DeadLetter.model_validate_json(records[0][2])
    assert letter.reason is Reason.SCHEMA and letter.field == "reason"


def test_oversize_status_dead_letter_fits_kafka_and_keeps_the_original_size() -> None:
    core, records = _core()
    payload = b'{"state":"online","reason":"' + b"x" * 5_000_000 + b'"}'
    core.handle("tocsin/v1/hydro/s1/RG01/status", payload, lambda: None)
    letter = DeadLetter.model_validate_json(records[0][2])
    assert letter.reason is Reason.TOO_LARGE and letter.raw_size == len(payload) and letter.raw_truncated
    assert len(records[0][2]) < 1_048_576 and letter.raw == payload[: len(letter.raw)]


def test_lone_surrogate_topic_is_a_dead_letter_with_the_topic_escaped() -> None:
    core, records = _core()
    acks: list[int] = []
    core.handle("tocsin/v1/hydro/s1/RG\udcff01/telemetry", b"{}", lambda: acks.append(1))
    letter = DeadLetter.model_validate_json(records[0][2])
    assert letter.reason in (Reason.BAD_TOPIC, Reason.SCHEMA) and "\\udcff" in letter.mqtt_topic and acks == [1]


def test_internal_failure_becomes_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    core, records = _core()

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("tocsin.ingest.gateway.validate_telemetry", broken)
    acks: list[int] = []
    topic, payload = _reading("hydro.level")
    core.handle(topic, payload, lambda: acks.append(len(records)))
    letter = DeadLetter.model_validate_json(records[0][2])
    assert letter.reason is Reason.INTERNAL and letter.message == "RuntimeError: boom"
    assert letter.raw == payload and acks == [1]


def test_sink_refusing_synchronously_leaves_the_message_unacknowledged() -> None:
    class Full:
        def send(self, *_a: Any, **_k: Any) -> None:
            raise BufferError("queue full")

        def flush(self, timeout_s: float) -> None:
            return None

        def close(self) -> None:
            return None

    core, _ = _core(Full())
    acks: list[int] = []
    topic, payload = _reading("hydro.level")
    core.handle(topic, payload, lambda: acks.append(1))
    assert acks == [] and core.in_flight == 0
