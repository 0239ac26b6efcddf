"""The report's pure parts, without CASA: outlier decisions, sky geometry, escaping, a page from
catalogue rows alone."""

from __future__ import annotations

import numpy as np
import pytest

from atarchive.report import plots, qa, sky
from atarchive.report.build import render_report


def _bandpasses(n_ant=7, n_chan=64, seed=1):
    rng = np.random.default_rng(seed)
    shape = 1.0 + 0.05 * np.sin(np.linspace(0, 3, n_chan))
    amp = shape * (1.0 + 0.01 * rng.standard_normal((n_ant, n_chan)))
    ph = 2.0 * rng.standard_normal((n_ant, n_chan))
    return amp, ph


def test_bandpass_outliers_none_in_a_healthy_array():
    amp, ph = _bandpasses()
    assert qa.bandpass_outliers(amp, ph) == {}


def test_bandpass_outliers_find_low_amplitude_noisy_phase_and_flagged_antennas():
    amp, ph = _bandpasses()
    amp[2] *= 0.5                                   # a dead LNA
    ph[4] = np.random.default_rng(3).uniform(-180, 180, amp.shape[1])  # a phase that jumps every channel
    amp[6, :50] = np.nan                            # mostly flagged
    out = qa.bandpass_outliers(amp, ph)
    assert set(out) == {2, 4, 6}
    assert "amplitude 0.5" in out[2] and "phase scatter" in out[4] and "flagged" in out[6]


def test_elevation_and_parallactic_angle_geometry():
    lat = sky.ATA_LAT_DEG
    el, pa = sky.elevation_parallactic(10.0, lat, np.array([10.0]))  # transit at the zenith
    assert el[0] == pytest.approx(90.0, abs=1e-6)
    el, pa = sky.elevation_parallactic(10.0, lat - 30.0, np.array([10.0, 40.0, -20.0]))
    assert el[0] == pytest.approx(60.0, abs=1e-6) and pa[0] == pytest.approx(0.0, abs=1e-6)
    assert pa[1] > 0 > pa[2] and el[1] < 60 and el[2] < 60  # west of the meridian: positive


def test_sidereal_time_at_j2000():
    # GMST at 2000-01-01 12:00 UT is 280.46062 deg; apparent differs from mean by < 0.005 deg.
    lst = sky.local_sidereal_deg(np.array([51544.5]))[0]
    assert (lst - (280.46062 + sky.ATA_LON_DEG) + 180) % 360 - 180 == pytest.approx(0.0, abs=0.02)


def _data(tmp_path, field="J1331+3030 <script>alert(1)</script>"):
    t0 = 60749.4
    scans = [{"stem": f"s{i}", "field": f, "source": f, "start_mjd": t0 + i * 0.002, "end_mjd": t0 + i * 0.002 + 0.001}
             for i, f in enumerate(["3c286", field, "3c286"])]
    return {
        "session": {"key": "p/2025-03-15-11:00:00", "path": "/storage/p/2025-03-15-11:00:00", "layout": "nested",
                    "error": None},
        "sdir": str(tmp_path / "work" / "p"),
        "scans": scans,
        "fields": [{"name": "3c286", "ra_deg": 202.7845, "dec_deg": 30.5092},
                   {"name": field, "ra_deg": 210.0, "dec_deg": 28.0}],
        "los": [{"name": "A", "freq_start_hz": 1.4e9, "freq_end_hz": 1.41e9, "nchan": 32, "nsubbands": 2}],
        "runs": [{"step": "copy", "unit": "s0/LoA", "status": "done", "fingerprint": "abc123def4567890",
                  "started": 1.0e9, "finished": 1.0e9 + 7.5, "reason": "never run", "error": None,
                  "log_path": str(tmp_path / "work" / "p" / "logs" / "copy.log"), "result": None}],
        "products": [],
        "fluxes": [],
        "roles": {"fields": {"3c286": {"role": "flux_cal", "reason": "position matches 3C286", "standard": "3C286"},
                             field: {"role": "target", "reason": "not a calibrator", "phase_cal": None}}},
    }


def test_page_from_catalogue_rows_alone_escapes_field_names(tmp_path):
    final = tmp_path / "work" / "reports" / "p" / "s"
    out = tmp_path / "out"
    out.mkdir()
    res = render_report(_data(tmp_path), outdir=out, final_dir=final)
    html = (out / "index.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert set(res["figures"]) == {"timeline.png", "elevation.png"} and res["notes"] == []
    for f in res["figures"]:
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'href="../../../p/logs/copy.log"' in html  # links relative to where the page is installed
    assert "7.5 s" in html and "abc123def456" in html


def test_flux_trend_plot_writes_a_png(tmp_path):
    p = plots.flux_trend({"A": [(60749.0, 1.0, 0.01), (60750.0, 0.97, 0.01)]}, tmp_path / "t.png", "3C286")
    assert p.stat().st_size > 1000


def test_products_table_links_only_products_that_exist(tmp_path):
    """The full-resolution MS is removed once compress has averaged it: the page names it, unlinked."""
    final = tmp_path / "work" / "reports" / "p" / "s"
    out = tmp_path / "out"
    out.mkdir()
    ms = tmp_path / "work" / "p" / "ms"
    (ms / "s0_LoA.ms").mkdir(parents=True)
    data = _data(tmp_path, field="J1407+2827")
    data["products"] = [
        {"step": "copy", "unit": "s0/LoA", "kind": "ms", "path": str(ms / "fullres" / "s0_LoA.ms"), "meta": "{}"},
        {"step": "compress", "unit": "s0/LoA", "kind": "ms", "path": str(ms / "s0_LoA.ms"), "meta": "{}"}]
    render_report(data, outdir=out, final_dir=final)
    html = (out / "index.html").read_text()
    assert 'href="../../../p/ms/s0_LoA.ms"' in html
    assert "fullres/s0_LoA.ms" in html and 'href="../../../p/ms/fullres/s0_LoA.ms"' not in html
    assert "s0_LoA.ms <span class='muted'>(removed)</span>" in html
