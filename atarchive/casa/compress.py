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


def _aoflag(ms: str) -> None:
    """Flag every baseline with AOFlagger's generic strategy (amplitudes of all polarisations)."""
    import aoflagger

    af = aoflagger.AOFlagger()
    strategy = af.load_strategy_file(af.find_strategy_file(aoflagger.TelescopeId.Generic))
    tb = table(ms, readonly=False)
    try:
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        ddid = tb.getcol("DATA_DESC_ID")
        for key in sorted(set(zip(a1.tolist(), a2.tolist(), ddid.tolist()))):
            if key[0] == key[1]:
                continue
            rows = np.flatnonzero((a1 == key[0]) & (a2 == key[1]) & (ddid == key[2]))
            if rows.size < 2 or np.any(np.diff(rows) <= 0):
                continue
            data = np.stack([tb.getcell("DATA", int(r)) for r in rows], axis=-1)  # (npol, nchan, ntime)
            flags = np.stack([tb.getcell("FLAG", int(r)) for r in rows], axis=-1)
            npol, nchan, ntime = data.shape
            if nchan < 2 or ntime < 2:
                continue
            img = af.make_image_set(ntime, nchan, 2 * npol)
            for p in range(npol):
                img.set_image_buffer(2 * p, np.ascontiguousarray(data[p].real.astype(np.float32)))
                img.set_image_buffer(2 * p + 1, np.ascontiguousarray(data[p].imag.astype(np.float32)))
            mask = strategy.run(img).get_buffer().astype(bool)  # (nchan, ntime)
            new = flags | mask[None, :, :]
            for i, r in enumerate(rows):
                tb.putcell("FLAG", int(r), new[..., i])
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
