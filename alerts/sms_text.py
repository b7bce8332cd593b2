"""SMS segmentation (3GPP TS 23.038 / 23.040), pure functions without I/O.

A message is sent in the GSM 7-bit default alphabet when every character is in the basic table or
its extension table, otherwise in UCS-2. Capacities per segment:

========  ============  ===================================
encoding  single        per part of a concatenated message
========  ============  ===================================
GSM-7     160 septets   153 septets (UDH takes 7)
UCS-2     70 units      67 UTF-16 code units (UDH takes 3)
========  ============  ===================================

Extension-table characters (``€ { } [ ] ~ \\ ^ |`` and form feed) are sent as ESC + code, i.e. two
septets, and are never split across parts. In UCS-2, characters outside the BMP (most emoji) are a
surrogate pair of two code units and are never split either. Grapheme clusters made of several
code points (ZWJ emoji sequences, combining accents) may be split between their code points, as
carriers do.

Empty text is one empty segment: ``split_sms("") == [""]`` and ``segment_count("") == 1``.
Rejecting empty messages is the caller's or the provider's business, not the encoder's.
"""

from __future__ import annotations

from typing import Literal

# GSM 03.38 basic table, positions 0x00..0x7F; 0x1B is the escape to the extension table and is not
# a character a message may contain, so it is written here as a placeholder and dropped below.
_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM7_BASIC: frozenset[str] = frozenset(_BASIC_TABLE) - {"\x1b"}
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE_SEPTETS = 160
GSM7_PART_SEPTETS = 153
UCS2_SINGLE_UNITS = 70
UCS2_PART_UNITS = 67

Encoding = Literal["gsm7", "ucs2"]


def is_gsm7(text: str) -> bool:
    """True if ``text`` can be sent in the GSM 7-bit default alphabet (basic or extension table)."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def encoding_of(text: str) -> Encoding:
    return "gsm7" if is_gsm7(text) else "ucs2"


def _gsm7_width(ch: str) -> int:
    return 2 if ch in GSM7_EXTENSION else 1


def _ucs2_width(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def encoded_length(text: str) -> int:
    """Length in septets (GSM-7) or UTF-16 code units (UCS-2), whichever encoding ``text`` needs."""
    width = _gsm7_width if is_gsm7(text) else _ucs2_width
    return sum(width(ch) for ch in text)


def split_sms(text: str) -> list[str]:
    """Split ``text`` into the segments a carrier would send; ``"".join(parts) == text``."""
    if is_gsm7(text):
        width, single, per_part = _gsm7_width, GSM7_SINGLE_SEPTETS, GSM7_PART_SEPTETS
    else:
        width, single, per_part = _ucs2_width, UCS2_SINGLE_UNITS, UCS2_PART_UNITS
    if sum(width(ch) for ch in text) <= single:
        return [text]
    parts: list[str] = []
    start = 0
    used = 0
    for i, ch in enumerate(text):
        w = width(ch)
        if used + w > per_part:
            parts.append(text[start:i])
            start, used = i, 0
        used += w
    parts.append(text[start:])
    return parts


def segment_count(text: str) -> int:
    """Number of SMS segments (billing units) ``text`` needs; at least 1."""
    return len(split_sms(text))
