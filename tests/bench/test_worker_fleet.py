"""The worker bench's fleet (tests/bench/worker.py): its records decode, and the families come in
the proportions docs/throughput.md states."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from tests.bench.worker import fleet_records
from tocsin.schemas.records import decode_telemetry
from tocsin.schemas.telemetry import SeismicPacket


def test_fleet_proportions_and_records() -> None:
    records = fleet_records(8000, datetime(2026, 6, 1, tzinfo=UTC))
    assert len(records) == 8000
    # per second: gas 100/5 = 20, seismic 18 channels x 1 = 18, rain 400/300 + level 100/300 = 5/3,
    # fire 20/120 = 1/6; in all 20 + 18 + 5/3 + 1/6 = 39.833 records/s
    total = 20 + 18 + 5 / 3 + 1 / 6
    share = {f: n / len(records) for f, n in Counter(f for f, _, _ in records).items()}
    assert abs(share["hazmat"] - 20 / total) < 0.02
    assert abs(share["seismic"] - 18 / total) < 0.02
    assert abs(share["hydro"] - (5 / 3) / total) < 0.01
    assert abs(share["fire"] - (1 / 6) / total) < 0.005
    for family, device, value in records[::97]:
        reading = decode_telemetry(value)
        assert reading.device_id == device
        assert reading.family.value == family  # type: ignore[union-attr]
        if isinstance(reading, SeismicPacket):
            assert len(reading.samples) == 100 and reading.sample_rate_hz == 100.0
