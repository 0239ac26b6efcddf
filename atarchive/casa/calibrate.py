"""Child-side driver of the ``calibrate`` step: map names to IDs, choose the reference antenna,
then run the calibration chain (:mod:`atarchive.casa.calchain`) once per LO group.

Runs inside a CASA child process (see :mod:`atarchive.execution.children`).
"""

from __future__ import annotations

import os

import numpy as np

from .. import naming
from ._casa import column, flagged_per_row, spw_ranges, table


def field_ids(vis: str) -> dict[str, int]:
    return {n: i for i, n in enumerate(column(os.path.join(vis, "FIELD"), "NAME"))}


def spw_freqs(vis: str) -> list[list[float]]:
    return spw_ranges(vis)


def spws_for_lo(spws: list[tuple[float, float]], lo_range: list[float]) -> list[int]:
    lo0, lo1 = lo_range
    return [i for i, (f0, f1) in enumerate(spws) if f0 <= lo1 and f1 >= lo0]


def antenna_names(vis: str) -> list[str]:
    return column(os.path.join(vis, "ANTENNA"), "NAME")


def _unflagged_by_antenna(vis: str) -> tuple[np.ndarray, np.ndarray]:
    """Per antenna: the summed unflagged fraction of its cross-correlation rows, and their number."""
    tb = table(vis)
    try:
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        frac = 1.0 - flagged_per_row(tb)
    finally:
        tb.close()
    if a1.size == 0:
        return np.zeros(0), np.zeros(0)
    n = int(max(a1.max(), a2.max())) + 1
    cross = a1 != a2
    good, rows = np.zeros(n), np.zeros(n)
    for b in (a1[cross], a2[cross]):
        np.add.at(good, b, frac[cross])
        np.add.at(rows, b, 1.0)
    return good, rows


def weak_antennas(level: np.ndarray, ratio: float = 0.3) -> list[int]:
    """Antennas whose visibility level is below ``ratio`` × the median antenna's: dead or pointing
    elsewhere (noise only), so never a reference. Antennas without data (NaN) are not judged."""
    ok = np.isfinite(level)
    if ok.sum() < 3:
        return []
    med = float(np.median(level[ok]))
    return [int(i) for i in np.flatnonzero(ok & (level < ratio * med))] if med > 0 else []


def _level_by_antenna(vis: str, max_rows: int = 20000, max_chans: int = 64) -> np.ndarray:
    """Per antenna: the 90th percentile over its cross-correlation rows of the row's median unflagged
    parallel-hand amplitude (rows sampled evenly, at most ``max_rows``; channels too, at most
    ``max_chans``: a median needs no more, and reading every cell of an hour's MS took a minute). The
    bright calibrator scans set it for a working antenna; an antenna with noise only stays at the noise."""
    tb = table(vis)
    try:
        nrows = tb.nrows()
        if not nrows:
            return np.zeros(0)
        step = max(1, nrows // max_rows)
        a1 = tb.getcol("ANTENNA1", 0, -1, step)
        a2 = tb.getcol("ANTENNA2", 0, -1, step)
        # the smallest shape of any row: a slice beyond a cell's shape aborts casacore, not raises
        npol = int(min(column(os.path.join(vis, "POLARIZATION"), "NUM_CORR")))
        nchan = int(min(column(os.path.join(vis, "SPECTRAL_WINDOW"), "NUM_CHAN")))
        # first and last polarisation (the parallel hands in CASA order), every k-th channel
        blc, trc, inc = [0, 0], [npol - 1, nchan - 1], [max(1, npol - 1), max(1, nchan // max_chans)]
        data = tb.getcolslice("DATA", blc, trc, inc, 0, -1, step)  # (pol, chan, row)
        flag = tb.getcolslice("FLAG", blc, trc, inc, 0, -1, step)
    finally:
        tb.close()
    amp = np.where(flag, np.nan, np.abs(data))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            row = np.nanmedian(amp.reshape(-1, amp.shape[-1]), axis=0)
    n = int(max(a1.max(), a2.max())) + 1
    out = np.full(n, np.nan)
    cross = (a1 != a2) & np.isfinite(row)
    for i in range(n):
        v = row[cross & ((a1 == i) | (a2 == i))]
        if v.size:
            out[i] = float(np.percentile(v, 90))
    return out


def choose_refant(vis: str, exclude: list[int] = ()) -> tuple[int, str]:
    """Antenna with the most unflagged cross-correlation data; ties broken by distance to the
    array centre. Antennas whose visibilities stay at the noise (dead, noise only) are never chosen.
    Returns (antenna ID, reason)."""
    good, _ = _unflagged_by_antenna(vis)
    n = len(good)
    weak = [i for i in weak_antennas(_level_by_antenna(vis)) if i < n]
    names = antenna_names(vis)
    if len(weak) < n:
        exclude = [*exclude, *weak]
    ta = table(os.path.join(vis, "ANTENNA"))
    try:
        pos = ta.getcol("POSITION").T[:n]
    finally:
        ta.close()
    dist = np.linalg.norm(pos - pos.mean(axis=0), axis=1)
    for e in exclude:
        if e < n:
            good[e] = -1
    best = max(range(n), key=lambda i: (round(good[i] / max(good.max(), 1e-9), 3), -dist[i]))
    reason = (f"most unflagged cross-correlation data ({good[best] / max(good.max(), 1e-9):.0%} of the best), "
              f"{dist[best]:.0f} m from the array centre"
              + (f"; not {', '.join(str(names[i]) if i < len(names) else str(i) for i in weak)}: visibilities at "
                 f"the noise level" if weak else ""))
    return best, reason


def reset_flags(vis: str, tag: str) -> str:
    """Calibration flags the MS it calibrates (applycal flags data without solutions). So that every
    calibration of the same fixed MS starts from the same flags, save them once (version named after
    the fix run) and restore them before each later calibration. Returns what was done."""
    from ._casa import casa

    _, t = casa()
    name = f"atarchive_before_calibrate_{tag}"
    versions = t.flagmanager(vis=vis, mode="list") or {}
    known = {v.get("name") for v in versions.values() if isinstance(v, dict)}
    if name in known:
        t.flagmanager(vis=vis, mode="restore", versionname=name)
        return f"restored flags saved before the first calibration ({name})"
    t.flagmanager(vis=vis, mode="save", versionname=name, comment="flags as made by fix, before calibrate")
    return f"saved flags before calibrating ({name})"


def antenna_unflagged(per_ms: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, float]:
    """Unflagged fraction of each antenna's cross-correlation data over several MSs (the splits),
    from each one's ``_unflagged_by_antenna``."""
    good, rows = np.zeros(0), np.zeros(0)
    for g, r in per_ms:
        n = max(len(good), len(g))
        good = np.pad(good, (0, n - len(good))) + np.pad(g, (0, n - len(g)))
        rows = np.pad(rows, (0, n - len(rows))) + np.pad(r, (0, n - len(r)))
    return {i: float(good[i] / rows[i]) if rows[i] else 0.0 for i in range(len(good))}


def run(*, vis: str, outdir: str, final_dir: str, roles: dict, groups: list[list[str]], lo_ranges: dict,
        refant: str | None, exclude_antennas: list[str], params: dict, flag_tag: str = "",
        flag_workers: int = 1, diagnose: dict | None = None) -> dict:
    from atarchive.errors import PermanentStepError

    from . import calchain as chain

    flags_note = reset_flags(vis, flag_tag or "0")

    fids = field_ids(vis)
    missing = [f["name"] for f in roles["flux_cals"] if f["name"] not in fids]
    if missing:
        raise PermanentStepError(f"flux calibrator field(s) not in the MS: {missing}")
    names = antenna_names(vis)
    excl = [names.index(a) if a in names else int(a) for a in exclude_antennas
            if a in names or str(a).isdigit()]
    if refant is not None:
        if refant in names:
            ref, why = names.index(refant), f"set in config ({refant})"
        elif str(refant).isdigit() and int(refant) < len(names):
            ref, why = int(refant), f"set in config (ID {refant})"
        else:
            raise PermanentStepError(f"refant {refant!r} is not an antenna of this session: {names}")
    else:
        ref, why = choose_refant(vis, excl)
    spws = spw_freqs(vis)
    flux_cals = [{"field_id": fids[f["name"]], "name": f["name"], "standard": f["standard"]} for f in roles["flux_cals"]]
    phase_cals = [{"field_id": fids[n], "name": n} for n in roles["phase_cals"] if n in fids]
    targets = [{"field_id": fids[t["name"]], "name": t["name"],
                "phase_cal_id": fids.get(t["phase_cal"]) if t["phase_cal"] else None}
               for t in roles["targets"] if t["name"] in fids]
    spw_groups = []
    for g in groups:
        ids = sorted({s for lo in g for s in spws_for_lo(spws, lo_ranges[lo])})
        if ids:
            spw_groups.append(ids)
    os.makedirs(outdir, exist_ok=True)
    splitdir = naming.split_dir(outdir)
    if ref in excl:
        raise PermanentStepError(f"refant {names[ref]} is also in exclude_antennas")
    keep = [i for i in range(len(names)) if i not in excl]
    params = {**params, "antenna": (",".join(map(str, keep)) + "&") if excl else "",
              "diagnose": diagnose or {}}
    res = chain.calibrate(vis, caldir=outdir, splitdir=splitdir, flux_cals=flux_cals, phase_cals=phase_cals,
                          targets=targets, refant=ref, spw_groups=spw_groups, params=params,
                          flag_workers=flag_workers)
    per_split = {sp["name"]: _unflagged_by_antenna(sp["path"]) for sp in res.get("splits", [])}
    empty = [name for name, (good, _) in per_split.items() if not good.sum() > 0]
    if empty:
        fc_empty = [f for f in flux_cals if f["name"] in empty]
        why = ""
        if fc_empty:  # the calibrator itself: measure why (large delays, no coherent signal…)
            from .caldiag import diagnose as measure_cause, figures_line

            d = diagnose or {}
            fc = fc_empty[0]
            cause, figures = measure_cause(vis, [fc["field_id"]], sorted({i for g in spw_groups for i in g}),
                                           fc["name"], raw=d.get("raw", {}).get(fc["name"], []),
                                           chanbin=d.get("chanbin", 1))
            print(figures_line(figures), flush=True)
            why = f": {cause}"
        raise PermanentStepError(f"calibration left no data: {cause}" if why else
                                 f"calibration left no data in field(s) {', '.join(empty)}")
    unflagged = antenna_unflagged(list(per_split.values()))
    # Paths are reported where they will be after the reconciler renames outdir → final_dir.
    for sp in res.get("splits", []):
        sp["path"] = os.path.join(final_dir, os.path.relpath(sp["path"], outdir))
    res.update(refant=ref, refant_name=names[ref], refant_reason=why, field_ids=fids,
               excluded_antennas=[names[i] for i in excl], flags=flags_note,
               unflagged_after={names[i]: round(f, 4) for i, f in unflagged.items() if i < len(names)},
               spw_groups=spw_groups, antennas=names)
    return res
