"""tocsin replay: recorded feeds -> timeline -> paced, optionally rebased, QoS 1 publishing."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from tocsin.ingest.mseed import decode_mseed
from tocsin.ingest.validate import Accepted, validate_telemetry
from tocsin.schemas.telemetry import TELEMETRY_ADAPTER, GasReading, RainIncrement, WaterLevel
from tocsin.simulators.replay import (
    CsvDefaults,
    Progress,
    ReplayError,
    TimelineItem,
    format_progress,
    jsonl_timeline,
    main_replay,
    mseed_timeline,
    publish_timeline,
    read_timeline,
    rebase,
    schedule,
    shift_mseed_record,
)

GOLDEN = Path(__file__).resolve().parents[1] / "ingest" / "golden"
CST = timezone(timedelta(hours=8))


def _rain(device: str, site: str, ts: str, seq: int, mm: float = 1.5) -> str:
    return json.dumps(
        {
            "type": "hydro.rain",
            "device_id": device,
            "site": site,
            "ts": ts,
            "seq": seq,
            "rain_mm": mm,
            "interval_s": 300,
        }
    )


def _gas(device: str, site: str, ts: str, seq: int, value: float) -> str:
    obj = {"type": "hazmat.gas", "device_id": device, "site": site, "ts": ts, "seq": seq}
    return json.dumps(obj | {"gas": "CH4", "value": value, "unit": "%LEL"})


# --------------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_telemetry_lines_keep_their_bytes_and_get_their_topic(tmp_path: Path) -> None:
    lines = [
        _rain("RG01", "qs", "2026-11-29T08:05:00+08:00", 1),
        _gas("GD01", "park", "2026-11-29T08:00:10+08:00", 7, 3.0),
        _rain("RG01", "qs", "2026-11-29T08:00:00+08:00", 0),
    ]
    path = tmp_path / "feed.jsonl"
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    items = read_timeline([path])
    # sorted by device time; bytes exactly as recorded
    assert [it.payload for it in items] == [lines[2].encode(), lines[1].encode(), lines[0].encode()]
    assert [it.topic for it in items] == [
        "tocsin/v1/hydro/qs/RG01/telemetry",
        "tocsin/v1/hazmat/park/GD01/telemetry",
        "tocsin/v1/hydro/qs/RG01/telemetry",
    ]
    assert items[0].t == datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
    assert {it.kind for it in items} == {"json"}


def test_jsonl_scenario_messages_with_text_base64_and_derived_topics() -> None:
    good = _rain("RG02", "qs", "2026-11-29T08:00:00+08:00", 3)
    junk = b"\xff\xfe not json"
    lines = [
        json.dumps({"t": "2026-11-29T00:00:30Z", "topic": "tocsin/v1/hydro/qs/RG02/telemetry", "payload": "{oops"}),
        json.dumps({"t": "2026-11-29T00:00:00Z", "payload": good}),
        json.dumps(
            {
                "t": 1795910460.0,
                "topic": "tocsin/v1/hydro/qs/RG02/telemetry",
                "payload_b64": base64.b64encode(junk).decode(),
            }
        ),
    ]
    items = sorted(jsonl_timeline(lines), key=lambda it: it.t)
    assert [it.payload for it in items] == [good.encode(), b"{oops", junk]
    assert [it.kind for it in items] == ["json", "bytes", "bytes"]
    assert items[0].topic == "tocsin/v1/hydro/qs/RG02/telemetry"
    assert items[2].t == datetime(2026, 11, 29, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"type": "hydro.nope", "device_id": "A", "site": "s", "ts": "2026-01-01T00:00:00Z"}', "unknown telemetry"),
        ('{"payload": "not telemetry"}', "no topic"),
        ("[1, 2]", "not a JSON object"),
        ('{"t": "2026-01-01T00:00:00Z", "topic": "x", "payload_b64": "@@@"}', "feed.jsonl:2"),
    ],
)
def test_jsonl_errors_name_the_line(line: str, message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        jsonl_timeline(["", line], source="feed.jsonl")


# --------------------------------------------------------------------------------------------------
# CSV


def test_csv_rows_become_validated_payloads_per_device(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        "timestamp,value,device_id,site,kind,unit,gas\n"
        "2026-11-29T00:00:00Z,1.5,RG01,qs,rain_mm,,\n"
        "2026-11-29T00:00:00Z,2.25,WL01,qs,level_m,,\n"
        "2026-11-29T00:10:00Z,4.0,RG01,qs,rain_mm,,\n"
        "2026-11-29T00:10:00Z,12.5,GD01,park,gas,ppm,H2S\n",
        encoding="utf-8",
    )
    items = read_timeline([path], csv_defaults=CsvDefaults(interval_s=60.0))
    readings = [TELEMETRY_ADAPTER.validate_json(it.payload) for it in items]
    r0, lvl, r1, gas = readings
    assert isinstance(r0, RainIncrement) and (r0.rain_mm, r0.interval_s, r0.seq) == (1.5, 60.0, 0)
    assert isinstance(r1, RainIncrement) and (r1.rain_mm, r1.interval_s, r1.seq) == (4.0, 600.0, 1)
    assert isinstance(lvl, WaterLevel) and (lvl.level_m, lvl.seq, lvl.device_id) == (2.25, 0, "WL01")
    assert isinstance(gas, GasReading) and (gas.gas, gas.unit, gas.value, gas.site) == ("H2S", "ppm", 12.5, "park")
    assert items[3].topic == "tocsin/v1/hazmat/park/GD01/telemetry"
    assert items[2].t == datetime(2026, 11, 29, 0, 10, tzinfo=UTC)


def test_csv_identity_from_options_and_epoch_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "level.csv"
    path.write_text("timestamp,value\n1764374400,3.5\n1764374700,3.75\n", encoding="utf-8")
    items = read_timeline([path], csv_defaults=CsvDefaults(device_id="WL9", site="river", kind="level_m"))
    assert [it.topic for it in items] == ["tocsin/v1/hydro/river/WL9/telemetry"] * 2
    assert [json.loads(it.payload)["level_m"] for it in items] == [3.5, 3.75]
    assert [json.loads(it.payload)["seq"] for it in items] == [0, 1]


def test_csv_without_identity_or_with_bad_values_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bare.csv"
    path.write_text("timestamp,value\n2026-11-29T00:00:00Z,1\n", encoding="utf-8")
    with pytest.raises(ReplayError, match="needs device_id, site and kind"):
        read_timeline([path])
    with pytest.raises(ReplayError, match=r"bare.csv:2"):
        read_timeline([path], csv_defaults=CsvDefaults(device_id="G", site="s", kind="gas", unit="%LEL", gas="C H4"))


# --------------------------------------------------------------------------------------------------
# miniSEED


def test_mseed_records_are_republished_one_by_one_on_the_station_topic() -> None:
    data = (GOLDEN / "steim2_be_512_multi.mseed").read_bytes()
    meta = json.loads((GOLDEN / "steim2_be_512_multi.json").read_text())
    items = mseed_timeline(data)
    assert len(items) == len(meta["records"]) == 5
    assert b"".join(it.payload for it in items) == data
    assert all(len(it.payload) == 512 and it.kind == "mseed" for it in items)
    assert {it.topic for it in items} == {"tocsin/v1/seismic/XX/TOC01/telemetry"}
    starts = [datetime.fromisoformat(r["starttime"].replace("Z", "+00:00")) for r in meta["records"]]
    assert [it.t for it in items] == starts
    # each record on its own is what the gateway accepts
    for it in items:
        assert isinstance(validate_telemetry(it.topic, it.payload, it.t + timedelta(seconds=10)), Accepted)


def test_mseed_as_json_packets_with_identity_override() -> None:
    data = (GOLDEN / "steim1_le_40hz.mseed").read_bytes()
    meta = json.loads((GOLDEN / "steim1_le_40hz.json").read_text())
    items = mseed_timeline(data, device_id="ST7", site="hills", mseed_as="json")
    assert [it.topic for it in items] == ["tocsin/v1/seismic/hills/ST7/telemetry"] * 2
    packets = [json.loads(it.payload) for it in items]
    assert [p["samples"] for p in packets] == [[float(x) for x in r["samples"]] for r in meta["records"]]
    assert packets[0]["sample_rate_hz"] == 40.0 and packets[0]["unit"] == "counts"
    assert packets[0]["ts"] == "2024-07-01T12:00:00.000050Z" and packets[0]["seq"] == 1


@pytest.mark.parametrize("name", ["steim2_be_512_multi", "steim1_le_40hz", "int32_be_timecorr", "int16_be_100hz"])
@pytest.mark.parametrize(
    "delta",
    [timedelta(days=700, seconds=3.25), timedelta(seconds=-86400 * 200 - 0.0001), timedelta(microseconds=149)],
)
def test_shift_mseed_record_moves_the_decoded_start_only(name: str, delta: timedelta) -> None:
    data = (GOLDEN / f"{name}.mseed").read_bytes()
    before = decode_mseed(data)
    shifted = b"".join(shift_mseed_record(it.payload, delta) for it in mseed_timeline(data))
    after = decode_mseed(shifted)
    rounded = timedelta(microseconds=100 * round(delta / timedelta(microseconds=100)))
    assert len(shifted) == len(data)
    for a, b in zip(before, after, strict=True):
        assert b.start == a.start + rounded
        assert b.samples.tolist() == a.samples.tolist()
        assert (b.station, b.channel, b.sample_rate_hz, b.sequence_number) == (
            a.station,
            a.channel,
            a.sample_rate_hz,
            a.sequence_number,
        )


# --------------------------------------------------------------------------------------------------
# Rebase and pacing


def test_rebase_shifts_every_timestamp_by_one_constant() -> None:
    items = sorted(
        jsonl_timeline(
            [
                _rain("RG01", "qs", "2026-11-29T08:00:00+08:00", 0),
                _gas("GD01", "park", "2026-11-29T00:00:07.5Z", 1, 1.0),
                json.dumps({"t": "2026-11-29T00:00:09Z", "topic": "tocsin/v1/hydro/qs/X/telemetry", "payload": "{x"}),
                json.dumps(
                    {"t": "2026-11-29T00:00:10Z", "topic": "tocsin/v1/hydro/qs/X/telemetry", "payload": '{"ts":"no"}'}
                ),
            ]
        ),
        key=lambda it: it.t,
    )
    now = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    out = rebase(items, now)
    assert [it.t for it in out] == [
        now,
        now + timedelta(seconds=7.5),
        now + timedelta(seconds=9),
        now + timedelta(seconds=10),
    ]
    first, second, third, fourth = (it.payload for it in out)
    assert fourth == b'{"ts":"no"}'
    assert json.loads(first)["ts"] == "2027-01-01T20:00:00+08:00"  # the device's own offset is kept
    assert json.loads(second)["ts"] == "2027-01-01T12:00:07.500000+00:00"
    assert third == b"{x"
    # everything but ts is untouched
    assert {k: v for k, v in json.loads(first).items() if k != "ts"} == {
        k: v for k, v in json.loads(items[0].payload).items() if k != "ts"
    }
    assert rebase([], now) == []
    backfill = rebase(items, now, "last")
    assert [it.t for it in backfill] == [now - timedelta(seconds=10 - s) for s in (0, 7.5, 9, 10)]
    assert json.loads(backfill[0].payload)["ts"] == "2027-01-01T19:59:50+08:00"


def test_rebase_raw_mseed_records_so_the_first_starts_now() -> None:
    items = mseed_timeline((GOLDEN / "steim2_be_512_multi.mseed").read_bytes())
    now = datetime(2026, 11, 29, 3, 0, 0, 123456, tzinfo=UTC)
    out = rebase(items, now)
    starts = [decode_mseed(it.payload)[0].start for it in out]
    assert abs((starts[0] - now).total_seconds()) < 1e-4
    assert [s - starts[0] for s in starts] == [it.t - items[0].t for it in items]


def test_schedule_golden_values() -> None:
    times = [0.0, 10.0, 10.0, 40.0, 100.0]
    assert schedule(times, 1.0) == [0.0, 10.0, 10.0, 40.0, 100.0]
    assert schedule(times, 10.0) == [0.0, 1.0, 1.0, 4.0, 10.0]
    assert schedule([5.0, 6.0], 0.5) == [0.0, 2.0]
    assert schedule(times, None) == [0.0] * 5
    assert schedule([], 2.0) == []
    with pytest.raises(ValueError):
        schedule(times, 0.0)


@given(
    st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=60),
    st.floats(min_value=0.01, max_value=1e4),
)
def test_schedule_property_monotonic_and_scaled_by_one_over_speed(raw: list[float], speed: float) -> None:
    times = sorted(raw)
    offsets = schedule(times, speed)
    assert offsets[0] == 0.0 and len(offsets) == len(times)
    assert all(b >= a for a, b in zip(offsets, offsets[1:], strict=False))
    for t, off in zip(times, offsets, strict=True):
        assert off == pytest.approx((t - times[0]) / speed, rel=1e-9, abs=1e-9)
    assert schedule(times, None) == [0.0] * len(times)
    real = schedule(times, 1.0)
    assert all(o * speed == pytest.approx(r, rel=1e-9, abs=1e-6) for o, r in zip(offsets, real, strict=True))


# --------------------------------------------------------------------------------------------------
# Progress bar


def test_format_progress_golden() -> None:
    assert format_progress(120, 300, 2.0, 3.0) == "[#########...............] 120/300  40.0%     60.0 msg/s ETA 0:00:03"
    assert format_progress(0, 5, 0.0, None, width=10) == "[..........] 0/5   0.0%      0.0 msg/s ETA --:--:--"
    assert format_progress(5, 5, 1.0, 3725.4, width=4) == "[####] 5/5 100.0%      5.0 msg/s ETA 1:02:05"


def test_progress_redraws_at_most_every_interval() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = Progress(10, out, clock=lambda: now[0], every_s=1.0)
    for k in range(1, 10):
        now[0] = k * 0.25
        bar.update(k, None)
    bar.close(10)
    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 4  # at 0.25 s, 1.25 s, 2.25 s, and the final one
    assert frames[-1].startswith("[########################] 10/10 100.0%") and frames[-1].endswith("ETA 0:00:00\n")


# --------------------------------------------------------------------------------------------------
# Integration: real Mosquitto


class _Subscriber:
    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"replay-sub-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def wait_for(self, n: int, timeout_s: float = 30.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    break
            time.sleep(0.02)
        time.sleep(0.2)  # nothing extra arrives
        with self.lock:
            return list(self.messages)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.integration
def test_replay_jsonl_at_high_speed_delivers_every_message_in_order(services: dict[str, str], tmp_path: Path) -> None:
    host, port = services["TOCSIN_MQTT_HOST"], int(services["TOCSIN_MQTT_PORT"])
    site = f"rp{uuid.uuid4().hex[:8]}"
    t0 = datetime(2026, 11, 29, 8, 0, tzinfo=CST)
    lines = []
    for k in range(60):
        ts = (t0 + timedelta(seconds=10 * k)).isoformat()
        lines.append(_rain(f"RG{k % 3}", site, ts, k // 3, mm=0.5 * (k % 4)))
        lines.append(_gas(f"GD{k % 2}", site, ts, k, value=float(k % 7)))
    path = tmp_path / "feed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sub = _Subscriber(host, port, f"tocsin/v1/+/{site}/+/telemetry")
    try:
        # original timestamps, 600 s of device time at 2000x (~0.3 s), through the command's body
        result = main_replay([path], host=host, port=port, speed=2000.0, show_progress=False)
        assert (result.messages, result.acked) == (120, 120)
        got = sub.wait_for(120)
        assert sorted(p for _t, p in got) == sorted(line.encode() for line in lines)
        for device in ("RG0", "RG1", "RG2", "GD0", "GD1"):
            seqs = [json.loads(p)["seq"] for t, p in got if t.endswith(f"/{device}/telemetry")]
            assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)) > 0

        # rebased, as fast as possible: the same payloads with ts shifted so the first is now
        sub.messages.clear()
        items = read_timeline([path])
        now = datetime.now(UTC)
        rebased = rebase(items, now)
        progress = io.StringIO()
        result = publish_timeline(rebased, host, port, speed=None, progress=progress, max_in_flight=16)
        assert result.acked == 120 and "120/120 100.0%" in progress.getvalue()
        got = sub.wait_for(120)
        assert [p for _t, p in got] == [it.payload for it in rebased]
        first = json.loads(got[0][1])
        assert datetime.fromisoformat(first["ts"]) == now
        for (_t, p), it in zip(got, items, strict=True):
            shifted = datetime.fromisoformat(json.loads(p)["ts"]) - datetime.fromisoformat(json.loads(it.payload)["ts"])
            assert shifted == now - items[0].t
    finally:
        sub.stop()


@pytest.mark.integration
def test_replay_mseed_raw_records_rebased(services: dict[str, str], tmp_path: Path) -> None:
    host, port = services["TOCSIN_MQTT_HOST"], int(services["TOCSIN_MQTT_PORT"])
    site = f"rp{uuid.uuid4().hex[:8]}"
    path = tmp_path / "station.mseed"
    path.write_bytes((GOLDEN / "steim1_le_40hz.mseed").read_bytes() + (GOLDEN / "steim2_be_100hz.mseed").read_bytes())
    original = decode_mseed(path.read_bytes())
    sub = _Subscriber(host, port, f"tocsin/v1/seismic/{site}/+/telemetry")
    try:
        before = datetime.now(UTC)
        defaults = CsvDefaults(site=site)
        result = main_replay([path], host=host, port=port, speed=1e6, rebase_now=True, csv_defaults=defaults)
        assert result.acked == result.messages == len(original)
        got = sub.wait_for(len(original))
        assert len(got) == len(original)
        assert {t for t, _p in got} == {f"tocsin/v1/seismic/{site}/TOC01/telemetry"}
        decoded = [decode_mseed(p)[0] for _t, p in got]
        order = sorted(range(len(original)), key=lambda i: original[i].start)
        expected = [original[i] for i in order]
        assert [d.samples.tolist() for d in decoded] == [e.samples.tolist() for e in expected]
        delta = decoded[0].start - expected[0].start
        assert before - timedelta(seconds=1) <= decoded[0].start <= datetime.now(UTC) + timedelta(seconds=1)
        for d, e in zip(decoded, expected, strict=True):
            assert abs((d.start - e.start - delta).total_seconds()) < 1e-6
        # and the gateway takes every rebased record as a fresh reading
        for t, p in got:
            assert isinstance(validate_telemetry(t, p, datetime.now(UTC)), Accepted)
    finally:
        sub.stop()


def test_timeline_item_is_immutable() -> None:
    it = TimelineItem(datetime(2026, 1, 1, tzinfo=UTC), "t", b"x")
    with pytest.raises(AttributeError):
        it.topic = "u"  # type: ignore[misc]


def test_cli_parses_replay_and_fleet_options() -> None:
    from tocsin.cli import build_parser, cmd_fleet, cmd_replay

    args = build_parser().parse_args(["replay", "a.jsonl", "b.mseed", "--fast", "--rebase-end", "--mseed-as", "json"])
    assert args.func is cmd_replay and args.files == ["a.jsonl", "b.mseed"] and args.fast and args.rebase_end
    assert args.speed == 1.0 and args.mseed_as == "json" and args.format == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replay", "a.jsonl", "--fast", "--speed", "2"])
    args = build_parser().parse_args(["fleet", "--devices", "500", "--max", "--connections", "10"])
    assert args.func is cmd_fleet and (args.devices, args.max, args.connections, args.duration) == (500, True, 10, 60.0)
