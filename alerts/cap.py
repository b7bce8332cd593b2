"""Render a Tocsin :class:`~tocsin.schemas.alert.Alert` as an OASIS CAP 1.2 message (XML, UTF-8).

Pure: standard library ``xml.etree.ElementTree`` only, no I/O. Elements come out in the order of
the official schema (CAP-v1.2.xsd), and the rules of the CAP 1.2 specification that the schema
does not check are enforced here (a ``ValueError`` names the offending field):

* ``identifier``, ``sender`` and referenced identifiers contain no whitespace, comma, ``<`` or ``&``;
* times are ``YYYY-MM-DDThh:mm:ss+08:00``: Beijing time, explicit offset, never ``Z``, no
  fractional seconds (the schema's dateTime pattern has none; they are truncated, not rounded,
  so ``sent`` is never later than the real send time);
* ``references`` is the space-separated list of ``sender,identifier,sent`` triples;
* ``polygon`` is a closed ring of at least four WGS 84 ``lat,lon`` pairs (closed here if the
  caller's first and last points differ); ``circle`` is ``lat,lon radius_km``; coordinates and
  radius are written with at most 6 decimals;
* the one ``<area>`` holds a ``<polygon>`` per boundary of ``alert.area.polygons`` (the registry
  boundaries of the areas warned: CAP reads several polygons and circles of an area as their
  union), then the circle, then the geocodes;
* ``urgency``/``certainty`` are CAP values (the model keeps them as free strings); a Cancel is
  ``Past``/``Observed`` with ``responseType`` ``AllClear`` and keeps the cancelled severity;
* ``web`` is an absolute URI.

Text (headline, description, ...) may hold any character: ``< & " '`` are escaped by the
serializer; characters XML 1.0 cannot carry at all (C0 controls other than tab/newline, lone
surrogates, U+FFFE/U+FFFF) are dropped and carriage returns become newlines (an XML parser would
turn them into newlines anyway), see :func:`clean_text`.

What the model does not carry:

* ``Alert.references`` holds identifiers only, CAP wants ``sender,identifier,sent``. The earlier
  messages are taken to come from the same ``sender``; their ``sent`` comes from
  ``reference_sent`` (identifier -> sent time, e.g. kept by the caller as messages go out),
  otherwise from the identifier itself (GB/T 35965.1-2018 Appendix A identifiers carry the second
  the message was entered, which is its ``sent``: alerts/cap_id.py), otherwise the alert's ``onset``.
* The fingerprint (stable across an incident's Alert, Updates and Cancel) goes to ``incidents``
  when it is a plain token (engine fingerprints always are) and to a ``fingerprint`` parameter.
  Other parameters: ``warningLevel`` (IV..I), ``warningColour`` (蓝色..红色), ``measuredValue`` and
  ``unit`` when the alert has a value, ``revision``. ``eventCode`` is ``TOCSIN`` = ``<hazard>.<level>``,
  ``geocode`` is ``GB/T 2260`` = the area code, then each further code of ``area.geocodes`` (the
  areas an earthquake's shaking zone covers).
* ``scope`` is ``Public``, or ``Restricted`` (with a ``restriction``) for an alert below the public
  floor (``Alert.public`` False).
* ``category`` and ``responseType`` are derived from the event name and hazard family
  (:data:`EVENT_CATEGORIES`, consistent with ``tocsin.alerts.engine._EVENTS``).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from tocsin.alerts import cap_id
from tocsin.schemas.alert import Alert, AlertStatus, MsgType
from tocsin.schemas.common import Family, WarningLevel

__all__ = [
    "CAP_NS",
    "EVENT_CATEGORIES",
    "FAMILY_CATEGORIES",
    "GEOCODE_NAME",
    "EVENT_CODE_NAME",
    "cap_time",
    "category_of",
    "clean_text",
    "parse_identifier",
    "render_cap",
    "response_type_of",
]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
BEIJING = timezone(timedelta(hours=8))
LANGUAGE = "zh-CN"
GEOCODE_NAME = "GB/T 2260"
EVENT_CODE_NAME = "TOCSIN"
DEFAULT_SENDER_NAME = "区应急管理局"
RESTRICTION = "仅供应急管理部门和值班人员，不向公众发布"  # <restriction> of a scope Restricted alert

# Event name (as tocsin.alerts.engine writes it) -> CAP category. Same pairs as tocsin.alerts.engine._EVENTS.
EVENT_CATEGORIES: dict[str, str] = {
    "暴雨": "Met",
    "洪水": "Met",  # CAP: "Met - Meteorological (inc. flood)"
    "森林火灾": "Fire",
    "地震": "Geo",
    "危险化学品泄漏": "CBRNE",
    "监测设备离线": "Infra",  # operators' equipment alert
}
# Fallback for events not in the table above.
FAMILY_CATEGORIES: dict[Family, str] = {
    Family.HYDRO: "Met",
    Family.FIRE: "Fire",
    Family.SEISMIC: "Geo",
    Family.HAZMAT: "CBRNE",
}
# Events whose instruction (tocsin.alerts.engine._INSTRUCTIONS) tells people to leave at orange and red.
_EVACUATE_EVENTS = frozenset({"危险化学品泄漏", "洪水", "森林火灾"})
_SHELTER_EVENTS = frozenset({"地震"})

_URGENCY = ("Immediate", "Expected", "Future", "Past", "Unknown")
_CERTAINTY = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
_CERTAINTY_ALIASES = {"Very Likely": "Likely"}  # CAP 1.0 value; CAP 1.2 says treat it as "Likely"

# CAP 1.2: identifier and sender "MUST NOT include spaces, commas or restricted characters (< and &)".
_CAP_TOKEN = re.compile(r"^[^\s,<&]+$")
# A CAP group-listing item that needs no quoting (and cannot hold a quote).
_PLAIN_TOKEN = re.compile(r'^[^\s"]+$')
# Everything outside the XML 1.0 Char production.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean_text(text: str) -> str:
    """``text`` as it survives an XML round trip: non-XML characters dropped, CR/CRLF -> LF."""
    return _NOT_XML_CHAR.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def cap_time(dt: datetime) -> str:
    """CAP dateTime in Beijing time: ``YYYY-MM-DDThh:mm:ss+08:00`` (seconds truncated)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"CAP times need a UTC offset, got naive {dt!r}")
    return dt.astimezone(BEIJING).replace(microsecond=0).isoformat()


def category_of(alert: Alert) -> str:
    return EVENT_CATEGORIES.get(alert.event) or FAMILY_CATEGORIES.get(alert.hazard, "Other")


def response_type_of(alert: Alert) -> str:
    """``AllClear`` for a Cancel; ``Shelter`` for an earthquake; ``Evacuate`` for a leak, flood or
    forest fire at orange/red (their instructions say to leave); ``Prepare`` otherwise."""
    if alert.msg_type is MsgType.CANCEL:
        return "AllClear"
    if alert.event in _SHELTER_EVENTS:
        return "Shelter"
    if alert.event in _EVACUATE_EVENTS and alert.level.rank >= WarningLevel.ORANGE.rank:
        return "Evacuate"
    return "Prepare"


def render_cap(
    alert: Alert,
    *,
    polygon: Sequence[tuple[float, float]] | None = None,
    web: str | None = None,
    sender_name: str = DEFAULT_SENDER_NAME,
    reference_sent: Mapping[str, datetime] | None = None,
    note: str | None = None,
) -> bytes:
    """The alert as a CAP 1.2 ``<alert>`` document (UTF-8 bytes with an XML declaration).

    ``polygon``: (lat, lon) vertices of one more polygon, WGS 84, after the alert's own
    (``alert.area.polygons``); closed if not already.
    ``web``: absolute URI with more information. ``sender_name``: the issuing bureau, e.g.
    ``临江区应急管理局``. ``reference_sent``: sent times of the referenced earlier messages
    (default: the alert's onset). ``note``: CAP note; for Exercise and Test messages it defaults to
    a line saying the message is not a real warning.
    """
    _check_token("identifier", alert.identifier)
    _check_token("sender", alert.sender)
    root = ET.Element(_q("alert"))
    _sub(root, "identifier", alert.identifier)
    _sub(root, "sender", alert.sender)
    sent = cap_time(alert.sent)
    _sub(root, "sent", sent)
    _sub(root, "status", alert.status.value)
    _sub(root, "msgType", alert.msg_type.value)
    # Exercise/Test are marked by <status>, not by restricting the audience; an alert below the public
    # floor (alert.public False: an earthquake nobody would act on) is Restricted to agencies.
    _sub(root, "scope", "Public" if alert.public else "Restricted")
    if not alert.public:
        _sub(root, "restriction", RESTRICTION)
    if note is None:
        note = _DEFAULT_NOTES.get(alert.status, "")
    _optional(root, "note", note)
    if alert.references:
        _sub(root, "references", _references(alert, reference_sent or {}))
    if _PLAIN_TOKEN.match(alert.fingerprint):
        _sub(root, "incidents", alert.fingerprint)  # ties Alert, Updates and Cancel of one incident

    info = _sub(root, "info")
    _sub(info, "language", LANGUAGE)
    _sub(info, "category", category_of(alert))
    _sub(info, "event", alert.event)
    _sub(info, "responseType", response_type_of(alert))
    if alert.msg_type is MsgType.CANCEL:
        urgency, certainty = "Past", "Observed"
    else:
        urgency, certainty = _urgency(alert.urgency), _certainty(alert.certainty)
    _sub(info, "urgency", urgency)
    _sub(info, "severity", alert.severity)
    _sub(info, "certainty", certainty)
    _pair(info, "eventCode", EVENT_CODE_NAME, f"{alert.hazard.value}.{alert.level.value}")
    _sub(info, "effective", sent)
    _sub(info, "onset", cap_time(alert.onset))
    _optional(info, "senderName", sender_name)
    _optional(info, "headline", alert.headline)
    _optional(info, "description", alert.description)
    _optional(info, "instruction", alert.instruction)
    if web is not None:
        _sub(info, "web", _check_web(web))
    _pair(info, "parameter", "warningLevel", alert.level.roman)
    _pair(info, "parameter", "warningColour", alert.level.zh)
    if alert.value is not None:
        _pair(info, "parameter", "measuredValue", _num(alert.value))
        if alert.unit:
            _pair(info, "parameter", "unit", alert.unit)
    _pair(info, "parameter", "fingerprint", alert.fingerprint)
    _pair(info, "parameter", "revision", str(alert.revision))

    area = _sub(info, "area")
    _sub(area, "areaDesc", alert.area.desc)
    rings = [*alert.area.polygons, *([polygon] if polygon is not None else [])]
    for ring in dict.fromkeys(_polygon(r) for r in rings):
        _sub(area, "polygon", ring)
    if alert.area.circle is not None:
        _sub(area, "circle", _circle(alert.area.circle))
    for code in dict.fromkeys([alert.area.code, *alert.area.geocodes]):
        _pair(area, "geocode", GEOCODE_NAME, code)

    return ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS)


def parse_identifier(xml: bytes) -> str:
    """The ``<identifier>`` of a CAP 1.2 alert document (for tests and logs; trusted input only)."""
    root = ET.fromstring(xml)
    if root.tag != _q("alert"):
        raise ValueError(f"not a CAP 1.2 alert: root element {root.tag!r}")
    ident = root.find(_q("identifier"))
    if ident is None or not ident.text:
        raise ValueError("CAP alert without an identifier")
    return ident.text


# ---------------------------------------------------------------------------------------------- helpers
_DEFAULT_NOTES = {
    AlertStatus.EXERCISE: "演练信息，非真实预警，仅供演练参与单位处置。",
    AlertStatus.TEST: "测试信息，非真实预警，请勿采取行动。",
}


def _q(tag: str) -> str:
    return f"{{{CAP_NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, _q(tag))
    if text is not None:
        el.text = clean_text(text)
    return el


def _optional(parent: ET.Element, tag: str, text: str) -> None:
    """An optional text element, left out when there is no text (or none XML can carry)."""
    if clean_text(text):
        _sub(parent, tag, text)


def _pair(parent: ET.Element, tag: str, name: str, value: str) -> None:
    el = _sub(parent, tag)
    _sub(el, "valueName", name)
    _sub(el, "value", value)


def _check_token(field: str, value: str) -> None:
    if not _CAP_TOKEN.match(value) or clean_text(value) != value:
        raise ValueError(f"CAP {field} must not contain whitespace, ',', '<' or '&': {value!r}")


def _references(alert: Alert, sent: Mapping[str, datetime]) -> str:
    triples = []
    for ident in alert.references:
        _check_token("referenced identifier", ident)
        when = sent.get(ident) or cap_id.entered_time(ident) or alert.onset
        triples.append(f"{alert.sender},{ident},{cap_time(when)}")
    return " ".join(triples)


def _urgency(value: str) -> str:
    if value not in _URGENCY:
        raise ValueError(f"urgency {value!r} is not a CAP 1.2 value {_URGENCY}")
    return value


def _certainty(value: str) -> str:
    value = _CERTAINTY_ALIASES.get(value, value)
    if value not in _CERTAINTY:
        raise ValueError(f"certainty {value!r} is not a CAP 1.2 value {_CERTAINTY}")
    return value


def _num(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {x!r}")
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


def _coord(x: float) -> str:
    """Degrees or km with at most 6 decimals (about 0.1 m), no float noise, no trailing zeros."""
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def _point(lat: float, lon: float) -> str:
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"not a WGS 84 point: lat {lat!r}, lon {lon!r}")
    return f"{_coord(lat)},{_coord(lon)}"


def _circle(circle: tuple[float, float, float]) -> str:
    lat, lon, radius_km = circle
    if not (math.isfinite(radius_km) and radius_km >= 0):
        raise ValueError(f"circle radius must be a non-negative number of km, got {radius_km!r}")
    return f"{_point(lat, lon)} {_coord(radius_km)}"


def _polygon(points: Sequence[tuple[float, float]]) -> str:
    ring = [_point(float(lat), float(lon)) for lat, lon in points]
    if ring and ring[0] != ring[-1]:
        ring.append(ring[0])
    if len(set(ring)) < 3:
        raise ValueError(f"a CAP polygon needs at least three distinct vertices, got {list(points)!r}")
    return " ".join(ring)


def _check_web(uri: str) -> str:
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc or re.search(r"\s", uri):
        raise ValueError(f"CAP web must be an absolute URI, got {uri!r}")
    return uri
