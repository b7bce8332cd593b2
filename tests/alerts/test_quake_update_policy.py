"""The earthquake update policy of alerts/engine.py: escalate at once, de-escalate only on a settled
magnitude (enough stations' Pd) and with hysteresis; and the first magnitude never comes from a Pd
window the S wave has reached."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.alerts.quake_scene import EPI, OFFSETS, ORIGIN, run_engine, station_trigger, where, with_pd
from tocsin.alerts.engine import AlertConfig, AlertEngine
from tocsin.alerts.kernels.quake import pd_from_magnitude
from tocsin.schemas.alert import Alert, MsgType
from tocsin.schemas.common import WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Registry, Target

BLUE, YELLOW, ORANGE = WarningLevel.BLUE, WarningLevel.YELLOW, WarningLevel.ORANGE
OPEN, UPDATE, CLEAR = DetectionState.OPEN, DetectionState.UPDATE, DetectionState.CLEAR
AREA = "110105"
# a town at the epicentre: predicted intensity there (hypocentral 10 km, Yu et al. 2013 as in
# alerts/kernels/quake.py PgvModel) I = 5.7123 + 1.3626 M - 4.2903 lg(10 + 25) = 1.3626 M - 0.9122:
# M4.4 -> 5.1, M4.5 -> 5.2, M4.6 -> 5.4, M5.2 -> 6.2, M5.3 -> 6.3, M5.4 -> 6.4, M5.6 -> 6.7, M5.8 -> 7.0,
# M6.0 -> 7.3, M6.6 -> 8.1. Levels by GB/T 17742-2020 degree: yellow from 5.5 (VI), orange from 6.5
# (VII), red from 7.5 (VIII); the de-escalation margin is 0.2.
REGISTRY = Registry(targets=[Target(name="震中镇", lat=EPI[0], lon=EPI[1])])


def _det(station: str, state: DetectionState = OPEN, rev: int = 0, **evidence: Any) -> Detection:
    return station_trigger(station, state, rev, area_code=AREA, **evidence)


def _pd(station: str, magnitude: float, rev: int = 1) -> Detection:
    return with_pd(station, magnitude, UPDATE, rev, area_code=AREA)


def _engine(**cfg: Any) -> AlertEngine:
    return AlertEngine(AlertConfig(**cfg), registry=REGISTRY, clock=lambda: ORIGIN + timedelta(seconds=10))


_run = run_engine


def _summary(per: list[list[Alert]]) -> list[tuple[str, str, float | None] | None]:
    """Per detection: (message type, level, value) of the one message it caused, or None."""
    out: list[tuple[str, str, float | None] | None] = []
    for alerts in per:
        assert len(alerts) <= 1
        out.append((alerts[0].msg_type.value, alerts[0].level.value, alerts[0].value) if alerts else None)
    return out


def test_escalation_is_immediate_de_escalation_waits_for_three_stations_and_hysteresis() -> None:
    dets = [
        _det("ST0"),
        _det("ST1"),
        _det("ST2"),  # three stations: Alert, no Pd yet (magnitude pending), nothing observed: blue
        _pd("ST0", 6.0),  # M6.0 on one station: 7.3 predicted at the town (VII), orange at once
        _pd("ST1", 4.6),  # median M5.3 (6.3, yellow) on two stations: orange held; the new magnitude is sent
        _pd("ST2", 4.4),  # median M4.6 on three: 5.4 is within 0.2 of yellow's 5.5: yellow, not blue
        _pd("ST3", 4.2),  # median M4.5 on four: 5.2 (+0.2 still below 5.5): blue
        _det("ST4", intensity=7.2),  # a station measures VII: orange again at once
    ]
    got = _summary(_run(_engine(), dets))
    assert got == [
        None,
        None,
        ("Alert", "blue", 0.0),
        ("Update", "orange", 6.0),
        ("Update", "orange", 5.3),
        ("Update", "yellow", 4.6),
        ("Update", "blue", 4.5),
        ("Update", "orange", 4.5),
    ]


def test_de_escalation_messages_reference_the_incident_and_say_adjusted() -> None:
    dets = [_det("ST0"), _det("ST1"), _det("ST2"), _pd("ST0", 6.0), _pd("ST1", 4.4), _pd("ST2", 4.4)]
    per = _run(_engine(), dets)
    alert, up, held, down = per[2][0], per[3][0], per[4][0], per[5][0]
    assert (held.msg_type, held.level, held.value) == (MsgType.UPDATE, ORANGE, 5.2)  # two stations: held
    assert (down.msg_type, down.level, down.value) == (MsgType.UPDATE, BLUE, 4.4)
    assert down.references == [alert.identifier, held.identifier]  # the original and the replaced message
    # the first Alert (no magnitude, nothing observed) was below the public floor, agencies only: the
    # Update to orange is the public's first message about it, so it says 发布 (issued)
    assert not alert.public and up.public
    assert "调整为" in down.headline and "发布" in up.headline
    assert "M4.4" in down.description


def test_a_level_just_below_the_boundary_is_held_no_flip_flop() -> None:
    # M5.4 at the town: 6.4 (yellow by the table), but within 0.2 of orange's 6.5: orange holds
    dets = [_det("ST0"), _det("ST1"), _det("ST2"), _pd("ST0", 5.8), _pd("ST1", 5.4), _pd("ST2", 5.4), _pd("ST3", 5.4)]
    got = _summary(_run(_engine(), dets))
    assert got[3] == ("Update", "orange", 5.8)
    assert got[4] is None  # median M5.6 on two stations: less than 0.3 moved, the level held anyway
    assert got[5] == ("Update", "orange", 5.4)  # three stations on M5.4: the new magnitude, orange kept
    assert got[6] is None  # a fourth agreeing: nothing new


def test_de_escalation_guards_are_configurable() -> None:
    dets = [_det("ST0"), _det("ST1"), _det("ST2"), _pd("ST0", 6.0), _pd("ST1", 4.8)]
    # two stations suffice and no hysteresis: median M5.4 (6.4 at the town) is yellow at once
    got = _summary(_run(_engine(seismic_deescalate_stations=2, seismic_deescalate_margin=0.0), dets))
    assert got[3:] == [("Update", "orange", 6.0), ("Update", "yellow", 5.4)]


def test_the_cancel_carries_the_de_escalated_level() -> None:
    dets = [_det("ST0"), _det("ST1"), _det("ST2"), _pd("ST0", 6.0), _pd("ST1", 4.4), _pd("ST2", 4.4)]
    dets += [_det(s, CLEAR, rev=2) for s in ("ST0", "ST1", "ST2")]
    got = _summary(_run(_engine(), dets))
    assert got[5] == ("Update", "blue", 4.4)
    assert got[-1] is not None and got[-1][:2] == ("Cancel", "blue")


def test_a_near_station_s_inflated_pd_does_not_set_the_first_magnitude() -> None:
    """A station 13 km from the epicentre (S 1.8 s after P) reports a 3 s Pd that includes the S wave
    (here: reading M6.6 for an M4.4). Without a Pd profile it is left out: the magnitude stays
    pending (level from observed intensity) until a station with a P-only window reports; with a
    profile its window is cut before the S wave.

    The epicentre lies inside the triangle of the first three stations (NR, ST0, ST1): outside it, three
    picks fit a second place exactly as well (at (8, 5) for NR, one 5 km away), and the magnitude would
    rest on whichever of the two the location search took."""
    offsets = {**OFFSETS, "NR": (-5.0, -8.0)}
    _, _, hypo = where("NR", offsets)
    inflated = pd_from_magnitude(6.6, hypo)
    clean = pd_from_magnitude(4.4, hypo)

    def near(state: DetectionState = OPEN, rev: int = 0, **evidence: Any) -> Detection:
        return station_trigger("NR", state, rev, area_code=AREA, offsets=offsets, **evidence)

    seq = [near(), _det("ST0"), _det("ST1"), near(UPDATE, 1, pd_cm=inflated, pd_window_s=3.0)]
    got = _summary(_run(_engine(), [*seq, _pd("ST0", 4.4)]))
    assert got[2] == ("Alert", "blue", 0.0)
    assert got[3] is None  # S-inflated: no M6.6 (which would be red at the town, 8.1)
    assert got[4] == ("Update", "blue", 4.4)  # the first P-only Pd
    # the same near station with a profile: Pd over the first 1.5 s (S arrives 1.8 s after the pick)
    profile = [clean, clean, clean, inflated, inflated, inflated]
    seq[3] = near(UPDATE, 1, pd_cm=inflated, pd_window_s=3.0, pd_profile_cm=profile, pd_step_s=0.5)
    got = _summary(_run(_engine(), seq))
    assert got[3] == ("Update", "blue", 4.4)
