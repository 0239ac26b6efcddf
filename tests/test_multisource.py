"""Per-scan files cut by pyuvdata from a multi-source observation (issue #13, item 1).

pyuvdata's ``select()`` keeps every phase-centre catalogue entry, so each per-scan file lists all the
sources of the observation; ``phase_center_id_array`` says which one its data use. The files here are
written by pyuvdata itself: a simulated session's scans are joined into one multi-source UVData
object (one LO subband at a time), then cut again per scan with ``select(times=...)`` and
``write_uvh5``, into the real ATA layout.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from atarchive.simulate import preset, simulate, spec_from_dict

from conftest import cli_run as cli  # noqa: E402

KEY = "ptiny/2025-03-15-10:40:00"


def write_conf(root: Path, storage: Path) -> Path:
    conf = root / "atarchive.toml"
    conf.write_text(f'storage_roots = ["{storage}"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n[steps.compress]\nchanbin = 2\n"
                    "[steps.image]\nmax_imsize = 256\n[execution]\nretry_backoff_s = 0.5\n")
    (conf.parent / "work").mkdir(exist_ok=True)
    return conf


def _read(path):
    from pyuvdata import UVData

    uv = UVData()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.read(path, fix_old_proj=False)
    return uv


def _write(uv, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.write_uvh5(str(path), clobber=True)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """The tiny preset reduced to one LO of one subband, 6 antennas: scans 3C286, 3C286, phase cal,
    target, phase cal. Returns the simulated files and the same scans cut from a multi-source object."""
    root = tmp_path_factory.mktemp("multisource")
    spec = preset("tiny").model_dump()
    spec["los"] = spec["los"][:1]
    spec["los"][0]["subbands"] = 1
    spec["n_antennas"] = 6
    res = simulate(spec_from_dict(spec), root / "orig")
    orig_projects = root / "orig" / "projects"
    cut = root / "cut"
    by_subdir: dict[str, list[Path]] = {}
    for f in res.files:
        by_subdir.setdefault(f.parent.name, []).append(f)
    multi = {}
    for subdir, files in by_subdir.items():
        files = sorted(files, key=lambda p: p.parent.parent.name)  # stems sort in time order
        uvs = [_read(f) for f in files]
        whole = uvs[0]
        for uv in uvs[1:]:
            whole = whole + uv  # one multi-source object: every source in its phase-centre catalogue
        multi[subdir] = (whole, files, uvs)
        for f, uv in zip(files, uvs):
            part = whole.select(times=np.unique(uv.time_array), inplace=False)
            _write(part, cut / "projects" / f.relative_to(orig_projects))
    return {"root": root, "orig": root / "orig", "cut": cut, "multi": multi, "res": res}


def _fields_by_scan(show: dict) -> dict[str, str]:
    return {s["stem"]: s["field"] for s in show["scans"]}


def test_cut_files_carry_every_centre_and_index_as_the_one_they_use(sim, tmp_path):
    import h5py

    files = sorted((sim["cut"] / "projects").rglob("*.uvh5"))
    assert len(files) == 5
    for f in files:  # the situation of the issue: the whole catalogue in each per-scan file
        with h5py.File(f, "r") as h:
            assert len(h["Header/phase_center_catalog"]) == 3
            assert len(set(h["Header/phase_center_id_array"][()])) == 1
    conf = write_conf(tmp_path, sim["cut"])
    cli(conf, "scan")
    show = json.loads(cli(conf, "show", KEY, "--json").stdout)
    assert show["files_with_errors"] == [] and show["session"]["error"] is None
    by_scan = _fields_by_scan(show)
    for stem, field in by_scan.items():  # the source named in each stem is the field of that scan
        assert stem.split("_", 4)[4].rsplit("_", 1)[0] == field, (stem, field)
    roles = {f["name"]: f["role"] for f in show["fields"]}
    assert roles == {"1331+305": "flux_cal", "J1407+2827": "phase_cal", "target_1": "target"}
    # and exactly what the original single-source files give, positions included
    (tmp_path / "orig").mkdir()
    conf0 = write_conf(tmp_path / "orig", sim["orig"])
    cli(conf0, "scan")
    show0 = json.loads(cli(conf0, "show", KEY, "--json").stdout)
    assert _fields_by_scan(show0) == by_scan
    strip = lambda fs: sorted((f["name"], f["role"], round(f["ra_deg"], 6), round(f["dec_deg"], 6)) for f in fs)  # noqa: E731
    assert strip(show["fields"]) == strip(show0["fields"])
    plan = json.loads(cli(conf, "run", "--dry-run", "--json").stdout)
    assert plan and all(r["session"] == KEY for r in plan)


def test_file_using_two_centres_fails_its_session_with_one_line(sim, tmp_path):
    storage = tmp_path / "storage"
    whole, files, uvs = next(iter(sim["multi"].values()))
    times = np.concatenate([np.unique(uvs[2].time_array), np.unique(uvs[3].time_array)])  # phase cal + target
    for f, uv in zip(files, uvs):
        dest = storage / "projects" / f.relative_to(sim["orig"] / "projects")
        _write(whole.select(times=times if f == files[3] else np.unique(uv.time_array), inplace=False), dest)
    bad = storage / "projects" / files[3].relative_to(sim["orig"] / "projects")
    conf = write_conf(tmp_path, storage)
    scan = json.loads(cli(conf, "scan", "--json").stdout)
    assert [e["path"] for e in scan["errors"]] == [str(bad)]
    show = json.loads(cli(conf, "show", KEY, "--json").stdout)
    err = show["session"]["error"]
    assert err.startswith(str(bad)) and "\n" not in err and len(err) < 400, err
    assert "2 phase centres" in err and "J1407+2827" in err and "target_1" in err
    assert {f["name"] for f in show["fields"]} == {"1331+305", "J1407+2827", "target_1"}
    st = json.loads(cli(conf, "status", "--json").stdout)
    (row,) = st["sessions"]
    assert row["state"] == "failed" and row["error"] == err
    run = cli(conf, "run", "--json", check=None)
    assert "Traceback" not in run.stderr
    assert json.loads(cli(conf, "status", "--json").stdout)["sessions"][0]["error"] == err


@pytest.mark.casa
def test_session_cut_from_a_multisource_object_runs_to_done(sim, tmp_path):
    conf = write_conf(tmp_path, sim["cut"])
    cli(conf, "scan")
    cli(conf, "run", "--json")
    (row,) = json.loads(cli(conf, "status", "--json").stdout)["sessions"]
    assert row["state"] == "done", row
    fl = json.loads(cli(conf, "fluxes", KEY, "--json").stdout)
    assert {r["field"] for r in fl} == {"1331+305", "J1407+2827", "target_1"}
    fc = [r for r in fl if r["field"] == "1331+305"]
    assert fc and all(abs(r["flux_jy"] / r["model_flux_jy"] - 1) < 0.1 for r in fc), fc


def test_files_indexed_before_the_fix_are_read_again_once(sim, tmp_path):
    """A catalogue from before this fix holds the catalogue's first entry as every file's field;
    the next scan reads those headers once more and puts each scan right (then never again)."""
    import sqlite3

    conf = write_conf(tmp_path, sim["cut"])
    cli(conf, "scan")
    good = _fields_by_scan(json.loads(cli(conf, "show", KEY, "--json").stdout))
    db = sqlite3.connect(tmp_path / "cat.db")
    with db:  # what the old indexer wrote: one field for all, no phase_centre_ids in the header record
        for fid, header in db.execute("SELECT id, header FROM files").fetchall():
            h = json.loads(header)
            h.pop("phase_centre_ids")
            db.execute("UPDATE files SET field = 'J1407+2827', header = ? WHERE id = ?", [json.dumps(h), fid])
        db.execute("UPDATE scans SET field = 'J1407+2827'")
    db.close()
    assert set(_fields_by_scan(json.loads(cli(conf, "show", KEY, "--json").stdout)).values()) == {"J1407+2827"}
    rep = json.loads(cli(conf, "scan", "--json").stdout)
    assert rep["headers_read"] == 5 and rep["sessions_touched"] == [KEY]
    assert _fields_by_scan(json.loads(cli(conf, "show", KEY, "--json").stdout)) == good
    assert json.loads(cli(conf, "scan", "--json").stdout)["headers_read"] == 0


def test_one_source_under_two_catalogue_ids_is_one_field(sim, tmp_path):
    """Two catalogue entries for the same source (name and position) used by one file: one field."""
    import h5py

    from atarchive.scanner.uvh5 import read_header

    src = next(p for p in sorted((sim["cut"] / "projects").rglob("*.uvh5")) if "J1407" in p.name)
    f = tmp_path / src.name
    f.write_bytes(src.read_bytes())
    with h5py.File(f, "r+") as h:
        cat = h["Header/phase_center_catalog"]
        ids = h["Header/phase_center_id_array"]
        used = str(int(ids[0]))
        cat.copy(cat[used], "7")  # the same entry again, as id 7, for the second half of the rows
        arr = ids[()]
        arr[len(arr) // 2:] = 7
        ids[...] = arr
    hdr = read_header(f)
    assert hdr.field == "J1407+2827" and len(hdr.phase_centres) == 1 and hdr.several_centres() is None
    with h5py.File(f, "r+") as h:  # a different position under the same name: two fields
        h["Header/phase_center_catalog/7/cat_lat"][()] = h["Header/phase_center_catalog/7/cat_lat"][()] + 0.01
    hdr = read_header(f)
    assert len(hdr.phase_centres) == 2 and "2 phase centres" in hdr.several_centres()
