"""The whole chain on real CASA: two simulated sessions in the real layout, from `scan` to images.

One module-scoped run is shared by the tests (the chain takes minutes on 2 cores); each test then
checks one outcome someone cares about: products right, fluxes and positions against the
simulator's truth file, nothing re-run without a reason, reprocess and crashes handled.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atarchive.simulate import preset, simulate
from conftest import assert_fluxes_match_truth, assert_png_shows_something, tree_checksums
from conftest import cli_run as cli

pytestmark = pytest.mark.casa
EXE = [sys.executable, "-m", "atarchive"]
TINY = "ptiny/2025-03-15-10:40:00"
WIDE = "pwide/2025-03-15-11:00:00"


def write_conf(root: Path, **extra_compress) -> Path:
    comp = {"chanbin": 2, "keep_fullres": "true", **extra_compress}
    conf = root / "atarchive.toml"
    conf.write_text(
        'storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "catalogue.db"\n'
        "[scan]\nstable_seconds = 0\n"
        "[steps.compress]\n" + "".join(f"{k} = {v}\n" for k, v in comp.items())
        + "[steps.image]\nmax_imsize = 256\n[execution]\nretry_backoff_s = 0.5\n")
    (root / "work").mkdir(exist_ok=True)
    return conf


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    storage = root / "storage"
    truths = {}
    for name in ("tiny", "two-targets-wide"):
        res = simulate(preset(name), storage)
        truths[name] = json.loads(res.truth_path.read_text())
    before = tree_checksums(storage)
    conf = write_conf(root)
    cli(conf, "scan")
    t0 = time.time()
    first = cli(conf, "run", check=None)
    elapsed = time.time() - t0
    first_status = json.loads(cli(conf, "status", "--json").stdout)  # before any retry
    return {"root": root, "conf": conf, "conf_text": conf.read_text(), "storage": storage, "truths": truths,
            "before": before, "first": first, "first_status": first_status, "elapsed": elapsed, "db": root / "catalogue.db"}


@pytest.fixture(autouse=True)
def up_to_date(request):
    """Each test owns its preconditions: the original config, every session up to date (whatever an
    earlier test changed; a no-op run takes a second)."""
    if "chain" not in request.fixturenames:
        return
    chain = request.getfixturevalue("chain")
    chain["conf"].write_text(chain["conf_text"])
    cli(chain["conf"], "run", check=None)


def q(chain, sql, params=()):
    conn = sqlite3.connect(chain["db"])
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def runs_after(chain, run_id):
    return q(chain, "SELECT s.key, r.step, r.unit, r.status FROM step_runs r JOIN sessions s ON s.id = r.session_id "
                    "WHERE r.id > ? ORDER BY r.id", [run_id])


def max_run_id(chain):
    return q(chain, "SELECT COALESCE(MAX(id), 0) AS m FROM step_runs")[0]["m"]


def test_both_sessions_reach_done(chain):
    """In the first run, with no retry by a later one."""
    states = {s["key"]: s["state"] for s in chain["first_status"]["sessions"]}
    assert states == {TINY: "done", WIDE: "done"}, chain["first"].stderr[-3000:]
    assert chain["first"].returncode == 0


def test_fixed_ms_scans_fluxcal_los_and_averaging(chain):
    from atarchive.execution.children import run_in_child

    fixed = next((chain["root"] / "work" / "ptiny").glob("*/ms/fixed.ms"))
    repo = str(Path(__file__).resolve().parent.parent)
    res = run_in_child("tests.casa_probe:ms_summary", {"ms": str(fixed)}, workdir=chain["root"] / "probe",
                       log_path=chain["root"] / "probe.log", env={**os.environ, "PYTHONPATH": repo})
    truth = chain["truths"]["tiny"]
    kept = [s for s in truth["scans"] if not s["first_fluxcal_scan"]]
    # one scan number per field visit, in time order, and only the last flux-calibrator scan
    assert res["scan_fields"] == [s["source"] for s in kept]
    assert res["scan_numbers"] == list(range(1, len(kept) + 1))
    # both LOs, each averaged by chanbin 2
    assert len(res["spws"]) == 2
    for lo, spw in zip(sorted(truth["los"]), res["spws"]):
        assert spw["nchan"] == truth["los"][lo]["nchan"] // 2
        assert spw["f0"] >= truth["los"][lo]["start_freq_hz"] - 1e6 and spw["f1"] <= truth["los"][lo]["end_freq_hz"] + 1e6
    # rows: baselines with autos × averaged integrations × spws; timebin 20 s over 10 s integrations
    nant = len(truth["antennas"])
    nbl = nant * (nant + 1) // 2
    ints = sum(math.ceil(s["integrations"] / 2) for s in kept)
    assert res["nrows"] == nbl * ints * 2


def _check_fluxes(chain, session, truth):
    assert_fluxes_match_truth(json.loads(cli(chain["conf"], "fluxes", session, "--json").stdout), truth)


def test_fluxes_and_positions_match_truth_tiny(chain):
    _check_fluxes(chain, TINY, chain["truths"]["tiny"])


def test_two_targets_two_phasecals_los_1ghz_apart(chain):
    _check_fluxes(chain, WIDE, chain["truths"]["two-targets-wide"])
    show = json.loads(cli(chain["conf"], "show", WIDE, "--json").stdout)
    roles = {f["name"]: (f["role"], f["phase_cal"]) for f in show["fields"]}
    assert roles["field east"] == ("target", "J1407+2827") and roles["field_west"] == ("target", "J1310+3220")
    assert roles["3c286"][0] == "flux_cal"
    # LOs 1 GHz apart were calibrated as separate groups
    cal = q(chain, "SELECT r.result FROM step_runs r JOIN sessions s ON s.id = r.session_id "
                   "WHERE s.key = ? AND r.step = 'calibrate' AND r.status = 'done' ORDER BY r.id DESC LIMIT 1", [WIDE])
    groups = json.loads(cal[0]["result"])["groups"]
    assert [g["spws"] for g in groups] == [[0], [1]]


def test_products_laid_out_and_fits_exported(chain):
    sdir = next((chain["root"] / "work" / "ptiny").iterdir())
    assert (sdir / "cal").is_dir() and list((sdir / "cal" / "split").glob("target_1*_noauto_1GC.ms"))
    fits = sorted(p.relative_to(sdir).as_posix() for p in sdir.glob("images/*/*/*.fits"))
    assert all(os.path.getsize(sdir / f) > 0 for f in fits)
    # every field and LO: restored, residual and model FITS; the target also primary-beam corrected
    restored = [f for f in fits if not f.endswith((".residual.fits", ".model.fits", ".pbcor.fits"))]
    assert len(restored) == 6, fits
    for f in restored:
        for ext in (".residual.fits", ".model.fits"):
            assert f.removesuffix(".fits") + ext in fits, (f, ext)
    assert [f for f in fits if f.endswith(".pbcor.fits")] == [
        f.removesuffix(".fits") + ".pbcor.fits" for f in restored if f.startswith("images/target_1")], fits
    assert not list(sdir.rglob("*.tmp-*")) and not list(sdir.rglob("casa-*.log"))
    kinds = {r["kind"] for r in q(chain, "SELECT kind FROM products")}
    assert {"ms_fullres", "ms_averaged", "ms_concat", "ms_fixed", "caltables", "ms_1gc", "image", "report"} <= kinds


def _image_results(chain, key) -> dict:
    """unit → result of its last done image run."""
    rows = q(chain, "SELECT r.unit, r.result FROM step_runs r JOIN sessions s ON s.id = r.session_id "
                    "WHERE s.key = ? AND r.step = 'image' AND r.status = 'done' ORDER BY r.id", [key])
    return {r["unit"]: json.loads(r["result"]) for r in rows}


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")  # CASA's FITS: MJD-OBS, OBSGEO filled in
@pytest.mark.parametrize("key,truth_name", [(TINY, "tiny"), (WIDE, "two-targets-wide")])
def test_fits_images_have_celestial_wcs_beam_and_peak_at_the_true_position(chain, key, truth_name):
    """What a user opening the FITS relies on: sky coordinates, the restoring beam, and the source
    where it is (brightest pixel within a pixel of the simulator's true position)."""
    import numpy as np
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.wcs import WCS

    truth = chain["truths"][truth_name]
    images = _image_results(chain, key)
    assert len(images) == len(truth["sources"]) * len(truth["los"])
    for unit, res in images.items():
        with fits.open(res["fits"]) as h:
            hdr, data = h[0].header, np.squeeze(h[0].data)
        w = WCS(hdr).celestial
        assert w.has_celestial and w.naxis == 2, unit
        assert hdr["CTYPE1"].startswith("RA---") and hdr["CTYPE2"].startswith("DEC--"), unit
        assert hdr["BMAJ"] > 0 and 0 < hdr["BMIN"] <= hdr["BMAJ"] and "BPA" in hdr, unit
        # blanked (NaN) only outside the primary beam cut-off
        assert data.shape == (hdr["NAXIS2"], hdr["NAXIS1"]) and np.isfinite(data).mean() > 0.3, unit
        y, x = np.unravel_index(np.nanargmax(data), data.shape)
        src = truth["sources"][res["field"]]
        sep = w.pixel_to_world(x, y).separation(SkyCoord(src["ra_deg"], src["dec_deg"], unit="deg")).arcsec
        pix = abs(hdr["CDELT2"]) * 3600
        assert sep <= pix, (unit, sep, pix)
        assert hdr["BMAJ"] * 3600 == pytest.approx(res["beam_major_arcsec"], rel=1e-3), unit
        if res["mask"] == "circle around the peak":  # a calibrator: one clean to 5 x rms, not a repeat of it
            assert res["rounds"] == 1, (unit, res["rounds"])


def _load_in_chromium(page: Path) -> dict:
    """Open a page in headless Debian Chromium; console errors, failed requests and every image."""
    chromium = shutil.which("chromium")
    if not chromium:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs Debian's chromium package")
        pytest.skip("Debian chromium not installed (`make test` installs it)")
    from playwright.sync_api import sync_playwright

    errors, failed = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            pg = browser.new_page()
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.on("requestfailed", lambda r: failed.append(r.url))
            pg.goto(page.as_uri(), wait_until="load")
            imgs = pg.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])")
            text = pg.inner_text("body")
        finally:
            browser.close()
    return {"errors": errors, "failed": failed, "imgs": imgs, "text": text}


def test_report_made_by_run_loads_in_chromium(chain):
    (row,) = q(chain, "SELECT r.status, p.path FROM step_runs r JOIN sessions s ON s.id = r.session_id "
                      "JOIN products p ON p.run_id = r.id WHERE s.key = ? AND r.step = 'report' "
                      "ORDER BY r.id DESC LIMIT 1", [WIDE])
    page = Path(row["path"]) / "index.html"
    assert row["status"] == "done" and page.is_file() and page.is_relative_to(chain["root"] / "work" / "reports")
    got = _load_in_chromium(page)
    assert got["errors"] == [] and got["failed"] == []
    srcs = [i[0] for i in got["imgs"]]
    for src, complete, width in got["imgs"]:
        assert complete and width > 0 and (page.parent / src).stat().st_size > 1000, src
        assert_png_shows_something(page.parent / src, thumbnail=src.startswith("img_"))
    n_images = q(chain, "SELECT COUNT(*) AS n FROM products p JOIN sessions s ON s.id = p.session_id "
                        "WHERE s.key = ? AND p.kind = 'image'", [WIDE])[0]["n"]
    assert len([s for s in srcs if s.startswith("img_")]) == n_images == 10
    # two LO groups (1 GHz apart): a bandpass and a gain figure each
    assert {"timeline.png", "elevation.png", "uv.png", "fluxcal.png", "bandpass_g0.png", "bandpass_g1.png",
            "gains_g0.png", "gains_g1.png"} <= set(srcs)
    for word in ("copy", "compress", "concat", "fix", "calibrate", "image", "field east", "J1407+2827",
                 "reference antenna"):
        assert word in got["text"], word


def test_report_cli_and_flux_trend_plot(chain, tmp_path):
    r = json.loads(cli(chain["conf"], "report", TINY, "--json").stdout)
    assert r["notes"] == [] and r["bandpass_outliers"] == {"0": {}}  # simulated antennas are all healthy
    assert Path(r["path"]).is_file() and "uv.png" in r["figures"]
    # every figure decodes and shows something; each image's thumbnail shows it (not blank)
    thumbs = [f for f in r["figures"] if f.startswith("img_")]
    assert len(thumbs) == len(_image_results(chain, TINY)) == 6
    for f in r["figures"]:
        assert_png_shows_something(Path(r["path"]).parent / f, thumbnail=f in thumbs)
    png = tmp_path / "trend.png"
    cli(chain["conf"], "fluxes", "--field", "3C286", "--plot", str(png))
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
    assert_png_shows_something(png)


def test_every_run_recorded_with_fingerprint_and_reason(chain):
    rows = q(chain, "SELECT * FROM step_runs WHERE status = 'done'")
    assert rows and all(r["fingerprint"] and r["reason"] and r["log_path"] and r["finished"] for r in rows)
    assert all(Path(r["log_path"]).stat().st_size > 0 for r in rows)
    concat_log = next(r["log_path"] for r in rows if r["step"] == "concat")
    assert "dropped" in Path(concat_log).read_text()


def test_second_run_runs_nothing_and_says_why(chain):
    before = max_run_id(chain)
    r = cli(chain["conf"], "run")
    assert "nothing to run" in r.stdout
    assert runs_after(chain, before) == []
    ex = json.loads(cli(chain["conf"], "explain", TINY, "--json").stdout)
    assert all(s["status"] == "up to date" for s in ex["steps"])


def test_changed_image_param_reruns_only_image(chain):
    conf = chain["conf"]
    text = conf.read_text()
    conf.write_text(text.replace("[steps.image]\n", "[steps.image]\nrobust = 0.5\n"))
    try:
        plan = json.loads(cli(conf, "run", "--dry-run", "--json").stdout)
        # the whole plan: the sources of the target images, the report that shows them
        assert {p["step"] for p in plan} == {"image", "sources", "report"}
        assert all("params changed: image.robust 0.0→0.5" in p["reason"] for p in plan if p["step"] == "image")
        reports = [p for p in plan if p["step"] == "report"]  # one per session of the chain
        assert reports and all(p["reason"].startswith("input changed: image") for p in reports), reports
        before = max_run_id(chain)
        cli(conf, "run", TINY)
        ran = runs_after(chain, before)
        # images, then the report that shows them; nothing upstream
        assert ran and {r["step"] for r in ran} == {"image", "sources", "report"} and {r["key"] for r in ran} == {TINY}
    finally:
        conf.write_text(text)
        cli(conf, "reprocess", TINY, "--from", "image")  # back to the default robust for later tests
        cli(conf, "run", TINY)


def test_changed_calibrate_param_plans_calibrate_and_image_only(chain):
    conf = chain["conf"]
    text = conf.read_text()
    conf.write_text(text + "[steps.calibrate]\nminsnr = 2.5\n")
    try:
        plan = json.loads(cli(conf, "run", "--dry-run", "--json").stdout)
        assert [p["step"] for p in plan][:1] == ["calibrate"] and {p["step"] for p in plan} == {
            "calibrate", "image", "sources", "report"}  # in run order; nothing upstream
        assert plan[0]["reason"] == "params changed: calibrate.minsnr 3.0→2.5"
        ex = json.loads(cli(conf, "explain", TINY, "--json").stdout)
        status = {s["step"]: s["status"] for s in ex["steps"]}
        assert status == {"copy": "up to date", "compress": "up to date", "concat": "up to date",
                          "fix": "up to date", "calibrate": "out of date", "selfcal": "up to date",  # off
                          "image": "out of date", "sources": "out of date", "report": "out of date"}
    finally:
        conf.write_text(text)


def test_compress_param_change_reruns_compress_concat_fix(chain):
    conf = chain["conf"]
    text = conf.read_text()
    conf.write_text(text.replace("chanbin = 2", "chanbin = 4"))
    try:
        ex = json.loads(cli(conf, "explain", TINY, "--json").stdout)
        by = {s["step"]: s for s in ex["steps"]}
        assert by["copy"]["status"] == "up to date"
        assert by["compress"]["reason"] == "params changed: compress.chanbin 2→4"
        assert by["concat"]["reason"] == "input changed: compress" and by["fix"]["reason"] == "input changed: concat"
        before = max_run_id(chain)
        cli(conf, "run", TINY, "--until", "fix")
        ran = runs_after(chain, before)
        assert {r["step"] for r in ran} == {"compress", "concat", "fix"}
        assert all(r["status"] == "done" for r in ran) and {r["key"] for r in ran} == {TINY}
    finally:
        conf.write_text(text)
        cli(conf, "run", TINY, "--until", "fix")  # back to chanbin 2 products


def test_reprocess_from_concat_touches_only_that_session(chain):
    conf = chain["conf"]
    before = max_run_id(chain)
    cli(conf, "reprocess", TINY, "--from", "concat")
    ex = json.loads(cli(conf, "explain", TINY, "--json").stdout)
    by = {s["step"]: s for s in ex["steps"]}
    assert by["concat"]["reason"] == "forced by `atarchive reprocess`" and by["compress"]["status"] == "up to date"
    cli(conf, "run", "--until", "fix")
    ran = runs_after(chain, before)
    assert [(r["key"], r["step"]) for r in ran] == [(TINY, "concat"), (TINY, "fix")]


def test_step_version_bump_reruns_it(chain, monkeypatch):
    from atarchive import config
    from atarchive.catalogue import Catalogue
    from atarchive.reconciler import Reconciler
    from atarchive.steps import BY_NAME

    cfg = config.load(chain["conf"])
    monkeypatch.setattr(BY_NAME["fix"], "version", BY_NAME["fix"].version + 1)
    cat = Catalogue(cfg.catalogue)
    try:
        before = max_run_id(chain)
        Reconciler(cfg, cat).run([cat.session(TINY)], until="fix")
    finally:
        cat.close()
    ran = runs_after(chain, before)
    assert [(r["step"], r["status"]) for r in ran] == [("fix", "done")]


def test_killed_run_leaves_nothing_done_and_next_run_finishes(chain):
    conf = chain["conf"]
    cli(conf, "reprocess", TINY, "--from", "calibrate")
    before = max_run_id(chain)
    proc = subprocess.Popen([*EXE, "--config", str(conf), "run", TINY], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.time()
        while time.time() - t0 < 120:
            rows = q(chain, "SELECT * FROM step_runs WHERE id > ? AND step = 'calibrate' AND worker_pid IS NOT NULL",
                     [before])
            if rows:
                break
            time.sleep(0.2)
        assert rows, "calibrate never started"
        os.killpg(proc.pid, signal.SIGKILL)  # the reconciler and its CASA child, mid-step
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = q(chain, "SELECT * FROM step_runs WHERE id > ? AND step = 'calibrate'", [before])
    assert [r["status"] for r in killed] == ["running"]  # never recorded as done
    cli(conf, "run", TINY)
    after = q(chain, "SELECT * FROM step_runs WHERE id > ? AND step = 'calibrate' ORDER BY id", [before])
    assert [r["status"] for r in after] == ["interrupted", "done"]
    sdir = next((chain["root"] / "work" / "ptiny").iterdir())
    assert not list(sdir.rglob("*.tmp-*"))
    st = json.loads(cli(conf, "status", "--json").stdout)
    assert {s["key"]: s["state"] for s in st["sessions"]}[TINY] == "done"


def test_session_override_excludes_an_antenna(chain):
    conf = chain["conf"]
    text = conf.read_text()
    ant = chain["truths"]["two-targets-wide"]["antennas"][2]
    conf.write_text(text + f'[sessions."{WIDE}"]\nexclude_antennas = ["{ant}"]\n')
    try:
        ex = json.loads(cli(conf, "explain", WIDE, "--json").stdout)
        by = {s["step"]: s for s in ex["steps"]}
        assert by["calibrate"]["reason"] == f'params changed: calibrate.exclude_antennas []→["{ant}"]'
        cli(conf, "run", WIDE)
        cal = q(chain, "SELECT r.result FROM step_runs r JOIN sessions s ON s.id = r.session_id "
                       "WHERE s.key = ? AND r.step = 'calibrate' AND r.status = 'done' ORDER BY r.id DESC LIMIT 1",
                [WIDE])
        res = json.loads(cal[0]["result"])
        assert res["excluded_antennas"] == [ant] and res["refant_name"] != ant
        _check_fluxes(chain, WIDE, chain["truths"]["two-targets-wide"])
    finally:
        conf.write_text(text)
    # Without the exclusion the next calibration starts again from the fix step's flags: the antenna
    # that the excluded run flagged (no solutions) has its data back.
    cli(conf, "run", WIDE)
    res = json.loads(q(chain, "SELECT r.result FROM step_runs r JOIN sessions s ON s.id = r.session_id "
                              "WHERE s.key = ? AND r.step = 'calibrate' AND r.status = 'done' ORDER BY r.id DESC "
                              "LIMIT 1", [WIDE])[0]["result"])
    assert res["excluded_antennas"] == [] and res["flags"].startswith("restored flags")
    assert res["unflagged_after"][ant] > 0.5, res["unflagged_after"]


def test_source_tree_untouched(chain):
    assert tree_checksums(chain["storage"]) == chain["before"]


def test_report_timeline_counts_the_flags_made_after_calibration(chain):
    """Calibration flags (tfcrop, rflag) its per-field splits, not the fixed MS: the report's flagged
    fraction per scan must include them, so it is at least the fixed MS's, and more somewhere."""
    import numpy as np

    from atarchive.execution.children import run_in_child

    from atarchive import naming

    fixed = next((chain["root"] / "work" / "ptiny").glob("*/ms/fixed.ms"))
    kw = {"workdir": chain["root"] / "probe", "log_path": chain["root"] / "probe.log",
          "env": {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}}
    before = run_in_child("tests.casa_probe:flagged_by_scan", {"ms": str(fixed)}, **kw)["by_scan"]
    npz = chain["root"] / "probe" / "qa.npz"  # what the report step extracts (then plots and deletes)
    run_in_child("atarchive.casa.report:run", {"vis": str(fixed), "caldir": str(naming.cal_dir(fixed.parent.parent)),
                                               "lo_ranges": {}, "out_npz": str(npz)}, **kw)
    timeline = {str(int(r[0])): float(r[2]) for r in np.load(npz)["scan_flags"]}
    assert set(timeline) == set(before)
    assert all(timeline[s] >= before[s] - 1e-9 for s in before), (timeline, before)
    assert any(timeline[s] > before[s] for s in before), (timeline, before)
