"""Sky positions matched between catalogues (astropy), as plain functions with no CASA and no catalogue:
a reference catalogue read from a local file, the check of an image's sources against it, and every
measurement near a position.

A reference catalogue is a FITS table, a CSV file or a VOTable with columns ``ra`` and ``dec``
(degrees), ``flux`` (Jy) and ``freq`` (Hz); ``ra_deg``/``dec_deg``/``flux_jy``/``freq_hz`` (and
``RAJ2000``/``DEJ2000``) are read too. A missing ``freq`` column means every row is at 1.4 GHz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ConfigError

_ALIASES = {
    "ra": ("ra", "ra_deg", "raj2000", "ra_j2000"),
    "dec": ("dec", "dec_deg", "dej2000", "decj2000", "dec_j2000"),
    "flux": ("flux", "flux_jy", "s", "flux_density"),
    "freq": ("freq", "freq_hz", "frequency"),
}
DEFAULT_FREQ_HZ = 1.4e9


def read_reference(path: str | Path) -> dict[str, np.ndarray]:
    """ra, dec (deg), flux (Jy) and freq (Hz) arrays of a reference catalogue file."""
    from astropy.table import Table

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"qa.reference_catalogue: no such file: {p}")
    suffix = p.suffix.lower()
    fmt = {".csv": "ascii.csv", ".vot": "votable", ".xml": "votable", ".votable": "votable",
           ".fits": "fits", ".fit": "fits"}.get(suffix)
    try:
        t = Table.read(str(p), format=fmt) if fmt else Table.read(str(p))
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same config error
        raise ConfigError(f"qa.reference_catalogue: cannot read {p}: {e}") from None
    cols = {c.lower(): c for c in t.colnames}
    out = {}
    for key, names in _ALIASES.items():
        col = next((cols[n] for n in names if n in cols), None)
        if col is None:
            if key == "freq":
                out[key] = np.full(len(t), DEFAULT_FREQ_HZ)
                continue
            raise ConfigError(f"qa.reference_catalogue: {p} has no {key!r} column (columns: {', '.join(t.colnames)})")
        out[key] = np.asarray(t[col], dtype=float)
    return out


def _coords(ra, dec):
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    return SkyCoord(np.atleast_1d(np.asarray(ra, dtype=float)) * u.deg,
                    np.atleast_1d(np.asarray(dec, dtype=float)) * u.deg)


def _robust_std(v: np.ndarray) -> float:
    v = np.asarray(v, dtype=float)
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else float("nan")


def reference_check(*, ra: list[float], dec: list[float], flux: list[float], ref: dict[str, np.ndarray],
                    freq_hz: float, beam_arcsec: float, spectral_index: float,
                    radius_arcsec: float = 0.0) -> dict:
    """An image's sources (ra, dec, flux) against a reference catalogue: each source's nearest reference
    entry within ``radius_arcsec`` (0 = half the beam ``beam_arcsec``) counts as a match.

    Returns matched (count), median_offset_arcsec, offset_scatter_arcsec (robust σ of the RA·cos(dec)
    and Dec offsets, pooled: the per-axis position scatter), the same two in beams, median_dra_arcsec
    and median_ddec_arcsec (a systematic shift), median_flux_ratio (measured / reference scaled to
    ``freq_hz`` by ``spectral_index``) and flux_ratio_scatter (robust σ of the ratios)."""
    radius = radius_arcsec or 0.5 * beam_arcsec
    out: dict = {"matched": 0, "n_sources": len(ra), "n_reference": int(len(ref["ra"])), "radius_arcsec": radius,
                 "beam_arcsec": beam_arcsec, "spectral_index": spectral_index}
    if not len(ra) or not len(ref["ra"]):
        return out
    src, cat = _coords(ra, dec), _coords(ref["ra"], ref["dec"])
    idx, sep, _ = src.match_to_catalog_sky(cat)
    sep = sep.arcsec
    ok = sep <= radius
    if not ok.any():
        return out
    i = idx[ok]
    dra, ddec = src[ok].spherical_offsets_to(cat[i])
    dra, ddec = -dra.arcsec, -ddec.arcsec  # source minus reference
    scaled = ref["flux"][i] * (freq_hz / ref["freq"][i]) ** spectral_index
    ratio = np.asarray(flux, dtype=float)[ok] / scaled
    scatter = _robust_std(np.concatenate([dra - np.median(dra), ddec - np.median(ddec)]))
    med = float(np.median(sep[ok]))
    out.update({
        "matched": int(ok.sum()),
        "median_offset_arcsec": med, "offset_scatter_arcsec": scatter,
        "median_offset_beams": med / beam_arcsec if beam_arcsec else None,
        "offset_scatter_beams": scatter / beam_arcsec if beam_arcsec else None,
        "median_dra_arcsec": float(np.median(dra)), "median_ddec_arcsec": float(np.median(ddec)),
        "median_flux_ratio": float(np.median(ratio)), "flux_ratio_scatter": _robust_std(ratio),
    })
    return out


def near(rows: list[dict], ra_deg: float, dec_deg: float, radius_arcsec: float) -> list[dict]:
    """The rows (with ``ra_deg``/``dec_deg``) within ``radius_arcsec`` of (ra, dec), each with its
    ``separation_arcsec``."""
    rows = [r for r in rows if r.get("ra_deg") is not None and r.get("dec_deg") is not None]
    if not rows:
        return []
    sep = _coords([r["ra_deg"] for r in rows], [r["dec_deg"] for r in rows]).separation(
        _coords(ra_deg, dec_deg)[0]).arcsec
    return [{**r, "separation_arcsec": float(s)} for r, s in zip(rows, sep) if s <= radius_arcsec]


def parse_angle(text: str, *, hours: bool) -> float:
    """Degrees from ``text``: a number of degrees, or sexagesimal (``14h02m30s``, ``14:02:30`` for RA in
    hours when ``hours``; ``+29d10m00s``, ``29:10:00`` for Dec)."""
    import astropy.units as u
    from astropy.coordinates import Angle

    try:
        return float(text)
    except ValueError:
        pass
    return float(Angle(text, unit=u.hourangle if hours else u.deg).deg)
