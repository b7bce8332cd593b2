"""Logging of the services: one JSON object per line (default), or human-readable text.

Every JSON line has ``ts`` (ISO 8601 with the UTC offset), ``level``, ``logger``, ``message`` and
``role`` (gateway, worker, operator-api ...), then every ``extra`` field the call site passed, e.g.
``log.info("reading accepted", extra={"correlation_id": cid, "device_id": dev})``; an exception adds
``exc_type`` and ``exc`` (the formatted traceback). Follow one reading through the pipeline with::

    jq -c 'select(.correlation_id == "c-3f9a0e51c2d47b18")' gateway.log worker.log

The lines are written by python-json-logger (``pythonjsonlogger.json.JsonFormatter``, subclassed
below for the field names). Secrets never reach a line: a pydantic ``SecretStr`` (or
``SecretBytes``) anywhere in the extra fields renders as ``**********``, and the formatter never
serialises arbitrary objects' attributes, only their ``str()`` (which pydantic masks for secrets).
"""

from __future__ import annotations

import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import SecretBytes, SecretStr
from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

LogFormat = Literal["json", "text"]
MASK = "**********"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message"}
)


def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-able version of an extra field's value, secrets masked."""
    if isinstance(value, SecretStr | SecretBytes):
        return MASK
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if depth < 4 and isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if depth < 4 and isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class JsonFormatter(BaseJsonFormatter):
    """One JSON object per record (python-json-logger); ``role`` names the process (gateway, worker, ...).

    The fixed fields come first and an ``extra`` field cannot replace them; exceptions and stacks
    come last, as ``exc_type``, ``exc`` and ``stack``."""

    def __init__(self, role: str = "", *, clock_tz: Any = UTC) -> None:
        super().__init__(
            "%(message)s",
            rename_fields={"exc_info": "exc", "stack_info": "stack"},
            reserved_attrs=sorted(_STANDARD),
            json_default=str,
            json_ensure_ascii=False,
        )
        self.role = role
        self.tz = clock_tz

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)  # message, the extras, exc and stack
        fixed: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, self.tz).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.role:
            fixed["role"] = self.role
        tail: dict[str, Any] = {k: log_data.pop(k) for k in ("exc", "stack") if k in log_data}
        if record.exc_info:
            tail = {"exc_type": record.exc_info[0].__name__ if record.exc_info[0] else None, **tail}
        extras = {k: _plain(v) for k, v in log_data.items() if k not in fixed}
        log_data.clear()
        log_data.update(fixed, **extras, **tail)


class TextFormatter(logging.Formatter):
    """The classic line, with the correlation id appended when the record has one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        cid = getattr(record, "correlation_id", None)
        return f"{line} [correlation_id={cid}]" if cid else line


def formatter(fmt: str, role: str = "") -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter(role)
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"log format must be json or text, not {fmt!r}")


def dict_config(level: str, fmt: str, role: str = "") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document: the root logger to stdout in ``fmt``.

    Also what the Faust worker gets as its ``logging_config`` (it configures logging itself)."""
    formatter(fmt, role)  # validate early
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": {"()": formatter, "fmt": fmt, "role": role}},
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stdout"}},
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {"kafka": {"level": "WARNING"}, "aiokafka": {"level": "WARNING"}},
    }


def setup_logging(level: str = "INFO", fmt: str = "json", role: str = "") -> None:
    """Configure the root logger of a service process (replaces any handler already installed)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)  # one line at a time into log files and pipes
    logging.config.dictConfig(dict_config(level, fmt, role))
