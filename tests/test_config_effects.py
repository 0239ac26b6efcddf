"""Config keys and per-session overrides, each through the config file, each with an effect on what
runs or on the products. One tiny session is processed once (module scope) with a config that sets
many keys at once; every test then checks the effect of one key on that session's products, so no
test depends on another's order and the CASA cost is one tiny run.

The session override excludes the target's scan and gives no target (``targets = []``): the two
phase-calibrator visits are then adjacent, 160 s apart, which ``fix.max_gap_s`` decides about.
"""

from __future__ import annotations

import glob
import json
import math
import os
import sqlite3
from pathlib import Path

import h5py
import numpy as np
import pytest

from atarchive.execution.children import run_in_child
from atarchive.simulate import preset, simulate
from conftest import REPO, assert_png_shows_something, atarchive_ok

pytestmark = pytest.mark.casa
KEY = "ptiny/2025-03-15-10:40:00"
TIMEBIN_S, MAX_GAP_S, TIMES_PER_CHUNK = 30.0, 300.0, 2
CELL_ARCSEC, IMSIZE, NITER, ROUNDS = 7.5, 120, 10, 1


def _farthest_antenna(storage: Path, antennas: list[str]) -> str:
    """The antenna with data farthest from the centre of the array: the automatic choice (most data,
    then nearest the centre) never picks it on healthy simulated data."""
    f = sorted(glob.glob(str(storage / "projects" / "**" / "*.uvh5"), recursive=True))[0]
    with h5py.File(f, "r") as h:
        names = [n.decode() for n in h["Header/antenna_names"][()]]
        pos = h["Header/antenna_positions"][()]
    p = np.array([pos[names.index(a)] for a in antennas])
    return antennas[int(np.argmax(np.linalg.norm(p - p.mean(axis=0), axis=1)))]


@pytest.fixture(scope="module")
def sess(tmp_path_factory):
    root = tmp_path_factory.mktemp("config_effects")
    truth = json.loads(simulate(preset("tiny"), root / "storage").truth_path.read_text())
    target_scan = next(s["stem"] for s in truth["scans"] if s["source"] == "target_1")
    refant = _farthest_antenna(root / "storage", truth["antennas"])
    conf = root / "atarchive.toml"
    conf.write_text(
        'storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n[scan]\nstable_seconds = 0\n'
        f"[steps.copy]\ntimes_per_chunk = {TIMES_PER_CHUNK}\n"
        f'[steps.compress]\nchanbin = 2\nflagger = "none"\ntimebin_s = {TIMEBIN_S}\n'
        f"[steps.fix]\nmax_gap_s = {MAX_GAP_S}\n"
        "[steps.calibrate]\nrflag = false\n"
        f'[steps.image]\ncell_arcsec = {CELL_ARCSEC}\nimsize = {IMSIZE}\nweighting = "natural"\n'
        f"niter = {NITER}\nrounds = {ROUNDS}\n"
        "[execution]\nretry_backoff_s = 0.5\n"
        f'[sessions."{KEY}"]\nrefant = "{refant}"\nexclude_scans = ["{target_scan}"]\ntargets = []\n')
    (root / "work").mkdir()
    atarchive_ok(conf, "scan")
    run = json.loads(atarchive_ok(conf, "run", "--json", timeout=900))
    sdir = next((root / "work" / "ptiny").iterdir())
    return {"root": root, "conf": conf, "truth": truth, "run": run, "refant": refant, "target_scan": target_scan,
            "sdir": sdir}


def _probe(sess, func: str, **kwargs):
    return run_in_child(f"tests.casa_probe:{func}", kwargs, workdir=sess["root"] / "probe",
                        log_path=sess["root"] / "probe.log", env={**os.environ, "PYTHONPATH": str(REPO)})


def _runs(sess, step: str) -> list[dict]:
    with sqlite3.connect(sess["root"] / "cat.db") as c:
        c.row_factory = sqlite3.Row
        return [dict(r) for r in c.execute(
            "SELECT unit, result, log_path FROM step_runs WHERE step = ? AND status = 'done' ORDER BY id", [step])]


def test_session_reaches_done(sess):
    assert sess["run"]["failed"] == [], sess["run"]
    st = json.loads(atarchive_ok(sess["conf"], "status", "--json"))
    assert [s["state"] for s in st["sessions"]] == ["done"]


def test_refant_override_is_the_reference_antenna_of_every_caltable(sess):
    got = _probe(sess, "caltable_refants", caldir=str(sess["sdir"] / "cal"))["by_table"]
    # gain and bandpass solutions at least (delay tables record no reference)
    assert any(t.startswith("G") for t in got) and any(t.startswith("B") for t in got), got
    assert {t: v for t, v in got.items() if v != [sess["refant"]]} == {}, sess["refant"]
    (cal,) = _runs(sess, "calibrate")
    res = json.loads(cal["result"])
    assert res["refant_name"] == sess["refant"] and "set in config" in res["refant_reason"]


def test_exclude_scans_and_targets_override_shape_concat_and_images(sess):
    truth = sess["truth"]
    fixed = _probe(sess, "ms_summary", ms=str(sess["sdir"] / "ms" / "fixed.ms"))
    # the excluded scan is in no MS; the dropped first flux-calibrator scan neither
    assert "target_1" not in fixed["scan_fields"]
    assert fixed["scan_fields"] == ["1331+305", "J1407+2827"]
    show = json.loads(atarchive_ok(sess["conf"], "show", KEY, "--json"))
    assert {f["name"]: f["role"] for f in show["fields"]}["target_1"] in (None, "", "none")
    assert any("target_1" in w for w in show["role_warnings"]), show["role_warnings"]
    imaged = {r["unit"].split("/")[0] for r in _runs(sess, "image")}
    assert imaged == {"1331+305", "J1407+2827"}
    copied = {r["unit"].split("/")[0] for r in _runs(sess, "compress")}  # one pass: compress converts
    assert sess["target_scan"] not in copied and len(copied) == len(truth["scans"]) - 2
    assert _runs(sess, "copy") == []


def test_timebin_and_max_gap(sess):
    truth = sess["truth"]
    n_int = truth["spec"]["integration_s"]
    kept = [s for s in truth["scans"] if not s["first_fluxcal_scan"] and s["stem"] != sess["target_scan"]]
    pc = [s for s in kept if s["source"] == "J1407+2827"]
    gap_s = (pc[1]["start_mjd"] - pc[0]["end_mjd"]) * 86400
    assert 120.0 < gap_s < MAX_GAP_S  # a new scan under the default max_gap_s (120 s), not under ours
    by_scan = _probe(sess, "ms_times_by_scan", ms=str(sess["sdir"] / "ms" / "fixed.ms"))["by_scan"]
    scans = [v for _, v in sorted(by_scan.items(), key=lambda kv: int(kv[0]))]
    # the two phase-calibrator visits are one scan (their gap is under max_gap_s)
    assert [v["fields"] for v in scans] == [["1331+305"], ["J1407+2827"]]
    # averaged in 30 s bins: this many times per visit (20 s, the default, gives other counts)
    bins = lambda s, tb: math.ceil(s["integrations"] * n_int / tb)  # noqa: E731
    assert [bins(s, TIMEBIN_S) for s in kept] != [bins(s, 20.0) for s in kept]
    visits = []
    for v in scans:
        t = np.array(v["times"])
        cuts = np.flatnonzero(np.diff(t) > 100.0) + 1
        visits += [len(part) for part in np.split(t, cuts)]
    assert visits == [bins(s, TIMEBIN_S) for s in kept]


def test_compress_flagger_none_flags_nothing(sess):
    runs = _runs(sess, "compress")
    assert runs
    for r in runs:
        res = json.loads(r["result"])
        assert res["flagger"] == "none" and res["flagged_fraction_after"] == res["flagged_fraction_before"], res
        assert "flagdata" not in Path(r["log_path"]).read_text()


def test_copy_times_per_chunk(sess):
    """One pass: chunks of at most times_per_chunk integrations, but whole time bins: 2 integrations a
    chunk asked, 30 s bins of three 10 s integrations, so one bin a chunk."""
    by_stem = {s["stem"]: s for s in sess["truth"]["scans"]}
    n_int = sess["truth"]["spec"]["integration_s"]
    assert TIMES_PER_CHUNK * n_int < TIMEBIN_S
    runs = _runs(sess, "compress")
    assert runs
    for r in runs:
        res = json.loads(r["result"])
        n = by_stem[r["unit"].split("/")[0]]["integrations"]
        assert res["one_pass"] is True and res["ntimes"] == n, (r["unit"], res)
        assert res["chunks"] == math.ceil(n * n_int / TIMEBIN_S) > 1, (r["unit"], res)


def test_calibrate_rflag_false(sess):
    (run,) = _runs(sess, "calibrate")
    log = Path(run["log_path"]).read_text()
    # CASA's flagging agents name themselves in the log: the splits were flagged by tfcrop alone
    assert "Tfcrop_XX::" in log and "rflag" not in log.lower()


def test_image_cell_size_weighting_niter_rounds(sess):
    from astropy.io import fits

    runs = _runs(sess, "image")
    assert len(runs) == 4
    for r in runs:
        res = json.loads(r["result"])
        hdr = fits.getheader(res["fits"])
        assert (hdr["NAXIS1"], hdr["NAXIS2"]) == (IMSIZE, IMSIZE)
        assert abs(hdr["CDELT1"]) * 3600 == pytest.approx(CELL_ARCSEC) and abs(hdr["CDELT2"]) * 3600 == pytest.approx(
            CELL_ARCSEC)
        assert res["rounds"] == ROUNDS  # niter stops every clean short of its depth: rounds run out
        log = Path(r["log_path"]).read_text()
        assert "Set imaging weights : Natural weighting" in log
        assert "weighting='briggs'" not in log
        # niter stopped every clean (not the 5 x rms threshold), and only the dirty image had niter=0
        assert log.count("Reached global stopping criterion : iteration limit") >= ROUNDS
        assert f"niter={NITER}," in log


def test_reprocess_now_rebuilds_the_report_at_once(sess):
    """`reprocess --from report --now` runs the report there and then (no `run` needed), and only it;
    the page it makes shows every image as a thumbnail that is not blank."""
    with sqlite3.connect(sess["root"] / "cat.db") as c:
        before = c.execute("SELECT COALESCE(MAX(id), 0) FROM step_runs").fetchone()[0]
    out = atarchive_ok(sess["conf"], "reprocess", KEY, "--from", "report", "--now")
    assert "now" in out
    with sqlite3.connect(sess["root"] / "cat.db") as c:
        ran = c.execute("SELECT step, status FROM step_runs WHERE id > ?", [before]).fetchall()
    assert ran == [("report", "done")]
    assert "nothing to run" in atarchive_ok(sess["conf"], "run")
    rep = json.loads(atarchive_ok(sess["conf"], "report", "--list", "--json"))
    (page,) = [Path(r["path"]) for r in rep]
    thumbs = sorted(page.parent.glob("img_*.png"))
    assert len(thumbs) == len(_runs(sess, "image")) == 4
    for t in thumbs:
        assert_png_shows_something(t, thumbnail=True)
