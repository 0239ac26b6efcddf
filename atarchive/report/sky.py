"""Elevation and parallactic angle of a field seen from the ATA (astropy for sidereal time, then
spherical astronomy; accurate to far better than a plot shows, with no IERS download)."""

from __future__ import annotations

import numpy as np

# Hat Creek Radio Observatory (ATA array centre), WGS84.
from ..telescope import ATA_HEIGHT_M, ATA_LAT_DEG, ATA_LON_DEG  # noqa: F401


def local_sidereal_deg(mjd: np.ndarray) -> np.ndarray:
    """Local apparent sidereal time (deg) at the ATA for UTC MJDs, offline (UT1 = UTC if no table)."""
    from astropy import units as u
    from astropy.coordinates import Longitude
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.iers_degraded_accuracy = "ignore"
    t = Time(np.atleast_1d(mjd), format="mjd", scale="utc")
    return np.asarray(t.sidereal_time("apparent", longitude=Longitude(ATA_LON_DEG * u.deg)).deg)


def elevation_parallactic(ra_deg: float, dec_deg: float, lst_deg: np.ndarray,
                          lat_deg: float = ATA_LAT_DEG) -> tuple[np.ndarray, np.ndarray]:
    """(elevation, parallactic angle) in degrees for a source at (ra, dec) and sidereal times."""
    h = np.radians(np.asarray(lst_deg) - ra_deg)
    d, phi = np.radians(dec_deg), np.radians(lat_deg)
    el = np.arcsin(np.sin(d) * np.sin(phi) + np.cos(d) * np.cos(phi) * np.cos(h))
    pa = np.arctan2(np.sin(h), np.tan(phi) * np.cos(d) - np.sin(d) * np.cos(h))
    return np.degrees(el), np.degrees(pa)
