"""The CLI as users script it: exit codes, one-line errors, JSON with stable keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, put_real_nested

EXE = [sys.executable, "-m", "atarchive"]


def cli(*args, cwd=None, env=None, check=None):
    e = {**os.environ, **(env or {})}
    e.pop("ATARCHIVE_CONFIG", None) if env is None or "ATARCHIVE_CONFIG" not in env else None
    p = subprocess.run([*EXE, *args], capture_output=True, text=True, cwd=cwd, env=e, timeout=300,
                       stdin=subprocess.DEVNULL)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture
def conf(tmp_path):
    p = tmp_path / "atarchive.toml"
    p.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                 "[scan]\nstable_seconds = 0\n")
    (p.parent / "work").mkdir(exist_ok=True)
    return p


def test_help_lists_the_contract_commands():
    out = cli("--help", check=0).stdout
    for cmd in ("scan", "run", "status", "show", "explain", "reprocess", "daemon", "simulate", "fluxes", "doctor",
                "report"):
        assert cmd in out


def test_bad_config_is_one_line_exit_2(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[steps.compress]\nchanbin = -1\n")
    r = cli("--config", str(p), "status", check=2)
    assert "steps.compress.chanbin" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_config_exit_2(tmp_path):
    r = cli("--config", str(tmp_path / "nope.toml"), "status", check=2)
    assert "config file not found" in r.stderr


def test_scan_status_show_json(tmp_path, conf):
    put_real_nested(tmp_path / "storage")
    r = json.loads(cli("--config", str(conf), "scan", "--json", check=0).stdout)
    assert r["headers_read"] == 2 and r["sessions_new"] == ["p001/2024-12-12-17:29:25"]
    st = json.loads(cli("--config", str(conf), "status", "--json", check=0).stdout)
    (row,) = st["sessions"]
    assert {"key", "project", "session", "scans", "fields", "los", "state", "steps", "error"} <= set(row)
    assert row["los"] == ["A"] and row["fields"] == ["3c286"] and row["scans"] == 1
    sh = json.loads(cli("--config", str(conf), "show", "2024-12-12-17:29:25", "--json", check=0).stdout)
    assert sh["los"][0]["nchan"] == 32 and sh["scans"][0]["los"] == ["A"]
    (f,) = sh["fields"]
    assert f["role"] == "flux_cal" and "3C286" in f["reason"]


def test_env_var_config_and_unknown_session(tmp_path, conf):
    (tmp_path / "storage").mkdir()
    cli("scan", env={"ATARCHIVE_CONFIG": str(conf)}, check=0)
    r = cli("show", "nope", env={"ATARCHIVE_CONFIG": str(conf)}, check=1)
    assert "no session 'nope'" in r.stderr and "Traceback" not in r.stderr


def test_status_plain_text_shows_error_of_broken_session(tmp_path, conf):
    sdir = put_real_nested(tmp_path / "storage")
    (sdir / "uvh5_60647_1_1_x_0001" / "LoA.C0352").mkdir(parents=True)
    (sdir / "uvh5_60647_1_1_x_0001" / "LoA.C0352" / "uvh5_60647_1_1_x_0001.uvh5").write_bytes(b"")
    cli("--config", str(conf), "scan", check=0)
    out = cli("--config", str(conf), "status", check=0).stdout
    assert "failed" in out and "empty file" in out


def test_reprocess_rejects_unknown_step(tmp_path, conf):
    put_real_nested(tmp_path / "storage")
    cli("--config", str(conf), "scan", check=0)
    r = cli("--config", str(conf), "reprocess", "2024-12-12-17:29:25", "--from", "bogus", check=2)
    assert "unknown step 'bogus'" in r.stderr


def test_example_queries_run(tmp_path, conf):
    import sqlite3

    put_real_nested(tmp_path / "storage")
    cli("--config", str(conf), "scan", check=0)
    conn = sqlite3.connect(tmp_path / "cat.db")
    sql = (REPO / "examples" / "queries.sql").read_text()
    stmts = [s.strip() for s in sql.split(";") if s.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in s.splitlines())]
    assert len(stmts) >= 5
    rows = [conn.execute(s).fetchall() for s in stmts]
    assert rows[2][0][1] == "A"  # LO coverage query sees the indexed LO


def test_report_of_a_broken_session_shows_its_error(tmp_path, conf):
    sdir = put_real_nested(tmp_path / "storage")
    (sdir / "uvh5_60647_1_1_x_0001" / "LoA.C0352").mkdir(parents=True)
    (sdir / "uvh5_60647_1_1_x_0001" / "LoA.C0352" / "uvh5_60647_1_1_x_0001.uvh5").write_bytes(b"")
    cli("--config", str(conf), "scan", check=0)
    r = json.loads(cli("--config", str(conf), "report", "2024-12-12-17:29:25", "--json", check=0).stdout)
    page = Path(r["path"])
    assert page.is_file() and page.is_relative_to(tmp_path / "work" / "reports")
    html = page.read_text()
    assert "empty file" in html and "3c286" in html  # the session's error and its field, no traceback
    assert "timeline.png" in r["figures"] and (page.parent / "timeline.png").stat().st_size > 1000
    listed = json.loads(cli("--config", str(conf), "report", "--list", "--json", check=0).stdout)
    assert listed == [{"session": "p001/2024-12-12-17:29:25", "path": str(page)}]


def test_report_needs_a_session_or_list(conf):
    r = cli("--config", str(conf), "report", check=2)
    assert "--list" in r.stderr and "Traceback" not in r.stderr


def test_flux_plot_needs_a_field_and_measurements(tmp_path, conf):
    (tmp_path / "storage").mkdir()
    cli("--config", str(conf), "scan", check=0)
    r = cli("--config", str(conf), "fluxes", "--plot", "x.png", check=2)
    assert "--plot needs --field" in r.stderr
    r = cli("--config", str(conf), "fluxes", "--field", "3C286", "--plot", "x.png", check=2)
    assert "no measurements of '3C286'" in r.stderr


def test_datasette_metadata_matches_the_catalogue(tmp_path):
    import yaml

    from atarchive.catalogue import Catalogue

    meta = yaml.safe_load((REPO / "examples" / "metadata.yml").read_text())
    db = meta["databases"]["catalogue"]
    with Catalogue(tmp_path / "catalogue.db") as cat:
        for table, desc in db["tables"].items():
            cols = {r["name"] for r in cat.q(f"PRAGMA table_info({table})")}
            assert cols, f"no table {table}"
            assert set(desc.get("columns", {})) <= cols, (table, set(desc.get("columns", {})) - cols)
        for q in db["queries"].values():
            cat.q(q["sql"])  # runs on the current schema
