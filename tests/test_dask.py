"""The dask.distributed executor (a LocalCluster of two worker processes) gives the products a serial
run (one thread worker) gives: the session reaches done, fluxes match the simulator's truth and the
serial run's, and every unit's recorded fingerprint is the serial run's."""

from __future__ import annotations

import json
import sqlite3

import pytest

from atarchive.simulate import preset, simulate
from conftest import assert_fluxes_match_truth, atarchive_ok

pytestmark = pytest.mark.casa
pytest.importorskip("distributed")
TINY = "ptiny/2025-03-15-10:40:00"


def _conf(path, storage, executor: str, workers: int):
    path.mkdir()
    conf = path / "atarchive.toml"
    conf.write_text(f'storage_roots = ["{storage}"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n[steps.compress]\nchanbin = 2\n[steps.image]\nmax_imsize = 256\n"
                    f'[execution]\nexecutor = "{executor}"\nworkers = {workers}\n')
    return conf


def _done_fingerprints(conf) -> dict:
    with sqlite3.connect(conf.parent / "cat.db") as c:
        return {(s, u): f for s, u, f in c.execute(
            "SELECT step, unit, fingerprint FROM step_runs WHERE status = 'done' ORDER BY id")}


def test_dask_local_cluster_runs_the_chain(tmp_path):
    truth = json.loads(simulate(preset("tiny"), tmp_path / "storage").truth_path.read_text())
    conf = _conf(tmp_path / "dask", tmp_path / "storage", "dask", 2)
    atarchive_ok(conf, "scan")
    out = json.loads(atarchive_ok(conf, "run", "--json"))
    # tiny: 4 of 5 scans × 2 LOs copied and compressed (the earlier flux-cal scan is dropped), concat, fix,
    # calibrate, 3 fields × 2 LOs imaged, report
    assert out["failed"] == [] and len(out["ran"]) == 26
    st = json.loads(atarchive_ok(conf, "status", "--json"))
    assert st["sessions"][0]["state"] == "done"
    ex = json.loads(atarchive_ok(conf, "explain", TINY, "--json"))
    assert all(s["status"] == "up to date" for s in ex["steps"])
    fluxes = json.loads(atarchive_ok(conf, "fluxes", TINY, "--json"))
    assert_fluxes_match_truth(fluxes, truth)

    serial = _conf(tmp_path / "serial", tmp_path / "storage", "threads", 1)
    atarchive_ok(serial, "scan")
    atarchive_ok(serial, "run")
    assert _done_fingerprints(serial) == _done_fingerprints(conf)
    ref = {(r["field"], r["lo"]): r["flux_jy"] for r in json.loads(atarchive_ok(serial, "fluxes", TINY, "--json"))}
    assert {(r["field"], r["lo"]): pytest.approx(r["flux_jy"], rel=1e-5) for r in fluxes} == ref
