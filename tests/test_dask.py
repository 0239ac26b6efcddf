"""The dask.distributed executor (a LocalCluster of two worker processes) gives what a serial run
(one thread worker, `tiny_reference`) gives from the same source files: the session reaches done,
fluxes match the simulator's truth and the serial run's, and what the executor could get wrong is
the same — the catalogue's flux and product rows, the units run, the calibrated MS and the images."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from atarchive.execution.children import run_in_child
from conftest import REPO, assert_fluxes_match_truth, atarchive_ok

pytestmark = pytest.mark.casa
pytest.importorskip("distributed")
TINY = "ptiny/2025-03-15-10:40:00"


def _conf(path, storage, executor: str, workers: int):
    path.mkdir()
    conf = path / "atarchive.toml"
    conf.write_text(f'storage_roots = ["{storage}"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n[steps.compress]\nchanbin = 2\n[steps.image]\nmax_imsize = 256\n"
                    f'[execution]\nexecutor = "{executor}"\nworkers = {workers}\n')
    (conf.parent / "work").mkdir(exist_ok=True)
    return conf


def _rows(db, sql):
    with sqlite3.connect(db) as c:
        c.row_factory = sqlite3.Row
        return [dict(r) for r in c.execute(sql)]


def _done_fingerprints(db) -> dict:
    return {(r["step"], r["unit"]): r["fingerprint"] for r in _rows(
        db, "SELECT step, unit, fingerprint FROM step_runs WHERE status = 'done' ORDER BY id")}


def _products(db, work: Path) -> dict:
    """(step, unit, kind) → product path relative to the work root."""
    return {(r["step"], r["unit"], r["kind"]): str(Path(r["path"]).relative_to(work))
            for r in _rows(db, "SELECT step, unit, kind, path FROM products")}


def _fluxes(db) -> dict:
    return {(r["field"], r["lo"]): r for r in _rows(
        db, "SELECT field, role, lo, freq_hz, flux_jy, peak_jy, model_flux_jy, ra_deg, dec_deg, method "
            "FROM flux_measurements")}


def test_dask_local_cluster_gives_the_serial_result(tmp_path, tiny_reference):
    ref = tiny_reference
    assert ref["run"]["failed"] == []
    conf = _conf(tmp_path / "dask", ref["storage"], "dask", 2)
    atarchive_ok(conf, "scan")
    out = json.loads(atarchive_ok(conf, "run", "--json"))
    assert out["failed"] == []
    # the same units ran as in the serial run (tiny: 4 of 5 scans × 2 LOs converted, flagged and averaged
    # in one pass by compress (copy has no units then), concat, fix, calibrate, 3 fields × 2 LOs imaged,
    # the target's sources searched in 2 LOs, report)
    key = lambda r: (r["step"], r["unit"])  # noqa: E731
    assert sorted(map(key, out["ran"])) == sorted(map(key, ref["run"]["ran"])) and len(out["ran"]) == 20
    assert {r["step"] for r in out["ran"]} >= {"compress", "concat", "fix", "calibrate", "image", "report"}
    st = json.loads(atarchive_ok(conf, "status", "--json"))
    assert st["sessions"][0]["state"] == "done"
    ex = json.loads(atarchive_ok(conf, "explain", TINY, "--json"))
    assert all(s["status"] == "up to date" for s in ex["steps"])
    fluxes = json.loads(atarchive_ok(conf, "fluxes", TINY, "--json"))
    assert_fluxes_match_truth(fluxes, ref["truth"])

    db = conf.parent / "cat.db"
    assert _done_fingerprints(db) == _done_fingerprints(ref["db"])
    # catalogue rows: every product at the same place, every flux row the same
    assert _products(db, conf.parent / "work") == _products(ref["db"], ref["work"])
    got, want = _fluxes(db), _fluxes(ref["db"])
    assert set(got) == set(want) and len(want) == 6
    for k, w in want.items():
        g = got[k]
        assert {c: g[c] for c in ("role", "freq_hz", "model_flux_jy", "method")} == {
            c: w[c] for c in ("role", "freq_hz", "model_flux_jy", "method")}, k
        assert g["flux_jy"] == pytest.approx(w["flux_jy"], rel=1e-5) and g["peak_jy"] == pytest.approx(
            w["peak_jy"], rel=1e-5), k
    # the products themselves: the fixed MS identical, every image the same pixels
    fixed = sorted((conf.parent / "work").rglob("ms/fixed.ms")) + sorted(ref["work"].rglob("ms/fixed.ms"))
    assert len(fixed) == 2
    cmp = run_in_child("tests.casa_probe:ms_identical", {"a": str(fixed[0]), "b": str(fixed[1]),
                                                         "skip": ["HISTORY.TIME", "HISTORY.MESSAGE"]},
                       workdir=tmp_path / "probe", log_path=tmp_path / "probe.log",
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert cmp["diffs"] == [] and cmp["columns"] > 20, cmp
    from astropy.io import fits

    mine = sorted((conf.parent / "work").rglob("images/*/*/*.fits"))
    theirs = sorted(ref["work"].rglob("images/*/*/*.fits"))
    assert [p.relative_to(conf.parent / "work") for p in mine] == [p.relative_to(ref["work"]) for p in theirs]
    # 3 fields x 2 LOs: restored, residual and model FITS each, the target's also primary-beam corrected
    assert len([p for p in mine if not p.name.endswith((".residual.fits", ".model.fits", ".pbcor.fits"))]) == 6
    assert len(mine) == 6 * 3 + 2
    for a, b in zip(mine, theirs):
        da, db_ = fits.getdata(a), fits.getdata(b)
        assert da.shape == db_.shape and np.allclose(da, db_, rtol=1e-4, atol=1e-6, equal_nan=True), a.name
