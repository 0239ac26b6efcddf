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

    def csum(x):  # sum over each channel bin (axis 1)
        return x[:, :nco * c].reshape(x.shape[0], nco, c, *x.shape[2:]).sum(axis=2)

    d = data[order]
    good = ~flags[order]
    w = weights[order].astype(np.float32)
    we = good * w[:, None, :]  # float32, rows × chan × pol
    sw = csum(rsum(we))  # nout × nco × npol
    swd = csum(rsum(we * d))
    del we
    anygood = csum(rsum(good.astype(np.int32))) > 0
    flag_out = ~anygood
    wsum, dsum = sw, swd
    if flag_out.any():  # cells with every sample flagged: mean of all samples, still flagged
        wb = np.broadcast_to(w[:, None, :], d.shape)
        wsum = np.where(anygood, sw, csum(rsum(np.ascontiguousarray(wb))))
        dsum = np.where(anygood, swd, csum(rsum(wb * d)))
        del wb
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
    rowgood = good.reshape(n, -1).any(axis=1)
    ngood = rsum(rowgood.astype(np.int64))
    counted = rowgood | np.repeat(ngood == 0, np.diff(np.r_[starts, n]))
    rw = np.where(counted, w.astype(np.float64).sum(axis=1), 0.0)
    plain = np.repeat(ngood == 0, np.diff(np.r_[starts, n]))
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
