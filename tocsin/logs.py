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
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
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
        # the client libraries' connection errors: one line per state change (ClientConnectionGate)
        "filters": {"clients": {"()": client_gate}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "main",
                "stream": "ext://sys.stdout",
                "filters": ["clients"],
            }
        },
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {n: {"level": "WARNING"} for n in ("kafka", "aiokafka", "librdkafka")},
    }


def setup_logging(level: str = "INFO", fmt: str = "json", role: str = "") -> None:
    """Configure the root logger of a service process (replaces any handler already installed)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)  # one line at a time into log files and pipes
    logging.config.dictConfig(dict_config(level, fmt, role))


# --------------------------------------------------------------------------- client connection errors
# A Kafka broker restart used to make the worker write one ERROR line per reconnect attempt of every
# client (1,044 lines for a 10 s restart). ``ClientConnectionGate`` (a filter on every handler
# ``dict_config`` installs) turns them into one line per state change of each client library:
#
#   ERROR   kafka client aiokafka: connection lost: <the first error>; further connection errors of
#           aiokafka are counted, not logged, until it recovers          [at the first error's level]
#   ERROR   kafka client aiokafka: still disconnected after 60 s (1,812 lines suppressed)   [each minute]
#   WARNING kafka client aiokafka: reconnected after 34.2 s (3,110 lines suppressed)
#
# "Reconnected" means: no connection error from that library for ``quiet_s`` (the libraries log every
# failed attempt, every 0.1-1 s, for as long as a broker is unreachable). Every connection error is
# still counted in ``tocsin_client_connection_errors_total{client}``, the state is
# ``tocsin_client_connection_up{client}`` (rule TocsinClientDisconnected) and the outages
# ``tocsin_client_disconnections_total{client}``. Other warnings of these libraries pass unchanged.

# logger name prefix -> client library
CLIENT_LOGGERS: tuple[tuple[str, str], ...] = (
    ("aiokafka", "aiokafka"),  # the Faust worker's consumer and producer
    ("kafka", "kafka-python"),  # lag probe, followers, admin, InfluxDB sink
    ("librdkafka", "librdkafka"),  # confluent-kafka: the gateway's producer (its ``logger``)
    ("paho", "paho"),  # paho-mqtt, when a client's ``enable_logger`` is on
)
CONNECTION_ERROR = re.compile(
    r"connect|not ready|(update|request|refresh) metadata|no node available|brokers? (are )?down|"
    r"coordinator|heartbeat|transport|refused|timed out|unreachable|NoBrokersAvailable|ALL_BROKERS_DOWN|"
    r"not available|NotLeader|"
    r"leader not|disconnect|network|socket|closed",
    re.IGNORECASE,
)
QUIET_S = 15.0  # longer than the kafka-python lag probe's 10 s between attempts
REMIND_S = 60.0
_GATE_ATTR = "_tocsin_client_gate"  # a record's decision, when several handlers share the gate


def client_of(logger_name: str) -> str | None:
    """The client library a logger belongs to, or None."""
    for prefix, client in CLIENT_LOGGERS:
        if logger_name == prefix or logger_name.startswith(prefix + "."):
            return client
    return None


class _Outage:
    __slots__ = ("since", "last_error", "last_line", "suppressed", "suppressed_since_line")

    def __init__(self, now: float) -> None:
        self.since = self.last_error = self.last_line = now
        self.suppressed = self.suppressed_since_line = 0


class ClientConnectionGate(logging.Filter):
    """Lets through the first connection error of a client library, counts the next ones, and logs
    the recovery (see the comment above). ``clock``: monotonic seconds (tests pass their own); a
    daemon thread notices recoveries while nothing is logged (``watch=False``: call :meth:`tick`)."""

    def __init__(
        self,
        quiet_s: float = QUIET_S,
        remind_s: float = REMIND_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        watch: bool = True,
        out: logging.Logger | None = None,
    ) -> None:
        super().__init__()
        self.quiet_s, self.remind_s, self.clock, self.watch = quiet_s, remind_s, clock, watch
        self.out = out or logging.getLogger("tocsin.clients")
        self.errors: dict[str, int] = {}
        self.disconnections: dict[str, int] = {}
        self.outages: dict[str, _Outage] = {}
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def connected(self, client: str) -> bool:
        with self._lock:
            return client not in self.outages

    def filter(self, record: logging.LogRecord) -> bool:
        decided = getattr(record, _GATE_ATTR, None)
        if decided is not None:
            return bool(decided)
        keep = self._decide(record)
        setattr(record, _GATE_ATTR, keep)
        return keep

    def _decide(self, record: logging.LogRecord) -> bool:
        client = client_of(record.name)
        if client is None or record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if not CONNECTION_ERROR.search(message):
            return True
        now = self.clock()
        remind, n, since = False, 0, 0.0
        with self._lock:
            self.errors[client] = self.errors.get(client, 0) + 1
            outage = self.outages.get(client)
            if outage is None:  # connected -> disconnected: this record becomes the one line
                self.outages[client] = _Outage(now)
                self.disconnections[client] = self.disconnections.get(client, 0) + 1
                first = True
            else:
                outage.last_error = now
                outage.suppressed += 1
                outage.suppressed_since_line += 1
                first = False
                remind = now - outage.last_line >= self.remind_s
                if remind:
                    outage.last_line = now
                    n, outage.suppressed_since_line = outage.suppressed_since_line, 0
                    since = now - outage.since
        if first:
            record.msg = (
                f"kafka client {client}: connection lost: %s; further connection errors of {client} "
                "are counted, not logged, until it recovers"
            )
            if client == "paho":
                record.msg = record.msg.replace("kafka client", "mqtt client")
            record.args = (message,)  # at its own level: a lone "retrying" warning stays a warning
            record.client, record.connection = client, "disconnected"  # type: ignore[attr-defined]
            self._start_watcher()
            return True
        if remind:
            self.out.error(
                "%s client %s: still disconnected after %.0f s (%d lines suppressed)",
                "mqtt" if client == "paho" else "kafka",
                client,
                since,
                n,
                extra={"client": client, "connection": "disconnected", "suppressed": n},
            )
        return False

    def tick(self) -> None:
        """Log the recovery of every client quiet for ``quiet_s``."""
        now = self.clock()
        with self._lock:
            done = [(c, o) for c, o in self.outages.items() if now - o.last_error >= self.quiet_s]
            for client, _outage in done:
                del self.outages[client]
        for client, outage in done:
            self.out.log(
                logging.WARNING if outage.suppressed else logging.INFO,  # a lone error: no outage to speak of
                "%s client %s: reconnected after %.1f s (%d lines suppressed)",
                "mqtt" if client == "paho" else "kafka",
                client,
                outage.last_error - outage.since,
                outage.suppressed,
                extra={
                    "client": client,
                    "connection": "reconnected",
                    "suppressed": outage.suppressed,
                    "outage_s": round(outage.last_error - outage.since, 1),
                },
            )

    def _start_watcher(self) -> None:
        if not self.watch or (self._watcher is not None and self._watcher.is_alive()):
            return
        self._watcher = threading.Thread(target=self._watch, name="client-connection-gate", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.quiet_s / 2))
            self.tick()
            with self._lock:
                if not self.outages:
                    return


class ClientConnectionMetrics:
    """The gate's counts as Prometheus metrics (a collector: register it on the process's registry)."""

    def __init__(self, gate: ClientConnectionGate | None = None) -> None:
        self.gate = gate or client_gate()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        g = self.gate
        with g._lock:  # noqa: SLF001 - the gate's own collector
            clients = sorted(set(g.errors) | {c for _p, c in CLIENT_LOGGERS if _p != "paho"})
            errors, outages, down = dict(g.errors), dict(g.disconnections), set(g.outages)
        up = GaugeMetricFamily(
            "tocsin_client_connection_up",
            "1 while the client library reports no connection error (0: disconnected, see the log)",
            labels=["client"],
        )
        err = CounterMetricFamily(
            "tocsin_client_connection_errors",
            "connection errors the client library logged (most suppressed from the log)",
            labels=["client"],
        )
        lost = CounterMetricFamily(
            "tocsin_client_disconnections", "connected -> disconnected changes of the client library", labels=["client"]
        )
        for c in clients:
            up.add_metric([c], 0.0 if c in down else 1.0)
            err.add_metric([c], float(errors.get(c, 0)))
            lost.add_metric([c], float(outages.get(c, 0)))
        yield from (up, err, lost)


_GATE: ClientConnectionGate | None = None
_GATE_LOCK = threading.Lock()


def client_gate() -> ClientConnectionGate:
    """The process's gate (one, shared by every handler and by the metrics)."""
    global _GATE
    with _GATE_LOCK:
        if _GATE is None:
            _GATE = ClientConnectionGate()
        return _GATE


def register_client_metrics(registry: Any) -> None:
    """Export the gate's metrics on ``registry`` (a prometheus_client ``CollectorRegistry``)."""
    registry.register(ClientConnectionMetrics())
