"""Mistakes operators make, through the CLI: paths checked before anything runs (one line naming the
config key, exit 2), queries that never create a catalogue, empty session directories listed, and
an OS error that cannot go away failing once, counted in units."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from conftest import put_real_nested

EXE = [sys.executable, "-m", "atarchive"]


def _cli(conf, *args, check=None):
    p = subprocess.run([*EXE, "--config", str(conf), *args], capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def _conf(tmp_path, storage="storage", work="work", catalogue="cat.db", extra="", make_work=True):
    conf = tmp_path / "atarchive.toml"
    if make_work and work == "work" and not (tmp_path / work).exists():
        (tmp_path / work).mkdir()
    conf.write_text(f'storage_roots = ["{storage}"]\nwork_root = "{work}"\ncatalogue = "{catalogue}"\n'
                    "[scan]\nstable_seconds = 0\n" + extra)
    return conf


@pytest.mark.parametrize("cmd", [("scan",), ("run",), ("daemon", "--max-seconds", "1")])
@pytest.mark.parametrize("problem,key", [("work root is a file", "work_root"),
                                         ("work root missing", "work_root"),
                                         ("storage root missing", "storage_roots[0]"),
                                         ("catalogue directory missing", "catalogue")])
def test_paths_checked_before_anything_runs(tmp_path, cmd, problem, key):
    (tmp_path / "storage").mkdir()
    kw = {}
    if problem == "work root is a file":
        (tmp_path / "work").write_text("not a directory")
    elif problem == "work root missing":
        kw["make_work"] = False
    elif problem == "storage root missing":
        kw["storage"] = "nowhere"
    else:
        kw["catalogue"] = "no-such-dir/cat.db"
    conf = _conf(tmp_path, **kw)
    r = _cli(conf, *cmd, check=2)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"config error: {key}: "), r.stderr
    assert not (tmp_path / "cat.db").exists() and not (tmp_path / "no-such-dir").exists()
    if problem == "work root missing":  # never created behind the operator's back; the line says how
        assert not (tmp_path / "work").exists() and f"mkdir -p {tmp_path / 'work'}" in lines[0], lines


@pytest.mark.parametrize("query", [("status",), ("status", "--json"), ("show", "x"), ("explain", "x"),
                                   ("fluxes",), ("report", "--list"), ("run", "--dry-run"),
                                   ("reprocess", "x")])
def test_queries_never_create_a_catalogue(tmp_path, query):
    conf = _conf(tmp_path, catalogue="db/cat.db", make_work=False)
    r = _cli(conf, *query, check=2)
    assert r.stderr.strip() == (f"config error: no catalogue at {tmp_path / 'db' / 'cat.db'} (config key "
                                "catalogue): run `atarchive scan` first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atarchive.toml"]  # nothing created


def test_scan_names_empty_session_directories_and_a_missing_root(tmp_path):
    put_real_nested(tmp_path / "storage")
    empty = tmp_path / "storage" / "projects" / "p001" / "2024-12-13-09:00:00"
    (empty / "LoA.C0352").mkdir(parents=True)
    conf = _conf(tmp_path)
    rep = json.loads(_cli(conf, "scan", "--json", check=0).stdout)
    assert rep["empty_sessions"] == [str(empty)] and rep["sessions_new"] == ["p001/2024-12-12-17:29:25"]
    r = _cli(conf, "scan", check=0)
    assert f"session directory has no uvh5 files: {empty}" in r.stderr
    # the daemon keeps scanning when a root disappears: the warning says what is wrong
    from atarchive.catalogue import Catalogue
    from atarchive.config import load
    from atarchive.scanner.discover import Indexer

    cfg = load(conf)
    with Catalogue(cfg.catalogue) as cat:
        rep = Indexer(cat, cfg).scan([tmp_path / "gone"])
    assert rep.warnings == [f"storage root does not exist or is not a directory: {tmp_path / 'gone'}"]


def test_an_os_error_that_cannot_go_away_fails_once_counted_in_units(tmp_path):
    """The project's work directory is a file: NotADirectoryError. Not retried although three
    attempts are allowed; the summary counts the units; the error is one line with its log path."""
    put_real_nested(tmp_path / "storage")
    conf = _conf(tmp_path, extra="[execution]\nmax_attempts = 3\nretry_backoff_s = 0\n")
    _cli(conf, "scan", check=0)
    (tmp_path / "work" / "p001").write_text("a file where the project's directory goes")
    r = _cli(conf, "run", "--json", check=1)
    out = json.loads(r.stdout)
    c = sqlite3.connect(tmp_path / "cat.db")
    runs = c.execute("SELECT step, unit, status, temporary, error FROM step_runs ORDER BY id").fetchall()
    (err,) = c.execute("SELECT error FROM sessions").fetchone()
    units = {(s, u) for s, u, *_ in runs}
    assert len(runs) == len(units) and all(st == "failed" and t == 0 for _, _, st, t, _ in runs), runs
    assert len(out["failed"]) == len(units) and out["ran"] == []
    assert err in {e for *_, e in runs} and "\n" not in err and len(err) <= 300
    assert err.startswith("compress ") and "NotADirectoryError" in err and err.endswith(".log)"), err
    again = _cli(conf, "run", check=0)  # nothing retried: the session stays failed, and run says so
    assert again.stdout.startswith("nothing to run: 1 session(s) failed") and "Traceback" not in again.stderr


def test_no_empty_tmp_directories_left_after_success(tmp_path):
    put_real_nested(tmp_path / "storage")
    conf = _conf(tmp_path)
    _cli(conf, "scan", check=0)
    _cli(conf, "run", "--until", "compress", check=0)
    (sdir,) = (tmp_path / "work" / "p001").iterdir()
    assert (sdir / "ms").is_dir() and not (sdir / "tmp").exists()
    # (ms/fullres/ may stay, empty once compress removed the full-resolution MS: a copy of a new scan
    # of the session can be writing into it at that moment)
    assert [d for d in (tmp_path / "work").rglob("*") if d.is_dir() and not any(d.iterdir())
            and d.name != "fullres"] == []


def test_json_log_events_and_progress_on_stderr(tmp_path):
    """--log-format json (or the config key): one JSON object per line, the event keys always, no rich
    markup; with --json the summary alone is on stdout and the progress (units done / total per step)
    on stderr."""
    from datetime import datetime

    put_real_nested(tmp_path / "storage")
    put_real_nested(tmp_path / "storage", project="p002", session="2024-12-13-01:00:00")
    conf = _conf(tmp_path)
    _cli(conf, "scan", check=0)
    r = _cli(conf, "--log-format", "json", "run", "--until", "compress", "--json", check=0)
    assert [u["step"] for u in json.loads(r.stdout)["ran"]] == ["compress", "compress"]
    events = [json.loads(line) for line in r.stderr.splitlines()]
    keys = ["ts", "level", "event", "session", "step", "unit", "duration_s", "log_path"]
    assert events and all(list(e)[:8] == keys for e in events), events
    assert "[green]" not in r.stderr and "[/" not in r.stderr
    done = [e for e in events if e["event"] == "unit_done"]
    assert [(e["done"], e["total"]) for e in done] == [(1, 2), (2, 2)]
    for e in done:
        assert datetime.fromisoformat(e["ts"]).utcoffset().total_seconds() == 0
        assert e["duration_s"] > 0 and e["log_path"].endswith(".log") and e["level"] == "info"
        assert (tmp_path / e["log_path"]).is_file()
    # the config key alone, and text progress lines on stderr when --json
    (tmp_path / "atarchive.toml").write_text(conf.read_text().replace('catalogue = "cat.db"',
                                                                      'catalogue = "cat.db"\nlog_format = "json"'))
    _cli(conf, "reprocess", "p001/2024-12-12-17:29:25", "--from", "compress", check=0)
    r = _cli(conf, "run", "--until", "compress", check=0)
    assert [json.loads(line)["event"] for line in r.stderr.splitlines()] == ["unit_started", "unit_done"]
    conf.write_text(conf.read_text().replace('log_format = "json"', 'log_format = "text"'))
    _cli(conf, "reprocess", "p001/2024-12-12-17:29:25", "--from", "compress", check=0)
    r = _cli(conf, "run", "--until", "compress", "--json", check=0)
    assert json.loads(r.stdout)["failed"] == []
    assert "done p001/2024-12-12-17:29:25 compress " in r.stderr and " · compress 1/1" in r.stderr, r.stderr
