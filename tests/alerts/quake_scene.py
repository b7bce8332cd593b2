"""Shared set-up of the alert-engine earthquake tests: one event (origin, epicentre, focal depth),
the stations around it, and P-trigger detections as the seismic detector sends them.

Stations (east km, north km) from the epicentre, all 30+ km away: the S wave comes 3.6 s or more
after P, so every 3 s Pd window is P wave only. The P wave travels at 6 km/s from the origin.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from tocsin.alerts.engine import AlertEngine
from tocsin.alerts.kernels.quake import haversine_km, pd_from_magnitude, xy_to_latlon
from tocsin.schemas.alert import Alert
from tocsin.schemas.common import Family
from tocsin.schemas.detection import Detection, DetectionState

ORIGIN = datetime(2024, 7, 1, 12, 0, 0, tzinfo=UTC)
EPI = (30.60, 104.05)
DEPTH_KM = 10.0
P_KM_S = 6.0
OFFSETS = {"ST0": (30.0, 5.0), "ST1": (-22.0, 22.0), "ST2": (-8.0, -32.0), "ST3": (28.0, -18.0), "ST4": (5.0, 36.0)}
THREE = ("ST0", "ST1", "ST2")  # enough stations to confirm an event


def place(east_km: float, north_km: float) -> tuple[float, float]:
    """(lat, lon) of a point ``east_km`` east and ``north_km`` north of the epicentre."""
    lat, lon = xy_to_latlon(east_km, north_km, *EPI)
    return float(lat), float(lon)


def where(station: str, offsets: dict[str, tuple[float, float]] = OFFSETS) -> tuple[float, float, float]:
    """(lat, lon, hypocentral distance in km) of ``station``."""
    lat, lon = place(*offsets[station])
    return lat, lon, math.hypot(haversine_km(*EPI, lat, lon), DEPTH_KM)


def p_trigger(
    station: str,
    *,
    onset: datetime,
    area_code: str,
    state: DetectionState = DetectionState.OPEN,
    rev: int = 0,
    ts: datetime | None = None,
    detection_id: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    **evidence: Any,
) -> Detection:
    """A ``p_trigger`` detection of ``station`` (revision ``rev``, sent at ``ts``, default the onset)."""
    return Detection(
        id=detection_id or f"{station}:p_trigger:{rev}",
        device_id=station,
        site=station,
        family=Family.SEISMIC,
        kind="p_trigger",
        state=state,
        level=None,
        value=5.0,
        onset=onset,
        ts=ts or onset,
        revision=rev,
        area_code=area_code,
        lat=lat,
        lon=lon,
        evidence=evidence,
    )


def station_trigger(
    station: str,
    state: DetectionState = DetectionState.OPEN,
    rev: int = 0,
    *,
    area_code: str,
    offsets: dict[str, tuple[float, float]] = OFFSETS,
    **evidence: Any,
) -> Detection:
    """``station``'s trigger on this event: onset when the P wave arrives, revision ``rev`` 3 s per
    revision later (one Pd window each), at the station's place."""
    lat, lon, hypo = where(station, offsets)
    onset = ORIGIN + timedelta(seconds=hypo / P_KM_S)
    return p_trigger(
        station,
        onset=onset,
        area_code=area_code,
        state=state,
        rev=rev,
        ts=onset + timedelta(seconds=3.0 * rev),
        lat=lat,
        lon=lon,
        **evidence,
    )


def with_pd(
    station: str,
    magnitude: float,
    state: DetectionState = DetectionState.OPEN,
    rev: int = 0,
    *,
    area_code: str,
) -> Detection:
    """``station``'s trigger carrying the 3 s Pd that an event of ``magnitude`` gives at its distance."""
    pd_cm = pd_from_magnitude(magnitude, where(station)[2])
    return station_trigger(station, state, rev, area_code=area_code, pd_cm=pd_cm, pd_window_s=3.0)


def run_engine(engine: AlertEngine, dets: list[Detection]) -> list[list[Alert]]:
    """The messages each detection caused, the engine's state through JSON between detections."""
    state: dict[str, Any] | None = None
    out = []
    for d in dets:
        state, alerts = engine.process(d, state)
        json.dumps(state, allow_nan=False)
        out.append(alerts)
    return out
