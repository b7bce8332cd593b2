"""Routing: which audiences hear an alert, through which channels.

A routing file (YAML or JSON, ``TOCSIN_ROUTING_FILE``) lists routes; each matches alerts by hazard,
minimum level and area (administrative-code prefixes: ``330110`` the district, longer codes its
towns and villages) and names its channels and recipients. ``residents: true`` adds the numbers
registered for the alert's area in the device registry (``sms_recipients``). Public routes never
carry exercises or tests; routes for agencies may (``exercise: true``), marked （演练）/（测试） in
the text. Without a routing file, ``DEFAULT_ROUTING`` sends every alert to the area's residents by
SMS and broadcast.

``sms_signature`` is the sender signature registered with the carriers (e.g. 临江区应急管理局), put
in 【】 at the very start of every SMS; from the routing file, else ``TOCSIN_SMS_SIGNATURE``. An
empty, vague or test signature is refused at load (alerts/sms_text.py ``check_signature``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from tocsin.alerts.release import ReleaseConfig
from tocsin.alerts.sms_text import check_signature
from tocsin.schemas.alert import Alert, AlertStatus
from tocsin.schemas.common import Family, WarningLevel, WireModel
from tocsin.schemas.files import load_model_file
from tocsin.schemas.registry import RegistryLike

log = logging.getLogger(__name__)


class Route(WireModel):
    name: str = Field(min_length=1)
    audience: Literal["public", "agency", "infrastructure"] = Field(
        default="public", description="public, agency or infrastructure"
    )
    channels: list[Literal["sms", "broadcast", "mqtt"]] = Field(min_length=1, description="sms, broadcast, mqtt")
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
    sms_signature: str | None = Field(
        default=None, description="registered SMS sender signature, e.g. 临江区应急管理局 (None: TOCSIN_SMS_SIGNATURE)"
    )

    @field_validator("sms_signature")
    @classmethod
    def _signature(cls, v: str | None) -> str | None:
        return None if v is None else check_signature(v)

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


def load_routing(
    path: str | Path | None, sms_signature: str | None = None, env: Mapping[str, str] = os.environ
) -> Routing:
    """The routing file (or ``DEFAULT_ROUTING``) with its SMS signature: the file's, else
    ``sms_signature``, else ``TOCSIN_SMS_SIGNATURE`` from ``env``. A signature that is set but empty,
    vague or a test signature raises ValueError; none at all is logged (the texts go out unsigned,
    which carriers that do not add the account's signature themselves refuse)."""
    routing = load_model_file(path, Routing, "routing file") if path else DEFAULT_ROUTING
    if routing.sms_signature is None:
        given = sms_signature if sms_signature is not None else env.get("TOCSIN_SMS_SIGNATURE")
        if given is not None:
            routing = routing.model_copy(update={"sms_signature": check_signature(given)})
    if routing.sms_signature is None:
        log.warning("no SMS signature (routing file sms_signature or TOCSIN_SMS_SIGNATURE): SMS go out unsigned")
    return routing
