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

import re
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


# ---------------------------------------------------------------------------------------------
# Sender signature and length cap (Chinese carriers)
# ---------------------------------------------------------------------------------------------

# Carriers in China take a text only with the sender's registered signature in 【】 at its very
# start, and cap one (long) message at about 500 characters, the signature included.
SMS_MAX_CHARS = 500
SIGNATURE_MIN_CHARS, SIGNATURE_MAX_CHARS = 2, 12
_SIGNATURE_CHARS = re.compile(r"^[\u4e00-\u9fffA-Za-z0-9]+$")
# Carriers refuse signatures that do not name the sender (a bare generic word) and test signatures.
VAGUE_SIGNATURES = frozenset(
    {"通知", "提醒", "短信", "预警", "预警信息", "信息", "系统", "系统通知", "公告", "平台", "应急"}
    | {"应急管理", "管理局", "应急管理局", "区应急管理局", "县应急管理局", "政府", "区政府", "TOCSIN"}
)
_TEST_WORDS = ("测试", "演练", "test", "demo", "example", "示例", "样例")


def check_signature(signature: str) -> str:
    """The 【】-wrapped signature of ``signature`` (given bare or already in 【】); ValueError when it
    is empty, too short or long, holds other than Chinese characters, letters and digits, is a
    generic word that names no sender, or marks a test."""
    bare = signature.strip()
    if bare.startswith("【") and bare.endswith("】"):
        bare = bare[1:-1].strip()
    if not bare:
        raise ValueError("SMS signature is empty: carriers require the registered sender name, e.g. 临江区应急管理局")
    if not SIGNATURE_MIN_CHARS <= len(bare) <= SIGNATURE_MAX_CHARS:
        raise ValueError(f"SMS signature {bare!r} must have {SIGNATURE_MIN_CHARS}-{SIGNATURE_MAX_CHARS} characters")
    if not _SIGNATURE_CHARS.match(bare):
        raise ValueError(f"SMS signature {bare!r} may hold Chinese characters, letters and digits only")
    if bare.upper() in {v.upper() for v in VAGUE_SIGNATURES}:
        raise ValueError(f"SMS signature {bare!r} is vague: carriers want the issuing body's name")
    if any(w in bare.lower() for w in _TEST_WORDS):
        raise ValueError(f"SMS signature {bare!r} is a test signature: carriers refuse it")
    return f"【{bare}】"


def compose_sms(
    signature: str, mark: str, headline: str, description: str, instruction: str, limit: int = SMS_MAX_CHARS
) -> str:
    """``【signature】mark headline。description instruction`` in at most ``limit`` characters.

    The instruction (what to do) is kept whole: the description is shortened first (ending in
    ``…``), then the headline. ``signature`` is already wrapped in 【】 (:func:`check_signature`) or
    empty (no signature configured)."""
    head = f"{signature}{mark}"
    body_head = f"{headline}。"
    text = f"{head}{body_head}{description}{instruction}"
    if len(text) <= limit:
        return text
    room = limit - len(head) - len(body_head) - len(instruction)
    if room >= 1:
        return f"{head}{body_head}{description[: room - 1]}…{instruction}"
    # not even the headline fits beside the instruction: the headline is shortened, no description
    room = limit - len(head) - len(instruction) - 2
    if room >= 0:
        return f"{head}{headline[:room]}…。{instruction}"
    return f"{head}{instruction}"[:limit]
