"""Scoring a scenario run: the alerts a run produced against the scenario's ground truth. Pure, no I/O.

Rules (``score``):

- Only ``Alert`` and ``Update`` messages are detections; a ``Cancel`` ends an incident and is never
  a detection (nor a false positive).
- An alert message's time is its simulated time (``ObservedAlert.sim_time``, else ``alert.sent``).
- A message matches a hazard of its family (``alert.hazard``) whose window holds its time:
  ``[detectable_from - tolerance_s, (hazard.end or truth.end) + grace_s]``. When several hazards of
  the family qualify, the best is taken by: the same incident kind (rainstorm, flood ... from the
  fingerprint), shared devices, shared area codes, then the nearest hazard to the alert's circle or boundaries,
  then the earliest ``detectable_from``.
- Per hazard: detected or missed, the first matching message's time, the lead time
  ``first alert - detectable_from`` in seconds (negative: the alert came before the data said it
  could; reported as is), the highest level of its matching messages against ``expected_level``,
  and for earthquakes the warning time per target ``s_arrival - first alert`` (positive: warned
  before the shaking).
- False positives are counted per incident, as distinct fingerprints: an incident (a fingerprint's
  Alert and the Updates referencing it) with no message matching any hazard is one false positive
  however many revisions it had. Later revisions of a matched incident that fall outside the window
  are not false positives (``late_revisions``).
- Device health: operators' equipment alerts (the deadman's ``offline`` incident, event
  "监测设备离线", fingerprint ``<family>:<area>:<gateway or site>:offline``) are not hazards. Such an alert is
  *expected* when the scenario injected an ``offline:<device>`` fault for one of its devices (or for
  any device when the alert names none) and is then reported under ``device_health`` only; an
  offline alert no injected fault explains is *unexpected*: listed under ``device_health`` and also
  counted as a false positive, because it would page the maintenance crew for nothing.
- Outages (``GroundTruth.outages``: offline faults long enough for the deadman, per gateway or site):
  an outage is detected by the device-health messages of its fingerprint whose time falls in
  ``[detectable_from - tolerance_s, (back or truth.end) + grace_s]``; per outage: the first alert,
  the lead time (first alert - ``detectable_from``), the distinct incidents (one expected: the
  group's devices in one alert, updated as their count changes), the devices named, and when the
  all-clear (``Cancel``) came. Outages are not hazards: they count neither in recall nor precision.
- Precision = matched incidents / (matched incidents + false positives), recall = detected hazards /
  hazards; ``None`` when the denominator is 0 (no alert at all, or a quiet day).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, Field

from tocsin.schemas.alert import Alert, MsgType
from tocsin.schemas.common import Family, WarningLevel, WireModel
from tocsin.schemas.geo import in_any
from tocsin.schemas.scenario import GroundTruth, HazardTruth, ObservedAlert, OutageTruth, TargetArrival

__all__ = [
    "DEVICE_HEALTH_GROUP",
    "DeviceHealthAlert",
    "HazardScore",
    "OutageScore",
    "Score",
    "TargetWarning",
    "alert_time",
    "incident_group_of",
    "is_device_health",
    "score",
]

DEVICE_HEALTH_GROUP = "offline"
DEVICE_HEALTH_EVENT = "监测设备离线"
DEFAULT_TOLERANCE_S = 60.0
DEFAULT_GRACE_S = 1800.0

# ground-truth kind -> the incident group of the alert fingerprint (alerts/engine.py)
_KIND_TO_GROUP = {"river_flood": "flood", "flood": "flood", "water_level": "flood", "fire": "forest_fire"}


class TargetWarning(WireModel):
    target: str
    distance_km: float
    s_arrival: AwareDatetime
    warning_s: float | None = Field(description="S arrival - first alert, s; positive: warned before shaking")
    public_warning_s: float | None = Field(
        default=None,
        description="S arrival - first public alert (an earthquake below the public floor goes to agencies first), s",
    )


class HazardScore(WireModel):
    hazard_id: str
    family: Family
    kind: str
    detected: bool
    detectable_from: AwareDatetime
    first_alert: AwareDatetime | None = None
    lead_time_s: float | None = Field(default=None, description="first alert - detectable_from, s")
    highest_level: WarningLevel | None = None
    expected_level: WarningLevel | None = None
    level_reached: bool | None = Field(default=None, description="highest level >= expected; None: no expectation")
    messages: int = Field(default=0, description="Alert/Update messages matched to this hazard")
    fingerprints: list[str] = Field(default_factory=list)
    targets: list[TargetWarning] = Field(default_factory=list)


class DeviceHealthAlert(WireModel):
    fingerprint: str
    devices: list[str]
    first_alert: AwareDatetime
    expected: bool = Field(description="an injected offline fault explains it")


class OutageScore(WireModel):
    outage_id: str
    fingerprint: str
    devices: list[str] = Field(description="the devices the truth says went silent")
    detected: bool
    detectable_from: AwareDatetime
    first_alert: AwareDatetime | None = None
    lead_time_s: float | None = Field(default=None, description="first alert - detectable_from, s")
    incidents: int = Field(default=0, description="distinct alerts (incidents) of the fingerprint in the window")
    messages: int = Field(default=0, description="Alert/Update messages in the window")
    devices_alerted: list[str] = Field(default_factory=list, description="every device the messages named")
    back: AwareDatetime | None = None
    cleared_at: AwareDatetime | None = Field(default=None, description="the first Cancel after the first alert")


class Score(WireModel):
    scenario: str
    hazards: list[HazardScore] = Field(default_factory=list)
    true_positives: int = Field(default=0, description="hazards detected")
    missed: int = 0
    false_positives: int = Field(default=0, description="incidents (distinct fingerprints) matching no hazard")
    false_positive_fingerprints: list[str] = Field(default_factory=list)
    device_health: list[DeviceHealthAlert] = Field(default_factory=list)
    outages: list[OutageScore] = Field(default_factory=list)
    outages_missed: int = 0
    matched_incidents: int = 0
    late_revisions: int = Field(default=0, description="revisions of matched incidents outside every window")
    cancels: int = 0
    alert_messages: int = Field(default=0, description="every message scored, cancels included")
    precision: float | None = None
    recall: float | None = None


def alert_time(o: ObservedAlert) -> datetime:
    return o.sim_time if o.sim_time is not None else o.alert.sent


def incident_group_of(alert: Alert) -> str:
    """The incident part of the fingerprint (``family:area:group``)."""
    return alert.fingerprint.rsplit(":", 1)[-1]


def is_device_health(alert: Alert) -> bool:
    return incident_group_of(alert) == DEVICE_HEALTH_GROUP or alert.event == DEVICE_HEALTH_EVENT


def _incident_key(alert: Alert) -> str:
    """The incident a message belongs to: the first identifier of its chain (an Alert's own)."""
    return alert.references[0] if alert.references else alert.identifier


def _window(h: HazardTruth, truth: GroundTruth, tolerance_s: float, grace_s: float) -> tuple[datetime, datetime]:
    end = h.end if h.end is not None else truth.end
    return h.detectable_from - timedelta(seconds=tolerance_s), end + timedelta(seconds=grace_s)


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))


def _preference(alert: Alert, h: HazardTruth) -> tuple[int, int, int, float, datetime]:
    """Smaller is better: kind, devices, area, distance, then the earlier hazard."""
    group = incident_group_of(alert)
    kind_mismatch = int(_KIND_TO_GROUP.get(h.kind, h.kind) != group)
    no_devices = int(not set(alert.devices) & set(h.devices))
    no_area = int(alert.area.code not in h.area_codes)
    circle = alert.area.circle
    dist = _distance_km(circle[0], circle[1], h.lat, h.lon) if circle is not None else math.inf
    if alert.area.polygons:  # an area given by boundaries: 0 inside, else the nearest vertex
        inside = in_any(h.lat, h.lon, alert.area.polygons)
        near = min(_distance_km(lat, lon, h.lat, h.lon) for ring in alert.area.polygons for lat, lon in ring)
        dist = min(dist, 0.0 if inside else near)
    return kind_mismatch, no_devices, no_area, dist, h.detectable_from


def _best_hazard(
    alert: Alert, t: datetime, truth: GroundTruth, tolerance_s: float, grace_s: float
) -> HazardTruth | None:
    candidates = []
    for h in truth.hazards:
        if h.family is not alert.hazard:
            continue
        lo, hi = _window(h, truth, tolerance_s, grace_s)
        if lo <= t <= hi:
            candidates.append(h)
    if not candidates:
        return None
    return min(candidates, key=lambda h: _preference(alert, h))


def _offline_faults(truth: GroundTruth) -> set[str]:
    return {f.split(":", 1)[1] for f in truth.faults if f.startswith("offline:") and ":" in f}


def score(
    truth: GroundTruth,
    alerts: Iterable[ObservedAlert],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    grace_s: float = DEFAULT_GRACE_S,
) -> Score:
    """Score ``alerts`` (in any order) against ``truth``; see the module docstring for the rules."""
    observed = sorted(alerts, key=lambda o: (alert_time(o), o.alert.fingerprint, o.alert.revision))
    matched: dict[str, list[tuple[datetime, Alert]]] = {h.hazard_id: [] for h in truth.hazards}
    incident_match: dict[str, bool] = {}
    incident_fp: dict[str, str] = {}
    health_first: dict[str, tuple[datetime, Alert]] = {}
    health_msgs: list[tuple[datetime, Alert]] = []  # every device-health message, cancels included
    cancels = 0
    offline_devices = _offline_faults(truth)
    offline_any = any(f.startswith("offline") for f in truth.faults)
    for o in observed:
        a, t = o.alert, alert_time(o)
        if is_device_health(a):
            health_msgs.append((t, a))
        if a.msg_type is MsgType.CANCEL:
            cancels += 1
            continue
        key = _incident_key(a)
        if is_device_health(a):
            health_first.setdefault(key, (t, a))
            continue
        incident_fp.setdefault(key, a.fingerprint)
        h = _best_hazard(a, t, truth, tolerance_s, grace_s)
        if h is None:
            incident_match.setdefault(key, False)
            continue
        incident_match[key] = True
        matched[h.hazard_id].append((t, a))

    # unmatched messages: those of never-matched incidents are false positives (one per fingerprint);
    # those of matched incidents are late (or early) revisions
    matched_ids = {id(a) for hits in matched.values() for _, a in hits}
    late = sum(
        1
        for o in observed
        if o.alert.msg_type is not MsgType.CANCEL
        and not is_device_health(o.alert)
        and incident_match.get(_incident_key(o.alert))
        and id(o.alert) not in matched_ids
    )
    fp_fingerprints = {incident_fp[k] for k, ok in incident_match.items() if not ok}

    health: list[DeviceHealthAlert] = []
    for _key, (t, a) in sorted(health_first.items(), key=lambda kv: (kv[1][0], kv[0])):
        expected = bool(set(a.devices) & offline_devices) if a.devices else offline_any
        health.append(
            DeviceHealthAlert(fingerprint=a.fingerprint, devices=list(a.devices), first_alert=t, expected=expected)
        )
        if not expected:
            fp_fingerprints.add(a.fingerprint)

    hazards = [_hazard_score(h, matched[h.hazard_id]) for h in truth.hazards]
    outages = [_outage_score(x, truth, health_msgs, tolerance_s, grace_s) for x in truth.outages]
    tp = sum(h.detected for h in hazards)
    n_matched = sum(incident_match.values())
    n_fp = len(fp_fingerprints)
    return Score(
        scenario=truth.scenario,
        hazards=hazards,
        true_positives=tp,
        missed=len(hazards) - tp,
        false_positives=n_fp,
        false_positive_fingerprints=sorted(fp_fingerprints),
        device_health=health,
        outages=outages,
        outages_missed=sum(not x.detected for x in outages),
        matched_incidents=n_matched,
        late_revisions=late,
        cancels=cancels,
        alert_messages=len(observed),
        precision=n_matched / (n_matched + n_fp) if n_matched + n_fp else None,
        recall=tp / len(hazards) if hazards else None,
    )


def _outage_score(
    x: OutageTruth, truth: GroundTruth, msgs: list[tuple[datetime, Alert]], tolerance_s: float, grace_s: float
) -> OutageScore:
    lo = x.detectable_from - timedelta(seconds=tolerance_s)
    hi = (x.back or truth.end) + timedelta(seconds=grace_s)
    mine = [(t, a) for t, a in msgs if a.fingerprint == x.fingerprint and lo <= t <= hi]
    alerts = [(t, a) for t, a in mine if a.msg_type is not MsgType.CANCEL]
    base = OutageScore(
        outage_id=x.outage_id,
        fingerprint=x.fingerprint,
        devices=list(x.devices),
        detected=bool(alerts),
        detectable_from=x.detectable_from,
        back=x.back,
    )
    if not alerts:
        return base
    first = min(t for t, _ in alerts)
    cleared = [t for t, a in mine if a.msg_type is MsgType.CANCEL and t >= first]
    return base.model_copy(
        update={
            "first_alert": first,
            "lead_time_s": (first - x.detectable_from).total_seconds(),
            "incidents": len({_incident_key(a) for _, a in alerts}),
            "messages": len(alerts),
            "devices_alerted": sorted({d for _, a in alerts for d in a.devices}),
            "cleared_at": min(cleared) if cleared else None,
        }
    )


def _hazard_score(h: HazardTruth, hits: list[tuple[datetime, Alert]]) -> HazardScore:
    first = min((t for t, _ in hits), default=None)
    first_public = min((t for t, a in hits if a.public), default=None)

    def warning_s(x: TargetArrival, at: datetime | None) -> float | None:
        return (x.s_arrival - at).total_seconds() if at is not None else None

    targets = [
        TargetWarning(
            target=x.target,
            distance_km=x.distance_km,
            s_arrival=x.s_arrival,
            warning_s=warning_s(x, first),
            public_warning_s=warning_s(x, first_public),
        )
        for x in h.targets
    ]
    common: dict[str, Any] = {
        "hazard_id": h.hazard_id,
        "family": h.family,
        "kind": h.kind,
        "detectable_from": h.detectable_from,
        "expected_level": h.expected_level,
        "targets": targets,
    }
    if first is None:
        return HazardScore(**common, detected=False, level_reached=False if h.expected_level is not None else None)
    highest = WarningLevel.from_rank(max(a.level.rank for _, a in hits))
    return HazardScore(
        **common,
        detected=True,
        first_alert=first,
        lead_time_s=(first - h.detectable_from).total_seconds(),
        highest_level=highest,
        level_reached=highest.rank >= h.expected_level.rank if h.expected_level is not None else None,
        messages=len(hits),
        fingerprints=sorted({a.fingerprint for _, a in hits}),
    )


def format_table(s: Score) -> str:
    """The score as a plain-text table (what ``tocsin simulate score`` and ``run`` print)."""
    lines = [f"scenario {s.scenario}"]
    head = f"  {'hazard':18s} {'family':8s} {'kind':12s} {'result':9s} {'lead s':>8s}  {'level (expected)':18s} msgs"
    lines.append(head)
    for h in s.hazards:
        lead = f"{h.lead_time_s:8.1f}" if h.lead_time_s is not None else f"{'-':>8s}"
        lvl = (h.highest_level.value if h.highest_level else "-") + (
            f" ({h.expected_level.value})" if h.expected_level else ""
        )
        result = "detected" if h.detected else "MISSED"
        lines.append(f"  {h.hazard_id:18s} {h.family.value:8s} {h.kind:12s} {result:9s} {lead}  {lvl:18s} {h.messages}")
        for x in h.targets:
            warn = f"{x.warning_s:+.1f} s" if x.warning_s is not None else "-"
            public = f"{x.public_warning_s:+.1f} s" if x.public_warning_s is not None else "-"
            lines.append(
                f"      target {x.target:20s} {x.distance_km:6.1f} km  S-wave warning {warn} (public {public})"
            )
    for o in s.outages:
        if o.detected:
            lead = f"lead {o.lead_time_s:.1f} s" if o.lead_time_s is not None else ""
            clear = f"cleared {o.cleared_at:%H:%M:%S}" if o.cleared_at else "not cleared"
            result = f"detected, {lead}, {o.incidents} alert(s), {clear}"
        else:
            result = "MISSED"
        lines.append(f"  outage {o.outage_id} {o.fingerprint} {','.join(o.devices)}: {result}")
    for d in s.device_health:
        tag = "expected" if d.expected else "UNEXPECTED"
        lines.append(f"  device health {d.fingerprint} {','.join(d.devices)} ({tag})")
    for fp in s.false_positive_fingerprints:
        lines.append(f"  false positive {fp}")

    def pct(x: float | None) -> str:
        return f"{x:.2f}" if x is not None else "n/a"

    lines.append(
        f"  TP {s.true_positives}  missed {s.missed}  FP {s.false_positives}  "
        f"precision {pct(s.precision)}  recall {pct(s.recall)}  "
        f"(messages {s.alert_messages}, cancels {s.cancels}, late revisions {s.late_revisions})"
    )
    return "\n".join(lines)
