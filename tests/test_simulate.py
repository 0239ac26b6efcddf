"""The simulator: real ATA layout, truth consistent with the headers, physical amplitudes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import h5py
import numpy as np
import pytest

from atarchive import calibrators
from atarchive.scanner.discover import Indexer
from atarchive.simulate import SpecError, list_presets, load_spec, preset, simulate, spec_from_dict
from conftest import REPO, make_config
from atarchive.catalogue import Catalogue

EXAMPLE = REPO / "examples" / "simulate-example.toml"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    res = simulate(load_spec(EXAMPLE), root)
    return root, res, json.loads(res.truth_path.read_text())


def test_example_spec_writes_the_real_layout(example):
    root, res, truth = example
    assert res.session_dir == root / "projects" / "p123" / "2025-06-01-20:10:00"
    assert res.truth_path == root / "truth" / "p123" / "2025-06-01-20:10:00.json"
    assert len(res.files) == 5 * 2 * 3  # scans × LOs × subbands
    for f in res.files:
        stem = f.parent.parent.name
        assert f.name == f"{stem}.uvh5" and f.parent.name.startswith("Lo")
    subdirs = sorted({f.parent.name for f in res.files})
    assert subdirs == ["LoA.C0352", "LoA.C0544", "LoA.C0736", "LoB.C0352", "LoB.C0544", "LoB.C0736"]
    assert [s["stem"].split("_", 4)[4].rsplit("_", 1)[0] for s in truth["scans"]] == [
        "0137+331", "0137+331", "J0102+5824", "M 31 core", "J0102+5824"]
    assert [s["first_fluxcal_scan"] for s in truth["scans"]] == [True, False, False, False, False]


def test_indexer_agrees_with_truth(example, tmp_path):
    root, res, truth = example
    cfg = make_config(tmp_path, storage_roots=[str(root)])
    cat = Catalogue(cfg.catalogue)
    rep = Indexer(cat, cfg).scan()
    assert rep.errors == []
    s = cat.session("p123/2025-06-01-20:10:00")
    assert s["ingest_state"] == "ready" and s["layout"] == "nested"
    los = {lo["name"]: lo for lo in cat.los(s["id"])}
    for name, lo in truth["los"].items():
        assert los[name]["nchan"] == lo["nchan"] == 48
        assert los[name]["freq_start_hz"] == pytest.approx(lo["start_freq_hz"])
        assert los[name]["freq_end_hz"] == pytest.approx(lo["end_freq_hz"])
    files = cat.files(s["id"])
    assert {f["nants_data"] for f in files} == {len(truth["antennas"])} and {f["nants_telescope"] for f in files} == {42}
    fields = {f["name"]: f for f in cat.fields(s["id"])}
    for name, src in truth["sources"].items():
        assert fields[name]["ra_deg"] == pytest.approx(src["phase_centre_ra_deg"], abs=1e-6)
        assert fields[name]["dec_deg"] == pytest.approx(src["phase_centre_dec_deg"], abs=1e-6)
    cat.close()


def test_no_roles_in_the_data(example):
    _, res, _ = example
    with h5py.File(res.files[0], "r") as h:
        text = json.dumps({k: str(h["Header"][k][()]) for k in h["Header"] if isinstance(h["Header"][k], h5py.Dataset)})
    assert "flux_cal" not in text and "phase_cal" not in text and "target" not in text


def test_flux_calibrator_amplitude_is_pb2017_without_corruptions(tmp_path):
    spec = preset("tiny").model_copy(deep=True)
    spec.corruptions.enabled = False
    spec.noise_jy = 0.0
    spec.scans = spec.scans[:1]
    res = simulate(spec, tmp_path)
    with h5py.File(res.files[0], "r") as h:
        vis = h["Data/visdata"][()]
        a1, a2 = h["Header/ant_1_array"][()], h["Header/ant_2_array"][()]
        freqs = h["Header/freq_array"][()].ravel()
    cross = a1 != a2
    amp = np.abs(vis[cross, :, 0]).mean(axis=0)  # xx
    assert np.allclose(amp, calibrators.pb2017_flux("3C286", freqs), rtol=1e-5)
    assert np.abs(vis[cross, :, 1]).max() < 1e-6  # xy: unpolarised source


def test_first_fluxcal_scan_is_on_another_phase_model(tmp_path):
    spec = preset("tiny").model_copy(deep=True)
    spec.noise_jy = 0.0
    spec.scans = spec.scans[:2]
    res = simulate(spec, tmp_path)
    first, second = res.files[0], res.files[len(res.files) // 2]
    phases = []
    for f in (first, second):
        with h5py.File(f, "r") as h:
            v = h["Data/visdata"][()]
            cross = h["Header/ant_1_array"][()] != h["Header/ant_2_array"][()]
            phases.append(np.angle(v[cross][0, :, 0]))
    # same source and baseline; the delay/phase model differs, so the phase slope across the band differs
    slope = [np.polyfit(np.arange(len(p)), np.unwrap(p), 1)[0] for p in phases]
    assert abs(slope[0] - slope[1]) > 0.01


@pytest.mark.parametrize("patch, expect", [
    ({"bogus": 1}, "bogus: unknown key"),
    ({"scans": [{"source": "nope", "duration_s": 10}]}, "is not one of the sources"),
    ({"n_antennas": 2}, "n_antennas"),
    ({"sources": [{"name": "x", "ra": 1.0}]}, "needs ra, dec and flux_jy"),
    ({"sources": [{"name": "x", "calibrator": "3C999"}]}, "not a Perley-Butler 2017 standard"),
])
def test_bad_spec_names_the_key(patch, expect):
    import tomllib

    data = tomllib.loads(EXAMPLE.read_text())
    data.update(patch)
    with pytest.raises(SpecError, match=expect):
        spec_from_dict(data)


def test_presets_and_cli_errors(tmp_path):
    assert {"demo", "tiny", "two-targets-wide", "medium", "selfcal", "degraded"} <= set(list_presets())
    r = subprocess.run([sys.executable, "-m", "atarchive", "simulate", "--preset", "nope", "--out", str(tmp_path)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "no preset 'nope'" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("project = 'x'\n")
    r = subprocess.run([sys.executable, "-m", "atarchive", "simulate", "--spec", str(bad), "--out", str(tmp_path)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "start" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# -- issue 16 / 14: field components, phase noise, bad antennas, RFI ------------------------------------------
def _small_spec(sources, scans, corruptions=None, **top):
    """A small session of our own (not a preset): one LO of 32 × 2 MHz channels unless told."""
    data = {"project": "ptest", "start": "2025-05-01T06:00:00Z", "n_antennas": 8, "integration_s": 10.0,
            "noise_jy": 0.0, "seed": 21,
            "los": [{"name": "A", "start_freq_hz": 1.30e9, "subbands": 2, "channels_per_subband": 16,
                     "channel_width_hz": 2.0e6}],
            "sources": sources, "scans": scans, "corruptions": corruptions or {"enabled": False}}
    data.update(top)
    from datetime import datetime

    data["start"] = datetime.fromisoformat(data["start"].replace("Z", "+00:00"))
    return spec_from_dict(data)


def _read(path):
    from atarchive.casa.child import offline_astropy

    offline_astropy()
    from pyuvdata import UVData

    uv = UVData()
    uv.read(str(path), file_type="uvh5", fix_old_proj=False, run_check=False, run_check_acceptability=False)
    return uv


def _cross(path):
    with h5py.File(path, "r") as h:
        v = h["Data/visdata"][()].astype(np.complex128)
        a1, a2 = h["Header/ant_1_array"][()], h["Header/ant_2_array"][()]
        t = h["Header/time_array"][()]
    return v, a1, a2, t


def test_tiny_preset_data_unchanged():
    """Golden values of `tiny` written before components/phase noise/bad antennas/RFI existed (the new
    options draw from their own generators): |cross| summed per file, and one cross visibility per scan.
    (Bit-for-bit identity of tiny, demo, two-targets-wide and medium was checked against main by sha256.)"""
    import tempfile

    golden_sums = [53654.6079, 54324.5812, 49335.8337, 49965.6419, 80167.6043, 81164.3859, 73714.8038, 74660.7197,
                   7138.5779, 7236.0896, 6801.7418, 6896.6568, 16022.4834, 16193.1417, 14090.531, 14249.2185,
                   7060.2445, 7158.3037, 6727.3032, 6821.4353]
    golden_vis = [-6.890794 + 9.294984j, -11.282774 + 2.472651j, -1.49258 + 0.352957j, -1.086406 - 0.293003j,
                  -1.493947 + 0.320387j]
    with tempfile.TemporaryDirectory() as d:
        res = simulate(preset("tiny"), d)
        sums, vis = [], []
        for f in res.files:
            v, a1, a2, _ = _cross(f)
            c = v[a1 != a2]
            sums.append(float(np.abs(c).sum()))
            vis.append(complex(c[11, 6, 0]))
        truth = json.loads(res.truth_path.read_text())
    assert sums == pytest.approx(golden_sums, rel=1e-6)
    assert vis[::4] == pytest.approx(golden_vis, abs=2e-6)
    assert truth["bad_antennas"] == [] and truth["rfi"] == []
    assert all(s["components"] == [] for s in truth["sources"].values())


def test_beam_model():
    from atarchive import beam

    assert beam.fwhm_deg(1.4e9) == pytest.approx(2.5)
    assert beam.response(1.25, 1.4e9) == pytest.approx(0.5)
    assert beam.response(0.0, 3.0e9) == 1.0
    assert beam.separation_deg(10.0, 60.0, 10.0, 61.5) == pytest.approx(1.5)
    assert beam.separation_deg(10.0, 60.0, 12.0, 60.0) == pytest.approx(0.99995, abs=1e-4)  # 2° of RA at dec 60


def test_components_carry_their_beam_attenuated_flux(tmp_path):
    """Each field has a negligible main source and one component; phased to the component's true position
    (from the truth file) the visibilities are constant at flux(f) × exp(-4 ln2 (r / (3.5° / f_GHz))²)."""
    sources = [
        {"name": "field one", "ra": 150.0, "dec": 30.0, "flux_jy": 1e-6,
         "components": [{"offset_arcsec": [1800.0, -1200.0], "flux_jy": 2.0, "spectral_index": -0.7}]},
        {"name": "field two", "ra": "14h00m00s", "dec": "+45d00m00s", "flux_jy": 1e-6,
         "components": [{"offset_arcsec": [-4000.0, 3000.0], "flux_jy": 1.0}]},
    ]
    spec = _small_spec(sources, [{"source": "field one", "duration_s": 60}, {"source": "field two", "duration_s": 60}])
    res = simulate(spec, tmp_path)
    truth = json.loads(res.truth_path.read_text())
    from astropy.coordinates import SkyCoord

    import astropy.units as u

    per_scan = len(res.files) // 2
    for k, name in enumerate(["field one", "field two"]):
        src = truth["sources"][name]
        (comp,) = src["components"]
        centre = SkyCoord(src["phase_centre_ra_deg"] * u.deg, src["phase_centre_dec_deg"] * u.deg)
        pos = SkyCoord(comp["ra_deg"] * u.deg, comp["dec_deg"] * u.deg)
        sep = centre.separation(pos).deg
        assert comp["separation_deg"] == pytest.approx(sep, rel=1e-6)
        dx, dy = centre.spherical_offsets_to(pos)
        assert (dx.arcsec, dy.arcsec) == pytest.approx(tuple(comp["offset_arcsec"]), rel=0.02)
        lo = comp["flux_per_lo"]["A"]
        f0 = lo["freq_hz"]
        want0 = comp["flux_jy"] * (f0 / 1.4e9) ** comp["spectral_index"] * math.exp(
            -4 * math.log(2) * (sep / (3.5 / (f0 / 1e9))) ** 2)
        assert lo["apparent_flux_jy"] == pytest.approx(want0, rel=1e-9)
        assert 0.3 < lo["beam_gain"] < 0.95
        for f in res.files[k * per_scan:(k + 1) * per_scan]:
            uv = _read(f)
            cross = uv.ant_1_array != uv.ant_2_array
            at_centre = np.abs(uv.data_array[cross, :, 0].mean(axis=0))
            assert at_centre.max() < 0.2 * comp["flux_jy"]  # offset: decorrelated at the phase centre
            uv.phase(lon=math.radians(comp["ra_deg"]), lat=math.radians(comp["dec_deg"]), cat_name="comp",
                     epoch="J2000")
            freqs = uv.freq_array.ravel()
            want = comp["flux_jy"] * (freqs / 1.4e9) ** comp["spectral_index"] * np.exp(
                -4 * np.log(2) * (sep / (3.5 / (freqs / 1e9))) ** 2)
            v = uv.data_array[cross, :, 0]
            assert np.allclose(v.mean(axis=0).real, want, rtol=2e-3)
            assert np.abs(v - want[None, :]).max() < 5e-3 * want.max()  # every baseline and time: a point there
            assert np.abs(uv.data_array[cross, :, 1]).max() < 1e-6  # unpolarised


def test_phase_noise_has_the_requested_rms_and_timescale(tmp_path):
    """A point source at the phase centre, every other corruption zero and no thermal noise: each
    baseline's phase about its mean is the difference of two antennas' noise, rms √2 σ, autocorrelation
    exp(-lag / τ); x and y are independent."""
    sigma, tau = 30.0, 60.0
    corr = {"gain_amp_spread": 0.0, "gain_amp_drift": 0.0, "gain_phase_drift_deg": 0.0, "delay_ns": 0.0,
            "bandpass_ripple": 0.0, "phase_noise_deg": sigma, "phase_noise_timescale_s": tau}
    spec = _small_spec([{"name": "J0000+4500", "ra": 0.5, "dec": 45.0, "flux_jy": 1.0}],
                       [{"source": "J0000+4500", "duration_s": 3000}],
                       corr, n_antennas=12,
                       los=[{"name": "A", "start_freq_hz": 1.4e9, "subbands": 1, "channels_per_subband": 2}])
    res = simulate(spec, tmp_path)
    v, a1, a2, t = _cross(res.files[0])  # 300 integrations 10 s apart, 66 baselines
    cross = a1 != a2
    ntime = len(np.unique(t[cross]))
    rms, acf1, acf6, d = [], [], [], {}
    for p in (0, 3):  # xx, yy
        x = v[cross, 0, p].reshape(ntime, -1)  # (ntime, nbl)
        assert np.allclose(np.abs(x), 1.0, atol=1e-5)  # phase only: amplitudes untouched
        d[p] = np.angle(x * np.exp(-1j * np.angle(x.mean(axis=0)))[None, :])
        rms.append(np.sqrt((d[p] ** 2).mean()))
        dd = d[p] - d[p].mean(axis=0)
        acf1.append((dd[1:] * dd[:-1]).mean() / (dd ** 2).mean())
        acf6.append((dd[6:] * dd[:-6]).mean() / (dd ** 2).mean())
    xy = np.corrcoef(d[0].ravel(), d[3].ravel())[0, 1]
    want = math.radians(sigma) * math.sqrt(2)
    assert rms == pytest.approx([want, want], rel=0.12)
    assert acf1 == pytest.approx([math.exp(-10 / tau)] * 2, abs=0.05)
    # e^-1 at one timescale (0.37); removing each baseline's mean biases the estimate a little low
    assert all(0.26 < a < 0.46 for a in acf6), acf6
    assert abs(xy) < 0.15


def test_phase_noise_off_when_zero(tmp_path):
    corr = {"gain_amp_spread": 0.0, "gain_amp_drift": 0.0, "gain_phase_drift_deg": 0.0, "delay_ns": 0.0,
            "bandpass_ripple": 0.0, "phase_noise_deg": 0.0}
    spec = _small_spec([{"name": "J0000+4500", "ra": 0.5, "dec": 45.0, "flux_jy": 1.0}],
                       [{"source": "J0000+4500", "duration_s": 300}], corr)
    res = simulate(spec, tmp_path)
    v, a1, a2, _ = _cross(res.files[0])
    x = v[a1 != a2, :, 0].reshape(-1, 28, v.shape[1])  # (ntime, nbl, nchan)
    assert np.abs(np.angle(x * np.conj(x[:1]))).max() < 1e-5  # constant phase per baseline


def test_bad_antennas_carry_no_correlated_signal(tmp_path):
    base = _small_spec([{"name": "J0000+4500", "ra": 0.5, "dec": 45.0, "flux_jy": 1.0}],
                       [{"source": "J0000+4500", "duration_s": 120}])
    ants = simulate(base, tmp_path / "probe").truth_path
    names = json.loads(ants.read_text())["antennas"]
    bad = [names[1], names[5]]
    spec = _small_spec([{"name": "J0000+4500", "ra": 0.5, "dec": 45.0, "flux_jy": 1.0}],
                       [{"source": "J0000+4500", "duration_s": 120}], {"bad_antennas": bad}, noise_jy=0.05)
    res = simulate(spec, tmp_path / "bad")
    truth = json.loads(res.truth_path.read_text())
    assert truth["antennas"] == names and truth["bad_antennas"] == bad
    from atarchive.simulate import _ata_antennas

    allnames, allnums, _ = _ata_antennas()
    bad_nums = {int(n) for a, n in zip(allnames, allnums) if a in bad}
    for f in res.files:
        v, a1, a2, _ = _cross(f)
        for i, j in sorted({(int(a), int(b)) for a, b in zip(a1, a2) if a != b}):
            rows = (a1 == i) & (a2 == j)
            x = v[rows][:, :, 0]
            nsamp = x.size
            coherent = abs(x.mean())  # the gains drift slowly: a few % decorrelation at most over 2 min
            if i in bad_nums or j in bad_nums:
                assert coherent < 5 * 0.05 * math.sqrt(2) / math.sqrt(nsamp)
                assert np.sqrt((np.abs(x) ** 2).mean()) == pytest.approx(0.05 * math.sqrt(2), rel=0.2)  # noise
            else:
                assert coherent > 0.5  # gains 1 ± 0.15 each
    with pytest.raises(SpecError, match="bad_antennas: 'zz' has no data"):
        _small_spec([{"name": "J0000+4500", "ra": 0.5, "dec": 45.0, "flux_jy": 1.0}],
                    [{"source": "J0000+4500", "duration_s": 120}], {"bad_antennas": ["zz"]})


def test_rfi_blocks_where_asked_and_nowhere_else(tmp_path):
    rfi = [{"channels": [14, 18], "time_fraction": [0.55, 0.8], "amplitude_jy": 40.0, "lo": "A"},
           {"channels": [3, 3], "amplitude_jy": 20.0}]
    los = [{"name": "A", "start_freq_hz": 1.3e9, "subbands": 2, "channels_per_subband": 16},
           {"name": "B", "start_freq_hz": 1.6e9, "subbands": 2, "channels_per_subband": 16}]
    spec = _small_spec([{"name": "J0000+4500", "ra": 0.5, "dec": 45.0, "flux_jy": 1.0}],
                       [{"source": "J0000+4500", "duration_s": 100}, {"source": "J0000+4500", "duration_s": 100}],
                       {"rfi": rfi}, noise_jy=0.02, los=los)
    res = simulate(spec, tmp_path)
    truth = json.loads(res.truth_path.read_text())
    (r0, r1) = truth["rfi"]
    assert r0["lo"] == "A" and set(r0["freq_hz"]) == {"A"} and set(r1["freq_hz"]) == {"A", "B"}
    assert r0["freq_hz"]["A"] == pytest.approx([1.3e9 + 14 * 0.5e6, 1.3e9 + 18 * 0.5e6])
    assert r0["scans"] == [truth["scans"][1]["stem"]] and len(r1["scans"]) == 2
    by_lo = {"A": [], "B": []}
    for f in res.files:  # stitch each scan's subbands back into whole LOs
        lo = f.parent.name[2]
        by_lo[lo].append(f)
    seen_rfi = 0
    for lo, files in by_lo.items():
        for scan in range(2):
            parts = [_cross(f) for f in files if truth["scans"][scan]["stem"] in str(f)]
            v = np.concatenate([p[0] for p in parts], axis=1)
            a1, a2, t = parts[0][1:]
            cross = a1 != a2
            amp = np.abs(v[cross])  # (nblt, nchan, npol)
            mjd = t[cross] - 2400000.5
            expect = np.zeros(amp.shape[:2])
            for r in truth["rfi"]:
                if lo in r["freq_hz"]:
                    inside = (mjd >= r["start_mjd"]) & (mjd < r["end_mjd"])
                    expect[np.ix_(inside, np.arange(r["channels"][0], r["channels"][1] + 1))] += r["amplitude_jy"]
            hit = expect > 0
            seen_rfi += hit.sum()
            for p in range(4):
                assert np.all(np.abs(amp[:, :, p][hit] - expect[hit]) < 5), (lo, scan, p)  # strong, every pol
                if p in (0, 3):
                    assert np.all(amp[:, :, p][~hit] < 1.6)  # the 1 Jy source × gains + noise
                else:
                    assert np.all(amp[:, :, p][~hit] < 0.2)
    assert seen_rfi > 0
    with pytest.raises(SpecError, match="rfi.0.channels: LO A has 32 channels"):
        _small_spec([{"name": "s", "ra": 0.5, "dec": 45.0, "flux_jy": 1.0}], [{"source": "s", "duration_s": 10}],
                    {"rfi": [{"channels": [30, 32]}]})
    with pytest.raises(SpecError, match="rfi.0.lo: 'Z' is not one of the LOs"):
        _small_spec([{"name": "s", "ra": 0.5, "dec": 45.0, "flux_jy": 1.0}], [{"source": "s", "duration_s": 10}],
                    {"rfi": [{"channels": [1, 2], "lo": "Z"}]})


def test_selfcal_preset_spreads_components_over_the_inner_beam():
    from atarchive import beam

    spec = preset("selfcal")
    (target,) = [s for s in spec.sources if s.components]
    assert len(target.components) >= 5 and spec.corruptions.phase_noise_deg == 30.0
    assert spec.corruptions.phase_noise_timescale_s == 60.0
    fmax = max(lo.freqs()[-1] for lo in spec.los)
    seps = [float(beam.separation_deg(target.ra_deg, target.dec_deg, *target.component_position(c)))
            for c in target.components]
    assert all(0.2 < s < beam.fwhm_deg(fmax) / 2 for s in seps)  # inside the half-power radius
    assert max(seps) - min(seps) > 0.4
