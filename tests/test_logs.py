"""tocsin/logs.py: one JSON object per line, extra fields kept, exceptions serialised, secrets masked."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from tocsin.logs import (
    MASK,
    ClientConnectionGate,
    ClientConnectionMetrics,
    JsonFormatter,
    TextFormatter,
    client_gate,
    dict_config,
    formatter,
)
from tocsin.settings import Settings


def _record(msg: str = "reading accepted", *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("tocsin.test")
    record = logger.makeRecord("tocsin.test", logging.INFO, __file__, 10, msg, args, None, extra=extra)
    record.created = 1_764_403_200.25  # 2025-11-29T08:00:00.250Z
    return record


def test_json_line_has_the_fixed_fields_and_extras() -> None:
    line = JsonFormatter("gateway").format(
        _record("reading %s accepted", "RG01", correlation_id="c-0123456789abcdef", device_id="RG01", seq=17)
    )
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "2025-11-29T08:00:00.250+00:00",
        "level": "INFO",
        "logger": "tocsin.test",
        "message": "reading RG01 accepted",
        "role": "gateway",
        "correlation_id": "c-0123456789abcdef",
        "device_id": "RG01",
        "seq": 17,
    }


def test_extras_cannot_replace_the_fixed_fields() -> None:
    out = json.loads(JsonFormatter("worker").format(_record(level="DEBUG", logger="x", role="y", ts="z", n=1)))
    assert (out["level"], out["logger"], out["role"], out["n"]) == ("INFO", "tocsin.test", "worker", 1)
    assert out["ts"] == "2025-11-29T08:00:00.250+00:00"
    assert list(out)[:5] == ["ts", "level", "logger", "message", "role"]


def test_timestamp_is_iso_with_an_offset() -> None:
    ts = json.loads(JsonFormatter().format(_record()))["ts"]
    parsed = datetime.fromisoformat(ts)
    assert parsed.utcoffset() is not None and parsed.timestamp() == 1_764_403_200.25


def test_exception_is_serialised() -> None:
    try:
        raise ValueError("bad gauge")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "failed", (), exc_info)
    out = json.loads(JsonFormatter("worker").format(record))
    assert out["level"] == "ERROR" and out["exc_type"] == "ValueError"
    assert out["exc"].startswith("Traceback") and "ValueError: bad gauge" in out["exc"]


def test_secrets_are_never_rendered() -> None:
    key = "sk-live-9f8e7d6c5b4a"
    settings = Settings(sms_api_key=SecretStr(key), mqtt_password=SecretStr("hunter2"))
    record = _record(
        "configured %s",
        settings,
        api_key=settings.sms_api_key,
        nested={"password": settings.mqtt_password, "keys": [SecretStr(key)]},
        settings=settings,
    )
    for fmt in (JsonFormatter("worker"), TextFormatter()):
        line = fmt.format(record)
        assert key not in line and "hunter2" not in line
    out = json.loads(JsonFormatter().format(record))
    assert out["api_key"] == MASK and out["nested"] == {"password": MASK, "keys": [MASK]}


def test_non_json_values_are_stringified() -> None:
    when = datetime.fromisoformat("2026-11-29T08:00:00+08:00")
    out = json.loads(JsonFormatter().format(_record(at=when, raw=b"\xff{", obj=object(), tags={"a"})))
    assert out["at"] == "2026-11-29T08:00:00+08:00"
    assert out["raw"] == "\ufffd{" and out["obj"].startswith("<object object") and out["tags"] == ["a"]


def test_text_format_appends_the_correlation_id() -> None:
    line = TextFormatter().format(_record(correlation_id="c-1"))
    assert line.endswith("INFO tocsin.test: reading accepted [correlation_id=c-1]")
    assert "correlation_id" not in TextFormatter().format(_record())


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json or text"):
        formatter("xml")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    config = dict_config("INFO", "json", "gateway")
    config["handlers"]["stdout"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_dict_config_routes_every_logger_to_json(captured: io.StringIO) -> None:
    logging.getLogger("tocsin.ingest.gateway").info("reading accepted", extra={"correlation_id": "c-9"})
    logging.getLogger("kafka.conn").info("chatty client line")  # held back at WARNING
    logging.getLogger("tocsin.alerts.notify").warning(
        "delivery %s", "x", extra={"channel": "sms", "outcome": "gave_up"}
    )
    lines = [json.loads(s) for s in captured.getvalue().splitlines()]
    assert [(r["logger"], r.get("correlation_id"), r.get("outcome")) for r in lines] == [
        ("tocsin.ingest.gateway", "c-9", None),
        ("tocsin.alerts.notify", None, "gave_up"),
    ]
    assert all(r["role"] == "gateway" for r in lines)


@given(
    message=st.text(max_size=200),
    extras=st.dictionaries(
        st.from_regex(r"\A[a-z][a-z_]{0,11}\Z").filter(
            lambda k: (
                k not in logging.LogRecord("x", 0, "x", 0, "x", None, None).__dict__
                and k not in ("message", "asctime", "taskName", "ts", "level", "logger", "role")
            )
        ),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=50), st.lists(st.integers(), max_size=3)),
        max_size=5,
    ),
)
def test_any_message_and_extras_give_one_parseable_line(message: str, extras: dict[str, object]) -> None:
    line = JsonFormatter("worker").format(_record(message, **extras))  # no args: no %-formatting
    assert "\n" not in line
    out = json.loads(line)
    assert out["message"] == message
    assert {k: out[k] for k in extras} == extras


# --------------------------------------------------------------------------- client connection errors
class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def gated() -> Iterator[tuple[ClientConnectionGate, _Clock, io.StringIO]]:
    """A logger tree with the gate on its handler (no watcher thread: the test calls ``tick``)."""
    clock, stream = _Clock(), io.StringIO()
    out = logging.getLogger("tocsin.clients.test")
    out.setLevel(logging.INFO)
    gate = ClientConnectionGate(quiet_s=15, remind_s=60, clock=clock, watch=False, out=out)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("worker"))
    handler.addFilter(gate)
    second = logging.StreamHandler(io.StringIO())  # a second handler: the decision is taken once per record
    second.addFilter(gate)
    loggers = [logging.getLogger(n) for n in ("aiokafka", "kafka", "librdkafka", "tocsin")]
    for lg in loggers:
        lg.addHandler(handler)
        lg.addHandler(second)
        lg.propagate = False
    yield gate, clock, stream
    for lg in loggers:
        lg.removeHandler(handler)
        lg.removeHandler(second)
        lg.propagate = True


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(s) for s in stream.getvalue().splitlines()]


def test_an_outage_logs_one_line_per_state_change(gated: tuple[ClientConnectionGate, _Clock, io.StringIO]) -> None:
    gate, clock, stream = gated
    aio = logging.getLogger("aiokafka.consumer.fetcher")
    # 30 s of a broker restart: aiokafka fails 10 times a second
    for _ in range(300):
        aio.error("Unable connect to node with id 1: [Errno 111] Connect call failed ('127.0.0.1', 9092)")
        clock.t += 0.1
        gate.tick()
    assert not gate.connected("aiokafka")
    clock.t += 14.8  # 14.9 s since the last error
    gate.tick()
    assert not gate.connected("aiokafka")
    clock.t += 0.2  # 15.1 s: reconnected
    gate.tick()
    assert gate.connected("aiokafka")
    lines = _lines(stream)
    assert [(r["level"], r["logger"], r.get("connection")) for r in lines] == [
        ("ERROR", "aiokafka.consumer.fetcher", "disconnected"),
        ("WARNING", "tocsin.clients.test", "reconnected"),
    ]
    assert lines[0]["message"].startswith("kafka client aiokafka: connection lost: Unable connect to node with id 1")
    # 300 errors, the first logged: 299 suppressed, over 29.9 s (first to last error)
    assert lines[1]["message"] == "kafka client aiokafka: reconnected after 29.9 s (299 lines suppressed)"
    assert (lines[1]["suppressed"], lines[1]["outage_s"]) == (299, 29.9)
    assert gate.errors == {"aiokafka": 300} and gate.disconnections == {"aiokafka": 1}


def test_a_long_outage_is_reminded_each_minute_and_other_lines_pass(
    gated: tuple[ClientConnectionGate, _Clock, io.StringIO],
) -> None:
    gate, clock, stream = gated
    kp, rd = logging.getLogger("kafka.conn"), logging.getLogger("librdkafka")
    for _ in range(150):  # 150 s, one error a second
        kp.error("<BrokerConnection node_id=bootstrap-0>: Connect attempt returned error 111. Disconnecting.")
        clock.t += 1.0
    logging.getLogger("aiokafka").error("Topic alerts.releases not found in cluster metadata")  # not connection
    logging.getLogger("kafka.coordinator").warning("Offset commit failed: unknown member id")  # not connection
    logging.getLogger("tocsin.worker").error("socket closed")  # not a client library: always logged
    rd.warning("GETPID Failed to acquire idempotence PID: Broker: Coordinator load in progress: retrying")
    msgs = [(r["level"], r["message"]) for r in _lines(stream)]
    assert msgs[0][1].startswith("kafka client kafka-python: connection lost: <BrokerConnection")
    # errors at t = 0, 1, ... 149 s: the one at 60 s (the 61st) becomes a reminder counting 1..60 s
    # (60 lines suppressed), the one at 120 s the next (61..120 s: 60 lines)
    assert msgs[1:3] == [
        ("ERROR", "kafka client kafka-python: still disconnected after 60 s (60 lines suppressed)"),
        ("ERROR", "kafka client kafka-python: still disconnected after 120 s (60 lines suppressed)"),
    ]
    assert msgs[3:6] == [
        ("ERROR", "Topic alerts.releases not found in cluster metadata"),
        ("WARNING", "Offset commit failed: unknown member id"),
        ("ERROR", "socket closed"),
    ]
    assert msgs[6][0] == "WARNING" and msgs[6][1].startswith("kafka client librdkafka: connection lost: GETPID")
    assert len(msgs) == 7
    clock.t += 16
    gate.tick()
    msgs = [(r["level"], r["message"]) for r in _lines(stream)][7:]
    assert sorted(msgs) == [
        ("INFO", "kafka client librdkafka: reconnected after 0.0 s (0 lines suppressed)"),  # a lone warning
        ("WARNING", "kafka client kafka-python: reconnected after 149.0 s (149 lines suppressed)"),
    ]


def test_the_metrics_follow_the_gate(gated: tuple[ClientConnectionGate, _Clock, io.StringIO]) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    gate, clock, _stream = gated
    reg = CollectorRegistry()
    reg.register(ClientConnectionMetrics(gate))

    def sample(name: str, client: str) -> float | None:
        return reg.get_sample_value(name, {"client": client})

    assert sample("tocsin_client_connection_up", "aiokafka") == 1.0
    assert sample("tocsin_client_connection_errors_total", "librdkafka") == 0.0
    for _ in range(3):
        logging.getLogger("aiokafka").error("Unable to update metadata from [1]")
    assert sample("tocsin_client_connection_up", "aiokafka") == 0.0
    assert sample("tocsin_client_connection_up", "kafka-python") == 1.0
    assert sample("tocsin_client_connection_errors_total", "aiokafka") == 3.0
    assert sample("tocsin_client_disconnections_total", "aiokafka") == 1.0
    clock.t += 20
    gate.tick()
    assert sample("tocsin_client_connection_up", "aiokafka") == 1.0
    assert b"# TYPE tocsin_client_disconnections_total counter" in generate_latest(reg)


def test_dict_config_installs_the_process_gate(captured: io.StringIO) -> None:
    handler = logging.getLogger().handlers[0]
    assert client_gate() in handler.filters
