"""Hostile MQTT input for the fuzz targets: topics and payloads, miniSEED records.

Hypothesis draws one seed per case (cheap: hypothesis' own per-draw bookkeeping would cost ~10 ms a
message on this machine); the generators below build the case from it with a seeded ``random.Random``.
Every generator mixes well-formed values with their broken neighbours, so that cases get through the
early checks (topic, size, decoding) and reach the later ones (schema, identity, registry, time).
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tocsin.ingest.mseed import decode_mseed
from tocsin.schemas.common import Family
from tocsin.schemas.registry import Area, Device, Registry
from tocsin.schemas.topics import mqtt_status, mqtt_telemetry

NOW = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
SITE = "s1"
DEVICES = {Family.HYDRO: "RG01", Family.FIRE: "CAM01", Family.SEISMIC: "TOC01", Family.HAZMAT: "GAS01"}
REGISTRY = Registry(
    devices=[
        Device(device_id=d, family=f, site=SITE, lat=30.0, lon=120.0, area=Area(code="330110", town="青山镇"))
        for f, d in DEVICES.items()
    ]
)
Rng = random.Random
Gen = Callable[[Rng], Any]

# -------------------------------------------------------------------------------------------------
# Values

ODD_CHARS = ["\x00", "\x1b", "\u202e", "\u2066", "\u200b", "\ufeff", "\u2028", "\U0001f525", "é", "\ud800", "\udfff"]
HUGE_INTS = [2**63, -(2**63) - 1, 10**30, 2**1024, -(10**400)]
SPECIAL_FLOATS = [float("nan"), float("inf"), -float("inf"), 1e-30, 1e308, -0.0, 5e-324, 0.1, 9.99, 10.0, 1000.5]
NUMERIC_STRINGS = ["1.5", " 7 ", "7", "1e3", "NaN", "Infinity", "0x10", "", "true"]


def char(rng: Rng) -> str:
    k = rng.randrange(4)
    if k == 0:
        return rng.choice(ODD_CHARS)
    if k == 1:
        return chr(rng.randrange(0xD800, 0xE000))  # a lone surrogate
    if k == 2:
        return chr(rng.randrange(0x20, 0x7F))
    return chr(rng.randrange(0, 0x110000))


def text(rng: Rng, max_len: int = 12) -> str:
    return "".join(char(rng) for _ in range(rng.randrange(max_len + 1)))


def number(rng: Rng) -> float:
    k = rng.randrange(3)
    if k == 0:
        return rng.choice(SPECIAL_FLOATS)
    if k == 1:
        return rng.uniform(-1e6, 1e6)
    return struct.unpack("d", rng.randbytes(8))[0]  # any bit pattern


def scalar(rng: Rng) -> Any:
    gens: list[Gen] = [
        lambda r: r.choice([True, False, None]),
        lambda r: r.randrange(-(10**6), 10**6),
        lambda r: r.choice(HUGE_INTS),
        number,
        lambda r: r.choice(NUMERIC_STRINGS),
        text,
    ]
    return rng.choice(gens)(rng)


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def weird(rng: Rng) -> Any:
    k = rng.randrange(6)
    if k == 0:
        return [scalar(rng) for _ in range(rng.randrange(4))]
    if k == 1:
        return {text(rng, 5): scalar(rng) for _ in range(rng.randrange(3))}
    if k == 2:
        return nested(rng.randrange(1, 40))
    return scalar(rng)


def iso(offset_s: float) -> str:
    return (NOW + timedelta(seconds=offset_s)).isoformat()


def timestamp(rng: Rng) -> Any:
    k = rng.randrange(5)
    if k == 0:
        return iso(rng.uniform(-10 * 86_400, 10 * 86_400))
    if k == 1:
        return rng.choice(
            ["2026-07-01T08:00:00", "2026-02-30T00:00:00Z", "1782892800", "yesterday", "9999-12-31T23:59:59Z"]
        )
    if k == 2:
        return rng.randrange(2**40)
    return scalar(rng)


# -------------------------------------------------------------------------------------------------
# JSON telemetry


def base_reading(family: Family, kind: int) -> dict[str, Any]:
    """A valid reading of the family's device (``kind`` picks the type within hydro)."""
    common = {"device_id": DEVICES[family], "site": SITE, "ts": iso(-5), "seq": 1}
    if family is Family.HYDRO:
        if kind % 2:
            return {"type": "hydro.level", **common, "level_m": 12.5}
        return {"type": "hydro.rain", **common, "rain_mm": 2.0, "interval_s": 300}
    if family is Family.FIRE:
        return {"type": "fire.detection", **common, "kind": "smoke", "confidence": 0.9, "bearing_deg": 45.0}
    if family is Family.SEISMIC:
        return {"type": "seismic.waveform", **common, "sample_rate_hz": 100, "samples": [0.0, 1e-6, -2e-6]}
    return {"type": "hazmat.gas", **common, "gas": "H2S", "value": 12.0, "unit": "mg/m3"}


def json_reading(rng: Rng) -> tuple[str, bytes]:
    family = rng.choice(list(Family))
    obj = base_reading(family, rng.randrange(2))
    obj["seq"] = rng.randrange(10**6)
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        op = rng.randrange(9)
        key = rng.choice([*obj.keys(), "extra", "type"])
        if op == 0:
            obj.pop(key, None)
        elif op == 1:
            obj[key] = weird(rng)
        elif op == 2:
            obj["ts"] = timestamp(rng)
        elif op == 3:  # spoofed identity
            obj[rng.choice(["device_id", "site"])] = rng.choice(["RG99", "s2", "TOC01", "../x", "a/b", "+", ""])
        elif op == 4:
            obj["seq"] = rng.choice([rng.randrange(-5, 5), rng.choice(HUGE_INTS), rng.choice(NUMERIC_STRINGS), True])
        elif op == 5 and family is Family.SEISMIC:
            obj["samples"] = rng.choice(
                [[number(rng) for _ in range(rng.randrange(20))], [1e-6] * rng.randrange(25_000), []]
            )
        elif op == 6 and family is Family.SEISMIC:
            obj["sample_rate_hz"] = rng.choice(
                [number(rng), True, rng.choice(NUMERIC_STRINGS), rng.randrange(-1, 2000)]
            )
        elif op == 7:
            obj["type"] = rng.choice(["hydro.rain", "hydro.level", "fire.detection", "hazmat.gas", "x"])
        else:
            obj[text(rng, 8)] = scalar(rng)
    raw = json.dumps(obj, allow_nan=True, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    how = rng.randrange(8)
    if how == 0:  # truncated
        raw = raw[: rng.randrange(len(raw))]
    elif how == 1:  # oversize
        raw = raw[:-1] + b', "pad": "' + b"x" * rng.choice([4_000, 262_200, 300_000]) + b'"}'
    elif how == 2:  # a nested value, deeper than the parser's recursion limit or not
        depth = rng.choice([10, 900, 1_100, 5_000, 100_000])
        raw = raw[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    elif how == 3:  # bytes flipped
        data = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        raw = bytes(data)
    return mqtt_telemetry(family, SITE, DEVICES[family]), raw


# -------------------------------------------------------------------------------------------------
# miniSEED records (SEED 2.4 fixed header, blockettes 1000 / 1001 / 100, INT32 data; Steim1/2 records)


def mseed_record(rng: Rng) -> bytes:
    """One record built field by field; each header and blockette field is valid or (1 in 8) anything."""

    def field(valid: Any, anything: Gen) -> Any:
        return anything(rng) if rng.randrange(8) == 0 else valid

    def u(bits: int) -> Gen:
        return lambda r: r.randrange(1 << bits)

    start = NOW - timedelta(seconds=rng.randrange(120))
    rate = rng.choice(
        [None, None, 1e-30, -1.0, 0.0, 1e30, 100.0, 0.5, 9.0, 10.0, struct.unpack("f", rng.randbytes(4))[0]]
    )
    data_offset = 64 if rate is None else 80
    nsamples = field(100, u(16))
    order = rng.choice([">", "<"])
    head = bytearray(48)
    head[0:6] = field(b"%06d" % rng.randrange(10**6), lambda r: r.choice([b"      ", b"00 001", b"abcdef"]))
    head[6:7] = field(b"D", lambda r: r.choice([b"R", b"Q", b"M", b"X", b"\x00"]))
    head[7:8] = field(b" ", lambda r: r.choice([b"\x00", b"A"]))
    head[8:20] = field(b"TOC01  HHZXX", lambda r: r.randbytes(12))
    signed16 = [-32768, -1, 0, 1, 32767]
    fixed = [
        ("H", field(start.year, u(16))),
        ("H", field(start.timetuple().tm_yday, u(16))),
        ("B", field(start.hour, u(8))),
        ("B", field(start.minute, u(8))),
        ("B", field(start.second, u(8))),
        ("B", field(0, u(8))),
        ("H", field(0, u(16))),
        ("H", nsamples),
        ("h", field(100, lambda r: r.choice(signed16))),
        ("h", field(1, lambda r: r.choice(signed16))),
        ("B", field(0, u(8))),
        ("B", field(0, u(8))),
        ("B", field(0, u(8))),
        ("B", field(3, u(8))),
        ("i", field(0, lambda r: r.choice([-(2**31), -1, 1, 2**31 - 1]))),
        ("H", field(data_offset, u(16))),
        ("H", field(48, u(16))),
    ]
    struct.pack_into(order + "".join(f for f, _ in fixed), head, 20, *(v for _, v in fixed))
    b1000 = struct.pack(
        order + "HHBBBB",
        1000,
        field(56, u(16)),
        field(3, u(8)),
        field(1 if order == ">" else 0, u(8)),
        field(9, u(8)),
        0,
    )
    b1001 = struct.pack(
        order + "HHbbbb",
        1001,
        field(0 if rate is None else 64, u(16)),
        0,
        field(0, lambda r: r.randrange(-128, 128)),
        0,
        0,
    )
    body = bytearray(head + b1000 + b1001)
    if rate is not None:
        b100 = struct.pack(order + "HHf4x", 100, 0, rate)
        body += b100 if rng.random() < 0.9 else b100[:6]
    body = body.ljust(data_offset, b"\x00")
    count = max(0, min(nsamples, 100))
    body += struct.pack(order + f"{count}i", *(rng.randrange(-(2**31), 2**31) for _ in range(count)))
    record = bytes(body.ljust(512, b"\x00"))
    if rng.randrange(5) == 0:  # any byte of the header and blockettes
        pos = rng.randrange(80)
        record = record[:pos] + bytes([rng.randrange(256)]) + record[pos + 1 :]
    return record


def _golden_steim_records() -> list[bytes]:
    """The Steim1/Steim2 records of the golden files (tests/ingest/golden), cut at their record length."""
    out = []
    for path in sorted((Path(__file__).resolve().parents[1] / "ingest" / "golden").glob("steim*.mseed")):
        data = path.read_bytes()
        reclen = decode_mseed(data)[0].record_length
        out += [data[i : i + reclen] for i in range(0, len(data), reclen)]
    return out


STEIM_RECORDS = _golden_steim_records()


def steim_record(rng: Rng) -> bytes:
    """A real Steim1/Steim2 record (decoded by libmseed) with bytes of its header, blockettes or
    compressed frames (control words, integration constants, differences) replaced."""
    record = bytearray(rng.choice(STEIM_RECORDS))
    for _ in range(rng.randrange(0, 8)):
        k = rng.randrange(4)
        if k == 0:  # header and blockettes
            record[rng.randrange(64)] = rng.randrange(256)
        elif k == 1:  # a whole word of the frames
            at = rng.randrange(64, len(record) - 4)
            record[at : at + 4] = rng.randbytes(4)
        elif k == 2:  # the sample count or the beginning of data
            record[rng.choice([30, 31, 44, 45])] = rng.randrange(256)
        else:
            record[rng.randrange(64, len(record))] = rng.randrange(256)
    return bytes(record)


def mseed_payload(rng: Rng) -> tuple[str, bytes]:
    make = mseed_record if rng.randrange(3) else steim_record
    raw = b"".join(make(rng) for _ in range(rng.choice([1, 1, 2, 3])))
    if rng.randrange(6) == 0:
        raw = raw[: rng.randrange(len(raw) + 1)]
    family = rng.choice([Family.SEISMIC, Family.SEISMIC, Family.SEISMIC, Family.HYDRO])
    return mqtt_telemetry(family, SITE, DEVICES[family]), raw


# -------------------------------------------------------------------------------------------------
# Topics, status, raw bytes

BAD_TOPICS = [
    "",
    "/",
    "tocsin/v1",
    "tocsin/v1/hydro/s1/RG01",
    "tocsin/v1/hydro/s1/RG01/telemetry/extra",
    "tocsin/v2/hydro/s1/RG01/telemetry",
    "tocsin/v1/volcano/s1/RG01/telemetry",
    "tocsin/v1/hydro//RG01/telemetry",
    "tocsin/v1/hydro/s1/RG01/command",
    "$SYS/broker/uptime",
    "tocsin/v1/hydro/s1/RG01/" + "a/" * 5000 + "telemetry",
]


def topic_part(rng: Rng) -> str:
    return rng.choice([lambda r: r.choice([SITE, "RG01", "TOC01", "", "+", "#", "a b", "x" * 70]), text])(rng)


def bad_topic(rng: Rng) -> str:
    k = rng.randrange(4)
    if k == 0:
        return rng.choice(BAD_TOPICS)
    if k == 1:
        return "/".join(["tocsin", *(topic_part(rng) for _ in range(5))])
    if k == 2:
        fam = rng.choice([f.value for f in Family])
        return f"tocsin/v1/{fam}/{topic_part(rng)}/{topic_part(rng)}/{rng.choice(['telemetry', 'status'])}"
    return text(rng, 40)


def status_message(rng: Rng) -> tuple[str, bytes]:
    family = rng.choice(list(Family))
    k = rng.randrange(4)
    if k == 0:
        payload = rng.choice([b"online", b"offline", b" online\n", b"OFFLINE", b"", b"\xff\xfe", b"{", b"[]"])
    elif k == 1:
        obj: dict[str, Any] = {"state": rng.choice(["online", "offline", scalar(rng)])}
        for key, gen in (
            ("ts", timestamp),
            ("reason", text),
            ("device_id", topic_part),
            ("family", scalar),
            ("x", weird),
        ):
            if rng.random() < 0.3:
                obj[key] = gen(rng)
        payload = json.dumps(obj, allow_nan=True).encode("utf-8", "surrogatepass")
    elif k == 2:
        payload = b'{"state":"online","reason":"' + b"x" * rng.choice([100, 4_000, 5_000, 6_000_000]) + b'"}'
    else:
        payload = rng.randbytes(rng.randrange(64))
    return mqtt_status(family, SITE, DEVICES[family]), payload


def any_message(rng: Rng) -> tuple[str, bytes]:
    k = rng.randrange(8)
    if k <= 2:
        return json_reading(rng)
    if k == 3:
        return mseed_payload(rng)
    if k == 4:
        return status_message(rng)
    if k == 5:
        topic = rng.choice([bad_topic(rng), mqtt_telemetry(Family.HYDRO, SITE, "RG01")])
        return topic, rng.randbytes(rng.randrange(600))
    if k == 6:
        return bad_topic(rng), json_reading(rng)[1]
    fam = rng.choice(list(Family))
    return mqtt_telemetry(fam, SITE, DEVICES[fam]), b"[" * rng.randrange(1, 200_000)


MESSAGES = st.integers(0, 2**64 - 1).map(lambda seed: any_message(random.Random(seed)))
"""(topic, payload) of one MQTT message, from a hypothesis-drawn seed."""
