"""Gateway metrics, and the small HTTP server of a process's /metrics, /healthz and /readyz.

The registry is injected so tests read exact sample values. Names: prefix ``tocsin_``, unit last
(``_seconds``, ``_total``, ``_bytes``); README "Operations" lists them all.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
"""End-to-end latency buckets (seconds): milliseconds in process up to a device's hour-late report."""


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages_in = Counter(
            "tocsin_gateway_messages_received_total", "MQTT messages received", ["family"], registry=registry
        )
        self.messages_out = Counter(
            "tocsin_gateway_records_produced_total",
            "messages whose record was acknowledged downstream (a batch record counts each of its readings)",
            ["topic"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "tocsin_gateway_dead_letters_total", "messages refused, by reason", ["reason"], registry=registry
        )
        self.produce_failures = Counter(
            "tocsin_gateway_produce_failures_total",
            "records the downstream refused (not acked)",
            registry=registry,
        )
        self.produce_latency = Histogram(
            "tocsin_gateway_produce_latency_seconds",
            "MQTT receipt to downstream acknowledgement",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.mqtt_malformed = Counter(
            "tocsin_gateway_mqtt_malformed_packets_total",
            "malformed MQTT packets from the broker (each closes the connection; paho reconnects)",
            registry=registry,
        )
        self.in_flight = Gauge(
            "tocsin_gateway_in_flight", "messages whose record awaits downstream acks", registry=registry
        )
        self.influx_writes = Counter(
            "tocsin_gateway_influx_points_total",
            "InfluxDB point writes by outcome",
            ["outcome"],
            registry=registry,
        )
        self.ingest_latency = Histogram(
            "tocsin_gateway_ingest_latency_seconds",
            "device timestamp to gateway acceptance, live readings (device clocks ahead count as 0)",
            ["family"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.backfill = Counter(
            "tocsin_gateway_backfill_readings_total",
            "accepted readings more than an hour old (replays, buffered devices): not in the ingest latency",
            ["family"],
            registry=registry,
        )


Probe = Callable[[], tuple[bool, dict[str, Any]]]


def always_ok() -> tuple[bool, dict[str, Any]]:
    return True, {}


class HealthServer:
    """``/metrics`` (the injected registry), ``/healthz`` (liveness) and ``/readyz`` (readiness) on
    one port, served by a stdlib HTTP server in a daemon thread. ``prometheus_client``'s own server
    cannot add routes, hence this one. A probe returns (ok, details); 200 when ok, else 503."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        live: Probe = always_ok,
        ready: Probe = always_ok,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.registry, self.live, self.ready = registry, live, ready
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    probe = server.live if path == "/healthz" else server.ready
                    try:
                        ok, details = probe()
                    except Exception as exc:  # noqa: BLE001 - a failing probe means not ok
                        ok, details = False, {"error": type(exc).__name__}
                    body = json.dumps({"status": "ok" if ok else "unavailable", **details}).encode()
                    self._send(200 if ok else 503, body, "application/json")
                else:
                    self._send(404, b'{"error": "not found"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - no access log
                return None

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="health-http", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        host = self._httpd.server_address[0]
        log.info("metrics and health on http://%s:%s (/metrics /healthz /readyz)", host, self.port)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
