"""Identifiers of the national early-warning message profile, GB/T 35965.1-2018 Appendix A. Pure.

The issuing unit's code has 14 digits, ``ZZZZZZDDDUUUXX``: the 6-digit GB/T 2260 administrative
area code, the 3-digit GB/T 4657 organisation code, a 3-digit internal code (default ``000``) and a
2-digit extension (default ``00``). It is the CAP ``sender``. A message's identifier is
``ZZZZZZDDDUUUXX_YYYYMMDDhhmmss_N`` (31 characters): the unit code, the Beijing time the message
was entered (to the second), and a sequence digit 0-9 that keeps the messages one unit enters in
the same second apart.

Ten messages per unit per second: :class:`Sequencer` hands out the digits of a second in order; an
eleventh message in the same second is entered in the next second that still has a free digit (its
``sent`` moves with it, so identifier and ``sent`` agree; a burst of n messages ends at most
ceil(n / 10) - 1 seconds late). The sequencer lives in one process: two workers issuing for one
unit code keep their identifiers apart only if each has its own extension (``XX``). The Kafka
worker gives each partition of ``detections`` its own (:func:`issuer_code`: the configured
extension plus the partition, modulo 100) and its own sequencer: a partition is issued for by one
worker at a time, so scaled-out workers never enter two messages under one identifier.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8))
UNIT_CODE = re.compile(r"^\d{14}$")
IDENTIFIER = re.compile(r"^(\d{14})_(\d{14})_(\d)$")
IDENTIFIER_LENGTH = 31


def check_unit_code(code: str) -> str:
    """``code`` if it is a 14-digit unit code with a plausible area part; ValueError otherwise."""
    if not UNIT_CODE.match(code):
        raise ValueError(f"unit code must be 14 digits (GB/T 2260 area, GB/T 4657 organisation, 000, 00): {code!r}")
    if code[:6] == "000000":
        raise ValueError(f"unit code needs its GB/T 2260 area code in the first six digits: {code!r}")
    return code


def issuer_code(unit_code: str, lane: int) -> str:
    """``unit_code`` with its 2-digit extension advanced by ``lane`` (modulo 100): lane 0 is the
    code itself; each partition of ``detections`` issues under its own lane."""
    check_unit_code(unit_code)
    if lane == 0:
        return unit_code
    return f"{unit_code[:12]}{(int(unit_code[12:]) + lane) % 100:02d}"


def identifier(unit_code: str, entered: datetime, seq: int) -> str:
    """``ZZZZZZDDDUUUXX_YYYYMMDDhhmmss_N`` for a message entered at ``entered`` (any offset; written
    in Beijing time, fractions of a second dropped)."""
    if not 0 <= seq <= 9:
        raise ValueError(f"sequence digit must be 0-9, got {seq}")
    if entered.tzinfo is None:
        raise ValueError("entered time needs a UTC offset")
    return f"{check_unit_code(unit_code)}_{entered.astimezone(BEIJING):%Y%m%d%H%M%S}_{seq}"


def entered_time(ident: str) -> datetime | None:
    """The Beijing time an Appendix A identifier was entered; None for any other identifier."""
    m = IDENTIFIER.match(ident)
    if not m:
        return None
    return datetime.strptime(m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)


class Sequencer:
    """Sequence digits per second of entry (see the module docstring for bursts beyond ten)."""

    def __init__(self) -> None:
        self._second = 0
        self._used = 0

    def next(self, now: datetime) -> tuple[datetime, int]:
        """(the time the message is entered, its sequence digit) for a message made at ``now``:
        ``now`` itself, or the start of a later second when ``now``'s ten digits are taken (a clock
        stepping back keeps to the last second used, so no identifier repeats)."""
        second = int(now.timestamp() // 1)
        if second > self._second:
            self._second, self._used = second, 0
        elif self._used >= 10:
            self._second, self._used = self._second + 1, 0
        seq = self._used
        self._used += 1
        if self._second == second:
            return now, seq
        return datetime.fromtimestamp(self._second, BEIJING), seq
