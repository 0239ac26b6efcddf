"""copy: one scan × one LO, its subband uvh5 files merged in frequency → a Measurement Set.

Runs in a child process (python-casacore via pyuvdata; no casatools here). Sources are opened
read-only. Antennas with data are renumbered 0..N-1 (the telescope metadata is cut to them),
unprojected data are phased to their phase centre, and autocorrelations are made real.
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from ..errors import PermanentStepError
from . import mswrite


def _read(files: list[str], **kw):
    return _read_sorted(files, **kw)[0]


def _read_sorted(files: list[str], **kw):
    """Read and merge in frequency. Returns (UVData, the files in frequency order)."""
    from pyuvdata import UVData

    uvs = []
    for f in files:
        if os.path.getsize(f) == 0:
            raise PermanentStepError(f"{f}: empty file (0 bytes)")
        uv = UVData()
        try:
            uv.read(f, file_type="uvh5", fix_old_proj=False, run_check=False, run_check_acceptability=False, **kw)
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise PermanentStepError(f"{f}: cannot read uvh5: {str(err).splitlines()[0]}") from None
        uvs.append((uv, f))
    uvs.sort(key=lambda p: float(p[0].freq_array.min()))
    files = [f for _, f in uvs]
    uvs = [u for u, _ in uvs]
    out = uvs[0]
    if len(uvs) > 1:
        try:
            out = out.fast_concat(uvs[1:], "freq", run_check=False, run_check_acceptability=False, inplace=False)
        except (ValueError, AssertionError) as err:
            raise PermanentStepError(f"subband files of this scan do not fit together: {err}") from None
    return out, files


def _renumber(uv, used: np.ndarray | None = None) -> dict:
    """Keep antennas with data only (``used``: their numbers over the whole scan), numbered 0..N-1
    in their original order."""
    if used is None:
        used = np.unique(np.concatenate([uv.ant_1_array, uv.ant_2_array]))
    tel = uv.telescope
    keep = np.isin(tel.antenna_numbers, used)
    order = np.argsort(tel.antenna_numbers[keep])
    old_nums = tel.antenna_numbers[keep][order]
    mapping = {int(o): i for i, o in enumerate(old_nums)}
    lut = np.full(int(max(tel.antenna_numbers.max(), used.max())) + 1, -1)
    for o, n in mapping.items():
        lut[o] = n
    uv.ant_1_array = lut[uv.ant_1_array]
    uv.ant_2_array = lut[uv.ant_2_array]
    tel.antenna_names = np.asarray(tel.antenna_names)[keep][order]
    tel.antenna_positions = tel.antenna_positions[keep][order]
    if tel.antenna_diameters is not None:
        tel.antenna_diameters = np.asarray(tel.antenna_diameters)[keep][order]
    tel.antenna_numbers = np.arange(len(old_nums))
    tel.Nants = len(old_nums)
    for attr in ("mount_type", "feed_array", "feed_angle"):
        v = getattr(tel, attr, None)
        if v is not None and len(v) == len(keep):
            setattr(tel, attr, np.asarray(v)[keep][order])
    uv.Nants_data = len(old_nums)
    uv.baseline_array = uv.antnums_to_baseline(uv.ant_1_array, uv.ant_2_array)
    return mapping


def _prepare(uv, used: np.ndarray, phase_time: float) -> dict:
    """Weights, antenna numbering, phasing and real autocorrelations, in place. Returns the antenna map."""
    ns = uv.nsample_array
    if ns is None or mswrite.nsamples_garbage(ns.min(), ns.max()):
        uv.nsample_array = np.ones_like(uv.data_array, dtype=np.float32)
    mapping = _renumber(uv, used)
    cat = uv.phase_center_catalog
    if any(v["cat_type"] == "unprojected" for v in cat.values()):
        uv.phase_to_time(phase_time)
    auto = uv.ant_1_array == uv.ant_2_array
    if np.any(auto):
        pols = uv.polarization_array
        same = np.isin(pols, mswrite.PARALLEL_HANDS)
        d = uv.data_array[auto]
        d[..., same] = np.abs(d[..., same])
        uv.data_array[auto] = d
    return mapping


def _append_rows(chunk_ms: str, out_ms: str) -> None:
    """Append the main-table rows of ``chunk_ms`` to ``out_ms`` (same subtables) and widen the
    observation's time range."""
    from casacore import tables

    with tables.table(chunk_ms, ack=False) as src, tables.table(out_ms, readonly=False, ack=False) as dst:
        src.copyrows(dst)
    with tables.table(os.path.join(chunk_ms, "OBSERVATION"), ack=False) as so, \
            tables.table(os.path.join(out_ms, "OBSERVATION"), readonly=False, ack=False) as do:
        a, b = do.getcell("TIME_RANGE", 0), so.getcell("TIME_RANGE", 0)
        do.putcell("TIME_RANGE", 0, np.array([min(a[0], b[0]), max(a[1], b[1])]))


def _via_uvdata(files: list[str], out_ms: str, used, phase_time: float, times, n: int):
    """pyuvdata's reader and ``write_ms``, by time chunks when ``n`` > 0. Returns (last chunk's UVData,
    number of chunks)."""
    chunks = [times] if n <= 0 or n >= len(times) else [times[i:i + n] for i in range(0, len(times), n)]
    uv = None
    for i, chunk in enumerate(chunks):
        uv = _read(files, **({} if len(chunks) == 1 else {"times": chunk}))
        _prepare(uv, used, phase_time)
        if i == 0:
            uv.write_ms(out_ms, force_phase=True, run_check=False, clobber=False)
        else:
            part = f"{out_ms}.chunk{i}"
            uv.write_ms(part, force_phase=True, run_check=False, clobber=True)
            _append_rows(part, out_ms)
            shutil.rmtree(part, ignore_errors=True)
        if i < len(chunks) - 1:
            uv = None  # free the chunk before reading the next
    return uv, len(chunks)


def start_conversion(files: list[str], out_ms: str) -> None:
    """What every conversion of a scan-LO checks and sets up first, in its child process: files given,
    the output not there yet, astropy offline, numba's cache where it can be written."""
    if not files:
        raise PermanentStepError("no files for this scan and LO")
    from .child import cache_numba, offline_astropy

    offline_astropy()
    cache_numba()
    if os.path.exists(out_ms):
        raise PermanentStepError(f"output exists already: {out_ms}")


def uvh5_to_ms(files: list[str], out_ms: str, *, times_per_chunk: int | None = None, direct: bool = True) -> dict:
    """Convert one scan-LO (its subband files) to ``out_ms``. See module doc.

    ``times_per_chunk``: read and write that many integrations at a time (bounded memory for long
    scans): the first chunk makes the MS, later ones are written beside it and their rows appended.
    Every chunk is phased to the same time (the scan's median), so the MS is the one a whole-scan
    conversion gives."""
    start_conversion(files, out_ms)
    nbytes = sum(os.path.getsize(f) for f in files)
    meta, by_freq = _read_sorted(files, read_data=False)  # headers only, merged in frequency
    if meta.Nblts == 0:
        raise PermanentStepError("no visibilities in these files")
    used = np.unique(np.concatenate([meta.ant_1_array, meta.ant_2_array]))
    times = np.unique(meta.time_array)
    n = int(times_per_chunk or 0)
    mapping = _renumber(meta, used)
    if direct and mswrite.suitable(meta, by_freq):
        # already phased, time-ordered: write the MS straight from chunked reads (mswrite)
        nchunks = mswrite.write(meta, by_freq, out_ms, times_per_chunk=n)
        uv, writer = meta, "direct"
    else:
        uv, nchunks = _via_uvdata(files, out_ms, used, float(np.median(meta.time_array)), times, n)
        writer = "pyuvdata"
    del meta
    field = next(iter(uv.phase_center_catalog.values()))
    return {
        "nants": int(uv.Nants_data), "nbls": int(uv.Nbls), "ntimes": int(len(times)), "nchan": int(uv.Nfreqs),
        "npols": int(uv.Npols), "freq_start_hz": float(uv.freq_array.min()), "freq_end_hz": float(uv.freq_array.max()),
        "field": field["cat_name"], "ra_deg": float(np.degrees(field.get("cat_lon") or 0.0)),
        "dec_deg": float(np.degrees(field.get("cat_lat") or 0.0)), "nbytes_in": int(nbytes),
        "antenna_map": {str(k): v for k, v in mapping.items()},
        "antenna_names": [str(n) for n in uv.telescope.antenna_names], "chunks": nchunks,
        "writer": writer,
    }
