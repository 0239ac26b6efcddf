"""The seed's stages, each run in its own process: ``python stages.py STAGE --work DIR [options]``.

copy      pyuvdata ``UVData.read`` of a scan-LO's subband files + ``write_ms`` (python-casacore; no CASA)
compress  flag each full-resolution MS (aoflagger's Python bindings if they import, else CASA flagdata
          tfcrop), average it with mstransform (20 s, 4 channels), delete the full-resolution MS
concat    every averaged MS into one, leaving out the first scan of the flux calibrator
fix       SCAN_NUMBER incremented each time the field changes
calibrate setjy (Perley-Butler 2017) → gaincal p (G0) → gaincal K (K0) → bandpass (B0) → gaincal ap
          (G1) → fluxscale → applycal per field → tfcrop + rflag on the corrected data → split of every
          field without autocorrelations (``<field>_noauto_1GC.ms``)
image     per field and spectral window: tclean dirty image; calibrators cleaned twice to 5 × rms;
          imfit around the peak

Nothing here imports atarchive: this is the frozen baseline that atarchive is measured against.
Each stage prints one JSON line (its result) as the last line of its stdout.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import shutil
import sys

import numpy as np

C = 299792458.0
# ATA site (Hat Creek), for astropy's site registry offline
ATA_LON_DEG, ATA_LAT_DEG, ATA_HEIGHT_M = -121.470733, 40.817431, 1019.222


# -- helpers -----------------------------------------------------------------------------------------
def _offline_astropy() -> None:
    """No downloads: astropy 8 fetches its sites registry (pyuvdata asks for it) and IERS tables."""
    from astropy.utils import iers
    from astropy.utils.data import conf as data_conf

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    data_conf.allow_internet = False
    import astropy.units as u
    from astropy.coordinates import EarthLocation
    from astropy.coordinates.sites import SiteRegistry

    reg = SiteRegistry()
    ata = EarthLocation.from_geodetic(ATA_LON_DEG * u.deg, ATA_LAT_DEG * u.deg, ATA_HEIGHT_M * u.m)
    ata.info.name = "Allen Telescope Array"
    reg.add_site(["ATA", "Allen Telescope Array", "HCRO", "hat creek"], ata)
    EarthLocation._site_registry = reg


def _casa(log: str):
    import casatasks
    import casatools

    casatasks.casalog.setlogfile(log)
    return casatools, casatasks


def _table(ct, path: str, readonly: bool = True):
    tb = ct.table()
    tb.open(path, nomodify=readonly)
    return tb


def _col(ct, path: str, name: str):
    tb = _table(ct, path)
    try:
        return tb.getcol(name)
    finally:
        tb.close()


def scan_los(storage: str) -> dict[tuple[str, str], list[str]]:
    """(stem, LO) → subband files, from the nested ATA layout ``<session>/<stem>/Lo<L>.C<cccc>/<stem>.uvh5``
    or the flat one ``ata.Lo<L>.C<cccc>.<stem>.uvh5``."""
    out: dict[tuple[str, str], list[str]] = {}
    for f in glob.glob(os.path.join(storage, "**", "*.uvh5"), recursive=True):
        parent = os.path.basename(os.path.dirname(f))
        m = re.match(r"^Lo([A-Z])\.C\d+$", parent)
        if m:
            key = (os.path.basename(f)[:-5], m.group(1))
        else:
            m = re.match(r"^ata\.Lo([A-Z])\.C\d+\.(.+)\.uvh5$", os.path.basename(f))
            if not m:
                continue
            key = (m.group(2), m.group(1))
        out.setdefault(key, []).append(f)
    return {k: sorted(v) for k, v in sorted(out.items())}


def _renumber(uv) -> None:
    """Keep only the antennas with data, numbered 0..N-1 (else write_ms leaves blank antenna rows)."""
    used = np.unique(np.concatenate([uv.ant_1_array, uv.ant_2_array]))
    tel = uv.telescope
    keep = np.isin(tel.antenna_numbers, used)
    old = tel.antenna_numbers[keep]
    order = np.argsort(old)
    lut = np.full(int(max(tel.antenna_numbers.max(), used.max())) + 1, -1)
    lut[old[order]] = np.arange(len(old))
    uv.ant_1_array = lut[uv.ant_1_array]
    uv.ant_2_array = lut[uv.ant_2_array]
    n_all = len(keep)
    for attr in ("antenna_names", "antenna_positions", "antenna_diameters", "mount_type", "feed_array",
                 "feed_angle"):
        v = getattr(tel, attr, None)
        if v is not None and len(v) == n_all:
            setattr(tel, attr, np.asarray(v)[keep][order])
    tel.antenna_numbers = np.arange(len(old))
    tel.Nants = len(old)
    uv.Nants_data = len(old)
    uv.baseline_array = uv.antnums_to_baseline(uv.ant_1_array, uv.ant_2_array)


# -- stages ------------------------------------------------------------------------------------------
def copy(work: str, storage: str, **_) -> dict:
    _offline_astropy()
    from pyuvdata import UVData

    out_dir = os.path.join(work, "fullres")
    os.makedirs(out_dir, exist_ok=True)
    made = []
    for (stem, lo), files in scan_los(storage).items():
        uv = UVData()
        uv.read(files, fix_old_proj=False)
        _renumber(uv)
        if any(v["cat_type"] == "unprojected" for v in uv.phase_center_catalog.values()):
            uv.phase_to_time(float(np.median(uv.time_array)))
        out = os.path.join(out_dir, re.sub(r"[^A-Za-z0-9+._-]", "_", f"{stem}_Lo{lo}") + ".ms")  # CASA: no spaces
        uv.write_ms(out, clobber=True)
        made.append(out)
        del uv
    if not made:
        raise SystemExit(f"no uvh5 files under {storage}")
    return {"ms": len(made)}


def _aoflag(ct, ms: str) -> None:
    """AOFlagger's generic strategy on every cross-correlation baseline (all polarisations, real and
    imaginary parts), whole baselines read and written at once."""
    import aoflagger

    af = aoflagger.AOFlagger()
    strategy = af.load_strategy_file(af.find_strategy_file(aoflagger.TelescopeId.Generic))
    tb = _table(ct, ms, readonly=False)
    try:
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        bl = a1.astype(np.int64) * 100000 + a2
        order = np.argsort(bl, kind="stable")
        edges = np.flatnonzero(np.r_[True, np.diff(bl[order]) != 0, True])
        for i0, i1 in zip(edges[:-1], edges[1:]):
            rows = order[i0:i1]
            if a1[rows[0]] == a2[rows[0]] or rows.size < 2:
                continue
            sub = tb.selectrows(rows.tolist())
            try:
                data = sub.getcol("DATA")  # (npol, nchan, ntime)
                flags = sub.getcol("FLAG")
                npol, nchan, ntime = data.shape
                if nchan < 2:
                    continue
                img = af.make_image_set(ntime, nchan, 2 * npol)
                for p in range(npol):
                    img.set_image_buffer(2 * p, np.ascontiguousarray(data[p].real, dtype=np.float32))
                    img.set_image_buffer(2 * p + 1, np.ascontiguousarray(data[p].imag, dtype=np.float32))
                mask = strategy.run(img).get_buffer().astype(bool)
                sub.putcol("FLAG", flags | mask[None, :, :])
            finally:
                sub.close()
    finally:
        tb.close()


def compress(work: str, log: str, flagger: str = "auto", timebin_s: float = 20.0, chanbin: int = 4, **_) -> dict:
    ct, tasks = _casa(log)
    used = flagger
    if flagger == "auto":
        try:
            import aoflagger  # noqa: F401

            used = "aoflagger"
        except ImportError:
            used = "tfcrop"
    out_dir = os.path.join(work, "averaged")
    os.makedirs(out_dir, exist_ok=True)
    mss = sorted(glob.glob(os.path.join(work, "fullres", "*.ms")))
    for ms in mss:
        if used == "aoflagger":
            _aoflag(ct, ms)
        else:
            tasks.flagdata(vis=ms, mode="tfcrop", datacolumn="data", flagbackup=False)
        tasks.mstransform(vis=ms, outputvis=os.path.join(out_dir, os.path.basename(ms)), datacolumn="data",
                          keepflags=True, timeaverage=True, timebin=f"{timebin_s}s", chanaverage=True,
                          chanbin=int(chanbin))
        shutil.rmtree(ms)
    return {"flagger": used, "ms": len(mss)}


def concat(work: str, log: str, flux_cal: str, **_) -> dict:
    ct, tasks = _casa(log)
    mss = sorted(glob.glob(os.path.join(work, "averaged", "*.ms")))
    info = [(float(_col(ct, m, "TIME").min()), str(_col(ct, m + "/FIELD", "NAME")[0]), m) for m in mss]
    info.sort()
    fc_starts = sorted({t for t, name, _ in info if name == flux_cal})
    drop = set(fc_starts[:-1])  # the seed keeps only the last flux-calibrator scan
    keep = [m for t, _, m in info if t not in drop]
    out = os.path.join(work, "concat.ms")
    tasks.concat(vis=keep, concatvis=out, timesort=True)
    return {"inputs": len(keep), "dropped": len(mss) - len(keep)}


def fix(work: str, log: str, **_) -> dict:
    ct, _ = _casa(log)
    tb = _table(ct, os.path.join(work, "concat.ms"), readonly=False)
    try:
        times, fields = tb.getcol("TIME"), tb.getcol("FIELD_ID")
        utimes, first, inv = np.unique(times, return_index=True, return_inverse=True)
        ufield = fields[first]
        scan = np.ones(len(utimes), dtype=np.int32)
        scan[1:] = 1 + np.cumsum(ufield[1:] != ufield[:-1])
        tb.putcol("SCAN_NUMBER", scan[inv].astype(np.int32))
        tb.flush()
    finally:
        tb.close()
    return {"scans": int(scan.max())}


def _central_refant(ct, vis: str) -> int:
    a1, a2 = _col(ct, vis, "ANTENNA1"), _col(ct, vis, "ANTENNA2")
    used = np.unique(np.r_[a1, a2])
    pos = _col(ct, vis + "/ANTENNA", "POSITION").T[used]
    return int(used[np.argmin(np.linalg.norm(pos - pos.mean(axis=0), axis=1))])


def calibrate(work: str, log: str, flux_cal: str, phase_cal: str, targets: list[str], **_) -> dict:
    ct, t = _casa(log)
    vis = os.path.join(work, "concat.ms")
    cal = os.path.join(work, "caltables")
    os.makedirs(cal, exist_ok=True)
    names = [str(n) for n in _col(ct, vis + "/FIELD", "NAME")]
    fid = {n: i for i, n in enumerate(names)}
    fc, pc = str(fid[flux_cal]), str(fid[phase_cal])
    refant = str(_central_refant(ct, vis))
    tab = {k: os.path.join(cal, k) for k in ("G0", "K0", "B0", "G1", "F")}
    t.setjy(vis=vis, field=fc, standard="Perley-Butler 2017", scalebychan=True, usescratch=True)
    t.gaincal(vis=vis, caltable=tab["G0"], field=fc, refant=refant, calmode="p", solint="int", gaintype="G")
    t.gaincal(vis=vis, caltable=tab["K0"], field=fc, refant=refant, gaintype="K", solint="inf", combine="scan",
              gaintable=[tab["G0"]])
    t.bandpass(vis=vis, caltable=tab["B0"], field=fc, refant=refant, solint="inf", combine="scan", bandtype="B",
               solnorm=True, gaintable=[tab["G0"], tab["K0"]])
    t.gaincal(vis=vis, caltable=tab["G1"], field=f"{fc},{pc}", refant=refant, calmode="ap", solint="inf",
              gaintype="G", gaintable=[tab["K0"], tab["B0"]])
    t.fluxscale(vis=vis, caltable=tab["G1"], fluxtable=tab["F"], reference=[fc], transfer=[pc])
    for f in (fc, pc):
        t.applycal(vis=vis, field=f, gaintable=[tab["K0"], tab["B0"], tab["F"]], gainfield=["", "", f],
                   interp=["", "nearest", "linear"], calwt=False, flagbackup=False)
    for name in targets:
        t.applycal(vis=vis, field=str(fid[name]), gaintable=[tab["K0"], tab["B0"], tab["F"]], gainfield=["", "", pc],
                   interp=["", "nearest", "linear"], calwt=False, flagbackup=False)
    t.flagdata(vis=vis, mode="tfcrop", datacolumn="corrected", flagbackup=False)
    t.flagdata(vis=vis, mode="rflag", datacolumn="corrected", flagbackup=False)
    split_dir = os.path.join(work, "split")
    os.makedirs(split_dir, exist_ok=True)
    for name in [flux_cal, phase_cal, *targets]:
        safe = re.sub(r"[^A-Za-z0-9+._-]", "_", name)
        t.split(vis=vis, outputvis=os.path.join(split_dir, f"{safe}_noauto_1GC.ms"), field=str(fid[name]),
                antenna="!*&&&", datacolumn="corrected")
    return {"refant": int(refant), "splits": len(targets) + 2}


def _rms(t, image: str) -> float:
    s = t.imstat(imagename=image)
    return float(s["medabsdevmed"][0] * 1.4826) or float(s["rms"][0])


def image(work: str, log: str, flux_cal: str, phase_cal: str, targets: list[str], imsize: int = 256,
          niter: int = 1000, **_) -> dict:
    ct, t = _casa(log)
    out_dir = os.path.join(work, "images")
    os.makedirs(out_dir, exist_ok=True)
    fits = []
    for name in [flux_cal, phase_cal, *targets]:
        safe = re.sub(r"[^A-Za-z0-9+._-]", "_", name)
        vis = os.path.join(work, "split", f"{safe}_noauto_1GC.ms")
        a1, a2 = _col(ct, vis, "ANTENNA1"), _col(ct, vis, "ANTENNA2")
        pos = _col(ct, vis + "/ANTENNA", "POSITION").T[np.unique(np.r_[a1, a2])]
        bmax = float(np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)).max())
        chan_freqs = [np.asarray(f) for f in _spw_freqs(ct, vis)]
        for spw, freqs in enumerate(chan_freqs):
            cell = C / float(freqs.max()) / bmax * 206265.0 / 8.0  # the seed's cell
            base = os.path.join(out_dir, f"{safe}_spw{spw}")
            common = dict(vis=vis, spw=str(spw), specmode="mfs", deconvolver="hogbom", imsize=[imsize, imsize],
                          cell=f"{cell:.3f}arcsec", weighting="briggs", robust=0.5, stokes="I")
            t.tclean(imagename=base + "_dirty", niter=0, **common)
            img = base + "_dirty.image"
            if name not in targets:  # calibrators: two clean rounds to 5 x rms (the seed's target: dirty only)
                rms = _rms(t, base + "_dirty.residual")
                for r in (1, 2):
                    t.tclean(imagename=f"{base}_iter{r}", niter=niter, threshold=f"{5 * rms}Jy", **common)
                    rms = _rms(t, f"{base}_iter{r}.residual")
                    img = f"{base}_iter{r}.image"
            st = t.imstat(imagename=img)
            x, y = int(st["maxpos"][0]), int(st["maxpos"][1])
            fit = t.imfit(imagename=img, box=f"{x - 6},{y - 6},{x + 6},{y + 6}")
            flux = err = None
            if fit and fit.get("converged", [False])[0]:
                comp = fit["results"]["component0"]
                flux, err = float(comp["flux"]["value"][0]), float(comp["flux"]["error"][0])
            fits.append({"field": name, "spw": spw, "freq_hz": float(freqs.mean()), "flux_jy": flux,
                         "flux_err_jy": err, "peak_jy": float(st["max"][0]), "image": os.path.basename(img)})
    return {"fits": fits}


def _spw_freqs(ct, vis: str) -> list:
    tb = _table(ct, vis + "/SPECTRAL_WINDOW")
    try:
        return [tb.getcell("CHAN_FREQ", i) for i in range(tb.nrows())]
    finally:
        tb.close()


STAGES = {"copy": copy, "compress": compress, "concat": concat, "fix": fix, "calibrate": calibrate, "image": image}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=list(STAGES))
    ap.add_argument("--args", required=True, help="JSON keyword arguments of the stage")
    a = ap.parse_args(argv)
    kw = json.loads(a.args)
    res = STAGES[a.stage](**kw)
    sys.stdout.flush()
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    rc = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(rc)  # casatools' teardown adds nothing to measure
