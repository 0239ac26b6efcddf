"""Upgrading reruns nothing: an archive processed by an earlier release stays up to date.

`tests/data/archive-v0.1.0` holds the catalogue that release v0.1.0 wrote for the processed `tiny`
session and the paths of its work tree (see its README). Fingerprints are a contract with every
archive already processed: a refactor that changed them would re-run years of sessions.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from conftest import REPO, atarchive_ok

FIXTURE = REPO / "tests" / "data" / "archive-v0.1.0"
SESSION = "ptiny/2025-03-15-10:40:00"
# step → why it reruns after an upgrade (a step version that truly changed); empty: nothing reruns
EXPECTED_RERUNS: dict[str, str] = {
    # issue 16: targets get .pbcor, residual and model FITS (and, with [steps.selfcal] rounds > 0, self-calibration)
    "image": "step version 2→5",  # 4: cleans capped at maxpsffraction 0.5; 5: rounds continue, stop at depth
    "sources": "never run",  # issue 14: a new step (PyBDSF on the target images)
    "report": "step version 1→2",  # issue 14: verdict + sources table on the QA page
    # compress 2: aoflagger is a dependency, so flagger "auto" flags with it instead of CASA tfcrop, and it
    # reads the uvh5 files itself (one pass): copy has no units, nothing of it reruns
    "compress": "step version 1→2",
    "concat": "input changed: compress",
    "fix": "input changed: concat",
    "calibrate": "input changed: fix",
}


def _restore(tmp_path: Path) -> Path:
    shutil.copy(FIXTURE / "catalogue.db", tmp_path / "catalogue.db")
    work = tmp_path / "work"
    for line in (FIXTURE / "work-paths.txt").read_text().splitlines():
        kind, rel = line.split(" ", 1)
        p = work / rel
        if kind == "d":
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
    (tmp_path / "storage").mkdir()
    conf = tmp_path / "atarchive.toml"
    shutil.copy(FIXTURE / "atarchive.toml", conf)
    return conf


def test_archive_of_release_0_1_0_migrates_and_plans_nothing(tmp_path):
    conf = _restore(tmp_path)
    plan = json.loads(atarchive_ok(conf, "run", "--dry-run", "--json"))
    assert {r["step"] for r in plan} <= set(EXPECTED_RERUNS), plan
    ex = json.loads(atarchive_ok(conf, "explain", SESSION, "--json"))
    for step in ex["steps"]:
        for u in step["units"]:
            if step["step"] in EXPECTED_RERUNS:
                assert EXPECTED_RERUNS[step["step"]] in u["reason"], (step["step"], u)
            else:
                assert u["status"] == "ok", (step["step"], u)
    cp = next(st for st in ex["steps"] if st["step"] == "copy")  # one pass: copy says it is off, and why
    assert cp["units"] == [] and cp["status"] == "up to date" and "one_pass" in cp["reason"], cp
    if not EXPECTED_RERUNS:
        assert ex["state"] == "done"
    # every migration of this version applied to the old catalogue; the old rows kept
    applied = {r[0] for r in sqlite3.connect(tmp_path / "catalogue.db").execute("SELECT name FROM _migrations")}
    shipped = {p.stem for p in (REPO / "atarchive" / "migrations").glob("*.sql")} or \
        {p.stem for p in (REPO / "migrations").glob("*.sql")}
    assert shipped and {s.split(".")[0] for s in shipped} <= {a.split(".")[0] for a in applied}, (shipped, applied)
    fl = json.loads(atarchive_ok(conf, "fluxes", "--json"))
    assert len(fl) == 6 and all(r["flux_jy"] > 0 for r in fl)


def test_fluxes_field_finds_a_calibrator_under_any_of_its_names(tmp_path):
    """The tiny session's flux calibrator is named 1331+305 in the data: `--field 3C286` (or J1331+3030)
    finds it; a field nobody measured is an error that lists the fields there are."""
    conf = _restore(tmp_path)
    rows = json.loads(atarchive_ok(conf, "fluxes", "--json"))
    fc = sorted((r["lo"], r["flux_jy"]) for r in rows if r["role"] == "flux_cal")
    assert fc and {r["field"] for r in rows if r["role"] == "flux_cal"} == {"1331+305"}
    for name in ("3C286", "3c 286", "J1331+3030", "1331+305"):
        got = json.loads(atarchive_ok(conf, "fluxes", "--field", name, "--json"))
        assert sorted((r["lo"], r["flux_jy"]) for r in got) == fc, name
    from conftest import cli_run

    r = cli_run(conf, "fluxes", "--field", "3C48", check=1)
    assert "no measurements of field '3C48'" in r.stderr and "1331+305" in r.stderr and "Traceback" not in r.stderr


def test_run_names_the_live_process_that_holds_a_session(tmp_path):
    """A session another live process is running is not "up to date": `run` names it, the PID and host."""
    import socket
    import subprocess
    import sys

    from atarchive.catalogue import Catalogue

    conf = _restore(tmp_path)
    # hold every unit of the first step with work to do (the report when the old archive is up to date),
    # so this live process holds the whole session
    plan = json.loads(atarchive_ok(conf, "run", "--dry-run", "--json"))
    first = plan[0]["step"] if plan else "report"
    held = [r["unit"] for r in plan if r["step"] == first] if plan else [""]
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with Catalogue(tmp_path / "catalogue.db") as cat:
            sid = cat.session(SESSION)["id"]
            for unit in held:
                cat.start_run(session_id=sid, step=first, unit=unit, fingerprint="x" * 20, version=1, params={},
                              inputs={}, versions={}, reason="test", attempt=1, log_path="",
                              owner=f"{socket.gethostname()}:{holder.pid}")
        out = atarchive_ok(conf, "run")
        assert f"{SESSION}: being run by PID {holder.pid} on {socket.gethostname()} ({first}" in out, out
        assert "every ready session is up to date" not in out and "ran " not in out, out
        got = json.loads(atarchive_ok(conf, "run", "--json"))
        assert [(h["session"], h["pid"]) for h in got["held_elsewhere"]] == [(SESSION, holder.pid)]
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its runs are marked interrupted, nothing is held
    out = atarchive_ok(conf, "run", "--dry-run")
    assert "being run by" not in out, out
    if not plan:
        assert "every ready session is up to date" in atarchive_ok(conf, "run")


def test_dry_run_shows_the_whole_plan_of_a_new_session(tmp_path):
    """Every unit of every step in run order, one JSON row each with its step, and the scans concat drops."""
    from atarchive.simulate import preset, simulate

    truth = json.loads(simulate(preset("tiny"), tmp_path / "storage").truth_path.read_text())
    conf = tmp_path / "atarchive.toml"
    shutil.copy(FIXTURE / "atarchive.toml", conf)
    (tmp_path / "work").mkdir()
    atarchive_ok(conf, "scan")
    plan = json.loads(atarchive_ok(conf, "run", "--dry-run", "--json"))
    # selfcal: off; copy: none (compress converts, flags and averages in one pass)
    order = ["compress", "concat", "fix", "calibrate", "image", "sources", "report"]
    steps = [r["step"] for r in plan]
    assert steps == sorted(steps, key=order.index) and set(steps) == set(order), steps
    n_fields, n_los = len(truth["sources"]), len(truth["los"])
    assert steps.count("image") == n_fields * n_los and steps.count("copy") == 0
    assert steps.count("selfcal") == 0  # self-calibration is off by default
    assert steps.count("sources") == n_los  # one target: its image in every LO
    assert all(r["unit"] is not None and r["reason"] == "never run" for r in plan)
    (concat,) = [r for r in plan if r["step"] == "concat"]
    first_fc = min((s for s in json.loads(atarchive_ok(conf, "show", SESSION, "--json"))["scans"]
                    if s["field"] == "1331+305"), key=lambda s: s["start_mjd"])["stem"]
    assert list(concat["dropped"]) == [first_fc]
    assert not any(r["unit"].startswith(first_fc) for r in plan if r["step"] == "compress")  # not converted
    text = atarchive_ok(conf, "run", "--dry-run")
    assert f"{len(plan)} unit(s) to run" in text and f"drops {first_fc}" in text and "report (1): never run" in text
