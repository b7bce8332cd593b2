"""tocsin/logs.py: one JSON object per line, extra fields kept, exceptions serialised, secrets masked."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from tocsin.logs import MASK, JsonFormatter, TextFormatter, dict_config, formatter
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
    logging.getLogger("ingest.gateway").info("reading accepted", extra={"correlation_id": "c-9"})
    logging.getLogger("kafka.conn").info("chatty client line")  # held back at WARNING
    logging.getLogger("alerts.notify").warning("delivery %s", "x", extra={"channel": "sms", "outcome": "gave_up"})
    lines = [json.loads(s) for s in captured.getvalue().splitlines()]
    assert [(r["logger"], r.get("correlation_id"), r.get("outcome")) for r in lines] == [
        ("ingest.gateway", "c-9", None),
        ("alerts.notify", None, "gave_up"),
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
