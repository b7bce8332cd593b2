"""NAB benchmark of the anomaly detector (``make bench-anomaly NAB_DIR=<dir>``).

1. Self-check of the scorer (tests/bench/nab.py): NAB's published windowed-Gaussian scores in
   ``<dir>/results/windowedGaussian`` must score 36.71 on the standard profile (exit 1 if not).
2. The ensemble detector (detectors/kernels/anomaly.py ``EnsembleScorer``) over every file of
   ``<dir>/data``, one fresh scorer per file: the three NAB profiles.
3. Throughput of ``tocsin backtest --detector anomaly`` (CSV parsing, detector, JSON lines) on the
   longest file, points/s on one core.
4. ``--ablation``: the standard score with each part switched off.

JSON in ``--out`` (default var/bench/anomaly.json). The data folder is an argument; nothing in
the product reads it.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench import nab
from tocsin.detectors.kernels.anomaly import EnsembleParams, EnsembleScorer

WINDOWED_GAUSSIAN_STANDARD = 36.71  # the figure NAB's windowed-Gaussian results give on these files

ABLATIONS: dict[str, dict[str, Any]] = {
    "all parts (defaults)": {},
    "no suppression after an alarm": {"suppress_n": 0},
    "no novelty record (z over floor_z only)": {"peak_n": 1e-9},
    "no short mean of the value": {"w_short": 0.0},
    "no time-of-day residual": {"w_resid": 0.0},
    "no day-of-week residual short mean": {"w_week_short": 0.0},
    "no profiles at all": {"w_resid": 0.0, "w_week_short": 0.0},
    "plus time-of-day residual short mean": {"w_resid_short": 1.0},
    "plus day-of-week residual": {"w_week": 1.0},
    "warm-up 100 instead of 200": {"warmup_n": 100},
    "alarm_score 0.3 (suppress only clear alarms)": {"alarm_score": 0.3},
}


def detector_scores(corpus: list[nab.NabFile], params: EnsembleParams) -> dict[str, Any]:
    return {f.name: EnsembleScorer(params).process(f.t, f.x) for f in corpus}


def backtest_rate(path: Path) -> dict[str, float]:
    """Rows per second through tocsin.backtest.run plus the CLI's JSON line per record."""
    from tocsin.backtest import run

    best = float("inf")
    rows = 0
    for _ in range(2):
        sink = io.StringIO()
        t0 = time.process_time()
        rows = 0
        for rec in run("anomaly", path, {}):
            sink.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            rows += rec["type"] == "score"
        best = min(best, time.process_time() - t0)
    return {"rows": rows, "cpu_s": best, "points_per_s": rows / best}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="NAB benchmark of the anomaly detector")
    ap.add_argument("--nab-dir", required=True, type=Path)
    ap.add_argument("--out", type=Path, default=Path("var/bench/anomaly.json"))
    ap.add_argument("--ablation", action="store_true", help="also score with each part switched off")
    args = ap.parse_args(argv)
    corpus = nab.load_corpus(args.nab_dir)
    result: dict[str, Any] = {"files": len(corpus), "points": sum(f.layout.n for f in corpus)}

    wg = nab.score_corpus(
        corpus, nab.read_results(args.nab_dir / "results" / "windowedGaussian", corpus, "windowedGaussian")
    )
    check = round(wg["standard"]["score"], 2)
    result["self_check"] = {"windowed_gaussian_standard": check, "expected": WINDOWED_GAUSSIAN_STANDARD}
    print(f"scorer self-check: windowed Gaussian standard {check:.2f} (expected {WINDOWED_GAUSSIAN_STANDARD})")
    if abs(check - WINDOWED_GAUSSIAN_STANDARD) > 0.005:
        print("scorer self-check FAILED", file=sys.stderr)
        return 1

    params = EnsembleParams()
    t0 = time.process_time()
    scores = detector_scores(corpus, params)
    kernel_s = time.process_time() - t0
    res = nab.score_corpus(corpus, scores)
    result["params"] = params.__dict__
    result["profiles"] = res
    result["kernel_points_per_s"] = result["points"] / kernel_s
    for name, r in res.items():
        print(
            f"{name:20s} {r['score']:6.2f}   threshold {r['threshold']:.4f}  TP {r['tp']}  FP {r['fp']}  FN {r['fn']}"
        )
    longest = max(corpus, key=lambda f: f.layout.n)
    result["backtest"] = {"file": longest.name, **backtest_rate(args.nab_dir / "data" / longest.name)}
    print(
        f"kernel: {result['kernel_points_per_s']:,.0f} points/s; tocsin backtest: "
        f"{result['backtest']['points_per_s']:,.0f} points/s (CPU, one core, {longest.name})"
    )

    if args.ablation:
        table: dict[str, dict[str, float]] = {}
        for label, kw in ABLATIONS.items():
            ab = nab.score_corpus(corpus, detector_scores(corpus, EnsembleParams(**{**params.__dict__, **kw})))
            table[label] = {k: round(v["score"], 2) for k, v in ab.items()}
            print(f"  {label:46s} " + "  ".join(f"{k} {v:6.2f}" for k, v in table[label].items()))
        result["ablation"] = table

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
