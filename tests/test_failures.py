"""Failures end to end, through the CLI on the two real ATA files (the first step only, compress converting in one pass: seconds): a step that
fails permanently fails its session alone, once, with its error in `status --json`, and `run` exits 1;
a step over `execution.step_timeout_s` is killed and recorded; a run killed with -9 is cleaned up by
the next (`interrupted_cleaned`)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import h5py
import psutil
import pytest

from conftest import put_real_nested

pytestmark = pytest.mark.casa  # child processes convert the real files
EXE = [sys.executable, "-m", "atarchive"]
GOOD, BAD = "p001/2024-12-12-17:29:25", "p002/2024-12-13-01:00:00"


def _conf(tmp_path, extra: str = ""):
    conf = tmp_path / "atarchive.toml"
    conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n" + extra)
    (conf.parent / "work").mkdir(exist_ok=True)
    return conf


def _cli(conf, *args, timeout=300):
    return subprocess.run([*EXE, "--config", str(conf), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _rows(conf, sql, params=()):
    c = sqlite3.connect(conf.parent / "cat.db", timeout=30)
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute(sql, params)]
    finally:
        c.close()


def _runs(conf, key):
    return _rows(conf, "SELECT r.* FROM step_runs r JOIN sessions s ON s.id = r.session_id WHERE s.key = ? "
                       "ORDER BY r.id", [key])


def _corrupt_visibilities(f) -> None:
    """Headers intact and consistent (indexing succeeds), the visibilities unreadable: stored again
    gzip-compressed, then the compressed bytes overwritten."""
    with h5py.File(f, "r+") as h:
        data = h["Data/visdata"][()]
        del h["Data/visdata"]
        ds = h.create_dataset("Data/visdata", data=data, chunks=True, compression="gzip")
        where = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
    with open(f, "r+b") as fh:
        for c in where:
            fh.seek(c.byte_offset)
            fh.write(b"\xff" * c.size)


def test_permanent_failure_fails_its_session_once_and_others_go_on(tmp_path):
    put_real_nested(tmp_path / "storage")
    bad = put_real_nested(tmp_path / "storage", project="p002", session="2024-12-13-01:00:00")
    for f in bad.rglob("*.uvh5"):
        _corrupt_visibilities(f)
    conf = _conf(tmp_path, "[execution]\nmax_attempts = 3\nretry_backoff_s = 0\n")
    assert _cli(conf, "scan").returncode == 0
    p = _cli(conf, "run", "--until", "compress", "--json")
    assert p.returncode == 1, (p.stdout[-2000:], p.stderr[-2000:])
    out = json.loads(p.stdout)
    assert {"ran", "failed", "recovered", "interrupted_cleaned"} <= set(out)
    assert [(f["session"], f["step"]) for f in out["failed"]] == [(BAD, "compress")]
    assert out["failed"][0]["temporary"] is False and "cannot read uvh5" in out["failed"][0]["error"]
    assert out["recovered"] == [] and out["interrupted_cleaned"] == 0
    # the good session was copied in the same run
    assert [(r["session"], r["step"]) for r in out["ran"]] == [(GOOD, "compress")]
    st = {s["key"]: s for s in json.loads(_cli(conf, "status", "--json").stdout)["sessions"]}
    assert st[BAD]["state"] == "failed" and "cannot read uvh5" in st[BAD]["error"], st[BAD]
    assert st[GOOD]["state"] != "failed" and not st[GOOD]["error"]
    # permanent: tried once although three attempts are allowed; recorded as not temporary
    assert [(r["step"], r["status"], r["temporary"]) for r in _runs(conf, BAD)] == [("compress", "failed", 0)]
    assert [(r["step"], r["status"]) for r in _runs(conf, GOOD)] == [("compress", "done")]
    # the plain-text run says so too, and a further run does not retry it
    p2 = _cli(conf, "run", "--until", "compress")
    assert len(_runs(conf, BAD)) == 1 and p2.returncode in (0, 1)
    assert "cannot read uvh5" in _cli(conf, "status").stdout


def test_step_over_step_timeout_is_killed_and_recorded(tmp_path):
    put_real_nested(tmp_path / "storage")
    conf = _conf(tmp_path, "[execution]\nstep_timeout_s = 0.3\nmax_attempts = 2\nretry_backoff_s = 0\n")
    assert _cli(conf, "scan").returncode == 0
    t0 = time.time()
    p = _cli(conf, "run", "--until", "compress", "--json")
    assert p.returncode == 1, (p.stdout[-2000:], p.stderr[-2000:])
    assert time.time() - t0 < 60  # killed, not waited for
    runs = _runs(conf, GOOD)
    assert [(r["step"], r["status"], r["temporary"]) for r in runs] == [("compress", "failed", 1)] * 2
    assert all("timed out after" in r["error"] for r in runs), [r["error"] for r in runs]
    pids = [r["worker_pid"] for r in runs]
    assert all(pids) and not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                                 for pid in pids)
    assert not list((tmp_path / "work").rglob("*.tmp-*"))
    st = {s["key"]: s for s in json.loads(_cli(conf, "status", "--json").stdout)["sessions"]}
    assert st[GOOD]["state"] == "failed" and "timed out" in st[GOOD]["error"]


def test_run_killed_mid_step_is_cleaned_by_the_next_run(tmp_path):
    put_real_nested(tmp_path / "storage")
    conf = _conf(tmp_path)
    assert _cli(conf, "scan").returncode == 0
    proc = subprocess.Popen([*EXE, "--config", str(conf), "run", "--until", "compress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, running = time.time() + 120, []
        while not running and time.time() < deadline and proc.poll() is None:
            if (conf.parent / "cat.db").exists():
                running = _rows(conf, "SELECT id, status FROM step_runs WHERE status = 'running' "
                                      "AND worker_pid IS NOT NULL")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [r["status"] for r in running] == ["running"], "the conversion never started"
    out = json.loads(_cli(conf, "run", "--until", "compress", "--json").stdout)
    assert out["interrupted_cleaned"] == 1 and out["failed"] == []
    assert [r["status"] for r in _runs(conf, GOOD)] == ["interrupted", "done"]


def test_a_unit_is_recorded_done_only_once_its_products_are_in_place(tmp_path, monkeypatch):
    """Crash safety rests on this order: product renamed into place, then the run recorded done (a
    crash in between leaves a product that is not trusted, never a done run without its product).
    The reconciler runs in this process; at the moment the catalogue records a run done, its products
    must be at their final paths with no temporary sibling left."""
    from atarchive import config
    from atarchive.catalogue import Catalogue
    from atarchive.reconciler import Reconciler

    put_real_nested(tmp_path / "storage")
    conf = _conf(tmp_path)
    assert _cli(conf, "scan").returncode == 0
    seen = []
    finish_run = Catalogue.finish_run

    def checked(self, run_id, **fields):
        if fields.get("status") == "done":
            paths = [Path(r["path"]) for r in self.q("SELECT path FROM products WHERE run_id = ?", [run_id])]
            seen.append((run_id, [(str(p), p.exists(), [x.name for x in p.parent.glob(p.name + ".tmp-*")])
                                  for p in paths]))
        return finish_run(self, run_id, **fields)

    monkeypatch.setattr(Catalogue, "finish_run", checked)
    cfg = config.load(conf)
    cat = Catalogue(cfg.catalogue)
    try:
        Reconciler(cfg, cat).run([cat.session(GOOD)], until="compress")
    finally:
        cat.close()
    assert len(seen) == 1  # compress (one pass: copy has no units)
    for run_id, prods in seen:
        assert prods, f"run {run_id} recorded done with no product"
        assert all(exists and not tmps for _, exists, tmps in prods), prods
