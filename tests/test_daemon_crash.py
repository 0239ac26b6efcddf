"""kill -9 of the daemon at random points of a whole session's processing, then a restart: the result
is what an uninterrupted run gives, and the catalogue is intact. Real CASA, real processes."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import assert_fluxes_match_truth, atarchive_ok, tree_checksums

pytestmark = pytest.mark.casa
EXE = [sys.executable, "-m", "atarchive"]
TINY = "ptiny/2025-03-15-10:40:00"


def _rows(db, sql, params=()):
    c = sqlite3.connect(db, timeout=30)
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute(sql, params)]
    finally:
        c.close()


def _daemon(conf):
    return subprocess.Popen([*EXE, "--config", str(conf), "daemon"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def test_kill_9_at_five_random_points_then_restart_gives_the_uninterrupted_result(tmp_path, tiny_reference):
    storage = tiny_reference["storage"]  # the same source files as the uninterrupted reference run
    truth = tiny_reference["truth"]
    before = tree_checksums(storage)
    conf = tmp_path / "atarchive.toml"
    conf.write_text(f'storage_roots = ["{storage}"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\nsession_idle_seconds = 0\npoll_seconds = 1\n"
                    "[steps.compress]\nchanbin = 2\nkeep_averaged = false\n[steps.image]\nmax_imsize = 256\n"
                    "[daemon]\nheartbeat_seconds = 0.5\nmin_free_gb = 0\ngrace_seconds = 5\n")
    (conf.parent / "work").mkdir(exist_ok=True)
    db = tmp_path / "cat.db"
    rng = random.Random(20261125)
    killed_during = []
    for _ in range(5):
        d = _daemon(conf)
        time.sleep(rng.uniform(4.0, 14.0))
        if db.exists():
            killed_during += [f"{r['step']} {r['unit']}".strip()
                              for r in _rows(db, "SELECT step, unit FROM step_runs WHERE status = 'running'")]
        os.kill(d.pid, signal.SIGKILL)  # its CASA children die with it (PR_SET_PDEATHSIG)
        d.wait(timeout=30)
    d = _daemon(conf)
    try:
        t0 = time.time()
        while time.time() - t0 < 400:
            st = json.loads(atarchive_ok(conf, "status", "--json", timeout=300))
            states = {s["key"]: s["state"] for s in st["sessions"]}
            if states.get(TINY) in ("done", "failed"):
                break
            time.sleep(2)
        # the daemon refreshes the archive's site after a QA page: it lists the session, linking its page
        index = tmp_path / "work" / "site" / "index.html"
        while time.time() - t0 < 460 and not (index.exists() and TINY in index.read_text()):
            time.sleep(1)
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=120)
    assert states.get(TINY) == "done", (states, st)
    assert killed_during, "no kill landed while a step was running"
    assert _rows(db, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    # nothing half-done: no run left 'running', no temporary product, and every unit up to date —
    # its last done run has exactly the fingerprint the uninterrupted reference run recorded
    assert _rows(db, "SELECT id FROM step_runs WHERE status = 'running'") == []
    assert not list((tmp_path / "work").rglob("*.tmp-*"))
    ex = json.loads(atarchive_ok(conf, "explain", TINY, "--json", timeout=300))
    assert all(s["status"] == "up to date" for s in ex["steps"]), ex

    def done(path):
        return {(r["step"], r["unit"]): r["fingerprint"] for r in _rows(
            path, "SELECT step, unit, fingerprint FROM step_runs WHERE status = 'done' ORDER BY id")}

    assert tiny_reference["run"]["failed"] == []
    assert done(db) == done(tiny_reference["db"])
    # products right: fluxes and positions against the simulator's truth, as for an uninterrupted run
    assert_fluxes_match_truth(json.loads(atarchive_ok(conf, "fluxes", TINY, "--json", timeout=300)), truth)
    # retention: full-resolution MSs deleted after compress, averaged ones once concat.ms holds them;
    # only the dropped first flux-calibrator scan's averaged MSs are left
    work = tmp_path / "work"
    assert not list(work.rglob("ms/fullres/*.ms"))
    first = {s["stem"] for s in truth["scans"] if s["first_fluxcal_scan"]}
    assert {p.name.rsplit("_Lo", 1)[0] for p in work.rglob("ms/avg/*.ms")} <= first
    html = index.read_text()
    assert TINY in html and "index.html'>QA page" in html, html[:2000]
    assert tree_checksums(storage) == before
