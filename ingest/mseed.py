"""Decode miniSEED 2.x data records published by seismic stations as binary MQTT payloads.

Pure: bytes in, records out, no I/O. A payload is one or more concatenated data records, each
with a 48-byte fixed header, a chain of blockettes that must include blockette 1000 (encoding,
word order, record length 256..8192 bytes) and a data section in one of the encodings INT16,
INT32, FLOAT32, FLOAT64, STEIM1 or STEIM2. Anything malformed raises :class:`MseedError` (a
``ValueError``) and nothing else, whatever the bytes.

Byte orders: the fixed header and blockettes may be big-endian (standard) or little-endian; as
libmseed does, the header's order is found from the plausibility of the BTIME year and day. The
data section follows the word order of blockette 1000 (0 little, 1 big), for Steim frames too.

Who does what: this module checks the header, the blockette chain, the times, the rate and the
layout itself, strictly, with its own error messages (libmseed accepts much of what is refused here:
non-ASCII codes, any word order byte, a failed Steim integrity check, which it only logs). The
fixed-size encodings are read with numpy. Steim1/Steim2 frames are decompressed by libmseed
(pymseed), then checked here: sample count, reverse integration constant, 64-byte frame alignment.
Why: docs/architecture.md, "Libraries considered".

Reference: SEED Reference Manual v2.4, chapter 8 (fixed section of data header), blockettes 100,
1000 and 1001, and appendix B (Steim1 / Steim2 compression).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from pymseed import MS3Record

__all__ = [
    "ENCODINGS",
    "MseedError",
    "MseedRecord",
    "decode_mseed",
    "looks_like_mseed",
    "to_packet_fields",
]

FIXED_HEADER_LEN = 48
MIN_RECORD_LEN = 256
MAX_RECORD_LEN = 8192
STEIM_FRAME_LEN = 64

# SEED data encoding code -> name; only these are decoded.
ENCODINGS: dict[int, str] = {1: "INT16", 3: "INT32", 4: "FLOAT32", 5: "FLOAT64", 10: "STEIM1", 11: "STEIM2"}
# Encoding codes SEED defines but this decoder does not support, for clearer error messages.
_KNOWN_UNSUPPORTED = {
    0: "ASCII",
    2: "INT24",
    12: "GEOSCOPE24",
    13: "GEOSCOPE16/3",
    14: "GEOSCOPE16/4",
    15: "USNSN",
    16: "CDSN",
    17: "GRAEFENBERG",
    18: "IPG",
    19: "STEIM3",
    30: "SRO",
    31: "HGLP",
    32: "DWWSSN",
    33: "RSTN",
}
_FIXED_DTYPES = {1: "i2", 3: "i4", 4: "f4", 5: "f8"}

_QUALITY = b"DRQM"
_SEQ_CHARS = frozenset(b"0123456789 ")
_RESERVED_CHARS = frozenset(b" \x00")
_CHANNEL_RE = re.compile(r"[A-Z0-9]{3}")
_TIME_CORRECTION_APPLIED = 0x02  # activity flags bit 1


class MseedError(ValueError):
    """The payload is not a well-formed miniSEED 2.x data record sequence this decoder supports."""


@dataclass(frozen=True, eq=False)
class MseedRecord:
    """One decoded data record.

    ``start`` is the time of the first sample (UTC, microsecond resolution): the header's BTIME,
    plus its time correction unless the activity flags say it is already applied, plus the
    microseconds of blockette 1001 when present. ``samples`` is a read-only float64 array.
    """

    network: str
    station: str
    location: str
    channel: str
    start: datetime
    sample_rate_hz: float
    samples: npt.NDArray[np.float64]
    encoding: str
    quality: str = "D"
    sequence_number: int | None = None  # None when the header's six characters are all spaces
    record_length: int = 512
    byte_order: str = ">"  # of the data section: ">" big-endian, "<" little-endian

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[0])


def looks_like_mseed(payload: bytes) -> bool:
    """Cheap check of the first 8 bytes: six digits/spaces, a quality indicator, a space or NUL.

    True does not mean the payload decodes; it tells binary miniSEED from JSON text.
    """
    if len(payload) < 8:
        return False
    head = bytes(payload[:8])
    return all(c in _SEQ_CHARS for c in head[:6]) and head[6] in _QUALITY and head[7] in _RESERVED_CHARS


def decode_mseed(payload: bytes) -> list[MseedRecord]:
    """Decode every record of ``payload`` (one or more concatenated miniSEED 2.x data records)."""
    data = bytes(payload)
    if len(data) < FIXED_HEADER_LEN:
        raise MseedError(f"payload of {len(data)} bytes is too short for a miniSEED record (48-byte fixed header)")
    records: list[MseedRecord] = []
    offset = 0
    while offset < len(data):
        try:
            rec = _decode_record(data, offset)
        except MseedError as exc:
            if not records:
                raise
            raise MseedError(f"record {len(records) + 1} at byte offset {offset}: {exc}") from None
        records.append(rec)
        offset += rec.record_length
    return records


def to_packet_fields(rec: MseedRecord) -> dict[str, Any]:
    """The fields of a ``seismic.waveform`` SeismicPacket for ``rec``; the gateway adds device_id and site.

    The sample rate, sample count and amplitude are left to the schema's own validation.
    """
    if not _CHANNEL_RE.fullmatch(rec.channel):
        raise MseedError(f"channel code {rec.channel!r} is not 3 upper-case letters or digits")
    return {
        "type": "seismic.waveform",
        "channel": rec.channel,
        "sample_rate_hz": float(rec.sample_rate_hz),
        "unit": "counts",
        "samples": [float(x) for x in rec.samples.tolist()],
        "ts": rec.start,
    }


# --------------------------------------------------------------------------------------------------
# One record


def _decode_record(data: bytes, offset: int) -> MseedRecord:
    avail = len(data) - offset
    if avail < FIXED_HEADER_LEN:
        raise MseedError(f"only {avail} bytes left, too short for a 48-byte miniSEED fixed header")
    head = data[offset : offset + FIXED_HEADER_LEN]

    seq_chars = head[0:6]
    if not all(c in _SEQ_CHARS for c in seq_chars):
        raise MseedError(f"sequence number {seq_chars!r} is not six digits or spaces: not a miniSEED record")
    if head[6] not in _QUALITY:
        raise MseedError(f"quality indicator {head[6:7]!r} is not one of D, R, Q, M: not a miniSEED data record")
    if head[7] not in _RESERVED_CHARS:
        raise MseedError(f"reserved header byte {head[7:8]!r} is not a space")
    seq_text = seq_chars.decode("ascii").strip()
    if " " in seq_text:
        raise MseedError(f"sequence number {seq_chars!r} has embedded spaces")
    sequence_number = int(seq_text) if seq_text else None

    station = _code(head[8:13], "station")
    location = _code(head[13:15], "location")
    channel = _code(head[15:18], "channel")
    network = _code(head[18:20], "network")

    hb = _header_byte_order(head)
    (
        year,
        doy,
        hour,
        minute,
        second,
        _unused,
        fract,
        nsamples,
        rate_factor,
        rate_mult,
        act_flags,
        _io_flags,
        _dq_flags,
        _nblockettes,
        time_correction,
        data_offset,
        blockette_offset,
    ) = struct.unpack(hb + "HHBBBBHHhhBBBBiHH", head[20:48])

    # Walk the blockette chain within what is available (the record length is not known yet).
    limit = min(avail, MAX_RECORD_LEN)
    b1000: tuple[int, int, int] | None = None
    b1001_usec = 0
    b100_rate: float | None = None
    blockettes_end = FIXED_HEADER_LEN
    pos = blockette_offset
    previous = 0
    while pos != 0:
        if pos < FIXED_HEADER_LEN or pos <= previous:
            raise MseedError(f"blockette offset {pos} is inside the fixed header or goes backwards")
        if pos + 4 > limit:
            raise MseedError(f"blockette at offset {pos} lies beyond the {limit} bytes available")
        btype, nxt = struct.unpack_from(hb + "HH", data, offset + pos)
        size = {1000: 8, 1001: 8, 100: 12}.get(btype, 4)
        if pos + size > limit:
            raise MseedError(f"blockette {btype} at offset {pos} is truncated")
        if btype == 1000:
            if b1000 is not None:
                raise MseedError("more than one blockette 1000")
            enc, word_order, exponent = struct.unpack_from("BBB", data, offset + pos + 4)
            b1000 = (enc, word_order, exponent)
        elif btype == 1001:
            (b1001_usec,) = struct.unpack_from("b", data, offset + pos + 5)
        elif btype == 100:
            (b100_rate,) = struct.unpack_from(hb + "f", data, offset + pos + 4)
        blockettes_end = max(blockettes_end, pos + size)
        previous = pos
        pos = nxt
    if b1000 is None:
        raise MseedError("no blockette 1000: record length and encoding are unknown (miniSEED needs it)")

    enc, word_order, exponent = b1000
    if not 8 <= exponent <= 13:
        raise MseedError(f"blockette 1000 record length 2**{exponent} is outside 256..8192 bytes")
    reclen = 1 << exponent
    if reclen > avail:
        raise MseedError(f"record length mismatch: blockette 1000 says {reclen} bytes but only {avail} remain")
    if blockettes_end > reclen:
        raise MseedError(f"blockettes end at byte {blockettes_end}, past the {reclen}-byte record")
    if word_order not in (0, 1):
        raise MseedError(f"blockette 1000 word order {word_order} is neither 0 (little) nor 1 (big endian)")
    db = ">" if word_order == 1 else "<"
    if enc not in ENCODINGS:
        name = _KNOWN_UNSUPPORTED.get(enc)
        what = f"{enc} ({name})" if name else str(enc)
        raise MseedError(f"unsupported data encoding {what}; supported: {_supported()}")

    start = _start_time(year, doy, hour, minute, second, fract)
    if time_correction != 0 and not act_flags & _TIME_CORRECTION_APPLIED:
        start += timedelta(microseconds=time_correction * 100)
    start += timedelta(microseconds=b1001_usec)

    sample_rate = _sample_rate(rate_factor, rate_mult, b100_rate)

    if nsamples == 0:
        samples = np.zeros(0, dtype=np.float64)
    else:
        if not blockettes_end <= data_offset < reclen:
            raise MseedError(
                f"beginning of data {data_offset} is not between the end of the blockettes ({blockettes_end}) "
                f"and the end of the {reclen}-byte record"
            )
        body = data[offset + data_offset : offset + reclen]
        if enc in _FIXED_DTYPES:
            samples = _decode_fixed(body, enc, db, nsamples)
        else:
            record = data[offset : offset + reclen]
            samples = _decode_steim(record, body, 1 if enc == 10 else 2, db, nsamples)
    samples.flags.writeable = False

    return MseedRecord(
        network=network,
        station=station,
        location=location,
        channel=channel,
        start=start,
        sample_rate_hz=sample_rate,
        samples=samples,
        encoding=ENCODINGS[enc],
        quality=chr(head[6]),
        sequence_number=sequence_number,
        record_length=reclen,
        byte_order=db,
    )


def _supported() -> str:
    return ", ".join(f"{code} ({name})" for code, name in ENCODINGS.items())


def _code(raw: bytes, what: str) -> str:
    if not all(0x20 <= c < 0x7F for c in raw):
        raise MseedError(f"{what} code {raw!r} is not printable ASCII")
    return raw.decode("ascii").strip()


def _plausible_btime(year: int, doy: int) -> bool:
    return 1900 <= year <= 2100 and 1 <= doy <= 366


def _header_byte_order(head: bytes) -> str:
    """'>' or '<' for the fixed header, from which reading gives a plausible BTIME year and day."""
    for order in (">", "<"):
        year, doy = struct.unpack_from(order + "HH", head, 20)
        if _plausible_btime(year, doy):
            return order
    raise MseedError("BTIME year/day-of-year is implausible in either byte order (year 1900..2100, day 1..366)")


def _start_time(year: int, doy: int, hour: int, minute: int, second: int, fract: int) -> datetime:
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if doy > (366 if leap else 365):
        raise MseedError(f"BTIME day-of-year {doy} does not exist in {year}")
    if hour > 23 or minute > 59 or second > 60 or fract > 9999:
        raise MseedError(f"BTIME time {hour:02d}:{minute:02d}:{second:02d}.{fract:04d} is invalid")
    # second == 60 is a leap second; as libmseed does, it is counted as the first second of the next minute.
    return datetime(year, 1, 1, tzinfo=UTC) + timedelta(
        days=doy - 1, hours=hour, minutes=minute, seconds=second, microseconds=fract * 100
    )


def _sample_rate(factor: int, multiplier: int, b100_rate: float | None) -> float:
    """Nominal rate in Hz from SEED 2.4's factor/multiplier rules; blockette 100's actual rate wins."""
    if b100_rate is not None:
        if not np.isfinite(b100_rate) or b100_rate < 0:
            raise MseedError(f"blockette 100 sample rate {b100_rate} is not a finite non-negative number")
        return float(b100_rate)
    if factor == 0:
        return 0.0  # no regular sampling (e.g. log records)
    if multiplier == 0:
        raise MseedError(f"sample rate multiplier is 0 with factor {factor}")
    # Positive factor: samples per second; negative: seconds per sample. Positive multiplier
    # multiplies; negative divides.
    rate = float(factor) if factor > 0 else -1.0 / factor
    return rate * multiplier if multiplier > 0 else rate / -multiplier


# --------------------------------------------------------------------------------------------------
# Data sections


def _decode_fixed(body: bytes, enc: int, order: str, nsamples: int) -> npt.NDArray[np.float64]:
    dtype = np.dtype(order + _FIXED_DTYPES[enc])
    need = nsamples * dtype.itemsize
    if need > len(body):
        raise MseedError(
            f"sample count mismatch: {nsamples} {ENCODINGS[enc]} samples need {need} bytes, "
            f"the data section has {len(body)}"
        )
    values = np.frombuffer(body, dtype=dtype, count=nsamples)
    if enc in (4, 5):
        finite = np.isfinite(values)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise MseedError(f"{ENCODINGS[enc]} sample {bad} is not finite ({float(values[bad])})")
    return values.astype(np.float64)


def _libmseed_messages(exc: Exception) -> str:
    messages = [m.strip() for m in getattr(exc, "error_messages", None) or [] if m.strip()]
    return "; ".join(messages) or str(exc)


def _decode_steim(record: bytes, body: bytes, level: int, order: str, nsamples: int) -> npt.NDArray[np.float64]:
    """Steim1/Steim2 samples of one whole ``record`` (its data section is ``body``), decoded by libmseed.

    libmseed (through pymseed) does the decompression; the checks libmseed only warns about, or that
    this module words its own way, are made here: the frames must hold exactly the header's sample
    count, and the last sample must equal the reverse integration constant Xn of frame 0.
    """
    name = f"STEIM{level}"
    data_offset = len(record) - len(body)
    if data_offset % STEIM_FRAME_LEN:  # SEED 2.4 appendix B: frames are 64-byte aligned in the record
        raise MseedError(f"{name} data begins at byte {data_offset}, not on a 64-byte frame boundary")
    if len(body) < STEIM_FRAME_LEN:
        raise MseedError(f"sample count mismatch: {nsamples} {name} samples but no 64-byte frame fits the record")
    try:
        msr = MS3Record.parse(record, unpack_data=True, validate_crc=False)
        values = np.array(msr.np_datasamples, dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - whatever libmseed or its binding raises is a bad record
        detail = _libmseed_messages(exc)
        if "dnib" in detail:  # an undefined Steim2 layout (nibble 10 with dnib 00, nibble 11 with dnib 11)
            raise MseedError(f"{name} data has an invalid sub-nibble (undefined layout): {detail}") from None
        if re.search(r"decoded \d+ samples of \d+ expected", detail):
            raise MseedError(f"sample count mismatch: {name} frames and header disagree: {detail}") from None
        raise MseedError(f"{name} data cannot be decoded: {detail}") from None
    if values.shape[0] != nsamples:
        raise MseedError(
            f"sample count mismatch: header says {nsamples} samples, the {name} frames hold {values.shape[0]}"
        )
    (xn,) = struct.unpack_from(order + "i", body, 8)  # frame 0: control word, X0, Xn
    if int(values[-1]) != xn:
        raise MseedError(
            f"{name} integrity check failed: last sample {int(values[-1])} != reverse integration constant {xn}"
        )
    return values


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value
