"""CPU time of one Theil-Sen slope: scipy.stats.theilslopes (what detectors/kernels/rise.py uses)
against a bare numpy median of the pairwise slopes (what it used before), in the same run.

    .venv/bin/python -m tests.bench.theil_sen
"""

from __future__ import annotations

import math
import time

import numpy as np

from tocsin.detectors.kernels.rise import theil_sen_slope


def numpy_median_slope(ts: np.ndarray, levels: np.ndarray) -> float:
    i, j = np.triu_indices(ts.size, k=1)
    dt = ts[j] - ts[i]
    keep = dt != 0.0
    return float(np.median((levels[j] - levels[i])[keep] / dt[keep])) if keep.any() else math.nan


def main() -> None:
    rng = np.random.default_rng(0)
    for n in (7, 30, 120):  # a 30 min window of 5 min readings; 1 min readings; the tracker's cap
        ts = 1.7e9 + np.sort(rng.uniform(0.0, 1800.0, n))
        levels = rng.normal(3.0, 0.1, n)
        assert math.isclose(theil_sen_slope(ts, levels), numpy_median_slope(ts, levels), rel_tol=1e-12)
        reps = 2000
        cpu = {}
        for name, f in (("numpy", numpy_median_slope), ("scipy", theil_sen_slope)):
            c0 = time.process_time()
            for _ in range(reps):
                f(ts, levels)
            cpu[name] = (time.process_time() - c0) / reps * 1e6
        print(
            f"n={n:3d}: numpy median {cpu['numpy']:6.1f} us CPU, scipy.stats.theilslopes {cpu['scipy']:6.1f} us CPU,"
            f" ratio {cpu['scipy'] / cpu['numpy']:.1f}"
        )


if __name__ == "__main__":
    main()
