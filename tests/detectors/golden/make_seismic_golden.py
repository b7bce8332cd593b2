"""Regenerate seismic_obspy.npz (needs ObsPy; not run by the test suite).

    python tests/detectors/golden/make_seismic_golden.py

The input trace is stored in the fixture, so the tests do not depend on the RNG.
"""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import obspy
import scipy
from obspy.signal.filter import bandpass
from obspy.signal.trigger import classic_sta_lta, recursive_sta_lta, trigger_onset

OUT = pathlib.Path(__file__).with_name("seismic_obspy.npz")


def main() -> None:
    rng = np.random.default_rng(20240607)
    n = 2000
    x = rng.standard_normal(n)
    t = np.arange(n) / 100.0
    burst = (t >= 12.0) & (t < 15.0)
    x[burst] += 25.0 * np.sin(2 * np.pi * 5.0 * t[burst]) * np.exp(-(t[burst] - 12.0))
    x = x * 1e-6  # m/s-sized values

    rec_10_100 = recursive_sta_lta(x, 10, 100)
    rec_3_7 = recursive_sta_lta(x, 3, 7)
    cls_10_100 = classic_sta_lta(x, 10, 100)
    cls_3_7 = classic_sta_lta(x, 3, 7)
    bp = bandpass(x, 1.0, 20.0, 100.0, corners=4, zerophase=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # obspy warns that it falls back to a high-pass
        hp = bandpass(x, 1.0, 20.0, 30.0, corners=4, zerophase=False)
    trig_rec = np.asarray(trigger_onset(rec_10_100, 3.0, 1.2), dtype=np.int64).reshape(-1, 2)

    # Crafted to pin down the comparison operators: values equal to the thresholds, a trigger
    # still on at the end, a one-sample trigger, and a NaN.
    crafted = np.array([0, 1, 2, 3, 2, 1, 0.5, 3, 3, 1, 0, 3, 0.9, 2.0, 3.5, np.nan, 3, 1.0, 1.0, 3.0])
    trig_crafted = np.asarray(trigger_onset(crafted, 3.0, 1.0), dtype=np.int64).reshape(-1, 2)

    np.savez_compressed(
        OUT,
        x=x,
        rec_10_100=rec_10_100,
        rec_3_7=rec_3_7,
        cls_10_100=cls_10_100,
        cls_3_7=cls_3_7,
        bp_1_20_df100=bp,
        hp_1_df30=hp,
        trig_rec_10_100_3_1p2=trig_rec,
        crafted=crafted,
        trig_crafted_3_1=trig_crafted,
        versions=np.array([obspy.__version__, np.__version__, scipy.__version__]),
    )
    print("wrote", OUT, "obspy", obspy.__version__)


if __name__ == "__main__":
    main()
