"""schemas/seismology.py: the one home of the geodesy and seismology formulas (GUIDE section 3)."""

from __future__ import annotations

import math

import pytest

import tocsin.alerts.kernels.fire
import tocsin.alerts.kernels.quake
import tocsin.detectors.kernels.seismic
import tocsin.simulators.physics
from tocsin.schemas import seismology as s


def test_intensity_branches_by_hand() -> None:
    # GB/T 17742-2020: I_V = 3.00*lg(0.1) + 9.77 = 6.77; I_A = 3.17*lg(1) + 6.59 = 6.59
    assert s.intensity_from_pgv(0.1) == pytest.approx(6.77, abs=1e-12)
    assert s.intensity_from_pga(1.0) == pytest.approx(6.59, abs=1e-12)
    # both >= 6: I_V alone, rounded to 0.1 -> 6.8
    assert s.instrumental_intensity(1.0, 0.1) == 6.8
    # I_A = 6.59, I_V = 3*lg(0.01) + 9.77 = 3.77: the mean 5.18 -> 5.2
    assert s.instrumental_intensity(1.0, 0.01) == 5.2
    assert s.instrumental_intensity(0.0, 0.0) == 1.0
    assert s.round_intensity(13.0) == 12.0
    assert s.round_intensity(6.45) == 6.5  # half-up, not banker's rounding


def test_pga_for_intensity_inverts_i_a() -> None:
    assert s.pga_for_intensity(6.59) == pytest.approx(1.0, rel=1e-12)
    assert s.pga_for_intensity(9.76) == pytest.approx(10.0, rel=1e-12)  # 3.17*1 + 6.59


def test_pd_magnitude_by_hand() -> None:
    # log Pd = -3.463 + 0.729*6 - 1.374*lg(10) = -0.463 (GUIDE section 3)
    assert s.magnitude_from_pd(10**-0.463, 10.0) == pytest.approx(6.0, abs=1e-12)
    assert math.log10(s.pd_from_magnitude(6.0, 10.0)) == pytest.approx(-0.463, abs=1e-12)
    with pytest.raises(ValueError):
        s.magnitude_from_pd(0.0, 10.0)


def test_the_kernels_use_the_one_definition() -> None:
    assert tocsin.detectors.kernels.seismic.instrumental_intensity is s.instrumental_intensity
    assert tocsin.detectors.kernels.seismic.magnitude_from_pd is s.magnitude_from_pd
    assert tocsin.alerts.kernels.quake.magnitude_from_pd is s.magnitude_from_pd
    assert tocsin.alerts.kernels.quake.EARTH_RADIUS_KM is s.EARTH_RADIUS_KM
    assert tocsin.alerts.kernels.fire.EARTH_RADIUS_KM is s.EARTH_RADIUS_KM
    assert tocsin.simulators.physics.intensity_from_pgv is s.intensity_from_pgv
