"""A scorer following the Numenta Anomaly Benchmark's documented scoring (NAB v1.x, Lavin and
Ahmad 2015, "Evaluating Real-time Anomaly Detection Algorithms - the Numenta Anomaly Benchmark",
and the NAB wiki/README), written here from that description.

Per file (timestamps ``t[i]``, detector scores ``s[i]`` in [0, 1], anomaly windows
``[start, end]`` from ``labels/combined_windows.json``):

* A window covers the rows whose timestamps fall within ``[start, end]``; ``left``/``right`` are
  its first/last row, ``width = right - left + 1``.
* The first ``probation(n) = min(floor(0.15 n), 0.15 * 5000)`` rows are not scored at all.
* Every scored row gets an unweighted value from the scaled sigmoid
  ``sigma(x) = 2 / (1 + exp(5 x)) - 1``:
  inside a window ``x = -(right - i + 1) / width`` (about +0.987 at the window's first row, near 0
  at its last); after a window ``x = |i - right_prev| / (width_prev - 1)`` of the most recent
  window before the row (negative values, falling to -1; ``x > 3`` gives -1 exactly); before the
  first window of the file -1.
* At a threshold ``th`` the detections are the scored rows with ``s >= th``. A window with at least
  one detection counts ``A_TP * sigma / sigma(-1)`` of its *earliest* detection (the largest value,
  since sigma falls through the window; the division makes a detection on the window's first row
  worth exactly ``A_TP``); a window without one counts ``-A_FN``; each detection outside every
  window counts ``A_FP * sigma`` (``A_FP`` > 0 here, sigma < 0, so a penalty of up to ``A_FP``).
* One threshold for the whole corpus: the sum over files is evaluated at every distinct score
  (and above all of them, i.e. never alerting), and the best sum is kept.
* Normalised: ``100 * (best - null) / (perfect - null)`` with ``null = -A_FN * windows`` (never
  alerting) and ``perfect = A_TP * windows`` (every window caught on its first row).

Profiles (TP, FP, FN weights): standard (1, 0.11, 1), reward_low_FP (1, 0.22, 1),
reward_low_FN (1, 0.11, 2).

Usage: ``python -m tests.bench.nab --nab-dir <dir> [--detector windowedGaussian]`` scores the
result files in ``<dir>/results/<detector>/``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, 0.11, 1.0),
    "reward_low_FP_rate": (1.0, 0.22, 1.0),
    "reward_low_FN_rate": (1.0, 0.11, 2.0),
}
PROBATION_FRACTION = 0.15
MAX_TP = 2.0 / (1.0 + math.exp(-5.0)) - 1.0  # sigma(-1), a window's first row: TP credit is sigma / MAX_TP
PROBATION_CAP_ROWS = 0.15 * 5000


def scaled_sigmoid(x: np.ndarray | float) -> np.ndarray:
    """``2 / (1 + exp(5 x)) - 1``, and -1 beyond ``x > 3``."""
    xa = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        v = 2.0 / (1.0 + np.exp(5.0 * xa)) - 1.0
    return np.where(xa > 3.0, -1.0, v)


def probation_rows(n: int) -> int:
    return int(min(math.floor(PROBATION_FRACTION * n), PROBATION_CAP_ROWS))


@dataclass(frozen=True)
class FileLayout:
    """What the scoring needs of one file, independent of any detector."""

    n: int
    probation: int
    window_of: np.ndarray  # window number of each row, -1 outside
    sigma: np.ndarray  # unweighted value of each row
    n_windows: int
    first_sigma: np.ndarray  # sigma at each window's first row (what a perfect detector earns)


def layout(n: int, windows: Sequence[tuple[int, int]], probation: int | None = None) -> FileLayout:
    """Layout of a file of ``n`` rows with windows given as inclusive row ranges ``(left, right)``."""
    window_of = np.full(n, -1, dtype=np.int64)
    sigma = np.full(n, -1.0)
    idx = np.arange(n)
    prev_right, prev_width = None, None
    start = 0
    first = []
    for k, (left, right) in enumerate(sorted(windows)):
        width = right - left + 1
        if prev_right is not None and prev_width is not None:
            gap = idx[start:left]
            sigma[start:left] = scaled_sigmoid(np.abs(gap - prev_right) / (prev_width - 1))
        inside = idx[left : right + 1]
        sigma[left : right + 1] = scaled_sigmoid(-(right - inside + 1) / width)
        window_of[left : right + 1] = k
        first.append(float(sigma[left]))
        prev_right, prev_width, start = right, width, right + 1
    if prev_right is not None and prev_width is not None and start < n:
        sigma[start:] = scaled_sigmoid(np.abs(idx[start:] - prev_right) / (prev_width - 1))
    return FileLayout(
        n=n,
        probation=probation_rows(n) if probation is None else probation,
        window_of=window_of,
        sigma=sigma,
        n_windows=len(windows),
        first_sigma=np.array(first),
    )


def sweep(items: Iterable[tuple[FileLayout, np.ndarray]], profile: tuple[float, float, float]) -> dict[str, float]:
    """Best corpus score over one common threshold. Returns raw, null, perfect, normalised score,
    the threshold and the TP/FP/FN counts at it."""
    a_tp, a_fp, a_fn = profile
    scores, deltas, kinds = [], [], []
    null = perfect = 0.0
    wbase = 0
    for lay, s in items:
        s = np.asarray(s, dtype=np.float64)
        if s.shape != (lay.n,):
            raise ValueError(f"{s.shape[0]} scores for {lay.n} rows")
        null -= a_fn * lay.n_windows
        perfect += a_tp * float(lay.first_sigma.sum()) / MAX_TP
        keep = np.arange(lay.n) >= lay.probation
        sc, wo, sg = s[keep], lay.window_of[keep], lay.sigma[keep]
        # order by score descending, then by row (a window's earliest detection first among ties)
        order = np.lexsort((np.arange(sc.size), -sc))
        sc, wo, sg = sc[order], wo[order], sg[order]
        delta = np.where(wo < 0, a_fp * sg, 0.0)
        kind = np.where(wo < 0, 1, 0)  # 1 FP, 0 window row (TP when it is the window's first)
        for k in np.unique(wo[wo >= 0]):
            pos = np.flatnonzero(wo == k)
            best = np.maximum.accumulate(a_tp * sg[pos] / MAX_TP)
            before = np.concatenate(([-a_fn], best[:-1]))
            before[1:] = np.maximum(before[1:], -a_fn)
            delta[pos] = best - before
            kind[pos[0]] = 2  # the window becomes a TP here
        scores.append(sc)
        deltas.append(delta)
        kinds.append(kind)
        wbase += lay.n_windows
    sc = np.concatenate(scores) if scores else np.zeros(0)
    dl = np.concatenate(deltas) if deltas else np.zeros(0)
    kd = np.concatenate(kinds) if kinds else np.zeros(0, dtype=np.int64)
    order = np.argsort(-sc, kind="stable")
    sc, dl, kd = sc[order], dl[order], kd[order]
    total = null + np.cumsum(dl)
    # a threshold can only sit at the end of a run of equal scores
    ends = np.flatnonzero(np.append(sc[1:] != sc[:-1], True)) if sc.size else np.zeros(0, dtype=np.int64)
    cand = total[ends]
    best_raw, best_th, best_i = null, math.inf, -1
    if cand.size and cand.max() > null:
        j = int(np.argmax(cand))
        best_raw, best_th, best_i = float(cand[j]), float(sc[ends[j]]), int(ends[j])
    tp = int((kd[: best_i + 1] == 2).sum())
    fp = int((kd[: best_i + 1] == 1).sum())
    norm = 100.0 * (best_raw - null) / (perfect - null) if perfect != null else 0.0
    return {
        "score": norm,
        "raw": best_raw,
        "null": null,
        "perfect": perfect,
        "threshold": best_th,
        "tp": tp,
        "fp": fp,
        "fn": wbase - tp,
    }


# --------------------------------------------------------------------------------- NAB corpus
@dataclass(frozen=True)
class NabFile:
    name: str  # "<folder>/<file>.csv" as in the labels
    t: np.ndarray  # epoch seconds
    x: np.ndarray
    layout: FileLayout


def _epoch(texts: Sequence[str]) -> np.ndarray:
    ts = np.array([s.strip().replace(" ", "T") for s in texts], dtype="datetime64[us]")
    return ts.astype(np.int64) / 1e6


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    head = lines[0].split(",")
    return head, [ln.split(",") for ln in lines[1:] if ln.strip()]


def load_corpus(nab_dir: Path) -> list[NabFile]:
    windows = json.loads((nab_dir / "labels" / "combined_windows.json").read_text(encoding="utf-8"))
    out = []
    for name in sorted(windows):
        _, rows = _read_csv(nab_dir / "data" / name)
        t = _epoch([r[0] for r in rows])
        x = np.array([float(r[1]) for r in rows])
        spans = []
        for start, end in windows[name]:
            lo = int(np.searchsorted(t, _epoch([start])[0], side="left"))
            hi = int(np.searchsorted(t, _epoch([end])[0], side="right")) - 1
            spans.append((lo, hi))
        out.append(NabFile(name, t, x, layout(len(t), spans)))
    return out


def read_results(results_dir: Path, corpus: Sequence[NabFile], detector: str) -> dict[str, np.ndarray]:
    """``<results>/<folder>/<detector>_<file>.csv`` score columns, by corpus name."""
    out = {}
    for f in corpus:
        folder, file = f.name.split("/")
        head, rows = _read_csv(results_dir / folder / f"{detector}_{file}")
        col = head.index("anomaly_score")
        out[f.name] = np.array([float(r[col]) for r in rows])
    return out


def score_corpus(corpus: Sequence[NabFile], scores: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {name: sweep(((f.layout, scores[f.name]) for f in corpus), prof) for name, prof in PROFILES.items()}


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nab-dir", required=True, type=Path)
    ap.add_argument("--detector", default="windowedGaussian")
    args = ap.parse_args()
    corpus = load_corpus(args.nab_dir)
    res = score_corpus(corpus, read_results(args.nab_dir / "results" / args.detector, corpus, args.detector))
    for name, r in res.items():
        print(f"{name:20s} {r['score']:7.2f}  (threshold {r['threshold']:.4f}, TP {r['tp']} FP {r['fp']} FN {r['fn']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
