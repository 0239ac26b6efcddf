"""copy: one scan × one LO, its subband uvh5 files merged in frequency → a Measurement Set.

Runs in a child process (python-casacore via pyuvdata; no casatools here). Sources are opened
read-only. Antennas with data are renumbered 0..N-1 (the telescope metadata is cut to them),
unprojected data are phased to their phase centre, and autocorrelations are made real.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import PermanentStepError


def _read(files: list[str], **kw):
    from pyuvdata import UVData

    uvs = []
    for f in files:
        if os.path.getsize(f) == 0:
            raise PermanentStepError(f"{f}: empty file (0 bytes)")
        uv = UVData()
        try:
            uv.read(f, file_type="uvh5", fix_old_proj=False, run_check=False, **kw)
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise PermanentStepError(f"{f}: cannot read uvh5: {str(err).splitlines()[0]}") from None
        uvs.append(uv)
    uvs.sort(key=lambda u: float(u.freq_array.min()))
    out = uvs[0]
    if len(uvs) > 1:
        try:
            out = out.fast_concat(uvs[1:], "freq", run_check=False, inplace=False)
        except (ValueError, AssertionError) as err:
            raise PermanentStepError(f"subband files of this scan do not fit together: {err}") from None
    return out


def _renumber(uv) -> dict:
    """Keep antennas with data only, numbered 0..N-1 in their original order."""
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


def uvh5_to_ms(files: list[str], out_ms: str, *, times_per_chunk: int | None = None) -> dict:
    """Convert one scan-LO (its subband files) to ``out_ms``. See module doc."""
    if not files:
        raise PermanentStepError("no files for this scan and LO")
    nbytes = sum(os.path.getsize(f) for f in files)
    uv = _read(files)
    if uv.Nblts == 0:
        raise PermanentStepError("no visibilities in these files")
    # The ATA correlator's nsample_array can be garbage (negative): samples are unit weight.
    ns = uv.nsample_array
    if ns is None or not np.all(np.isfinite(ns)) or np.any(ns <= 0):
        uv.nsample_array = np.ones_like(uv.data_array, dtype=np.float32)
    mapping = _renumber(uv)
    cat = uv.phase_center_catalog
    unprojected = [k for k, v in cat.items() if v["cat_type"] == "unprojected"]
    if unprojected:
        uv.phase_to_time(np.median(uv.time_array))
    auto = uv.ant_1_array == uv.ant_2_array
    if np.any(auto):
        pols = uv.polarization_array
        same = np.isin(pols, [-5, -6, -1, -2, 1])
        d = uv.data_array[auto]
        d[..., same] = np.abs(d[..., same])
        uv.data_array[auto] = d
    field = next(iter(uv.phase_center_catalog.values()))
    if os.path.exists(out_ms):
        raise PermanentStepError(f"output exists already: {out_ms}")
    uv.write_ms(out_ms, force_phase=True, run_check=False, clobber=False)
    return {
        "nants": int(uv.Nants_data), "nbls": int(uv.Nbls), "ntimes": int(uv.Ntimes), "nchan": int(uv.Nfreqs),
        "npols": int(uv.Npols), "freq_start_hz": float(uv.freq_array.min()), "freq_end_hz": float(uv.freq_array.max()),
        "field": field["cat_name"], "ra_deg": float(np.degrees(field.get("cat_lon") or 0.0)),
        "dec_deg": float(np.degrees(field.get("cat_lat") or 0.0)), "nbytes_in": int(nbytes),
        "antenna_map": {str(k): v for k, v in mapping.items()},
        "antenna_names": [str(n) for n in uv.telescope.antenna_names],
    }
