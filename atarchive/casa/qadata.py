"""Child-side extraction of what the QA report plots: uv-coverage, flagged fraction per scan,
bandpass and gain solutions. Reads the MS and calibration tables (read-only) and writes plain
numpy arrays to one ``.npz`` file, so the parent can plot without CASA.

Runs inside a CASA child process (see :mod:`atarchive.casa.runner`).
"""

from __future__ import annotations

import glob
import os

import numpy as np

from ._casa import column, spw_ranges, table

MAX_UV_ROWS = 6000  # rows of UVW kept per LO for the uv-coverage plot (the plot looks the same)
CHUNK = 20000


def _uv_and_flags(vis: str, lo_ranges: dict[str, list[float]], arrays: dict) -> dict:
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
            ids = [i for i, (s0, s1) in enumerate(spws) if s0 <= f1 and s1 >= f0]
            rows = np.flatnonzero(np.isin(spw_of_row, ids) & cross)
            if rows.size == 0:
                continue
            keep = rows[np.linspace(0, rows.size - 1, min(MAX_UV_ROWS, rows.size)).astype(int)]
            arrays[f"uv_{lo}"] = uvw[:2, keep].T.astype(np.float32)
            arrays[f"uvfreq_{lo}"] = np.array([0.5 * (f0 + f1)])
        flagged = np.zeros(n, dtype=np.float32)
        for start in range(0, n, CHUNK):
            nr = min(CHUNK, n - start)
            fl = tb.getcol("FLAG", startrow=start, nrow=nr)  # (npol, nchan, nrow)
            flagged[start:start + nr] = fl.reshape(-1, nr).mean(axis=0)
    finally:
        tb.close()
    scans = []
    for s in np.unique(scan):
        sel = (scan == s) & cross
        if not sel.any():
            continue
        scans.append([int(s), int(np.bincount(fld[sel]).argmax()), float(flagged[sel].mean()), float(tm[sel].mean())])
    arrays["scan_flags"] = np.array(scans, dtype=float).reshape(-1, 4)  # scan, field id, flagged, mean time (s)
    return {"nrows": int(n)}


def _caltable(path: str) -> dict:
    tb = table(path)
    try:
        out = {
            "time": tb.getcol("TIME"),
            "ant": tb.getcol("ANTENNA1"),
            "spw": tb.getcol("SPECTRAL_WINDOW_ID"),
            "field": tb.getcol("FIELD_ID"),
            "flag": tb.getcol("FLAG"),  # (npol, nchan, nrow)
        }
        cols = tb.colnames()
        out["value"] = tb.getcol("CPARAM") if "CPARAM" in cols else tb.getcol("FPARAM")
    finally:
        tb.close()
    out["chan_freq"] = [np.asarray(f) for f in _chan_freqs(path)]
    return out


def _chan_freqs(path: str) -> list:
    tb = table(os.path.join(path, "SPECTRAL_WINDOW"))
    try:
        return [tb.getcell("CHAN_FREQ", i) for i in range(tb.nrows())]
    finally:
        tb.close()


def run(*, vis: str, caldir: str | None, lo_ranges: dict, out_npz: str) -> dict:
    arrays: dict[str, np.ndarray] = {}
    info: dict = {"vis": vis, "tables": {}}
    if vis and os.path.isdir(vis):
        info.update(_uv_and_flags(vis, lo_ranges, arrays))
        arrays["antenna_names"] = np.array(column(os.path.join(vis, "ANTENNA"), "NAME"))
        arrays["field_names"] = np.array(column(os.path.join(vis, "FIELD"), "NAME"))
    for kind in ("B0", "G1"):
        for path in sorted(glob.glob(os.path.join(caldir or "", f"{kind}_g*.tb"))):
            g = os.path.basename(path)[len(kind) + 2:-3]
            t = _caltable(path)
            pre = f"{kind}_{g}_"
            for k, v in t.items():
                if k == "chan_freq":
                    arrays[pre + "chan_freq"] = np.array([np.mean(f) for f in v])
                    if kind == "B0":
                        for i, f in enumerate(v):
                            arrays[f"{pre}freqs_spw{i}"] = f
                else:
                    arrays[pre + k] = np.asarray(v)
            info["tables"].setdefault(kind, []).append(g)
    os.makedirs(os.path.dirname(out_npz), exist_ok=True)
    np.savez_compressed(out_npz, **arrays)
    return info
