"""Standard calibrators: Perley-Butler 2017 flux calibrators (names, aliases, positions, spectra)
and a shipped list of common phase calibrators. Pure Python, no CASA.

PB2017: log10(S / Jy) = sum_k a_k (log10(f / GHz))^k  (Perley & Butler 2017, ApJS 230, 7, table 6).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np


@dataclass(frozen=True)
class FluxCalibrator:
    name: str
    aliases: tuple[str, ...]
    ra_deg: float
    dec_deg: float
    coeffs: tuple[float, ...]


@dataclass(frozen=True)
class PhaseCalibrator:
    name: str
    ra_deg: float
    dec_deg: float


def _hms(h, m, s):
    return 15.0 * (h + m / 60 + s / 3600)


def _dms(d, m, s):
    sign = -1 if str(d).startswith("-") else 1
    return sign * (abs(d) + m / 60 + s / 3600)


FLUX_CALIBRATORS: tuple[FluxCalibrator, ...] = (
    FluxCalibrator("3C286", ("3C286", "1331+305", "J1331+3030", "1328+307", "B1328+307"),
                   _hms(13, 31, 8.2881), _dms(30, 30, 32.959), (1.2481, -0.4507, -0.1798, 0.0357)),
    FluxCalibrator("3C48", ("3C48", "0137+331", "J0137+3309", "0134+329", "B0134+329"),
                   _hms(1, 37, 41.2994), _dms(33, 9, 35.133), (1.3253, -0.7553, -0.1914, 0.0498)),
    FluxCalibrator("3C147", ("3C147", "0542+498", "J0542+4951", "0538+498", "B0538+498"),
                   _hms(5, 42, 36.1379), _dms(49, 51, 7.234), (1.4516, -0.6961, -0.2007, 0.0640, -0.0464, 0.0289)),
    FluxCalibrator("3C138", ("3C138", "0521+166", "J0521+1638", "0518+165", "B0518+165"),
                   _hms(5, 21, 9.8860), _dms(16, 38, 22.052), (1.0088, -0.4981, -0.1550, -0.0100, 0.0220)),
    FluxCalibrator("3C295", ("3C295", "1411+522", "J1411+5212", "1409+524", "B1409+524"),
                   _hms(14, 11, 20.519), _dms(52, 12, 9.97), (1.4701, -0.7658, -0.2780, -0.0347, 0.0399)),
    FluxCalibrator("3C196", ("3C196", "0813+482", "J0813+4813", "0809+483", "B0809+483"),
                   _hms(8, 13, 36.0561), _dms(48, 13, 2.636), (1.2872, -0.8530, -0.1534, -0.0200, 0.0201)),
)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).upper()


_BY_ALIAS = {_norm(a): c for c in FLUX_CALIBRATORS for a in (c.name, *c.aliases)}


def find_flux_calibrator(name: str) -> FluxCalibrator | None:
    """Look a flux calibrator up by name or alias (case, spaces, underscores and dashes ignored)."""
    if isinstance(name, FluxCalibrator):
        return name
    return _BY_ALIAS.get(_norm(str(name)))


def pb2017_flux(name_or_calibrator, freq_hz):
    """Perley-Butler 2017 Stokes I flux density (Jy) at ``freq_hz`` (scalar or array)."""
    cal = find_flux_calibrator(name_or_calibrator)
    if cal is None:
        raise KeyError(f"not a Perley-Butler 2017 flux calibrator: {name_or_calibrator!r}")
    lf = np.log10(np.asarray(freq_hz, dtype=float) / 1e9)
    logs = sum(a * lf**k for k, a in enumerate(cal.coeffs))
    out = 10.0**logs
    return float(out) if np.ndim(out) == 0 else out


def angular_sep_arcsec(ra1, dec1, ra2, dec2) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    s = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(s)))) * 3600.0


def _nearest(items, ra, dec, tol):
    best = None
    for c in items:
        sep = angular_sep_arcsec(ra, dec, c.ra_deg, c.dec_deg)
        if sep <= tol and (best is None or sep < best[1]):
            best = (c, sep)
    return best


def match_flux_calibrator(ra_deg: float, dec_deg: float, tol_arcsec: float = 60.0):
    """(calibrator, separation in arcsec) of the standard within ``tol_arcsec``, else None."""
    return _nearest(FLUX_CALIBRATORS, ra_deg, dec_deg, tol_arcsec)


@lru_cache(maxsize=1)
def load_phase_calibrators() -> tuple[PhaseCalibrator, ...]:
    text = (resources.files("atarchive") / "data" / "phase_calibrators.csv").read_text()
    rows = csv.reader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    header = next(rows)
    assert header[:3] == ["name", "ra_deg", "dec_deg"], header
    return tuple(PhaseCalibrator(r[0], float(r[1]), float(r[2])) for r in rows)


def match_phase_calibrator(ra_deg: float, dec_deg: float, tol_arcsec: float = 60.0):
    return _nearest(load_phase_calibrators(), ra_deg, dec_deg, tol_arcsec)
