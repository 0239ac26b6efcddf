"""Pure QA decisions on calibration solutions (no CASA, no plotting): which antennas' bandpass or
gains look wrong."""

from __future__ import annotations

import warnings

import numpy as np


def robust_z(values: np.ndarray) -> np.ndarray:
    """Distance from the median in units of 1.4826 × median absolute deviation (NaN-safe)."""
    v = np.asarray(values, dtype=float)
    med = np.nanmedian(v)
    mad = 1.4826 * np.nanmedian(np.abs(v - med))
    if not np.isfinite(mad) or mad == 0:
        mad = max(1e-3 * abs(med), 1e-12)
    return (v - med) / mad


def bandpass_outliers(amp: np.ndarray, phase_deg: np.ndarray, *, z: float = 5.0,
                      min_rel: float = 0.1, min_phase_rms_deg: float = 10.0) -> dict[int, str]:
    """Antennas (row index of ``amp``/``phase_deg``, shape (nant, nchan), NaN = flagged) whose bandpass
    stands out: mean amplitude or channel-to-channel phase scatter far from the other antennas, or
    mostly flagged. Returns {antenna index: reason}."""
    amp = np.asarray(amp, dtype=float)
    ph = np.asarray(phase_deg, dtype=float)
    out: dict[int, str] = {}
    if amp.ndim != 2 or amp.shape[0] == 0:
        return out
    good = np.isfinite(amp)
    frac_flag = 1.0 - good.mean(axis=1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: fully flagged antennas
        level = np.nanmedian(amp, axis=1)
        scatter = np.nanstd(np.diff(np.unwrap(np.radians(np.nan_to_num(ph)), axis=1), axis=1), axis=1)
    scatter = np.degrees(scatter)
    zl, zs = robust_z(level), robust_z(scatter)
    ref = np.nanmedian(level)
    for i in range(amp.shape[0]):
        if frac_flag[i] > 0.5:
            out[i] = f"{frac_flag[i]:.0%} of channels flagged"
        elif abs(zl[i]) > z and abs(level[i] - ref) > min_rel * abs(ref):
            out[i] = f"amplitude {level[i]:.2f} vs median {ref:.2f}"
        elif zs[i] > z and scatter[i] > min_phase_rms_deg:
            out[i] = f"phase scatter {scatter[i]:.0f}° per channel"
    return out
