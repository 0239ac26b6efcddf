"""concat: scans and LOs into one MS (CASA concat; each LO becomes its own spectral window)."""

from __future__ import annotations

from ..errors import PermanentStepError
from ._casa import casa, column, nrows, spw_ranges


def concat(in_ms: list[str], out_ms: str) -> dict:
    _, tasks = casa()
    if not in_ms:
        raise PermanentStepError("nothing to concatenate")
    tasks.concat(vis=list(in_ms), concatvis=out_ms, timesort=True, copypointing=False)
    freqs = spw_ranges(out_ms)
    fields = column(out_ms + "/FIELD", "NAME")
    return {"nrows": nrows(out_ms), "nspw": len(freqs), "spw_freqs": freqs, "nfield": len(fields), "fields": fields,
            "inputs": len(in_ms)}
