"""Unit tests for ingest/mseed.py: golden fixtures written and read back by ObsPy (see
tests/ingest/golden/README.md), header semantics, corrupted inputs, and the property that no
input raises anything but MseedError."""

from __future__ import annotations

import json
import struct
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tocsin.ingest.mseed import MseedError, MseedRecord, decode_mseed, looks_like_mseed, to_packet_fields
from tocsin.schemas.seismic_band import MIN_SAMPLE_RATE_HZ
from tocsin.schemas.telemetry import TELEMETRY_ADAPTER, SeismicPacket

GOLDEN = Path(__file__).resolve().parent / "golden"
NAMES = sorted(p.stem for p in GOLDEN.glob("*.mseed"))
INT_ENCODINGS = {"INT16", "INT32", "STEIM1", "STEIM2"}

# A numpy RuntimeWarning (overflow, invalid cast) from the decoder is a bug, not noise.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def raw(name: str) -> bytes:
    return (GOLDEN / f"{name}.mseed").read_bytes()


def sidecar(name: str) -> dict:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def patched(data: bytes, offset: int, fmt: str, *values: object) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def first_record(name: str) -> bytes:
    return raw(name)[: sidecar(name)["record_length"]]


def assert_matches(rec: MseedRecord, exp: dict) -> None:
    assert (rec.network, rec.station, rec.location, rec.channel) == (
        exp["network"],
        exp["station"],
        exp["location"],
        exp["channel"],
    )
    assert rec.start == datetime.fromisoformat(exp["starttime"])
    assert rec.start.tzinfo is not None and rec.start.utcoffset() == timedelta(0)
    assert rec.sample_rate_hz == pytest.approx(exp["sampling_rate"], rel=1e-12)
    assert rec.encoding == exp["encoding"]
    assert rec.byte_order == exp["byteorder"]
    assert rec.record_length == exp["record_length"]
    assert rec.samples.dtype == np.float64
    assert rec.num_samples == exp["npts"] == len(exp["samples"])
    if exp["encoding"] in INT_ENCODINGS:
        assert all(isinstance(v, int) for v in exp["samples"])
        assert rec.samples.tolist() == [float(v) for v in exp["samples"]]
    else:
        np.testing.assert_allclose(rec.samples, np.array(exp["samples"], dtype=np.float64), rtol=1e-6, atol=0)


# --------------------------------------------------------------------------------------------------
# Golden fixtures


def test_fixture_set_is_complete_and_small() -> None:
    encodings = {r["encoding"] for n in NAMES for r in sidecar(n)["records"]}
    assert encodings == {"INT16", "INT32", "FLOAT32", "FLOAT64", "STEIM1", "STEIM2"}
    rates = {r["sampling_rate"] for n in NAMES for r in sidecar(n)["records"]}
    assert {100.0, 40.0, 0.1} <= rates
    assert sum(p.stat().st_size for p in GOLDEN.iterdir() if p.is_file()) < 200_000


@pytest.mark.parametrize("name", NAMES)
def test_golden_fixture_decodes_as_obspy_reads_it(name: str) -> None:
    exp = sidecar(name)
    records = decode_mseed(raw(name))
    assert len(records) == len(exp["records"])
    for rec, want in zip(records, exp["records"], strict=True):
        assert_matches(rec, want)
        assert rec.quality == "D"
        assert rec.sequence_number is not None


@pytest.mark.parametrize("name", NAMES)
def test_records_decode_one_at_a_time(name: str) -> None:
    data, reclen = raw(name), sidecar(name)["record_length"]
    for i, want in enumerate(sidecar(name)["records"]):
        (rec,) = decode_mseed(data[i * reclen : (i + 1) * reclen])
        assert_matches(rec, want)


def test_multi_record_steim2_is_contiguous() -> None:
    records = decode_mseed(raw("steim2_be_512_multi"))
    assert len(records) >= 3 and all(r.record_length == 512 for r in records)
    for a, b in zip(records, records[1:], strict=False):
        expected = a.start + timedelta(seconds=a.num_samples / a.sample_rate_hz)
        assert abs((b.start - expected).total_seconds()) <= 1e-6
    assert records[-1].start.date() > records[0].start.date()  # crosses midnight


def test_concatenated_fixtures_of_mixed_encodings_and_byte_orders() -> None:
    names = ["int32_le_100hz", "steim1_be_100hz", "float64_be_0p1hz", "steim2_le_40hz", "int16_be_100hz"]
    records = decode_mseed(b"".join(raw(n) for n in names))
    expected = [r for n in names for r in sidecar(n)["records"]]
    assert len(records) == len(expected)
    for rec, want in zip(records, expected, strict=True):
        assert_matches(rec, want)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = raw("steim1_be_100hz")
    for payload in (bytearray(data), memoryview(data)):
        (rec,) = decode_mseed(payload)  # type: ignore[arg-type]
        assert_matches(rec, sidecar("steim1_be_100hz")["records"][0])


def test_time_correction_applied_only_when_flag_clear() -> None:
    (base,) = decode_mseed(raw("int32_be_40hz"))
    (shifted,) = decode_mseed(raw("int32_be_timecorr"))
    (already,) = decode_mseed(raw("int32_be_timecorr_applied"))
    assert shifted.start - base.start == timedelta(seconds=1.2345)
    assert already.start == base.start
    (s2,) = decode_mseed(raw("steim2_be_100hz"))
    (s2neg,) = decode_mseed(raw("steim2_be_timecorr_neg"))
    assert s2neg.start - s2.start == timedelta(microseconds=-700)


def test_blockette_1001_microseconds_are_added() -> None:
    (rec,) = decode_mseed(first_record("int32_be_40hz"))
    assert rec.start == datetime(2023, 12, 31, 23, 59, 58, 987654, tzinfo=UTC)
    data = first_record("int32_be_40hz")
    # ObsPy puts blockette 1001 first, at byte 48; its microsecond byte is at +5.
    assert struct.unpack_from(">H", data, 48)[0] == 1001
    (later,) = decode_mseed(patched(data, 53, "b", struct.unpack_from("b", data, 53)[0] + 10))
    assert later.start - rec.start == timedelta(microseconds=10)


@pytest.mark.parametrize(
    ("factor", "multiplier", "rate"),
    [
        (100, 1, 100.0),
        (40, 1, 40.0),
        (25, 4, 100.0),
        (-10, 1, 0.1),  # negative factor: seconds per sample
        (1, -10, 0.1),  # negative multiplier: divisor
        (200, -2, 100.0),
        (-10, 3, 0.3),
        (-10, -2, 0.05),
        (0, 0, 0.0),
    ],
)
def test_sample_rate_factor_and_multiplier(factor: int, multiplier: int, rate: float) -> None:
    data = patched(first_record("int32_be_40hz"), 32, ">hh", factor, multiplier)
    (rec,) = decode_mseed(data)
    assert rec.sample_rate_hz == pytest.approx(rate, rel=1e-12)


def test_sequence_number_and_quality_are_reported() -> None:
    data = bytearray(first_record("int32_be_40hz"))
    data[0:7] = b"  1234R"
    (rec,) = decode_mseed(bytes(data))
    assert rec.sequence_number == 1234 and rec.quality == "R"
    data[0:6] = b"      "
    (rec,) = decode_mseed(bytes(data))
    assert rec.sequence_number is None


def test_record_is_immutable() -> None:
    (rec,) = decode_mseed(raw("float32_be_40hz"))
    with pytest.raises(FrozenInstanceError):
        rec.channel = "BHZ"  # type: ignore[misc]
    with pytest.raises(ValueError):
        rec.samples[0] = 1.0


# --------------------------------------------------------------------------------------------------
# looks_like_mseed


@pytest.mark.parametrize("name", NAMES)
def test_looks_like_mseed_for_fixtures(name: str) -> None:
    assert looks_like_mseed(raw(name))


JSON_PAYLOADS = [
    b"",
    b"{}",
    b"[1, 2, 3]",
    b'{"type": "seismic.waveform", "device_id": "BJ01", "site": "st.1", "samples": [1.0]}',
    json.dumps({"type": "hydro.rain", "device_id": "rg-01", "rain_mm": 2.5}).encode(),
    b'  {"type": "x"}',
    b"123456",  # too short
    b"1234567890",  # quality position is a digit
    b"000001D",  # 7 bytes
]


@pytest.mark.parametrize("payload", JSON_PAYLOADS)
def test_looks_like_mseed_false_for_json_and_junk(payload: bytes) -> None:
    assert not looks_like_mseed(payload)


def test_looks_like_mseed_false_for_random_bytes() -> None:
    rng = np.random.default_rng(2024)
    for size in (0, 7, 8, 48, 512, 4096):
        for _ in range(50):
            assert not looks_like_mseed(rng.bytes(size))


def test_looks_like_mseed_accepts_nul_reserved_byte_and_all_qualities() -> None:
    for q in b"DRQM":
        assert looks_like_mseed(b"000001" + bytes([q]) + b" ")
        assert looks_like_mseed(b"      " + bytes([q]) + b"\x00")
    assert not looks_like_mseed(b"000001X ")
    assert not looks_like_mseed(b"000001DX")


# --------------------------------------------------------------------------------------------------
# to_packet_fields


@pytest.mark.parametrize("name", ["int16_be_100hz", "steim2_be_100hz", "float64_be_0p1hz", "steim1_le_40hz"])
def test_to_packet_fields_builds_a_valid_seismic_packet(name: str) -> None:
    rec = decode_mseed(raw(name))[0]
    fields = to_packet_fields(rec)
    assert fields == {
        "type": "seismic.waveform",
        "channel": "HHZ",
        "sample_rate_hz": rec.sample_rate_hz,
        "unit": "counts",
        "samples": rec.samples.tolist(),
        "ts": rec.start,
    }
    assert all(type(v) is float for v in fields["samples"])
    if rec.sample_rate_hz < MIN_SAMPLE_RATE_HZ:
        # decodable, but slower than the seismic detector can filter (0.1 Hz: Nyquist 0.05 Hz < the 1 Hz corner)
        with pytest.raises(ValidationError) as err:
            TELEMETRY_ADAPTER.validate_python({**fields, "device_id": "TOC01", "site": "st.1"})
        assert [e["type"] for e in err.value.errors()] == ["out_of_range"]
        return
    packet = TELEMETRY_ADAPTER.validate_python({**fields, "device_id": "TOC01", "site": "st.1"})
    assert isinstance(packet, SeismicPacket)
    assert packet.ts == rec.start and packet.channel == "HHZ"
    assert json.loads(packet.model_dump_json())["samples"] == fields["samples"]


@pytest.mark.parametrize("channel", [b"hhz", b"HZ ", b"H-Z", b"   "])
def test_to_packet_fields_rejects_bad_channel_codes(channel: bytes) -> None:
    data = bytearray(first_record("int32_be_40hz"))
    data[15:18] = channel
    (rec,) = decode_mseed(bytes(data))
    with pytest.raises(MseedError, match="channel code"):
        to_packet_fields(rec)


# --------------------------------------------------------------------------------------------------
# Malformed input


def steim_data_offset(data: bytes) -> int:
    return struct.unpack_from(">H", data, 44)[0]


def blockette_1000_offset(data: bytes, order: str = ">") -> int:
    pos = struct.unpack_from(order + "H", data, 46)[0]
    while pos:
        btype, nxt = struct.unpack_from(order + "HH", data, pos)
        if btype == 1000:
            return pos
        pos = nxt
    raise AssertionError("fixture has no blockette 1000")


@pytest.mark.parametrize("cut", [0, 1, 7, 47])
def test_too_short(cut: int) -> None:
    with pytest.raises(MseedError, match="too short"):
        decode_mseed(raw("steim2_be_100hz")[:cut])


@pytest.mark.parametrize("cut", [48, 100, 511, 4095])
def test_truncated_record(cut: int) -> None:
    with pytest.raises(MseedError, match="record length mismatch|beyond|truncated"):
        decode_mseed(raw("steim2_be_100hz")[:cut])


def test_truncated_second_record_names_it() -> None:
    data = raw("steim2_be_512_multi")
    with pytest.raises(MseedError, match=r"record 2 at byte offset 512: .*record length mismatch"):
        decode_mseed(data[: 512 + 300])
    with pytest.raises(MseedError, match=r"record 3 at byte offset 1024: .*too short"):
        decode_mseed(data[: 1024 + 20])


def test_trailing_garbage_is_rejected() -> None:
    with pytest.raises(MseedError, match=r"record 2 .*not a miniSEED"):
        decode_mseed(raw("int16_be_100hz")[:512] + b'{"type": "x"}' + b" " * 100)


@pytest.mark.parametrize("name", ["steim1_be_100hz", "steim2_be_100hz", "steim2_be_512_multi"])
def test_flipped_xn_fails_the_integrity_check(name: str) -> None:
    data = first_record(name)
    xn_at = steim_data_offset(data) + 8  # frame 0: control word, X0, Xn
    xn = struct.unpack_from(">i", data, xn_at)[0]
    with pytest.raises(MseedError, match=rf"integrity check failed: last sample {xn} != .* {xn ^ 1}"):
        decode_mseed(patched(data, xn_at, ">i", xn ^ 1))


def test_flipped_x0_fails_the_integrity_check() -> None:
    data = first_record("steim1_be_100hz")
    x0_at = steim_data_offset(data) + 4
    with pytest.raises(MseedError, match="integrity check failed"):
        decode_mseed(patched(data, x0_at, ">i", struct.unpack_from(">i", data, x0_at)[0] + 1))


def test_flipped_xn_little_endian() -> None:
    data = first_record("steim2_le_40hz")
    xn_at = struct.unpack_from("<H", data, 44)[0] + 8
    with pytest.raises(MseedError, match="integrity check failed"):
        decode_mseed(patched(data, xn_at, "<i", struct.unpack_from("<i", data, xn_at)[0] + 7))


@pytest.mark.parametrize(("nibble", "dnib"), [(2, 0), (3, 3)])
def test_invalid_steim2_sub_nibble(nibble: int, dnib: int) -> None:
    data = bytearray(first_record("steim2_be_100hz"))
    start = steim_data_offset(bytes(data))
    at = next(
        start + 64 * frame + 4 * i
        for frame in range(8)
        for i in range(3, 16)
        if (struct.unpack_from(">I", data, start + 64 * frame)[0] >> (30 - 2 * i)) & 3 == nibble
    )
    value = struct.unpack_from(">I", data, at)[0]
    struct.pack_into(">I", data, at, (value & 0x3FFFFFFF) | dnib << 30)  # an undefined layout
    with pytest.raises(MseedError, match="invalid sub-nibble"):
        decode_mseed(bytes(data))


@pytest.mark.parametrize("char", [b"X", b"d", b" ", b"0", b"\x00"])
def test_bad_quality_indicator(char: bytes) -> None:
    data = bytearray(raw("int32_be_40hz"))
    data[6:7] = char
    with pytest.raises(MseedError, match="quality indicator"):
        decode_mseed(bytes(data))


@pytest.mark.parametrize("seq", [b"00a001", b"\x00\x00\x00\x00\x00\x01", b"-00001", b"12 345"])
def test_bad_sequence_number(seq: bytes) -> None:
    data = bytearray(raw("int32_be_40hz"))
    data[0:6] = seq
    with pytest.raises(MseedError, match="sequence number"):
        decode_mseed(bytes(data))


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (0, r"unsupported data encoding 0 \(ASCII\)"),
        (2, r"INT24"),
        (19, "STEIM3"),
        (99, "unsupported data encoding 99"),
    ],
)
def test_unknown_encoding_in_blockette_1000(code: int, message: str) -> None:
    for name, order in [("steim2_be_100hz", ">"), ("int32_le_100hz", "<")]:
        data = first_record(name)
        with pytest.raises(MseedError, match=message):
            decode_mseed(patched(data, blockette_1000_offset(data, order) + 4, "B", code))


def test_bad_word_order() -> None:
    data = first_record("int32_be_40hz")
    with pytest.raises(MseedError, match="word order"):
        decode_mseed(patched(data, blockette_1000_offset(data) + 5, "B", 2))


@pytest.mark.parametrize("exponent", [0, 7, 14, 20, 255])
def test_record_length_out_of_range(exponent: int) -> None:
    data = first_record("int32_be_40hz")
    with pytest.raises(MseedError, match="outside 256..8192"):
        decode_mseed(patched(data, blockette_1000_offset(data) + 6, "B", exponent))


def test_record_length_mismatch() -> None:
    data = first_record("steim2_be_512_multi")
    with pytest.raises(MseedError, match="record length mismatch: blockette 1000 says 4096 bytes but only 512"):
        decode_mseed(patched(data, blockette_1000_offset(data) + 6, "B", 12))


def test_no_blockette_1000() -> None:
    data = first_record("int32_be_40hz")
    with pytest.raises(MseedError, match="no blockette 1000"):
        decode_mseed(patched(data, 46, ">H", 0))  # empty blockette chain
    with pytest.raises(MseedError, match="no blockette 1000"):
        decode_mseed(patched(data, blockette_1000_offset(data), ">H", 2000))  # retyped


def test_blockette_chain_loop_is_rejected() -> None:
    data = first_record("int32_be_40hz")
    first = struct.unpack_from(">H", data, 46)[0]
    with pytest.raises(MseedError, match="blockette offset"):
        decode_mseed(patched(data, first + 2, ">H", first))


@pytest.mark.parametrize("name", ["int16_be_100hz", "int32_be_40hz", "float64_be_0p1hz", "steim1_be_100hz"])
def test_sample_count_mismatch(name: str) -> None:
    data = first_record(name)
    with pytest.raises(MseedError, match="sample count mismatch"):
        decode_mseed(patched(data, 30, ">H", 60000))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(("name", "fmt", "size"), [("float32_be_40hz", ">f", 4), ("float64_be_0p1hz", ">d", 8)])
def test_non_finite_floats(name: str, fmt: str, size: int, bad: float) -> None:
    data = first_record(name)
    with pytest.raises(MseedError, match="sample 3 is not finite"):
        decode_mseed(patched(data, steim_data_offset(data) + 3 * size, fmt, bad))


def test_data_offset_out_of_record() -> None:
    data = first_record("int32_be_40hz")
    with pytest.raises(MseedError, match="beginning of data"):
        decode_mseed(patched(data, 44, ">H", 5000))
    with pytest.raises(MseedError, match="beginning of data"):
        decode_mseed(patched(data, 44, ">H", 8))


@pytest.mark.parametrize(("name", "order"), [("steim1_be_100hz", ">"), ("steim2_le_40hz", "<")])
def test_steim_frames_off_the_64_byte_grid(name: str, order: str) -> None:
    """SEED 2.4 appendix B: Steim frames are 64-byte aligned. Found by the old/new decoder comparison:
    with a beginning of data at byte 169, libmseed and the former decoder read different samples."""
    data = first_record(name)
    start = struct.unpack_from(order + "H", data, 44)[0]
    assert start % 64 == 0  # the fixture itself is aligned
    for off in (start + 1, start + 4, start + 32):
        with pytest.raises(MseedError, match=rf"begins at byte {off}, not on a 64-byte frame boundary"):
            decode_mseed(patched(data, 44, order + "H", off))


def test_zero_multiplier_with_nonzero_factor() -> None:
    with pytest.raises(MseedError, match="multiplier is 0"):
        decode_mseed(patched(first_record("int32_be_40hz"), 32, ">hh", 40, 0))


@pytest.mark.parametrize(
    ("field", "fmt", "value", "message"),
    [
        (20, ">H", 1066, "implausible"),  # year
        (22, ">H", 0, "implausible"),  # day of year
        (22, ">H", 366, "day-of-year 366 does not exist in 2023"),  # int32_be_40hz is in 2023
        (24, ">B", 24, "BTIME time"),  # hour
        (25, ">B", 60, "BTIME time"),  # minute
        (26, ">B", 61, "BTIME time"),  # second
        (28, ">H", 10000, "BTIME time"),  # fraction
    ],
)
def test_invalid_btime(field: int, fmt: str, value: int, message: str) -> None:
    with pytest.raises(MseedError, match=message):
        decode_mseed(patched(first_record("int32_be_40hz"), field, fmt, value))


def test_leap_second_is_accepted() -> None:
    data = patched(first_record("int32_be_40hz"), 24, ">BBB", 23, 59, 60)
    (rec,) = decode_mseed(data)
    assert rec.start == datetime(2024, 1, 1, 0, 0, 0, 987654, tzinfo=UTC)


def test_non_ascii_station_code() -> None:
    data = bytearray(first_record("int32_be_40hz"))
    data[8] = 0xC3
    with pytest.raises(MseedError, match="station code"):
        decode_mseed(bytes(data))


def test_errors_are_value_errors_with_messages() -> None:
    assert issubclass(MseedError, ValueError)
    with pytest.raises(ValueError) as info:
        decode_mseed(b"not miniSEED at all, just some text that is long enough to have a header")
    assert isinstance(info.value, MseedError) and str(info.value)


# --------------------------------------------------------------------------------------------------
# Properties: nothing but MseedError, whatever the bytes


def _decode_or_mseed_error(payload: bytes) -> list[MseedRecord] | None:
    try:
        records = decode_mseed(payload)
    except MseedError as exc:
        assert str(exc)
        return None
    assert records and looks_like_mseed(payload)
    for rec in records:
        assert np.all(np.isfinite(rec.samples))
        assert rec.start.tzinfo is not None
        assert rec.sample_rate_hz >= 0 and np.isfinite(rec.sample_rate_hz)
    return records


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOURCES = ["steim2_be_512_multi", "steim1_le_40hz", "int16_be_100hz", "float32_be_40hz", "steim2_le_40hz"]


@PROPERTY
@given(st.binary(max_size=9000))
def test_arbitrary_bytes_raise_only_mseed_error(payload: bytes) -> None:
    looks_like_mseed(payload)
    _decode_or_mseed_error(payload)


@PROPERTY
@given(
    st.sampled_from([b"000001D ", b"      M\x00", b"123456Q "]),
    st.sampled_from([b"", b"ST01 00HHZXX"]),
    st.binary(max_size=4200),
)
def test_header_shaped_bytes_raise_only_mseed_error(head: bytes, codes: bytes, rest: bytes) -> None:
    _decode_or_mseed_error(head + codes + rest)


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    data = bytearray(raw(draw(st.sampled_from(SOURCES))))
    # Mostly in the header and blockettes (first 64 bytes of a record), some anywhere.
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            record = draw(st.integers(0, len(data) // 512 - 1))
            pos = record * 512 + draw(st.integers(0, 71))
        else:
            pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@PROPERTY
@given(mutated_fixture())
def test_mutated_fixtures_raise_only_mseed_error(payload: bytes) -> None:
    _decode_or_mseed_error(payload)


@PROPERTY
@given(
    st.sampled_from(SOURCES),
    st.sampled_from([(30, "H"), (32, "h"), (34, "h"), (40, "i"), (44, "H"), (46, "H"), (20, "H"), (22, "H")]),
    st.integers(0, 2**32 - 1),
)
def test_mutated_header_fields_raise_only_mseed_error(name: str, field: tuple[int, str], value: int) -> None:
    offset, code = field
    data = first_record(name)
    order = ">" if struct.unpack_from(">H", data, 20)[0] < 3000 else "<"
    width = struct.calcsize(code)
    value %= 1 << (8 * width)
    if code.islower():
        value -= (value >> (8 * width - 1)) << (8 * width)
    _decode_or_mseed_error(patched(data, offset, order + code, value))
