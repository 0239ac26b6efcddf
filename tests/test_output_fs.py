"""The work root read-only or full: a temporary error, retried, and nothing lost once it is fixed.
Real tmpfs mounts (root only; skipped where mounting is not allowed)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import put_real_nested, tree_checksums

EXE = [sys.executable, "-m", "atarchive"]


@pytest.fixture
def work_mount(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(work)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield work
    subprocess.run(["umount", "-l", str(work)], capture_output=True)


def _runs(db):
    c = sqlite3.connect(db, timeout=30)
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute("SELECT step, unit, status, temporary, attempt, error FROM step_runs "
                                           "ORDER BY id")]
    except sqlite3.OperationalError:
        return []
    finally:
        c.close()


@pytest.mark.parametrize("problem", ["read-only", "full"])
def test_unwritable_work_root_is_a_temporary_error_then_recovers(tmp_path, work_mount, problem):
    storage = tmp_path / "storage"
    put_real_nested(storage)
    before = tree_checksums(storage)
    conf = tmp_path / "atarchive.toml"
    conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n[execution]\nmax_attempts = 4\nretry_backoff_s = 4\n")
    (conf.parent / "work").mkdir(exist_ok=True)
    subprocess.run([*EXE, "--config", str(conf), "scan"], check=True, capture_output=True, stdin=subprocess.DEVNULL)
    if problem == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", str(work_mount)], check=True)
    else:  # fill it: nothing but a few KB left
        subprocess.run(["mount", "-o", "remount,size=1m", str(work_mount)], check=True)
        (work_mount / "filler").write_bytes(b"\0" * (1024 * 1024 - 8192))
    run = subprocess.Popen([*EXE, "--config", str(conf), "run", "--until", "compress", "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while time.time() - t0 < 120 and not any(r["status"] == "failed" for r in _runs(tmp_path / "cat.db")):
            time.sleep(0.2)
        failed = [r for r in _runs(tmp_path / "cat.db") if r["status"] == "failed"]
        assert failed and all(r["temporary"] == 1 for r in failed), failed
        word = "Read-only file system" if problem == "read-only" else "No space left on device"
        assert any(word in (r["error"] or "") for r in failed), failed
        # the operator fixes the disk; the retry (after the backoff) goes through
        if problem == "read-only":
            subprocess.run(["mount", "-o", "remount,rw", str(work_mount)], check=True)
        else:
            (work_mount / "filler").unlink()
            subprocess.run(["mount", "-o", "remount,size=64m", str(work_mount)], check=True)
        out, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, (out[-2000:], err[-2000:])
    runs = _runs(tmp_path / "cat.db")
    assert [r["status"] for r in runs if r["step"] == "compress"][-1] == "done"
    # `run --json` says the failed attempts were made good by the retry, and nothing stays failed
    summary = json.loads(out)
    assert summary["failed"] == [] and [r["step"] for r in summary["ran"]] == ["compress"]
    n_failed = sum(r["status"] == "failed" for r in runs)
    assert [(r["step"], r["status"]) for r in summary["recovered"]] == [("compress", "failed")] * n_failed
    ms = list(work_mount.rglob("*.ms"))
    assert len(ms) == 1 and not list(work_mount.rglob("*.tmp-*"))
    st = json.loads(subprocess.run([*EXE, "--config", str(conf), "explain", "2024-12-12-17:29:25", "--json"],
                                   capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout)
    assert next(s for s in st["steps"] if s["step"] == "compress")["status"] == "up to date"
    assert tree_checksums(storage) == before
