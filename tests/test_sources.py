"""Source finding (issue 14): PyBDSF on the final target image of a simulated field of 13 point sources,
the reference-catalogue check, `sources` in every format, and `--near` across the archive.

One session is simulated and processed once for the module: 24 antennas (a usable PSF for a crowded
field), one LO of 32 channels, 6 minutes on the target; about 2 minutes on 2 cores.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import atarchive_ok, cli_run

pytestmark = pytest.mark.casa

FIELD = "deep field"
# a field the other tests have not seen: a 1 Jy source at the centre and 12 more over the inner beam
COMPONENTS = [
    ([-1811.8, -1986.7], 0.855, -0.04), ([56.2, -2211.7], 0.980, -0.87), ([1827.4, -1832.9], 0.778, -0.56),
    ([-1966.2, -9.8], 0.532, -0.37), ([1968.1, -68.5], 0.641, -0.72), ([-1967.8, 1831.5], 0.441, -0.99),
    ([-31.7, 2198.1], 0.513, -0.85), ([1893.6, 1998.3], 0.305, -0.78), ([-945.8, -997.7], 0.669, -0.78),
    ([903.8, -802.7], 0.307, -0.88), ([-1043.9, 963.7], 0.480, -0.31), ([963.3, 889.4], 0.522, -0.57),
]
REF_SCATTER_ARCSEC = 2.0


def _spec() -> dict:
    scans = [("1331+305", 40), ("1331+305", 60), ("J1407+2827", 40), (FIELD, 180), ("J1407+2827", 40),
             (FIELD, 180), ("J1407+2827", 40)]
    return {
        "project": "psources", "start": "2025-05-06T09:00:00Z", "n_antennas": 24, "integration_s": 10.0,
        "noise_jy": 0.02, "seed": 1414,
        "los": [{"name": "A", "start_freq_hz": 1.4e9, "subbands": 2, "channels_per_subband": 16}],
        "sources": [
            {"name": "1331+305", "calibrator": "3C286"},
            {"name": "J1407+2827", "ra": 211.751642, "dec": 28.454081, "flux_jy": 2.0, "spectral_index": -0.3},
            {"name": FIELD, "ra": "14h04m00s", "dec": "+29d30m00s", "flux_jy": 1.0, "spectral_index": -0.7,
             "components": [{"offset_arcsec": o, "flux_jy": f, "spectral_index": a} for o, f, a in COMPONENTS]},
        ],
        "scans": [{"source": s, "duration_s": d} for s, d in scans],
    }


def _truth_components(truth: dict, lo: str = "A") -> list[dict]:
    """Every point source of the field: position, true and beam-attenuated flux at the LO centre."""
    s = truth["sources"][FIELD]
    out = [{"ra_deg": s["ra_deg"], "dec_deg": s["dec_deg"], "flux_jy": s["flux_per_lo"][lo]["flux_jy"],
            "apparent_flux_jy": s["flux_per_lo"][lo]["flux_jy"], "freq_hz": s["flux_per_lo"][lo]["freq_hz"]}]
    for c in s["components"]:
        p = c["flux_per_lo"][lo]
        out.append({"ra_deg": c["ra_deg"], "dec_deg": c["dec_deg"], "flux_jy": p["flux_jy"],
                    "apparent_flux_jy": p["apparent_flux_jy"], "freq_hz": p["freq_hz"]})
    return out


def _write_reference(path: Path, comps: list[dict], *, scatter_arcsec: float, apparent: bool, seed: int = 3) -> None:
    """A reference catalogue (CSV: ra, dec, flux, freq) made from the truth, positions scattered by
    ``scatter_arcsec`` per axis."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ra", "dec", "flux", "freq"])
        for c in comps:
            dra, ddec = rng.normal(0.0, scatter_arcsec, 2) / 3600.0
            w.writerow([c["ra_deg"] + dra / math.cos(math.radians(c["dec_deg"])), c["dec_deg"] + ddec,
                        c["apparent_flux_jy"] if apparent else c["flux_jy"], c["freq_hz"]])


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    from atarchive.simulate import simulate, spec_from_dict

    root = tmp_path_factory.mktemp("sources")
    truth = json.loads(simulate(spec_from_dict(_spec()), root / "storage").truth_path.read_text())
    comps = _truth_components(truth)
    # the image step makes a primary-beam corrected image of every target: the reference holds true flux
    # densities, as a survey catalogue (NVSS) does
    _write_reference(root / "reference.csv", comps, scatter_arcsec=REF_SCATTER_ARCSEC, apparent=False)
    conf = root / "atarchive.toml"
    conf.write_text(f'storage_roots = ["{root / "storage"}"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n[steps.compress]\nchanbin = 2\n[steps.image]\nmax_imsize = 512\n"
                    '[execution]\nworkers = 1\n[qa]\nreference_catalogue = "reference.csv"\n'
                    "reference_spectral_index = -0.7\n")
    (conf.parent / "work").mkdir(exist_ok=True)
    atarchive_ok(conf, "scan")
    atarchive_ok(conf, "run", timeout=900)
    rows = json.loads(atarchive_ok(conf, "sources", "--json"))
    return {"root": root, "conf": conf, "truth": truth, "comps": comps, "rows": rows}


def _nearest(rows: list[dict], c: dict) -> tuple[dict, float]:
    from atarchive.skymatch import near

    hits = sorted(near(rows, c["ra_deg"], c["dec_deg"], 3600.0), key=lambda r: r["separation_arcsec"])
    return hits[0], hits[0]["separation_arcsec"]


def test_sources_recover_the_simulated_field(field):
    """≥ 95 % of the components above 7σ found (nearest source within half a beam); median measured /
    true flux within 3 % (beam-attenuated truth on an image without primary-beam correction); median
    offset below 0.1 beam."""
    rows = field["rows"]
    assert rows and {r["field"] for r in rows} == {FIELD} and {r["lo"] for r in rows} == {"A"}
    beam = math.sqrt(rows[0]["major_arcsec"] * rows[0]["minor_arcsec"])  # point sources: fitted size = beam
    rms = float(np.median([r["rms_jy"] for r in rows]))
    bright = [c for c in field["comps"] if c["apparent_flux_jy"] > 7 * rms]
    assert len(bright) >= 10, (len(bright), rms)
    found, ratios, offsets = 0, [], []
    for c in bright:
        r, sep = _nearest(rows, c)
        if sep < 0.5 * beam:
            found += 1
            ratios.append(r["flux_jy"] / (c["flux_jy"] if r["pbcor"] else c["apparent_flux_jy"]))
            offsets.append(sep / beam)
    assert found >= 0.95 * len(bright), (found, len(bright))
    assert abs(np.median(ratios) - 1.0) < 0.03, ratios
    assert np.median(offsets) < 0.1, offsets
    # the catalogue file beside the image holds the same sources
    from astropy.table import Table

    img_dir = Path(rows[0]["image"]).parent
    srl = img_dir.with_name(img_dir.name + ".srl.fits")
    assert len(Table.read(srl)) == len(rows)


def test_sources_formats_csv_votable_and_json_keys(field):
    rows = field["rows"]
    keys = {"session", "field", "lo", "image", "ra_deg", "dec_deg", "ra_err_arcsec", "dec_err_arcsec", "flux_jy",
            "flux_err_jy", "peak_jy", "peak_err_jy", "major_arcsec", "minor_arcsec", "pa_deg", "snr"}
    assert all(keys <= set(r) for r in rows)
    assert all(r["snr"] > 5 and r["flux_err_jy"] > 0 and r["ra_err_arcsec"] > 0 for r in rows)
    got = list(csv.DictReader(io.StringIO(atarchive_ok(field["conf"], "sources", "--csv"))))
    assert len(got) == len(rows) and keys <= set(got[0])
    assert sorted(float(r["flux_jy"]) for r in got) == pytest.approx(sorted(r["flux_jy"] for r in rows))
    from astropy.io.votable import parse_single_table

    vo = parse_single_table(io.BytesIO(atarchive_ok(field["conf"], "sources", "--votable").encode())).to_table()
    assert len(vo) == len(rows) and str(vo["ra_deg"].unit) == "deg"
    assert sorted(vo["flux_jy"]) == pytest.approx(sorted(r["flux_jy"] for r in rows))
    # one field of one session; a field with none is an empty list, not an error
    assert len(json.loads(atarchive_ok(field["conf"], "sources", "--field", FIELD.upper(), "--json"))) == len(rows)
    assert json.loads(atarchive_ok(field["conf"], "sources", "--field", "nowhere", "--json")) == []
    assert cli_run(field["conf"], "sources", "--csv", "--json", check=2).returncode == 2


def test_reference_check_reports_the_scatter_put_into_the_reference(field):
    """The reference was made from the truth with 2″ scatter per axis: every found component matches,
    the median offset is the measured offset from the truth widened by that scatter, the flux ratio is
    1 within the measurement."""
    (check,) = json.loads(atarchive_ok(field["conf"], "sources", "--checks", "--json"))
    ref = check["reference"]
    rows = field["rows"]
    truth_offsets = [_nearest(rows, c)[1] for c in field["comps"]]
    assert ref["matched"] == len(field["comps"]) == len(rows), ref
    assert ref["n_reference"] == len(field["comps"])
    # per-axis scatter: at least most of the 2″ put in, at most that added to the measured offsets
    meas = float(np.median(truth_offsets))
    assert 0.5 * REF_SCATTER_ARCSEC < ref["offset_scatter_arcsec"] < math.hypot(2 * REF_SCATTER_ARCSEC, 2 * meas), ref
    assert abs(ref["median_offset_arcsec"] - meas) < 2.5 * REF_SCATTER_ARCSEC, (ref, meas)
    assert ref["median_offset_beams"] == pytest.approx(ref["median_offset_arcsec"] / ref["beam_arcsec"])
    assert abs(ref["median_flux_ratio"] - 1.0) < 0.03 and ref["flux_ratio_scatter"] < 0.05, ref


def test_near_lists_every_measurement_of_a_position(field):
    """`sources --near RA DEC`: the measurement of the brightest component, in sexagesimal or degrees."""
    from astropy.coordinates import SkyCoord

    c = max(field["comps"], key=lambda c: c["apparent_flux_jy"])
    got = json.loads(atarchive_ok(field["conf"], "sources", "--near", str(c["ra_deg"]), str(c["dec_deg"]),
                                  "--radius", "30", "--json"))
    assert len(got) == 1 and got[0]["separation_arcsec"] < 30 and got[0]["session"] == field["rows"][0]["session"]
    sc = SkyCoord(c["ra_deg"], c["dec_deg"], unit="deg")
    hms, dms = sc.ra.to_string(unit="hour", sep="hms", precision=2), sc.dec.to_string(sep="dms", precision=1,
                                                                                       alwayssign=True)
    again = json.loads(atarchive_ok(field["conf"], "sources", "--near", hms, dms, "--radius", "30", "--json"))
    assert [r["flux_jy"] for r in again] == [got[0]["flux_jy"]]
    assert json.loads(atarchive_ok(field["conf"], "sources", "--near", "0", "-80", "--json")) == []


def test_sources_rerun_only_when_their_parameters_or_image_change(field):
    """Up to date after the run; a new detection threshold re-runs the sources step (and the report that
    shows them), nothing upstream."""
    conf = field["conf"]
    assert json.loads(atarchive_ok(conf, "run", "--dry-run", "--json")) == []
    changed = field["root"] / "changed.toml"
    changed.write_text(conf.read_text().replace("[qa]", "[steps.sources]\nthresh_pix = 6.0\n[qa]")
                       .replace('"work"', f'"{field["root"] / "work"}"').replace('"cat.db"',
                                                                                f'"{field["root"] / "cat.db"}"')
                       .replace('"reference.csv"', f'"{field["root"] / "reference.csv"}"'))
    plan = json.loads(atarchive_ok(changed, "run", "--dry-run", "--json"))
    assert {r["step"] for r in plan} == {"sources", "report"}, plan
    assert all("params changed" in r["reason"] or r["step"] == "report" for r in plan), plan
    # a reference catalogue with other content (same settings) re-runs the check, i.e. the sources step
    ref2 = field["root"] / "reference2.csv"
    ref2.write_text((field["root"] / "reference.csv").read_text() + "10.0,-40.0,1.0,1.4e9\n")
    other = field["root"] / "other.toml"
    other.write_text(changed.read_text().replace("[steps.sources]\nthresh_pix = 6.0\n", "")
                     .replace(str(field["root"] / "reference.csv"), str(ref2)))
    plan = json.loads(atarchive_ok(other, "run", "--dry-run", "--json"))
    assert {r["step"] for r in plan} == {"sources", "report"} and "reference.sha1" in plan[0]["reason"], plan
