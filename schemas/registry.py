"""Device registry: what devices exist, where they are, and their per-device thresholds.

The gateway, the detectors and the alerts read the same file (YAML or JSON).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import Field, PrivateAttr, StringConstraints, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tocsin.schemas.common import AdminCode, Family, Ident, PublicText, WireModel
from tocsin.schemas.files import load_model_file
from tocsin.schemas.geo import Polygon, Ring, point_in_ring

PLACE_NAME_MAX_CHARS = 50
"""Longest district, town or village name. Alert headlines are at most 200 characters; the longest one
the alert engine builds is an equipment alert, area (town + village, at most 100) + "网关" + gateway or
site id (at most 64) + "监测设备离线（n/m台）" (under 30): 200 at most. China's longest township names
are about 10 characters, so the cap costs nobody anything."""
MAX_BOUNDARIES = 2000
"""Most area boundaries in one registry (a district has tens of towns and a few hundred villages)."""
TARGET_NAME_MAX_CHARS = 100
"""Longest seismic target name (it appears in the warning's description, itself capped at 4000)."""

THRESHOLD_KEYS: dict[Family, frozenset[str]] = {
    Family.HYDRO: frozenset(
        {"warning_level_m", "guaranteed_level_m", "record_level_m", "approach_margin_m", "rise_m_per_h"}
    ),
    Family.HAZMAT: frozenset({"level1", "level2", "o2_low", "o2_high", "range_min", "range_max"}),
    Family.SEISMIC: frozenset({"counts_per_m_s", "counts_per_m_s2"}),
    Family.FIRE: frozenset(),
}
"""The per-device set-points each family's detectors read (detectors/engine.py); rain gauges (hydro)
also take ``rain_<hours>h_<level>_mm`` overriding one rain rule, e.g. ``rain_3h_red_mm``."""
_RAIN_KEY = re.compile(r"^rain_[0-9]+(\.[0-9]+)?h_(blue|yellow|orange|red)_mm$")


def threshold_key_problem(family: Family, key: str) -> str | None:
    """Why ``key`` is not a threshold of a ``family`` device (None: it is one)."""
    known = THRESHOLD_KEYS[family]
    if key in known or (family is Family.HYDRO and _RAIN_KEY.match(key)):
        return None
    extra = ", rain_<hours>h_<level>_mm" if family is Family.HYDRO else ""
    listed = ", ".join(sorted(known)) + extra if known or extra else "none"
    return f"unknown threshold {key!r} for a {family.value} device (known: {listed})"


# E.164: '+', country code and subscriber number, at most 15 digits.
PhoneNumber = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{4,14}$")]


class Area(WireModel):
    code: AdminCode = Field(description="GB/T 2260 six-digit district code")
    district: PublicText = Field(default="", max_length=PLACE_NAME_MAX_CHARS)
    town: PublicText = Field(default="", max_length=PLACE_NAME_MAX_CHARS)
    village: PublicText = Field(default="", max_length=PLACE_NAME_MAX_CHARS)

    @property
    def desc(self) -> str:
        return "".join(p for p in (self.district, self.town, self.village) if p) or self.code


AreaKey = tuple[str, str, str]
"""``(code, town, village)``: one administrative area; "" for a level not given."""


class Boundary(WireModel):
    """The boundary of one administrative area: the district (``code`` only), a town of it
    (``code`` and ``town``) or a village (``code``, ``town`` if the devices name it, ``village``).

    Alerts about a device's area carry the most specific boundary the registry has for it
    (village, else town, else district) as a CAP ``<polygon>`` (docs/alert-delivery.md)."""

    code: AdminCode = Field(description="GB/T 2260 six-digit district code")
    district: PublicText = Field(default="", max_length=PLACE_NAME_MAX_CHARS, description="name, for readers only")
    town: PublicText = Field(default="", max_length=PLACE_NAME_MAX_CHARS)
    village: PublicText = Field(default="", max_length=PLACE_NAME_MAX_CHARS)
    polygon: Polygon = Field(
        description="WGS 84 [lat, lon] vertices (closed or not; 3 to 1000 distinct; simple, no self-intersection)"
    )

    @property
    def key(self) -> AreaKey:
        return (self.code, self.town, self.village)

    @property
    def desc(self) -> str:
        return "".join(p for p in (self.district, self.town, self.village) if p) or self.code


def area_keys(code: str, town: str = "", village: str = "") -> list[AreaKey]:
    """The boundaries that may cover an area, most specific first: village, town, district."""
    return list(dict.fromkeys([(code, town, village), (code, town, ""), (code, "", "")]))


class Device(WireModel):
    device_id: Ident
    family: Family
    site: Ident
    # WGS 84 (GNSS, CAP); coordinates read off Chinese map apps are GCJ-02, some 0.5 km away
    lat: float = Field(ge=-90, le=90, description="WGS 84 latitude (not GCJ-02)")
    lon: float = Field(ge=-180, le=180, description="WGS 84 longitude (not GCJ-02)")
    area: Area
    interval_s: float = Field(default=60.0, gt=0, description="expected reporting interval")
    gateway: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,63})?$",
        description="field gateway / concentrator the device hangs off (empty: none); offline alerts group by it",
    )
    thresholds: dict[Ident, float] = Field(
        default_factory=dict,
        description="per-device set-points of the device's family (THRESHOLD_KEYS), e.g. warning_level_m",
    )

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        family = info.data.get("family")
        if family is None:  # the family itself failed: that error is reported
            return value
        for key in value:
            problem = threshold_key_problem(Family(family), key)
            if problem:
                raise PydanticCustomError("unknown_threshold", problem, {"key": key})
        return value


class Target(WireModel):
    """A place that needs a seismic warning time: a town, a rail line, a metro station, a pipeline."""

    name: PublicText = Field(min_length=1, max_length=TARGET_NAME_MAX_CHARS)
    kind: PublicText = Field(
        default="town", min_length=1, max_length=32, description="town, rail, metro, pipeline, school, hospital ..."
    )
    lat: float = Field(ge=-90, le=90, description="WGS 84 latitude (not GCJ-02)")
    lon: float = Field(ge=-180, le=180, description="WGS 84 longitude (not GCJ-02)")
    area_code: AdminCode | None = None


class Registry(WireModel):
    devices: list[Device] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=list, description="seismic warning targets")
    sms_recipients: dict[AdminCode, list[PhoneNumber]] = Field(
        default_factory=dict, description="area code -> E.164 numbers of on-duty officers and residents"
    )
    boundaries: list[Boundary] = Field(
        default_factory=list,
        max_length=MAX_BOUNDARIES,
        description="area boundary polygons (district, town or village); alerts about an area carry its polygon",
    )

    @model_validator(mode="after")
    def _one_boundary_per_area(self) -> Registry:
        seen: set[AreaKey] = set()
        for i, b in enumerate(self.boundaries):
            if b.key in seen:
                where = "/".join(p for p in b.key if p)
                raise ValueError(f"boundaries[{i}]: a second boundary for area {where}")
            seen.add(b.key)
        return self

    def by_id(self) -> dict[str, Device]:
        return {d.device_id: d for d in self.devices}

    _index: dict[str, Device] | None = PrivateAttr(default=None)
    _areas: dict[AreaKey, Boundary] | None = PrivateAttr(default=None)

    def get(self, device_id: str) -> Device | None:
        if self._index is None:
            self._index = self.by_id()
        return self._index.get(device_id)

    def boundary(self, code: str, town: str = "", village: str = "") -> Boundary | None:
        """The most specific boundary covering an area (its village's, else its town's, else its
        district's), or None."""
        if self._areas is None:
            self._areas = {b.key: b for b in self.boundaries}
        if not self._areas:
            return None
        return next((self._areas[k] for k in area_keys(code, town, village) if k in self._areas), None)

    def polygon(self, key: AreaKey) -> Ring | None:
        """The boundary ring of exactly the area ``key``, or None."""
        if self._areas is None:
            self._areas = {b.key: b for b in self.boundaries}
        found = self._areas.get(key)
        return found.polygon if found is not None else None

    _inside: dict[str, bool] = PrivateAttr(default_factory=dict)

    def within_boundary(self, device_id: str) -> bool:
        """The device is registered, its area has a boundary and its position lies inside it
        (point-in-polygon once per device and loaded registry)."""
        known = self._inside.get(device_id)
        if known is None:
            dev = self.get(device_id)
            b = self.boundary(dev.area.code, dev.area.town, dev.area.village) if dev is not None else None
            known = dev is not None and b is not None and point_in_ring(dev.lat, dev.lon, b.polygon)
            if len(self._inside) < len(self.devices):
                self._inside[device_id] = known
        return known


def devices_outside_boundaries(registry: Registry) -> list[str]:
    """Devices whose area has a boundary that does not contain the device's position: the
    boundary or the position is wrong (GCJ-02 coordinates, a swapped lat/lon, the wrong town).
    Their alerts keep the device circle next to the boundary (docs/alert-delivery.md)."""
    out = []
    for d in registry.devices:
        b = registry.boundary(d.area.code, d.area.town, d.area.village)
        if b is not None and not registry.within_boundary(d.device_id):
            out.append(f"{d.device_id} ({d.lat}, {d.lon}) lies outside the boundary of {b.desc}")
    return out


def load_registry(path: str | Path) -> Registry:
    """Read a registry from YAML (.yaml/.yml) or JSON; raises ValueError naming the file on errors."""
    return load_model_file(path, Registry, "device registry")


class RegistryLike(Protocol):
    """What readers of the registry use: a loaded Registry or a RegistryWatcher."""

    @property
    def devices(self) -> list[Device]: ...

    @property
    def sms_recipients(self) -> dict[str, list[str]]: ...

    @property
    def targets(self) -> list[Target]: ...

    def get(self, device_id: str) -> Device | None: ...

    def boundary(self, code: str, town: str = "", village: str = "") -> Boundary | None: ...

    def polygon(self, key: AreaKey) -> Ring | None: ...

    def within_boundary(self, device_id: str) -> bool: ...


class RegistryWatcher:
    """A registry file that reloads itself when it changes, without a restart.

    The file's modification time is checked at most every ``check_interval_s``; ``reload()``
    forces a check (the gateway calls it on SIGHUP). A file that fails to load leaves the previous
    registry in force and is reported through ``on_error``, so a typo never empties the registry.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        check_interval_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._interval, self._monotonic, self._on_error = check_interval_s, monotonic, on_error
        self._lock = threading.Lock()
        self._current = load_registry(self.path)  # the first load must succeed
        self._indexed: tuple[Registry | None, dict[str, Device]] = (None, {})
        self._mtime = self._stat()
        self._checked = monotonic()
        self.reloads = 0

    def _stat(self) -> float:
        try:
            return self.path.stat().st_mtime_ns / 1e9
        except OSError:
            return -1.0

    def reload(self) -> bool:
        """Load the file now; True when a new registry took effect."""
        with self._lock:
            self._checked = self._monotonic()
            self._mtime = self._stat()
            try:
                self._current = load_registry(self.path)
            except ValueError as exc:
                if self._on_error:
                    self._on_error(exc)
                return False
            self.reloads += 1
            return True

    def current(self) -> Registry:
        now = self._monotonic()
        if now - self._checked >= self._interval:
            self._checked = now
            if self._stat() != self._mtime:
                self.reload()
        return self._current

    @property
    def devices(self) -> list[Device]:
        return self.current().devices

    @property
    def sms_recipients(self) -> dict[str, list[str]]:
        return self.current().sms_recipients

    @property
    def targets(self) -> list[Target]:
        return self.current().targets

    def boundary(self, code: str, town: str = "", village: str = "") -> Boundary | None:
        return self.current().boundary(code, town, village)

    def polygon(self, key: AreaKey) -> Ring | None:
        return self.current().polygon(key)

    def within_boundary(self, device_id: str) -> bool:
        return self.current().within_boundary(device_id)

    def get(self, device_id: str) -> Device | None:
        current = self.current()
        indexed, index = self._indexed  # one tuple: threads never see one registry with another's index
        if indexed is not current:  # the index of the registry in force, built once per load
            index = current.by_id()
            self._indexed = (current, index)
        return index.get(device_id)


def open_registry(path: str | Path | None, **kwargs: Any) -> RegistryWatcher | None:
    """The reloadable registry of a process, or None when no file is configured."""
    return RegistryWatcher(path, **kwargs) if path else None
