"""Shared vocabulary of Tocsin: wire models, topic names and the one JSON encoding.

Every other package imports this one; this one imports none of them.
"""

from tocsin.schemas.alert import Alert, AlertArea, AlertStatus, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.deadletter import DeadLetter, Reason
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.status import DeviceState, DeviceStatus
from tocsin.schemas.telemetry import (
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
