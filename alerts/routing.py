"""Routing: which audiences hear an alert, through which channels.

A routing file (YAML or JSON, ``TOCSIN_ROUTING_FILE``) lists routes; each matches alerts by hazard,
minimum level and area (administrative-code prefixes: ``330110`` the district, longer codes its
towns and villages) and names its channels and recipients. ``residents: true`` adds the numbers
registered for the alert's area in the device registry (``sms_recipients``). Public routes never
carry exercises or tests; routes for agencies may (``exercise: true``), tagged 【演练】/【测试】.
Without a routing file, ``DEFAULT_ROUTING`` sends every alert to the area's residents by SMS and
broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from alerts.release import ReleaseConfig
from schemas.alert import Alert, AlertStatus
from schemas.common import Family, WarningLevel, WireModel
from schemas.files import load_model_file
from schemas.registry import RegistryLike


class Route(WireModel):
    name: str = Field(min_length=1)
    audience: str = Field(default="public", description="public, agency or infrastructure")
    channels: list[str] = Field(min_length=1, description="sms, broadcast, mqtt")
    hazards: list[Family] | None = Field(default=None, description="None: every hazard")
    min_level: WarningLevel = WarningLevel.BLUE
    areas: list[str] | None = Field(default=None, description="admin-code prefixes; None: every area")
    recipients: list[str] = Field(default_factory=list, description="E.164 numbers (sms)")
    residents: bool = Field(default=False, description="add the registry's numbers for the alert's area")
    exercise: bool = Field(default=False, description="also receives Exercise/Test alerts (never public)")


class Routing(WireModel):
    routes: list[Route]
    release: ReleaseConfig = Field(
        default_factory=ReleaseConfig, description="the release gate (alerts/release.py); default: all auto"
    )

    def public_routes(self) -> frozenset[str]:
        return frozenset(r.name for r in self.routes if r.audience == "public")


DEFAULT_ROUTING = Routing(
    routes=[
        Route(name="public", audience="public", channels=["sms", "broadcast"], residents=True),
        Route(name="operators", audience="agency", channels=["mqtt"], exercise=True),
    ]
)


@dataclass(frozen=True)
class Delivery:
    """One channel's share of an alert: its recipients (numbers, area codes or topics)."""

    route: str
    channel: str
    recipients: tuple[str, ...]


def _matches(route: Route, alert: Alert) -> bool:
    if route.audience == "public" and alert.fingerprint.endswith(":offline"):
        return False  # equipment alerts are for operators and agencies, never the public
    if route.audience == "public" and not alert.public:
        return False  # below the public floor (an earthquake nobody would act on): agencies only
    if route.hazards is not None and alert.hazard not in route.hazards:
        return False
    if alert.level.rank < route.min_level.rank:
        return False
    codes = [alert.area.code, *alert.area.geocodes]
    if route.areas is not None and not any(c.startswith(a) or a.startswith(c) for a in route.areas for c in codes):
        return False
    if alert.status is not AlertStatus.ACTUAL and (route.audience == "public" or not route.exercise):
        return False
    return True


def plan(alert: Alert, routing: Routing, registry: RegistryLike | None) -> list[Delivery]:
    """The deliveries of one alert message. SMS numbers reached by several routes are sent once."""
    out: list[Delivery] = []
    seen_numbers: set[str] = set()
    codes = list(dict.fromkeys([alert.area.code, *alert.area.geocodes]))  # an earthquake: every shaken area
    for route in routing.routes:
        if not _matches(route, alert):
            continue
        for channel in route.channels:
            if channel == "sms":
                numbers = list(route.recipients)
                if route.residents and registry is not None:
                    numbers += [n for code in codes for n in registry.sms_recipients.get(code, [])]
                fresh = tuple(n for n in dict.fromkeys(numbers) if n not in seen_numbers)
                seen_numbers.update(fresh)
                if fresh:
                    out.append(Delivery(route.name, "sms", fresh))
            elif channel == "broadcast":
                out.append(Delivery(route.name, "broadcast", tuple(codes)))
            else:
                out.append(Delivery(route.name, channel, ()))
    return out


def load_routing(path: str | Path | None) -> Routing:
    if not path:
        return DEFAULT_ROUTING
    return load_model_file(path, Routing, "routing file")
