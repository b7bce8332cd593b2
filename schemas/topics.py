"""Every MQTT topic and Kafka topic name in one place."""

from __future__ import annotations

from dataclasses import dataclass

from tocsin.schemas.common import Family

MQTT_ROOT = "tocsin/v1"
MQTT_TELEMETRY_FILTER = f"{MQTT_ROOT}/+/+/+/telemetry"
MQTT_STATUS_FILTER = f"{MQTT_ROOT}/+/+/+/status"


def mqtt_telemetry(family: Family | str, site: str, device_id: str) -> str:
    return f"{MQTT_ROOT}/{Family(family).value}/{site}/{device_id}/telemetry"


def mqtt_status(family: Family | str, site: str, device_id: str) -> str:
    return f"{MQTT_ROOT}/{Family(family).value}/{site}/{device_id}/status"


MQTT_ALERTS_FILTER = f"{MQTT_ROOT}/alerts/#"
_TOPIC_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\0": "_"})


def alert_incident(fingerprint: str, area_code: str, hazard: Family | str) -> str:
    """The incident part of an alert's topic: its fingerprint without the leading ``<hazard>:<area>:``
    (``hydro:330110:rainstorm`` -> ``rainstorm``), with MQTT's level separator and wildcards replaced."""
    prefix = f"{Family(hazard).value}:{area_code}:"
    rest = fingerprint[len(prefix) :] if fingerprint.startswith(prefix) else fingerprint
    return (rest or fingerprint).translate(_TOPIC_UNSAFE)


def mqtt_alert(area_code: str, hazard: Family | str, incident: str) -> str:
    """Retained current message of one incident (``alert_incident``) of an area and hazard, for
    operators' consoles: ``tocsin/v1/alerts/<area>/<hazard>/<incident>``. Each active incident keeps
    its own retained message; its Cancel clears only that topic."""
    return f"{MQTT_ROOT}/alerts/{area_code}/{Family(hazard).value}/{incident}"


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
# Kafka records a worker agent could not handle (tocsin.schemas.deadletter.WorkerDeadLetter)
WORKER_DEADLETTER = "worker.deadletter"
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
    WORKER_DEADLETTER,
    DEVICE_STATUS,
    DETECTIONS,
    DETECTIONS_URGENT,
    ALERTS,
    DELIVERIES,
    ACKS,
)
