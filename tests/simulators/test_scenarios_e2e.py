"""Every shipped scenario end to end through the embedded mode (broker, gateway, detectors, alert
lifecycle, delivery in one process; no external service), scored against its ground truth.

Expected outcomes:
- quiet_day: no alert message at all: no hazard alert, and no device-health (offline) alert either,
  since every device keeps reporting;
- each hazard scenario: every hazard of its ground truth detected, no false positive; the lead time
  of each hazard (and for earthquakes the S-wave warning time at each target) is printed (``pytest
  -s``) and is in every assertion message;
- bad_day: each of its hazards detected, and its malformed payloads and duplicates end as dead
  letters (one per injected fault);
- device health (the deadman runs on device time in these runs): every outage of the ground truth
  (bad_day's RG02, gateway_outage's three gauges behind one field gateway) gives exactly one
  equipment alert for its gateway or site, naming every silent device, within two minutes of device
  time of being detectable, and its all-clear once the devices are back; gateway_outage raises
  nothing else.

Time: non-seismic stretches are compressed (the speeds below, above the scenarios' hints where the
hint would make the file slow); the minute around each earthquake is replayed at 2x (so the warning
times stay meaningful). The whole file takes about three minutes on the 2-core CI machine.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tocsin.schemas.common import Family
from tocsin.simulators.run import ReplayClock, RunResult, layout_start, pacing, run_scenario
from tocsin.simulators.scenario_spec import scenario_paths
from tocsin.simulators.score import format_table

# scenario -> base speed for this test (None: the scenario's own hint)
SPEEDS: dict[str, float | None] = {
    "quiet_day": None,
    "typhoon_rainstorm": None,
    "m55_earthquake_40km": 60.0,  # its hint is real time throughout; only the quake window needs it
    "chemical_leak": 240.0,
    "two_tower_fire": 600.0,
    "bad_day": None,
    "gateway_outage": None,
}
SEISMIC_SPEED = 2.0


def _run(name: str) -> RunResult:
    return asyncio.run(run_scenario(name, speed=SPEEDS[name], seismic_speed=SEISMIC_SPEED))


def _report(r: RunResult) -> str:
    dead = ", ".join(f"{k} {v}" for k, v in sorted(r.dead_letters.items())) or "none"
    alerts = "\n".join(
        f"    {o.sim_time:%H:%M:%S} {o.alert.msg_type.value:6s} {o.alert.fingerprint} {o.alert.level.value}"
        for o in r.observed
    )
    return (
        f"{format_table(r.score)}\n  {r.published}/{r.messages} published at {r.speed:g}x in {r.wall_s:.1f} s;"
        f" dead letters: {dead}\n  alerts:\n{alerts}"
    )


def test_every_shipped_scenario_has_an_expected_outcome() -> None:
    assert sorted(SPEEDS) == sorted(p.stem for p in scenario_paths())


@pytest.mark.parametrize("name", sorted(SPEEDS))
def test_scenario_end_to_end(name: str) -> None:
    r = _run(name)
    report = _report(r)
    print(f"\n{report}")
    s = r.score
    assert r.published == r.messages, report
    assert s.outages_missed == 0 and len(s.outages) == len(r.truth.outages), report
    for o, x in zip(s.outages, r.truth.outages, strict=True):
        assert o.detected and o.incidents == 1 and o.devices_alerted == x.devices, report
        assert o.lead_time_s is not None and -60.0 <= o.lead_time_s <= 120.0, report
        assert x.back is None or (o.cleared_at is not None and o.cleared_at >= x.back), report
    assert all(d.expected for d in s.device_health), report
    if name == "gateway_outage":
        assert [x.devices for x in r.truth.outages] == [["RG11", "RG12", "WL11"]], report
        assert {o.alert.fingerprint for o in r.observed} == {"hydro:330110:gateway-GW-BS01:offline"}, report
        assert s.false_positives == 0 and not r.truth.hazards, report
        return
    if not r.truth.hazards:
        assert r.observed == [], report  # quiet: not one alert message, of any kind
        assert s.false_positives == 0 and not s.device_health, report
        return
    assert s.missed == 0 and s.true_positives == len(r.truth.hazards), report
    for h in s.hazards:
        assert h.detected and h.lead_time_s is not None, report
        # the level the scenario file states from the standard's table is the level the alerts reached
        assert h.expected_level is not None and h.highest_level is h.expected_level, report
        # never before the data allowed it (beyond the scoring tolerance), and well within the window
        assert -60.0 <= h.lead_time_s <= 1800.0, report
        if h.family is Family.SEISMIC:
            assert h.targets and all(x.warning_s is not None for x in h.targets), report
            # 40 km away the targets are warned before the S wave (measured +5.6 to +6.7 s)
            if name == "m55_earthquake_40km":
                assert all(x.warning_s is not None and x.warning_s > 2.0 for x in h.targets), report
    if name == "bad_day":
        faults = dict(f.split(":", 1) for f in r.truth.faults if f.startswith(("malformed:", "duplicates:")))
        bad = sum(n for reason, n in r.dead_letters.items() if reason != "duplicate")
        assert bad == int(faults["malformed"]), report
        assert r.dead_letters.get("duplicate", 0) == int(faults["duplicates"]), report
    else:
        assert s.false_positives == 0 and s.precision == 1.0, report


# ------------------------------------------------------------------ the replay's timing (pure)
T0 = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)


def _ts(*seconds: float) -> list[datetime]:
    return [T0 + timedelta(seconds=s) for s in seconds]


def test_pacing_compresses_clips_long_gaps_and_keeps_quakes_in_real_time() -> None:
    times = _ts(0, 600, 630, 3630, 3640, 3650, 3700)
    assert pacing(times, 60.0, max_gap_s=5.0) == pytest.approx(
        [0.0, 5.0, 5.5, 10.5, 10.5 + 10 / 60, 10.5 + 20 / 60, 10.5 + 70 / 60]
    )
    # a real-time window from 3635 to 3660: 5 s of the 3630->3640 gap, all of 3640->3650, 10 s of 3650->3700
    slow = [(T0 + timedelta(seconds=3635), T0 + timedelta(seconds=3660))]
    offs = pacing(times, 60.0, max_gap_s=5.0, slow=slow, slow_speed=1.0)
    assert offs[:4] == [0.0, 5.0, 5.5, 10.5]
    assert offs[4] == pytest.approx(10.5 + 5 / 60 + 5.0)
    assert offs[5] == pytest.approx(offs[4] + 10.0)
    assert offs[6] == pytest.approx(offs[5] + 10.0 + 40 / 60)
    assert pacing(_ts(0, 0, 0), 10.0) == [0.0, 0.0, 0.0]


def test_replay_clock_maps_wall_time_to_device_time() -> None:
    now = [100.0]
    times = _ts(0, 600, 1200)
    clock = ReplayClock(times, [0.0, 1.0, 2.0], lambda: now[0])
    assert clock.now() == times[0]  # nothing published yet
    clock.mark(0)
    now[0] = 100.25
    assert clock.now() == T0 + timedelta(seconds=150)  # a quarter of the way to the next message
    now[0] = 105.0
    assert clock.now() == times[1]  # never past a message not yet published
    clock.mark(2)
    now[0] = 200.0
    assert clock.now() == times[2]  # nor past the last one
    clock.mark(1)
    clock.finished = True
    assert clock.now() == times[1]


def test_layout_ends_the_scenario_when_the_replay_ends() -> None:
    assert layout_start(7200.0, 12.0, T0) == T0 - timedelta(seconds=7188)
