"""The alert stage's earthquake location with the area's live, untriggered stations (not-yet-arrived
data), and the offline stations it must leave out.

The network and event are the hand-worked case of tests/alerts/test_quake_quiet.py: nine stations on a
40 km grid, an event 10 km south of the southern row (0, -50), whose three stations trigger first; their
picks fit the event and its reflection (0, -30) equally well, and the centre station, quiet at the
third pick, rules the reflection out. One more station, GX, stands 10 km south of the event (0, -60):
its P arrives with the first pick's (2.36 s after the origin), but it is dead and sends nothing. Counted
as quiet, it contradicts the event (its P would have been due 4.7 s before the third pick) and not the
reflection (30 km from it: due 1.80 s before, within the 2 s tolerance): the reflection would be chosen.
The deadman's offline report must take it out.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from tests.alerts.quake_scene import p_trigger
from tocsin.alerts.engine import AlertConfig, AlertEngine
from tocsin.alerts.kernels.quake import haversine_km, xy_to_latlon
from tocsin.alerts.service import AlertMetrics, AlertStage
from tocsin.schemas.common import Family
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.wire import encode

ORIGIN_LL = (30.60, 104.05)
ORIGIN = datetime(2026, 5, 12, 6, 28, 0, tzinfo=UTC)
AREA = "510104"
DEPTH_KM, VP = 10.0, 6.0
# G<column><row>, 0 west/south to 2 east/north: G11 is the centre station
STATIONS = {f"G{i + 1}{j + 1}": (40.0 * i, 40.0 * j) for i in (-1, 0, 1) for j in (-1, 0, 1)} | {"GX": (0.0, -60.0)}
SOUTH_ROW = ("G00", "G10", "G20")
EVENT_XY, REFLECTION_XY = (0.0, -50.0), (0.0, -30.0)


def _ll(xy: tuple[float, float]) -> tuple[float, float]:
    lat, lon = xy_to_latlon(xy[0], xy[1], *ORIGIN_LL)
    return float(lat), float(lon)


REGISTRY = Registry(
    devices=[
        Device(
            device_id=sid,
            family=Family.SEISMIC,
            site="seis-net",
            lat=round(_ll(xy)[0], 6),
            lon=round(_ll(xy)[1], 6),
            area=Area(code=AREA),
            interval_s=1.0,
        )
        for sid, xy in STATIONS.items()
    ]
)


def _onset(sid: str) -> datetime:
    dev = REGISTRY.get(sid)
    assert dev is not None
    km = math.hypot(haversine_km(*_ll(EVENT_XY), dev.lat, dev.lon), DEPTH_KM)
    return ORIGIN + timedelta(seconds=km / VP)


def _trigger(sid: str) -> Detection:
    dev = REGISTRY.get(sid)
    assert dev is not None
    return p_trigger(sid, onset=_onset(sid), area_code=AREA, lat=dev.lat, lon=dev.lon, intensity=3.0)


def _update(sid: str, after_third_s: float) -> Detection:
    """An update of ``sid``'s trigger (its Pd profile so far, as the detector sends every second),
    ``after_third_s`` after the third pick: the event's newest data time moves on."""
    third = max(_onset(s) for s in SOUTH_ROW)
    d = _trigger(sid)
    return d.model_copy(
        update={
            "id": f"{sid}:p_trigger:1",
            "state": DetectionState.UPDATE,
            "revision": 1,
            "ts": third + timedelta(seconds=after_third_s),
        }
    )


def _offline(sid: str, state: DetectionState, t: datetime) -> Detection:
    return Detection(
        id=f"{sid}:offline:{int(t.timestamp() * 1000)}:{0 if state is DetectionState.OPEN else 1}",
        device_id=sid,
        site="seis-net",
        family=Family.SEISMIC,
        kind="offline",
        state=state,
        value=5.0,
        unit="s",
        onset=t,
        ts=t,
        revision=0 if state is DetectionState.OPEN else 1,
        area_code=AREA,
    )


def _run(detections: list[Detection], config: AlertConfig | None = None) -> tuple[dict[str, Any], AlertStage]:
    """Through the alert stage, the state JSON round-tripped after each record as in the Faust table."""
    now = [ORIGIN]
    engine = AlertEngine(config or AlertConfig(), REGISTRY, clock=lambda: now[0])
    stage = AlertStage(engine, AlertMetrics(CollectorRegistry()))
    store: dict[str, Any] = {}
    for d in detections:
        now[0] = d.ts
        stage.handle(encode(d), store)
        for k, v in store.items():
            store[k] = json.loads(json.dumps(v, allow_nan=False))
    return store, stage


def _epicentre(store: dict[str, Any]) -> dict[str, Any]:
    return store[f"seismic:{AREA}:earthquake"]["epicentre"]


def _err_km(epi: dict[str, Any], xy: tuple[float, float]) -> float:
    return haversine_km(epi["lat"], epi["lon"], *_ll(xy))


def test_the_quiet_centre_station_puts_the_location_on_the_event() -> None:
    """GX reported offline, the other six stations live and quiet. At the third pick the centre station
    contradicts the reflection by 1.80 s, less than the default tolerance (2 s): the tie rule still takes
    the reflection. Half a second later (the next update of a triggered station), with the centre
    station still quiet, the epicentre is the event, within 0.5 km. Picks only, it stays on the
    reflection, 20 km off."""
    dead = _offline("GX", DetectionState.OPEN, ORIGIN - timedelta(minutes=5))
    records = [dead, *(_trigger(s) for s in SOUTH_ROW)]
    store, _ = _run(records)
    epi = _epicentre(store)
    assert _err_km(epi, REFLECTION_XY) < 1.0 and epi["n_quiet"] == 6
    store, _ = _run([*records, _update("G10", 0.5)])
    epi = _epicentre(store)
    assert _err_km(epi, EVENT_XY) < 0.5
    assert epi["n_picks"] == 3 and epi["n_quiet"] == 6 and epi["late_s"] == 0.0
    assert store[f"seismic:{AREA}:station-health"]["offline"] == {"GX": dead.ts.timestamp()}

    picks_only, _ = _run([*records, _update("G10", 0.5)], AlertConfig(seismic_quiet_tolerance_s=None))
    epi = _epicentre(picks_only)
    assert _err_km(epi, REFLECTION_XY) < 1.0 and epi["n_quiet"] == 0


def test_a_tighter_tolerance_finds_the_event_at_the_third_pick() -> None:
    dead = _offline("GX", DetectionState.OPEN, ORIGIN - timedelta(minutes=5))
    store, _ = _run([dead, *(_trigger(s) for s in SOUTH_ROW)], AlertConfig(seismic_quiet_tolerance_s=1.0))
    assert _err_km(_epicentre(store), EVENT_XY) < 0.5


def test_the_constraint_reaches_no_further_than_the_window_past_the_newest_pick() -> None:
    """An update 30 s after the third pick counts as one 3 s after it (``seismic_quiet_window_s``): the
    quiet stations then say the P wave reached them after 3 - 2 = 1 s past the third pick, which the
    event allows (the centre station's P is due 1.43 s after it, the others later). Had the 30 s counted,
    every quiet station would contradict both fits (as if the event were too small to trigger them)."""
    dead = _offline("GX", DetectionState.OPEN, ORIGIN - timedelta(minutes=5))
    records = [dead, *(_trigger(s) for s in SOUTH_ROW)]
    late, _ = _run([*records, _update("G10", 30.0)])
    at_window, _ = _run([*records, _update("G10", 3.0)])
    assert _epicentre(late) == _epicentre(at_window)
    assert _err_km(_epicentre(late), EVENT_XY) < 0.5 and _epicentre(late)["late_s"] == 0.0
    # unbounded, every quiet station contradicts both fits: ignored, the picks-only choice (the reflection)
    unbounded, _ = _run([*records, _update("G10", 30.0)], AlertConfig(seismic_quiet_window_s=30.0))
    assert _err_km(_epicentre(unbounded), REFLECTION_XY) < 1.0


def test_an_offline_station_not_known_as_such_would_push_the_location_off() -> None:
    """Without the deadman's report, the dead GX counts as quiet and rules out the event: the reflection,
    20 km off (why an offline station must never count as untriggered). Half a second later the centre
    station contradicts the reflection too; every fit contradicted, the quiet stations are ignored and
    the picks-only choice stands (the same reflection), never a place between."""
    store, _ = _run([_trigger(s) for s in SOUTH_ROW])
    epi = _epicentre(store)
    assert epi["n_quiet"] == 7
    assert _err_km(epi, REFLECTION_XY) < 1.0 and _err_km(epi, EVENT_XY) > 19.0
    later, _ = _run([*(_trigger(s) for s in SOUTH_ROW), _update("G10", 0.5)])
    epi = _epicentre(later)
    assert _err_km(epi, REFLECTION_XY) < 1.0 and epi["late_s"] > 0.0


def test_a_station_back_online_counts_as_quiet_again() -> None:
    t = ORIGIN - timedelta(minutes=5)
    store, _ = _run(
        [
            _offline("G11", DetectionState.OPEN, t),
            _offline("GX", DetectionState.OPEN, t),
            _offline("G11", DetectionState.CLEAR, t + timedelta(minutes=1)),
            *(_trigger(s) for s in SOUTH_ROW),
            _update("G10", 0.5),
        ]
    )
    assert store[f"seismic:{AREA}:station-health"]["offline"] == {"GX": t.timestamp()}
    epi = _epicentre(store)
    assert epi["n_quiet"] == 6 and _err_km(epi, EVENT_XY) < 0.5


def test_the_centre_station_offline_leaves_the_tie_to_the_old_rule() -> None:
    """With G(0,0) offline as well, no live station tells the two places apart: the reflection, as
    with picks only (the location is no better, and no worse, than without the constraint)."""
    t = ORIGIN - timedelta(minutes=5)
    store, _ = _run(
        [
            _offline("GX", DetectionState.OPEN, t),
            _offline("G11", DetectionState.OPEN, t),
            *(_trigger(s) for s in SOUTH_ROW),
            _update("G10", 0.5),
        ]
    )
    epi = _epicentre(store)
    assert epi["n_quiet"] == 5 and _err_km(epi, REFLECTION_XY) < 1.0


def test_the_offline_set_is_bounded_and_its_overflow_turns_the_constraint_off() -> None:
    """``seismic_max_offline`` 2: a third offline station evicts the oldest and marks the area
    overflowed (counted); then no station of the area counts as quiet, since one of the forgotten
    offline stations could be taken for a quiet one."""
    t = ORIGIN - timedelta(minutes=5)
    offline = [_offline(s, DetectionState.OPEN, t + timedelta(seconds=k)) for k, s in enumerate(("GX", "G02", "G22"))]
    store, stage = _run(offline, AlertConfig(seismic_max_offline=2))
    health = store[f"seismic:{AREA}:station-health"]
    assert health["overflow"] is True and sorted(health["offline"]) == ["G02", "G22"]
    assert stage.engine.capped == {"seismic_offline_overflow": 1}
    counted = {
        sample.labels["reason"]: sample.value
        for metric in stage.metrics.capped.collect()
        for sample in metric.samples
        if sample.name == "tocsin_alert_state_capped_total"
    }
    assert counted == {"seismic_offline_overflow": 1.0}  # the metric, at the record that overflowed
    store, _ = _run([*offline, *(_trigger(s) for s in SOUTH_ROW)], AlertConfig(seismic_max_offline=2))
    assert _epicentre(store)["n_quiet"] == 0
    # one back: below the cap again, the constraint returns (GX, forgotten, would count as quiet: it is
    # the operators' cap to size; the overflow is a metric)
    back = _offline("G02", DetectionState.CLEAR, t + timedelta(minutes=1))
    store, _ = _run([*offline, back], AlertConfig(seismic_max_offline=2))
    health = store[f"seismic:{AREA}:station-health"]
    assert health["overflow"] is False and list(health["offline"]) == ["G22"]


def test_other_families_and_repeated_reports_leave_the_health_alone() -> None:
    t = ORIGIN - timedelta(minutes=5)
    hydro = _offline("GX", DetectionState.OPEN, t).model_copy(update={"family": Family.HYDRO})
    store, _ = _run([hydro])
    assert not any(k.endswith(":station-health") for k in store)
    engine = AlertEngine(AlertConfig(), REGISTRY)
    health = engine.station_health(_offline("GX", DetectionState.OPEN, t), None)
    assert health == {"offline": {"GX": t.timestamp()}, "overflow": False}
    assert engine.station_health(_offline("GX", DetectionState.OPEN, t + timedelta(seconds=9)), health) is None
    assert engine.station_health(_offline("G11", DetectionState.CLEAR, t), health) is None
    assert engine.station_health(_trigger("GX"), health) is None
