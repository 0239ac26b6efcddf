"""Daemon: real processes, bounded in time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import put_real_nested

EXE = [sys.executable, "-m", "atarchive"]


@pytest.fixture
def conf(tmp_path):
    p = tmp_path / "atarchive.toml"
    (tmp_path / "storage" / "projects").mkdir(parents=True)
    p.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                 "[scan]\nstable_seconds = 1\nsession_idle_seconds = 1\npoll_seconds = 1\n"
                 "[daemon]\nheartbeat_seconds = 0.5\nmin_free_gb = 0\ngrace_seconds = 5\n")
    return p


def start(conf, *extra):
    return subprocess.Popen([*EXE, "--config", str(conf), *extra, "daemon"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def status(conf):
    r = subprocess.run([*EXE, "--config", str(conf), "status", "--json"], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
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
