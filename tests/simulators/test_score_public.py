"""The scorer's public warning time: S arrival minus the first alert the public received (an
earthquake below the public floor reaches agencies first, alerts/engine.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tocsin.schemas.alert import Alert, AlertArea, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.scenario import GroundTruth, HazardTruth, ObservedAlert, TargetArrival
from tocsin.simulators.score import format_table, score

T0 = datetime(2026, 4, 20, 6, 30, tzinfo=UTC)


def _t(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def _alert(at_s: float, revision: int, public: bool, msg_type: MsgType) -> ObservedAlert:
    alert = Alert(
        identifier=f"quake-{revision}",
        fingerprint="seismic:330110:earthquake",
        revision=revision,
        msg_type=msg_type,
        hazard=Family.SEISMIC,
        event="地震",
        level=WarningLevel.YELLOW,
        sent=_t(at_s),
        onset=_t(0),
        area=AlertArea(code="330110", desc="临江区"),
        headline="临江区地震预警",
        description="地震预警",
        public=public,
    )
    return ObservedAlert(alert=alert, sim_time=_t(at_s))


def test_public_warning_time_counts_from_the_first_public_message() -> None:
    quake = HazardTruth(
        hazard_id="quake-1",
        family=Family.SEISMIC,
        kind="earthquake",
        lat=30.0,
        lon=120.0,
        start=_t(0),
        detectable_from=_t(5.5),
        targets=[TargetArrival(target="临江区政府", distance_km=40.0, p_arrival=_t(6.9), s_arrival=_t(11.8))],
    )
    truth = GroundTruth(scenario="hand", seed=1, start=T0, end=_t(600), hazards=[quake])
    # agencies at 5.8 s (11.8 - 5.8 = 6.0 s before S), the public at 7.0 s (4.8 s before S)
    s = score(truth, [_alert(5.8, 0, False, MsgType.ALERT), _alert(7.0, 1, True, MsgType.UPDATE)])
    [x] = s.hazards[0].targets
    assert (x.warning_s, x.public_warning_s) == (6.0, 4.8)
    assert "S-wave warning +6.0 s (public +4.8 s)" in format_table(s)
    # never public: no public warning time
    s = score(truth, [_alert(5.8, 0, False, MsgType.ALERT)])
    assert s.hazards[0].targets[0].public_warning_s is None
