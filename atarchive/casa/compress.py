"""compress: flag at full resolution, then average in time and frequency with mstransform.

Flagger: ``aoflagger`` (its Python bindings and bundled generic strategy), ``tfcrop`` (CASA
flagdata), ``none``; ``auto`` takes aoflagger when it imports and runs, else tfcrop. Which one ran
is returned. The input MS is left for the caller to delete.
"""

from __future__ import annotations

import numpy as np

from ..errors import PermanentStepError
from ._casa import casa, channel_flag_counts, column, nrows, table


def flagged_fraction(ms: str) -> float:
    return flag_summary(ms)[0]


def flag_summary(ms: str) -> tuple[float, list[dict]]:
    """Flagged fraction of the whole MS and of every channel of every spectral window
    (``[{"freq0_hz", "dfreq_hz", "flagged": [fraction per channel]}]``, over rows and polarisations).
    Taken at full resolution, where the flagger works: averaging hides a flagged channel."""
    counts = channel_flag_counts(ms)
    flagged = sum(float(f.sum()) for _, f, _ in counts.values())
    cells = sum(n * len(fr) for fr, _, n in counts.values())
    chans = [{"freq0_hz": float(fr[0]), "dfreq_hz": float(fr[1] - fr[0]) if len(fr) > 1 else 0.0,
              "flagged": [round(float(x) / n, 3) for x in f]} for _, (fr, f, n) in sorted(counts.items())]
    return (flagged / cells if cells else 1.0), chans


def baselines(a1: np.ndarray, a2: np.ndarray, ddid: np.ndarray, time: np.ndarray) -> list[np.ndarray]:
    """Row numbers of every cross-correlation baseline (per spectral window), each in time order.
    Pure numpy: one sort of the main table's index columns, no per-row reads."""
    key = (ddid.astype(np.int64) << 40) | (a1.astype(np.int64) << 20) | a2.astype(np.int64)
    order = np.lexsort((time, key))
    edges = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1], True])
    return [order[i0:i1] for i0, i1 in zip(edges[:-1], edges[1:]) if a1[order[i0]] != a2[order[i0]]]


def _aoflag(ms: str) -> None:
    """Flag every cross-correlation baseline with ``aoflag.flag_baseline`` (AOFlagger's generic
    strategy on the baseline's spectrum-normalised data). Each baseline's rows are read and written
    whole (one getcol and one putcol of a row selection), so memory holds one baseline."""
    from . import aoflag

    aoflag._flagger()  # raises here when aoflagger cannot run: the caller falls back and says why
    tb = table(ms, readonly=False)
    try:
        rows_of = baselines(tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2"), tb.getcol("DATA_DESC_ID"),
                            tb.getcol("TIME"))
        for rows in rows_of:
            if rows.size < 2:
                continue
            sel = tb.selectrows(rows.tolist())
            try:
                flags = sel.getcol("FLAG")  # (npol, nchan, ntime)
                new = aoflag.flag_baseline(sel.getcol("DATA").transpose(2, 1, 0), flags.transpose(2, 1, 0))
                if new.any():
                    sel.putcol("FLAG", flags | new.T[None, :, :])
            finally:
                sel.close()
    finally:
        tb.close()


def compress(in_ms: str, out_ms: str, *, timebin_s: float, chanbin: int, flagger: str = "auto",
             tfcrop: dict | None = None) -> dict:
    _, tasks = casa()
    before = flagged_fraction(in_ms)
    used = flagger
    if flagger in ("auto", "aoflagger"):
        try:
            _aoflag(in_ms)
            used = "aoflagger"
        except Exception as err:  # noqa: BLE001 - fall back to CASA's flagger, and say so
            if flagger == "aoflagger":
                raise PermanentStepError(f"aoflagger failed: {err}") from None
            used = f"tfcrop (aoflagger unavailable: {type(err).__name__})"
    if used.startswith("tfcrop"):
        tasks.flagdata(vis=in_ms, mode="tfcrop", datacolumn="data", action="apply", flagbackup=False,
                       **(tfcrop or {}))
    after, channels = flag_summary(in_ms)
    if after >= 0.999:
        raise PermanentStepError(f"all data flagged in {in_ms}")
    kw = {}
    if timebin_s and timebin_s > 0:
        kw.update(timeaverage=True, timebin=f"{timebin_s}s")
    if chanbin and chanbin > 1:
        kw.update(chanaverage=True, chanbin=int(chanbin))
    tasks.mstransform(vis=in_ms, outputvis=out_ms, datacolumn="data", keepflags=True, **kw)
    nchan = [int(x) for x in column(out_ms + "/SPECTRAL_WINDOW", "NUM_CHAN")]
    return {"flagger": used, "flagged_fraction_before": before, "flagged_fraction_after": after,
            "nrows": nrows(out_ms), "nchan": nchan, "timebin_s": timebin_s, "chanbin": chanbin,
            "channel_flags": channels}
