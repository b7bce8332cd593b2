"""``tocsin simulate run`` shows the run moving: a progress line every ``--progress-every`` seconds
of wall time (device time reached, share of the scenario, messages published, detections and alert
messages so far) and one when the last message is out.

The shipped ``chemical_leak`` (45 min of device time, 909 messages, one H2S leak that the ground
truth expects as an orange warning) replayed at 600x through the embedded pipeline: about 5 s of
replay, so at 1 s a line there are several lines, and the leak is detected while they are printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from tocsin.simulators.run import Progress

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^\[\s*(?P<wall>[\d.]+)s\] device time (?P<sim>\S+ \S+)Z \(\s*(?P<pct>\d+)%\), published "
    r"(?P<pub>\d+)/(?P<total>\d+) messages, (?P<det>\d+) detections, (?P<alerts>\d+) alert messages$"
)


def test_progress_line_names_device_time_share_and_counts() -> None:
    p = Progress(
        wall_s=2.0,
        sim_time=datetime.fromisoformat("2026-07-08T02:10:00+00:00"),
        fraction=0.25,
        published=227,
        messages=909,
        detections=1,
        alerts=2,
    )
    assert p.line() == (
        "device time 2026-07-08 02:10:00Z ( 25%), published 227/909 messages, 1 detections, 2 alert messages"
    )


def test_simulate_run_prints_progress_while_it_replays() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tocsin.cli", "simulate", "run", "chemical_leak", "--speed", "600"]
        + ["--progress-every", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [m.groupdict() for m in map(LINE.match, proc.stdout.splitlines()) if m]
    assert len(rows) >= 4, proc.stdout  # about 5 s of replay at one line a second, plus the last one
    total = {int(r["total"]) for r in rows}
    assert total == {909}, proc.stdout
    for key in ("wall", "pct", "pub", "det", "alerts"):
        values = [float(r[key]) for r in rows]
        assert values == sorted(values), (key, proc.stdout)  # never goes back
    sims = [datetime.fromisoformat(r["sim"]) for r in rows]
    assert sims == sorted(sims) and sims[-1] > sims[0]
    first, last = rows[0], rows[-1]
    assert 0 < int(first["pub"]) < 909  # the first line comes while publishing
    assert int(last["pub"]) == 909 and int(last["pct"]) == 100
    assert int(last["det"]) >= 1 and int(last["alerts"]) >= 1  # the leak, seen as it happened


def test_scenario_speed_defaults_to_the_scenarios_hint() -> None:
    """``simulate run`` and ``simulate publish`` without ``--speed`` replay at the scenario's own
    ``speed`` (chemical_leak.yaml: 60), not at the demo's 120 of ``tocsin simulate --speed``."""
    from tocsin.cli import build_parser
    from tocsin.simulators.run import plan_scenario

    parser = build_parser()
    for sub in ("run", "publish"):
        args = parser.parse_args(["simulate", sub, "chemical_leak"])
        assert plan_scenario("chemical_leak", speed=getattr(args, "speed", None)).speed == 60.0
    assert parser.parse_args(["simulate", "run", "chemical_leak", "--speed", "600"]).speed == 600.0
    assert getattr(parser.parse_args(["simulate"]), "speed", None) is None  # cmd_simulate: the demo's 120
