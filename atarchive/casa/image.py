"""The image step's CASA side: imaging and flux measurement, run inside a CASA child process.

Calibrators: a dirty image, then clean rounds, each to a threshold of 5 × the rms of the previous
residual; imfit (flux ± error, position) around the brightest pixel and the image peak. Targets:
cleaned with auto-multithresh masking, then fitted the same way. Final images are exported to FITS.
``choose_cell_imsize`` is pure Python (no CASA import) so it can be tested anywhere.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time

from ..errors import PermanentStepError
from .calibrate import spw_freqs, spws_for_lo

C = 299792458.0
ARCSEC_PER_RAD = 206264.806
GOOD_SIZES = sorted({2 ** a * 3 ** b * 5 ** c for a in range(1, 13) for b in range(3) for c in range(3)
                     if 32 <= 2 ** a * 3 ** b * 5 ** c <= 16384})


def choose_cell_imsize(max_baseline_m: float, max_freq_hz: float, min_freq_hz: float, *,
                       dish_diameter_m: float = 6.1, pixels_per_beam: float = 5.0,
                       fov_fwhm: float = 1.0) -> tuple[float, int]:
    """Cell (arcsec) resolving the synthesised beam at the highest frequency with ``pixels_per_beam``
    pixels, and an image size (pixels, a CASA-friendly even number) covering ``fov_fwhm`` times the
    primary-beam FWHM (1.2 λ/D) at the lowest frequency."""
    if max_baseline_m <= 0 or max_freq_hz <= 0 or min_freq_hz <= 0:
        raise ValueError("baseline and frequencies must be positive")
    cell = C / max_freq_hz / max_baseline_m * ARCSEC_PER_RAD / pixels_per_beam
    pb_fwhm = 1.2 * C / min_freq_hz / dish_diameter_m * ARCSEC_PER_RAD
    need = fov_fwhm * pb_fwhm / cell
    size = next((s for s in GOOD_SIZES if s >= need), GOOD_SIZES[-1])
    return round(cell, 3), int(size)


def max_baseline_m(vis: str) -> float:
    """Longest baseline between antennas present in the MS (from the ANTENNA table)."""
    import numpy as np

    from ._casa import table

    tb = table(vis)
    try:
        used = np.unique(np.concatenate([tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")]))
    finally:
        tb.close()
    ta = table(os.path.join(vis, "ANTENNA"))
    try:
        pos = ta.getcol("POSITION").T[used]
    finally:
        ta.close()
    d = pos[:, None, :] - pos[None, :, :]
    return float(np.sqrt((d ** 2).sum(-1)).max())


def _stats(t, image: str, **kw) -> dict:
    return t.imstat(imagename=image, **kw)


def robust_rms(t, image: str) -> float:
    """rms of an image from its median absolute deviation (sources barely move it)."""
    s = _stats(t, image)
    return float(s["medabsdevmed"][0] * 1.4826) or float(s["rms"][0])


def _peak_box(t, image: str, half: int) -> tuple[str, list[int]]:
    s = _stats(t, image)
    x, y = int(s["maxpos"][0]), int(s["maxpos"][1])
    return f"{x - half},{y - half},{x + half},{y + half}", [x, y]


def image_field(vis: str, *, field_id: int | None, spw: str, imagename: str, cell_arcsec: float, imsize: int,
                kind: str, params: dict, mask_fits: str | None = None, nsigma: float = 3.0) -> dict:
    from ._casa import casa

    ct, t = casa()
    t0 = time.perf_counter()  # imaging_s in the result: the imager's time alone (the bench compares them)
    if params.get("imager", "tclean") == "wsclean":
        return wsclean_field(ct, t, vis, spw=spw, imagename=imagename, cell_arcsec=cell_arcsec, imsize=imsize,
                             kind=kind, params=params, mask_fits=mask_fits, nsigma=nsigma, started=t0)
    if kind == "target" and mask_fits:
        # self-calibrated data: one clean inside the final self-calibration mask to a few sigma
        mask = imagename + "_selfcal.mask"
        t.importfits(fitsimage=mask_fits, imagename=mask, overwrite=True)
        final = imagename + "_masked"
        masked_clean(t, final, vis=vis, spw=spw, cell_arcsec=cell_arcsec, imsize=imsize, params=params, mask=mask,
                     nsigma=nsigma)
        return _measure(ct, t, imagename, final, cell_arcsec, robust_rms(t, final + ".residual"), 1,
                        "final self-calibration mask", kind, started=t0)
    common = dict(vis=vis, field="" if field_id is None else str(field_id), spw=spw, specmode="mfs",
                  deconvolver="hogbom", gridder="standard", imsize=[imsize, imsize], cell=f"{cell_arcsec}arcsec",
                  weighting=params["weighting"], robust=params["robust"], stokes="I",
                  pbcor=False, savemodel="none")
    dirty = imagename + "_dirty"
    t.tclean(imagename=dirty, niter=0, **common)
    if not os.path.isdir(dirty + ".image"):
        raise RuntimeError("tclean made no dirty image")
    rms = robust_rms(t, dirty + ".residual")
    final = dirty
    rounds = 0
    niter = int(params["niter"])
    max_rounds = max(1, int(params["rounds"]))
    mask_method = "none"
    if kind == "target":
        # auto-multithresh tuned for a sparse array (PSF sidelobes of tens of per cent); tclean's nsigma
        # re-estimates the robust rms every major cycle and cleans to 5 x rms.
        final = imagename + "_clean"
        amt = dict(usemask="auto-multithresh", sidelobethreshold=1.0,
                   noisethreshold=3.0, lownoisethreshold=1.0, minbeamfrac=0.1)
        for r in range(1, max_rounds + 1):
            summary = t.tclean(imagename=final, niter=niter, nsigma=5.0, **amt, **common)
            rounds = r
            new_rms = robust_rms(t, final + ".residual")
            converged = new_rms > 0.8 * rms
            rms = new_rms
            if converged or reached_depth(summary):
                break
        mask_method = "auto-multithresh"
        if float(_stats(t, final + ".model")["max"][0]) <= 0.0:
            # With few antennas the PSF sidelobes are as high as the source and auto-multithresh masks
            # nothing: clean around the brightest pixel instead, as for calibrators.
            final, rounds, rms = _clean_in_circle(t, imagename + "_peak", dirty, cell_arcsec, common, niter,
                                                  max_rounds, robust_rms(t, dirty + ".residual"))
            mask_method = "circle around the peak (auto-multithresh masked nothing)"
    else:
        final, rounds, rms = _clean_in_circle(t, imagename, dirty, cell_arcsec, common, niter, max_rounds, rms)
        mask_method = "circle around the peak"
    return _measure(ct, t, imagename, final, cell_arcsec, rms, rounds, mask_method, kind, started=t0)


# -- WSClean ----------------------------------------------------------------------------------------
WSCLEAN_MISSING = "imager wsclean selected but the wsclean program is not installed (apt-get install wsclean)"
# Depths in sigma of wsclean's robust noise estimate (re-estimated every major cycle, as tclean's nsigma):
# to 5 sigma everywhere, then to 1 sigma inside the mask wsclean builds from the components it found (its
# -auto-mask: auto-multithresh's role). A sparse array's first noise estimate is the source's sidelobes
# (tiny: 1.8 Jy beside a 14 Jy calibrator), so 5 sigma alone stops after a handful of components
# (DR 13); an unmasked deeper clean diverges on those sidelobes. Measured on tiny: 5 then 1 sigma gives
# calibrators DR ~2400.
WSCLEAN_MASK_SIGMA = 5.0
WSCLEAN_SIGMA = 1.0
# wsclean images this many times the image size and the products are its central part: a bright source
# just outside the primary beam (tiny: the 2 Jy phase calibrator 1 deg from the target) is then inside
# the deconvolved field instead of aliased onto the image edge (tiny's target: -4 % at 1x, within 1 % at 2x).
WSCLEAN_OVERSIZE = 2


def wsclean_program() -> str:
    """The wsclean executable on PATH, or a PermanentStepError saying how to install it."""
    path = shutil.which("wsclean")
    if not path:
        raise PermanentStepError(WSCLEAN_MISSING)
    return path


def wsclean_args(*, program: str, vis: str, name: str, field: str, spws: list[int], cell_arcsec: float, imsize: int,
                 params: dict, data_column: str, temp_dir: str, mask_fits: str | None = None,
                 nsigma: float = WSCLEAN_SIGMA, update_model: bool = False) -> list[str]:
    """wsclean's argument list (run without a shell: field names never reach one; the field is an id).
    Stokes I from linear XX/YY feeds is wsclean's (XX+YY)/2, as tclean's. One MFS image over the LO's
    spectral windows (no -channels-out: tclean's mfs, nterms 1), ``WSCLEAN_OVERSIZE`` times ``imsize``.
    Inside ``mask_fits`` (at the oversized grid) to ``nsigma``; without one, wsclean's auto-mask at
    ``WSCLEAN_MASK_SIGMA`` then ``nsigma`` inside it. ``update_model``: model visibilities to MODEL_DATA."""
    weighting = params["weighting"]
    weight = ["briggs", f"{float(params['robust']):g}"] if weighting == "briggs" else [weighting]
    size = str(imsize * WSCLEAN_OVERSIZE)
    args = [program, "-name", name, "-size", size, size, "-scale", f"{cell_arcsec:g}asec",
            "-weight", *weight, "-pol", "I", "-data-column", data_column, "-field", field,
            "-niter", str(int(params["niter"])), "-mgain", "0.8", "-reorder", "-temp-dir", temp_dir]
    if spws:
        args += ["-spws", ",".join(str(int(s)) for s in spws)]
    if mask_fits:
        args += ["-fits-mask", mask_fits]
    else:
        args += ["-auto-mask", f"{WSCLEAN_MASK_SIGMA:g}"]
    args += ["-auto-threshold", f"{nsigma:g}"]
    if not update_model:
        args.append("-no-update-model-required")
    return [*args, vis]


def wsclean_method(mask_fits: str | None, nsigma: float) -> str:
    if mask_fits:
        return f"final self-calibration mask (wsclean to {nsigma:g} sigma)"
    return f"wsclean auto-mask {WSCLEAN_MASK_SIGMA:g} sigma, then {nsigma:g} sigma inside it"


def _ms_field_and_column(vis: str, datacolumn: str) -> tuple[str, str]:
    """wsclean's -field (the only field of a split MS, else all of them) and data column: tclean's
    ``datacolumn`` "corrected" is CORRECTED_DATA where the MS has it, else DATA (as tclean falls back)."""
    from ._casa import nrows, table

    tb = table(vis)
    try:
        has_corrected = "CORRECTED_DATA" in tb.colnames()
    finally:
        tb.close()
    column = "CORRECTED_DATA" if datacolumn == "corrected" and has_corrected else "DATA"
    return ("0" if nrows(os.path.join(vis, "FIELD")) == 1 else "all"), column


def _spw_ids(spw: str) -> list[int]:
    """A CASA spw selection of ids ("0,1,2") as a list; "" is every window (an empty list)."""
    return [int(s) for s in spw.split(",") if s != ""]


def pad_mask_fits(mask_fits: str, out: str, factor: int) -> str:
    """``mask_fits`` (imsize x imsize) in the middle of a ``factor`` times larger FITS mask, zero outside,
    the reference pixel moved with it: wsclean's -fits-mask must have its image's size."""
    import numpy as np
    from astropy.io import fits

    with fits.open(mask_fits) as h:
        hdr, data = h[0].header.copy(), np.asarray(h[0].data)
    ny, nx = data.shape[-2:]
    off_y, off_x = ny * (factor - 1) // 2, nx * (factor - 1) // 2
    big = np.zeros(data.shape[:-2] + (ny * factor, nx * factor), dtype="float32")
    big[..., off_y:off_y + ny, off_x:off_x + nx] = np.nan_to_num(data) > 0
    hdr["NAXIS1"], hdr["NAXIS2"] = nx * factor, ny * factor
    hdr["CRPIX1"] = hdr["CRPIX1"] + off_x
    hdr["CRPIX2"] = hdr["CRPIX2"] + off_y
    fits.PrimaryHDU(big, hdr).writeto(out, overwrite=True)
    return out


def run_wsclean(t, vis: str, *, base: str, spws: list[int], cell_arcsec: float, imsize: int, params: dict,
                mask_fits: str | None = None, nsigma: float = WSCLEAN_SIGMA, update_model: bool = False,
                datacolumn: str = "corrected") -> str:
    """Run wsclean on ``vis`` (``mask_fits``: an imsize x imsize FITS mask) and import the central
    imsize x imsize of its restored, residual and model images as the CASA images ``base``.image,
    .residual, .model (what the measurement, self-calibration's guard and the exports read)."""
    program = wsclean_program()
    field, column = _ms_field_and_column(vis, datacolumn)
    prefix = base + "_wsclean"
    temp = prefix + ".tmp"
    os.makedirs(temp, exist_ok=True)
    big_mask = pad_mask_fits(mask_fits, prefix + "-mask.fits", WSCLEAN_OVERSIZE) if mask_fits else None
    args = wsclean_args(program=program, vis=vis, name=prefix, field=field, spws=spws, cell_arcsec=cell_arcsec,
                        imsize=imsize, params=params, data_column=column, temp_dir=temp, mask_fits=big_mask,
                        nsigma=nsigma, update_model=update_model)
    with open(prefix + ".log", "w") as log:
        p = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    shutil.rmtree(temp, ignore_errors=True)
    if p.returncode != 0 or not os.path.isfile(prefix + "-image.fits"):
        with open(prefix + ".log") as f:
            tail = [ln.strip(" +") for ln in f.read().splitlines() if ln.strip(" +")][-1:] or ["no output"]
        raise RuntimeError(f"wsclean exited {p.returncode} on {os.path.basename(vis)}: {tail[0]}")
    lo = imsize * (WSCLEAN_OVERSIZE - 1) // 2
    box = f"{lo},{lo},{lo + imsize - 1},{lo + imsize - 1}"  # the central imsize x imsize pixels
    for ext in ("image", "residual", "model"):
        full = f"{prefix}-{ext}.image"
        t.importfits(fitsimage=f"{prefix}-{ext}.fits", imagename=full, overwrite=True)
        t.imsubimage(imagename=full, outfile=f"{base}.{ext}", box=box, overwrite=True)
        shutil.rmtree(full, ignore_errors=True)
    for ext in ("image", "residual", "model", "psf", "dirty", "mask"):
        if os.path.exists(f"{prefix}-{ext}.fits"):
            os.remove(f"{prefix}-{ext}.fits")
    return base


def wsclean_field(ct, t, vis: str, *, spw: str, imagename: str, cell_arcsec: float, imsize: int, kind: str,
                  params: dict, mask_fits: str | None = None, nsigma: float = 3.0, started: float | None = None) -> dict:
    """The image step with wsclean: one run (its auto-threshold re-estimates the noise every major cycle,
    as tclean's nsigma), then the same measurement and FITS products as with tclean."""
    depth = nsigma if mask_fits else WSCLEAN_SIGMA
    final = run_wsclean(t, vis, base=imagename + "_ws", spws=_spw_ids(spw), cell_arcsec=cell_arcsec, imsize=imsize,
                        params=params, mask_fits=mask_fits, nsigma=depth)
    return _measure(ct, t, imagename, final, cell_arcsec, robust_rms(t, final + ".residual"), 1,
                    wsclean_method(mask_fits, depth), kind, started=started)


# A fit whose integrated flux is within this factor of its fitted peak is the beam itself: an unresolved
# source, whose flux density is the fitted peak. The Gaussian's area is the noisier estimate there, and in
# an mfs image (nterms 1) of a wide band it picks up the spectral residual around a bright source: on the
# ATA presets' 25 % bands 3C286 came out 1.1 % high by its integral and within 0.06 % by its fitted peak.
UNRESOLVED_RATIO = 1.05


def point_flux(comp: dict) -> tuple[float, float, str]:
    """(flux density, error, how) of an imfit component: its fitted peak when it is unresolved
    (integrated / peak ≤ ``UNRESOLVED_RATIO``), else its integrated flux."""
    def first(v, default: float) -> float:  # imfit gives arrays (flux: one per Stokes) or plain numbers
        v = default if v is None else v
        return float(v[0] if hasattr(v, "__len__") else v)

    flux, err = first(comp["flux"]["value"], math.nan), first(comp["flux"]["error"], math.nan)
    peak = comp.get("peak") or {}
    value = first(peak.get("value"), math.nan)
    if math.isfinite(value) and value > 0 and flux / value <= UNRESOLVED_RATIO:
        return value, first(peak.get("error"), err), "imfit peak (unresolved)"
    return flux, err, "imfit"


def _measure(ct, t, imagename: str, final: str, cell_arcsec: float, rms: float, rounds: int, mask_method: str,
             kind: str, started: float | None = None) -> dict:
    """imfit around the brightest pixel of ``final``.image, its peak and beam; the restored, residual and
    model images exported to FITS. A target with nothing to fit (too faint) keeps its image, no flux."""
    imaging_s = round(time.perf_counter() - started, 3) if started is not None else None
    img = final + ".image"
    beam = [t.imhead(imagename=img, mode="get", hdkey=k) for k in ("beammajor", "beamminor", "beampa")]
    bmaj = arcsec(beam[0])
    peak = float(_stats(t, img)["max"][0])
    comp, peak_pix = None, None
    # Fit in a box around the brightest pixel; shrink it if sidelobes of a sparse array upset the fit.
    for beams in (1.5, 1.0, 0.6):
        half = max(3, int(round(beams * bmaj / cell_arcsec)))
        box, peak_pix = _peak_box(t, img, half)
        fit = t.imfit(imagename=img, box=box)
        if fit and fit.get("converged", [False])[0]:
            comp = fit["results"]["component0"]
            break
    method = "imfit"
    if comp is None:
        if kind != "target":
            raise PermanentStepError(f"imfit found no point source in {os.path.basename(img)} (fit did not converge)")
        flux = err = ra = dec = None
        method = "no fit (nothing to fit: imfit did not converge)"
    else:
        flux, err, method = point_flux(comp)
        ra = math.degrees(comp["shape"]["direction"]["m0"]["value"]) % 360.0
        dec = math.degrees(comp["shape"]["direction"]["m1"]["value"])
    ia = ct.image()
    ia.open(img)
    try:
        cs = ia.coordsys()
        freq = float(cs.referencevalue(format="n")["numeric"][cs.findaxisbyname("Frequency")])
        cs.done()
    finally:
        ia.close()
    fits = imagename + ".fits"
    t.exportfits(imagename=img, fitsimage=fits, overwrite=True)
    extra = {}
    for ext, key in ((".residual", "residual_fits"), (".model", "model_fits")):
        extra[key] = f"{imagename}{ext}.fits"
        t.exportfits(imagename=final + ext, fitsimage=extra[key], overwrite=True)
    pa = beam[2]
    extra["beam_pa_deg"] = float(pa["value"]) if isinstance(pa, dict) else float(pa)
    return {"image": img, "fits": fits, **extra, "flux_jy": flux, "flux_err_jy": err, "peak_jy": peak, "rms_jy": rms,
            "ra_deg": ra, "dec_deg": dec, "freq_hz": freq, "beam_major_arcsec": bmaj,
            "beam_minor_arcsec": arcsec(beam[1]), "rounds": rounds, "method": method, "mask": mask_method,
            "peak_pixel": peak_pix, "imaging_s": imaging_s}


# tclean's stop codes meaning "the depth asked for was reached" (2: threshold, 8: nsigma): another
# round, which continues from the model with the same depth, would clean nothing more
REACHED_DEPTH = (2, 8)


def reached_depth(summary) -> bool:
    """Whether a tclean call stopped because it reached its depth (its returned summary)."""
    return isinstance(summary, dict) and int(summary.get("stopcode", 0) or 0) in REACHED_DEPTH


def _clean_in_circle(t, imagename: str, dirty: str, cell_arcsec: float, common: dict, niter: int,
                     max_rounds: int, rms: float) -> tuple[str, int, float]:
    """Clean rounds to 5 x rms (tclean's nsigma re-estimates the robust rms of the residual every major
    cycle) inside a circle of 3 beams around the brightest pixel of the dirty image; each round continues
    the previous one's model, until a round reaches its depth or the rms stops improving. Returns (image
    base name, rounds, final rms). (Each round used to start again from an empty model: the second one
    repeated the first exactly, at the cost of the whole clean.)"""
    _, (x, y) = _peak_box(t, dirty + ".image", 1)
    bmaj = arcsec(t.imhead(imagename=dirty + ".psf", mode="get", hdkey="beammajor"))
    radius = max(3, int(round(3 * bmaj / cell_arcsec)))
    mask = f"circle[[{x}pix, {y}pix], {radius}pix]"
    final, rounds = dirty, 0
    name = f"{imagename}_clean"
    for r in range(1, max_rounds + 1):
        summary = t.tclean(imagename=name, niter=niter, nsigma=5.0, usemask="user", mask=mask, **common)
        final, rounds = name, r
        new_rms = robust_rms(t, name + ".residual")
        converged = new_rms > 0.8 * rms
        rms = new_rms
        if reached_depth(summary) or (converged and r >= 2):
            break
    return final, rounds, rms


def arcsec(q) -> float:
    if isinstance(q, dict):
        v, u = float(q["value"]), q.get("unit", "arcsec")
        return v * {"arcsec": 1.0, "arcmin": 60.0, "deg": 3600.0, "rad": ARCSEC_PER_RAD}.get(u, 1.0)
    return float(q)


# -- shared with self-calibration ------------------------------------------------------------------
def lo_vis(candidates: list[str], lo_range: list[float], name: str) -> tuple[str, list[int], float, float]:
    """The first MS among ``candidates`` holding this LO: (path, its spectral windows of the LO, lowest
    and highest frequency)."""
    for c in candidates:
        spws = spw_freqs(c)
        ids = spws_for_lo(spws, lo_range)
        if ids:
            freqs = [spws[i] for i in ids]
            return c, ids, min(f[0] for f in freqs), max(f[1] for f in freqs)
    raise PermanentStepError(f"no calibrated data of this LO ({lo_range[0] / 1e9:.3f} GHz) for {name}")


def pick_grid(vis: str, fmin: float, fmax: float, params: dict) -> tuple[float, int]:
    """Cell (arcsec) and image size: the config's, else from the longest baseline and the primary beam."""
    cell, imsize = params["cell_arcsec"], params["imsize"]
    if not cell or not imsize:
        auto_cell, auto_size = choose_cell_imsize(max_baseline_m(vis), fmax, fmin)
        cell = cell or auto_cell
        imsize = imsize or auto_size
    return cell, int(min(imsize, params["max_imsize"]))


def masked_clean(t, base: str, *, vis: str, cell_arcsec: float, imsize: int, params: dict, mask: str | None,
                 nsigma: float, savemodel: bool = False, spw: str = "", datacolumn: str = "corrected") -> None:
    """One tclean of every selected spectral window of ``vis`` to ``nsigma`` × the residual rms, inside
    ``mask`` (a CASA mask image) or with auto-multithresh when there is none; with ``savemodel`` the
    model visibilities go to MODEL_DATA (what self-calibration solves against)."""
    if params.get("imager", "tclean") == "wsclean":
        # self-calibration with wsclean: its model visibilities (-update-model-required) go to MODEL_DATA;
        # the mask is the CASA mask image's FITS twin (self-calibration keeps both)
        run_wsclean(t, vis, base=base, spws=_spw_ids(spw),
                    cell_arcsec=cell_arcsec, imsize=imsize, params=params,
                    mask_fits=(mask + ".fits") if mask else None, nsigma=nsigma, update_model=savemodel,
                    datacolumn=datacolumn)
        return
    masking = dict(usemask="user", mask=mask) if mask else dict(
        usemask="auto-multithresh", sidelobethreshold=1.0, noisethreshold=3.0, lownoisethreshold=1.0,
        minbeamfrac=0.1)
    gridding = dict(gridder="widefield", wprojplanes=-1) if params.get("wproject") else dict(gridder="standard")
    t.tclean(vis=vis, imagename=base, spw=spw, datacolumn=datacolumn, specmode="mfs", deconvolver="hogbom", **gridding,
             imsize=[imsize, imsize], cell=f"{cell_arcsec}arcsec", weighting=params["weighting"],
             robust=params["robust"], stokes="I", pbcor=False, niter=int(params["niter"]), nsigma=nsigma,
             # a sparse array's PSF has sidelobes of tens of per cent: minor cycles that run deep on it diverge
             # (measured: a quiet 7-source field cleaned to 1.5 sigma, DR 13 with cyclefactor 1, 2273 with 3).
             # But 3 x those sidelobes exceeds tclean's default cap (maxpsffraction 0.8), so every major cycle
             # stopped once the peak fell 20 %: 39-44 major cycles a clean. Capped at 0.5 (still twice the
             # divergent 0.27): 18-26 a clean, the self-cal test fields' DR and fluxes as good (quiet field
             # 12484 vs 12827, components 0.988-0.993 either way; noisy 0.976-1.024 vs 0.959-1.036).
             cyclefactor=3.0, maxpsffraction=0.5,
             savemodel="modelcolumn" if savemodel else "none", **masking)
    if not os.path.isdir(base + ".image"):
        raise RuntimeError(f"tclean made no image {os.path.basename(base)}")


# -- the image step's child call: one field and LO -------------------------------------------------
def image_unit(*, candidates: list[str], lo_range: list[float], outdir: str, final_dir: str, name: str, kind: str,
        params: dict, mask_fits: str | None = None, nsigma: float = 3.0) -> dict:
    vis, spw_ids, fmin, fmax = lo_vis(candidates, lo_range, name)
    cell, imsize = pick_grid(vis, fmin, fmax, params)
    os.makedirs(outdir, exist_ok=True)
    res = image_field(vis, field_id=None, spw=",".join(str(i) for i in spw_ids),
                      imagename=os.path.join(outdir, name), cell_arcsec=cell, imsize=imsize, kind=kind,
                      params=params, mask_fits=mask_fits, nsigma=nsigma)
    if kind == "target":
        # primary-beam correction (Gaussian ATA beam, atarchive.beam): a .pbcor FITS and corrected flux
        from ..pbcor import correct_fits, gain_at

        res["pbcor_fits"] = os.path.join(outdir, f"{name}.pbcor.fits")
        res["pb_cutoff"] = correct_fits(res["fits"], res["pbcor_fits"])
        if res["flux_jy"] is not None:
            gain = gain_at(res["fits"], res["ra_deg"], res["dec_deg"])
            res.update(pb_gain=gain, flux_jy=res["flux_jy"] / gain, flux_err_jy=res["flux_err_jy"] / gain)
    for k in ("image", "fits", "residual_fits", "model_fits", "pbcor_fits"):
        if res.get(k):
            res[k] = os.path.join(final_dir, os.path.relpath(res[k], outdir))
    res.update(vis=vis, spws=spw_ids, cell_arcsec=cell, imsize=imsize)
    return res
