"""The NAB scorer (tests/bench/nab.py) on a tiny hand-made corpus (tests/bench/fixtures/nab_tiny):
20 rows at 5 min, one window 00:50-01:05 = rows 10..13 (width 4), probation floor(0.15 * 20) = 3 rows.

Worked by hand from NAB's definitions (Lavin & Ahmad 2015; NAB wiki "Scoring"):
sigma(x) = 2 / (1 + e^(5x)) - 1 = -tanh(2.5 x).
* row 12 in the window: x = -(13 - 12 + 1) / 4 = -0.5, sigma = tanh(1.25) = 0.848284;
  TP credit sigma / sigma(-1) = tanh(1.25) / tanh(2.5) = 0.859792.
* row 16 after it: x = |16 - 13| / (4 - 1) = 1, sigma = -tanh(2.5); FP cost 0.11 * tanh(2.5) = 0.108527.
* row 5 before any window: sigma = -1; FP cost 0.11.
* row 1 is in the probation period: ignored whatever its score.
Scores of the fixture: row 1 0.9, row 5 0.5, row 12 0.8, row 16 0.7, others 0.
Standard profile sums: th 0.8 -> 0.859792; 0.7 -> 0.751265; 0.5 -> 0.641265; never -> -1.
Best 0.859792; normalised 100 (0.859792 + 1) / (1 + 1) = 92.9896 (never alerting -1, perfect +1).
reward_low_FN (A_FN 2): 100 (0.859792 + 2) / (1 + 2) = 95.3264.
reward_low_FP (A_FP 0.22): th 0.8 still best (0.859792): 92.9896.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.bench import nab

TINY = Path(__file__).parent / "fixtures" / "nab_tiny"
TP12 = math.tanh(1.25) / math.tanh(2.5)  # 0.859792


def test_scaled_sigmoid_values() -> None:
    assert float(nab.scaled_sigmoid(-1.0)) == pytest.approx(0.986614, abs=1e-6)  # tanh(2.5)
    assert float(nab.scaled_sigmoid(0.0)) == 0.0
    assert float(nab.scaled_sigmoid(1.0)) == pytest.approx(-0.986614, abs=1e-6)
    assert float(nab.scaled_sigmoid(3.5)) == -1.0  # beyond 3 window widths: a full FP


def test_probation_rows() -> None:
    assert nab.probation_rows(20) == 3
    assert nab.probation_rows(4032) == 604
    assert nab.probation_rows(15902) == 750  # capped at 0.15 * 5000


def test_layout_of_the_tiny_file() -> None:
    (f,) = nab.load_corpus(TINY)
    lay = f.layout
    assert f.name == "toy/tiny.csv"
    assert lay.n == 20 and lay.probation == 3 and lay.n_windows == 1
    assert list(np.flatnonzero(lay.window_of == 0)) == [10, 11, 12, 13]
    assert lay.sigma[5] == -1.0
    assert lay.sigma[10] == pytest.approx(math.tanh(2.5))
    assert lay.sigma[12] == pytest.approx(math.tanh(1.25))
    assert lay.sigma[16] == pytest.approx(-math.tanh(2.5))


def test_hand_worked_scores_of_the_tiny_corpus() -> None:
    corpus = nab.load_corpus(TINY)
    scores = nab.read_results(TINY / "results" / "handmade", corpus, "handmade")
    res = nab.score_corpus(corpus, scores)
    std = res["standard"]
    assert std["raw"] == pytest.approx(TP12, abs=1e-6)
    assert std["threshold"] == 0.8
    assert (std["tp"], std["fp"], std["fn"]) == (1, 0, 0)
    assert (std["null"], std["perfect"]) == (-1.0, pytest.approx(1.0))
    assert std["score"] == pytest.approx(92.9896, abs=1e-4)
    assert res["reward_low_FN_rate"]["null"] == -2.0
    assert res["reward_low_FN_rate"]["score"] == pytest.approx(95.3264, abs=1e-4)
    assert res["reward_low_FP_rate"]["score"] == pytest.approx(92.9896, abs=1e-4)


def test_threshold_sums_by_hand() -> None:
    """Lower thresholds add the FPs one by one: 0.7 adds -0.108527, 0.5 adds -0.11."""
    (f,) = nab.load_corpus(TINY)
    s = np.zeros(20)
    s[[1, 5, 12, 16]] = [0.9, 0.5, 0.8, 0.7]
    only_low = s.copy()
    only_low[12] = 0.4  # now the best threshold includes both FPs or nothing scores well
    r = nab.sweep([(f.layout, only_low)], nab.PROFILES["standard"])
    # thresholds: 0.7 -> -1 - 0.108527 ; 0.5 -> -1 - 0.218527 ; 0.4 -> TP12 - 0.218527 = 0.641265
    assert r["raw"] == pytest.approx(TP12 - 0.11 * math.tanh(2.5) - 0.11, abs=1e-6)
    assert r["threshold"] == 0.4


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    (f,) = nab.load_corpus(TINY)
    s = np.zeros(20)
    s[[10, 12]] = 0.8
    r = nab.sweep([(f.layout, s)], nab.PROFILES["standard"])
    assert r["raw"] == pytest.approx(1.0)  # row 10 is the window's first row: full credit, row 12 adds nothing
    assert r["score"] == pytest.approx(100.0)
    assert r["tp"] == 1
