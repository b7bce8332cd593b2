"""Ground truth of a simulated scenario, and the alerts a run produced: the contract between the
scenario generator (simulators/scenario.py) and the scorer (simulators/score.py).

Times are simulated device times. A run in compressed time maps each alert to the simulated time
at which it appeared (``ObservedAlert.sim_time``); a run in real time with rebased timestamps can
use the alert's own ``sent``.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from schemas.alert import Alert
from schemas.common import Family, WarningLevel, WireModel


class TargetArrival(WireModel):
    """When the S wave of an earthquake reaches a registered target (the end of its warning time)."""

    target: str = Field(min_length=1, description="Target.name in the registry")
    distance_km: float = Field(ge=0)
    p_arrival: AwareDatetime
    s_arrival: AwareDatetime


class HazardTruth(WireModel):
    """One hazard the scenario injected, and from when the network could see it."""

    hazard_id: str = Field(min_length=1, max_length=64, description="unique in the scenario, e.g. quake-1")
    family: Family
    kind: str = Field(min_length=1, description="rainstorm, river_flood, earthquake, gas_leak, forest_fire")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    start: AwareDatetime = Field(description="when the hazard began (ignition, origin time, leak start)")
    detectable_from: AwareDatetime = Field(
        description="first moment a device's data crosses a detection threshold (lead time is measured from here)"
    )
    end: AwareDatetime | None = Field(default=None, description="when the hazard is over; None: after the scenario")
    expected_level: WarningLevel | None = Field(default=None, description="highest level the data supports")
    devices: list[str] = Field(default_factory=list, description="devices whose data shows the hazard")
    area_codes: list[str] = Field(default_factory=list)
    targets: list[TargetArrival] = Field(default_factory=list, description="earthquakes: S-wave arrival per target")
    params: dict[str, float | str] = Field(default_factory=dict, description="magnitude, depth_km, rate_g_s ...")


class GroundTruth(WireModel):
    scenario: str = Field(min_length=1)
    seed: int
    start: AwareDatetime
    end: AwareDatetime
    hazards: list[HazardTruth] = Field(default_factory=list, description="empty: a quiet day, no alert expected")
    faults: list[str] = Field(
        default_factory=list, description="injected faults, e.g. 'offline:RG03', 'stuck:GD02', 'malformed:3'"
    )
    messages: int = Field(default=0, ge=0, description="device messages generated")
    undetectable: list[str] = Field(
        default_factory=list,
        description="hazard_id of injected hazards whose data never crosses a default detection threshold",
    )


class ObservedAlert(WireModel):
    """An alert message a run produced, with the simulated time it appeared at."""

    alert: Alert
    sim_time: AwareDatetime | None = Field(default=None, description="None: use alert.sent")
