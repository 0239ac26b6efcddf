"""CLI commands and options as users run them, beyond the core chain: doctor, simulate, status --watch,
daemon --max-seconds and the daemon keys of status --json, show's files_with_errors and role
warnings, role overrides and the flux-calibrator tolerance through the config. No CASA step runs here
(doctor starts CASA once)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO, atarchive_ok, put_real_nested

EXE = [sys.executable, "-m", "atarchive"]
REAL_KEY = "p001/2024-12-12-17:29:25"
TINY = "ptiny/2025-03-15-10:40:00"


def _conf(tmp_path, extra: str = "") -> Path:
    conf = tmp_path / "atarchive.toml"
    conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n" + extra)
    (conf.parent / "work").mkdir(exist_ok=True)
    return conf


def _cli(*args, env=None, timeout=300):
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


@pytest.mark.casa
def test_doctor_json_reports_versions_and_casa_offline(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    p = _cli("doctor", "--json", env={"HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert p.returncode == 0, p.stderr[-2000:]
    rep = json.loads(p.stdout)
    assert {"casatools", "casatasks", "casadata", "pyuvdata", "python-casacore", "aoflagger", "astropy", "python",
            "site_config", "casa_ok", "casa_data"} <= set(rep)
    for pkg in ("casatools", "casatasks", "casadata", "pyuvdata", "astropy"):
        assert rep[pkg] == metadata.version(pkg), pkg
    assert rep["python"] == sys.version.split()[0]
    # the WSClean imager: `make test` installs Debian's wsclean; its path and version
    assert rep["wsclean"].startswith(shutil.which("wsclean")) and "3.1" in rep["wsclean"], rep["wsclean"]
    assert rep["casa_ok"] is True and "fix" not in rep and Path(rep["casa_data"]).is_dir()
    # the site config written under the cache dir it was given; CASA made nothing in the home dir
    assert Path(rep["site_config"]).is_relative_to(tmp_path / "cache") and Path(rep["site_config"]).is_file()
    assert not (home / ".casa").exists()
    text = _cli("doctor", env={"HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert text.returncode == 0 and "casa_ok" in text.stdout and rep["casatools"] in text.stdout


def test_simulate_list_presets_and_a_preset_from_the_cli(tmp_path):
    shipped = sorted(p.stem for p in (REPO / "atarchive" / "presets").glob("*.toml"))
    listed = json.loads(_cli("simulate", "--list-presets", "--json").stdout)
    assert sorted(listed) == shipped and "tiny" in listed
    assert sorted(_cli("simulate", "--list-presets").stdout.split()) == shipped
    p = _cli("simulate", "--preset", "tiny", "--out", str(tmp_path / "storage"), "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    info = json.loads(p.stdout)
    on_disk = sorted(Path(info["session_dir"]).rglob("*.uvh5"))
    assert info["files"] == len(on_disk) > 0
    truth = json.loads(Path(info["truth"]).read_text())
    # what was written indexes as the truth says: its scans, fields and LOs
    conf = _conf(tmp_path)
    atarchive_ok(conf, "scan")
    (row,) = json.loads(atarchive_ok(conf, "status", "--json"))["sessions"]
    assert row["key"] == TINY and row["scans"] == len(truth["scans"])
    assert sorted(row["fields"]) == sorted(truth["sources"]) and sorted(row["los"]) == sorted(truth["los"])
    bad = _cli("simulate", "--preset", "no-such-preset", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_status_watch_refreshes_from_the_catalogue(tmp_path):
    conf = _conf(tmp_path)
    put_real_nested(tmp_path / "storage")
    atarchive_ok(conf, "scan")
    proc = subprocess.Popen([*EXE, "--config", str(conf), "status", "--watch", "0.2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    lines: list[str] = []
    try:
        def read_until(word, deadline):
            while time.time() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if word in line:
                    return True
            return False

        assert read_until(REAL_KEY, time.time() + 60)
        # a second session indexed meanwhile shows up in a later refresh of the same process
        put_real_nested(tmp_path / "storage", project="p002", session="2024-12-13-01:00:00")
        atarchive_ok(conf, "scan")
        assert read_until("p002/2024-12-13-01:00:00", time.time() + 60), "".join(lines)[-2000:]
        assert proc.poll() is None  # still watching
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert sum(REAL_KEY in ln for ln in lines) >= 2  # printed more than once


def test_daemon_max_seconds_stops_by_itself_and_status_shows_it(tmp_path):
    conf = _conf(tmp_path, "[daemon]\nheartbeat_seconds = 0.5\nmin_free_gb = 0\n")
    (tmp_path / "storage" / "projects").mkdir(parents=True)
    t0 = time.time()
    proc = subprocess.Popen([*EXE, "--config", str(conf), "daemon", "--max-seconds", "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        alive = None
        while time.time() - t0 < 60 and proc.poll() is None:
            if (tmp_path / "cat.db").exists():
                d = json.loads(atarchive_ok(conf, "status", "--json"))["daemon"]
                if d and d["alive"]:
                    alive = d
                    break
            time.sleep(0.2)
        assert alive, "daemon never reported alive"
        assert {"alive", "pid", "host", "started", "heartbeat", "activity", "stopped"} <= set(alive)
        assert alive["pid"] == proc.pid and alive["stopped"] is None and alive["heartbeat"] >= alive["started"]
        rc = proc.wait(timeout=60)  # by itself: no signal sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0 and 4 <= time.time() - t0 < 60
    d = json.loads(atarchive_ok(conf, "status", "--json"))["daemon"]
    assert d["alive"] is False and d["stopped"] is not None and d["stopped"] >= alive["started"] + 4 - 1


def test_show_lists_files_with_errors(tmp_path):
    conf = _conf(tmp_path)
    sdir = put_real_nested(tmp_path / "storage")
    bad = sdir / "uvh5_60647_1_1_x_0001" / "LoA.C0352" / "uvh5_60647_1_1_x_0001.uvh5"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    atarchive_ok(conf, "scan")
    sh = json.loads(atarchive_ok(conf, "show", REAL_KEY, "--json"))
    assert [(Path(f["path"]), "empty file" in f["error"]) for f in sh["files_with_errors"]] == [(bad, True)]


def test_flux_cal_tolerance_from_the_config_decides_the_role(tmp_path):
    """The real 3C286 field is 0.01″ from the standard's position: a flux calibrator at the default
    tolerance, not at 0.005″ (with a warning that it is named like one)."""
    put_real_nested(tmp_path / "storage")
    conf = _conf(tmp_path)
    atarchive_ok(conf, "scan")
    (f,) = json.loads(atarchive_ok(conf, "show", REAL_KEY, "--json"))["fields"]
    assert f["role"] == "flux_cal" and 0.005 < f["separation_arcsec"] < 120
    conf.write_text(conf.read_text() + "[steps.calibrate]\nflux_cal_tolerance_arcsec = 0.005\n")
    sh = json.loads(atarchive_ok(conf, "show", REAL_KEY, "--json"))
    (f,) = sh["fields"]
    assert f["role"] != "flux_cal"
    assert any("3c286" in w and "not at its position" in w for w in sh["role_warnings"]), sh["role_warnings"]


def test_role_overrides_change_roles_and_what_runs(tmp_path):
    from atarchive.simulate import preset, simulate

    simulate(preset("tiny"), tmp_path / "storage")
    conf = _conf(tmp_path)
    atarchive_ok(conf, "scan")

    def roles():
        sh = json.loads(atarchive_ok(conf, "show", TINY, "--json"))
        return {f["name"]: (f["role"], f["phase_cal"]) for f in sh["fields"]}, sh["role_warnings"]

    def copied_scans():
        plan = json.loads(atarchive_ok(conf, "run", "--dry-run", "--json"))
        # one pass: compress converts each scan-LO (copy has no units)
        return sorted(p["unit"].split("/")[0] for p in plan if p["step"] == "compress" and p["unit"].endswith("LoA"))

    auto, _ = roles()
    assert auto == {"1331+305": ("flux_cal", None), "J1407+2827": ("phase_cal", None),
                    "target_1": ("target", "J1407+2827")}
    auto_copied = copied_scans()
    assert len(auto_copied) == 4 and not any(s.endswith("_9760400_1331+305_0001") for s in auto_copied)
    base = conf.read_text()
    # phase calibrator and target swapped
    conf.write_text(base + f'[sessions."{TINY}"]\nphase_cals = ["target_1"]\ntargets = ["J1407+2827"]\n')
    got, _ = roles()
    assert got == {"1331+305": ("flux_cal", None), "J1407+2827": ("target", "target_1"),
                   "target_1": ("phase_cal", None)}
    # the phase calibrator named as flux calibrator: its earlier scan is the one concat drops (and
    # copy skips); both 3C286 scans are copied; 1331+305 is no flux calibrator any more
    conf.write_text(base + f'[sessions."{TINY}"]\nflux_cals = ["J1407+2827"]\n')
    got, _ = roles()
    assert got["J1407+2827"][0] == "flux_cal" and got["1331+305"][0] != "flux_cal"
    copied = copied_scans()
    assert copied != auto_copied and len(copied) == 4
    assert any(s.endswith("_9760400_1331+305_0001") for s in copied)
    assert not any(s.endswith("_9760402_J1407+2827_0001") for s in copied)
    # a field left out of the targets override gets no role, with a warning
    conf.write_text(base + f'[sessions."{TINY}"]\ntargets = []\n')
    got, warnings = roles()
    assert got["target_1"][0] not in ("target", "phase_cal", "flux_cal")
    assert any("target_1" in w for w in warnings)
