"""The one import point of casatools/casatasks inside a child: logs go to the step's log file."""

from __future__ import annotations

import os


def casa():
    """(casatools, casatasks), with CASA's log sent to the step log."""
    import casatasks
    import casatools

    path = os.environ.get("ATARCHIVE_CASA_LOG")
    if path:
        casatasks.casalog.setlogfile(path)
    return casatools, casatasks


def table(path: str, *, readonly: bool = True):
    ct, _ = casa()
    tb = ct.table()
    tb.open(path, nomodify=readonly)
    return tb


def nrows(path: str) -> int:
    tb = table(path)
    try:
        return int(tb.nrows())
    finally:
        tb.close()


def column(path: str, name: str) -> list:
    """One column of a (sub)table as a list, e.g. column(ms + "/FIELD", "NAME")."""
    tb = table(path)
    try:
        return list(tb.getcol(name))
    finally:
        tb.close()


def chan_freqs(path: str) -> list:
    """Channel frequencies (Hz) of every spectral window of an MS or calibration table."""
    tb = table(path + "/SPECTRAL_WINDOW")
    try:
        return [tb.getcell("CHAN_FREQ", i) for i in range(tb.nrows())]
    finally:
        tb.close()


def spw_ranges(ms: str) -> list[list[float]]:
    """[min, max] channel frequency of every spectral window."""
    return [[float(f.min()), float(f.max())] for f in chan_freqs(ms)]


def flagged_per_row(tb, chunk: int = 20000):
    """Flagged fraction of every row of an open main table, read in chunks of rows (bounded memory)."""
    import numpy as np

    n = tb.nrows()
    out = np.zeros(n, dtype=np.float32)
    for start in range(0, n, chunk):
        nr = min(chunk, n - start)
        flags = tb.getcol("FLAG", startrow=start, nrow=nr).reshape(-1, nr)
        out[start:start + nr] = flags.sum(axis=0, dtype=np.int32) / max(flags.shape[0], 1)
    return out


def channel_flag_counts(ms: str, chunk: int = 50000) -> dict[int, tuple]:
    """Per spectral window of ``ms``: (channel frequencies in Hz, flagged cells per channel, cells per
    channel), over every row and polarisation, the FLAG column read in chunks of rows (bounded memory)."""
    import numpy as np

    freqs = [np.asarray(f, dtype=float).ravel() for f in chan_freqs(ms)]
    dd_spw = column(ms + "/DATA_DESCRIPTION", "SPECTRAL_WINDOW_ID")
    flagged = {i: np.zeros(len(f)) for i, f in enumerate(freqs)}
    cells = dict.fromkeys(flagged, 0)
    tb = table(ms)
    try:
        ddid = tb.getcol("DATA_DESC_ID")
        for start in range(0, tb.nrows(), chunk):
            nr = min(chunk, tb.nrows() - start)
            fl = tb.getcol("FLAG", startrow=start, nrow=nr)  # (npol, nchan, nrow)
            dd = ddid[start:start + nr]
            for d in np.unique(dd):
                spw = int(dd_spw[int(d)])
                sel = fl[:, :, dd == d]
                flagged[spw] = flagged[spw] + sel.sum(axis=(0, 2))
                cells[spw] += sel.shape[0] * sel.shape[2]
    finally:
        tb.close()
    return {i: (freqs[i], flagged[i], cells[i]) for i in flagged if cells[i]}
