"""Self-calibration (issue #16): the guard's decisions without CASA, and on real CASA two sessions of a
field the presets do not have — six components over the inner primary beam — one with fast phase
noise the phase-calibrator cycle cannot follow (30°, 60 s), one without; and a target too faint for
self-calibration. Fluxes are measured on the primary-beam corrected image against the simulator's
truth (the true, unattenuated flux density)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from atarchive.casa.selfcal import diverged, keep_round, plan_rounds
from atarchive.simulate import simulate, spec_from_dict
from conftest import cli_run as cli


# -- the guard and the plan, pure ------------------------------------------------------------------
def test_a_round_is_kept_only_if_the_rms_falls_and_the_peak_holds():
    prev = {"rms_jy": 0.010, "peak_jy": 1.00}
    assert keep_round(prev, {"rms_jy": 0.008, "peak_jy": 0.99}, max_peak_drop=0.03)[0]
    ok, why = keep_round(prev, {"rms_jy": 0.013, "peak_jy": 1.20}, max_peak_drop=0.03)
    assert not ok and "rms did not fall" in why and "nor rise less than the peak" in why  # DR fell
    # the rms rose, but less than the peak: more flux made coherent, dynamic range up (measured case)
    ok, why = keep_round(prev, {"rms_jy": 0.0101, "peak_jy": 1.037}, max_peak_drop=0.03)
    assert ok and "dynamic range rose" in why
    assert not keep_round(prev, {"rms_jy": 0.0101, "peak_jy": 1.00}, max_peak_drop=0.03)[0]  # peak held, rms up
    ok, why = keep_round(prev, {"rms_jy": 0.005, "peak_jy": 0.90}, max_peak_drop=0.03)
    assert not ok and "peak fell by more than 3%" in why
    ok, why = keep_round(prev, {"rms_jy": 0.005, "peak_jy": 1.0, "flagged_fraction": 0.8, "solint": "int"},
                         max_peak_drop=0.03)
    assert not ok and "80% of the gain solutions failed" in why and "int" in why


def test_a_clean_that_ran_away_is_recognised():
    ref = {"rms_jy": 0.02, "peak_jy": 1.0}
    assert not diverged(ref, {"rms_jy": 0.001, "peak_jy": 1.1})
    assert diverged(ref, {"rms_jy": 29.0, "peak_jy": 366.0})
    assert diverged(ref, {"rms_jy": 0.05, "peak_jy": 1.0})


def test_solution_intervals_shrink_and_the_last_repeats():
    assert plan_rounds(["60s", "30s", "int"], 4) == ["60s", "30s", "int", "int"]
    assert plan_rounds(["60s", "30s", "int"], 2) == ["60s", "30s"]
    assert plan_rounds(["60s"], 0) == []


# -- on real CASA ----------------------------------------------------------------------------------
COMPONENTS = [  # offsets (arcsec) over the inner primary beam (FWHM ~2.4 deg at 1.45 GHz), none on an axis
    {"offset_arcsec": [-1100.0, 700.0], "flux_jy": 0.9, "spectral_index": -0.7},
    {"offset_arcsec": [1300.0, 900.0], "flux_jy": 0.6, "spectral_index": -0.9},
    {"offset_arcsec": [600.0, -1600.0], "flux_jy": 0.7, "spectral_index": -0.5},
    {"offset_arcsec": [-2200.0, -900.0], "flux_jy": 0.5, "spectral_index": -0.8},
    {"offset_arcsec": [2400.0, -300.0], "flux_jy": 0.45, "spectral_index": -0.6},
    {"offset_arcsec": [-300.0, 2300.0], "flux_jy": 0.4, "spectral_index": -0.4},
]


def field_spec(project: str, phase_noise_deg: float, *, faint: bool) -> dict:
    """A session of 20 antennas (the real ATA sample has 28), one LO of 32 x 0.5 MHz: 3C286, a phase
    calibrator, and a target of a 1.2 Jy source with six more components; optionally a 1 mJy target too
    faint for self-calibration. (With 10 antennas and these 400 s on target, clean cannot deconvolve the
    seven bright sources from the snapshot PSF even without phase noise: measured 0.74-0.91 of the true
    fluxes on the 1GC image of a quiet field; the dirty image's main source 1.016.)"""
    sources = [
        {"name": "3C286", "calibrator": "3C286"},
        {"name": "J1419+3821", "ra": 214.944, "dec": 38.362, "flux_jy": 1.8, "spectral_index": -0.4},
        {"name": "deep field", "ra": "14h20m00s", "dec": "+35d30m00s", "flux_jy": 1.2, "spectral_index": -0.75,
         "offset_arcsec": [-30.0, 15.0], "components": COMPONENTS},
    ]
    scans = [{"source": "3C286", "duration_s": 30}, {"source": "3C286", "duration_s": 60},
             {"source": "J1419+3821", "duration_s": 40}, {"source": "deep field", "duration_s": 200},
             {"source": "J1419+3821", "duration_s": 40}, {"source": "deep field", "duration_s": 200},
             {"source": "J1419+3821", "duration_s": 40}]
    if faint:
        sources.append({"name": "faint field", "ra": "14h30m00s", "dec": "+36d00m00s", "flux_jy": 0.001,
                        "spectral_index": -0.7})
        scans[-1:-1] = [{"source": "faint field", "duration_s": 60}]
    return {"project": project, "start": "2025-05-20T09:00:00Z", "n_antennas": 20, "integration_s": 10.0,
            "noise_jy": 0.02, "seed": 29,
            "los": [{"name": "A", "start_freq_hz": 1.45e9, "subbands": 2, "channels_per_subband": 16}],
            "sources": sources, "scans": scans,
            "corruptions": {"phase_noise_deg": phase_noise_deg, "phase_noise_timescale_s": 60.0}}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("selfcal")
    truths = {}
    for project, noise, faint in (("pnoisy", 30.0, True), ("pquiet", 0.0, False)):
        res = simulate(spec_from_dict(field_spec(project, noise, faint=faint)), root / "storage")
        truths[project] = json.loads(res.truth_path.read_text())
    conf = root / "atarchive.toml"
    conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n[steps.compress]\nchanbin = 2\n"
                    "[steps.image]\nmax_imsize = 512\n[execution]\nmax_attempts = 1\n"
                    "[steps.selfcal]\nrounds = 4\n")  # off by default
    (conf.parent / "work").mkdir(exist_ok=True)
    cli(conf, "scan")
    run = cli(conf, "run", "--json")
    images = json.loads(cli(conf, "images", "--json").stdout)
    return {"root": root, "conf": conf, "truths": truths, "images": images, "run": run}


def _image(images, project, field, kind):
    rows = [r for r in images if r["session"].startswith(project + "/") and r["field"] == field and r["kind"] == kind]
    assert len(rows) == 1, (project, field, kind, images)
    return rows[0]


def _fit_point(data, x0, y0, beam_pix):
    """Amplitude and position of a point source in a restored image: a Gaussian of the restoring beam
    (major, minor in pixels; PA in degrees) fitted in a box of ±1 beam around (x0, y0)."""
    from scipy.optimize import curve_fit

    bmaj, bmin, pa = beam_pix
    half = int(math.ceil(bmaj))
    xi, yi = int(round(x0)), int(round(y0))
    box = data[yi - half:yi + half + 1, xi - half:xi + half + 1]
    yy, xx = np.mgrid[yi - half:yi + half + 1, xi - half:xi + half + 1]
    sx, sy = bmin / 2.3548, bmaj / 2.3548
    th = math.radians(pa)

    def g(coords, a, xc, yc):
        x, y = coords
        dx, dy = x - xc, y - yc
        # PA east of north: the major axis turned from +y towards -x (RA increases to the left)
        u = dx * math.cos(th) + dy * math.sin(th)
        v = -dx * math.sin(th) + dy * math.cos(th)
        return a * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))

    ok = np.isfinite(box)
    p, _ = curve_fit(g, (xx[ok], yy[ok]), box[ok], p0=[float(np.nanmax(box)), x0, y0])
    return p


def measure_components(pbcor_fits: str, truth_source: dict):
    """For the field's main source and each component: (true flux at the image frequency, measured
    flux, position error in beams)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(pbcor_fits) as h:
        hdr = h[0].header
        data = np.squeeze(h[0].data).astype(float)
    w = WCS(hdr).celestial
    cell = abs(hdr["CDELT2"]) * 3600
    bmaj, bmin = hdr["BMAJ"] * 3600, hdr["BMIN"] * 3600
    beam_pix = (bmaj / cell, bmin / cell, hdr["BPA"])
    freq = next(hdr[f"CRVAL{i}"] for i in range(1, hdr["NAXIS"] + 1) if hdr[f"CTYPE{i}"].startswith("FREQ"))
    out = []
    for c in [truth_source, *truth_source["components"]]:
        true = c["flux_jy"] * (freq / c["ref_freq_hz"]) ** c["spectral_index"]
        x0, y0 = w.wcs_world2pix(c["ra_deg"], c["dec_deg"], 0)
        a, xc, yc = _fit_point(data, float(x0), float(y0), beam_pix)
        err_beams = math.hypot(xc - x0, yc - y0) * cell / math.sqrt(bmaj * bmin)
        out.append((true, a, err_beams))
    return out


@pytest.mark.casa
def test_selfcal_raises_the_dynamic_range_at_least_threefold(archive):
    """30° of phase noise on a 60 s timescale: the dynamic range at least triples against the 1GC image
    made exactly like the final one (same final mask, same depth)."""
    before = _image(archive["images"], "pnoisy", "deep field", "1gc")
    after = _image(archive["images"], "pnoisy", "deep field", "selfcal")
    pbcor = _image(archive["images"], "pnoisy", "deep field", "pbcor")
    assert after["selfcal_rounds"] >= 1 and Path(pbcor["path"]).is_file()
    assert after["dynamic_range"] >= 3 * before["dynamic_range"], (before, after)


@pytest.mark.casa
def test_every_component_above_10_sigma_within_5_percent_and_a_fifth_of_a_beam(archive):
    """The issue's bar on the primary-beam corrected image: every component above 10σ within 5 % of its
    true flux and 0.2 beam of its position."""
    after = _image(archive["images"], "pnoisy", "deep field", "selfcal")
    pbcor = _image(archive["images"], "pnoisy", "deep field", "pbcor")
    comps = measure_components(pbcor["path"], archive["truths"]["pnoisy"]["sources"]["deep field"])
    bright = [c for c in comps if c[0] * 0.5 > 10 * after["rms_jy"]]  # above 10 sigma even at half response
    assert len(bright) >= 5, comps
    for true, got, off in bright:
        assert off < 0.2 and abs(got / true - 1) < 0.05, (true, got, off, comps)


@pytest.mark.casa
def test_selfcal_does_no_harm_without_phase_noise(archive):
    before = _image(archive["images"], "pquiet", "deep field", "1gc")
    after = _image(archive["images"], "pquiet", "deep field", "selfcal")
    assert after["dynamic_range"] >= 0.95 * before["dynamic_range"], (before, after)
    truth = archive["truths"]["pquiet"]["sources"]["deep field"]
    # both restored images without primary-beam correction: the same apparent flux of every component
    one_gc = measure_components(before["path"], truth)
    final = measure_components(after["path"], truth)
    compared = 0
    for (_, a0, _), (_, a1, _) in zip(one_gc, final):
        if a0 > 10 * before["rms_jy"]:
            assert abs(a1 / a0 - 1) < 0.01, (one_gc, final)
            compared += 1
    assert compared >= 5, one_gc


@pytest.mark.casa
def test_a_target_too_faint_for_selfcal_keeps_its_1gc_data_and_says_why(archive):
    before = _image(archive["images"], "pnoisy", "faint field", "1gc")
    final = _image(archive["images"], "pnoisy", "faint field", "selfcal")
    assert final["selfcal_rounds"] == 0
    for row in (before, final):
        assert "too faint for self-calibration" in row["note"] and "min_peak_snr" in row["note"], row
        assert Path(row["path"]).is_file()


@pytest.mark.casa
def test_calibrators_are_not_touched_by_selfcal(archive):
    """Without phase noise 3C286 is within 1 % of Perley-Butler 2017; with 30° of it (decorrelation in the
    20 s averaging the calibrator's own solutions cannot undo), within 3 %."""
    rows = json.loads(cli(archive["conf"], "fluxes", "--json").stdout)
    cal = {r["session"].split("/")[0]: r for r in rows if r["field"] == "3C286"}
    assert set(cal) == {"pnoisy", "pquiet"}
    assert abs(cal["pquiet"]["flux_jy"] / cal["pquiet"]["model_flux_jy"] - 1) < 0.01, cal["pquiet"]
    assert abs(cal["pnoisy"]["flux_jy"] / cal["pnoisy"]["model_flux_jy"] - 1) < 0.03, cal["pnoisy"]


@pytest.mark.casa
def test_changing_a_selfcal_parameter_reruns_selfcal_and_what_follows_only(archive):
    conf = archive["conf"]
    changed = conf.parent / "changed.toml"
    changed.write_text(conf.read_text() + "mask_threshold = 6.0\n")  # under [steps.selfcal], the last table
    rows = json.loads(cli(changed, "run", "--dry-run", "--json").stdout)
    steps = {r["step"] for r in rows}
    assert steps == {"selfcal", "image", "sources", "report"}, steps  # sources: of the new target images
    images = [r for r in rows if r["step"] == "image"]
    assert images and all(r["unit"].split("/")[0] in ("deep field", "faint field") for r in images), images
    assert all("selfcal.mask_threshold 5.0→6.0" in r["reason"] for r in rows if r["step"] == "selfcal"), rows
    why = cli(changed, "explain", next(r["session"] for r in rows if r["step"] == "selfcal")).stdout
    assert "selfcal: out of date — params changed: selfcal.mask_threshold 5.0→6.0" in why, why
    assert "calibrate: up to date" in why, why
