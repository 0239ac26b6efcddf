"""The ATA primary beam: a circular Gaussian of FWHM ≈ 3.5° / f[GHz].

Source of the model: the SETI Institute's setiquest wiki page on the ATA field of view ("ATA
primary beam FWHM ≈ 3.5° at 1 GHz, scaling as 1/f", for the 6.1 m offset-Gregorian dishes), and
Hull et al. 2010, "The ATA primary beam" (arXiv:1010.1064), who measured the beam at 1.43 and
3.14 GHz: a Gaussian main lobe of that width. Only the main lobe is modelled (no sidelobes, no
polarisation or azimuthal structure); use it within about one FWHM of the pointing centre.

Pure functions of numbers and numpy arrays, no CASA and no astropy: the simulator attenuates
off-centre sources with it and image primary-beam correction can divide by the same response.
"""

from __future__ import annotations

import math

import numpy as np

FWHM_DEG_AT_1GHZ = 3.5
"""Primary-beam FWHM at 1 GHz, degrees; the FWHM scales as 1/frequency."""

_FOUR_LN2 = 4.0 * math.log(2.0)


def fwhm_deg(freq_hz):
    """Primary-beam FWHM in degrees at ``freq_hz`` (scalar or array)."""
    return FWHM_DEG_AT_1GHZ / (np.asarray(freq_hz, dtype=float) / 1e9)


def response(radius_deg, freq_hz):
    """Power response (1 on axis) at ``radius_deg`` from the pointing centre; broadcasts."""
    r = np.asarray(radius_deg, dtype=float) / fwhm_deg(freq_hz)
    return np.exp(-_FOUR_LN2 * r * r)


def separation_deg(ra1_deg, dec1_deg, ra2_deg, dec2_deg):
    """Great-circle distance in degrees between two positions (Vincenty's formula; broadcasts)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(x, dtype=float)) for x in (ra1_deg, dec1_deg, ra2_deg, dec2_deg))
    dra = ra2 - ra1
    num = np.hypot(np.cos(dec2) * np.sin(dra), np.cos(dec1) * np.sin(dec2) - np.sin(dec1) * np.cos(dec2) * np.cos(dra))
    den = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(dra)
    return np.degrees(np.arctan2(num, den))


def response_at(ra_deg, dec_deg, pointing_ra_deg, pointing_dec_deg, freq_hz):
    """Power response at a sky position for a pointing centre (the phase centre for the ATA)."""
    return response(separation_deg(pointing_ra_deg, pointing_dec_deg, ra_deg, dec_deg), freq_hz)
