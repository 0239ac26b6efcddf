"""Average visibilities in time and frequency in memory, the way CASA ``mstransform`` does with
``datacolumn="data"``, ``keepflags=True``. Pure numpy (no casatools): the one-pass conversion
(``onepass``) uses it, tests compare it with ``mstransform`` itself.

Conventions, found by running ``mstransform`` (CASA 6.7) on small MSs with planted flags, random
SIGMA and random WEIGHT_SPECTRUM and comparing every column:

- weights: ``1/SIGMA²`` of each row and polarisation, the same for every channel (the DATA column
  is weighted by SIGMA; WEIGHT_SPECTRUM is not used);
- time bins, per baseline: a bin starts at its first integration and takes the following ones while
  ``t - t_start < timebin - 0.01 × interval`` (20 s over 10 s integrations: two each; 25 s: three;
  a shorter last bin is kept); channel bins: ``chanbin`` adjacent channels, a last partial bin
  is dropped;
- a cell: weighted mean of its unflagged samples, WEIGHT_SPECTRUM their summed weight; a cell with
  every sample flagged keeps the weighted mean of all of them, flagged, with their summed weight;
  SIGMA_SPECTRUM = WEIGHT_SPECTRUM^-½;
- WEIGHT and SIGMA: mean of WEIGHT_SPECTRUM and of SIGMA_SPECTRUM over the unflagged channels of each
  polarisation (over all channels when all are flagged); without channel averaging SIGMA = WEIGHT^-½;
- rows: a row counts when any of its cells is unflagged (all rows count in a bin of flagged rows).
  TIME_CENTROID and UVW: means over counted rows weighted by their summed polarisation weights
  (plain means when every row is flagged); EXPOSURE: sum over counted rows; the bin spans from the
  start of its first row to the end of its last counted row: INTERVAL is that span and TIME its
  middle;
- output rows: bin by bin, baselines in (ANTENNA1, ANTENNA2) order;
- SPECTRAL_WINDOW: CHAN_FREQ the mean of the bin's channels, CHAN_WIDTH, EFFECTIVE_BW and RESOLUTION
  sums, REF_FREQUENCY the first output channel, TOTAL_BANDWIDTH unchanged.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a pyuvdata dependency; without it the sums are numpy array operations
    import numba
except ImportError:  # pragma: no cover
    numba = None

_TOL = 0.01  # of an integration: a row this close to the bin's length still starts a new bin


def time_bins(times: np.ndarray, timebin_s: float, interval: float) -> np.ndarray:
    """Bin number of each of ``times`` (sorted, unique, seconds)."""
    out = np.zeros(len(times), dtype=np.int64)
    if not timebin_s or timebin_s <= 0:
        return np.arange(len(times), dtype=np.int64)
    start, k = None, -1
    limit = timebin_s - _TOL * interval
    for i, t in enumerate(times):
        if start is None or t - start >= limit:
            start, k = t, k + 1
        out[i] = k
    return out


def chunks_of_bins(bins: np.ndarray, times_per_chunk: int) -> list[tuple[int, int]]:
    """Ranges [i0, i1) of time indices, each a whole number of bins (``bins``: bin of each time) and
    at most ``times_per_chunk`` integrations unless one bin is longer; 0: one range."""
    n = len(bins)
    if not times_per_chunk or times_per_chunk <= 0 or n == 0:
        return [(0, n)]
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]]).tolist() + [n]
    out, i0 = [], 0
    for s0, s1 in zip(starts[:-1], starts[1:]):
        if s1 - i0 > times_per_chunk and s0 > i0:
            out.append((i0, s0))
            i0 = s0
    out.append((i0, n))
    return out


def channel_axis(freqs: np.ndarray, widths: np.ndarray, chanbin: int) -> dict:
    """SPECTRAL_WINDOW values after averaging ``chanbin`` channels (a last partial bin dropped)."""
    c = max(int(chanbin), 1)
    n = len(freqs) // c
    f = np.asarray(freqs, float)[:n * c].reshape(n, c)
    w = np.asarray(widths, float)[:n * c].reshape(n, c)
    return {"CHAN_FREQ": f.mean(axis=1), "CHAN_WIDTH": w.sum(axis=1), "EFFECTIVE_BW": np.abs(w).sum(axis=1),
            "RESOLUTION": np.abs(w).sum(axis=1), "NUM_CHAN": n, "REF_FREQUENCY": float(f[0].mean())}


def _accumulate(seg, data, good, w, c, sw, swd, swa, swda, ngood):
    """One pass over the chunk: for output cell (seg[i], chan // c, pol), the summed weights and
    weighted data of its unflagged samples (sw, swd, their count ngood) and of all samples (swa, swda)."""
    n, nchan, npol = data.shape
    nco = sw.shape[1]
    for i in range(n):
        o = seg[i]
        for ch in range(nco * c):
            b = ch // c
            for p in range(npol):
                wi = w[i, p]
                v = data[i, ch, p] * wi
                swa[o, b, p] += wi
                swda[o, b, p] += v
                if good[i, ch, p]:
                    sw[o, b, p] += wi
                    swd[o, b, p] += v
                    ngood[o, b, p] += 1


if numba is not None:
    _accumulate = numba.njit(cache=True, nogil=True)(_accumulate)


def _sums_numba(order, starts, counts, data, flags, weights, c, nco):
    n, _, npol = data.shape
    nout = len(starts)
    seg = np.empty(n, np.int64)
    seg[order] = np.repeat(np.arange(nout), counts)
    shape = (nout, nco, npol)
    sw, swa = np.zeros(shape), np.zeros(shape)
    swd, swda = np.zeros(shape, np.complex128), np.zeros(shape, np.complex128)
    ngood = np.zeros(shape, np.int64)
    _accumulate(seg, data, ~flags, weights.astype(np.float32), c, sw, swd, swa, swda, ngood)
    anygood = ngood > 0
    return np.where(anygood, sw, swa), np.where(anygood, swd, swda), anygood


def _sums_numpy(data, flags, order, w, starts, counts, c, nco):
    """The same sums as ``_accumulate``, with numpy arrays (no numba)."""
    nout = len(starts)

    def rsum(x):
        return np.add.reduceat(x, starts, axis=0)

    def csum(x):
        return x[:, :nco * c].reshape(x.shape[0], nco, c, *x.shape[2:]).sum(axis=2)

    d = data[order]
    good = ~flags[order]
    # channel bins first (a reshape), then the rows of each output row
    we = good * w[:, None, :]  # float32, rows × chan × pol: weights of unflagged samples
    sw = rsum(csum(we))  # nout × nco × npol
    swd = rsum(csum(we * d))
    del we
    anygood = rsum(csum(good)) > 0
    flag_out = ~anygood
    wsum, dsum = sw, swd
    need = flag_out.any(axis=(1, 2))
    if need.any():  # cells with every sample flagged: mean of all their samples, still flagged
        seg = np.repeat(np.arange(nout), counts)
        sel = need[seg]
        sseg = seg[sel]
        sub = np.flatnonzero(np.r_[True, sseg[1:] != sseg[:-1]])
        ws_sel = w[sel]
        swa = c * np.add.reduceat(ws_sel, sub, axis=0)[:, None, :]  # every channel of a bin: c samples
        x = ws_sel[:, None, :] * d[sel]
        swda = np.add.reduceat(csum(x), sub, axis=0)
        del x
        wsum, dsum = sw.copy(), swd.copy()
        ag = anygood[need]
        wsum[need] = np.where(ag, sw[need], swa)
        dsum[need] = np.where(ag, swd[need], swda)
    return wsum, dsum, anygood


def average(time, bins, a1, a2, data, flags, weights, uvw, interval, exposure, chanbin: int) -> dict:
    """Average one chunk of rows. ``time`` (s), ``bins`` (time bin of each row), ``a1``/``a2``,
    ``uvw`` (rows × 3), ``interval``, ``exposure``: per row; ``data``/``flags`` (rows × chan × pol),
    ``weights`` (rows × pol: 1/SIGMA²). Returns the output columns (rows in bin, ANTENNA1, ANTENNA2
    order), numpy layout (rows first)."""
    n, nchan, npol = data.shape
    c = max(int(chanbin), 1)
    nco = nchan // c
    key = (bins.astype(np.int64) << 42) | (a1.astype(np.int64) << 21) | a2.astype(np.int64)
    order = np.lexsort((time, key))
    ks = key[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    nout = len(starts)

    def rsum(x):  # sum over each output row's input rows (x in sorted order)
        return np.add.reduceat(x, starts, axis=0)

    counts = np.diff(np.r_[starts, n])
    w = weights[order].astype(np.float32)
    if numba is not None:
        wsum, dsum, anygood = _sums_numba(order, starts, counts, data, flags, weights, c, nco)
    else:
        wsum, dsum, anygood = _sums_numpy(data, flags, order, w, starts, counts, c, nco)
    flag_out = ~anygood
    with np.errstate(invalid="ignore", divide="ignore"):
        vis = np.where(wsum > 0, dsum / np.where(wsum > 0, wsum, 1.0), 0.0).astype(np.complex64)
        ws = wsum.astype(np.float32)
        ss = np.where(ws > 0, 1.0 / np.sqrt(ws), 0.0).astype(np.float32)
    # WEIGHT, SIGMA: means over unflagged channels per polarisation (all channels when all are flagged)
    use = anygood | ~anygood.any(axis=1, keepdims=True)
    nuse = use.sum(axis=1)
    weight = (np.where(use, ws, 0).sum(axis=1) / np.maximum(nuse, 1)).astype(np.float32)
    if c > 1:
        sigma = (np.where(use, ss, 0).sum(axis=1) / np.maximum(nuse, 1)).astype(np.float32)
    else:  # time averaging only: SIGMA = WEIGHT^-½
        sigma = np.where(weight > 0, 1.0 / np.sqrt(np.where(weight > 0, weight, 1.0)), 0.0).astype(np.float32)
    # rows: those with any unflagged cell count; a bin of flagged rows counts them all
    t = time[order]
    iv = interval[order]
    ex = exposure[order]
    u = uvw[order]
    rowgood = ~flags.reshape(n, -1).all(axis=1)[order]
    ngood = rsum(rowgood.astype(np.int64))
    plain = np.repeat(ngood == 0, counts)
    counted = rowgood | plain
    rw = np.where(counted, w.astype(np.float64).sum(axis=1), 0.0)
    rw = np.where(plain, 1.0, rw)
    srw = rsum(rw)
    tc = rsum(rw * t) / srw
    uvw_out = rsum(rw[:, None] * u) / srw[:, None]
    exposure_out = rsum(np.where(counted, ex, 0.0))
    first = t[starts] - iv[starts] / 2
    idx = np.arange(n)
    last_idx = np.maximum.reduceat(np.where(counted, idx, -1), starts)
    end = t[last_idx] + iv[last_idx] / 2
    return {"TIME": first + (end - first) / 2, "TIME_CENTROID": tc, "INTERVAL": end - first,
            "EXPOSURE": exposure_out, "UVW": uvw_out, "ANTENNA1": a1[order][starts], "ANTENNA2": a2[order][starts],
            "DATA": vis, "FLAG": flag_out, "WEIGHT_SPECTRUM": ws, "SIGMA_SPECTRUM": ss, "WEIGHT": weight,
            "SIGMA": sigma, "nrows": nout, "first_row": order[starts]}
