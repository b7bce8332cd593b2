"""Regenerate the miniSEED golden fixtures used by tests/ingest/test_mseed.py.

Development-time only: needs ObsPy, which is NOT a project dependency. Run it from a throwaway
virtualenv (see README.md in this folder):

    python3 -m venv /tmp/obspy-mseed && /tmp/obspy-mseed/bin/pip install obspy
    /tmp/obspy-mseed/bin/python tests/ingest/golden/make_mseed_golden.py

For every fixture it writes NAME.mseed with ObsPy, then reads it back with ObsPy one record at a
time and writes NAME.json with what ObsPy decoded: per record the codes, start time (to the
microsecond), sampling rate, encoding, byte order, record length and the samples.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import obspy
from obspy import Trace, UTCDateTime, read

HERE = Path(__file__).resolve().parent

# Per-block noise amplitudes chosen so the differences need every Steim1 (8/16/32-bit) and Steim2
# (4/5/6/8/10/15/30-bit) packing.
_AMPLITUDES = [3, 7, 15, 60, 250, 8000, 100_000_000, 1, 0]


def _int_signal(n: int, seed: int, lo: int = -(2**31), hi: int = 2**31 - 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = 20.0 * np.sin(2 * np.pi * t / 97.0)
    noise = np.empty(n)
    for i in range(0, n, 25):
        amp = _AMPLITUDES[(i // 25) % len(_AMPLITUDES)]
        noise[i : i + 25] = rng.integers(-amp, amp + 1, size=len(noise[i : i + 25]))
    return np.clip(np.round(base + noise), lo, hi).astype(np.int32)


def _float_signal(n: int, seed: int, dtype: type) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 1.5e-3 * np.sin(2 * np.pi * t / 33.0) + rng.normal(0.0, 1e-4, n)
    x[::17] *= 1e6  # some large magnitudes too
    x[5] = 0.0
    x[6] = -2.5
    return x.astype(dtype)


# name -> (data, sampling rate, start time, encoding, record length, byte order)
FIXTURES = {
    "int16_be_100hz": (
        _int_signal(300, 1, -(2**15), 2**15 - 1).astype(np.int16),
        100.0,
        "2024-07-01T12:00:00.123456",
        "INT16",
        512,
        ">",
    ),
    "int32_be_40hz": (_int_signal(250, 2), 40.0, "2023-12-31T23:59:58.987654", "INT32", 4096, ">"),
    "int32_le_100hz": (_int_signal(300, 3), 100.0, "2024-02-29T06:30:15.000001", "INT32", 512, "<"),
    "float32_be_40hz": (_float_signal(200, 4, np.float32), 40.0, "2024-07-01T12:00:00.500250", "FLOAT32", 4096, ">"),
    "float64_be_0p1hz": (_float_signal(120, 5, np.float64), 0.1, "2024-03-10T01:02:03.456789", "FLOAT64", 4096, ">"),
    "steim1_be_100hz": (_int_signal(900, 6), 100.0, "2024-07-01T12:00:00.123456", "STEIM1", 4096, ">"),
    "steim2_be_100hz": (_int_signal(900, 7), 100.0, "2024-07-01T12:00:00.999999", "STEIM2", 4096, ">"),
    "steim2_be_512_multi": (_int_signal(1500, 8), 100.0, "2024-07-01T23:59:59.876543", "STEIM2", 512, ">"),
    "steim1_le_40hz": (_int_signal(300, 9), 40.0, "2024-07-01T12:00:00.000050", "STEIM1", 512, "<"),
    "steim2_le_40hz": (_int_signal(800, 10), 40.0, "2024-07-01T12:00:00.000049", "STEIM2", 512, "<"),
}

# Copies of a fixture with the fixed header's time correction (units of 0.0001 s) patched in,
# with the "time correction applied" activity flag clear (it shifts the start) or set (it does not).
PATCHED = {
    "int32_be_timecorr": ("int32_be_40hz", 12345, False),
    "int32_be_timecorr_applied": ("int32_be_40hz", 12345, True),
    "steim2_be_timecorr_neg": ("steim2_be_100hz", -7, False),
}


def _write(data: np.ndarray, rate: float, start: str, encoding: str, reclen: int, byteorder: str) -> bytes:
    tr = Trace(
        data,
        header={
            "network": "XX",
            "station": "TOC01",
            "location": "00",
            "channel": "HHZ",
            "sampling_rate": rate,
            "starttime": UTCDateTime(start),
        },
    )
    buf = io.BytesIO()
    tr.write(buf, format="MSEED", encoding=encoding, reclen=reclen, byteorder=byteorder)
    return buf.getvalue()


def _patch_time_correction(raw: bytes, reclen: int, correction: int, applied: bool) -> bytes:
    out = bytearray(raw)
    for off in range(0, len(out), reclen):
        order = ">" if struct.unpack_from(">H", out, off + 20)[0] < 3000 else "<"
        struct.pack_into(order + "i", out, off + 40, correction)
        if applied:
            out[off + 36] |= 0x02
        else:
            out[off + 36] &= ~0x02 & 0xFF
    return bytes(out)


def _sidecar(raw: bytes, reclen: int) -> dict:
    records = []
    for off in range(0, len(raw), reclen):
        (tr,) = read(io.BytesIO(raw[off : off + reclen]), format="MSEED")
        st = tr.stats
        is_int = np.issubdtype(tr.data.dtype, np.integer)
        records.append(
            {
                "network": st.network,
                "station": st.station,
                "location": st.location,
                "channel": st.channel,
                "starttime": st.starttime.datetime.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "sampling_rate": st.sampling_rate,
                "npts": int(st.npts),
                "encoding": st.mseed.encoding,
                "byteorder": st.mseed.byteorder,
                "record_length": int(st.mseed.record_length),
                "samples": [int(v) for v in tr.data] if is_int else [float(v) for v in tr.data],
            }
        )
    return {"obspy_version": obspy.__version__, "record_length": reclen, "records": records}


def main() -> None:
    written: dict[str, tuple[bytes, int]] = {}
    for name, (data, rate, start, encoding, reclen, byteorder) in FIXTURES.items():
        written[name] = (_write(data, rate, start, encoding, reclen, byteorder), reclen)
    for name, (source, correction, applied) in PATCHED.items():
        raw, reclen = written[source]
        written[name] = (_patch_time_correction(raw, reclen, correction, applied), reclen)
    for name, (raw, reclen) in written.items():
        (HERE / f"{name}.mseed").write_bytes(raw)
        sidecar = _sidecar(raw, reclen)
        (HERE / f"{name}.json").write_text(json.dumps(sidecar) + "\n")
        print(f"{name}: {len(raw)} bytes, {len(sidecar['records'])} record(s)")


if __name__ == "__main__":
    main()
