"""Seismic stations may publish binary miniSEED instead of JSON: the gateway normalises both."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from tocsin.ingest.validate import Accepted, validate_telemetry
from tocsin.schemas.deadletter import DeadLetter, Reason
from tocsin.schemas.telemetry import SeismicPacket

GOLDEN = Path(__file__).parent / "golden"
TOPIC = "tocsin/v1/seismic/net/TOC01/telemetry"


def _golden(name: str) -> tuple[bytes, dict]:
    return (GOLDEN / f"{name}.mseed").read_bytes(), json.loads((GOLDEN / f"{name}.json").read_text())


def _start(meta: dict) -> datetime:
    return datetime.fromisoformat(meta["records"][0]["starttime"].replace("Z", "+00:00"))


def test_multi_record_steim2_becomes_one_packet() -> None:
    payload, meta = _golden("steim2_be_512_multi")
    start = _start(meta)
    result = validate_telemetry(TOPIC, payload, start + timedelta(seconds=60))
    assert isinstance(result, Accepted), getattr(result, "message", "")
    packet = result.reading
    assert isinstance(packet, SeismicPacket)
    expected = [x for rec in meta["records"] for x in rec["samples"]]
    assert packet.samples == [float(x) for x in expected]
    assert packet.ts == start and packet.sample_rate_hz == 100.0 and packet.unit == "counts"
    assert packet.device_id == "TOC01" and packet.site == "net" and packet.channel == "HHZ"
    assert result.kafka_topic == "telemetry.seismic"


def test_miniseed_goes_through_the_same_checks_as_json() -> None:
    payload, meta = _golden("int32_be_40hz")
    start = _start(meta)
    stale = validate_telemetry(TOPIC, payload, start + timedelta(days=30))
    assert isinstance(stale, DeadLetter) and stale.reason is Reason.STALE_TIMESTAMP and stale.raw == payload


def test_corrupt_miniseed_is_an_undecodable_dead_letter_with_its_bytes() -> None:
    payload, meta = _golden("steim2_be_100hz")
    broken = payload[:200]
    result = validate_telemetry(TOPIC, broken, _start(meta))
    assert isinstance(result, DeadLetter) and result.reason is Reason.UNDECODABLE
    assert result.message.startswith("miniSEED:") and result.raw == broken


def test_miniseed_on_a_non_seismic_topic_is_undecodable() -> None:
    payload, meta = _golden("int16_be_100hz")
    result = validate_telemetry("tocsin/v1/hydro/s/RG1/telemetry", payload, _start(meta))
    assert isinstance(result, DeadLetter) and result.reason is Reason.UNDECODABLE


def test_records_with_a_gap_or_overlap_are_refused() -> None:
    # steim2_be_512_multi: five 512-byte records of one 100 Hz channel, each starting where the
    # previous ended (358 samples from 23:59:59.876543 -> the next at 00:00:03.456543, per the json).
    payload, meta = _golden("steim2_be_512_multi")
    assert meta["record_length"] == 512 and len(meta["records"]) == 5
    recs = [payload[i : i + 512] for i in range(0, len(payload), 512)]
    now = _start(meta) + timedelta(seconds=60)
    # the third record dropped: 3.76 s of samples missing between records 2 and 4
    gap = recs[0] + recs[1] + recs[3] + recs[4]
    # the first record sent twice: the second copy starts 3.58 s before the first one ended
    overlap = recs[0] + recs[0] + recs[1]
    for broken in (gap, overlap):
        result = validate_telemetry(TOPIC, broken, now)
        assert isinstance(result, DeadLetter) and result.reason is Reason.UNDECODABLE
        assert "gap or overlap" in result.message and result.raw == broken
    # the records in order are one packet of all their samples
    whole = validate_telemetry(TOPIC, payload, now)
    assert isinstance(whole, Accepted) and len(whole.reading.samples) == 358 + 263 + 376 + 286 + 217  # type: ignore[union-attr]
