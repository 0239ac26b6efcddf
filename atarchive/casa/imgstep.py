"""Child-side driver of the ``image`` step: pick the split MS and spws of one LO, choose cell and
image size from the data unless configured, then image and fit (:mod:`atarchive.casa.imaging`)."""

from __future__ import annotations

import os

from .calstep import spw_freqs, spws_for_lo


def run(*, candidates: list[str], lo_range: list[float], outdir: str, final_dir: str, name: str, kind: str,
        params: dict) -> dict:
    from atarchive.errors import PermanentStepError

    from . import imaging

    vis, spw_ids, freqs = None, [], []
    for c in candidates:
        spws = spw_freqs(c)
        ids = spws_for_lo(spws, lo_range)
        if ids:
            vis, spw_ids, freqs = c, ids, [spws[i] for i in ids]
            break
    if vis is None:
        raise PermanentStepError(f"no calibrated data of this LO ({lo_range[0] / 1e9:.3f} GHz) for {name}")
    fmax = max(f[1] for f in freqs)
    fmin = min(f[0] for f in freqs)
    cell, imsize = params.get("cell_arcsec") or 0.0, params.get("imsize") or 0
    if not cell or not imsize:
        auto_cell, auto_size = imaging.choose_cell_imsize(imaging.max_baseline_m(vis), fmax, fmin)
        cell = cell or auto_cell
        imsize = imsize or auto_size
    imsize = int(min(imsize, params.get("max_imsize", 1024)))
    os.makedirs(outdir, exist_ok=True)
    res = imaging.image_field(vis, field_id=None, spw=",".join(str(i) for i in spw_ids),
                              imagename=os.path.join(outdir, name), cell_arcsec=cell, imsize=imsize, kind=kind,
                              params=params)
    for k in ("image", "fits"):
        if res.get(k):
            res[k] = os.path.join(final_dir, os.path.relpath(res[k], outdir))
    res.update(vis=vis, spws=spw_ids, cell_arcsec=cell, imsize=imsize)
    return res
