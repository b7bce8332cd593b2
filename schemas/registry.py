"""Device registry: what devices exist, where they are, and their per-device thresholds.

The gateway, the detectors and the alerts read the same file (YAML or JSON).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, PrivateAttr

from schemas.common import AdminCode, Family, Ident, WireModel


class Area(WireModel):
    code: AdminCode = Field(description="GB/T 2260 six-digit district code")
    district: str = ""
    town: str = ""
    village: str = ""

    @property
    def desc(self) -> str:
        return "".join(p for p in (self.district, self.town, self.village) if p) or self.code


class Device(WireModel):
    device_id: Ident
    family: Family
    site: Ident
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    area: Area
    interval_s: float = Field(default=60.0, gt=0, description="expected reporting interval")
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="per-device set-points, e.g. warning_level_m, guaranteed_level_m"
    )


class Registry(WireModel):
    devices: list[Device] = Field(default_factory=list)
    sms_recipients: dict[AdminCode, list[str]] = Field(
        default_factory=dict, description="area code -> E.164 numbers of on-duty officers and residents"
    )

    def by_id(self) -> dict[str, Device]:
        return {d.device_id: d for d in self.devices}

    _index: dict[str, Device] | None = PrivateAttr(default=None)

    def get(self, device_id: str) -> Device | None:
        if self._index is None:
            self._index = self.by_id()
        return self._index.get(device_id)


def load_registry(path: str | Path) -> Registry:
    """Read a registry from YAML (.yaml/.yml) or JSON; raises ValueError naming the file on errors."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        return Registry.model_validate(data)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"device registry {p}: {exc}") from exc
