"""dask with a real scheduler and separate worker processes (`dask scheduler`, `dask worker` on
127.0.0.1, as on a cluster), not a LocalCluster: `tiny` reaches done through them with fluxes within
the simulator's bounds, and the workers run CASA units in warm CASA children (started ahead of need by
the worker plugin, as the thread executor's spares are) instead of starting a cold one per unit."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import assert_fluxes_match_truth, atarchive_ok

pytestmark = pytest.mark.casa
pytest.importorskip("distributed")
TINY = "ptiny/2025-03-15-10:40:00"
CASA_STEPS = ("compress", "concat", "calibrate", "image", "report")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def test_separate_dask_workers_reach_done_with_warm_casa_children(tmp_path, tiny_reference):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "dask.log", "w")
    procs = [_start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                     "--dashboard-address", ":0"], log)]
    try:
        for i in range(2):
            procs.append(_start(["distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
                                 "--host", "127.0.0.1", "--dashboard-address", ":0", "--name", f"w{i}"], log))
        conf = tmp_path / "atarchive.toml"
        conf.write_text(f'storage_roots = ["{tiny_reference["storage"]}"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                        "[scan]\nstable_seconds = 0\n[steps.compress]\nchanbin = 2\n[steps.image]\nmax_imsize = 256\n"
                        f'[execution]\nexecutor = "dask"\ndask_scheduler = "{address}"\n')
        (tmp_path / "work").mkdir()
        from distributed import Client

        t0 = time.time()
        while True:  # both workers registered with the scheduler
            try:
                with Client(address, timeout="5s") as c:
                    if len(c.scheduler_info()["workers"]) == 2:
                        break
            except OSError:
                pass
            assert time.time() - t0 < 120, (tmp_path / "dask.log").read_text()[-3000:]
            time.sleep(1)
        atarchive_ok(conf, "scan")
        out = json.loads(atarchive_ok(conf, "run", "--json", timeout=900))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
    assert out["failed"] == [] and len(out["ran"]) == len(tiny_reference["run"]["ran"])
    st = json.loads(atarchive_ok(conf, "status", "--json"))
    assert st["sessions"][0]["state"] == "done"
    assert_fluxes_match_truth(json.loads(atarchive_ok(conf, "fluxes", TINY, "--json")), tiny_reference["truth"])
    with sqlite3.connect(tmp_path / "cat.db") as c:
        rows = c.execute(f"SELECT step, result FROM step_runs WHERE status = 'done' AND step IN "
                         f"({','.join('?' * len(CASA_STEPS))})", CASA_STEPS).fetchall()
    warm = [s for s, r in rows if json.loads(r or "{}").get("_warm_child")]
    # every CASA unit after the first on each worker can find a spare loaded while the previous one ran
    assert len(warm) >= len(rows) // 2 and len(rows) >= 15, (len(warm), len(rows))
