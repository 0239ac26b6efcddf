"""Primary-beam correction of target images with the ATA's Gaussian beam (:mod:`atarchive.beam`).

The pointing centre is the image's reference position (CRVAL: tclean centres the image on the field's
phase centre, which is where the ATA points); the frequency is the image's reference frequency (the
centre of the LO's band for an MFS image). Pixels where the beam's power response is below ``cutoff``
are blanked (NaN): dividing by a small response there only amplifies noise, and the Gaussian model of
the main lobe is not valid that far out. Pure astropy + numpy, no CASA.
"""

from __future__ import annotations

import numpy as np

from . import beam

DEFAULT_CUTOFF = 0.1


def _frequency_hz(header) -> float:
    for i in range(1, int(header.get("NAXIS", 0)) + 1):
        if str(header.get(f"CTYPE{i}", "")).upper().startswith("FREQ"):
            return float(header[f"CRVAL{i}"])
    raise ValueError("image has no frequency axis")


def _celestial(header):
    from astropy.wcs import WCS

    return WCS(header).celestial


def response_map(header) -> np.ndarray:
    """The beam's power response at every pixel of the image's sky plane (ny, nx)."""
    w = _celestial(header)
    ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra, dec = w.wcs_pix2world(xx, yy, 0)
    ra0, dec0 = w.wcs.crval
    return beam.response_at(ra, dec, ra0, dec0, _frequency_hz(header))


def correct_fits(src: str, dst: str, cutoff: float = DEFAULT_CUTOFF) -> float:
    """Write ``dst``: the image ``src`` divided by the primary-beam response, blank where the response is
    below ``cutoff``. Returns the cutoff used."""
    from astropy.io import fits

    with fits.open(src) as hdul:
        header = hdul[0].header.copy()
        data = np.asarray(hdul[0].data, dtype=np.float32)
    pb = response_map(header).astype(np.float32)
    out = np.where(pb >= cutoff, data / np.maximum(pb, cutoff), np.nan).astype(np.float32)
    header["HISTORY"] = f"atarchive: primary-beam corrected, Gaussian FWHM {beam.FWHM_DEG_AT_1GHZ} deg at 1 GHz"
    header["PBCUTOFF"] = (cutoff, "blank where the primary-beam response is below this")
    fits.PrimaryHDU(out, header).writeto(dst, overwrite=True)
    return cutoff


def gain_at(fits_path: str, ra_deg: float, dec_deg: float) -> float:
    """The beam's power response at a sky position of an image (its pointing centre and frequency)."""
    from astropy.io import fits

    header = fits.getheader(fits_path)
    ra0, dec0 = _celestial(header).wcs.crval
    return float(beam.response_at(ra_deg, dec_deg, ra0, dec0, _frequency_hz(header)))
