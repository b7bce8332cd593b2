"""Silences and maintenance windows: suppress notifications, never the audit record.

A silence matches alerts by any of device, site, area (admin-code prefix) and hazard, between
``starts_at`` and ``ends_at``; ``recurrence`` repeats that window daily or weekly (a maintenance
window every Tuesday 02:00-04:00, say) until ``until``. The matched alert is still issued, recorded
and published on Kafka; only its deliveries are replaced by a ``suppressed`` record naming the
silence, its creator and reason.

Safety rule, enforced here and nowhere else: a silence never holds back a red warning or an
earthquake early warning (any seismic alert). Such an alert is delivered on every channel even when
a silence matches it; :func:`overridden` names the silence so the notifier can record the override.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, Field, model_validator

from tocsin.schemas.alert import Alert
from tocsin.schemas.common import Family, WarningLevel, WireModel

_PERIOD = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}


class Silence(WireModel):
    id: str = Field(min_length=1, max_length=100)
    device: str | None = None
    site: str | None = None
    area: str | None = Field(default=None, pattern=r"^[0-9]{1,12}$", description="admin-code prefix")
    hazard: Family | None = None
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    recurrence: Literal["none", "daily", "weekly"] = "none"
    until: AwareDatetime | None = Field(default=None, description="last day a recurring window applies")
    creator: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _window(self) -> Silence:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.recurrence != "none" and self.ends_at - self.starts_at >= _PERIOD[self.recurrence]:
            raise ValueError(f"a {self.recurrence} window must be shorter than its period")
        if all(v is None for v in (self.device, self.site, self.area, self.hazard)):
            raise ValueError("a silence needs at least one matcher: device, site, area or hazard")
        return self

    def active_at(self, now: datetime) -> bool:
        if now < self.starts_at:
            return False
        if self.recurrence == "none":
            return now < self.ends_at
        if self.until is not None and now > self.until:
            return False
        period = _PERIOD[self.recurrence]
        elapsed = (now - self.starts_at) % period
        return elapsed < self.ends_at - self.starts_at

    def matches(self, alert: Alert) -> bool:
        if self.hazard is not None and alert.hazard is not self.hazard:
            return False
        if self.area is not None and not alert.area.code.startswith(self.area):
            return False
        if self.device is not None and self.device not in alert.devices:
            return False
        return self.site is None or self.site in alert.sites


def never_silenced(alert: Alert) -> bool:
    """Red warnings and earthquake early warnings always reach the public, whatever is silenced."""
    return alert.level is WarningLevel.RED or alert.hazard is Family.SEISMIC


def _matching(alert: Alert, silences: list[Silence], now: datetime) -> Silence | None:
    return next((s for s in silences if s.active_at(now) and s.matches(alert)), None)


def silencing(alert: Alert, silences: list[Silence], now: datetime) -> Silence | None:
    """The first active silence that holds back the alert's deliveries, if any (never for a red or
    seismic alert: see :func:`never_silenced`)."""
    if never_silenced(alert):
        return None
    return _matching(alert, silences, now)


def overridden(alert: Alert, silences: list[Silence], now: datetime) -> Silence | None:
    """The active silence that matches a red or seismic alert and is overridden by the safety rule."""
    return _matching(alert, silences, now) if never_silenced(alert) else None
