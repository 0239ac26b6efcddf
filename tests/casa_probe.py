"""Helpers the tests run inside a CASA child process (read-only looks at products)."""

from __future__ import annotations

import os

import numpy as np


def ms_summary(ms: str) -> dict:
    from atarchive.casa._casa import table

    tb = table(ms)
    try:
        scans = tb.getcol("SCAN_NUMBER")
        fields = tb.getcol("FIELD_ID")
        times = tb.getcol("TIME")
        nrows = tb.nrows()
    finally:
        tb.close()
    fl = table(os.path.join(ms, "FIELD"))
    try:
        names = list(fl.getcol("NAME"))
    finally:
        fl.close()
    sw = table(os.path.join(ms, "SPECTRAL_WINDOW"))
    try:
        spws = [{"nchan": int(sw.getcell("NUM_CHAN", i)), "f0": float(np.min(sw.getcell("CHAN_FREQ", i))),
                 "f1": float(np.max(sw.getcell("CHAN_FREQ", i)))} for i in range(sw.nrows())]
    finally:
        sw.close()
    order = []
    for s in sorted(set(scans.tolist()), key=lambda s: times[scans == s].min()):
        fid = set(fields[scans == s].tolist())
        assert len(fid) == 1, f"scan {s} has several fields"
        order.append((int(s), names[fid.pop()]))
    return {"nrows": int(nrows), "scan_numbers": [s for s, _ in order], "scan_fields": [f for _, f in order],
            "spws": spws}


def ms_compare(a: str, b: str) -> dict:
    """Differences between two MSs: main-table columns (rows matched by time and baseline) and the
    subtables a conversion writes. Empty lists mean identical."""
    from atarchive.casa._casa import table

    def main(ms):
        tb = table(ms)
        try:
            cols = {c: tb.getcol(c) for c in ("TIME", "ANTENNA1", "ANTENNA2", "DATA_DESC_ID", "FIELD_ID", "UVW",
                                              "DATA", "FLAG", "WEIGHT", "SIGMA")}
        finally:
            tb.close()
        order = np.lexsort((cols["DATA_DESC_ID"], cols["ANTENNA2"], cols["ANTENNA1"], cols["TIME"]))
        return {k: v[..., order] for k, v in cols.items()}

    def sub(ms, name, cols):
        tb = table(os.path.join(ms, name))
        try:
            return {c: tb.getcol(c) for c in cols}
        finally:
            tb.close()

    ma, mb = main(a), main(b)
    diffs = []
    if ma["TIME"].shape != mb["TIME"].shape:
        return {"nrows": [int(ma["TIME"].size), int(mb["TIME"].size)], "diffs": ["row count"]}
    for k in ma:
        if not np.allclose(ma[k], mb[k], rtol=1e-6, atol=1e-6, equal_nan=True):
            diffs.append(k)
    for name, cols in (("ANTENNA", ("NAME", "POSITION")), ("SPECTRAL_WINDOW", ("CHAN_FREQ", "NUM_CHAN")),
                       ("FIELD", ("NAME", "PHASE_DIR")), ("OBSERVATION", ("TIME_RANGE",)),
                       ("POLARIZATION", ("CORR_TYPE",))):
        sa, sb = sub(a, name, cols), sub(b, name, cols)
        for c in cols:
            x, y = np.asarray(sa[c]), np.asarray(sb[c])
            same = x.shape == y.shape and (np.array_equal(x, y) if x.dtype.kind in "OUS" else np.allclose(x, y))
            if not same:
                diffs.append(f"{name}.{c}")
    return {"nrows": [int(ma["TIME"].size)] * 2, "ntimes": int(np.unique(ma["TIME"]).size), "diffs": diffs}


def ms_identical(a: str, b: str, skip: tuple[str, ...] = ("HISTORY.TIME",)) -> dict:
    """Every table of two MSs (main and subtables), every column and keyword, compared exactly
    (python-casacore). Returns the differences found; ``skip``: TABLE.COLUMN names not compared
    (HISTORY.TIME is the clock time of writing)."""
    from casacore import tables

    diffs, checked = [], 0

    def cmp(name: str, pa: str, pb: str) -> None:
        nonlocal checked
        with tables.table(pa, ack=False) as ta, tables.table(pb, ack=False) as tb:
            if ta.nrows() != tb.nrows() or sorted(ta.colnames()) != sorted(tb.colnames()):
                diffs.append(f"{name}: rows {ta.nrows()}/{tb.nrows()} columns {ta.colnames()}/{tb.colnames()}")
                return
            for c in ta.colnames():
                if f"{name}.{c}" in skip or ta.nrows() == 0:
                    continue
                if str(ta.getcolkeywords(c)) != str(tb.getcolkeywords(c)):
                    diffs.append(f"{name}.{c} keywords")
                try:
                    x, y = ta.getcol(c), tb.getcol(c)
                except RuntimeError:  # column with no values (e.g. FLAG_CATEGORY)
                    continue
                checked += 1
                if isinstance(x, dict) or isinstance(x, list):
                    same = x == y
                else:
                    x, y = np.asarray(x), np.asarray(y)
                    same = x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")
                if not same:
                    diffs.append(f"{name}.{c}")
            subs = {k: v for k, v in ta.getkeywords().items() if isinstance(v, str) and v.startswith("Table: ")}
            kw_a = {k: v for k, v in ta.getkeywords().items() if k not in subs}
            kw_b = {k: v for k, v in tb.getkeywords().items() if k not in subs}
            if str(kw_a) != str(kw_b):
                diffs.append(f"{name} keywords")
        for k in subs:
            cmp(k, os.path.join(pa, k), os.path.join(pb, k))

    cmp("MAIN", a, b)
    return {"diffs": diffs, "columns": checked}


def flag_in_parallel(paths: list[str], workers: int, rflag: bool = True) -> dict:
    """Flag MSs as the calibrate step flags its splits (this process + ``workers - 1`` helper children);
    per MS: flagged fraction of each channel and overall, and who flagged it."""
    from atarchive.casa import calchain as calibrate
    from atarchive.casa._casa import table

    helpers = calibrate.FlagHelpers(workers - 1, rflag)
    try:
        parts = calibrate.flag_splits(paths, rflag=rflag, helpers=helpers)
    finally:
        helpers.finish()
    out = {}
    for p in paths:
        tb = table(p)
        try:
            fl = tb.getcol("FLAG")  # (pol, chan, row)
        finally:
            tb.close()
        out[p] = {"per_chan": fl.mean(axis=(0, 2)).tolist(), "all": float(fl.mean()),
                  "here": p in parts[0]}
    return {"by_ms": out}


def inject_rfi(ms: str, chan: int, amp: float) -> int:
    """Put a strong narrow-band signal in one channel of every row (DATA): what tfcrop must catch."""
    from atarchive.casa._casa import table

    tb = table(ms, readonly=False)
    try:
        d = tb.getcol("DATA")
        d[:, chan, :] += amp
        tb.putcol("DATA", d)
        return int(tb.nrows())
    finally:
        tb.close()


def whoami(tag: str) -> dict:
    """Which process runs the call, where, and whether CASA was loaded before it began."""
    import sys

    loaded = "casatools" in sys.modules
    print(tag, flush=True)
    return {"pid": os.getpid(), "cwd": os.getcwd(), "casa_before_call": loaded}


def flagged_by_scan(ms: str) -> dict:
    """Flagged fraction of the cross-correlations of each scan number (FLAG column as it is now)."""
    from atarchive.casa._casa import table

    tb = table(ms)
    try:
        scan, a1, a2, fl = (tb.getcol(c) for c in ("SCAN_NUMBER", "ANTENNA1", "ANTENNA2", "FLAG"))
    finally:
        tb.close()
    per_row = fl.mean(axis=(0, 1))
    cross = a1 != a2
    return {"by_scan": {str(int(s)): float(per_row[cross & (scan == s)].mean()) for s in np.unique(scan[cross])}}


def casa_pb2017(ms: str, sources: dict, freqs_hz: list[float]) -> dict:
    """CASA's own Perley-Butler 2017 Stokes I flux density of each source at each frequency: a small MS
    made with casatools' simulator (one field per source, named as CASA's standard names it; one
    narrow one-channel spw per frequency), then ``setjy(standard='Perley-Butler 2017')``.
    ``sources``: name → [ra_deg, dec_deg]. Returns {"by_source": {name: [Jy per frequency]}}."""
    from atarchive.casa._casa import casa

    ct, tasks = casa()
    me, qa = ct.measures(), ct.quanta()
    sm = ct.simulator()
    sm.open(ms)
    try:
        # three antennas of a small E-W array (positions only matter for uvw)
        sm.setconfig(telescopename="VLA", x=[0.0, 100.0, 250.0], y=[0.0, 0.0, 0.0], z=[0.0, 0.0, 0.0],
                     dishdiameter=[6.1] * 3, mount=["alt-az"] * 3, antname=["a0", "a1", "a2"],
                     coordsystem="local", referencelocation=me.observatory("VLA"))
        sm.setfeed(mode="perfect X Y")
        for i, f in enumerate(freqs_hz):
            sm.setspwindow(spwname=f"spw{i}", freq=f"{f}Hz", deltafreq="1kHz", freqresolution="1kHz",
                           nchannels=1, stokes="XX YY")
        for name, (ra, dec) in sources.items():
            sm.setfield(sourcename=name, sourcedirection=me.direction("J2000", f"{ra}deg", f"{dec}deg"))
        sm.setlimits(shadowlimit=0.001, elevationlimit="-90deg")
        sm.setauto(autocorrwt=0.0)
        sm.settimes(integrationtime="10s", usehourangle=True, referencetime=me.epoch("utc", "2025/03/15/00:00:00"))
        t = 0
        for name in sources:
            for i in range(len(freqs_hz)):
                sm.observe(name, f"spw{i}", starttime=f"{t}s", stoptime=f"{t + 10}s")
                t += 10
    finally:
        sm.close()
    out = {}
    for fid, name in enumerate(sources):
        res = tasks.setjy(vis=ms, field=str(fid), standard="Perley-Butler 2017", usescratch=False)
        got = res[str(fid)]
        out[name] = [float(got[str(i)]["fluxd"][0]) for i in range(len(freqs_hz))]
    return {"by_source": out}


def caltable_refants(caldir: str) -> dict:
    """Reference antenna (ANTENNA2) names of the unflagged solutions of every caltable under ``caldir``
    that records one (ANTENNA2 column, not all -1): {"by_table": {table name: sorted names}}."""
    from atarchive.casa._casa import table

    out = {}
    for name in sorted(os.listdir(caldir)):
        path = os.path.join(caldir, name)
        if not os.path.isfile(os.path.join(path, "table.dat")):
            continue
        tb = table(path)
        try:
            if "ANTENNA2" not in tb.colnames() or tb.nrows() == 0:
                continue
            ant2, flag = tb.getcol("ANTENNA2"), tb.getcol("FLAG")
        finally:
            tb.close()
        names = list(table(os.path.join(path, "ANTENNA")).getcol("NAME"))
        good = ~flag.all(axis=(0, 1))
        if np.all(ant2[good] < 0):  # no reference recorded (delay solutions)
            continue
        out[name] = sorted({names[a] if a >= 0 else "none" for a in ant2[good]})
    return {"by_table": out}


def ms_times_by_scan(ms: str) -> dict:
    """Unique TIMEs (s) of each scan number and the field names of each scan."""
    from atarchive.casa._casa import table

    tb = table(ms)
    try:
        scans, times, fields = tb.getcol("SCAN_NUMBER"), tb.getcol("TIME"), tb.getcol("FIELD_ID")
    finally:
        tb.close()
    names = list(table(os.path.join(ms, "FIELD")).getcol("NAME"))
    return {"by_scan": {str(int(s)): {"times": np.unique(times[scans == s]).tolist(),
                          "fields": sorted({names[f] for f in fields[scans == s]})} for s in np.unique(scans)}}


def wsclean_model_column(ms: str, work: str, imsize: int, cell_arcsec: float) -> dict:
    """Self-calibration's model step with wsclean on a copy of ``ms``: ``masked_clean`` with
    ``savemodel``; the MODEL_DATA it leaves (mean Stokes I of unflagged data, per spectral window)."""
    import shutil

    from atarchive.casa._casa import casa, table
    from atarchive.casa.image import masked_clean

    _, t = casa()
    vis = os.path.join(work, "copy.ms")
    shutil.copytree(ms, vis)
    params = {"imager": "wsclean", "weighting": "briggs", "robust": 0.0, "niter": 5000}
    masked_clean(t, os.path.join(work, "m"), vis=vis, cell_arcsec=cell_arcsec, imsize=imsize, params=params,
                 mask=None, nsigma=3.0, savemodel=True)
    model_sum = float(t.imstat(imagename=os.path.join(work, "m.model"))["sum"][0])
    tb = table(vis)
    try:
        cols = tb.colnames()
        if "MODEL_DATA" not in cols:
            return {"columns": cols}
        model, flag, ddid = tb.getcol("MODEL_DATA"), tb.getcol("FLAG"), tb.getcol("DATA_DESC_ID")
    finally:
        tb.close()
    stokes_i = 0.5 * (model[0] + model[-1])  # XX, YY
    ok = ~(flag[0] | flag[-1])
    return {"columns": cols, "model_sum_jy": model_sum, "spw_mean_jy": {int(d): float(np.abs(stokes_i[:, ddid == d][ok[:, ddid == d]]).mean())
                                             for d in np.unique(ddid)}}


def rfi_flag_scores(ms: str, rfi: list[dict], lo: str) -> dict:
    """Flags of the cross-correlations of ``ms`` (one scan-LO at full resolution) against the RFI the
    simulator injected (its truth entries): cells (channel × row, any polarisation flagged) inside an
    RFI block, and clean cells. Cells within one integration of a block's start or end are neither."""
    from atarchive.casa._casa import table

    tb = table(ms)
    try:
        time, a1, a2, interval = (tb.getcol(c) for c in ("TIME", "ANTENNA1", "ANTENNA2", "INTERVAL"))
        flag = tb.getcol("FLAG").any(axis=0)  # (chan, row)
    finally:
        tb.close()
    sw = table(os.path.join(ms, "SPECTRAL_WINDOW"))
    try:
        freqs = np.asarray(sw.getcell("CHAN_FREQ", 0))
        width = float(np.abs(sw.getcell("CHAN_WIDTH", 0)).max())
    finally:
        sw.close()
    dt = float(interval.max())
    in_rfi = np.zeros(flag.shape, bool)
    unsure = np.zeros(flag.shape, bool)
    for r in rfi:
        if lo not in r["freq_hz"]:
            continue
        f0, f1 = r["freq_hz"][lo]
        chans = (freqs > f0 - width / 2) & (freqs < f1 + width / 2)
        t0, t1 = r["start_mjd"] * 86400.0, r["end_mjd"] * 86400.0
        inside = (time > t0 + dt) & (time < t1 - dt)
        near = (time > t0 - dt) & (time < t1 + dt) & ~inside
        in_rfi[np.ix_(chans, inside)] = True
        unsure[np.ix_(chans, near)] = True
    cross = np.broadcast_to(a1 != a2, flag.shape)
    rfi_cells = in_rfi & cross
    clean = ~in_rfi & ~unsure & cross
    return {"rfi_cells": int(rfi_cells.sum()), "rfi_flagged": int((flag & rfi_cells).sum()),
            "clean_cells": int(clean.sum()), "clean_flagged": int((flag & clean).sum())}


def flag_and_score(items: list[dict], flagger: str, rfi: list[dict], work: str) -> dict:
    """Compress a copy of each full-resolution MS (``items``: {ms, lo}) with ``flagger`` and score its
    flags against the injected RFI. Returns per MS: the flagger that ran and the scores."""
    import shutil

    from atarchive.casa.compress import compress

    out = {}
    for it in items:
        name = os.path.basename(it["ms"])
        copy = os.path.join(work, flagger, name)
        shutil.copytree(it["ms"], copy)
        res = compress(in_ms=copy, out_ms=copy + ".avg", timebin_s=20.0, chanbin=4, flagger=flagger)
        out[name] = {"flagger": res["flagger"], **rfi_flag_scores(copy, rfi, it["lo"])}
    return {"by_ms": out}


def plant_flags(ms: str, out: str) -> dict:
    """Copy ``ms`` to ``out`` with flags planted (a whole row, a channel block of one baseline for the
    whole scan, a baseline flagged throughout, one polarisation of one cell) and random SIGMA
    (python-casacore)."""
    import shutil

    from casacore import tables

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(ms, out)
    rng = np.random.default_rng(3)
    with tables.table(out, readonly=False, ack=False) as t:
        fl, tm, a1, a2 = t.getcol("FLAG"), t.getcol("TIME"), t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        ut = np.unique(tm)
        fl[(a1 == 0) & (a2 == 1) & (tm == ut[2])] = True
        fl[(a1 == 0) & (a2 == 2), 5:9, :] = True
        fl[(a1 == 1) & (a2 == 2)] = True
        fl[(a1 == 1) & (a2 == 3), 10, 0] = True
        t.putcol("FLAG", fl)
        t.putcol("SIGMA", 0.5 + rng.random(t.getcol("SIGMA").shape))
    return {"flagged": float(fl.mean())}


def mstransform_cases(src: str, work: str, cases: list[list]) -> dict:
    """CASA's mstransform of ``src`` for each (timebin_s, chanbin), as compress calls it (casatools)."""
    from atarchive.casa._casa import casa

    _, tasks = casa()
    for timebin, chanbin in cases:
        kw = {"timeaverage": True, "timebin": f"{timebin}s"} if timebin else {}
        if chanbin > 1:
            kw.update(chanaverage=True, chanbin=int(chanbin))
        tasks.mstransform(vis=src, outputvis=os.path.join(work, f"mst_{timebin}_{chanbin}.ms"), datacolumn="data",
                          keepflags=True, **kw)
    return {}


def compare_average(src: str, work: str, cases: list[list]) -> dict:
    """``atarchive.casa.average`` of ``src`` against mstransform's output for each case: the main-table
    columns and spectral-window values that differ beyond float tolerance (python-casacore)."""
    from casacore import tables

    from atarchive.casa import average

    with tables.table(src, ack=False) as t:
        cols = {c: t.getcol(c) for c in ("TIME", "ANTENNA1", "ANTENNA2", "DATA", "FLAG", "SIGMA", "UVW", "INTERVAL",
                                          "EXPOSURE")}
    with tables.table(os.path.join(src, "SPECTRAL_WINDOW"), ack=False) as sw:
        freqs, widths = sw.getcell("CHAN_FREQ", 0), sw.getcell("CHAN_WIDTH", 0)
    out = {}
    for timebin, chanbin in cases:
        t = cols["TIME"]
        ut = np.unique(t)
        bins = average.time_bins(ut, timebin, float(np.median(cols["INTERVAL"])))[np.searchsorted(ut, t)]
        mine = average.average(t, bins, cols["ANTENNA1"], cols["ANTENNA2"], cols["DATA"], cols["FLAG"],
                               1.0 / cols["SIGMA"].astype(np.float64) ** 2, cols["UVW"], cols["INTERVAL"],
                               cols["EXPOSURE"], chanbin)
        dst = os.path.join(work, f"mst_{timebin}_{chanbin}.ms")
        diffs = []
        with tables.table(dst, ack=False) as m:
            if m.nrows() != mine["nrows"]:
                out[f"{timebin}/{chanbin}"] = [f"rows {m.nrows()} vs {mine['nrows']}"]
                continue
            for c in ("TIME", "TIME_CENTROID", "INTERVAL", "EXPOSURE", "UVW", "ANTENNA1", "ANTENNA2", "DATA", "FLAG",
                      "WEIGHT_SPECTRUM", "SIGMA_SPECTRUM", "WEIGHT", "SIGMA"):
                x, y = m.getcol(c), mine[c]
                same = np.array_equal(x, y) if x.dtype.kind in "bi" else np.allclose(x, y, rtol=2e-6, atol=1e-5)
                if not same:
                    diffs.append(c)
        chan = average.channel_axis(freqs, widths, chanbin)
        with tables.table(os.path.join(dst, "SPECTRAL_WINDOW"), ack=False) as sw:
            for c in ("CHAN_FREQ", "CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION", "NUM_CHAN", "REF_FREQUENCY"):
                if not np.allclose(sw.getcell(c, 0), chan[c]):
                    diffs.append(f"SPECTRAL_WINDOW.{c}")
        out[f"{timebin}/{chanbin}"] = diffs
    return out


def averaged_flag_stats(a: str, b: str) -> dict:
    """FLAG of two averaged MSs of the same rows (same order): flagged fractions and cells that differ."""
    from casacore import tables

    with tables.table(a, ack=False) as ta, tables.table(b, ack=False) as tb:
        x, y = ta.getcol("FLAG"), tb.getcol("FLAG")
        dx, dy = ta.getcol("DATA"), tb.getcol("DATA")
        wx, wy = ta.getcol("WEIGHT_SPECTRUM"), tb.getcol("WEIGHT_SPECTRUM")
    same_samples = ~x & ~y & np.isclose(wx, wy, rtol=1e-6)  # unflagged, averaged over the same samples
    return {"flagged_a": float(x.mean()), "flagged_b": float(y.mean()), "differ": float((x != y).mean()),
            "other_samples": float((~same_samples).mean()),
            "data_close_where_same_samples": float(np.isclose(dx[same_samples], dy[same_samples], rtol=1e-5,
                                                              atol=1e-6).mean()) if same_samples.any() else 1.0}
