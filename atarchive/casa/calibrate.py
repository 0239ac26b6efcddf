"""First-generation calibration (the seed recipe), run inside a CASA child process.

Per group of spectral windows (each LO alone when LOs are far apart, else together):
setjy (Perley-Butler 2017, see below) → G0 (phase, short solint, central channels) → K0 (delay) →
B0 (bandpass) → G1 (amplitude+phase per scan on flux and phase calibrators) → fluxscale →
applycal per field (calibrators their own solutions, targets their phase calibrator's, linear in
time) → tfcrop + rflag on the corrected data → split of every field without autocorrelations.

Fields and antennas are always selected by numeric ID: ATA antenna names such as ``2a`` and field
names typed by observers (spaces, quotes) break CASA selection strings.

Flux-density model: setjy matches its built-in models by field *name*, and an unrecognised or
wrong name at a calibrator's position can silently get the wrong flux. We therefore compute the
Perley-Butler 2017 spectrum ourselves (:mod:`atarchive.calibrators`) for the calibrator identified
by position, and give it to setjy as ``standard='manual'`` per spectral window (flux at the spw
centre, local spectral index and curvature): the model is right whatever the field is called.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .. import calibrators, naming
from ..errors import PermanentStepError
from ._casa import casa, table

DEFAULTS = {"solint_short": "int", "minsnr": 3.0, "rflag": True, "uvrange": "", "antenna": ""}


def _spw_info(vis: str) -> list[dict]:
    sw = table(os.path.join(vis, "SPECTRAL_WINDOW"))
    try:
        out = []
        for i in range(sw.nrows()):
            f = np.asarray(sw.getcell("CHAN_FREQ", i))
            out.append({"id": i, "nchan": int(f.size), "f0": float(f.min()), "f1": float(f.max()),
                        "centre": float(f.mean())})
        return out
    finally:
        sw.close()


def pb2017_manual(standard: str, freq_hz: float) -> tuple[float, list[float]]:
    """(flux at freq, [alpha, beta]) for setjy standard='manual' around ``freq_hz``.

    Re-expands log10 S = sum a_k x^k (x = log10 f/GHz) around x0; CASA's manual model is
    S = S0 (f/f0)^(alpha + beta ln(f/f0)), so beta = b2 / ln 10.
    """
    cal = calibrators.find_flux_calibrator(standard)
    x0 = math.log10(freq_hz / 1e9)
    coeffs = cal.coeffs
    b1 = sum(k * a * x0 ** (k - 1) for k, a in enumerate(coeffs) if k >= 1)
    b2 = sum(k * (k - 1) / 2 * a * x0 ** (k - 2) for k, a in enumerate(coeffs) if k >= 2)
    return float(calibrators.pb2017_flux(cal, freq_hz)), [b1, b2 / math.log(10)]


def _central_channels(spws: list[dict], ids: list[int]) -> str:
    parts = []
    for i in ids:
        n = spws[i]["nchan"]
        lo, hi = n // 4, max(n // 4, 3 * n // 4 - 1)
        parts.append(f"{i}:{lo}~{hi}" if n >= 4 else str(i))
    return ",".join(parts)


def calibrate(vis: str, *, caldir: str, splitdir: str, flux_cals: list[dict], phase_cals: list[dict],
              targets: list[dict], refant: int, spw_groups: list[list[int]], params: dict) -> dict:
    _, t = casa()
    p = {**DEFAULTS, **(params or {})}
    os.makedirs(caldir, exist_ok=True)
    os.makedirs(splitdir, exist_ok=True)
    if not flux_cals:
        raise PermanentStepError("no flux calibrator")
    spws = _spw_info(vis)
    ref = str(int(refant))
    fc_ids = [int(f["field_id"]) for f in flux_cals]
    pc_ids = [int(f["field_id"]) for f in phase_cals]
    fc_sel = ",".join(map(str, fc_ids))
    groups_out = []
    for gi, ids in enumerate(spw_groups):
        spw = ",".join(map(str, ids))
        tab = {k: os.path.join(caldir, f"{k}_g{gi}.tb") for k in ("G0", "K0", "B0", "G1", "F")}
        setjy_out: dict = {}
        for fc in flux_cals:
            setjy_out[str(fc["field_id"])] = {}
            for i in ids:
                flux, spix = pb2017_manual(fc["standard"], spws[i]["centre"])
                t.setjy(vis=vis, field=str(fc["field_id"]), spw=str(i), standard="manual",
                        fluxdensity=[flux, 0, 0, 0], spix=spix, reffreq=f"{spws[i]['centre'] / 1e9:.9f}GHz",
                        scalebychan=True, usescratch=True)
                setjy_out[str(fc["field_id"])][str(i)] = {"flux_jy": flux, "spix": spix,
                                                          "freq_hz": spws[i]["centre"], "model": fc["standard"]}
        # antenna: "" (all) or "0,1,2&" = cross-correlations among the antennas kept (exclusions in config)
        common = {"vis": vis, "refant": ref, "minsnr": p["minsnr"], "uvrange": p["uvrange"], "antenna": p["antenna"]}
        t.gaincal(caltable=tab["G0"], field=fc_sel, spw=_central_channels(spws, ids), calmode="p",
                  solint=p["solint_short"], gaintype="G", **common)
        _need(tab["G0"], "G0 (initial phase on the flux calibrator)")
        t.gaincal(caltable=tab["K0"], field=fc_sel, spw=spw, gaintype="K", solint="inf", combine="scan",
                  gaintable=[tab["G0"]], **common)
        _need(tab["K0"], "K0 (delay)")
        t.bandpass(caltable=tab["B0"], field=fc_sel, spw=spw, solint="inf", combine="scan", bandtype="B",
                   solnorm=True, gaintable=[tab["G0"], tab["K0"]], **common)
        _need(tab["B0"], "B0 (bandpass)")
        g1_fields = ",".join(map(str, fc_ids + pc_ids))
        t.gaincal(caltable=tab["G1"], field=g1_fields, spw=spw, calmode="ap", solint="inf", gaintype="G",
                  gaintable=[tab["K0"], tab["B0"]], **common)
        _need(tab["G1"], "G1 (gains on the calibrators)")
        fs = {}
        if pc_ids:
            fs = t.fluxscale(vis=vis, caltable=tab["G1"], fluxtable=tab["F"], reference=[str(i) for i in fc_ids],
                             transfer=[str(i) for i in pc_ids], incremental=False) or {}
            _need(tab["F"], "fluxscale table")
            gtab = tab["F"]
        else:
            gtab = tab["G1"]
        # apply: calibrators on their own solutions, targets on their phase calibrator's
        for fid in fc_ids + pc_ids:
            t.applycal(vis=vis, field=str(fid), spw=spw, gaintable=[tab["K0"], tab["B0"], gtab],
                       gainfield=["", "", str(fid)], interp=["", "nearest", "linear"], calwt=False, flagbackup=False)
        for tg in targets:
            pcid = tg.get("phase_cal_id")
            gf = str(pcid) if pcid is not None else fc_sel
            t.applycal(vis=vis, field=str(tg["field_id"]), spw=spw, gaintable=[tab["K0"], tab["B0"], gtab],
                       gainfield=["", "", gf], interp=["", "nearest", "linear"], calwt=False, flagbackup=False)
        groups_out.append({"spws": ids, "tables": {k: v for k, v in tab.items() if os.path.exists(v)},
                           "setjy": setjy_out, "fluxscale": _fluxscale_summary(fs, pc_ids)})
    all_fields = ",".join(str(i) for i in fc_ids + pc_ids + [int(tg["field_id"]) for tg in targets])
    t.flagdata(vis=vis, mode="tfcrop", datacolumn="corrected", field=all_fields, flagbackup=False)
    if p["rflag"]:
        t.flagdata(vis=vis, mode="rflag", datacolumn="corrected", field=all_fields, flagbackup=False)
    splits = []
    roles = [(f, "flux_cal") for f in flux_cals] + [(f, "phase_cal") for f in phase_cals] + \
        [(f, "target") for f in targets]
    all_spw = ",".join(str(i) for ids in spw_groups for i in ids)
    for f, role in roles:
        out = os.path.join(splitdir, naming.split_name(f["name"]))
        t.split(vis=vis, outputvis=out, field=str(f["field_id"]), spw=all_spw, antenna=p["antenna"] or "!*&&&",
                datacolumn="corrected", keepflags=False)
        if not os.path.isdir(out):
            raise PermanentStepError(f"split of field {f['name']!r} produced nothing (all flagged?)")
        splits.append({"field_id": int(f["field_id"]), "name": f["name"], "role": role, "path": out})
    return {"groups": groups_out, "splits": splits, "refant": int(refant)}


def _need(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise PermanentStepError(f"calibration produced no {what} table: too little unflagged data on the "
                                 "calibrator, or a wrong reference antenna")


def _fluxscale_summary(fs: dict, pc_ids: list[int]) -> dict:
    out = {}
    for fid in pc_ids:
        d = fs.get(str(fid)) if isinstance(fs, dict) else None
        if not isinstance(d, dict):
            continue
        per = {}
        for k, v in d.items():
            if k.isdigit() and isinstance(v, dict) and "fluxd" in v:
                per[k] = [float(v["fluxd"][0]), float(v["fluxdErr"][0])]
        out[str(fid)] = {"per_spw": per, "spidx": [float(x) for x in np.atleast_1d(d.get("spidx", []))],
                         "fitFluxd": float(d.get("fitFluxd", 0.0) or 0.0), "fitRefFreq": float(d.get("fitRefFreq", 0.0) or 0.0)}
    return out
