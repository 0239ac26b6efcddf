"""The verdict rules (atarchive.verdict) and the reference-catalogue check (atarchive.skymatch): pure
functions, no CASA."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from atarchive import verdict as V
from atarchive.config import QAConfig
from atarchive.skymatch import near, parse_angle, read_reference, reference_check

QA = QAConfig().model_dump(mode="json")


def _flux(role, field, lo, flux, model=None):
    return {"role": role, "field": field, "lo": lo, "flux_jy": flux, "model_flux_jy": model}


def test_flux_calibrator_within_five_percent_of_its_model():
    assert V.flux_cal_rule([_flux("flux_cal", "3C286", "A", 14.9, 15.0)], 0.05) == []
    (f,) = V.flux_cal_rule([_flux("flux_cal", "3C286", "A", 14.0, 15.0), _flux("target", "t", "A", 1.0)], 0.05,
                           ("flux_cal",))
    assert f["level"] == "fail" and "3C286 LoA" in f["reason"] and "0.933" in f["reason"]


def test_flagging_judges_scans_long_enough_to_flag_fairly():
    scans = [{"label": "scan 3 (J1407)", "flagged": 0.41, "seconds": 30.0},
             {"label": "scan 4 (target)", "flagged": 0.35, "seconds": 120.0},
             {"label": "scan 6 (target)", "flagged": 0.10, "seconds": 120.0}]
    (f,) = V.flagging_rule(scans, 0.30, 60.0)
    assert f["level"] == "warn" and "1 scan(s)" in f["reason"] and "scan 4 (target) 35%" in f["reason"]
    assert V.flagging_rule(scans, 0.30, 200.0) == []
    assert len(V.flagging_rule(scans, 0.30, 0.0)[0]["reason"].split("%")) == 4  # both bad scans named


def test_bandpass_outliers_counted_once_per_antenna_across_groups():
    out = {"0": {"1d": "amplitude 0.01 vs median 1.00"}, "1": {"1d": "80% of channels flagged"}}
    (f,) = V.bandpass_rule(out, 0)
    assert "1d" in f["reason"] and "(1 > 0)" in f["reason"]
    assert V.bandpass_rule(out, 1) == [] and V.bandpass_rule({"0": {}}, 0) == []


def test_radiometer_expectation_and_image_rms_rule():
    # 20 antennas, 100 MHz, 10 min, SEFD 7000 Jy: 7000 / sqrt(2 * 380 * 1e8 * 600) ≈ 0.33 mJy
    exp = V.radiometer_rms_jy(sefd_jy=7000, n_antennas=20, bandwidth_hz=1e8, seconds=600)
    assert exp == pytest.approx(7000 / math.sqrt(2 * 20 * 19 * 1e8 * 600))
    assert V.radiometer_rms_jy(sefd_jy=7000, n_antennas=1, bandwidth_hz=1e8, seconds=600) is None
    ims = [{"field": "t", "lo": "A", "rms_jy": 2.9 * exp, "expected_rms_jy": exp},
           {"field": "u", "lo": "B", "rms_jy": 3.5 * exp, "expected_rms_jy": exp},
           {"field": "v", "lo": "B", "rms_jy": 1.0, "expected_rms_jy": None}]
    (f,) = V.image_rms_rule(ims, 3.0)
    assert "u LoB" in f["reason"] and "3.5 ×" in f["reason"]


def test_reference_rules_only_where_sources_matched():
    ok = {"matched": 10, "median_offset_beams": 0.05, "median_offset_arcsec": 5.0, "median_flux_ratio": 1.04}
    off = {**ok, "median_offset_beams": 0.25, "median_offset_arcsec": 25.0, "median_flux_ratio": 0.85}
    checks = [{"field": "a", "lo": "A", "reference": ok}, {"field": "b", "lo": "A", "reference": off},
              {"field": "c", "lo": "A", "reference": None}, {"field": "d", "lo": "A", "reference": {"matched": 0}}]
    got = V.reference_rules(checks, 0.2, 0.10)
    assert [f["rule"] for f in got] == ["astrometry", "flux_scale"] and all("b LoA" in f["reason"] for f in got)


def test_phase_calibrator_against_its_median_over_earlier_sessions():
    hist = {"J1407/A": [2.0, 2.02, 1.98]}
    assert V.phase_cal_rule([_flux("phase_cal", "J1407", "A", 2.15)], hist, 0.10) == []
    (f,) = V.phase_cal_rule([_flux("phase_cal", "J1407", "A", 2.5)], hist, 0.10)
    assert "median 2.000 Jy over 3 earlier session(s)" in f["reason"]
    assert V.phase_cal_rule([_flux("phase_cal", "J1407", "B", 9.0)], hist, 0.10) == []  # nothing to compare


def test_session_verdict_is_the_worst_finding():
    clean = {"fluxes": [_flux("flux_cal", "3C286", "A", 15.1, 15.0)],
             "scans": [{"label": "scan 1", "flagged": 0.05, "seconds": 100}], "bandpass_outliers": {"0": {}}}
    assert V.session_verdict(clean, QA) == {"verdict": "pass", "reasons": [], "findings": []}
    warn = {**clean, "bandpass_outliers": {"0": {"1d": "amplitude 0.01 vs median 1.00"}}}
    got = V.session_verdict(warn, QA)
    assert got["verdict"] == "warn" and len(got["reasons"]) == 1 and "1d" in got["reasons"][0]
    fail = {**warn, "fluxes": [_flux("flux_cal", "3C286", "A", 12.0, 15.0)]}
    assert V.session_verdict(fail, QA)["verdict"] == "fail"
    assert V.session_verdict(fail, {**QA, "fail_on": []})["verdict"] == "warn"  # configurable


def test_reference_check_recovers_the_scatter_put_in(tmp_path):
    """400 sources against a reference of the same positions scattered by 2″ per axis and fluxes 10 %
    lower at 1.4 GHz: per-axis scatter ≈ 2″, median offset ≈ 2″ × √(2 ln 2), flux ratio ≈ 1/0.9 after
    scaling by the spectral index; the CSV reader reads it back."""
    rng = np.random.default_rng(5)
    n = 400
    ra, dec = rng.uniform(200, 201, n), rng.uniform(29, 30, n)
    flux = rng.uniform(0.1, 1.0, n)
    dra, ddec = rng.normal(0, 2.0, n), rng.normal(0, 2.0, n)
    path = tmp_path / "ref.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["RA", "Dec", "flux", "freq"])
        for i in range(n):
            w.writerow([ra[i] + dra[i] / 3600 / math.cos(math.radians(dec[i])), dec[i] + ddec[i] / 3600,
                        0.9 * flux[i] * (1.4e9 / 1.5e9) ** -0.7, 1.4e9])
    ref = read_reference(path)
    got = reference_check(ra=list(ra), dec=list(dec), flux=list(flux), ref=ref, freq_hz=1.5e9, beam_arcsec=60.0,
                          spectral_index=-0.7)
    assert got["matched"] == n and got["radius_arcsec"] == 30.0
    assert got["offset_scatter_arcsec"] == pytest.approx(2.0, rel=0.1)
    assert got["median_offset_arcsec"] == pytest.approx(2.0 * math.sqrt(2 * math.log(2)), rel=0.1)
    assert got["median_offset_beams"] == pytest.approx(got["median_offset_arcsec"] / 60.0)
    assert abs(got["median_dra_arcsec"]) < 0.3 and abs(got["median_ddec_arcsec"]) < 0.3
    assert got["median_flux_ratio"] == pytest.approx(1 / 0.9, rel=0.01) and got["flux_ratio_scatter"] < 0.01
    # a shifted catalogue shows as a systematic offset; a far one matches nothing
    shifted = {**ref, "dec": ref["dec"] + 5.0 / 3600}
    assert reference_check(ra=list(ra), dec=list(dec), flux=list(flux), ref=shifted, freq_hz=1.4e9, beam_arcsec=60,
                           spectral_index=0)["median_ddec_arcsec"] == pytest.approx(-5.0, abs=0.3)
    far = {**ref, "dec": ref["dec"] - 5.0}
    assert reference_check(ra=list(ra), dec=list(dec), flux=list(flux), ref=far, freq_hz=1.4e9, beam_arcsec=60,
                           spectral_index=0)["matched"] == 0


def test_reference_formats_and_near(tmp_path):
    from astropy.table import Table

    from atarchive.errors import ConfigError

    t = Table({"RAJ2000": [10.0, 20.0], "DEJ2000": [1.0, 2.0], "flux_jy": [0.5, 0.6]})
    t.write(tmp_path / "r.fits")
    t.write(tmp_path / "r.vot", format="votable")
    for name in ("r.fits", "r.vot"):
        r = read_reference(tmp_path / name)
        assert list(r["ra"]) == [10.0, 20.0] and list(r["freq"]) == [1.4e9, 1.4e9]
    Table({"ra": [1.0], "flux": [1.0]}).write(tmp_path / "bad.csv", format="ascii.csv")
    with pytest.raises(ConfigError, match="no 'dec' column"):
        read_reference(tmp_path / "bad.csv")
    rows = [{"ra_deg": 10.0, "dec_deg": 1.0}, {"ra_deg": 10.0 + 20 / 3600, "dec_deg": 1.0}, {"ra_deg": None}]
    got = near(rows, 10.0, 1.0, 10.0)
    assert len(got) == 1 and got[0]["separation_arcsec"] < 1e-6
    assert parse_angle("14h02m30s", hours=True) == pytest.approx(210.625)
    assert parse_angle("+29d10m00s", hours=False) == pytest.approx(29.1666667)
    assert parse_angle("12.5", hours=True) == 12.5


def test_rfi_names_the_channels_flagged_far_more_than_the_others():
    chans = {"A": [(1.40e9 + i * 1e6, 0.25) for i in range(16)], "B": [(1.65e9 + i * 1e6, 0.26) for i in range(16)]}
    assert V.rfi_rule(chans, 0.15) == []
    chans["A"][4:7] = [(1.404e9, 0.55), (1.405e9, 0.6), (1.406e9, 0.5)]
    chans["B"][10] = (1.66e9, 1.0)
    got = V.rfi_rule(chans, 0.15)
    assert [f["rule"] for f in got] == ["rfi", "rfi"]
    assert "LoA: 3 channel(s) at 1404.0–1406.0 MHz flagged up to 60% (median channel 25%)" in got[0]["reason"]
    assert "LoB: 1 channel(s) at 1660.0 MHz" in got[1]["reason"]


def test_rfi_at_full_resolution_names_a_channel_that_averaging_hides():
    """One raw channel flagged all session: averaged with three clean ones it is gone from the averaged
    data (its cell keeps the other three), but the flagger's full-resolution record still shows it; an LO
    named at full resolution is not named twice."""
    averaged = {"B": [(1.65e9 + i * 2e6, 0.03) for i in range(8)]}
    assert V.rfi_rule(averaged, 0.15) == []
    fullres = {"B": [(1.65e9 + i * 0.5e6, 0.03) for i in range(32)]}
    fullres["B"][20] = (1.66e9, 1.0)
    got = V.rfi_rule(averaged, 0.15, fullres=fullres)
    assert [f["reason"] for f in got] == ["RFI in LoB: 1 channel(s) at 1660.0 MHz flagged (full resolution) up to "
                                          "100% (median channel 3%)"]
    averaged["B"][5] = (1.66e9, 0.5)  # the same RFI, partly seen after averaging too: named once
    assert len(V.rfi_rule(averaged, 0.15, fullres=fullres)) == 1
    assert len(V.rfi_rule(averaged, 0.15, fullres={"B": []})) == 1  # no full-resolution record: the averaged one
