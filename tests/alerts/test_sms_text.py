"""Segmentation golden cases and properties for tocsin.alerts.sms_text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.alerts.sms_text import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    GSM7_PART_SEPTETS,
    GSM7_SINGLE_SEPTETS,
    UCS2_PART_UNITS,
    UCS2_SINGLE_UNITS,
    encoded_length,
    is_gsm7,
    segment_count,
    split_sms,
)

ZH = "警"  # any CJK character forces UCS-2
EMOJI = "🌊"  # outside the BMP: a surrogate pair, 2 UTF-16 units


def test_tables_have_the_standard_sizes() -> None:
    assert len(GSM7_BASIC) == 127  # 128 positions minus the escape code
    assert GSM7_EXTENSION == frozenset("\f^{}\\[~]|€")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Flood warning @ 10:00, £5 ¥ ÄÖÑÜ§¿ àèéìòù\r\n", True),
        ("brackets {} [] ~ \\ | ^ €", True),
        (ZH, False),
        (EMOJI, False),
        ("\x1b", False),
        ("", True),
    ],
)
def test_is_gsm7(text: str, expected: bool) -> None:
    assert is_gsm7(text) is expected


@pytest.mark.parametrize(
    ("text", "sizes"),
    [
        ("a" * 160, [160]),
        ("a" * 161, [153, 8]),
        ("a" * 306, [153, 153]),
        ("a" * 307, [153, 153, 1]),
        (ZH * 70, [70]),
        (ZH * 71, [67, 4]),
        (ZH * 134, [67, 67]),
        ("a" * 69 + ZH, [70]),  # one non-GSM char turns the whole message into UCS-2
    ],
)
def test_golden_split_sizes(text: str, sizes: list[int]) -> None:
    parts = split_sms(text)
    assert [len(p) for p in parts] == sizes
    assert segment_count(text) == len(sizes)
    assert "".join(parts) == text


def test_extension_chars_count_double() -> None:
    assert encoded_length("€{") == 4
    assert segment_count("€" * 80) == 1  # 160 septets
    assert segment_count("a" * 159 + "{") == 2  # 161 septets
    assert segment_count("a" * 160) == 1


def test_extension_char_not_split_across_parts() -> None:
    text = "a" * 152 + "{" + "b" * 10  # 164 septets; '{' would straddle septets 153 and 154
    parts = split_sms(text)
    assert parts == ["a" * 152, "{" + "b" * 10]
    assert [encoded_length(p) for p in parts] == [152, 12]


def test_all_extension_chars_split_evenly() -> None:
    parts = split_sms("€" * 81)  # 162 septets
    assert [len(p) for p in parts] == [76, 5]  # 76 * 2 = 152 septets; a 77th would need 154


def test_emoji_counts_two_units_and_is_not_split() -> None:
    assert segment_count(EMOJI * 35) == 1  # 70 units
    assert [len(p) for p in split_sms(EMOJI * 36)] == [33, 3]  # 66 units, the 34th needs 68
    parts = split_sms("x" * 66 + EMOJI + "y" * 10)
    assert parts == ["x" * 66, EMOJI + "y" * 10]


def test_extension_chars_in_ucs2_count_once() -> None:
    assert encoded_length(ZH + "€") == 2
    assert segment_count(ZH + "€" * 69) == 1


def test_empty_text_is_one_empty_segment() -> None:
    assert split_sms("") == [""]
    assert segment_count("") == 1


# --- properties -----------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(sorted(GSM7_BASIC)) | st.sampled_from(sorted(GSM7_EXTENSION))
_MIXED = _ALPHABET | st.sampled_from([ZH, "中", "文", EMOJI, "😀", "é", "ç"])


def _units(text: str, gsm7: bool) -> int:
    """Independent oracle: septets for GSM-7, UTF-16 code units for UCS-2."""
    if gsm7:
        return sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
    return len(text.encode("utf-16-le")) // 2


def _check_split(text: str) -> None:
    parts = split_sms(text)
    assert "".join(parts) == text
    gsm7 = is_gsm7(text)
    single, per_part = (GSM7_SINGLE_SEPTETS, GSM7_PART_SEPTETS) if gsm7 else (UCS2_SINGLE_UNITS, UCS2_PART_UNITS)
    if len(parts) == 1:
        assert _units(text, gsm7) <= single
        return
    assert _units(text, gsm7) > single
    for i, part in enumerate(parts):
        assert part
        assert _units(part, gsm7) <= per_part
        if i + 1 < len(parts):  # greedy: the next character would not have fitted
            assert _units(part + parts[i + 1][0], gsm7) > per_part
    assert segment_count(text) == len(parts)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=700))
def test_gsm7_split_roundtrips_within_limits(text: str) -> None:
    assert is_gsm7(text)
    _check_split(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_MIXED, max_size=400))
def test_mixed_split_roundtrips_within_limits(text: str) -> None:
    _check_split(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_unicode_split_roundtrips_within_limits(text: str) -> None:
    _check_split(text)
