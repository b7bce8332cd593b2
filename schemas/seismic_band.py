"""The seismic sample rates the pipeline accepts and the filter bands the detector may use: one definition.

The gateway refuses a seismic packet below ``MIN_SAMPLE_RATE_HZ`` (tocsin.schemas.telemetry.SeismicPacket) and
the rules loader refuses a trigger band whose lower corner is not below that rate's Nyquist frequency
(tocsin.detectors.rules.SeismicRules). Every filter the station detector builds has its lower corner at most
``MAX_LOWER_CORNER_HZ``, so every packet the gateway accepts can be band-passed with every rules file
that loads: the two sides agree because both read the numbers below, not two copies of them.

The floor is the lower limit of the SEED band codes for short-period and broadband channels (S, B:
10 Hz and above; SEED Reference Manual v2.4, appendix A). Channels sampled more slowly (M, L, V, U
bands: 10 Hz and below) carry no energy in the 1-20 Hz band used for local-event triggering.
"""

from __future__ import annotations

MIN_SAMPLE_RATE_HZ = 10.0
"""Lowest seismic sample rate accepted at the gateway (inclusive)."""
MAX_SAMPLE_RATE_HZ = 1_000.0
"""Highest seismic sample rate accepted at the gateway (inclusive)."""

MAX_LOWER_CORNER_HZ = 0.5 * MIN_SAMPLE_RATE_HZ
"""The Nyquist frequency of the slowest accepted packet: a band's lower corner must lie strictly below it."""

DEFAULT_TRIGGER_BAND_HZ = (1.0, 20.0)
"""Band-pass before STA/LTA for local events (1-20 Hz, the usual choice for local earthquakes)."""
INTENSITY_BAND_HZ = (0.1, 10.0)
"""Band-pass before PGA/PGV for instrumental intensity (GB/T 17742-2020: 0.1-10 Hz)."""
PD_HIGHPASS_HZ = 0.075
"""High-pass of the displacement used for Pd (magnitude), below the intensity band's lower corner."""


def sample_rate_problem(rate_hz: float) -> str | None:
    """Why a packet at ``rate_hz`` cannot be processed by the seismic detector, or None when it can."""
    if not MIN_SAMPLE_RATE_HZ <= rate_hz <= MAX_SAMPLE_RATE_HZ:
        return (
            f"sample rate {rate_hz:g} Hz is outside {MIN_SAMPLE_RATE_HZ:g}..{MAX_SAMPLE_RATE_HZ:g} Hz "
            f"(the detector's filters need a Nyquist frequency above {MAX_LOWER_CORNER_HZ:g} Hz)"
        )
    return None


def band_problem(freqmin_hz: float, freqmax_hz: float) -> str | None:
    """Why a trigger band cannot be applied to every accepted packet, or None when it can."""
    if not 0.0 < freqmin_hz < MAX_LOWER_CORNER_HZ:
        return (
            f"freqmin_hz {freqmin_hz:g} must lie in (0, {MAX_LOWER_CORNER_HZ:g}) Hz, the Nyquist frequency "
            f"of the slowest accepted packet ({MIN_SAMPLE_RATE_HZ:g} Hz)"
        )
    if not freqmax_hz > freqmin_hz:
        return f"freqmax_hz {freqmax_hz:g} must exceed freqmin_hz {freqmin_hz:g}"
    return None
