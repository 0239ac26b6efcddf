"""Child-side extraction of what the QA report plots: uv-coverage, flagged fraction per scan,
bandpass and gain solutions. Reads the MS and calibration tables (read-only) and writes plain
numpy arrays to one ``.npz`` file, so the parent can plot without CASA.

Runs inside a CASA child process (see :mod:`atarchive.execution.children`).
"""

from __future__ import annotations

import glob
import os

import numpy as np

from .. import naming
from ._casa import chan_freqs, channel_flag_counts, column, flagged_per_row, spw_ranges, table
from .calibrate import spws_for_lo

MAX_UV_ROWS = 6000  # rows of UVW kept per LO for the uv-coverage plot (the plot looks the same)


def _split_flags(splits: list[str], per_antenna: dict[int, list[float]] | None = None) -> dict[int, float]:
    """Flagged fraction per scan number over the calibrated splits (every field's cross-correlations,
    flagged after calibration); ``per_antenna`` gathers [flagged, rows] per antenna index."""
    acc: dict[int, list[float]] = {}
    for ms in splits:
        tb = table(ms)
        try:
            scan = tb.getcol("SCAN_NUMBER")
            flagged = flagged_per_row(tb)
            ants = (tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")) if per_antenna is not None else ()
        finally:
            tb.close()
        for col in ants:
            for a in np.unique(col):
                sel = col == a
                acc_a = per_antenna.setdefault(int(a), [0.0, 0.0])
                acc_a[0] += float(flagged[sel].sum())
                acc_a[1] += float(sel.sum())
        for s in np.unique(scan):
            sel = scan == s
            a = acc.setdefault(int(s), [0.0, 0.0])
            a[0] += float(flagged[sel].sum())
            a[1] += float(sel.sum())
    return {s: a[0] / a[1] for s, a in acc.items() if a[1]}


def _chan_flags(splits: list[str]) -> np.ndarray:
    """[frequency (Hz), flagged fraction] of every channel over the calibrated splits (all fields, times,
    baselines and polarisations): RFI shows as channels flagged far more than the others."""
    acc: dict[float, list[float]] = {}
    for ms in splits:
        for freqs, flagged, cells in channel_flag_counts(ms).values():
            for f, n in zip(freqs, flagged):
                a = acc.setdefault(round(float(f)), [0.0, 0.0])
                a[0] += float(n)
                a[1] += float(cells)
    rows = [[f, a[0] / a[1]] for f, a in sorted(acc.items()) if a[1]]
    return np.array(rows, dtype=float).reshape(-1, 2)


def _uv_and_flags(vis: str, lo_ranges: dict[str, list[float]], arrays: dict, splits: list[str]) -> dict:
    spws = spw_ranges(vis)
    dd_spw = column(os.path.join(vis, "DATA_DESCRIPTION"), "SPECTRAL_WINDOW_ID")
    tb = table(vis)
    try:
        n = tb.nrows()
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        ddid = tb.getcol("DATA_DESC_ID")
        scan = tb.getcol("SCAN_NUMBER")
        fld = tb.getcol("FIELD_ID")
        tm = tb.getcol("TIME")
        cross = a1 != a2
        spw_of_row = np.asarray(dd_spw)[ddid]
        uvw = tb.getcol("UVW")  # (3, nrow): small next to DATA
        for lo, (f0, f1) in lo_ranges.items():
            ids = spws_for_lo(spws, [f0, f1])
            rows = np.flatnonzero(np.isin(spw_of_row, ids) & cross)
            if rows.size == 0:
                continue
            keep = rows[np.linspace(0, rows.size - 1, min(MAX_UV_ROWS, rows.size)).astype(int)]
            arrays[f"uv_{lo}"] = uvw[:2, keep].T.astype(np.float32)
            arrays[f"uvfreq_{lo}"] = np.array([0.5 * (f0 + f1)])
        flagged = flagged_per_row(tb)
    finally:
        tb.close()
    per_ant: dict[int, list[float]] = {}
    after = _split_flags(splits, per_ant)  # calibration flags its splits; the fixed MS keeps the flags from before
    if per_ant:  # unflagged fraction per antenna index after calibration (NaN: not in the splits)
        unflagged = np.full(max(per_ant) + 1, np.nan)
        for a, (f, n) in per_ant.items():
            unflagged[a] = 1.0 - f / n if n else np.nan
        arrays["ant_unflagged"] = unflagged
    if splits:
        arrays["chan_flags"] = _chan_flags(splits)
    scans = []
    for s in np.unique(scan):
        sel = (scan == s) & cross
        if not sel.any():
            continue
        frac = after.get(int(s), float(flagged[sel].mean()))
        scans.append([int(s), int(np.bincount(fld[sel]).argmax()), frac, float(tm[sel].mean())])
    arrays["scan_flags"] = np.array(scans, dtype=float).reshape(-1, 4)  # scan, field id, flagged, mean time (s)
    return {"nrows": int(n)}


def _caltable(path: str) -> dict:
    """What the report plots of a calibration table: solutions, flags, antenna, spectral window, time."""
    tb = table(path)
    try:
        out = {
            "time": tb.getcol("TIME"),
            "ant": tb.getcol("ANTENNA1"),
            "spw": tb.getcol("SPECTRAL_WINDOW_ID"),
            "flag": tb.getcol("FLAG"),  # (npol, nchan, nrow)
        }
        out["value"] = tb.getcol("CPARAM") if "CPARAM" in tb.colnames() else tb.getcol("FPARAM")
    finally:
        tb.close()
    return out


def run(*, vis: str, caldir: str | None, lo_ranges: dict, out_npz: str) -> dict:
    arrays: dict[str, np.ndarray] = {}
    info: dict = {"vis": vis, "tables": {}}
    if vis and os.path.isdir(vis):
        splits = sorted(glob.glob(os.path.join(naming.split_dir(caldir), "*.ms"))) if caldir else []
        info.update(_uv_and_flags(vis, lo_ranges, arrays, splits))
        arrays["antenna_names"] = np.array(column(os.path.join(vis, "ANTENNA"), "NAME"))
    for kind in ("B0", "G1"):
        for path in sorted(glob.glob(os.path.join(caldir or "", f"{kind}_g*.tb"))):
            g = os.path.basename(path)[len(kind) + 2:-3]
            pre = f"{kind}_{g}_"
            arrays.update({pre + k: np.asarray(v) for k, v in _caltable(path).items()})
            if kind == "B0":  # the bandpass is plotted against frequency
                arrays.update({f"{pre}freqs_spw{i}": f for i, f in enumerate(chan_freqs(path))})
            info["tables"].setdefault(kind, []).append(g)
    os.makedirs(os.path.dirname(out_npz), exist_ok=True)
    np.savez_compressed(out_npz, **arrays)
    return info


def make_report(*, records: dict, vis: str, caldir: str | None, lo_ranges: dict, outdir: str,
                final_dir: str) -> dict:
    """The report step's child call: extract the arrays, then draw the page (:mod:`atarchive.report`)
    into ``outdir``. A session whose MS or tables cannot be read still gets a page, with a note."""
    from pathlib import Path

    from ..report.build import render_report

    notes = []
    try:
        run(vis=vis, caldir=caldir, lo_ranges=lo_ranges, out_npz=os.path.join(outdir, "qa.npz"))
    except Exception as e:  # noqa: BLE001 - the page still shows what the catalogue knows
        notes.append(f"could not read the MS or calibration tables: {e}")
    return render_report(records, outdir=Path(outdir), final_dir=Path(final_dir), notes=notes)
