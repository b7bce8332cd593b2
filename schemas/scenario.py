"""Ground truth of a simulated scenario, and the alerts a run produced: the contract between the
scenario generator (simulators/scenario.py) and the scorer (simulators/score.py).

Times are simulated device times. A run in compressed time maps each alert to the simulated time
at which it appeared (``ObservedAlert.sim_time``); a run in real time with rebased timestamps can
use the alert's own ``sent``.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from tocsin.schemas.alert import Alert
from tocsin.schemas.common import Family, WarningLevel, WireModel


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


class OutageTruth(WireModel):
    """An injected outage the deadman can see: the devices of one field gateway (or, for devices
    without one, of one site) that went silent together, as one operators' equipment alert.

    Its fingerprint is the alert's, ``<family>:<area_code>:<group>:offline`` (alerts/engine.py)."""

    outage_id: str = Field(min_length=1, max_length=96)
    family: Family
    area_code: str = Field(min_length=1)
    group: str = Field(min_length=1, description="gateway-<gateway id>, or site-<site> for devices without one")
    devices: list[str] = Field(min_length=1, description="the devices that went silent")
    start: AwareDatetime = Field(description="when the first device went silent (the fault's at_s)")
    detectable_from: AwareDatetime = Field(
        description="when the first device had been silent for more than deadman_k x its interval"
    )
    back: AwareDatetime | None = Field(
        default=None, description="the last device's first report after the outage; None: not within the scenario"
    )

    @property
    def fingerprint(self) -> str:
        return f"{self.family.value}:{self.area_code}:{self.group}:offline"


class GroundTruth(WireModel):
    scenario: str = Field(min_length=1)
    seed: int
    start: AwareDatetime
    end: AwareDatetime
    hazards: list[HazardTruth] = Field(default_factory=list, description="empty: a quiet day, no alert expected")
    faults: list[str] = Field(
        default_factory=list, description="injected faults, e.g. 'offline:RG03', 'stuck:GD02', 'malformed:3'"
    )
    outages: list[OutageTruth] = Field(
        default_factory=list, description="offline faults long enough for the deadman: one equipment alert each"
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
