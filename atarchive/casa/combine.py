"""concat: scans and LOs into one MS (CASA concat; each LO becomes its own spectral window)."""

from __future__ import annotations

from ..errors import PermanentStepError
from ._casa import casa, table


def concat(in_ms: list[str], out_ms: str) -> dict:
    _, tasks = casa()
    if not in_ms:
        raise PermanentStepError("nothing to concatenate")
    tasks.concat(vis=list(in_ms), concatvis=out_ms, timesort=True, copypointing=False)
    tb = table(out_ms)
    try:
        nrows = tb.nrows()
    finally:
        tb.close()
    sw = table(out_ms + "/SPECTRAL_WINDOW")
    try:
        freqs = [[float(f.min()), float(f.max())] for f in (sw.getcell("CHAN_FREQ", i) for i in range(sw.nrows()))]
    finally:
        sw.close()
    fl = table(out_ms + "/FIELD")
    try:
        fields = list(fl.getcol("NAME"))
    finally:
        fl.close()
    return {"nrows": nrows, "nspw": len(freqs), "spw_freqs": freqs, "nfield": len(fields), "fields": fields,
            "inputs": len(in_ms)}
