"""The gateway writes no log line per accepted reading below DEBUG, and samples its dead-letter lines:
the first of a reason at INFO, then at most one per interval carrying the count of those in between."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import tocsin.ingest.gateway as gateway
from tocsin.ingest.gateway import GatewayCore
from tocsin.ingest.metrics import GatewayMetrics


class _Recorder:
    """Records what the gateway produces and reports it durable at once (the gateway's side only)."""

    accepts_headers = True

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    def send(self, topic: str, key: bytes | None, value: bytes, on_done: Any, **_kw: Any) -> None:
        self.records.append((topic, value))
        on_done(None)

    def flush(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        pass


def _rain(seq: int) -> bytes:
    ts = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
    obj = {
        "type": "hydro.rain",
        "device_id": "RG1",
        "site": "s1",
        "ts": ts,
        "seq": seq,
        "rain_mm": 0.5,
        "interval_s": 60,
    }
    return json.dumps(obj).encode()


TOPIC = "tocsin/v1/hydro/s1/RG1/telemetry"


def test_no_line_per_accepted_reading_at_info(caplog: pytest.LogCaptureFixture) -> None:
    sink = _Recorder()
    core = GatewayCore(sink, GatewayMetrics(CollectorRegistry()))
    acks: list[int] = []
    with caplog.at_level(logging.INFO, logger="ingest"):
        for seq in range(200):
            core.handle(TOPIC, _rain(seq), lambda seq=seq: acks.append(seq))
    assert acks == list(range(200))
    assert [t for t, _ in sink.records] == ["telemetry.hydro"] * 200
    assert [r for r in caplog.records if r.name.startswith("ingest")] == []


def test_dead_letter_lines_are_sampled_per_reason(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway, "DEAD_LETTER_LOG_INTERVAL_S", 0.3)
    core = GatewayCore(_Recorder(), GatewayMetrics(CollectorRegistry()))
    with caplog.at_level(logging.DEBUG, logger="tocsin.ingest.gateway"):
        for _ in range(5):
            core.handle(TOPIC, b"not json", lambda: None)
        core.handle(TOPIC, b'{"type": "hydro.rain"}', lambda: None)  # another reason: its own first line
        time.sleep(0.35)
        core.handle(TOPIC, b"still not json", lambda: None)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(info) == 3, info
    assert info[0].startswith("dead letter undecodable on ") and "more" not in info[0]
    assert info[1].startswith("dead letter schema on ")
    assert info[2].startswith("dead letter undecodable on ") and info[2].endswith(
        "(and 4 more of this reason since the last such line)"
    )
    assert len(debug) == 4
