"""Alert engine: detections in, CAP-ready alert messages out (Alert, Update, Cancel).

Transport-free: the Faust agent and the embedded runner call ``AlertEngine.process`` with the
state of one fingerprint (hazard, area, source) and keep the returned state (a changelogged Faust
table, or a dict). A fingerprint's level is the highest level among its open detections: a new
fingerprint sends an Alert, a level change an Update, the last clear a Cancel, and each later
message references the incident's original Alert and the message it replaces (a bounded chain).

Seismic detections are station triggers: an earthquake alert needs ``min_stations`` distinct
stations triggered within ``window_s`` (network coincidence). Its magnitude is the median Pd
magnitude over P-wave-only windows (``tocsin.alerts.kernels.quake.magnitude_estimate``: a near station's Pd
window is cut before its S wave, or the station left out; never an S-inflated first magnitude).

Earthquake update policy (:meth:`AlertEngine._seismic_update_level`): escalation is sent at once; a
lower level only once the magnitude rests on ``seismic_deescalate_stations`` (3) stations' Pd and the
intensity is ``seismic_deescalate_margin`` (0.2) below the current level's lower bound, as an Update
with the lower level; an Update is also sent when the magnitude moves by 0.3 (level held or not).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from tocsin.alerts import cap_id
from tocsin.alerts.kernels import fire as fk
from tocsin.alerts.kernels import quake as qk
from tocsin.schemas import geo
from tocsin.schemas.alert import MAX_AREA_POLYGONS, MAX_AREA_VERTICES, Alert, AlertArea, AlertStatus, MsgType
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.confirm import ConfirmRules
from tocsin.schemas.detection import Detection, DetectionKind, DetectionState, is_gas_kind
from tocsin.schemas.registry import RegistryLike

State = dict[str, Any]
BEIJING = timezone(timedelta(hours=8))

# detection kind -> incident group (the "source" part of the fingerprint)
_GROUPS: dict[str, str] = {
    DetectionKind.RAINFALL: "rainstorm",
    DetectionKind.WATER_LEVEL: "flood",
    DetectionKind.FIRE: "forest_fire",
    DetectionKind.P_TRIGGER: "earthquake",
}

# kinds that alert without a warning level
_LEVELLESS_ALERTS = (DetectionKind.P_TRIGGER, DetectionKind.OFFLINE)

_EVENTS = {
    "rainstorm": ("暴雨", "Met"),
    "flood": ("洪水", "Met"),
    "forest_fire": ("森林火灾", "Fire"),
    "earthquake": ("地震", "Geo"),
    "gas_leak": ("危险化学品泄漏", "CBRNE"),
    "offline": ("监测设备离线", "Infra"),
}

_INSTRUCTIONS = {
    "rainstorm": "请远离河道、低洼地带和山洪易发区，避免涉水通行，听从当地政府转移安排。",
    "flood": "沿河群众请立即向高处转移，远离堤防和桥梁，听从防汛指挥部统一指挥。",
    "forest_fire": "请立即远离火场，严禁进入林区，配合扑火队伍疏散，发现火情拨打12119。",
    "earthquake": "请立即就近躲避，远离窗户和悬挂物，震后有序撤离到开阔地带。",
    "gas_leak": "请立即向上风向撤离，关闭门窗，用湿毛巾捂住口鼻，等待应急部门通知。",
    "offline": "请运维人员检查设备供电、通信链路和现场网关；离线期间该区域监测存在盲区。",
}


# The generic anomaly detector's detections (detectors/engine.py ``anomaly_<channel>``): an incident
# per channel and area; operators and agencies only unless the rules promote the channel.
ANOMALY_EVENT = "监测数据异常"
ANOMALY_INSTRUCTION = "请值班人员核查该监测点数据和现场情况；此为数据异常提示，不是灾害预警。"
ANOMALY_HEADLINE = "监测数据异常（值班提示）"  # operators only: not called a warning (预警)
# promoted by the rules (``promote_to``): a public warning whose cause is not yet known
ANOMALY_PUBLIC_INSTRUCTION = "监测数据出现异常，请留意后续通知，听从现场工作人员和当地政府安排。"


def is_anomaly(kind: str) -> bool:
    return kind.startswith("anomaly_")


def event_of(group: str) -> tuple[str, str]:
    """``(event name, CAP category)`` of an incident group."""
    if is_anomaly(group):
        return ANOMALY_EVENT, "Other"
    return _EVENTS.get(group, (group, "Other"))


def _anomaly_instruction(st: dict[str, Any]) -> str:
    return ANOMALY_PUBLIC_INSTRUCTION if st.get("public") else ANOMALY_INSTRUCTION


def incident_group(kind: str) -> str:
    if kind in _GROUPS:
        return _GROUPS[kind]
    if is_gas_kind(kind):
        return "gas_leak"
    return kind


def fingerprint_of(d: Detection, default_area: str) -> str:
    return f"{d.family.value}:{d.area_code or default_area}:{incident_group(d.kind)}"


@dataclass(frozen=True)
class AlertConfig:
    default_area_code: str = "110105"
    status: AlertStatus = AlertStatus.ACTUAL
    # The issuing unit's 14-digit code (GB/T 35965.1-2018 Appendix A): CAP sender and identifier prefix.
    sender: str = "11010500000000"
    seismic_min_stations: float = 3.0  # summed station weight (each station 1.0 unless weighted)
    seismic_window_s: float = 30.0
    seismic_weights: dict[str, float] = field(default_factory=dict)  # station id -> vote
    # an active quake alert goes down a level only when its magnitude rests on this many stations' Pd ...
    seismic_deescalate_stations: int = 3
    seismic_deescalate_margin: float = 0.2  # ... and the intensity is this far below the current level
    # an earthquake goes to the public (SMS, broadcast) only when the governing intensity (observed, or
    # predicted at the registry's targets and areas) reaches this; below it, agencies and operators only
    seismic_public_min_intensity: float = 4.5
    # location from not-yet-arrived data (tocsin.alerts.kernels.quake.locate ``quiet``): live registry stations
    # of the area that have not triggered count as not reached by P up to the newest data time minus the
    # tolerance, at most ``seismic_quiet_window_s`` past the newest pick; None: picks only
    seismic_quiet_tolerance_s: float | None = qk.QUIET_TOLERANCE_S
    seismic_quiet_window_s: float = 3.0
    seismic_max_offline: int = 4096  # offline seismic stations remembered per area; beyond: no quiet stations
    vp_km_s: float = 6.0
    vs_km_s: float = 3.5
    depth_km: float = 10.0
    max_detection_age_s: float = 0.0  # detections older than this (device time) never alert; 0: off
    cool_down_s: float = 0.0  # quiet time after the last clear before the all-clear (0: at once)
    # Flapping (alert storms): a toggle is a reversal of the public level's direction (the Alert, the
    # first fall after a rise, the first rise after a fall); more than ``flap_toggles`` of them within
    # ``flap_window_s`` is flapping: one message says the situation is unstable, at the highest level
    # seen, then only escalations go out until the condition has not changed for ``flap_settle_s``.
    flap_toggles: int = 2
    flap_window_s: float = 3600.0
    flap_settle_s: float = 3600.0
    max_sources: int = 256  # detection sources (device x kind) held per incident; beyond: lowest evicted
    max_seen: int = 1024  # sources whose newest (time, revision) is remembered (reordered lanes); oldest evicted
    reminder_s: float = 0.0  # re-send an active alert this often (0: never)
    # incident -> (k sensors, or one sensor sustained this many seconds) before an alert; absent: at once
    confirm: dict[str, tuple[int, float]] = field(default_factory=dict)
    fire_k_cameras: int = 2
    fire_bearing_sigma_deg: float = 1.0
    fire_max_range_km: float = 30.0  # bearings crossing farther from a tower do not locate a fire
    fire_persist_sweeps: int = 1  # distinct sweeps of one camera seeing the fire before an unlocated alert


def confirm_settings(rules: ConfirmRules, env_confirm: Mapping[str, tuple[int, float]] | None = None) -> dict[str, Any]:
    """AlertConfig fields from the rules file's ``confirm:`` section; ``TOCSIN_ALERT_CONFIRM``
    (``env_confirm``) overrides it per incident."""
    confirm = {name: (r.k, r.sustain_s) for name, r in rules.incidents.items()}
    confirm |= {name: (int(k), float(s)) for name, (k, s) in (env_confirm or {}).items()}
    return {
        "confirm": confirm,
        "fire_persist_sweeps": rules.fire.persist_sweeps,
        "fire_k_cameras": rules.fire.k_cameras,
        "fire_max_range_km": rules.fire.max_range_km,
        "fire_bearing_sigma_deg": rules.fire.bearing_sigma_deg,
        "seismic_min_stations": rules.seismic.min_stations,
        "seismic_window_s": rules.seismic.window_s,
        "seismic_weights": dict(rules.seismic.weights),
        "seismic_public_min_intensity": rules.seismic.public_min_intensity,
        "seismic_quiet_tolerance_s": rules.seismic.quiet_tolerance_s,
        "seismic_quiet_window_s": rules.seismic.quiet_window_s,
    }


# GB/T 17742-2020: the intensity degree is the instrumental intensity rounded to an integer, so
# degree VI covers 5.5 <= I < 6.5, VII 6.5 <= I < 7.5, VIII and above 7.5 <= I.
SEISMIC_YELLOW_FROM = 5.5  # VI
SEISMIC_ORANGE_FROM = 6.5  # VII
SEISMIC_RED_FROM = 7.5  # VIII and above


def _fire_sweeps(d: Detection, prev: Mapping[str, Any]) -> int:
    """Distinct camera sweeps that have seen the fire: the detector counts them (``sweeps``
    evidence, one per revolution however many frames saw it); a detection without that count
    (an older detector) counts as one more sweep."""
    sweeps = d.evidence.get("sweeps")
    if isinstance(sweeps, int) and not isinstance(sweeps, bool):
        return max(sweeps, int(prev.get("sweeps", 0)))
    return int(prev.get("sweeps", 0)) + 1


def seismic_level(intensity: float) -> WarningLevel:
    """Expected intensity (GB/T 17742-2020) -> warning level: degree VIII and above red, VII orange,
    VI yellow, below VI blue. The degree is the instrumental intensity rounded (VII is
    6.5 <= I < 7.5), so the level changes at 5.5, 6.5 and 7.5, not at the integers."""
    if intensity >= SEISMIC_RED_FROM:
        return WarningLevel.RED
    if intensity >= SEISMIC_ORANGE_FROM:
        return WarningLevel.ORANGE
    if intensity >= SEISMIC_YELLOW_FROM:
        return WarningLevel.YELLOW
    return WarningLevel.BLUE


class AlertEngine:
    def __init__(
        self,
        config: AlertConfig | None = None,
        registry: RegistryLike | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config or AlertConfig()
        self.stale = 0  # detections too old to alert on
        self.superseded = 0  # detections older than one already applied for their source
        self.capped: dict[str, int] = {}  # state caps that evicted or refused, by reason (metric)
        self.registry = registry
        self.clock = clock
        cap_id.check_unit_code(self.config.sender)
        # identifiers' sequence digits (one per message a second), one sequencer per issuing lane: the
        # partition of ``detections`` being handled (set by AlertStage; 0 for a single process)
        self.issuer_lane = 0
        self._sequencers: dict[int, cap_id.Sequencer] = {}
        self._stations_of: tuple[Any, dict[str, list[tuple[str, float, float]]]] | None = None

    def fingerprint(self, d: Detection) -> str:
        """The lifecycle state's key. Its part before the last ``:`` is the ``detections`` key
        (``<family>:<area>``), so lifecycle ticks reach the partition that owns the state."""
        if d.kind == DetectionKind.OFFLINE:
            token = self._offline_group(d)[0]
            return f"{d.family.value}:{d.area_code or self.config.default_area_code}:offline.{token}"
        return fingerprint_of(d, self.config.default_area_code)

    def message_fingerprint(self, d: Detection) -> str:
        """The ``fingerprint`` of the alert messages: the state key, except for equipment (offline)
        alerts, ``<family>:<area>:<gateway-or-site>:offline``: routing keeps anything ending in
        ``:offline`` away from the public (alerts/routing.py)."""
        if d.kind == DetectionKind.OFFLINE:
            token = self._offline_group(d)[0]
            return f"{d.family.value}:{d.area_code or self.config.default_area_code}:{token}:offline"
        return self.fingerprint(d)

    def _offline_group(self, d: Detection) -> tuple[str, str, int]:
        """The outage group of an offline device: ``(fingerprint token, name, devices in the group)``.

        A device behind a field gateway (registry ``gateway``) belongs to that gateway's group, any
        other to its site's: when a gateway or a site loses power or backhaul, its devices make one
        operators' alert, not one per device. Groups stay within a family and an area (the
        ``detections`` partition key, so one worker owns each group's state); the group size counts
        the registry's devices of that family and area (0 when the device is not registered).
        """
        area = d.area_code or self.config.default_area_code
        device = self.registry.get(d.device_id) if self.registry is not None else None
        if device is not None and device.gateway:
            kind, name = "gateway", device.gateway
        else:
            kind, name = "site", d.site
        size = 0
        if self.registry is not None:
            for x in self.registry.devices:
                if x.family is not d.family or x.area.code != area:
                    continue
                size += (x.gateway == name) if kind == "gateway" else (not x.gateway and x.site == name)
        return f"{kind}-{name}".replace(":", "_"), name, size

    def process(self, d: Detection, state: State | None, health: State | None = None) -> tuple[State, list[Alert]]:
        """One detection against its fingerprint's state. ``health``: for a seismic trigger, the state
        under :meth:`station_health_key` (which stations of the area are offline)."""
        st, out = self._process(d, state, health)
        _bound_chain(st)
        return st, out

    # ------------------------------------------------------------------ seismic station health
    def station_health_key(self, d: Detection) -> str | None:
        """Where the offline seismic stations of the detection's area are kept (same ``detections``
        key, ``seismic:<area>``, so same partition as the area's earthquake), or None for detections
        of other families."""
        if d.family is not Family.SEISMIC:
            return None
        return f"{d.family.value}:{d.area_code or self.config.default_area_code}:station-health"

    def station_health(self, d: Detection, health: State | None) -> State | None:
        """The station health after ``d``: a seismic station's deadman ``offline`` detection adds it to
        the area's offline stations (cleared: removes it); anything else leaves it as it is (None
        returned: unchanged). Bounded by ``seismic_max_offline``: beyond it the area is marked
        ``overflow`` (counted) and no station of it counts as quiet until the set shrinks."""
        if d.kind != DetectionKind.OFFLINE or d.family is not Family.SEISMIC:
            return None
        offline = dict((health or {}).get("offline", {}))
        if d.state is DetectionState.CLEAR:
            if d.device_id not in offline:
                return None
            del offline[d.device_id]
        elif d.device_id in offline:
            return None
        else:
            offline[d.device_id] = d.ts.timestamp()
        overflow = len(offline) > self.config.seismic_max_offline
        if overflow:
            self._count_cap("seismic_offline_overflow")
            oldest = sorted(offline, key=lambda k: (offline[k], k))
            for k in oldest[: len(offline) - self.config.seismic_max_offline]:
                del offline[k]
        was = bool((health or {}).get("overflow"))
        return {"offline": offline, "overflow": overflow or (was and len(offline) >= self.config.seismic_max_offline)}

    def _seismic_stations(self, area: str) -> list[tuple[str, float, float]]:
        """The registry's seismic stations of an area, ``(id, lat, lon)``, made once per registry load."""
        if self.registry is None:
            return []
        devices = self.registry.devices
        if self._stations_of is None or self._stations_of[0] is not devices:
            by_area: dict[str, list[tuple[str, float, float]]] = {}
            for dev in devices:
                if dev.family is Family.SEISMIC:
                    by_area.setdefault(dev.area.code, []).append((dev.device_id, dev.lat, dev.lon))
            self._stations_of = (devices, by_area)
        return self._stations_of[1].get(area, [])

    def _quiet(self, d: Detection, trig: Mapping[str, Any], health: State | None) -> list[qk.QuietStation]:
        """Live stations of the area that have not triggered: the registry's seismic stations of the
        detection's area, minus every station holding a trigger in the state (in the cluster or not),
        minus the stations the deadman has reported offline. None at all when the offline set overflowed."""
        if self.config.seismic_quiet_tolerance_s is None or (health or {}).get("overflow"):
            return []
        offline = (health or {}).get("offline", {})
        area = d.area_code or self.config.default_area_code
        return [
            qk.QuietStation(sid, lat, lon)
            for sid, lat, lon in self._seismic_stations(area)
            if sid not in trig and sid not in offline
        ]

    def _process(self, d: Detection, state: State | None, health: State | None = None) -> tuple[State, list[Alert]]:
        st: State = dict(state) if state else {"active": False, "revision": -1, "ids": [], "sources": {}}
        st["sources"] = dict(st["sources"])
        max_age = self.config.max_detection_age_s
        if max_age and (self.clock() - d.ts).total_seconds() > max_age:
            # History (a new consumer group reading from the start, a long outage being caught up):
            # never warn the public about it. Its state is not taken in either.
            self.stale += 1
            return st, []
        # The detections of one source reach this state through two Kafka topics (``detections`` and
        # ``detections.urgent``, detectors/engine.py ``detection_topic``), so a source's older
        # detection can arrive after a newer one. It is skipped: the state already holds that source's
        # later word (a late clear must not end an alert a newer red detection reopened).
        source = f"{d.device_id}:{d.kind}"
        stamp = [d.ts.timestamp(), d.revision]
        last = st.get("seen", {}).get(source)
        if last is not None and stamp < last:
            self.superseded += 1
            return st, []
        anomaly = is_anomaly(d.kind)
        if d.level is None and d.state is not DetectionState.CLEAR and d.kind not in _LEVELLESS_ALERTS:
            if not anomaly:
                return st, []  # sensor faults: operator information on Kafka, not warnings
            # An anomaly the rules do not promote: a blue alert for operators and agencies only.
            d = d.model_copy(update={"level": WarningLevel.BLUE, "evidence": {**d.evidence, "promoted": False}})
        st["seen"] = {**st.get("seen", {}), source: stamp}
        if len(st["seen"]) > self.config.max_seen:
            self._evict_seen(st)
        if d.kind == DetectionKind.P_TRIGGER:
            return st, self._seismic(d, st, health)
        if d.kind == DetectionKind.OFFLINE:
            # Inhibition: the offline devices of one gateway (or site) are one operators' alert (blue),
            # not one per device; routing never sends it to the public.
            d = d.model_copy(update={"level": WarningLevel.BLUE if d.state is not DetectionState.CLEAR else None})
        key = source
        if d.state is DetectionState.CLEAR:
            st["sources"].pop(key, None)
        elif d.level is not None:
            if key not in st["sources"] and len(st["sources"]) >= self.config.max_sources:
                if not self._make_room(st, d.level):
                    return st, []
            prev = st["sources"].get(key, {})
            since = prev.get("since", d.onset.timestamp())
            st["sources"][key] = {
                "level": d.level.value,
                "value": d.value,
                "unit": d.unit,
                "det": d.id,
                "site": d.site,
                "since": since,
            }
            if anomaly:  # promoted (a level from the rules' promote_to) or operators only
                st["sources"][key]["public"] = bool(d.evidence.get("promoted", True))
            if d.kind == DetectionKind.FIRE:
                st["sources"][key]["sweeps"] = _fire_sweeps(d, prev)
            if d.kind == DetectionKind.FIRE and d.lat is not None and d.lon is not None and "bearing_deg" in d.evidence:
                st["sources"][key] |= {"lat": d.lat, "lon": d.lon, "bearing_deg": d.evidence["bearing_deg"]}
        if incident_group(d.kind) == "forest_fire":
            return st, self._fire(d, st)
        if d.kind == DetectionKind.OFFLINE:
            return st, self._offline(d, st)
        if anomaly:
            # Public once a promoted source is open; an incident that went public stays public to its
            # all-clear (the public heard the warning, so it hears the cancel).
            went = bool(st.get("public")) and st["active"]
            st["public"] = went or any(s.get("public", False) for s in st["sources"].values())
            if not st["public"]:
                return st, self._emit(d, st, headline=ANOMALY_HEADLINE)
        return st, self._emit(d, st)

    def _count_cap(self, reason: str) -> None:
        self.capped[reason] = self.capped.get(reason, 0) + 1

    def _evict_seen(self, st: State) -> None:
        """Forget the oldest remembered source stamps beyond ``max_seen`` (sources without an open
        detection first): a very late detection of a forgotten source is then applied, not skipped."""
        held = st["sources"]
        order = sorted(st["seen"], key=lambda k: (k in held, st["seen"][k]))
        for k in order[: len(st["seen"]) - self.config.max_seen]:
            del st["seen"][k]
            self._count_cap("alert_seen_evicted")

    def _make_room(self, st: State, level: WarningLevel) -> bool:
        """A full incident (``max_sources``) takes a new source by evicting its lowest-level source
        (oldest first) when that is not above the new one's level, so the incident's level never
        drops; otherwise the new source is refused. Either is counted."""
        sources = st["sources"]
        victim = min(sources, key=lambda k: (WarningLevel(sources[k]["level"]).rank, sources[k].get("since", 0.0)))
        if WarningLevel(sources[victim]["level"]).rank > level.rank:
            self._count_cap("alert_source_refused")
            return False
        del sources[victim]
        self._count_cap("alert_source_evicted")
        return True

    def _offline(self, d: Detection, st: State) -> list[Alert]:
        """One alert per gateway or site: 'X offline (n/m devices)', updated whenever n changes,
        cancelled when the last device is back."""
        token, name, size = self._offline_group(d)
        n = len(st["sources"])
        what = "网关" if token.startswith("gateway-") else "站点"
        count = f"{n}/{size}台" if size >= n else f"{n}台"
        offline = sorted(k.rsplit(":", 1)[0] for k in st["sources"])
        headline = f"{what}{name}监测设备离线（{count}）"
        text = f"{what}{name}下{count}监测设备停止上报：{'、'.join(offline)[:1000]}。可能为网关或站点供电、通信中断。"
        out = self._emit(d, st, description=text, headline=headline)
        if not out and st["active"] and n and n != st.get("offline_n"):
            out = [self._message(d, st, MsgType.UPDATE, WarningLevel(st["level"]), description=text, headline=headline)]
        st["offline_n"] = n if st["active"] else 0
        return out

    def _fire(self, d: Detection, st: State) -> list[Alert]:
        """One camera persisting gives an unlocated fire (certainty Likely); two or more cameras whose
        bearings intersect within range give a located fire (Observed) with its uncertainty."""
        towers = [
            (s["lat"], s["lon"], s["bearing_deg"], self.config.fire_bearing_sigma_deg)
            for s in st["sources"].values()
            if "bearing_deg" in s
        ]
        cfg = self.config
        fix = (
            fk.intersect_bearings(towers, max_range_km=cfg.fire_max_range_km)
            if len(towers) >= cfg.fire_k_cameras
            else None
        )
        if fix is None:
            persisted = max((s.get("sweeps", 1) for s in st["sources"].values()), default=0)
            if not st["active"] and st["sources"] and persisted < cfg.fire_persist_sweeps:
                return []  # one camera, not yet seen in enough sweeps
            return self._emit(d, st, certainty="Likely")
        text = (
            f"{len(towers)}座瞭望塔交叉定位：火点约北纬{fix.lat:.4f}度、东经{fix.lon:.4f}度"
            f"（误差约{fix.uncertainty_km * 1000:.0f}米）。"
        )
        circle = (round(fix.lat, 5), round(fix.lon, 5), round(max(fix.uncertainty_km, 0.1), 3))
        newly_located = not st.get("located")
        st["located"] = True
        out = self._emit(d, st, description=text, circle=circle, certainty="Observed")
        if not out and newly_located and st["active"]:
            out = [self._message(d, st, MsgType.UPDATE, WarningLevel(st["level"]), description=text, circle=circle)]
        return out

    # ------------------------------------------------------------------ lifecycle
    def _emit(self, d: Detection, st: State, **details: Any) -> list[Alert]:
        sources = st["sources"]
        st["last_det"] = d.model_dump(mode="json")
        level = max((WarningLevel(s["level"]) for s in sources.values()), key=lambda lv: lv.rank, default=None)
        now = d.ts.timestamp()
        if st["active"] and (level.value if level else None) != st.get("current", st["level"]):
            self._changed(st, now, level)
        if level is None:
            if not st["active"]:
                return []
            st.setdefault("clear_since", now)
            if st.get("flapping"):
                return []  # the all-clear of a flapping alert waits until it settles (tick)
            if self.config.cool_down_s > 0:  # cool-down: the all-clear waits for quiet (tick)
                return []
            if self._toggle(st, now, -1):  # this fall makes it flapping: the warning stays, marked unstable
                return [self._unstable(d, st, MsgType.UPDATE, WarningLevel(st["level"]), details)]
            return self._cancel(d, st)
        st.pop("clear_since", None)
        if not st["active"] and not self._confirmed(d, st, now):
            st["pending"] = True  # hold-down: waits for more sensors or for the condition to last
            return []
        if not st["active"]:
            st.pop("pending", None)
            st["active"] = True
            st["onset"] = d.onset.timestamp()
            st["ids"] = []
            st["level"] = level.value
            self._changed(st, now, level)
            if self._toggle(st, now, 1) or st.get("flapping"):
                return [self._unstable(d, st, MsgType.ALERT, level, details)]
            return [self._message(d, st, MsgType.ALERT, level, **details)]
        announced = WarningLevel(st["level"])
        if level is announced:
            return []
        if st.get("flapping"):
            if level.rank <= announced.rank:
                return []  # flapping: nothing for the public until it settles ...
            st["prev_level"], st["level"] = st["level"], level.value  # ... or escalates: at once
            return [self._unstable(d, st, MsgType.UPDATE, level, details)]
        if self._toggle(st, now, 1 if level.rank > announced.rank else -1):
            return [self._unstable(d, st, MsgType.UPDATE, level, details)]
        st["prev_level"], st["level"] = st["level"], level.value
        return [self._message(d, st, MsgType.UPDATE, level, **details)]

    def _confirmed(self, d: Detection, st: State, now_s: float) -> bool:
        """k of n: ``k`` sensors of the area agree, or one has held the condition ``sustain_s``."""
        rule = self.config.confirm.get(incident_group(d.kind))
        if rule is None:
            return True
        k, sustain_s = rule
        sources = st["sources"].values()
        devices = {key for key in st["sources"]}
        return len(devices) >= k or any(now_s - s.get("since", now_s) >= sustain_s for s in sources)

    # ------------------------------------------------------------------ timers: cool-down, flapping, reminders
    def _changed(self, st: State, t: float, level: WarningLevel | None) -> None:
        """The condition's level changed (whether or not the public hears of it): when, to what, and the
        highest level seen within the flapping window."""
        st["current"] = level.value if level else None
        st["changed_at"] = t
        rank = level.rank if level else 0
        peak = st.get("peak")
        if peak is None or rank >= peak[1] or peak[0] <= t - self.config.flap_window_s:
            st["peak"] = [t, rank]

    def _toggle(self, st: State, t: float, direction: int) -> bool:
        """Count a public level change going ``direction`` (+1 up, -1 down). A reversal of direction
        (the Alert, a fall after a rise, a rise after a fall) is a toggle; more than ``flap_toggles``
        within ``flap_window_s`` is flapping. True when this change starts flapping."""
        if st.get("dir") == direction:
            return False
        st["dir"] = direction
        cfg = self.config
        st["toggles"] = ([x for x in st.get("toggles", []) if x > t - cfg.flap_window_s] + [t])[
            -(cfg.flap_toggles + 1) :
        ]
        if len(st["toggles"]) > cfg.flap_toggles and not st.get("flapping"):
            st["flapping"] = True
            return True
        return False

    def _unstable(
        self, d: Detection, st: State, msg_type: MsgType, level: WarningLevel, details: dict[str, Any]
    ) -> Alert:
        """The one message of a flapping alert (and of its escalations): at the highest level seen,
        saying the situation is unstable and that the warning stays until it settles."""
        peak = st.get("peak")
        if peak and peak[1] > level.rank:
            level = WarningLevel.from_rank(peak[1])
        if st["level"] != level.value:
            st["prev_level"], st["level"] = st["level"], level.value
        group = incident_group(d.kind)
        event = event_of(group)[0]
        where = d.town + d.village or d.area_code or self.config.default_area_code
        base = details.get("description") or self._describe(d, level, where, event)
        n = len(st.get("toggles", []))
        note = (
            f"监测值在1小时内{n}次反复升降，形势不稳定。{level.zh}预警（{level.roman}级）按已出现的最高级别保持，"
            "期间不再逐次通知，稳定后或级别升高时另行发布。"
        )
        return self._message(d, st, msg_type, level, **{**details, "description": f"{note}{base}"})

    def _cancel(self, d: Detection, st: State) -> list[Alert]:
        st["active"] = False
        st.pop("located", None)
        self._toggle(st, d.ts.timestamp(), -1)  # (counted already when the clear itself made no flapping)
        st.pop("clear_since", None)
        msg = self._message(d, st, MsgType.CANCEL, WarningLevel(st["level"]))
        st["flapping"] = False
        return [msg]

    def needs_tick(self, state: State | None) -> bool:
        """Whether :meth:`tick` can do anything for this state: a pending alert waiting for its
        sustain time, a held all-clear (cool-down, flapping window), or reminders configured. The
        workers' lifecycle clock ticks only these, so a thousand quiet open alerts cost nothing."""
        if not state or "last_det" not in state or "triggers" in state:
            return False
        if not (state.get("active") or state.get("pending")):
            return False
        waiting = bool(state.get("pending")) and not state.get("active")
        return waiting or "clear_since" in state or bool(state.get("flapping")) or bool(self.config.reminder_s)

    def tick(self, state: State | None, now: datetime) -> tuple[State | None, list[Alert]]:
        """The clock for one fingerprint: send a held all-clear once the cool-down has passed quietly,
        settle a flapping alert once its condition has not changed for ``flap_settle_s`` (an Update at
        the current level, or the Cancel when clear), and remind while active."""
        st, out = self._tick(state, now)
        if st is not None:
            _bound_chain(st)
        return st, out

    def _tick(self, state: State | None, now: datetime) -> tuple[State | None, list[Alert]]:
        if state is None or not (state.get("active") or state.get("pending")):
            return state, []
        if "last_det" not in state or "triggers" in state:
            return state, []
        st: State = dict(state)
        d = Detection.model_validate(st["last_det"]).model_copy(update={"ts": now})
        now_s = now.timestamp()
        if st.get("pending") and not st["active"]:
            if not st["sources"]:
                st.pop("pending", None)
                return st, []
            return st, self._emit(d, st) if self._confirmed(d, st, now_s) else []
        if st.get("flapping") and now_s - st.get("changed_at", now_s) >= self.config.flap_settle_s:
            if "clear_since" in st:
                return st, self._cancel(d, st)
            st["flapping"] = False  # settled at a level: one Update says so, at that level
            level = WarningLevel(st.get("current") or st["level"])
            st["prev_level"], st["level"] = st["level"], level.value
            st["dir"] = 0
            return st, [self._message(d, st, MsgType.UPDATE, level)]
        if "clear_since" in st and not st.get("flapping") and now_s - st["clear_since"] >= self.config.cool_down_s:
            return st, self._cancel(d, st)
        reminder = self.config.reminder_s
        if reminder and "clear_since" not in st and now_s - st.get("last_sent", now_s) >= reminder:
            level = WarningLevel(st["level"])
            st["prev_level"] = st["level"]
            return st, [self._message(d, st, MsgType.UPDATE, level, reminder=True)]
        return st, []

    def _message(
        self,
        d: Detection,
        st: State,
        msg_type: MsgType,
        level: WarningLevel,
        *,
        description: str | None = None,
        circle: tuple[float, float, float] | None = None,
        certainty: str = "Observed",
        reminder: bool = False,
        headline: str | None = None,
    ) -> Alert:
        cfg = self.config
        group = incident_group(d.kind)
        area_code = d.area_code or cfg.default_area_code
        st["revision"] = st["revision"] + 1
        onset = datetime.fromtimestamp(st["onset"], BEIJING)
        fingerprint = self.message_fingerprint(d)
        # GB/T 35965.1-2018 Appendix A: unit code, the Beijing time the message is entered, sequence digit.
        lane = self.issuer_lane
        sequencer = self._sequencers.get(lane) or self._sequencers.setdefault(lane, cap_id.Sequencer())
        entered, seq = sequencer.next(self.clock())
        identifier = cap_id.identifier(cap_id.issuer_code(cfg.sender, lane), entered, seq)
        references = list(st["ids"])
        st["last_sent"] = self.clock().timestamp()
        st["ids"] = [*st["ids"], identifier]
        event, _category = event_of(group)
        device = self.registry.get(d.device_id) if self.registry else None
        sources = st["sources"]
        devices = sorted({k.split(":")[0] for k in sources} | {d.device_id})
        polygons = self._area_polygons(d, st, msg_type, devices)
        if circle is None and d.lat is not None and d.lon is not None:
            # Without boundaries, the area is a 5 km circle around the device. Boundaries replace it,
            # unless a device of the incident lies outside them (the area must still cover it).
            if not polygons or not self._all_inside(d, devices):
                circle = (d.lat, d.lon, 5.0)
        area = AlertArea(
            code=area_code,
            desc=(d.town + d.village) or (device.area.district if device else "") or area_code,
            town=d.town,
            village=d.village,
            circle=circle,
            polygons=polygons,
        )
        sites = sorted({s.get("site", "") for s in sources.values()} - {""} | {d.site})
        if msg_type is MsgType.CANCEL and is_anomaly(group) and not st.get("public"):
            headline = f"{area.desc}{ANOMALY_HEADLINE}解除"
            description = f"{area.desc}{event}提示解除，监测值已回到近期基线附近。"
        elif msg_type is MsgType.CANCEL:
            headline = f"{area.desc}{event}{level.zh}预警解除"
            description = f"{area.desc}{event}{level.zh}预警（{level.roman}级）解除，监测值已回落至阈值以下。"
        else:
            previous = WarningLevel(st.get("prev_level") or level.value)
            given_headline = headline
            verb = "发布" if msg_type is MsgType.ALERT else ("升级为" if level.rank > previous.rank else "调整为")
            headline = f"{area.desc}{verb}{event}{level.zh}预警"
            if reminder:
                headline = f"{area.desc}{event}{level.zh}预警持续中"
            elif given_headline:
                headline = f"{area.desc}{given_headline}"
            description = description or self._describe(d, level, area.desc, event)
        return Alert(
            identifier=identifier,
            fingerprint=fingerprint,
            revision=st["revision"],
            msg_type=msg_type,
            status=cfg.status,
            sender=cfg.sender,
            hazard=d.family,
            event=event,
            level=level,
            sent=entered.astimezone(BEIJING),
            onset=onset,
            area=area,
            headline=headline,
            description=description,
            instruction=""
            if msg_type is MsgType.CANCEL
            else _anomaly_instruction(st)
            if is_anomaly(group)
            else _INSTRUCTIONS.get(group, ""),
            certainty=certainty,
            references=references,
            detections=[d.id],
            devices=devices,
            sites=sites,
            value=d.value,
            unit=d.unit,
            correlation_id=d.correlation_id,
            flapping=bool(st.get("flapping")),
            public=bool(st.get("public", False)) if is_anomaly(group) else True,
        )

    @staticmethod
    def _describe(d: Detection, level: WarningLevel, where: str, event: str) -> str:
        measured = f"{d.value:g}{d.unit}" if d.unit else f"{d.value:g}"
        if is_anomaly(d.kind) and "score" in d.evidence:
            ev = d.evidence
            field = ev.get("field", d.kind.removeprefix("anomaly_"))
            return (
                f"{where}监测站{d.device_id}的{field}监测值{measured}明显偏离近期基线"
                f"{ev.get('baseline', 0):.4g}{d.unit}（波动{ev.get('baseline_sd', 0):.2g}{d.unit}，"
                f"异常分数{ev['score']:.3g}）。"
            )
        window = f"{d.window_s / 3600:g}小时" if d.window_s else ""
        limit = f"（阈值{d.threshold:g}{d.unit}）" if d.threshold is not None else ""
        return (
            f"{where}监测站{d.device_id}{window}监测值{measured}{limit}，"
            f"达到{event}{level.zh}预警（{level.roman}级）标准。"
        )

    # ------------------------------------------------------------------ seismic
    def _seismic(self, d: Detection, st: State, health: State | None = None) -> list[Alert]:
        """Network confirmation: station triggers consistent with one P wave (coincidence), then a
        located epicentre, a magnitude from Pd, and predicted intensity and S-wave warning time at
        the registry's targets. Issued as soon as confirmed; updated as more stations report, up at
        once and down under the guards of :meth:`_seismic_update_level`."""
        cfg = self.config
        trig = dict(st.get("triggers", {}))
        prev = trig.get(d.device_id, {})
        entry = {
            # a station's first P pick of an active event stays its pick (a re-trigger on the coda
            # must not move the epicentre); outside an event a new trigger is a new pick
            "t": prev["t"] if prev and (st["active"] or d.state is not DetectionState.OPEN) else d.onset.timestamp(),
            "lat": d.lat,
            "lon": d.lon,
            "intensity": _intensity(d, trig),
            "pd_cm": d.evidence.get("pd_cm", prev.get("pd_cm")),
            "pd_profile": d.evidence.get("pd_profile_cm", prev.get("pd_profile")),
            "pd_step_s": d.evidence.get("pd_step_s", prev.get("pd_step_s", 0.5)),
            "cleared": d.state is DetectionState.CLEAR,
        }
        trig[d.device_id] = entry
        newest = max(v["t"] for v in trig.values())
        trig = {k: v for k, v in trig.items() if v["t"] >= newest - 4 * cfg.seismic_window_s or not v["cleared"]}
        st["triggers"] = trig
        weight = cfg.seismic_weights
        picks = [
            qk.Pick(
                k,
                v["lat"],
                v["lon"],
                v["t"],
                weight=weight.get(k, 1.0),
                pd_cm=v["pd_cm"],
                pd_profile_cm=tuple(v["pd_profile"]) if v.get("pd_profile") else None,
                pd_step_s=float(v.get("pd_step_s", 0.5)),
            )
            for k, v in trig.items()
            if v["lat"] is not None
        ]
        co = qk.coincidence(picks, cfg.seismic_window_s, float(cfg.seismic_min_stations))
        recent = [k for k, v in trig.items() if v["t"] >= newest - cfg.seismic_window_s]
        # Stations without coordinates cannot be checked for travel-time consistency or located:
        # then a plain count within the window confirms, and the epicentre is left open.
        unlocated = sum(weight.get(k, 1.0) for k in recent) >= cfg.seismic_min_stations and any(
            trig[k]["lat"] is None for k in recent
        )
        confirmed = co.confirmed or unlocated
        if not st["active"] and not confirmed:
            return []
        if st["active"] and all(v["cleared"] for v in trig.values()):
            st["active"], st["triggers"], st["sources"] = False, {}, {}
            cancel = d.model_copy(update={"kind": DetectionKind.P_TRIGGER.value})
            msg = self._message(cancel, st, MsgType.CANCEL, WarningLevel(st["level"]))
            zone = st.pop("zone", None)
            return [_seismic_audience_and_area(msg, bool(st.pop("public", True)), _zone_of(zone))]
        if not confirmed:
            return []
        stations = list(co.station_ids) if co.confirmed else recent
        # Warning times count from the moment this message is issued (the engine's clock), not from the
        # triggering packet's device time: processing and queueing delay has already used up part of it.
        issued_s = self.clock().timestamp()
        q = self._quake(co, trig, issued_s, d, health) if co.confirmed else self._unlocated(stations, trig)
        if q["lat"] is not None:  # the latest epicentre, for operators and measurements
            st["epicentre"] = {k: q[k] for k in ("lat", "lon", "n_picks", "n_quiet", "late_s")}
        shaking = max(q["observed"], q["predicted_max"])
        level = seismic_level(shaking)
        d2 = d.model_copy(
            update={
                "kind": DetectionKind.P_TRIGGER.value,
                "value": q["magnitude"] if q["magnitude"] is not None else q["observed"],
                "unit": "M" if q["magnitude"] is not None else "度",
                "threshold": None,
            }
        )
        zone = q["zone"]
        circle = zone[0] if zone else (q["lat"], q["lon"], max(10.0, q["blind_km"])) if q["lat"] is not None else None
        # The public floor: once an incident has gone public, its updates and cancel stay public.
        public = bool(st.get("public")) or shaking >= cfg.seismic_public_min_intensity or bool(zone and zone[1])
        if not st["active"]:
            st["sources"] = {k: {"level": level.value, "site": ""} for k in stations}
            st.update(active=True, onset=q["origin_t"], ids=[], level=level.value, mag=q["magnitude"], n=len(stations))
            st["public"] = public
            if zone and zone[1]:
                st["zone"] = zone
            msg = self._message(d2, st, MsgType.ALERT, level, description=q["text"], circle=circle)
            return [_seismic_audience_and_area(msg, public, zone)]
        current = WarningLevel(st["level"])
        new = self._seismic_update_level(current, shaking, q["mag_stations"])
        changed = new is not current
        mag_moved = q["magnitude"] is not None and abs((st.get("mag") or 0.0) - q["magnitude"]) >= 0.3
        st["sources"] = {k: {"level": new.value, "site": ""} for k in stations}
        went_public = public and not st.get("public")
        if changed or mag_moved or went_public:
            if changed:
                st["prev_level"], st["level"] = st["level"], new.value
            st.update(mag=q["magnitude"], n=len(stations), public=public)
            if zone and zone[1]:
                st["zone"] = zone
            msg = self._message(d2, st, MsgType.UPDATE, new, description=q["text"], circle=circle)
            return [_seismic_audience_and_area(msg, public, zone, first_public=went_public)]
        return []

    def _area_polygons(self, d: Detection, st: State, msg_type: MsgType, devices: list[str]) -> list[geo.Ring]:
        """The boundary rings of the areas an incident has warned (earthquakes: none, their area is
        the shaking zone). Each device's area contributes its most specific registry boundary
        (village, else town, else district); the areas accumulate from the incident's Alert to its
        Cancel (``st["area_keys"]``), so an Update or the all-clear covers every area warned. More
        than :data:`MAX_AREA_POLYGONS` areas or :data:`MAX_AREA_VERTICES` vertices: no polygons (the
        district geocode and the device circle stand, counted as ``alert_area_polygons_capped``)."""
        if self.registry is None or d.kind == DetectionKind.P_TRIGGER:
            return []
        if msg_type is MsgType.ALERT:
            st.pop("area_keys", None)
            st.pop("area_overflow", None)
        keys = [tuple(k) for k in st.get("area_keys", [])]
        areas = [(d.area_code or self.config.default_area_code, d.town, d.village)]
        for dev_id in devices:
            dev = self.registry.get(dev_id)
            if dev is not None:
                areas.append((dev.area.code, dev.area.town, dev.area.village))
        for code, town, village in dict.fromkeys(areas):
            b = self.registry.boundary(code, town, village)
            if b is not None and b.key not in keys:
                keys.append(b.key)
        keys = keys[: MAX_AREA_POLYGONS + 1]  # the state stays bounded; one more marks the overflow
        st["area_keys"] = [list(k) for k in keys]
        rings = [r for r in (self.registry.polygon((k[0], k[1], k[2])) for k in keys) if r is not None]
        if len(keys) > MAX_AREA_POLYGONS or sum(len(r) for r in rings) > MAX_AREA_VERTICES:
            if not st.get("area_overflow"):
                self._count_cap("alert_area_polygons_capped")
            st["area_overflow"] = True
        return [] if st.get("area_overflow") else rings

    def _all_inside(self, d: Detection, devices: list[str]) -> bool:
        """Every device of the incident lies inside its own area's boundary (the registry caches
        the answer per device); a detection from a device the registry does not know, by its point."""
        reg = self.registry
        if reg is None:
            return False
        for dev_id in devices:
            if reg.get(dev_id) is not None:
                if not reg.within_boundary(dev_id):
                    return False
            elif dev_id != d.device_id:
                return False  # an unregistered device whose position is not known here
        if reg.get(d.device_id) is None:
            b = reg.boundary(d.area_code or self.config.default_area_code, d.town, d.village)
            if b is None or d.lat is None or d.lon is None or not geo.point_in_ring(d.lat, d.lon, b.polygon):
                return False
        return True

    def _seismic_update_level(self, current: WarningLevel, shaking: float, mag_stations: int) -> WarningLevel:
        """The level of an active earthquake alert after new station data (the update policy).

        ``shaking`` is the governing intensity: the larger of the observed intensity (running
        station peaks, which only grow) and the largest intensity predicted at the targets from the
        network magnitude. Escalation is immediate: ``seismic_level(shaking)`` above the current
        level. De-escalation (the magnitude refined downwards as farther stations report) only when
        both guards hold, so the alert does not flip-flop on one station's scatter:

        * the magnitude rests on at least ``seismic_deescalate_stations`` stations with a P-only Pd
          window (the median of three Pd magnitudes, each +-0.3 M, moves little with a fourth), and
        * the intensity is below the current level's lower bound by ``seismic_deescalate_margin``
          (hysteresis: an orange alert, VII from 6.5, goes down only below 6.3; the new level is
          ``seismic_level(shaking + margin)``), so a re-escalation needs a real rise.
        """
        cfg = self.config
        up = seismic_level(shaking)
        if up.rank > current.rank:
            return up
        if mag_stations < cfg.seismic_deescalate_stations:
            return current
        down = seismic_level(shaking + cfg.seismic_deescalate_margin)
        return down if down.rank < current.rank else current

    def _shaking_zone(self, lat: float, lon: float, magnitude: float | None) -> Zone | None:
        """Where shaking reaches the public floor: ``(circle, area codes, area names)``, or None.

        The predicted intensity depends on the hypocentral distance only, so the zone is the disc
        around the epicentre of radius :func:`tocsin.alerts.kernels.quake.shaking_radius_km`; the areas are
        the registry's targets (their ``area_code``, default the engine's area) and the device areas
        (GB/T 2260 code, district/town/village) whose location lies inside it, nearest first."""
        cfg = self.config
        if magnitude is None:
            return None
        radius = qk.shaking_radius_km(magnitude, cfg.seismic_public_min_intensity, cfg.depth_km)
        if radius is None:
            return None
        places: list[tuple[float, str, str]] = []
        if self.registry is not None:
            for t in self.registry.targets:
                km = qk.haversine_km(lat, lon, t.lat, t.lon)
                if km <= radius:
                    places.append((km, t.area_code or cfg.default_area_code, t.name))
            for dev in self.registry.devices:
                km = qk.haversine_km(lat, lon, dev.lat, dev.lon)
                if km <= radius:
                    places.append((km, dev.area.code, dev.area.desc))
        places.sort(key=lambda p: p[0])
        codes = list(dict.fromkeys(p[1] for p in places))
        names = list(dict.fromkeys(p[2] for p in places))
        return (round(lat, 4), round(lon, 4), round(radius, 3)), codes, names

    @staticmethod
    def _unlocated(stations: list[str], trig: dict[str, Any]) -> dict[str, Any]:
        observed = max(trig[k]["intensity"] for k in stations)
        return {
            "lat": None,
            "lon": None,
            "origin_t": min(trig[k]["t"] for k in stations),
            "magnitude": None,
            "mag_stations": 0,
            "observed": observed,
            "predicted_max": 0.0,
            "blind_km": 0.0,
            "zone": None,
            "text": f"地震预警：{len(stations)}个台站触发，震中待定，台站实测最大烈度{observed:.1f}度。",
        }

    def _quake(
        self, co: qk.Coincidence, trig: dict[str, Any], alert_t_s: float, d: Detection, health: State | None
    ) -> dict[str, Any]:
        cfg = self.config
        quiet = self._quiet(d, trig, health)
        newest = max(p.t_s for p in co.picks)
        # the event's newest data time: this detection's (a station's packet), at most the window past the
        # newest pick; the kernel takes the tolerance off it
        now_s = min(max(d.ts.timestamp(), newest), newest + cfg.seismic_quiet_window_s)
        loc = qk.locate(
            list(co.picks),
            vp_km_s=cfg.vp_km_s,
            depth_km=cfg.depth_km,
            quiet=quiet,
            now_s=now_s,
            quiet_tolerance_s=cfg.seismic_quiet_tolerance_s or 0.0,
        )
        est = qk.magnitude_estimate(list(co.picks), loc, vp_km_s=cfg.vp_km_s, vs_km_s=cfg.vs_km_s)
        mag = est.magnitude
        observed = max(trig[k]["intensity"] for k in co.station_ids)
        targets = list(self.registry.targets) if self.registry is not None else []
        lines, predicted = [], []
        for t in targets:
            hypo = loc.hypo_km(t.lat, t.lon)
            warn = qk.s_warning_time_s(loc, t.lat, t.lon, alert_t_s, vs_km_s=cfg.vs_km_s)
            intensity = qk.predicted_intensity(mag, hypo) if mag is not None else None
            if intensity is not None:
                predicted.append(intensity)
            shown = f"预估烈度{intensity:.1f}度，" if intensity is not None else ""
            when = f"横波约{warn:.0f}秒后到达" if warn > 0 else "已处于盲区"
            lines.append(f"{t.name}：{shown}{when}")
        m_text = f"M{mag:.1f}" if mag is not None else "震级待定"
        if mag is not None and mag >= qk.PD_SATURATION_MAGNITUDE:
            m_text += "（Pd震级在M6.5以上趋于饱和，实际震级可能更大）"
        text = (
            f"地震预警：{co.n}个台站触发，震中约北纬{loc.lat:.2f}度、东经{loc.lon:.2f}度，{m_text}，"
            f"台站实测最大烈度{observed:.1f}度。" + "；".join(lines)
        )
        return {
            "lat": round(loc.lat, 4),
            "lon": round(loc.lon, 4),
            "origin_t": loc.origin_t_s,
            "zone": self._shaking_zone(loc.lat, loc.lon, mag),
            "magnitude": round(mag, 1) if mag is not None else None,
            "mag_stations": est.n,
            "observed": observed,
            "predicted_max": max(predicted, default=0.0),
            "blind_km": qk.blind_zone_radius_km(loc, alert_t_s, vs_km_s=cfg.vs_km_s),
            "text": text[:4000],
            "n_picks": loc.n,
            "n_quiet": loc.n_quiet,
            "late_s": round(loc.late_s, 3),
        }


Zone = tuple[tuple[float, float, float], list[str], list[str]]


def _zone_of(saved: Any) -> Zone | None:
    """A shaking zone kept in the (JSON) state back as a tuple."""
    if not saved:
        return None
    circle, codes, names = saved
    return (float(circle[0]), float(circle[1]), float(circle[2])), list(codes), list(names)


def _seismic_audience_and_area(msg: Alert, public: bool, zone: Zone | None, *, first_public: bool = False) -> Alert:
    """An earthquake message with its audience (below the public floor: agencies and operators only)
    and, when shaking is predicted to reach the floor over registry areas, those areas: their names
    as the area description, their GB/T 2260 codes as geocodes, the zone as the circle.

    ``first_public``: an Update that takes an agencies-only incident public is the public's first
    message about it, so its headline says the warning is issued (发布), not raised or adjusted."""
    update: dict[str, Any] = {"public": public}
    if first_public:
        update["headline"] = f"{msg.area.desc}发布{msg.event}{msg.level.zh}预警"
    if zone and zone[1]:
        circle, codes, names = zone
        desc = "、".join(names)
        if len(desc) > 200:
            desc = desc[:199] + "等"
        update["area"] = msg.area.model_copy(
            update={"desc": desc or msg.area.desc, "geocodes": codes, "circle": circle}
        )
    return msg.model_copy(update=update)


def _intensity(d: Detection, trig: dict[str, Any]) -> float:
    prev = trig.get(d.device_id, {}).get("intensity", 0.0)
    return max(prev, float(d.evidence.get("intensity", 0.0)))


def _bound_chain(st: State) -> None:
    """An incident's message chain keeps the original Alert and the latest message: the next Update
    or Cancel references those two (CAP 1.2 ``references``: the earlier messages referenced, not
    necessarily all), so the state and the references stay bounded however long the incident."""
    ids = st.get("ids")
    if ids and len(ids) > 2:
        st["ids"] = [ids[0], ids[-1]]
