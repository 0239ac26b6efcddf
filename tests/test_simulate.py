"""The simulator: real ATA layout, truth consistent with the headers, physical amplitudes."""

from __future__ import annotations

import json
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
    assert res.truth_path == root / "truth" / "2025-06-01-20:10:00.json"
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
    assert {"demo", "tiny", "two-targets-wide", "medium"} <= set(list_presets())
    r = subprocess.run([sys.executable, "-m", "atarchive", "simulate", "--preset", "nope", "--out", str(tmp_path)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "no preset 'nope'" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("project = 'x'\n")
    r = subprocess.run([sys.executable, "-m", "atarchive", "simulate", "--spec", str(bad), "--out", str(tmp_path)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "start" in r.stderr and len(r.stderr.strip().splitlines()) == 1
