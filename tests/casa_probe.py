"""Helpers the tests run inside a CASA child process (read-only looks at products)."""

from __future__ import annotations

import os

import numpy as np


def ms_summary(ms: str) -> dict:
    from atarchive.casa._casa import table

    tb = table(ms)
    try:
        scans = tb.getcol("SCAN_NUMBER")
        fields = tb.getcol("FIELD_ID")
        times = tb.getcol("TIME")
        nrows = tb.nrows()
    finally:
        tb.close()
    fl = table(os.path.join(ms, "FIELD"))
    try:
        names = list(fl.getcol("NAME"))
    finally:
        fl.close()
    sw = table(os.path.join(ms, "SPECTRAL_WINDOW"))
    try:
        spws = [{"nchan": int(sw.getcell("NUM_CHAN", i)), "f0": float(np.min(sw.getcell("CHAN_FREQ", i))),
                 "f1": float(np.max(sw.getcell("CHAN_FREQ", i)))} for i in range(sw.nrows())]
    finally:
        sw.close()
    order = []
    for s in sorted(set(scans.tolist()), key=lambda s: times[scans == s].min()):
        fid = set(fields[scans == s].tolist())
        assert len(fid) == 1, f"scan {s} has several fields"
        order.append((int(s), names[fid.pop()]))
    return {"nrows": int(nrows), "scan_numbers": [s for s, _ in order], "scan_fields": [f for _, f in order],
            "spws": spws}
