"""Alert messages for unit tests of the delivery side (fast lane, sweep)."""

from __future__ import annotations

from datetime import UTC, datetime

from tocsin.schemas.alert import Alert, AlertArea, AlertStatus, MsgType
from tocsin.schemas.common import Family, WarningLevel

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def alert_message(identifier: str, level: WarningLevel = WarningLevel.YELLOW, hazard: Family = Family.HAZMAT) -> Alert:
    """A first Alert message of incident ``identifier`` in 青山镇 (330110), sent at ``T0``."""
    return Alert(
        identifier=identifier,
        fingerprint=f"{hazard.value}:330110:{identifier}",
        revision=0,
        msg_type=MsgType.ALERT,
        status=AlertStatus.ACTUAL,
        hazard=hazard,
        event="预警",
        level=level,
        sent=T0,
        onset=T0,
        area=AlertArea(code="330110", desc="青山镇"),
        headline=f"青山镇发布{level.value}预警",
        description="d",
        devices=["D01"],
        sites=["site"],
    )
