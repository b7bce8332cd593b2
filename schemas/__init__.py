"""Shared vocabulary of Tocsin: wire models, topic names and the one JSON encoding.

Every other package imports this one; this one imports none of them.
"""

from schemas.alert import Alert, AlertArea, AlertStatus, MsgType
from schemas.common import Family, WarningLevel
from schemas.deadletter import DeadLetter, Reason
from schemas.detection import Detection, DetectionState
from schemas.status import DeviceState, DeviceStatus
from schemas.telemetry import (
    FireDetection,
    GasReading,
    RainIncrement,
    SeismicPacket,
    Telemetry,
    WaterLevel,
    family_of,
)

__all__ = [
    "Alert",
    "AlertArea",
    "AlertStatus",
    "DeadLetter",
    "Detection",
    "DetectionState",
    "DeviceState",
    "DeviceStatus",
    "Family",
    "FireDetection",
    "GasReading",
    "MsgType",
    "RainIncrement",
    "Reason",
    "SeismicPacket",
    "Telemetry",
    "WarningLevel",
    "WaterLevel",
    "family_of",
]
