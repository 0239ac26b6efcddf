"""The sources step's child side: PyBDSF on one final target image, in a child process like CASA.

PyBDSF (``bdsf``) fits Gaussians to the islands of emission of the FITS image and writes the source
list (``srl``) as a FITS table; the rows come back as plain dicts in the units the catalogue keeps
(degrees, arcsec, Jy). The image's sources are then checked against the reference catalogue, if one
is configured (:func:`atarchive.skymatch.reference_check`). No casatools here: bdsf reads the FITS.
"""

from __future__ import annotations

import os
import shutil
import time

from ..errors import PermanentStepError

DEG_ARCSEC = 3600.0
# srl column → (row key, scale)
_COLUMNS = {
    "Source_id": ("source_id", None), "Isl_id": ("island", None),
    "RA": ("ra_deg", 1.0), "DEC": ("dec_deg", 1.0),
    "E_RA": ("ra_err_arcsec", DEG_ARCSEC), "E_DEC": ("dec_err_arcsec", DEG_ARCSEC),
    "Total_flux": ("flux_jy", 1.0), "E_Total_flux": ("flux_err_jy", 1.0),
    "Peak_flux": ("peak_jy", 1.0), "E_Peak_flux": ("peak_err_jy", 1.0),
    "Maj": ("major_arcsec", DEG_ARCSEC), "Min": ("minor_arcsec", DEG_ARCSEC), "PA": ("pa_deg", 1.0),
    "Isl_rms": ("rms_jy", 1.0), "S_Code": ("code", None),
}


def _rows(srl_fits: str) -> list[dict]:
    from astropy.table import Table

    t = Table.read(srl_fits, format="fits")
    rows = []
    for r in t:
        row = {}
        for col, (key, scale) in _COLUMNS.items():
            if col not in t.colnames:
                continue
            v = r[col]
            row[key] = (v.strip() if isinstance(v, str) else int(v)) if scale is None else float(v) * scale
        rms = row.get("rms_jy") or 0.0
        row["snr"] = row["peak_jy"] / rms if rms > 0 else None
        rows.append(row)
    return rows


def _empty_catalogue(path: str) -> None:
    from astropy.table import Table

    Table(names=list(_COLUMNS), dtype=["i4", "i4"] + ["f8"] * 12 + ["U1"]).write(path, format="fits",
                                                                                 overwrite=True)


def find_sources(*, fits: str, pbcor: bool, out_fits: str, workdir: str, params: dict,
                 reference: dict | None = None) -> dict:
    """Run PyBDSF on ``fits`` (a link to it in ``workdir`` keeps bdsf's log there), write the source list
    to ``out_fits`` and return its rows, the image's beam, frequency and rms, the time taken and the
    reference check (``reference``: {path, spectral_index, match_radius_arcsec})."""
    import bdsf
    import numpy as np

    t0 = time.time()
    if not os.path.exists(fits):
        raise PermanentStepError(f"image FITS not found: {fits}")
    os.makedirs(workdir, exist_ok=True)
    link = os.path.join(workdir, os.path.basename(fits))
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.abspath(fits), link)
    opts = {"thresh_pix": float(params["thresh_pix"]), "thresh_isl": float(params["thresh_isl"]),
            "adaptive_rms_box": bool(params.get("adaptive_rms_box"))}
    if params.get("rms_box"):
        opts["rms_box"] = tuple(int(x) for x in params["rms_box"])
    try:
        img = bdsf.process_image(link, quiet=True, ncores=1, **opts)
    except Exception as e:  # noqa: BLE001 - bdsf raises RuntimeError and friends for unusable images
        raise PermanentStepError(f"PyBDSF could not process {os.path.basename(fits)}: {type(e).__name__}: {e}") \
            from None
    os.makedirs(os.path.dirname(out_fits) or ".", exist_ok=True)
    tmp_cat = os.path.join(workdir, "srl.fits")
    if img.write_catalog(outfile=tmp_cat, format="fits", catalog_type="srl", clobber=True) and \
            os.path.exists(tmp_cat):
        shutil.copyfile(tmp_cat, out_fits)
        rows = _rows(out_fits)
    else:  # no source found: an empty table, so the product exists
        _empty_catalogue(out_fits)
        rows = []
    beam = [float(b) * DEG_ARCSEC for b in img.beam]  # major, minor (arcsec), PA
    freq = float(img.frequency)
    res = {"fits": fits, "pbcor": bool(pbcor), "n_sources": len(rows), "sources": rows, "freq_hz": freq,
           "beam_major_arcsec": beam[0], "beam_minor_arcsec": beam[1],
           "rms_jy": float(np.nanmedian(img.rms_arr)) if getattr(img, "rms_arr", None) is not None else None}
    if reference and reference.get("path"):
        from ..skymatch import read_reference, reference_check

        res["reference"] = {"path": reference["path"], **reference_check(
            ra=[r["ra_deg"] for r in rows], dec=[r["dec_deg"] for r in rows], flux=[r["flux_jy"] for r in rows],
            ref=read_reference(reference["path"]), freq_hz=freq, beam_arcsec=beam[0],
            spectral_index=float(reference["spectral_index"]),
            radius_arcsec=float(reference.get("match_radius_arcsec") or 0.0))}
    res["seconds"] = time.time() - t0
    return res
