"""Daemon: real processes, bounded in time."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REAL_FILES, REAL_STEM, put_real_nested, tree_checksums

EXE = [sys.executable, "-m", "atarchive"]


@pytest.fixture
def conf(tmp_path):
    p = tmp_path / "atarchive.toml"
    (tmp_path / "storage" / "projects").mkdir(parents=True)
    p.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                 "[scan]\nstable_seconds = 1\nsession_idle_seconds = 1\npoll_seconds = 1\n"
                 "[daemon]\nheartbeat_seconds = 0.5\nmin_free_gb = 0\ngrace_seconds = 5\n")
    (p.parent / "work").mkdir(exist_ok=True)
    return p


def start(conf, *extra):
    return subprocess.Popen([*EXE, "--config", str(conf), *extra, "daemon"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def status(conf):
    """`status --json`; before the daemon has made the catalogue (status never makes one), empty."""
    r = subprocess.run([*EXE, "--config", str(conf), "status", "--json"], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    if r.returncode == 2 and r.stderr.startswith("config error: no catalogue at "):
        return {"sessions": [], "daemon": None}
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_for(pred, timeout=60.0, every=0.3):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError("condition not met in time")


def test_two_daemons_exactly_one_runs(conf):
    a, b = start(conf), start(conf)
    try:
        # exactly one exits at once with a message naming the holder
        done = wait_for(lambda: [p for p in (a, b) if p.poll() is not None], timeout=60)
        assert len(done) == 1
        loser = done[0]
        winner = b if loser is a else a
        err = loser.stderr.read()
        assert loser.returncode == 1 and "another atarchive daemon" in err and f"PID {winner.pid}" in err
        st = wait_for(lambda: (s := status(conf))["daemon"] and s["daemon"]["alive"] and s)
        assert st["daemon"]["pid"] == winner.pid
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in (a, b):
            p.wait(timeout=60)
    assert winner.returncode == 0
    st = status(conf)
    assert st["daemon"]["alive"] is False and st["daemon"]["stopped"] is not None


def test_daemon_indexes_new_session_by_polling_and_stops_on_sigterm(conf, tmp_path):
    d = start(conf)
    try:
        wait_for(lambda: (s := status(conf))["daemon"] and s["daemon"]["alive"])
        put_real_nested(tmp_path / "storage")
        st = wait_for(lambda: (s := status(conf))["sessions"] and s["sessions"][0]["ingest_state"] == "ready" and s,
                      timeout=60)
        assert st["sessions"][0]["key"] == "p001/2024-12-12-17:29:25"
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=60)
    assert d.returncode == 0


def _catalogue_rows(conf, sql, params=()):
    import sqlite3

    c = sqlite3.connect(conf.parent / "cat.db", timeout=30)
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute(sql, params)]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        c.close()


def _write_in_chunks(src: Path, dst: Path, chunks: int = 4, pause: float = 0.75, watch=None) -> None:
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as fh:
        for i in range(chunks):
            fh.write(data[i * len(data) // chunks:(i + 1) * len(data) // chunks])
            fh.flush()
            time.sleep(pause)
            if watch:
                watch(dst)


def _bad_sessions(projects: Path) -> dict[str, str]:
    """Sessions with broken input beside the good one; key → what its error must say."""
    def scan_dir(project, session, stem=REAL_STEM, sb=352):
        d = projects / project / session / stem / f"LoA.C{sb:04d}"
        d.mkdir(parents=True)
        return d / f"{stem}.uvh5"

    scan_dir("p002", "2024-12-13-01:00:00").write_bytes(b"")
    scan_dir("p003", "2024-12-13-02:00:00").write_bytes(REAL_FILES[352].read_bytes()[:100_000])
    import h5py

    with h5py.File(scan_dir("p004", "2024-12-13-03:00:00"), "w") as h:
        h["something"] = [1, 2, 3]
    # a second scan that never gets its second subband: the session waits, it is not processed
    for sb in (352, 544):
        shutil.copy(REAL_FILES[sb], scan_dir("p005", "2024-12-13-04:00:00", sb=sb))
    shutil.copy(REAL_FILES[352], scan_dir("p005", "2024-12-13-04:00:00", stem="uvh5_60647_63965_9760407_3c286_0001"))
    return {"p002/2024-12-13-01:00:00": "empty file", "p003/2024-12-13-02:00:00": "truncated",
            "p004/2024-12-13-03:00:00": "not uvh5", "p005/2024-12-13-04:00:00": "incomplete"}


def test_daemon_waits_for_growing_files_bad_input_fails_alone_new_scan_reopens(tmp_path):
    """A session written in chunks is not read until stable, then processed by itself (without waiting
    for the 30 s rescan), once; broken sessions beside it fail with their message and stop nothing; a
    name with spaces, quotes and a semicolon is processed like any other; a later scan re-opens it."""
    conf = tmp_path / "atarchive.toml"
    projects = tmp_path / "storage" / "projects"
    projects.mkdir(parents=True)
    conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 2\nsession_idle_seconds = 1\npoll_seconds = 30\n"
                    "[daemon]\nheartbeat_seconds = 0.5\nmin_free_gb = 0\ngrace_seconds = 5\n")
    (conf.parent / "work").mkdir(exist_ok=True)
    expect_bad = _bad_sessions(projects)
    odd_stem = "uvh5_60647_62965_9760406_3c 286';echo x_0001"
    put_real_nested(tmp_path / "storage", project="p006", session="2024-12-14-00:00:00", stem=odd_stem)
    d = start(conf)
    seen = []
    good = "p001/2024-12-12-17:29:25"

    def copies(key):
        return _catalogue_rows(conf, "SELECT r.unit, r.status FROM step_runs r JOIN sessions s ON s.id = r.session_id "
                                     "WHERE s.key = ? AND r.step = 'compress'", [key])

    try:
        wait_for(lambda: (s := status(conf))["daemon"] and s["daemon"]["alive"])
        sdir = projects / "p001" / "2024-12-12-17:29:25"
        for sb, src in REAL_FILES.items():
            _write_in_chunks(src, sdir / REAL_STEM / f"LoA.C{sb:04d}" / f"{REAL_STEM}.uvh5",
                             watch=lambda p: seen.extend(_catalogue_rows(
                                 conf, "SELECT path, status, error FROM files WHERE path = ?", [str(p)])))
        written = time.time()

        def ready():
            rows = {s["key"]: s for s in status(conf)["sessions"]}
            return good in rows and rows[good]["ingest_state"] == "ready" and rows

        rows = wait_for(ready, timeout=25)
        assert time.time() - written < 2 + 8  # stable time + a re-check, not the 30 s rescan
        for key, word in expect_bad.items():
            if word == "incomplete":
                assert rows[key]["state"] == "incomplete" and rows[key]["scans_complete"] == 1, rows[key]
            else:
                assert rows[key]["state"] == "failed" and word in rows[key]["error"], rows[key]
        # processing started by itself, for the good session and the oddly named one
        wait_for(lambda: any(r["status"] == "done" for r in copies(good)), timeout=120, every=1.0)
        wait_for(lambda: any(r["status"] == "done" for r in copies("p006/2024-12-14-00:00:00")), timeout=120,
                 every=1.0)
        # a later scan re-opens the session: it is copied, and the first one is not copied again
        new_stem = "uvh5_60647_63565_9760407_3c286_0001"
        put_real_nested(tmp_path / "storage", stem=new_stem)
        before = tree_checksums(tmp_path / "storage")
        wait_for(lambda: any(r["status"] == "done" and r["unit"].startswith(new_stem) for r in copies(good)),
                 timeout=120, every=1.0)
        assert [r["status"] for r in copies(good) if r["unit"].startswith(REAL_STEM)] == ["done"]
        assert d.poll() is None  # still running
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=60)
    assert d.returncode == 0
    # while a file grew it was seen (watchdog events) but never read: not ready, no truncated-file error
    assert seen and all(r["status"] == "growing" and r["error"] is None for r in seen)
    assert not _catalogue_rows(conf, "SELECT 1 FROM step_runs r JOIN sessions s ON s.id = r.session_id "
                                     "WHERE s.key IN (?, ?, ?, ?)", list(expect_bad))
    assert tree_checksums(tmp_path / "storage") == before  # the daemon only ever read the sources


def test_low_disk_pauses_new_work(conf, tmp_path):
    conf.write_text(conf.read_text().replace("min_free_gb = 0", "min_free_gb = 1000000"))
    put_real_nested(tmp_path / "storage")
    d = start(conf)
    try:
        st = wait_for(lambda: (s := status(conf))["daemon"] and "paused" in (s["daemon"]["activity"] or "") and s,
                      timeout=60)
        assert "free" in st["daemon"]["activity"]
        # indexing goes on, processing does not start: still paused, and nothing run, in heartbeats
        # written two seconds after the session became eligible (ready, idle for session_idle_seconds)
        wait_for(lambda: status(conf)["sessions"][0]["ingest_state"] == "ready", timeout=30)
        (row,) = _catalogue_rows(conf, "SELECT last_change FROM sessions")
        eligible_at = row["last_change"] + 1  # session_idle_seconds = 1
        wait_for(lambda: (d := status(conf)["daemon"])["heartbeat"] > eligible_at + 2 and "paused" in d["activity"],
                 timeout=60)
        assert _catalogue_rows(conf, "SELECT 1 FROM step_runs") == []
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=60)
    assert d.returncode == 0


def test_sigterm_during_casa_step_then_restart_completes(conf, tmp_path):
    conf.write_text(conf.read_text().replace("grace_seconds = 5", "grace_seconds = 1"))
    put_real_nested(tmp_path / "storage")
    d = start(conf)
    try:
        rows = wait_for(lambda: _catalogue_rows(conf, "SELECT * FROM step_runs WHERE status = 'running' "
                                                      "AND worker_pid IS NOT NULL"), timeout=120, every=0.2)
        t0 = time.time()
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=60)
        stop_s = time.time() - t0
    finally:
        if d.poll() is None:
            d.kill()
    assert d.returncode == 0 and stop_s < 1 + 15, stop_s
    stopped = _catalogue_rows(conf, "SELECT status FROM step_runs WHERE id = ?", [rows[0]["id"]])[0]
    assert stopped["status"] in ("interrupted", "done")  # never left 'running', never half-done
    d = start(conf)
    try:
        # the restart goes on: every compress (one pass), concat and fix unit done (the real sample then
        # fails calibrate with a clear permanent error: one normalised integration)
        wait_for(lambda: _catalogue_rows(conf, "SELECT 1 FROM step_runs WHERE step = 'fix' AND status = 'done'"),
                 timeout=240, every=1.0)
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=60)
    assert not list((tmp_path / "work").rglob("*.tmp-*"))
    running = _catalogue_rows(conf, "SELECT * FROM step_runs WHERE status = 'running'")
    assert running == []


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict:
    """GET /metrics over HTTP: {(name, labels...): value}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    return {(smp.name, *sorted(smp.labels.items())): smp.value
            for fam in text_string_to_metric_families(text) for smp in fam.samples}


def test_metrics_served_over_http(conf, tmp_path):
    """`daemon --metrics-port`: a real HTTP request to 127.0.0.1 while it works on two sessions, one
    whose visibilities are corrupt (its conversion, in compress's one pass, fails)."""
    from test_failures import _corrupt_visibilities

    put_real_nested(tmp_path / "storage")
    bad = put_real_nested(tmp_path / "storage", project="p002", session="2024-12-13-01:00:00")
    for f in bad.rglob("*.uvh5"):
        _corrupt_visibilities(f)
    port = _free_port()
    d = subprocess.Popen([*EXE, "--config", str(conf), "--log-format", "json", "daemon", "--metrics-port", str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        def ready():
            try:
                m = _scrape(port)
            except OSError:
                return None
            return m if m.get(("atarchive_units_failed_total", ("step", "compress"))) == 1 and \
                m.get(("atarchive_units_run_total", ("step", "compress")), 0) >= 2 else None

        m = wait_for(ready, timeout=240, every=1.0)
        # units run and failed by step, their durations, sessions by state
        n_copy = m[("atarchive_units_run_total", ("step", "compress"))]
        assert m[("atarchive_step_duration_seconds_count", ("step", "compress"))] == n_copy
        assert m[("atarchive_step_duration_seconds_sum", ("step", "compress"))] > 0
        assert m[("atarchive_sessions", ("state", "failed"))] == 1
        assert sum(v for k, v in m.items() if k[0] == "atarchive_sessions") == 2
        # the last scan, the heartbeat, the free space on the work root
        assert time.time() - 60 < m[("atarchive_last_scan_timestamp_seconds",)] <= time.time()
        assert 0 < m[("atarchive_last_scan_duration_seconds",)] < 30
        assert 0 <= m[("atarchive_heartbeat_age_seconds",)] < 5
        free = shutil.disk_usage(tmp_path / "work").free
        assert abs(m[("atarchive_work_root_free_bytes",)] - free) < 0.05 * free
    finally:
        d.send_signal(signal.SIGTERM)
        out, err = d.communicate(timeout=120)
    assert d.returncode == 0, err[-2000:]
    # --log-format json: every line on stderr is one JSON object with the event keys
    events = [json.loads(line) for line in err.splitlines()]
    keys = {"ts", "level", "event", "session", "step", "unit", "duration_s", "log_path"}
    assert all(keys <= set(e) for e in events) and "[green]" not in err
    failed = [e for e in events if e["event"] == "unit_failed"]
    assert failed and failed[0]["step"] == "compress" and failed[0]["log_path"].endswith(".log")
    assert failed[0]["ts"].endswith("+00:00") and failed[0]["level"] == "error"
    assert any(e["event"] == "message" and e["msg"].startswith("metrics: http://127.0.0.1:") for e in events)
    with pytest.raises(OSError):  # the port is closed with the daemon
        _scrape(port)
