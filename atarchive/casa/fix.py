"""fix: rewrite SCAN_NUMBER so it increments on every field change and on time gaps.

Rows sharing a TIME (all baselines and LOs of one integration) share a scan. Works on a copy
(``src`` copied to ``ms`` first). Uses python-casacore, not casatools: the child then starts
without CASA's ~2.5 s import.
"""

from __future__ import annotations

import numpy as np

import shutil

from ..errors import PermanentStepError


def scan_numbers(times: np.ndarray, fields: np.ndarray, max_gap_s: float) -> np.ndarray:
    """Scan number (1-based) per row from its time and field. Pure numpy, testable without CASA."""
    utimes, inv = np.unique(times, return_inverse=True)
    # field of each unique time: the most common among its rows (there is one per integration)
    ufield = np.empty(len(utimes), dtype=fields.dtype)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(utimes) + 1))
    for i in range(len(utimes)):
        vals = fields[order[bounds[i]:bounds[i + 1]]]
        ufield[i] = np.bincount(vals).argmax() if vals.size else -1
    new = np.ones(len(utimes), dtype=np.int64)
    if len(utimes) > 1:
        change = (ufield[1:] != ufield[:-1]) | (np.diff(utimes) > max_gap_s)
        new[1:] = 1 + np.cumsum(change)
    return new[inv]


def fix_scan_numbers(ms: str, *, max_gap_s: float, src: str | None = None) -> dict:
    from casacore import tables

    if src:
        shutil.copytree(src, ms, symlinks=True)
    with tables.table(ms, readonly=False, ack=False) as tb:
        if tb.nrows() == 0:
            raise PermanentStepError(f"{ms} has no rows")
        times = tb.getcol("TIME")
        fields = tb.getcol("FIELD_ID")
        scans = scan_numbers(times, fields, max_gap_s)
        tb.putcol("SCAN_NUMBER", scans.astype(np.int32))
        tb.flush()
    with tables.table(ms + "/FIELD", ack=False) as tf:
        names = [str(n) for n in tf.getcol("NAME")]
    out = []
    for s in np.unique(scans):
        m = scans == s
        fid = int(np.bincount(fields[m]).argmax())
        out.append({"scan": int(s), "field_id": fid, "field": names[fid], "start_mjd_s": float(times[m].min()),
                    "end_mjd_s": float(times[m].max()), "nrows": int(m.sum())})
    return {"nscans": len(out), "scans": out, "fields": names}
