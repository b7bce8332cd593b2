"""Device presence: online, offline (orderly or by MQTT last will), or a fault the device reports itself."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from tocsin.schemas.common import DeviceTime, Family, Ident, PublicText, WireModel


class DeviceState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    FAULT = "fault"  # the device is up but says it cannot measure (reason: what is wrong)


class DeviceStatus(WireModel):
    device_id: Ident
    site: Ident
    family: Family
    state: DeviceState
    ts: DeviceTime
    reason: PublicText = Field(
        default="",
        max_length=200,
        description="'last-will', 'shutdown', 'timeout', or what is wrong with a faulty device",
    )
