"""Write a scan-LO's Measurement Set straight from its uvh5 subband files.

The main table is filled column by column from chunked reads (``h5chunks``) of each subband,
placed side by side in frequency, with the same values pyuvdata's ``write_ms`` puts there
(conjugated data, CASA polarisation order, negated uvw, median weights); the subtables are written
by pyuvdata's own writers from the metadata-only object. Compared with reading a UVData per
subband, concatenating it and calling ``write_ms``, no array is copied more than once, and memory
holds one chunk of rows. tests/test_convert_direct.py checks every column against ``write_ms``.

Used for data already phased to a sidereal centre with one phase centre and time-ordered rows (what
the ATA writes); anything else goes through pyuvdata (``convert``). Baselines stored both ways
round (the ATA does) are conjugated to ant1 < ant2 as ``write_ms`` does.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import PermanentStepError

_TYPES = {"visdata": "c", "flags": "b", "nsamples": "f"}  # what the direct path reads (else pyuvdata)
PARALLEL_HANDS = [-5, -6, -1, -2, 1]  # xx, yy, rr, ll, I: autocorrelations of these are made real


def nsamples_garbage(lo, hi) -> bool:
    """From the smallest and largest nsample: the ATA correlator's nsamples can be garbage (≤ 0, NaN,
    inf), and then every sample is unit weight. NaN propagates into min/max and counts as garbage."""
    return not (lo > 0 and np.isfinite(hi))


def suitable(meta, files: list[str]) -> bool:
    """Can this (metadata-only, merged, renumbered) scan-LO be written directly?"""
    cat = meta.phase_center_catalog
    if not (len(cat) == 1 and next(iter(cat.values()))["cat_type"] == "sidereal" and meta.Nspws == 1
            and bool(np.all(np.diff(meta.time_array) >= 0))):
        return False
    import h5py

    try:  # e.g. correlator integers stored as a compound type: pyuvdata knows how to read those
        for f in files:
            with h5py.File(f, "r") as h:
                if any(h["Data"][k].dtype.kind != kind for k, kind in _TYPES.items()):
                    return False
    except (OSError, KeyError):
        return False
    return True


def _row_chunks(time_array: np.ndarray, times_per_chunk: int | None) -> list[tuple[int, int]]:
    n = len(time_array)
    if not times_per_chunk or times_per_chunk <= 0:
        return [(0, n)]
    starts = np.flatnonzero(np.r_[True, time_array[1:] != time_array[:-1]])  # first row of each time
    edges = list(starts[::times_per_chunk]) + [n]
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


class Reader:
    """The rows of a scan-LO as they go into its MS: (merged, renumbered) metadata ``meta`` of
    ``files_by_freq`` (in that frequency order). ``chunks`` yields row ranges with their data, flags
    and nsamples already in MS conventions (conjugated, CASA polarisation order, baselines turned to
    ant1 < ant2, real parallel-hand autocorrelations). Turns ``meta``'s baselines in place."""

    def __init__(self, meta, files_by_freq: list[str]):
        from pyuvdata import utils

        self.meta, self.files = meta, files_by_freq
        self.pol_order = np.asarray(utils.pol.determine_pol_order(meta.polarization_array, order="CASA"))
        self.inv_order = np.argsort(self.pol_order)
        casa_pols = meta.polarization_array[self.pol_order]
        self.same = np.isin(casa_pols, PARALLEL_HANDS)
        if meta.scan_number_array is None:
            meta._set_scan_numbers()
        # write_ms turns baselines to ant1 < ant2 when both orders occur: the same rows here. Data are read
        # straight into CASA polarisation order; a turned row takes its conjugate polarisations (q).
        self.flip = np.zeros(meta.Nblts, bool)
        self.q = None
        if np.any(meta.ant_1_array < meta.ant_2_array) and np.any(meta.ant_1_array > meta.ant_2_array):
            self.flip = meta.ant_1_array > meta.ant_2_array
            conj_perm = np.argsort(utils.pol.reorder_conj_pols(meta.polarization_array))
            self.q = self.inv_order[conj_perm[self.pol_order]]
            meta.conjugate_bls("ant1<ant2")  # metadata only: uvw, antennas, baselines
        self.autos = meta.ant_1_array == meta.ant_2_array

    def chunks(self, ranges: list[tuple[int, int]]):
        """Yield (a, b, data, flags, nsamples) for each row range [a, b): complex64, bool and float32
        arrays (rows × channels × polarisations)."""
        import h5py

        from .h5chunks import read_rows

        meta = self.meta
        handles = [h5py.File(f, "r") for f in self.files]
        try:
            edges = np.r_[0, np.cumsum([h["Header/Nfreqs"][()] for h in handles])]
            for a, b in ranges:
                shape = (b - a, meta.Nfreqs, meta.Npols)
                data, flags, ns = np.empty(shape, np.complex64), np.empty(shape, bool), np.empty(shape, np.float32)
                for f, h, c0, c1 in zip(self.files, handles, edges[:-1], edges[1:]):
                    try:
                        for name, arr in (("visdata", data), ("flags", flags), ("nsamples", ns)):
                            read_rows(h["Data"][name], a, b, out=arr[:, c0:c1], pols=self.pol_order)
                    except (OSError, KeyError, ValueError) as err:  # e.g. a file cut short after its header
                        raise PermanentStepError(f"{f}: cannot read uvh5 data: {str(err).splitlines()[0]}") from None
                np.conjugate(data, out=data)  # MS convention (flip_conj)
                f = self.flip[a:b]
                if f.any():
                    q = self.q
                    data[f] = np.conjugate(data[f])[:, :, q]
                    flags[f] = flags[f][:, :, q]
                    ns[f] = ns[f][:, :, q]
                auto = self.autos[a:b]
                if np.any(auto):
                    sel = data[auto]
                    sel[..., self.same] = np.abs(sel[..., self.same])
                    data[auto] = sel
                yield a, b, data, flags, ns
                del data, flags, ns
        finally:
            for h in handles:
                h.close()

    def row_weights(self, ns: np.ndarray) -> np.ndarray:
        """WEIGHT of these rows as ``write_ms`` sets it (median nsample over channels, per polarisation
        in file order), from nsamples in CASA order; the caller handles garbage nsamples."""
        lo, hi = ns.min(), ns.max()
        med = np.full((ns.shape[0], ns.shape[2]), lo) if lo == hi else np.median(ns, axis=1)
        return med[:, self.inv_order]


def write(meta, files_by_freq: list[str], out_ms: str, *, times_per_chunk: int | None = None) -> int:
    """Write ``out_ms`` for ``meta`` (merged metadata of ``files_by_freq``, in that frequency order,
    antennas renumbered). Returns the number of row chunks."""
    from pyuvdata.utils.io import ms as ms_utils

    rd = Reader(meta, files_by_freq)
    ms = ms_utils.init_ms_file(out_ms)
    try:
        ms.addrows(meta.Nblts)
        garbage = False
        weights = np.empty((meta.Nblts, meta.Npols))
        chunks = _row_chunks(meta.time_array, times_per_chunk)
        for a, b, data, flags, ns in rd.chunks(chunks):
            garbage = garbage or nsamples_garbage(ns.min(), ns.max())
            ms.putcol("DATA", data, a, b - a)
            ms.putcol("FLAG", flags, a, b - a)
            if not garbage:
                weights[a:b] = rd.row_weights(ns)
                ms.putcol("WEIGHT_SPECTRUM", ns, a, b - a)
        if garbage:  # every row unit weight, as the pyuvdata path sets it
            weights[:] = 1.0
            ones = np.ones((min(meta.Nblts, 4096), meta.Nfreqs, meta.Npols), np.float32)
            for a in range(0, meta.Nblts, len(ones)):
                n = min(len(ones), meta.Nblts - a)
                ms.putcol("WEIGHT_SPECTRUM", ones[:n], a, n)
        mjd_s = mjd_seconds(meta.time_array)
        ms.putcolkeyword("DATA", "QuantumUnits", meta.vis_units)
        ms.putcol("WEIGHT", weights)
        ms.putcol("SIGMA", np.power(weights, -0.5, where=(weights != 0), out=None))
        ms.putcol("ANTENNA1", meta.ant_1_array)
        ms.putcol("ANTENNA2", meta.ant_2_array)
        ms.putcol("INTERVAL", meta.integration_time)
        ms.putcol("EXPOSURE", meta.integration_time)
        ms.putcol("DATA_DESC_ID", np.zeros(meta.Nblts))
        ms.putcol("SCAN_NUMBER", meta.scan_number_array)
        ms.putcol("TIME", mjd_s)
        ms.putcol("TIME_CENTROID", mjd_s)
        ms.putcol("UVW", -meta.uvw_array)
        ms.putcol("FIELD_ID", np.zeros(meta.Nblts, dtype=int))
        if meta.extra_keywords:
            ms.putkeyword("pyuvdata_extra", meta.extra_keywords)
        if meta.pol_convention is not None:
            ms.putkeyword("pyuvdata_polconv", meta.pol_convention)
        ms.putkeyword("pyuvdata_flip_conj", True)
    finally:
        ms.done()
    write_subtables(out_ms, meta, rd.pol_order)
    return len(chunks)


def mjd_seconds(jd: np.ndarray) -> np.ndarray:
    """The MS TIME of each row: MJD seconds (UTC) of its Julian date, as ``write_ms`` converts it."""
    from astropy.time import Time

    times, inv = np.unique(jd, return_inverse=True)
    return (Time(times, format="jd", scale="utc").mjd * 86400.0)[inv]


def write_subtables(out_ms: str, meta, pol_order) -> None:
    """The subtables, by pyuvdata's own writers from the metadata-only object."""
    from pyuvdata import utils
    from pyuvdata.utils.io import ms as ms_utils

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fn in (ms_utils.write_ms_antenna, ms_utils.write_ms_data_description, ms_utils.write_ms_feed,
                   ms_utils.write_ms_field, ms_utils.write_ms_history, ms_utils.write_ms_observation,
                   ms_utils.write_ms_pointing, ms_utils.write_ms_source, ms_utils.write_ms_spectral_window):
            fn(out_ms, uvobj=meta)
        ms_utils.write_ms_polarization(out_ms, pol_order=utils.tools.slicify(pol_order, allow_empty=True),
                                       uvobj=meta)
