"""Read rows of a uvh5 data set (visdata, flags, nsamples) chunk by chunk, fast.

HDF5 copies each chunk into the caller's array element by element when the chunk is thin along
the last axis (pyuvdata writes polarisation chunks of 1), and decompresses LZF through the same
slow path: reading a 30 MB subband took ~0.12 s for the data and ~0.35 s for the small flags and
nsamples arrays. Here the stored chunks are fetched raw (``read_direct_chunk``), LZF-decoded by a
numba kernel and placed with numpy slicing. Data sets with any other filter, type or layout are
read through h5py as before, so the result is always what ``dset[rows]`` gives.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a pyuvdata dependency; without it every read goes through h5py
    import numba
except ImportError:  # pragma: no cover
    numba = None

_LZF = 32000  # h5py's filter id for LZF


def _lzf_decode(src: np.ndarray, dst: np.ndarray) -> int:
    """liblzf's decompressor: literal runs (ctrl < 32) and back references. Returns bytes written,
    -1 on corrupt input."""
    ip = 0
    op = 0
    n_in = src.shape[0]
    n_out = dst.shape[0]
    while ip < n_in:
        ctrl = np.int64(src[ip])
        ip += 1
        if ctrl < 32:
            ctrl += 1
            if op + ctrl > n_out or ip + ctrl > n_in:
                return -1
            for k in range(ctrl):
                dst[op + k] = src[ip + k]
            ip += ctrl
            op += ctrl
        else:
            ln = ctrl >> 5
            ref = op - ((ctrl & 0x1F) << 8) - 1
            if ln == 7:
                if ip >= n_in:
                    return -1
                ln += np.int64(src[ip])
                ip += 1
            if ip >= n_in:
                return -1
            ref -= np.int64(src[ip])
            ip += 1
            ln += 2
            if ref < 0 or op + ln > n_out:
                return -1
            for k in range(ln):  # may overlap its own output: byte by byte, forwards
                dst[op + k] = dst[ref + k]
            op += ln
    return op


if numba is not None:
    _lzf_decode = numba.njit(cache=True, nogil=True)(_lzf_decode)


def _chunk_filter(dset) -> bool | None:
    """None: read through h5py. Else whether the stored chunks are LZF-compressed (the only filter
    decoded here)."""
    if numba is None or dset.chunks is None or dset.ndim != 3:
        return None
    if dset.dtype.kind not in "bfc" or dset.dtype.byteorder not in "=|<":
        return None
    plist = dset.id.get_create_plist()
    ids = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if len(ids) > 1 or any(i != _LZF for i in ids):
        return None
    return bool(ids)


def read_rows(dset, start: int, stop: int, out: np.ndarray | None = None, pols=None) -> np.ndarray:
    """``dset[start:stop][:, :, pols]`` of a 3-d chunked data set (rows × channels × polarisations),
    written into ``out`` when given (it may be a view, e.g. a channel range of a wider array)."""
    shape = dset.shape
    pols = np.arange(shape[2]) if pols is None else np.asarray(pols)
    if out is None:
        out = np.empty((stop - start, shape[1], len(pols)), dtype=dset.dtype)
    compressed = _chunk_filter(dset)
    if compressed is None:
        out[...] = dset[start:stop][:, :, pols]
        return out
    dtype = dset.dtype
    cr, cc, cp = dset.chunks
    chunk_bytes = cr * cc * cp * dtype.itemsize
    buf = np.empty(chunk_bytes, dtype=np.uint8)
    block_of_buf = buf.view(dtype).reshape(cr, cc, cp)
    read_chunk = dset.id.read_direct_chunk
    # for each stored polarisation chunk: (first stored pol, [(out index, offset in chunk)])
    pchunks = [(p0, [(j, int(p) - p0) for j, p in enumerate(pols) if p0 <= p < p0 + cp])
               for p0 in range(0, shape[2], cp)]
    for r0 in range((start // cr) * cr, stop, cr):
        lo, hi = max(start, r0), min(stop, r0 + cr)
        for c0 in range(0, shape[1], cc):
            c1 = min(shape[1], c0 + cc)
            for p0, targets in pchunks:
                if not targets:
                    continue
                mask, raw = read_chunk((r0, c0, p0))
                if compressed and not (mask & 1):
                    if _lzf_decode(np.frombuffer(raw, dtype=np.uint8), buf) != chunk_bytes:
                        out[...] = dset[start:stop][:, :, pols]  # not what we expect: let HDF5 do it
                        return out
                    block = block_of_buf
                elif len(raw) == chunk_bytes:
                    block = np.frombuffer(raw, dtype=dtype).reshape(cr, cc, cp)
                else:
                    out[...] = dset[start:stop][:, :, pols]
                    return out
                for j, k in targets:
                    out[lo - start:hi - start, c0:c1, j] = block[lo - r0:hi - r0, :c1 - c0, k]
    return out
