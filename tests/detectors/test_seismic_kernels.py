"""Tests for tocsin.detectors.kernels.seismic: ObsPy golden fixtures, hand-computed values, reference
twins and chunk invariance of every streaming kernel."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.detectors.kernels import seismic as sk

GOLDEN = np.load(pathlib.Path(__file__).parent / "golden" / "seismic_obspy.npz")

# Per-test settings, not a profile loaded at import (that would change every other file's examples).
SEISMIC = settings(max_examples=60, deadline=None)


def _rng_signal(seed: int, n: int, burst: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    if burst and n > 20:
        a = int(rng.integers(0, n - 10))
        b = int(rng.integers(a + 1, min(n, a + 200) + 1))
        x[a:b] *= float(rng.uniform(2.0, 30.0))
    return x * 1e-6


def _split(x: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    points = sorted({c % (len(x) + 1) for c in cuts})
    return np.split(x, points)


def _roundtrip(d: dict) -> dict:
    return json.loads(json.dumps(d, allow_nan=False))


def _assert_close_tree(a, b, rel=1e-9, abs_=1e-9):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_close_tree(a[k], b[k], rel, abs_)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            _assert_close_tree(u, v, rel, abs_)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=rel, abs=abs_)
    else:
        assert a == b


# ---------------------------------------------------------------------------------------------
# ObsPy golden fixtures (generated once with ObsPy 1.5.1, see golden/README.md)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nsta,nlta,key", [(10, 100, "rec_10_100"), (3, 7, "rec_3_7")])
def test_recursive_sta_lta_matches_obspy(nsta, nlta, key):
    got = sk.recursive_sta_lta(GOLDEN["x"], nsta, nlta)
    want = GOLDEN[key]
    assert np.array_equal(got == 0, want == 0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert np.all(got[:nlta] == 0) and np.all(got[nlta:] > 0)


@pytest.mark.parametrize("nsta,nlta,key", [(10, 100, "cls_10_100"), (3, 7, "cls_3_7")])
def test_classic_sta_lta_matches_obspy(nsta, nlta, key):
    got = sk.classic_sta_lta(GOLDEN["x"], nsta, nlta)
    want = GOLDEN[key]
    assert np.array_equal(got == 0, want == 0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert np.all(got[: nlta - 1] == 0) and got[nlta - 1] > 0


def test_bandpass_matches_obspy():
    want = GOLDEN["bp_1_20_df100"]
    got = sk.bandpass_batch(GOLDEN["x"], 1.0, 20.0, 100.0, corners=4)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.max(np.abs(want)))


def test_bandpass_above_nyquist_falls_back_to_highpass_like_obspy():
    want = GOLDEN["hp_1_df30"]
    assert sk.Bandpass(1.0, 20.0, 30.0).kind == "highpass"
    got = sk.bandpass_batch(GOLDEN["x"], 1.0, 20.0, 30.0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.max(np.abs(want)))


def test_trigger_onset_matches_obspy_on_stalta():
    want = [tuple(p) for p in GOLDEN["trig_rec_10_100_3_1p2"].tolist()]
    assert want  # the fixture does contain a trigger
    assert sk.trigger_onset(GOLDEN["rec_10_100"], 3.0, 1.2) == want


def test_trigger_onset_matches_obspy_at_threshold_equality():
    # cft == thr_on switches on, cft == thr_off keeps on (both >=), NaN switches off,
    # a trigger open at the end closes at the last sample.
    want = [tuple(p) for p in GOLDEN["trig_crafted_3_1"].tolist()]
    assert want == [(3, 5), (7, 9), (11, 11), (14, 14), (16, 19)]
    assert sk.trigger_onset(GOLDEN["crafted"], 3.0, 1.0) == want


# ---------------------------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------------------------


def test_classic_sta_lta_by_hand():
    x = np.arange(1.0, 9.0)  # squares 1 4 9 16 25 36 49 64
    got = sk.classic_sta_lta(x, 2, 4)
    want = [0, 0, 0, (9 + 16) / 2 / ((1 + 4 + 9 + 16) / 4), (16 + 25) / 2 / ((4 + 9 + 16 + 25) / 4)]
    np.testing.assert_allclose(got[:5], want, rtol=1e-15, atol=0)
    assert got[7] == pytest.approx((49 + 64) / 2 / ((25 + 36 + 49 + 64) / 4), rel=1e-15)


def test_recursive_sta_lta_by_hand():
    # nsta=1 -> sta = x^2; nlta=2 -> lta_i = (x_i^2 + lta_{i-1})/2, starting from ~0 at sample 1.
    x = np.array([7.0, 2.0, 3.0, 4.0])
    got = sk.recursive_sta_lta(x, 1, 2)
    lta1 = 2.0
    lta2 = 0.5 * 9 + 0.5 * lta1
    lta3 = 0.5 * 16 + 0.5 * lta2
    np.testing.assert_allclose(got, [0.0, 0.0, 9 / lta2, 16 / lta3], rtol=1e-15, atol=0)


def test_stalta_of_zeros_is_zero_not_nan():
    z = np.zeros(5000)
    assert np.all(sk.recursive_sta_lta(z, 2, 4) == 0)
    assert np.all(sk.classic_sta_lta(z, 2, 4) == 0)


def test_short_input_gives_zeros():
    assert np.all(sk.classic_sta_lta(np.ones(5), 2, 10) == 0)
    assert np.all(sk.recursive_sta_lta(np.ones(5), 2, 10) == 0)
    assert sk.recursive_sta_lta([], 2, 10).shape == (0,)


@pytest.mark.parametrize("nsta,nlta", [(0, 5), (5, 0), (6, 5), (2.5, 10), (True, 10)])
def test_bad_windows_rejected(nsta, nlta):
    with pytest.raises(ValueError):
        sk.RecursiveStaLta(nsta, nlta)
    with pytest.raises(ValueError):
        sk.ClassicStaLta(nsta, nlta)


@pytest.mark.parametrize(
    "pga,pgv,want",
    [
        (1.0, 0.1, 6.8),  # I_A = 6.59, I_V = 6.77: both >= 6 -> I_V
        (1.0, 0.01, 5.2),  # I_A = 6.59, I_V = 3.77 -> mean 5.18
        (10.0, 1.0, 9.8),  # I_A = 9.76, I_V = 9.77 -> I_V
        (0.5, 0.05, 5.8),  # I_A = 5.6357, I_V = 5.8669 -> mean 5.7513
        (0.01, 0.001, 1.0),  # mean 0.51 -> clamped up
        (1000.0, 100.0, 12.0),  # I_V = 15.77 -> clamped down
        (0.0, 0.5, 1.0),  # zero peak
        (0.0, 0.0, 1.0),
    ],
)
def test_instrumental_intensity_by_hand(pga, pgv, want):
    assert sk.instrumental_intensity(pga, pgv) == want


def test_instrumental_intensity_rounds_half_up_and_validates():
    # I_A = I_V = 6.0 exactly at PGA = 10**((6 - 6.59)/3.17), PGV = 10**((6 - 9.77)/3)
    pga = 10 ** ((6.0 - 6.59) / 3.17)
    pgv = 10 ** ((6.0 - 9.77) / 3.0)
    assert sk.instrumental_intensity(pga, pgv) == 6.0
    for bad in [(-1.0, 0.1), (0.1, float("nan")), (float("inf"), 0.1)]:
        with pytest.raises(ValueError):
            sk.instrumental_intensity(*bad)


def test_magnitude_from_pd_by_hand():
    # M = 6 at R = 10 km: log10 Pd = -3.463 + 0.729*6 - 1.374*1 = -0.463
    assert sk.magnitude_from_pd(10**-0.463, 10.0) == pytest.approx(6.0, abs=1e-12)
    # M = 5 at R = 100 km: log10 Pd = -3.463 + 3.645 - 2.748 = -2.566
    assert sk.magnitude_from_pd(10**-2.566, 100.0) == pytest.approx(5.0, abs=1e-12)
    with pytest.raises(ValueError):
        sk.magnitude_from_pd(0.0, 10.0)
    with pytest.raises(ValueError):
        sk.magnitude_from_pd(1.0, -3.0)


@SEISMIC
@given(m=st.floats(2.0, 9.0), r=st.floats(1.0, 500.0))
def test_magnitude_from_pd_inverts_the_pd_law(m, r):
    pd = 10 ** (-3.463 + 0.729 * m - 1.374 * math.log10(r))
    assert sk.magnitude_from_pd(pd, r) == pytest.approx(m, abs=1e-9)


def test_peak_ground_motion_by_hand():
    pga, pgv = sk.peak_ground_motion([0.0, 0.1, -0.2, 0.05], 100.0)
    assert pgv == 0.2
    assert pga == pytest.approx(30.0, rel=1e-12)  # |(-0.2) - 0.1| * 100
    assert sk.peak_ground_motion([], 100.0) == (0.0, 0.0)
    assert sk.peak_ground_motion([0.3], 100.0) == (0.0, 0.3)


def test_vector_peak_by_hand():
    assert sk.vector_peak([[3.0, 0.0, 1.0], [4.0, 0.0, 1.0], [0.0, 2.0, 1.0]]) == 5.0
    assert sk.vector_peak(np.array([[0.0, -2.0], [0.0, 0.0], [0.0, 0.0]])) == 2.0
    with pytest.raises(ValueError):
        sk.vector_peak([[1.0, 2.0], [1.0]])


def test_pd_from_displacement():
    assert sk.pd_from_displacement([0.001, -0.003, 0.002]) == pytest.approx(0.3, rel=1e-15)
    assert sk.pd_from_displacement([]) == 0.0


def test_velocity_to_displacement_single_cycle():
    df = 100.0
    t = np.arange(int(20 * df)) / df
    amp = 0.01  # m/s
    v = np.where((t >= 5.0) & (t < 6.0), amp * np.sin(2 * np.pi * (t - 5.0)), 0.0)
    # integral of one sine cycle: (1 - cos)/(2 pi), peak 2*amp/(2 pi) at mid-cycle
    want_pd_cm = 100.0 * 2 * amp / (2 * np.pi)
    raw = sk.velocity_to_displacement(v, df, highpass_hz=None, pre_event_samples=400)
    assert sk.pd_from_displacement(raw) == pytest.approx(want_pd_cm, rel=1e-3)
    assert abs(raw[-1]) < 1e-6  # returns to rest
    # The 0.075 Hz high-pass trims a 1 s one-sided pulse by ~15%, a 0.2 s one by ~4%.
    filt = sk.velocity_to_displacement(v, df, pre_event_samples=400)
    assert 0.8 * want_pd_cm < sk.pd_from_displacement(filt) < want_pd_cm
    v5 = np.where((t >= 5.0) & (t < 5.2), amp * np.sin(2 * np.pi * 5.0 * (t - 5.0)), 0.0)
    filt5 = sk.velocity_to_displacement(v5, df, pre_event_samples=400)
    assert sk.pd_from_displacement(filt5) == pytest.approx(want_pd_cm / 5.0, rel=0.06)


def test_velocity_to_displacement_offset_does_not_drift():
    v = np.full(3000, 0.02) + 1e-7 * np.random.default_rng(3).standard_normal(3000)
    d = sk.velocity_to_displacement(v, 100.0, pre_event_samples=100)
    assert np.max(np.abs(d)) < 1e-5  # 0.02 m/s over 30 s would otherwise be 0.6 m


# ---------------------------------------------------------------------------------------------
# Reference twins
# ---------------------------------------------------------------------------------------------


@SEISMIC
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 600),
    nsta=st.integers(1, 30),
    extra=st.integers(0, 120),
)
def test_recursive_matches_reference_twin(seed, n, nsta, extra):
    x = _rng_signal(seed, n)
    nlta = nsta + extra
    got = sk.recursive_sta_lta(x, nsta, nlta)
    want = sk._recursive_sta_lta_reference(x, nsta, nlta)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@SEISMIC
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 600),
    nsta=st.integers(1, 30),
    extra=st.integers(0, 120),
)
def test_classic_matches_reference_twin(seed, n, nsta, extra):
    x = _rng_signal(seed, n)
    nlta = nsta + extra
    got = sk.classic_sta_lta(x, nsta, nlta)
    want = sk._classic_sta_lta_reference(x, nsta, nlta)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)


def test_classic_running_sums_are_reanchored():
    # A huge burst followed by a long quiet stretch: without re-anchoring, the running sums keep
    # the rounding error of the burst forever.
    x = np.concatenate([1e4 * np.ones(500), 1e-3 * np.random.default_rng(5).standard_normal(5000)])
    got = sk.classic_sta_lta(x, 10, 100)
    want = sk._classic_sta_lta_reference(x, 10, 100)
    np.testing.assert_allclose(got[1000:], want[1000:], rtol=1e-9, atol=0)


# ---------------------------------------------------------------------------------------------
# Chunk invariance and state round trips
# ---------------------------------------------------------------------------------------------

_cuts = st.lists(st.integers(0, 10_000), max_size=12)


@SEISMIC
@given(seed=st.integers(0, 2**32 - 1), cuts=_cuts)
def test_recursive_chunked_equals_batch(seed, cuts):
    x = _rng_signal(seed, 700)
    batch = sk.recursive_sta_lta(x, 7, 60)
    s = sk.RecursiveStaLta(7, 60)
    parts = []
    for chunk in _split(x, cuts):
        s = sk.RecursiveStaLta.from_dict(_roundtrip(s.to_dict()))
        parts.append(s.process(chunk))
    np.testing.assert_allclose(np.concatenate(parts), batch, rtol=1e-12, atol=0)
    assert s.n == len(x)


@SEISMIC
@given(seed=st.integers(0, 2**32 - 1), cuts=_cuts)
def test_classic_chunked_equals_batch(seed, cuts):
    x = _rng_signal(seed, 700)
    batch = sk.classic_sta_lta(x, 7, 60)
    s = sk.ClassicStaLta(7, 60)
    parts = []
    for chunk in _split(x, cuts):
        s = sk.ClassicStaLta.from_dict(_roundtrip(s.to_dict()))
        parts.append(s.process(chunk))
    np.testing.assert_allclose(np.concatenate(parts), batch, rtol=1e-12, atol=0)


@SEISMIC
@given(seed=st.integers(0, 2**32 - 1), cuts=_cuts, steady=st.booleans())
def test_bandpass_chunked_equals_batch(seed, cuts, steady):
    x = _rng_signal(seed, 700) + 3e-6  # an offset, so steady_start matters
    batch = sk.Bandpass(0.5, 15.0, 100.0, 4, steady_start=steady).process(x)
    f = sk.Bandpass(0.5, 15.0, 100.0, 4, steady_start=steady)
    parts = []
    for chunk in _split(x, cuts):
        f = sk.Bandpass.from_dict(_roundtrip(f.to_dict()))
        parts.append(f.process(chunk))
    scale = np.max(np.abs(batch))
    np.testing.assert_allclose(np.concatenate(parts), batch, rtol=1e-12, atol=1e-12 * scale)


def test_selected_sosfilt_matches_public_scipy():
    # seismic may use scipy's private compiled kernel; whichever is selected must equal sosfilt.
    rng = np.random.default_rng(8)
    for df, band in [(100.0, (1.0, 20.0)), (100.0, (0.1, 10.0)), (40.0, (0.5, 15.0))]:
        sos = sk.Bandpass(band[0], band[1], df).sos
        x = rng.standard_normal(257)
        zi = rng.standard_normal((sos.shape[0], 2))
        x_copy, zi_copy = x.copy(), zi.copy()
        y0, z0 = sk.signal.sosfilt(sos, x, zi=zi)
        y1, z1 = sk._sosfilt(sos, x, zi)
        assert np.array_equal(y0, y1) and np.array_equal(z0, z1)
        assert np.array_equal(x, x_copy) and np.array_equal(zi, zi_copy)  # not modified in place


def test_bandpass_steady_start_removes_offset_transient():
    x = np.full(2000, 5.0)
    assert np.max(np.abs(sk.Bandpass(1.0, 20.0, 100.0, steady_start=True).process(x))) < 1e-9
    assert np.max(np.abs(sk.bandpass_batch(x, 1.0, 20.0, 100.0))) > 0.5


@pytest.mark.parametrize("args", [(0.0, 10.0, 100.0), (60.0, 70.0, 100.0), (5.0, 5.0, 100.0), (1.0, 2.0, 0.0)])
def test_bandpass_rejects_bad_bands(args):
    with pytest.raises(ValueError):
        sk.Bandpass(*args)


_cft_values = st.lists(st.one_of(st.sampled_from([0.0, 1.0, 1.5, 2.0, 3.0, 4.0]), st.floats(-1.0, 6.0)), max_size=80)


@SEISMIC
@given(cft=_cft_values, cuts=_cuts)
def test_trigger_state_chunked_equals_batch_and_trigger_onset(cft, cuts):
    c = np.asarray(cft, dtype=np.float64)
    whole = sk.TriggerState(3.0, 1.5).process(c, 0)
    s = sk.TriggerState(3.0, 1.5)
    events = []
    pos = 0
    for chunk in _split(c, cuts):
        s = sk.TriggerState.from_dict(_roundtrip(s.to_dict()))
        events += s.process(chunk, pos)
        pos += len(chunk)
    assert events == whole
    # The events paired (an open one closed at the end) are the reference twin's pairs.
    pairs, on = [], None
    for kind, idx in whole:
        if kind == "on":
            on = idx
        else:
            pairs.append((on, idx))
            on = None
    if on is not None:
        pairs.append((on, len(c) - 1))
    assert pairs == _reference_onsets(cft, 3.0, 1.5)
    assert sk.trigger_onset(c, 3.0, 1.5) == pairs


def _reference_onsets(cft: list[float], thr_on: float, thr_off: float) -> list[tuple[int, int]]:
    """ObsPy ``trigger_onset`` as its documentation states it, in plain Python (no TriggerState):
    on at the first sample >= thr_on; off at the last sample still >= thr_off before one below it;
    a trigger on at the end closes at the last sample."""
    pairs: list[tuple[int, int]] = []
    on = None
    for i, v in enumerate(cft):
        if on is None:
            if v >= thr_on:
                on = i
        elif v < thr_off:
            pairs.append((on, i - 1))
            on = None
    if on is not None:
        pairs.append((on, len(cft) - 1))
    return pairs


def test_trigger_hand_worked_example():
    # on 3.0, off 1.5: on at index 2 (3.0 >= 3.0); 4, 2 and 1.5 keep it on (1.5 >= 1.5), 1.4 drops
    # below: off at index 5, the last sample >= 1.5. On again at 8 (3.5); 1.6 at the end keeps it
    # on, so the pair closes at the last sample, 10.
    cft = [0.0, 1.0, 3.0, 4.0, 2.0, 1.5, 1.4, 0.0, 3.5, 3.5, 1.6]
    assert sk.TriggerState(3.0, 1.5).process(np.asarray(cft), 0) == [("on", 2), ("off", 5), ("on", 8)]
    assert sk.trigger_onset(cft, 3.0, 1.5) == [(2, 5), (8, 10)]
    # 2.99 never reaches 3.0: nothing
    assert sk.trigger_onset([2.99, 2.99, 0.0], 3.0, 1.5) == []
    # streamed in two chunks split at the drop: the off index points back into the first chunk
    s = sk.TriggerState(3.0, 1.5)
    assert s.process(np.asarray(cft[:6]), 0) == [("on", 2)]
    assert s.process(np.asarray(cft[6:]), 6) == [("off", 5), ("on", 8)]


def test_trigger_state_off_can_point_into_previous_chunk():
    s = sk.TriggerState(3.0, 1.0)
    assert s.process([0.0, 3.5, 2.0], 10) == [("on", 11)]
    assert s.triggered
    assert s.process([0.5, 4.0], 13) == [("off", 12), ("on", 14)]


def test_trigger_state_rejects_off_above_on():
    with pytest.raises(ValueError):
        sk.TriggerState(1.0, 2.0)


# ---------------------------------------------------------------------------------------------
# StationTrigger
# ---------------------------------------------------------------------------------------------

DF = 100.0
T0 = 1_700_000_000.0


def _event_trace(onset_s: float = 25.0, total_s: float = 45.0, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(total_s * DF)
    t = np.arange(n) / DF
    v = 1e-6 * rng.standard_normal(n)
    m = (t >= onset_s) & (t < onset_s + 6.0)
    tt = t[m] - onset_s
    v[m] += 5e-4 * np.sin(2 * np.pi * 3.0 * tt) * np.exp(-tt / 1.5)
    return v


def _run(st_: sk.StationTrigger, v: np.ndarray, sizes: list[int]) -> list[dict]:
    events, pos, k = [], 0, 0
    while pos < len(v):
        size = sizes[k % len(sizes)]
        chunk = v[pos : pos + size]
        events += st_.process(chunk, DF, T0 + pos / DF)
        pos += len(chunk)
        k += 1
    return events


def test_station_trigger_fires_on_burst_and_clears():
    v = _event_trace(onset_s=25.0)
    st_ = sk.StationTrigger()
    events = _run(st_, v, [100])
    assert [e["event"] for e in events] == ["on", "off"]
    on, off = events
    assert 0.0 <= on["t"] - (T0 + 25.0) <= 0.5
    assert on["ratio"] >= 4.0
    assert on["t"] < off["t"] < T0 + 45.0
    assert off["t_on"] == on["t"]
    assert not st_.triggered
    # The 3 Hz burst peaks near 5e-4 m/s; the intensity band passes 3 Hz with ~unit gain.
    assert 3e-4 < off["pgv_ms"] < 7e-4
    assert 3e-4 * 2 * np.pi * 3 < off["pga_ms2"] < 7e-4 * 2 * np.pi * 3 * 1.5
    assert off["intensity"] == sk.instrumental_intensity(off["pga_ms2"], off["pgv_ms"])
    assert (st_.pga_ms2, st_.pgv_ms) == (off["pga_ms2"], off["pgv_ms"])
    json.dumps(events, allow_nan=False)


def test_station_trigger_noise_and_offset_do_not_trigger():
    rng = np.random.default_rng(2)
    v = 0.01 + 1e-6 * rng.standard_normal(int(60 * DF))  # large DC offset, plain noise
    st_ = sk.StationTrigger()
    assert _run(st_, v, [100]) == []
    assert not st_.triggered


def test_station_trigger_silent_during_warm_up():
    v = _event_trace(onset_s=4.0, total_s=9.9)
    st_ = sk.StationTrigger()
    assert _run(st_, v, [100]) == []
    assert st_.stalta is not None and st_.stalta.nlta == 1000
    # the same burst after the LTA window has filled does trigger
    later = _run(sk.StationTrigger(), _event_trace(onset_s=14.0, total_s=24.0), [100])
    assert later and later[0]["event"] == "on"


def test_station_trigger_tracks_peaks_while_triggered():
    v = _event_trace()
    st_ = sk.StationTrigger()
    _run(st_, v[: int(26 * DF)], [100])
    assert st_.triggered
    assert st_.pgv_ms > 0 and st_.pga_ms2 > 0
    assert st_.intensity >= 1.0


def test_station_trigger_low_rate_uses_highpass():
    st_ = sk.StationTrigger()
    st_.process(np.zeros(20), 20.0, T0)
    assert st_.bandpass is not None and st_.bandpass.kind == "highpass"
    assert st_.peak_filter is not None and st_.peak_filter.kind == "highpass"
    assert (st_.stalta.nsta, st_.stalta.nlta) == (10, 200)


def test_station_trigger_rate_change_restarts():
    st_ = sk.StationTrigger()
    st_.process(np.zeros(100), 100.0, T0)
    st_.process(np.zeros(50), 50.0, T0 + 1)
    assert st_.df == 50.0 and st_.n == 50 and st_.stalta.nlta == 500


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 700), min_size=1, max_size=6))
def test_station_trigger_chunk_invariant_with_checkpoints(sizes):
    v = _event_trace(total_s=35.0)
    ref = sk.StationTrigger()
    want = _run(ref, v, [100])
    assert [e["event"] for e in want] == ["on", "off"]

    st_ = sk.StationTrigger()
    events, pos, k = [], 0, 0
    while pos < len(v):
        st_ = sk.StationTrigger.from_dict(_roundtrip(st_.to_dict()))
        chunk = v[pos : pos + sizes[k % len(sizes)]]
        events += st_.process(chunk, DF, T0 + pos / DF)
        pos += len(chunk)
        k += 1
    assert [(e["event"], e["sample"]) for e in events] == [(e["event"], e["sample"]) for e in want]
    _assert_close_tree(events, want, rel=1e-12, abs_=0.0)
    _assert_close_tree(st_.to_dict(), ref.to_dict(), rel=1e-12, abs_=0.0)


def test_station_trigger_fresh_state_roundtrip():
    d = _roundtrip(sk.StationTrigger().to_dict())
    again = sk.StationTrigger.from_dict(d)
    assert again.to_dict() == d
    assert not again.triggered
