"""Device presence: online, offline (orderly or by MQTT last will)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from tocsin.schemas.common import DeviceTime, Family, Ident, PublicText, WireModel


class DeviceState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class DeviceStatus(WireModel):
    device_id: Ident
    site: Ident
    family: Family
    state: DeviceState
    ts: DeviceTime
    reason: PublicText = Field(default="", max_length=200, description="'last-will', 'shutdown', 'timeout' ...")
