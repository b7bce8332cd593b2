"""docs/capacity.md stays what its formulas give: the table is the output of
``python -m tests.bench.capacity plan --markdown`` for the figures in tests/bench/capacity.py, and the
formulas give the hand-computed counts."""

from __future__ import annotations

import re
from pathlib import Path

from tests.bench.capacity import FIGURES, markdown, mix_load, plan, plan_case

DOC = Path(__file__).resolve().parents[1] / "docs" / "capacity.md"


def test_the_doc_table_is_the_plan_of_todays_figures() -> None:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- capacity-table:[^\n]*-->\n(.*?)\n<!-- /capacity-table -->", text, re.S)
    assert m, "capacity-table markers missing"
    assert m.group(1) == markdown(plan(FIGURES)), "run: python -m tests.bench.capacity plan --markdown"


def test_the_formulas_by_hand() -> None:
    f = {**FIGURES, "gateway_msg_s": 2141.0, "worker_readings_s": 1217.0, "sink_points_s": 11483.0}
    f |= {"influxdb_points_s": 140874.0, "mosquitto_msg_s": 15032.0, "utilisation": 0.6, "peak_factor": 3.0}
    # (c): 800e6 / 86,400 = 9,259.26 msg/s; x 3 = 27,777.8 at design load
    c = plan_case(800e6 / 86400, 152, 858, 3.0, f)
    assert c["design_msg_s"] == 27778
    assert c["gateways"] == 23  # 27,777.8 / (2,141 x 0.6 = 1,284.6) = 21.6 -> 22, + 1
    assert c["workers"] == 40  # 27,777.8 / (1,217 x 0.6 = 730.2) = 38.04 -> 39, + 1
    assert c["partitions"] == 84  # >= 2 x 40 = 80, next multiple of 12
    assert c["mosquitto"] == 4  # 27,777.8 / (15,032 x 0.6 = 9,019.2) = 3.08 -> 4
    assert c["influx_sinks"] == 6  # 27,777.8 / (11,483 x 0.6 = 6,889.8) = 4.03 -> 5, + 1
    assert c["kafka_produce_mb_s"] == 28.06  # 27,777.8 x (152 + 858) B = 28.06 MB/s
    assert c["telemetry_gb_day_per_replica"] == 121.6  # 800e6 x 152 B = 121.6 GB
    assert c["changelog_pct_of_bytes"] == 85  # 858 / 1,010
    # the fleet's mix: 10,000 devices offer 3,500/300 + 2,500/300 + 2,500/10 + 1,400/60 + 100/1 = 393.3 msg/s
    rate, _record, _state = mix_load({"rain": 3500, "level": 2500, "gas": 2500, "fire": 1400, "seismic": 100})
    assert round(rate, 1) == 393.3
