"""GB/T 35965.1-2018 Appendix A identifiers: ``ZZZZZZDDDUUUXX_YYYYMMDDhhmmss_N`` (31 characters), the
sender being the 14-digit unit code; worked by hand from the appendix's layout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from tocsin.alerts import cap_id
from tocsin.alerts.engine import AlertConfig, AlertEngine
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.detection import Detection, DetectionState
from tocsin.settings import Settings

# 330110 (GB/T 2260: 杭州市余杭区), organisation 416, internal 000, extension 00
UNIT = "33011041600000"


def test_identifier_layout() -> None:
    # 12:05:00.7 UTC is 20:05:00 Beijing time; fractions of a second are dropped
    entered = datetime(2024, 7, 1, 12, 5, 0, 700_000, tzinfo=UTC)
    ident = cap_id.identifier(UNIT, entered, 3)
    assert ident == "33011041600000_20240701200500_3"
    assert len(ident) == cap_id.IDENTIFIER_LENGTH == 31
    assert cap_id.entered_time(ident) == datetime(2024, 7, 1, 12, 5, 0, tzinfo=UTC)
    assert cap_id.entered_time("110105TOCSIN20240701200000-hydro-rainstorm-000") is None


@pytest.mark.parametrize("bad", ["3301104160000", "330110416000000", "33011041600A00", "00000041600000", ""])
def test_unit_code_must_be_fourteen_digits_with_an_area(bad: str) -> None:
    with pytest.raises(ValueError, match="unit code"):
        cap_id.check_unit_code(bad)
    with pytest.raises(ValueError, match="unit code"):
        AlertEngine(AlertConfig(sender=bad))


def test_settings_refuse_a_sender_that_is_not_a_unit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOCSIN_ALERT_SENDER", "tocsin@district.example")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("TOCSIN_ALERT_SENDER", UNIT)
    assert Settings().alert_sender == UNIT


def test_sequencer_twelve_messages_in_one_second() -> None:
    now = datetime(2024, 7, 1, 12, 5, 0, 250_000, tzinfo=UTC)
    seq = cap_id.Sequencer()
    got = [seq.next(now) for _ in range(12)]
    assert [n for _, n in got] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert [t for t, _ in got[:10]] == [now] * 10
    # the eleventh and twelfth are entered in the next second
    assert [t for t, _ in got[10:]] == [datetime(2024, 7, 1, 12, 5, 1, tzinfo=UTC)] * 2
    # a clock stepping back keeps to the last second used: no identifier repeats
    back = seq.next(now - timedelta(seconds=30))
    assert back == (datetime(2024, 7, 1, 12, 5, 1, tzinfo=UTC), 2)
    # a new second starts again at 0
    assert seq.next(now + timedelta(seconds=5))[1] == 0


def _gas(area: str) -> Detection:
    t = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
    return Detection(
        id=f"gas-{area}:gas_h2s:0:0",
        device_id=f"gas-{area}",
        site="s",
        family=Family.HAZMAT,
        kind="gas_h2s",
        state=DetectionState.OPEN,
        level=WarningLevel.YELLOW,
        value=12.0,
        onset=t,
        ts=t,
        revision=0,
        area_code=area,
    )


def test_engine_keeps_identifiers_unique_beyond_ten_messages_a_second() -> None:
    now = datetime(2024, 7, 1, 12, 5, 0, tzinfo=UTC)
    engine = AlertEngine(AlertConfig(sender=UNIT), clock=lambda: now)
    alerts = [engine.process(_gas(f"3301{n:02d}"), None)[1][0] for n in range(12)]
    idents = [a.identifier for a in alerts]
    assert len(set(idents)) == 12
    assert idents[:10] == [f"{UNIT}_20240701200500_{n}" for n in range(10)]
    assert idents[10:] == [f"{UNIT}_20240701200501_{n}" for n in range(2)]
    for a in alerts:
        assert a.sender == UNIT
        assert a.sent.utcoffset() == timedelta(hours=8)
        assert cap_id.entered_time(a.identifier) == a.sent.replace(microsecond=0)


def test_each_partition_issues_under_its_own_extension() -> None:
    """Two workers issue for two partitions in the same second: their identifiers differ in the
    extension (XX), never only by chance; lane 0 is the configured code itself."""
    assert cap_id.issuer_code("11010500000000", 0) == "11010500000000"
    assert cap_id.issuer_code("11010500000000", 5) == "11010500000005"
    assert cap_id.issuer_code("11010500000097", 5) == "11010500000002"  # (97 + 5) mod 100
    assert AlertEngine().issuer_lane == 0
