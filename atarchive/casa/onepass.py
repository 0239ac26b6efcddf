"""One pass from a scan-LO's uvh5 subband files to its averaged Measurement Set.

What ``copy`` (``copy.uvh5_to_ms``: full-resolution MS) then ``compress`` (``compress.compress``:
AOFlagger on every cross-correlation baseline, then ``mstransform``) give, without the
full-resolution MS: chunk by chunk of integrations (a whole number of time bins each, at most
``times_per_chunk`` integrations unless one bin is longer; 0 = the whole scan), the rows are read as
``mswrite`` would write them, each cross-correlation baseline is flagged in memory with
``aoflag.flag_baseline``, and the chunk is averaged as ``mstransform`` does (``average``) and
appended to the averaged MS. Memory holds one chunk. With the whole scan in one chunk AOFlagger
sees the planes it sees in the two-step path; with smaller chunks each baseline's plane is cut at
chunk edges, so its flags can differ there a little.

Data the direct writer does not take (``mswrite.suitable``) or a flagger that needs an MS (tfcrop,
or ``auto`` when AOFlagger cannot run) go the two-step way inside this call: the full-resolution MS
is written to ``scratch_ms``, compressed and deleted. The result says which (``one_pass``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import PermanentStepError
from . import average, mswrite


def _time_chunks(meta, mjd_s: np.ndarray, timebin_s: float, times_per_chunk: int):
    """(row ranges, time bin of every row): rows are time-ordered; chunks hold whole bins."""
    times, first = np.unique(mjd_s, return_index=True)
    interval = float(np.median(meta.integration_time))
    bins = average.time_bins(times, timebin_s, interval)
    edges = np.r_[first, len(mjd_s)]
    ranges = [(int(edges[i0]), int(edges[i1])) for i0, i1 in average.chunks_of_bins(bins, times_per_chunk)]
    return ranges, bins[np.searchsorted(times, mjd_s)]


def _flag_chunk(a1: np.ndarray, a2: np.ndarray, data: np.ndarray, flags: np.ndarray) -> None:
    """AOFlagger on every cross-correlation baseline of the chunk (rows time-ordered), in place."""
    from . import aoflag
    from .compress import baselines

    zeros = np.zeros(len(a1), np.int64)
    for rows in baselines(a1, a2, zeros, np.arange(len(a1))):
        if rows.size < 2:
            continue
        new = aoflag.flag_baseline(data[rows], flags[rows])
        if new.any():
            flags[rows] |= new[:, :, None]


def _add_sigma_spectrum(ms) -> None:
    from casacore import tables

    desc = tables.makearrcoldesc("SIGMA_SPECTRUM", 0.0, valuetype="float", ndim=2,
                                 datamanagertype="TiledShapeStMan", datamanagergroup="TiledSigmaSpectrum",
                                 comment="Estimated rms noise for each data point")
    ms.addcols(desc)


def _finish_subtables(out_ms: str, meta, pol_order, chan: dict, total_bw: float) -> None:
    """Subtables as mstransform leaves them: pyuvdata's, the spectral window averaged."""
    from casacore import tables

    meta.freq_array = np.asarray(chan["CHAN_FREQ"])
    meta.channel_width = np.asarray(chan["CHAN_WIDTH"])
    meta.flex_spw_id_array = np.full(chan["NUM_CHAN"], meta.spw_array[0], dtype=int)
    meta.Nfreqs = int(chan["NUM_CHAN"])
    mswrite.write_subtables(out_ms, meta, pol_order)
    with tables.table(os.path.join(out_ms, "SPECTRAL_WINDOW"), readonly=False, ack=False) as sw:
        for col in ("CHAN_FREQ", "CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION"):
            sw.putcell(col, 0, np.asarray(chan[col], float))
        sw.putcell("REF_FREQUENCY", 0, chan["REF_FREQUENCY"])
        sw.putcell("TOTAL_BANDWIDTH", 0, total_bw)
    with tables.table(os.path.join(out_ms, "FEED"), readonly=False, ack=False) as fd:
        for k in list(fd.getkeywords()):
            fd.removekeyword(k)
    with tables.table(os.path.join(out_ms, "OBSERVATION"), readonly=False, ack=False) as ob:
        if "TELESCOPE_LOCATION" in ob.colnames():
            ob.removecols("TELESCOPE_LOCATION")


def _two_steps(files, out_ms, scratch_ms, *, timebin_s, chanbin, flagger, times_per_chunk, why: str) -> dict:
    """copy then compress: the full-resolution MS written here (python-casacore), flagged and averaged
    by CASA in a child process of its own (casatools and python-casacore never share a process)."""
    from ..execution.children import run_in_child
    from .copy import uvh5_to_ms

    shutil.rmtree(scratch_ms, ignore_errors=True)  # a leftover of an interrupted run
    os.makedirs(os.path.dirname(scratch_ms) or ".", exist_ok=True)
    log = os.environ.get("ATARCHIVE_CASA_LOG") or f"{scratch_ms}.log"
    try:
        conv = uvh5_to_ms(files, scratch_ms, times_per_chunk=times_per_chunk or None)
        res = run_in_child("atarchive.casa.compress:compress",
                           {"in_ms": scratch_ms, "out_ms": out_ms, "timebin_s": timebin_s, "chanbin": chanbin,
                            "flagger": flagger}, workdir=Path(os.getcwd()), log_path=Path(log))
    finally:
        shutil.rmtree(scratch_ms, ignore_errors=True)
    res.pop("_call_seconds", None)
    return {**_copy_keys(conv), **res, "one_pass": False, "one_pass_skipped": why}


def _copy_keys(conv: dict) -> dict:
    """copy's result, its full-resolution channel count renamed (compress's ``nchan`` is the averaged one)."""
    out = {k: v for k, v in conv.items() if k != "nchan"}
    out["nchan_fullres"] = conv["nchan"]
    return out


def uvh5_to_averaged_ms(files: list[str], out_ms: str, *, timebin_s: float, chanbin: int, flagger: str = "auto",
                        times_per_chunk: int = 0, scratch_ms: str) -> dict:
    """Convert, flag and average one scan-LO (its subband files) into ``out_ms``. See module doc.
    Returns copy's and compress's result keys together, and ``one_pass``."""
    from .copy import _read_sorted, _renumber, start_conversion

    start_conversion(files, out_ms)
    kw = {"timebin_s": timebin_s, "chanbin": chanbin, "flagger": flagger, "times_per_chunk": times_per_chunk}
    if flagger not in ("auto", "aoflagger", "none"):
        return _two_steps(files, out_ms, scratch_ms, **kw, why=f"flagger {flagger} works on an MS")
    if flagger != "none":
        from . import aoflag

        if not aoflag.available():
            if flagger == "aoflagger":
                raise PermanentStepError("aoflagger failed: it cannot be imported or its strategy loaded")
            return _two_steps(files, out_ms, scratch_ms, **kw, why="aoflagger unavailable")
    nbytes = sum(os.path.getsize(f) for f in files)
    meta, by_freq = _read_sorted(files, read_data=False)
    if meta.Nblts == 0:
        raise PermanentStepError("no visibilities in these files")
    used = np.unique(np.concatenate([meta.ant_1_array, meta.ant_2_array]))
    ntimes = int(len(np.unique(meta.time_array)))
    mapping = _renumber(meta, used)
    if not mswrite.suitable(meta, by_freq):
        del meta
        return _two_steps(files, out_ms, scratch_ms, **kw, why="not phased and time-ordered (pyuvdata writer)")
    conv = {"nants": int(meta.Nants_data), "nbls": int(meta.Nbls), "ntimes": ntimes, "nchan": int(meta.Nfreqs),
            "npols": int(meta.Npols), "freq_start_hz": float(meta.freq_array.min()),
            "freq_end_hz": float(meta.freq_array.max()), "nbytes_in": int(nbytes),
            "antenna_map": {str(k): v for k, v in mapping.items()},
            "antenna_names": [str(n) for n in meta.telescope.antenna_names], "writer": "direct"}
    field = next(iter(meta.phase_center_catalog.values()))
    conv.update(field=field["cat_name"], ra_deg=float(np.degrees(field.get("cat_lon") or 0.0)),
                dec_deg=float(np.degrees(field.get("cat_lat") or 0.0)))
    res = _one_pass(meta, by_freq, out_ms, flag=flagger != "none", timebin_s=timebin_s, chanbin=chanbin,
                    times_per_chunk=int(times_per_chunk or 0))
    conv["chunks"] = res.pop("chunks")
    return {**_copy_keys(conv), **res, "flagger": "aoflagger" if flagger != "none" else "none",
            "timebin_s": timebin_s, "chanbin": chanbin, "one_pass": True}


def _one_pass(meta, by_freq: list[str], out_ms: str, *, flag: bool, timebin_s: float, chanbin: int,
              times_per_chunk: int) -> dict:
    from pyuvdata.utils.io import ms as ms_utils

    rd = mswrite.Reader(meta, by_freq)  # turns meta's baselines to ant1 < ant2 where the writer does
    mjd_s = mswrite.mjd_seconds(meta.time_array)
    ranges, row_bins = _time_chunks(meta, mjd_s, timebin_s, times_per_chunk)
    full_freqs = np.asarray(meta.freq_array, float).ravel()
    widths = np.broadcast_to(np.asarray(meta.channel_width, float), full_freqs.shape)
    chan = average.channel_axis(full_freqs, widths, chanbin)
    if chan["NUM_CHAN"] < 1:
        raise PermanentStepError(f"{len(full_freqs)} channels cannot be averaged by {chanbin}")
    total_bw = float(np.abs(widths).sum())
    before = np.zeros(len(full_freqs))
    after = np.zeros(len(full_freqs))
    cells = 0
    nout = 0
    uvw = -meta.uvw_array
    ms = ms_utils.init_ms_file(out_ms)
    try:
        _add_sigma_spectrum(ms)
        ms.putcolkeyword("FLAG_CATEGORY", "CATEGORY", np.array([], dtype=str))
        ms.putcolkeyword("DATA", "QuantumUnits", meta.vis_units)
        for a, b, data, flags, ns in rd.chunks(ranges):
            if mswrite.nsamples_garbage(ns.min(), ns.max()):
                wcol = np.ones((b - a, meta.Npols))
            else:
                wcol = rd.row_weights(ns)  # WEIGHT as the full-resolution MS holds it
            del ns
            sigma = np.power(wcol, -0.5, where=wcol > 0, out=np.zeros_like(wcol)).astype(np.float32)
            w = np.where(sigma > 0, 1.0 / np.where(sigma > 0, sigma, 1).astype(np.float64) ** 2, 0.0)
            a1, a2 = meta.ant_1_array[a:b], meta.ant_2_array[a:b]
            before += flags.sum(axis=(0, 2))
            if flag:
                _flag_chunk(a1, a2, data, flags)
            after += flags.sum(axis=(0, 2))
            cells += flags.shape[0] * flags.shape[2]
            out = average.average(mjd_s[a:b], row_bins[a:b], a1, a2, data, flags, w, uvw[a:b],
                                  meta.integration_time[a:b], meta.integration_time[a:b], chanbin)
            del data, flags
            n = out["nrows"]
            ms.addrows(n)
            for col in ("TIME", "TIME_CENTROID", "INTERVAL", "EXPOSURE", "UVW", "ANTENNA1", "ANTENNA2", "DATA",
                        "FLAG", "WEIGHT_SPECTRUM", "SIGMA_SPECTRUM", "WEIGHT", "SIGMA"):
                ms.putcol(col, out[col], nout, n)
            ms.putcol("SCAN_NUMBER", meta.scan_number_array[a:b][out["first_row"]], nout, n)
            nout += n
    finally:
        ms.done()
    frac_after = float(after.sum() / (cells * len(full_freqs))) if cells else 1.0
    if frac_after >= 0.999:
        raise PermanentStepError(f"all data flagged in {out_ms}")
    _finish_subtables(out_ms, meta, rd.pol_order, chan, total_bw)
    dfreq = float(full_freqs[1] - full_freqs[0]) if len(full_freqs) > 1 else 0.0
    return {"flagged_fraction_before": float(before.sum() / (cells * len(full_freqs))) if cells else 1.0,
            "flagged_fraction_after": frac_after, "nrows": nout, "nchan": [int(chan["NUM_CHAN"])],
            "channel_flags": [{"freq0_hz": float(full_freqs[0]), "dfreq_hz": dfreq,
                               "flagged": [round(float(x) / cells, 3) for x in after]}],
            "chunks": len(ranges)}
