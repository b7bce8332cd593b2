"""Alert engine: detections in, CAP-ready alert messages out (Alert, Update, Cancel).

Transport-free: the Faust agent and the embedded runner call ``AlertEngine.process`` with the
state of one fingerprint (hazard, area, source) and keep the returned state (a changelogged Faust
table, or a dict). A fingerprint's level is the highest level among its open detections: a new
fingerprint sends an Alert, a level change an Update, the last clear a Cancel, and each later
message references every earlier identifier of the incident.

Seismic detections are station triggers: an earthquake alert needs ``min_stations`` distinct
stations triggered within ``window_s`` (network coincidence).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from schemas.alert import Alert, AlertArea, AlertStatus, MsgType
from schemas.common import WarningLevel
from schemas.detection import Detection, DetectionState
from schemas.registry import RegistryLike

State = dict[str, Any]
BEIJING = timezone(timedelta(hours=8))

# detection kind -> incident group (the "source" part of the fingerprint)
_GROUPS = {"rainfall": "rainstorm", "water_level": "flood", "fire": "forest_fire", "p_trigger": "earthquake"}

_EVENTS = {
    "rainstorm": ("暴雨", "Met"),
    "flood": ("洪水", "Met"),
    "forest_fire": ("森林火灾", "Fire"),
    "earthquake": ("地震", "Geo"),
    "gas_leak": ("危险化学品泄漏", "CBRNE"),
}

_INSTRUCTIONS = {
    "rainstorm": "请远离河道、低洼地带和山洪易发区，避免涉水通行，听从当地政府转移安排。",
    "flood": "沿河群众请立即向高处转移，远离堤防和桥梁，听从防汛指挥部统一指挥。",
    "forest_fire": "请立即远离火场，严禁进入林区，配合扑火队伍疏散，发现火情拨打12119。",
    "earthquake": "请立即就近躲避，远离窗户和悬挂物，震后有序撤离到开阔地带。",
    "gas_leak": "请立即向上风向撤离，关闭门窗，用湿毛巾捂住口鼻，等待应急部门通知。",
}


def incident_group(kind: str) -> str:
    if kind in _GROUPS:
        return _GROUPS[kind]
    if kind.startswith("gas_") or kind.startswith("o2_"):
        return "gas_leak"
    return kind


def fingerprint_of(d: Detection, default_area: str) -> str:
    return f"{d.family.value}:{d.area_code or default_area}:{incident_group(d.kind)}"


@dataclass(frozen=True)
class AlertConfig:
    default_area_code: str = "110105"
    status: AlertStatus = AlertStatus.ACTUAL
    sender: str = "tocsin@district.example"
    org_code: str = "TOCSIN"
    seismic_min_stations: int = 3
    seismic_window_s: float = 30.0


def seismic_level(intensity: float) -> WarningLevel:
    """Expected intensity (GB/T 17742) -> warning level: VIII+ red, VII orange, VI yellow, else blue."""
    if intensity >= 8.0:
        return WarningLevel.RED
    if intensity >= 7.0:
        return WarningLevel.ORANGE
    if intensity >= 6.0:
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
        self.registry = registry
        self.clock = clock

    def fingerprint(self, d: Detection) -> str:
        return fingerprint_of(d, self.config.default_area_code)

    def process(self, d: Detection, state: State | None) -> tuple[State, list[Alert]]:
        st: State = dict(state) if state else {"active": False, "revision": -1, "ids": [], "sources": {}}
        st["sources"] = dict(st["sources"])
        if d.kind == "p_trigger":
            return st, self._seismic(d, st)
        if d.level is None and d.state is not DetectionState.CLEAR:
            return st, []  # offline, anomaly, sensor faults: operator information, not public warnings
        key = f"{d.device_id}:{d.kind}"
        if d.state is DetectionState.CLEAR:
            st["sources"].pop(key, None)
        elif d.level is not None:
            st["sources"][key] = {"level": d.level.value, "value": d.value, "unit": d.unit, "det": d.id, "site": d.site}
        return st, self._emit(d, st)

    # ------------------------------------------------------------------ lifecycle
    def _emit(self, d: Detection, st: State) -> list[Alert]:
        sources = st["sources"]
        level = max((WarningLevel(s["level"]) for s in sources.values()), key=lambda lv: lv.rank, default=None)
        if level is None:
            if not st["active"]:
                return []
            st["active"] = False
            return [self._message(d, st, MsgType.CANCEL, WarningLevel(st["level"]))]
        if not st["active"]:
            st["active"] = True
            st["onset"] = d.onset.timestamp()
            st["ids"] = []
            st["level"] = level.value
            return [self._message(d, st, MsgType.ALERT, level)]
        if level.value != st["level"]:
            st["prev_level"], st["level"] = st["level"], level.value
            return [self._message(d, st, MsgType.UPDATE, level)]
        return []

    def _message(self, d: Detection, st: State, msg_type: MsgType, level: WarningLevel) -> Alert:
        cfg = self.config
        group = incident_group(d.kind)
        area_code = d.area_code or cfg.default_area_code
        st["revision"] = st["revision"] + 1
        onset = datetime.fromtimestamp(st["onset"], BEIJING)
        identifier = f"{area_code}{cfg.org_code}{onset:%Y%m%d%H%M%S}-{d.family.value}-{group}-{st['revision']:03d}"
        references = list(st["ids"])
        st["ids"] = [*st["ids"], identifier]
        event, _category = _EVENTS.get(group, (group, "Other"))
        device = self.registry.get(d.device_id) if self.registry else None
        area = AlertArea(
            code=area_code,
            desc=(d.town + d.village) or (device.area.district if device else "") or area_code,
            town=d.town,
            village=d.village,
            circle=(d.lat, d.lon, 5.0) if d.lat is not None and d.lon is not None else None,
        )
        sources = st["sources"]
        devices = sorted({k.split(":")[0] for k in sources} | {d.device_id})
        sites = sorted({s.get("site", "") for s in sources.values()} - {""} | {d.site})
        if msg_type is MsgType.CANCEL:
            headline = f"{area.desc}{event}{level.zh}预警解除"
            description = f"{area.desc}{event}{level.zh}预警（{level.roman}级）解除，监测值已回落至阈值以下。"
        else:
            previous = WarningLevel(st.get("prev_level") or level.value)
            verb = "发布" if msg_type is MsgType.ALERT else ("升级为" if level.rank > previous.rank else "调整为")
            headline = f"{area.desc}{verb}{event}{level.zh}预警"
            description = self._describe(d, level, area.desc, event)
        return Alert(
            identifier=identifier,
            fingerprint=self.fingerprint(d),
            revision=st["revision"],
            msg_type=msg_type,
            status=cfg.status,
            sender=cfg.sender,
            hazard=d.family,
            event=event,
            level=level,
            sent=self.clock().astimezone(BEIJING),
            onset=onset,
            area=area,
            headline=headline,
            description=description,
            instruction="" if msg_type is MsgType.CANCEL else _INSTRUCTIONS.get(group, ""),
            references=references,
            detections=[d.id],
            devices=devices,
            sites=sites,
            value=d.value,
            unit=d.unit,
            correlation_id=d.correlation_id,
        )

    @staticmethod
    def _describe(d: Detection, level: WarningLevel, where: str, event: str) -> str:
        measured = f"{d.value:g}{d.unit}" if d.unit else f"{d.value:g}"
        window = f"{d.window_s / 3600:g}小时" if d.window_s else ""
        limit = f"（阈值{d.threshold:g}{d.unit}）" if d.threshold is not None else ""
        return (
            f"{where}监测站{d.device_id}{window}监测值{measured}{limit}，"
            f"达到{event}{level.zh}预警（{level.roman}级）标准。"
        )

    # ------------------------------------------------------------------ seismic
    def _seismic(self, d: Detection, st: State) -> list[Alert]:
        cfg = self.config
        trig = dict(st.get("triggers", {}))
        t = d.onset.timestamp()
        if d.state is DetectionState.CLEAR:
            if d.device_id in trig:
                trig[d.device_id] = {**trig[d.device_id], "cleared": True, "intensity": _intensity(d, trig)}
        else:
            trig[d.device_id] = {"t": t, "intensity": _intensity(d, trig), "cleared": False}
        newest = max((v["t"] for v in trig.values()), default=t)
        trig = {k: v for k, v in trig.items() if v["t"] >= newest - cfg.seismic_window_s or not v["cleared"]}
        st["triggers"] = trig
        window = [v for v in trig.values() if v["t"] >= newest - cfg.seismic_window_s]
        intensity = max((v["intensity"] for v in window), default=0.0)
        level = seismic_level(intensity)
        d2 = d.model_copy(update={"kind": "p_trigger", "value": intensity, "unit": "度", "threshold": None})
        if not st["active"]:
            if len(window) < cfg.seismic_min_stations:
                return []
            st["active"] = True
            st["onset"] = min(v["t"] for v in window)
            st["ids"] = []
            st["level"] = level.value
            st["sources"] = {k: {"level": level.value} for k in trig}
            return [self._message(d2, st, MsgType.ALERT, level)]
        st["sources"] = {k: {"level": level.value} for k in trig}
        if all(v["cleared"] for v in trig.values()):
            st["active"] = False
            st["triggers"] = {}
            st["sources"] = {}
            return [self._message(d2, st, MsgType.CANCEL, WarningLevel(st["level"]))]
        if level.rank > WarningLevel(st["level"]).rank:
            st["prev_level"], st["level"] = st["level"], level.value
            return [self._message(d2, st, MsgType.UPDATE, level)]
        return []


def _intensity(d: Detection, trig: dict[str, Any]) -> float:
    prev = trig.get(d.device_id, {}).get("intensity", 0.0)
    return max(prev, float(d.evidence.get("intensity", 0.0)))
