"""`tocsin backtest` runs the live detector code over recorded series."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tocsin.backtest import BacktestError, run
from tocsin.cli import main

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _csv(path: Path, values: list[float], step_min: int = 5) -> Path:
    lines = ["timestamp,value"] + [
        f"{(T0 + timedelta(minutes=step_min * k)).isoformat()},{v}" for k, v in enumerate(values)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_rainfall_csv_opens_blue_then_orange(tmp_path: Path) -> None:
    # 0.2 mm per 5 min, then 8 mm per 5 min from row 10: the 1-h sum first reaches 35 mm at row 14
    # (0.2*7 + 8*5 = 41.4 mm over the 12 reports of the last hour), the 3-h sum 50 mm at row 15
    # (all 16 reports so far: 0.2*10 + 8*6).
    path = _csv(tmp_path / "rain.csv", [8.0 if 10 <= k < 20 else 0.2 for k in range(48)])
    out = list(run("rainfall", path, {}))
    assert [(d["state"], d["level"]) for d in out][:2] == [("open", "blue"), ("update", "orange")]
    assert out[0]["ts"].startswith((T0 + timedelta(minutes=5 * 14)).isoformat()[:19])
    assert out[0]["value"] == pytest.approx(41.4)
    assert out[1]["ts"].startswith((T0 + timedelta(minutes=5 * 15)).isoformat()[:19])
    assert out[1]["value"] == pytest.approx(50.0)


def test_water_level_thresholds_from_params(tmp_path: Path) -> None:
    path = _csv(tmp_path / "level.csv", [10.0, 11.0, 11.8, 12.2, 13.6, 12.5, 11.0])
    params = {"warning_level_m": "12", "guaranteed_level_m": "13.5", "record_level_m": "15"}
    out = [(d["state"], d["level"]) for d in run("water_level", path, params)]
    assert out == [
        ("open", "blue"),
        ("update", "yellow"),
        ("update", "orange"),
        ("update", "yellow"),
        ("clear", "yellow"),
    ]


def test_generic_threshold_with_hysteresis(tmp_path: Path) -> None:
    path = _csv(tmp_path / "x.csv", [1, 6, 5.5, 4.6, 4.4, 8, 1])
    out = [(d["state"], d["level"], d["value"]) for d in run("threshold", path, {"yellow": "5", "orange": "7.5"})]
    # clears below 0.9 x 5 = 4.5, not at 5
    assert out == [("open", "yellow", 6.0), ("clear", "yellow", 4.4), ("open", "orange", 8.0), ("clear", "orange", 1.0)]


def test_cli_writes_jsonl_and_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _csv(tmp_path / "rain.csv", [8.0] * 12)
    out = tmp_path / "out.jsonl"
    assert main(["backtest", "--detector", "rainfall", "--input", str(path), "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert records and all(r["type"] == "detection" for r in records)
    bad = tmp_path / "bad.csv"
    bad.write_text("when,what\n1,2\n", encoding="utf-8")
    assert main(["backtest", "--detector", "rainfall", "--input", str(bad)]) == 2
    assert "line 1: no timestamp and no value column" in capsys.readouterr().err
    with pytest.raises(BacktestError):
        list(run("nope", path, {}))


def test_anomaly_scores_every_row_and_detects_only_the_spike(tmp_path: Path) -> None:
    import math
    import random

    rng = random.Random(3)
    values = [
        10 + 2 * math.sin(2 * math.pi * k / 288) + rng.gauss(0, 0.1) + (3 if k == 1800 else 0) for k in range(2016)
    ]
    path = _csv(tmp_path / "cycle.csv", values)
    out = list(run("anomaly", path, {}))
    scores = [r for r in out if r["type"] == "score"]
    detections = [r for r in out if r["type"] == "detection"]
    assert len(scores) == 2016 and all(0.0 <= r["score"] <= 1.0 for r in scores)
    spike_ts = (T0 + timedelta(minutes=5 * 1800)).isoformat()
    assert [(d["state"], d["ts"]) for d in detections][0] == ("open", spike_ts)
    assert all(d["ts"] >= spike_ts for d in detections)  # seven days of daily cycle: no false positive


@pytest.mark.parametrize(
    ("body", "args", "expected"),
    [
        ("timestamp,level\n2024-01-01T00:00:00Z,1\n", [], "line 1: no value column"),
        ("", [], "no data rows"),
        (
            "timestamp,value\n2024-01-01T00:00:00Z,1\n",
            ["--param", "warning_level=3"],
            "unknown parameter 'warning_level'",
        ),
        ("timestamp,value\n2024-01-01T00:00:00Z,1\n", ["--sensitivity", "1e9"], "is for --detector seismic"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, args: list[str], expected: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_text(body, encoding="utf-8")
    detector = "water_level" if "warning_level=3" in args else "rainfall"
    assert main(["backtest", "--detector", detector, "--input", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert len(err.strip().splitlines()) == 1


def test_cli_bad_json_line_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"timestamp": "2024-01-01T00:00:00Z", "value": 1}\n\n{bad\n', encoding="utf-8")
    assert main(["backtest", "--detector", "anomaly", "--input", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"backtest: {path} line 3: not JSON (Expecting property name enclosed in double quotes at column 2)"
    )


def test_cli_out_into_a_missing_folder_is_created(tmp_path: Path) -> None:
    path = _csv(tmp_path / "rain.csv", [8.0] * 12)
    out = tmp_path / "new" / "deeper" / "out.jsonl"
    assert main(["backtest", "--detector", "rainfall", "--input", str(path), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").count('"type": "detection"') >= 1


def test_cli_version_and_help_show_defaults_and_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("tocsin ")
    with pytest.raises(SystemExit):
        main(["gateway", "--help"])
    text = capsys.readouterr().out
    assert "TOCSIN_MQTT_HOST" in text and "TOCSIN_KAFKA_BOOTSTRAP" in text
    with pytest.raises(SystemExit):
        main(["fleet", "--help"])
    text = capsys.readouterr().out
    assert "(default: 10000)" in text and "TOCSIN_MQTT_PORT" in text
