"""The gateway's input limits come from the settings field by field (tocsin.cli.gateway_limits)."""

from __future__ import annotations

import pytest

from tocsin.cli import gateway_limits
from tocsin.ingest.validate import Limits
from tocsin.settings import Settings


def test_each_limit_is_the_setting_of_the_same_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # three distinct values, so a limit read from the wrong setting cannot pass
    monkeypatch.setenv("TOCSIN_MAX_PAYLOAD_BYTES", "2048")
    monkeypatch.setenv("TOCSIN_MAX_FUTURE_SKEW_S", "120")
    monkeypatch.setenv("TOCSIN_MAX_AGE_S", "86400")
    limits = gateway_limits(Settings())
    assert (limits.max_payload_bytes, limits.max_future_skew_s, limits.max_age_s) == (2048, 120.0, 86400.0)
    assert limits.max_status_bytes == Limits().max_status_bytes  # not a setting: the default


def test_the_defaults_refuse_a_reading_a_day_ahead() -> None:
    # the documented defaults (docs/settings.md): 300 s of device clock skew, 7 days of age
    limits = gateway_limits(Settings())
    assert limits.max_future_skew_s == 300.0 and limits.max_age_s == 7 * 86_400.0


def test_limits_are_given_by_name_only() -> None:
    with pytest.raises(TypeError):
        Limits(262_144, 300.0, 604_800.0)  # type: ignore[misc]
