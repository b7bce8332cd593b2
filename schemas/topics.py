"""Every MQTT topic and Kafka topic name in one place."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.common import Family

MQTT_ROOT = "tocsin/v1"
MQTT_TELEMETRY_FILTER = f"{MQTT_ROOT}/+/+/+/telemetry"
MQTT_STATUS_FILTER = f"{MQTT_ROOT}/+/+/+/status"


def mqtt_telemetry(family: Family | str, site: str, device_id: str) -> str:
    return f"{MQTT_ROOT}/{Family(family).value}/{site}/{device_id}/telemetry"


def mqtt_status(family: Family | str, site: str, device_id: str) -> str:
    return f"{MQTT_ROOT}/{Family(family).value}/{site}/{device_id}/status"


def mqtt_alert(area_code: str, hazard: Family | str) -> str:
    """Retained current state of the alert for an area and hazard, for operators' consoles."""
    return f"{MQTT_ROOT}/alerts/{area_code}/{Family(hazard).value}"


@dataclass(frozen=True)
class DeviceTopic:
    family: Family
    site: str
    device_id: str
    leaf: str  # "telemetry" or "status"


def parse_device_topic(topic: str) -> DeviceTopic | None:
    """Split ``tocsin/v1/<family>/<site>/<device_id>/<leaf>``; None when the topic is off-scheme."""
    parts = topic.split("/")
    if len(parts) != 6 or f"{parts[0]}/{parts[1]}" != MQTT_ROOT or parts[5] not in ("telemetry", "status"):
        return None
    try:
        family = Family(parts[2])
    except ValueError:
        return None
    if not parts[3] or not parts[4]:
        return None
    return DeviceTopic(family, parts[3], parts[4], parts[5])


# Kafka topics.
def kafka_telemetry(family: Family | str) -> str:
    return f"telemetry.{Family(family).value}"


TELEMETRY_TOPICS = tuple(kafka_telemetry(f) for f in Family)
DEADLETTER = "telemetry.deadletter"
DEVICE_STATUS = "devices.status"
DETECTIONS = "detections"
# Urgent detections (seismic triggers; orange and red levels) travel on a topic of their own, so they
# never queue behind a backlog of routine ones: same keys and partition count as ``detections``.
DETECTIONS_URGENT = "detections.urgent"
ALERTS = "alerts"
DELIVERIES = "alerts.deliveries"  # audit of every delivery attempt
ACKS = "alerts.acks"  # operators' acknowledgements
RELEASES = "alerts.releases"  # the release gate's events, operators' approvals and notes (alerts/release.py)
SILENCES = "alerts.silences"  # silences and maintenance windows (compacted, key = silence id)

ALL_KAFKA_TOPICS = (
    *TELEMETRY_TOPICS,
    DEADLETTER,
    DEVICE_STATUS,
    DETECTIONS,
    DETECTIONS_URGENT,
    ALERTS,
    DELIVERIES,
    ACKS,
)
