"""Fuzzing the worker's decoding of every topic it reads (schemas/records.py, SilenceStore.apply).

Whatever the bytes, a decoder returns a model of its topic or raises ``PoisonRecord`` with a
dead-letter reason (``undecodable`` or ``schema``): never another exception, which the worker would
report as a ``processing`` failure of its own. The corpus: random bytes, JSON of any shape, valid
messages with one field replaced, removed or added, truncated at any byte, deep nesting, numbers out
of every range, NaN and Infinity literals, lone surrogates and other unicode oddities, the tick
markers with garbage after them. Each hypothesis example is checked as drawn and then in ``VARIANTS``
byte-level mutations of it (flipped bytes, cuts, inserted tokens such as ``NaN``, ``1e999``, ``\\ud800``),
made by a ``random.Random`` that hypothesis seeds: drawing a structured example costs milliseconds,
mutating it microseconds. Cases: 3 x 400 x 10 + 300 x 10 = 15,000 (``TOCSIN_FUZZ_SCALE`` multiplies
the examples, so ``TOCSIN_FUZZ_SCALE=10`` runs 150,000).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.alerts.factories import alert_message
from tests.fuzz.harness import FuzzStats, timeout_s
from tocsin.alerts.silence_store import SilenceStore
from tocsin.alerts.silences import Silence
from tocsin.schemas.alert import Alert
from tocsin.schemas.common import Family, WarningLevel
from tocsin.schemas.deadletter import WorkerReason
from tocsin.schemas.detection import Detection, DetectionState, LifecycleTick
from tocsin.schemas.records import PoisonRecord, decode_alert, decode_detection, decode_telemetry
from tocsin.schemas.telemetry import DeadmanTick, FireDetection, GasReading, RainIncrement, SeismicPacket, WaterLevel
from tocsin.schemas.wire import encode

SCALE = max(1, int(os.environ.get("TOCSIN_FUZZ_SCALE", "1")))
T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


STATS: dict[str, FuzzStats] = {}
"""One record per property, written to var/fuzz/records_<name>.json when the module ends."""


@pytest.fixture(scope="module", autouse=True)
def _save_stats() -> Iterator[None]:
    yield
    for stats in STATS.values():
        stats.finished = stats.escapes == 0 and stats.slow_cases == 0
        stats.save()


def fuzz(n: int) -> Any:
    return settings(
        max_examples=n * SCALE,
        deadline=None,  # the bound is on each case's CPU time (tests/fuzz/harness.py), checked in check()
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=True,  # the same corpus on every run: a failure is reproducible
        database=None,
    )


# ----------------------------------------------------------------------------- corpus
VALID: dict[str, list[dict[str, Any]]] = {
    "telemetry": [
        json.loads(encode(m))
        for m in (
            RainIncrement(device_id="RG-1", site="s1", ts=T0, seq=3, rain_mm=4.5, interval_s=300),
            WaterLevel(device_id="WL-1", site="s1", ts=T0, level_m=12.3),
            SeismicPacket(device_id="ST-1", site="s1", ts=T0, sample_rate_hz=100.0, samples=[0.0, 1e-6, -2e-6]),
            GasReading(device_id="GD-1", site="p1", ts=T0, gas="H2S", value=12.0, unit="mg/m3"),
            FireDetection(device_id="FT-1", site="t1", ts=T0, kind="smoke", confidence=0.9, bearing_deg=45.0),
            DeadmanTick(device_id="RG-1", ts=T0),
        )
    ],
    "detection": [
        json.loads(encode(m))
        for m in (
            Detection(
                id="GD-1:gas_h2s:1:0",
                device_id="GD-1",
                site="p1",
                family=Family.HAZMAT,
                kind="gas_h2s",
                state=DetectionState.OPEN,
                level=WarningLevel.YELLOW,
                value=12.0,
                onset=T0,
                ts=T0,
                area_code="330110",
                evidence={"readings": [1.0, 2.0]},
            ),
            LifecycleTick(fingerprint="hazmat:330110:gas_leak", ts=T0),
        )
    ],
    "alert": [json.loads(encode(alert_message("A-1")))],
    "silence": [
        json.loads(
            encode(
                Silence(id="s-1", area="3301", starts_at=T0, ends_at=T0.replace(hour=9), creator="ops", reason="drill")
            )
        )
    ],
}

ODD_TEXT = st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "\u202e", "\ufeff", "𝟘", "\u0000\u001b[31m", "١٢", "Ａ", "", " ", "\n", "x" * 5000]
)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    ODD_TEXT,
)
JSON_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6,
)


def dumps(value: Any) -> bytes:
    """JSON as a foreign producer might write it: NaN/Infinity literals allowed, surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode("utf-8")


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    doc = dict(draw(st.sampled_from(VALID[kind])))
    op = draw(st.sampled_from(["replace", "delete", "add", "type"]))
    field = draw(st.sampled_from(sorted(doc)))
    if op == "replace":
        doc[field] = draw(JSON_VALUE)
    elif op == "delete":
        del doc[field]
    elif op == "add":
        doc[draw(st.text(max_size=10))] = draw(JSON_VALUE)
    else:  # a value of another JSON type than the field's
        doc[field] = draw(st.sampled_from([[], {}, "1.5", True, 1e308, -1, 10**30, None, "NaN"]))
    raw = dumps(doc)
    if draw(st.booleans()):  # truncated somewhere
        raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    return raw


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def corpus(kind: str) -> st.SearchStrategy[bytes | None]:
    marker = {"telemetry": b'{"type":"tocsin.tick"', "detection": b'{"type":"tocsin.lifecycle_tick"'}.get(kind, b"{")
    return st.one_of(
        st.none(),
        st.binary(max_size=300),
        JSON_VALUE.map(dumps),
        mutated(kind),
        mutated(kind),
        mutated(kind),
        st.integers(min_value=1, max_value=1000).map(deep),
        st.binary(max_size=100).map(lambda b: marker + b),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


VARIANTS = 10  # cases per hypothesis example: the example itself and 9 mutations of it
TOKENS = [
    b"NaN",
    b"-Infinity",
    b"1e999",
    b"-0",
    b"99999999999999999999999",
    b'"\\ud800"',
    b'"\\u0000"',
    b"null",
    b"true",
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b",",
    b":",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b" " * 50,
]


def mutations(raw: bytes | None, rnd: random.Random) -> list[bytes | None]:
    out: list[bytes | None] = [raw]
    base = raw or b""
    for _ in range(VARIANTS - 1):
        b = bytearray(base)
        for _ in range(rnd.randint(1, 3)):
            op = rnd.randrange(5)
            at = rnd.randint(0, len(b))
            if op == 0 and b:
                b[min(at, len(b) - 1)] = rnd.randrange(256)
            elif op == 1:
                del b[at:]
            elif op == 2:
                b[at:at] = rnd.choice(TOKENS)
            elif op == 3:
                del b[at : at + rnd.randint(1, 20)]
            else:
                b[at:at] = b[at : at + rnd.randint(1, 40)]
        out.append(bytes(b))
    return out


def stats_for(name: str) -> FuzzStats:
    return STATS.setdefault(name, FuzzStats(f"records_{name}"))


def counted(stats: FuzzStats, case: Any, target: Callable[[Any], str]) -> None:
    """One case, timed and counted; an escape or a case over the CPU bound fails the example."""
    slow = stats.slow_cases
    stats.record(case, target, reraise=True)
    assert stats.slow_cases == slow, f"{stats.max_case_cpu_s:.3f} s CPU for {case!r:.200}"


def check(
    name: str,
    decoder: Callable[[bytes | None], Any],
    types: tuple[type, ...],
    raw: bytes | None,
    rnd: random.Random,
) -> None:
    def one(case: bytes | None) -> str:
        try:
            out = decoder(case)
        except PoisonRecord as exc:
            assert exc.reason in (WorkerReason.UNDECODABLE, WorkerReason.SCHEMA), case
            assert str(exc)
            return exc.reason.value
        assert isinstance(out, types), case
        return type(out).__name__

    stats = stats_for(name)
    for case in mutations(raw, rnd):
        counted(stats, case, one)


# ----------------------------------------------------------------------------- properties
TELEMETRY_TYPES = (FireDetection, RainIncrement, WaterLevel, SeismicPacket, GasReading, DeadmanTick)


@pytest.mark.timeout(timeout_s(300))
@fuzz(400)
@given(corpus("telemetry"), st.randoms(use_true_random=False))
def test_telemetry_topics_decode_or_give_a_reason(raw: bytes | None, rnd: random.Random) -> None:
    check("telemetry", decode_telemetry, TELEMETRY_TYPES, raw, rnd)


@pytest.mark.timeout(timeout_s(300))
@fuzz(400)
@given(corpus("detection"), st.randoms(use_true_random=False))
def test_detection_topics_decode_or_give_a_reason(raw: bytes | None, rnd: random.Random) -> None:
    check("detection", decode_detection, (Detection, LifecycleTick), raw, rnd)


@pytest.mark.timeout(timeout_s(300))
@fuzz(400)
@given(corpus("alert"), st.randoms(use_true_random=False))
def test_alerts_topic_decodes_or_gives_a_reason(raw: bytes | None, rnd: random.Random) -> None:
    check("alert", decode_alert, (Alert,), raw, rnd)


@pytest.mark.timeout(timeout_s(300))
@fuzz(300)
@given(
    st.one_of(st.none(), st.binary(max_size=40), st.just(b"s-1")), corpus("silence"), st.randoms(use_true_random=False)
)
def test_silences_topic_never_raises(key: bytes | None, raw: bytes | None, rnd: random.Random) -> None:
    """The worker reads ``alerts.silences`` in a thread (alerts/silence_store.py), record by record:
    a malformed one is logged and skipped, and the silences already known stay."""
    store = SilenceStore()  # never started: no Kafka
    store.apply(b"s-1", dumps(VALID["silence"][0]))

    def one(case: bytes | None) -> str:
        store.apply(key, case)
        assert all(isinstance(s, Silence) for s in store.all())
        if key != b"s-1":
            assert store.get("s-1") is not None
        return "applied"

    stats = stats_for("silence")
    for case in mutations(raw, rnd):
        counted(stats, case, one)


def test_every_valid_message_round_trips() -> None:
    """The corpus' seeds are themselves valid: the fuzzing starts from messages the decoders accept."""
    for doc in VALID["telemetry"]:
        assert json.loads(encode(decode_telemetry(dumps(doc)))) == doc
    for doc in VALID["detection"]:
        assert json.loads(encode(decode_detection(dumps(doc)))) == doc
    for doc in VALID["alert"]:
        assert json.loads(encode(decode_alert(dumps(doc)))) == doc


def test_the_known_bad_records_get_the_documented_reasons() -> None:
    """The rows of docs/bad-input.md, "Worker"."""
    cases: list[tuple[Callable[[bytes | None], Any], bytes | None, WorkerReason]] = [
        (decode_telemetry, b"\xff\xfe", WorkerReason.UNDECODABLE),
        (decode_telemetry, None, WorkerReason.UNDECODABLE),
        (decode_telemetry, b'{"type":"tocsin.tick","device_id":"RG-1","ts":"yesterday"}', WorkerReason.SCHEMA),
        (decode_detection, b'{"type":"tocsin.lifecycle_tick","fingerprint":""}', WorkerReason.SCHEMA),
        (decode_detection, deep(10_000), WorkerReason.UNDECODABLE),
        (decode_alert, b'{"identifier": "A-1", "revision": 0,', WorkerReason.UNDECODABLE),
        (
            decode_telemetry,
            b'{"type":"hydro.level","device_id":"W","site":"s","ts":"2026-07-01T08:00:00Z","level_m":NaN}',
            WorkerReason.SCHEMA,
        ),
        (decode_alert, b'"an alert"', WorkerReason.SCHEMA),
    ]
    for decoder, raw, reason in cases:
        try:
            decoder(raw)
        except PoisonRecord as exc:
            assert exc.reason == reason, (raw, exc.reason, str(exc))
        else:
            raise AssertionError(f"{raw!r} decoded")
