"""The dask.distributed executor (a LocalCluster of two worker processes) gives the products the
thread executor gives: the session reaches done, fluxes match the simulator's truth, and every unit's
fingerprint is the one planning expects."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from atarchive.simulate import preset, simulate
from conftest import assert_fluxes_match_truth

pytestmark = pytest.mark.casa
pytest.importorskip("distributed")
EXE = [sys.executable, "-m", "atarchive"]
TINY = "ptiny/2025-03-15-10:40:00"


def _cli(conf, *args):
    p = subprocess.run([*EXE, "--config", str(conf), *args], capture_output=True, text=True, timeout=600,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (args, p.stdout[-2000:], p.stderr[-2000:])
    return p.stdout


def test_dask_local_cluster_runs_the_chain(tmp_path):
    truth = json.loads(simulate(preset("tiny"), tmp_path / "storage").truth_path.read_text())
    conf = tmp_path / "atarchive.toml"
    conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n[steps.compress]\nchanbin = 2\n[steps.image]\nmax_imsize = 256\n"
                    '[execution]\nexecutor = "dask"\nworkers = 2\n')
    _cli(conf, "scan")
    out = json.loads(_cli(conf, "run", "--json"))
    assert out["failed"] == [] and len(out["ran"]) == 30
    st = json.loads(_cli(conf, "status", "--json"))
    assert st["sessions"][0]["state"] == "done"
    ex = json.loads(_cli(conf, "explain", TINY, "--json"))
    assert all(s["status"] == "up to date" for s in ex["steps"])
    assert_fluxes_match_truth(json.loads(_cli(conf, "fluxes", TINY, "--json")), truth)
