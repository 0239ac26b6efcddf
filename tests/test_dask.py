"""The dask.distributed executor (a LocalCluster of two worker processes) gives the products the
thread executor gives: the session reaches done, fluxes match the simulator's truth, and every unit's
fingerprint is the one planning expects."""

from __future__ import annotations

import json

import pytest

from atarchive.simulate import preset, simulate
from conftest import assert_fluxes_match_truth, atarchive_ok

pytestmark = pytest.mark.casa
pytest.importorskip("distributed")
TINY = "ptiny/2025-03-15-10:40:00"


def test_dask_local_cluster_runs_the_chain(tmp_path):
    truth = json.loads(simulate(preset("tiny"), tmp_path / "storage").truth_path.read_text())
    conf = tmp_path / "atarchive.toml"
    conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n[steps.compress]\nchanbin = 2\n[steps.image]\nmax_imsize = 256\n"
                    '[execution]\nexecutor = "dask"\nworkers = 2\n')
    atarchive_ok(conf, "scan")
    out = json.loads(atarchive_ok(conf, "run", "--json"))
    # tiny: 4 of 5 scans × 2 LOs copied and compressed (the earlier flux-cal scan is dropped), concat, fix,
    # calibrate, 3 fields × 2 LOs imaged, report
    assert out["failed"] == [] and len(out["ran"]) == 26
    st = json.loads(atarchive_ok(conf, "status", "--json"))
    assert st["sessions"][0]["state"] == "done"
    ex = json.loads(atarchive_ok(conf, "explain", TINY, "--json"))
    assert all(s["status"] == "up to date" for s in ex["steps"])
    assert_fluxes_match_truth(json.loads(atarchive_ok(conf, "fluxes", TINY, "--json")), truth)
