"""First-generation calibration (the seed recipe), run inside a CASA child process.

Per group of spectral windows (each LO alone when LOs are far apart, else together):
setjy (Perley-Butler 2017, see below) → G0 (phase, short solint, central channels) → K0 (delay) →
B0 (bandpass) → G1 (amplitude+phase per scan on flux and phase calibrators) → fluxscale →
applycal per field (calibrators their own solutions, targets their phase calibrator's, linear in
time) → split of every field's corrected data without autocorrelations → tfcrop + rflag on each
split (fields flagged in parallel, up to ``flag_workers`` CASA processes).

Fields and antennas are always selected by numeric ID: ATA antenna names such as ``2a`` and field
names typed by observers (spaces, quotes) break CASA selection strings.

Flux-density model: setjy matches its built-in models by field *name*, and an unrecognised or
wrong name at a calibrator's position can silently get the wrong flux. We therefore compute the
Perley-Butler 2017 spectrum ourselves (:mod:`atarchive.calibrators`) for the calibrator identified
by position, and give it to setjy as ``standard='manual'`` per spectral window (flux at the spw
centre, local spectral index and curvature): the model is right whatever the field is called.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from .. import calibrators, naming
from ..errors import PermanentStepError
from ._casa import casa, table

# options of the chain that are not config settings (solint_short, minsnr, rflag come from [steps.calibrate])
CHAIN_OPTIONS = {"uvrange": "", "antenna": "", "diagnose": {}}


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


DELAY_KEEP_MIN = 0.9  # baselines keeping less of their amplitude on average: measure on the raw data


def delay_keep(ktable: str, widths: dict[int, float]) -> float:
    """The fraction of their amplitude the baselines keep on average in one channel of width
    ``widths[spw]`` (Hz) given the solved antenna delays of ``ktable`` (K, ns): the mean over antenna
    pairs of |sinc(Δτ Δν)|, the smallest over polarisations and spectral windows. Averaging channels
    under residual delays loses amplitude that no antenna-based gain restores: fluxes come out low
    by about that much."""
    tb = table(ktable)
    try:
        fp, fl, spw = tb.getcol("FPARAM"), tb.getcol("FLAG"), tb.getcol("SPECTRAL_WINDOW_ID")
    finally:
        tb.close()
    tau = np.where(fl, np.nan, fp)[:, 0, :]  # polarisation × row (ns)
    keep = 1.0
    for s in np.unique(spw):
        width = widths.get(int(s), 0.0)
        for p in range(tau.shape[0]):
            t = tau[p, spw == s]
            t = t[np.isfinite(t)]
            if width > 0 and t.size >= 2:
                i, j = np.triu_indices(t.size, 1)
                keep = min(keep, float(np.abs(np.sinc((t[i] - t[j]) * 1e-9 * width)).mean()))
    return keep


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
              targets: list[dict], refant: int, spw_groups: list[list[int]], params: dict,
              flag_workers: int = 1) -> dict:
    p = {**CHAIN_OPTIONS, **params}
    n_fields = len(flux_cals) + len(phase_cals) + len(targets)
    helpers = FlagHelpers(max(0, min(flag_workers, n_fields) - 1), rflag=bool(p["rflag"]))
    try:
        res = _calibrate(vis, caldir=caldir, splitdir=splitdir, flux_cals=flux_cals, phase_cals=phase_cals,
                         targets=targets, refant=refant, spw_groups=spw_groups, p=p, helpers=helpers)
    except BaseException:
        try:
            helpers.finish()
        except Exception:  # noqa: BLE001 - the calibration's own error is the one to report
            pass
        raise
    helpers.finish()
    return res


def _calibrate(vis: str, *, caldir: str, splitdir: str, flux_cals: list[dict], phase_cals: list[dict],
               targets: list[dict], refant: int, spw_groups: list[list[int]], p: dict,
               helpers: "FlagHelpers") -> dict:
    _, t = casa()
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
        def need(path: str, what: str) -> None:
            _need(path, what, vis=vis, field_ids=fc_ids[:1], spw_ids=ids, field=flux_cals[0]["name"],
                  raw=p["diagnose"].get("raw", {}).get(flux_cals[0]["name"], []),
                  chanbin=p["diagnose"].get("chanbin", 1))

        # antenna: "" (all) or "0,1,2&" = cross-correlations among the antennas kept (exclusions in config)
        common = {"vis": vis, "refant": ref, "minsnr": p["minsnr"], "uvrange": p["uvrange"], "antenna": p["antenna"]}
        t.gaincal(caltable=tab["G0"], field=fc_sel, spw=_central_channels(spws, ids), calmode="p",
                  solint=p["solint_short"], gaintype="G", **common)
        need(tab["G0"], "G0 (phase)")
        t.gaincal(caltable=tab["K0"], field=fc_sel, spw=spw, gaintype="K", solint="inf", combine="scan",
                  gaintable=[tab["G0"]], **common)
        need(tab["K0"], "K0 (delay)")
        widths = {i: (spws[i]["f1"] - spws[i]["f0"]) / (spws[i]["nchan"] - 1) for i in ids if spws[i]["nchan"] > 1}
        keep = delay_keep(tab["K0"], widths)
        if keep < DELAY_KEEP_MIN:
            # Solved, but perhaps on channels the delays have washed out (delays solved on averaged
            # channels alias beyond 1/(2 x width), so they only raise the question): measure the flux
            # calibrator's raw data; when most baselines lose over 20 % in an averaged channel, fail
            # with the cause and the cure rather than report fluxes that low.
            from . import caldiag

            why, figures = caldiag.diagnose(vis, fc_ids[:1], ids, flux_cals[0]["name"],
                                            raw=p["diagnose"].get("raw", {}).get(flux_cals[0]["name"], []),
                                            chanbin=p["diagnose"].get("chanbin", 1))
            print(f"delay check (solved delays keep {keep:.0%} on average): {caldiag.figures_line(figures)}",
                  flush=True)
            n, bad = figures.get("n_baselines") or 0, figures.get("baselines_decorrelated") or 0
            if n and bad > n / 2:
                raise PermanentStepError(f"averaged channels washed out: {why}")
        t.bandpass(caltable=tab["B0"], field=fc_sel, spw=spw, solint="inf", combine="scan", bandtype="B",
                   solnorm=True, gaintable=[tab["G0"], tab["K0"]], **common)
        need(tab["B0"], "B0 (bandpass)")
        g1_fields = ",".join(map(str, fc_ids + pc_ids))
        t.gaincal(caltable=tab["G1"], field=g1_fields, spw=spw, calmode="ap", solint="inf", gaintype="G",
                  gaintable=[tab["K0"], tab["B0"]], **common)
        need(tab["G1"], "G1 (gain)")
        fs = {}
        if pc_ids:
            fs = t.fluxscale(vis=vis, caltable=tab["G1"], fluxtable=tab["F"], reference=[str(i) for i in fc_ids],
                             transfer=[str(i) for i in pc_ids], incremental=False) or {}
            need(tab["F"], "fluxscale")
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
    # Split every field (corrected data, no autocorrelations, flagged rows kept: the splits hold every
    # flag after calibration), then flag the splits: each is its own MS, so fields are flagged in
    # parallel (one CASA process each) without sharing a table lock.
    splits = []
    roles = [(f, "flux_cal") for f in flux_cals] + [(f, "phase_cal") for f in phase_cals] + \
        [(f, "target") for f in targets]
    all_spw = ",".join(str(i) for ids in spw_groups for i in ids)
    for f, role in roles:
        out = os.path.join(splitdir, naming.split_name(f["name"]))
        t.split(vis=vis, outputvis=out, field=str(f["field_id"]), spw=all_spw, antenna=p["antenna"] or "!*&&&",
                datacolumn="corrected", keepflags=True)
        if not os.path.isdir(out):
            raise PermanentStepError(f"split of field {f['name']!r} produced nothing (all flagged?)")
        splits.append({"field_id": int(f["field_id"]), "name": f["name"], "role": role, "path": out})
    flag_splits([s["path"] for s in splits], rflag=bool(p["rflag"]), helpers=helpers)
    return {"groups": groups_out, "splits": splits, "refant": int(refant)}


def flag_split(paths: list[str], rflag: bool = True) -> dict:
    """tfcrop (then rflag) on the data of each split MS, in this process."""
    _, t = casa()
    for vis in paths:
        t.flagdata(vis=vis, mode="tfcrop", datacolumn="data", flagbackup=False)
        if rflag:
            t.flagdata(vis=vis, mode="rflag", datacolumn="data", flagbackup=False)
    return {"flagged": paths}


def shares(sizes: dict[str, int], workers: int) -> list[list[str]]:
    """Split MSs dealt to at most ``workers`` shares, largest first onto the lightest share; the
    heaviest share first (this process takes it: the others pay a CASA start-up first)."""
    n = max(1, min(workers, len(sizes)))
    load = [0] * n
    out: list[list[str]] = [[] for _ in range(n)]
    for path in sorted(sizes, key=lambda k: (-sizes[k], k)):
        i = load.index(min(load))
        out[i].append(path)
        load[i] += sizes[path]
    order = sorted(range(n), key=lambda i: -load[i])
    return [out[i] for i in order]


def _size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def flag_when_told(task_file: str, rflag: bool = True) -> dict:
    """In a helper child: load CASA at once (while the parent calibrates), wait for the list of
    splits to flag, flag them."""
    casa()
    while not os.path.exists(task_file):
        time.sleep(0.05)
    with open(task_file) as fh:
        paths = json.load(fh)
    return flag_split(paths, rflag)


class FlagHelpers:
    """``n`` child processes started before calibration, so that their CASA start-up overlaps it;
    after the split each is given its share of the splits to flag (an empty share ends it)."""

    def __init__(self, n: int, rflag: bool):
        from concurrent.futures import ThreadPoolExecutor

        from ..execution.children import run_in_child

        self.logs = [naming.flag_log(os.getcwd(), i) for i in range(1, n + 1)]
        self._tasks = [os.path.join(os.path.dirname(log), "paths.json") for log in self.logs]
        self._given: set[int] = set()
        self._pool = ThreadPoolExecutor(n) if n else None
        self._futs = [self._pool.submit(run_in_child, "atarchive.casa.calchain:flag_when_told",
                                        {"task_file": task, "rflag": rflag}, workdir=os.path.dirname(log),
                                        log_path=log)
                      for task, log in zip(self._tasks, self.logs)]

    def __len__(self) -> int:
        return len(self._futs)

    def give(self, i: int, paths: list[str]) -> None:
        task = self._tasks[i]
        os.makedirs(os.path.dirname(task), exist_ok=True)
        with open(task + ".part", "w") as fh:
            json.dump(paths, fh)
        os.replace(task + ".part", task)
        self._given.add(i)

    def finish(self) -> None:
        """Release the helpers not given work, wait for all, append their logs to this step's log;
        a helper's StepError fails the step."""
        try:
            for i in range(len(self)):
                if i not in self._given:
                    self.give(i, [])
            for fut in self._futs:
                fut.result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            _append_logs(self.logs)


def flag_splits(paths: list[str], *, rflag: bool, helpers: FlagHelpers) -> list[list[str]]:
    """Flag the splits: this process takes the heaviest share, the helpers the others, all at once.
    Returns the shares (this process's first)."""
    parts = shares({p: _size(p) for p in paths}, len(helpers) + 1)
    for i, share in enumerate(parts[1:]):
        helpers.give(i, share)
    flag_split(parts[0], rflag)
    return parts


def _append_logs(logs: list[str]) -> None:
    """The flagging children's CASA logs go to the end of this step's log."""
    main = os.environ.get("ATARCHIVE_CASA_LOG")
    if not main:
        return
    for log in logs:
        try:
            with open(log) as src:
                text = src.read()
        except OSError:
            continue
        with open(main, "a") as dst:
            dst.write(f"\n--- flagging child ({log}) ---\n{text}")


def _need(path: str, what: str, *, vis: str, field_ids: list[int], spw_ids: list[int], field: str,
          raw: list[str] = (), chanbin: int = 1) -> None:
    """A missing calibration table fails the step with the cause measured on the calibrator's data
    (:mod:`atarchive.casa.caldiag`), its figures in the step log."""
    if os.path.isdir(path):
        return
    from . import caldiag

    why, figures = caldiag.diagnose(vis, field_ids, spw_ids, field, raw=raw, chanbin=chanbin)
    print(caldiag.figures_line(figures), flush=True)
    raise PermanentStepError(f"no {what} table: {why}")


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
