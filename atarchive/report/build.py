"""Draw one session's QA report from its catalogue rows (:func:`atarchive.view.session_records`) and
the arrays the report step's child extracted from the MS and calibration tables, and write
``index.html`` (see :mod:`.page`).

Everything is written into ``outdir``; links to logs and products are made relative to
``final_dir`` (where the report lives once installed), so the page works from a file:// URL.
"""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from .. import calibrators, naming
from ..verdict import radiometer_rms_jy, session_verdict
from . import page, plots, qa, sky


def render_report(data: dict, *, outdir: Path, final_dir: Path, notes: list[str] | None = None) -> dict:
    """Draw the figures from ``outdir/qa.npz`` (if the extraction wrote it) and the catalogue rows,
    and write ``outdir/index.html``. Returns a summary (figures, notes, bandpass outliers)."""
    outdir, final_dir = Path(outdir), Path(final_dir)
    notes = list(notes or [])
    figures: list[dict] = []
    starts = [s["start_mjd"] for s in data["scans"] if s["start_mjd"] is not None]
    t0 = min(starts) if starts else None

    def add(section: str, fname: str, caption: str, draw: Callable[[Path], object]) -> None:
        try:
            draw(outdir / fname)
            figures.append({"section": section, "file": fname, "caption": caption})
        except Exception as e:  # noqa: BLE001 - one bad figure must not lose the rest of the report
            notes.append(f"{section}: figure {fname} could not be drawn ({type(e).__name__}: {e})")

    arrays: dict = {}
    npz = outdir / "qa.npz"
    if npz.exists():
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        npz.unlink()
    scans = [s for s in data["scans"] if s["start_mjd"] is not None and s["end_mjd"] is not None]

    flag_by_scan: dict[int, float] = {}
    if scans and t0 is not None:
        flag_by_scan = _flag_fractions(scans, arrays)
        tl = [{"scan": i + 1, "field": s["field"] or s["source"] or "?", "start_h": (s["start_mjd"] - t0) * 24,
               "end_h": (s["end_mjd"] - t0) * 24, "flagged": flag_by_scan.get(i + 1)} for i, s in enumerate(scans)]
        add("Observation", "timeline.png", "Scans in time order: number and flagged fraction after calibration (grey: not in the calibrated MS, e.g. the first flux-calibrator scan)",
            lambda p: plots.timeline(tl, p))
        add("Observation", "elevation.png", "Elevation and parallactic angle at the ATA; observed scans thick",
            lambda p: _draw_sky(data, scans, t0, p))
    uv = {lo["name"]: (arrays[f"uv_{lo['name']}"], float(arrays[f"uvfreq_{lo['name']}"][0]))
          for lo in data["los"] if f"uv_{lo['name']}" in arrays}
    if uv:
        add("Observation", "uv.png", "uv-coverage per LO (cross-correlations; mirrored points in orange)",
            lambda p: plots.uv_coverage(uv, p))
    names = [str(n) for n in arrays.get("antenna_names", [])]
    outliers_all: dict[str, dict[str, str]] = {}
    for g in sorted({k.split("_")[1] for k in arrays if k.startswith("B0_")}):
        bp = _bandpass(arrays, f"B0_{g}_", names)
        if bp is None:
            continue
        freqs, amp, ph, bnames = bp
        out = qa.bandpass_outliers(amp, ph)
        outliers_all[g] = {bnames[i]: why for i, why in out.items()}
        add("Calibration", f"bandpass_g{g}.png", f"Bandpass, LO group {g} (outliers in red)",
            partial(plots.bandpass, *_break_gaps(freqs, amp, ph), bnames, out, title=f"bandpass B0, group {g}"))
    for g in sorted({k.split("_")[1] for k in arrays if k.startswith("G1_")}):
        gn = _gains(arrays, f"G1_{g}_", names, t0)
        if gn is None:
            continue
        add("Calibration", f"gains_g{g}.png", f"Gain amplitude and phase on the calibrators, LO group {g}",
            partial(plots.gains, *gn, title=f"gains G1, group {g}"))
    fc = [f for f in data["fluxes"] if f["model_flux_jy"] and f["flux_jy"]]
    if fc:
        add("Calibration", "fluxcal.png", "Flux calibrator: measured flux density against the Perley-Butler 2017 model",
            lambda p: plots.flux_vs_model(fc, _models(data, fc), p))
    before = {(r["field"], r["lo"]): r for r in data.get("images", []) if r["step"] == "selfcal" and r["kind"] == "1gc"}
    for pr in sorted(data["products"], key=lambda p: (p["step"], p["unit"])):
        if pr["kind"] != "image":
            continue
        meta = json.loads(pr["meta"] or "{}")
        fits = _installed(pr["path"], meta.get("fits"))
        if not fits:
            continue
        field, lo = meta.get("field", meta.get("_field", pr["unit"])), meta.get("lo", meta.get("_lo", ""))
        fname = f"img_{naming.safe(pr['unit'])}.png"
        rounds = meta.get("selfcal_rounds")
        cap = (f"{field} Lo{lo}: {_num(meta.get('flux_jy'))} Jy, "
               f"rms {_num(meta.get('rms_jy'), 1e3)} mJy/beam, beam {_num(meta.get('beam_major_arcsec'), 1, 1)}″ × "
               f"{_num(meta.get('beam_minor_arcsec'), 1, 1)}″" + (f", {rounds} self-calibration round(s)"
                                                                  if rounds is not None else "")
               + " — full field, zoom on the brightest emission, residual (same colour scale)")
        n0 = len(figures)
        add("Images", fname, cap, partial(_draw_image, fits, _installed(pr["path"], meta.get("residual_fits")),
                                          f"{field} Lo{lo}"))
        if len(figures) > n0:
            figures[-1]["link"] = os.path.relpath(fits, final_dir)
        one_gc = before.get((field, lo))
        if one_gc and one_gc.get("path") and os.path.exists(one_gc["path"]):
            n0 = len(figures)
            add("Self-calibration", f"selfcal_{naming.safe(pr['unit'])}.png",
                f"{field} Lo{lo} before (1GC) and after self-calibration ({rounds or 0} round(s) kept), one colour "
                f"scale: dynamic range {_num(one_gc.get('dynamic_range'), 1, 0)} → "
                f"{_num(_ratio(meta.get('peak_jy'), meta.get('rms_jy')), 1, 0)}"
                + (f"; {meta['selfcal_note']}" if meta.get("selfcal_note") else ""),
                partial(_draw_before_after, one_gc, fits, meta, f"{field} Lo{lo}"))
    health = antenna_health(arrays, names, outliers_all)
    verdict = None
    if data.get("qa"):
        facts = verdict_facts(data, scans, flag_by_scan, outliers_all, len(names))
        facts["channels"] = _channels_by_lo(arrays.get("chan_flags"), data["los"])
        facts["channels_fullres"] = _channels_by_lo(fullres_channel_flags(data["runs"]), data["los"])
        verdict = session_verdict(facts, data["qa"])
    html = page.render(data, figures, notes=notes, outliers=outliers_all, final_dir=final_dir,
                       created=time.time(), verdict=verdict)
    (outdir / "index.html").write_text(html, encoding="utf-8")
    return {"path": str(final_dir / "index.html"), "figures": [f["file"] for f in figures], "notes": notes,
            "bandpass_outliers": outliers_all, "antenna_health": health,
            "scan_flags": {str(k): v for k, v in flag_by_scan.items()},
            **({"verdict": verdict["verdict"], "verdict_reasons": verdict["reasons"]} if verdict else {})}


def verdict_facts(data: dict, scans: list[dict], flag_by_scan: dict[int, float], outliers: dict,
                  n_antennas: int) -> dict:
    """The facts the verdict rules read (:func:`atarchive.verdict.session_verdict`): the session's flux
    rows, flagged fraction per scan, bandpass outliers, each target image's rms with its radiometer
    expectation (its field's time on source, its LO's bandwidth, the antennas in the MS), the
    reference checks and the phase calibrators' earlier fluxes."""
    qa = data["qa"]
    scan_rows = [{"label": f"scan {i + 1} ({s['field'] or s['source'] or '?'})", "flagged": flag_by_scan.get(i + 1),
                  "seconds": (s["end_mjd"] - s["start_mjd"]) * 86400.0} for i, s in enumerate(scans)]
    seconds: dict[str, float] = {}
    for s in scans:
        name = s["field"] or s["source"]
        seconds[name] = seconds.get(name, 0.0) + (s["end_mjd"] - s["start_mjd"]) * 86400.0
    bw = {lo["name"]: abs((lo["freq_end_hz"] or 0) - (lo["freq_start_hz"] or 0)) for lo in data["los"]}
    images = []
    for r in data["fluxes"]:
        if r["role"] != "target":
            continue
        exp = radiometer_rms_jy(sefd_jy=qa["sefd_jy"], n_antennas=n_antennas, bandwidth_hz=bw.get(r["lo"], 0.0),
                                seconds=seconds.get(r["field"], 0.0))
        images.append({"field": r["field"], "lo": r["lo"], "rms_jy": r["rms_jy"], "expected_rms_jy": exp})
    return {"fluxes": data["fluxes"], "scans": scan_rows,
            "bandpass_outliers": outliers, "images": images, "checks": data.get("source_checks") or [],
            "phase_cal_history": data.get("phase_cal_history") or {}}


def fullres_channel_flags(runs: list[dict]) -> np.ndarray:
    """[frequency, flagged fraction] of every full-resolution channel, from the flags each compress run
    counted before averaging (weighted by the unit's rows), so one flagged channel of several averaged
    together is still seen."""
    acc: dict[float, list[float]] = {}
    for r in runs:
        if r["step"] != "compress" or r["status"] != "done" or not r.get("result"):
            continue
        res = json.loads(r["result"]) if isinstance(r["result"], str) else r["result"]
        weight = float(res.get("nrows") or 1)
        for spw in res.get("channel_flags") or []:
            for i, frac in enumerate(spw["flagged"]):
                a = acc.setdefault(round(spw["freq0_hz"] + i * spw["dfreq_hz"]), [0.0, 0.0])
                a[0] += frac * weight
                a[1] += weight
    return np.array([[f, a[0] / a[1]] for f, a in sorted(acc.items()) if a[1]], dtype=float).reshape(-1, 2)


def _channels_by_lo(chan_flags, los: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """LO → [(frequency, flagged fraction)] of the channels in its range (from the report's extraction)."""
    out: dict[str, list[tuple[float, float]]] = {}
    if chan_flags is None or not len(chan_flags):
        return out
    for lo in los:
        f0, f1 = sorted([lo["freq_start_hz"] or 0.0, lo["freq_end_hz"] or 0.0])
        sel = (chan_flags[:, 0] >= f0 - 1e6) & (chan_flags[:, 0] <= f1 + 1e6)
        if sel.any():
            out[lo["name"]] = [(float(f), float(x)) for f, x in chan_flags[sel]]
    return out


def antenna_health(arrays: dict, names: list[str], outliers: dict) -> dict[str, dict]:
    """Per antenna: unflagged fraction after calibration, median gain amplitude over the array's median
    (per LO group, the first group shown), and whether any bandpass marks it an outlier."""
    out: dict[str, dict] = {}
    unfl = arrays.get("ant_unflagged")
    for i, n in enumerate(names):
        out[n] = {"unflagged": float(unfl[i]) if unfl is not None and i < len(unfl) and np.isfinite(unfl[i])
                  else None, "gain_rel": None, "bandpass_outlier": any(n in bad for bad in outliers.values())}
    for g in sorted({k.split("_")[1] for k in arrays if k.startswith("G1_")}):
        gn = _gains(arrays, f"G1_{g}_", names, 0.0)
        if gn is None:
            continue
        _, amp, _, gnames = gn
        with np.errstate(all="ignore"):
            per = np.nanmedian(amp, axis=0) if amp.size else np.array([])
        ref = float(np.nanmedian(per)) if per.size and np.isfinite(per).any() else None
        for j, n in enumerate(gnames):
            if n in out and out[n]["gain_rel"] is None and ref:
                out[n]["gain_rel"] = float(per[j] / ref) if np.isfinite(per[j]) else None
    return out


def _num(v, scale: float = 1.0, nd: int = 3) -> str:
    return "?" if v is None else f"{v * scale:.{nd}f}"


def _flag_fractions(scans: list[dict], arrays: dict) -> dict[int, float]:
    """Flagged fraction in the calibrated MS per catalogue scan (index from 1), matched by time: scans
    dropped by concat (the first flux-calibrator scan) or excluded have none."""
    sf = arrays.get("scan_flags")
    out: dict[int, float] = {}
    if sf is None or not len(sf):
        return out
    for i, s in enumerate(scans):
        t0, t1 = s["start_mjd"] * 86400.0 - 1.0, s["end_mjd"] * 86400.0 + 1.0
        hit = [r for r in sf if t0 <= r[3] <= t1]
        if hit:
            out[i + 1] = float(hit[0][2])
    return out


def _draw_sky(data: dict, scans: list[dict], t0: float, path: Path):
    fields = {f["name"]: f for f in data["fields"] if f["ra_deg"] is not None}
    t1 = max(s["end_mjd"] for s in scans)
    pad = max(0.5 / 24, 0.25 * (t1 - t0))
    grid = np.linspace(t0 - pad, t1 + pad, 200)
    lst = sky.local_sidereal_deg(grid)
    tracks, spans = [], []
    for name, f in fields.items():
        el, pa = sky.elevation_parallactic(f["ra_deg"], f["dec_deg"], lst)
        tracks.append({"field": name, "hours": (grid - t0) * 24, "el": el, "pa": pa})
    for s in scans:
        f = fields.get(s["field"])
        if not f:
            continue
        t = np.linspace(s["start_mjd"], s["end_mjd"], 5)
        el, pa = sky.elevation_parallactic(f["ra_deg"], f["dec_deg"], sky.local_sidereal_deg(t))
        spans.append({"field": s["field"], "hours": (t - t0) * 24, "el": el, "pa": pa})
    return plots.elevations(tracks, spans, path)


def _bandpass(arrays: dict, pre: str, names: list[str]):
    """(freqs MHz, amp[ant, chan], phase deg[ant, chan], antenna names) from a B table, first
    polarisation, channels of all spectral windows side by side; flagged = NaN."""
    if pre + "value" not in arrays:
        return None
    val, flag, ant, spw = arrays[pre + "value"], arrays[pre + "flag"], arrays[pre + "ant"], arrays[pre + "spw"]
    spws = sorted(set(int(x) for x in spw))
    ants = sorted(set(int(a) for a in ant))
    freqs = np.concatenate([arrays[f"{pre}freqs_spw{s}"] for s in spws]) / 1e6
    nch = val.shape[1]
    amp = np.full((len(ants), nch * len(spws)), np.nan)
    ph = np.full_like(amp, np.nan)
    for r in range(val.shape[2]):
        i, j = ants.index(int(ant[r])), spws.index(int(spw[r]))
        v = np.where(flag[0, :, r], np.nan, val[0, :, r])
        amp[i, j * nch:(j + 1) * nch] = np.abs(v)
        ph[i, j * nch:(j + 1) * nch] = np.degrees(np.angle(v))
    order = np.argsort(freqs)
    return freqs[order], amp[:, order], ph[:, order], [names[a] if a < len(names) else str(a) for a in ants]


def _break_gaps(freqs: np.ndarray, amp: np.ndarray, ph: np.ndarray):
    """For plotting only: a NaN column wherever the frequencies jump (between LOs or spectral
    windows), so lines are not drawn across the gap."""
    step = np.diff(freqs)
    gaps = np.flatnonzero(step > 5 * np.median(step)) + 1 if step.size else []
    if len(gaps):
        freqs = np.insert(freqs, gaps, np.nan)
        amp = np.insert(amp, gaps, np.nan, axis=1)
        ph = np.insert(ph, gaps, np.nan, axis=1)
    return freqs, amp, ph


def _gains(arrays: dict, pre: str, names: list[str], t0: float | None):
    """(hours, amp[time, ant], phase[time, ant], names) from a G table: first polarisation, first
    spectral window of the group, one row per solution time."""
    if pre + "value" not in arrays or t0 is None:
        return None
    val, flag, ant, spw, tm = (arrays[pre + k] for k in ("value", "flag", "ant", "spw", "time"))
    s0 = int(spw.min())
    sel = spw == s0
    times = np.unique(tm[sel])
    ants = sorted(set(int(a) for a in ant[sel]))
    amp = np.full((len(times), len(ants)), np.nan)
    ph = np.full_like(amp, np.nan)
    for r in np.flatnonzero(sel):
        i, j = int(np.searchsorted(times, tm[r])), ants.index(int(ant[r]))
        v = np.nan if flag[0, 0, r] else val[0, 0, r]
        amp[i, j] = np.abs(v)
        ph[i, j] = np.degrees(np.angle(v))
    hours = (times / 86400.0 - t0) * 24
    return hours, amp, ph, [names[a] if a < len(names) else str(a) for a in ants]


def _models(data: dict, pts: list[dict]) -> dict:
    out = {}
    std = {}
    for name, fr in (data["roles"].get("fields") or {}).items():
        if isinstance(fr, dict) and fr.get("standard"):
            std[name] = fr["standard"]
    for name in dict.fromkeys(p["field"] for p in pts):
        s = std.get(name)
        if not s:
            continue
        f = np.array([p["freq_hz"] for p in pts if p["field"] == name])
        grid = np.geomspace(f.min() * 0.8, f.max() * 1.25, 50)
        out[name] = (grid, np.array([calibrators.pb2017_flux(s, x) for x in grid]))
    return out


def _installed(product_dir: str, path: str | None) -> str | None:
    """A file of an installed product (by name inside the product's directory), if it exists."""
    if not path:
        return None
    p = os.path.join(product_dir, os.path.basename(path))
    return p if os.path.exists(p) else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def _read_sky(fits_path: str):
    """(2-D data, celestial WCS, beam in pixels or None) of a FITS image."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(fits_path, memmap=False) as h:
        hdr = h[0].header
        d = np.squeeze(h[0].data)
    while d.ndim > 2:
        d = d[0]
    beam = None
    if hdr.get("BMAJ") and hdr.get("CDELT2"):
        pix = abs(hdr["CDELT2"])
        beam = (hdr["BMAJ"] / pix, hdr["BMIN"] / pix, float(hdr.get("BPA", 0.0)))
    return np.asarray(d, dtype=float), WCS(hdr).celestial, beam


def robust_rms(d: np.ndarray) -> float:
    v = d[np.isfinite(d)]
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else 0.0


def _zoom_box(d: np.ndarray, beam, beams: float = 8.0):
    """Pixel box of ±``beams`` restoring beams around the brightest pixel."""
    y, x = np.unravel_index(int(np.nanargmax(d)), d.shape)
    half = int(max(8, beams * (beam[0] if beam else 5.0)))
    return (max(0, x - half), min(d.shape[1] - 1, x + half), max(0, y - half), min(d.shape[0] - 1, y + half))


def _draw_image(fits_path: str, residual_path: str | None, title: str, path: Path):
    d, w, beam = _read_sky(fits_path)
    res = _read_sky(residual_path)[0] if residual_path else None
    rms = robust_rms(res if res is not None else d)
    norm = plots.image_norm(rms, float(np.nanmax(d)))
    panels = [{"data": d, "wcs": w, "beam": beam, "title": "restored, full field"},
              {"data": d, "wcs": w, "beam": beam, "title": "zoom on the brightest emission", "box": _zoom_box(d, beam)}]
    if res is not None:
        panels.append({"data": res, "wcs": w, "beam": beam, "title": "residual"})
    return plots.sky_panels(panels, path, norm, title=f"{title} — rms {rms * 1e3:.2f} mJy/beam")


def _draw_before_after(one_gc: dict, after_fits: str, meta: dict, title: str, path: Path):
    d0, w0, b0 = _read_sky(one_gc["path"])
    d1, w1, b1 = _read_sky(after_fits)
    rms = meta.get("rms_jy") or robust_rms(d1)
    norm = plots.image_norm(rms, max(float(np.nanmax(d0)), float(np.nanmax(d1))))
    dr0, dr1 = one_gc.get("dynamic_range"), _ratio(meta.get("peak_jy"), meta.get("rms_jy"))
    panels = [{"data": d0, "wcs": w0, "beam": b0,
               "title": f"1GC: rms {_num(one_gc.get('rms_jy'), 1e3, 2)} mJy/beam, DR {_num(dr0, 1, 0)}"},
              {"data": d1, "wcs": w1, "beam": b1,
               "title": f"self-calibrated: rms {_num(meta.get('rms_jy'), 1e3, 2)} mJy/beam, DR {_num(dr1, 1, 0)}"}]
    return plots.sky_panels(panels, path, norm, title=title)
