"""Gateway metrics. The registry is injected so tests read exact sample values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages_in = Counter(
            "tocsin_gateway_messages_received_total", "MQTT messages received", ["family"], registry=registry
        )
        self.messages_out = Counter(
            "tocsin_gateway_records_produced_total",
            "records acknowledged downstream",
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
        self.in_flight = Gauge("tocsin_gateway_in_flight", "records awaiting downstream acks", registry=registry)
        self.influx_writes = Counter(
            "tocsin_gateway_influx_points_total",
            "InfluxDB point writes by outcome",
            ["outcome"],
            registry=registry,
        )
