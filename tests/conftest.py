"""Shared fixtures: real SQLite catalogues in tmp_path, real ATA headers in the real layouts."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atarchive import config
from atarchive.catalogue import Catalogue

REPO = Path(__file__).resolve().parent.parent
ATA_REAL = REPO / "tests" / "data" / "ata-real"  # two real ATA subband files (BSD-2, see its LICENSE)
REAL_STEM = "uvh5_60647_62965_9760406_3c286_0001"
REAL_FILES = {352: ATA_REAL / f"ata.LoA.C0352.{REAL_STEM}.uvh5", 544: ATA_REAL / f"ata.LoA.C0544.{REAL_STEM}.uvh5"}


def make_config(tmp_path: Path, **sections) -> config.Config:
    data = {"storage_roots": ["storage"], "work_root": "work", "catalogue": "cat.db",
            "scan": {"stable_seconds": 0}}
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    return config.from_dict(data, base=tmp_path)


@pytest.fixture
def cfg(tmp_path):
    return make_config(tmp_path)


@pytest.fixture
def cat(cfg):
    c = Catalogue(cfg.catalogue)
    yield c
    c.close()


def put_real_nested(root: Path, project="p001", session="2024-12-12-17:29:25", stem=REAL_STEM,
                    subbands=(352, 544), lo="A") -> Path:
    """Copy the real ATA subband files into the nested layout under ``root``; return the session dir."""
    sdir = root / "projects" / project / session
    for sb in subbands:
        d = sdir / stem / f"Lo{lo}.C{sb:04d}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(REAL_FILES[sb], d / f"{stem}.uvh5")
    return sdir


def put_real_flat(root: Path, project="p001", session="2024-12-12-17:29:25", stem=REAL_STEM, subbands=(352, 544),
                  lo="A") -> Path:
    sdir = root / "projects" / project / session
    sdir.mkdir(parents=True, exist_ok=True)
    for sb in subbands:
        shutil.copy(REAL_FILES[sb], sdir / f"ata.Lo{lo}.C{sb:04d}.{stem}.uvh5")
    return sdir


def tree_checksums(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() + f":{st.st_mtime_ns}"
    return out


def assert_fluxes_match_truth(rows: list[dict], truth: dict) -> None:
    """`fluxes --json` rows of one session against the simulator's truth: flux calibrators within 1 %
    of Perley-Butler 2017 (and the model recorded), phase calibrators 2 %, targets 3 % and < 1″ from
    their true position; one row per field and LO."""
    from atarchive import calibrators

    seen = set()
    for r in rows:
        src = truth["sources"][r["field"]]
        if src["calibrator"]:
            expect, tol = calibrators.pb2017_flux(src["calibrator"], r["freq_hz"]), 0.01
            assert r["model_flux_jy"] == pytest.approx(expect, rel=1e-6)
        else:
            expect = src["flux_jy"] * (r["freq_hz"] / src["ref_freq_hz"]) ** src["spectral_index"]
            tol = 0.03 if src["role_hint"] == "target" else 0.02
        assert abs(r["flux_jy"] / expect - 1) < tol, (r["field"], r["lo"], r["flux_jy"], expect)
        if src["role_hint"] == "target":
            dra = (r["ra_deg"] - src["ra_deg"]) * math.cos(math.radians(src["dec_deg"])) * 3600
            ddec = (r["dec_deg"] - src["dec_deg"]) * 3600
            assert math.hypot(dra, ddec) < 1.0, (r["field"], r["lo"], dra, ddec)
        seen.add((r["field"], r["lo"]))
    assert seen == {(f, lo) for f in truth["sources"] for lo in truth["los"]}


def atarchive_ok(conf: Path, *args: str, timeout: float = 600) -> str:
    """Run `atarchive --config CONF ARGS…` as a user would; it must exit 0. Returns its stdout."""
    p = subprocess.run([sys.executable, "-m", "atarchive", "--config", str(conf), *args], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (args, p.stdout[-2000:], p.stderr[-2000:])
    return p.stdout


def assert_png_shows_something(path: Path, thumbnail: bool = False):
    """A PNG that decodes and shows something: not one flat colour. A thumbnail of an image: its field's
    source, drawn in the colour map's brightest colours (inferno: yellow-white, red channel ~1; the
    beam ellipse is cyan, no red), in the middle of the image area. Returns the pixels."""
    from matplotlib.image import imread

    a = imread(path)[..., :3]
    h, w = a.shape[:2]
    assert h >= 100 and w >= 100, (path, a.shape)
    assert a.std() > 0.05, (path, float(a.std()))
    if thumbnail:
        mid = a[h // 4:3 * h // 4, w // 4:3 * w // 4]
        assert mid[..., 0].max() > 0.8, (path, float(mid[..., 0].max()))  # ~0.98 with a source, 0 blank
    return a


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory):
    """The `tiny` preset processed once, uninterrupted and serially (one worker, threads executor),
    through the CLI: the record other runs of the same source files (Dask, crashes) are compared with.
    Its storage is shared read-only; fingerprints include the source files' paths."""
    import json

    from atarchive.simulate import preset, simulate

    root = tmp_path_factory.mktemp("tiny_reference")
    truth = json.loads(simulate(preset("tiny"), root / "storage").truth_path.read_text())
    (root / "serial").mkdir()
    conf = root / "serial" / "atarchive.toml"
    conf.write_text(f'storage_roots = ["{root / "storage"}"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n[steps.compress]\nchanbin = 2\n[steps.image]\nmax_imsize = 256\n"
                    '[execution]\nexecutor = "threads"\nworkers = 1\n')
    (conf.parent / "work").mkdir(exist_ok=True)
    atarchive_ok(conf, "scan")
    run = json.loads(atarchive_ok(conf, "run", "--json", timeout=900))
    return {"storage": root / "storage", "truth": truth, "conf": conf, "db": conf.parent / "cat.db",
            "work": conf.parent / "work", "run": run}


def cli_run(conf, *args, check=0, timeout=900):
    """`atarchive --config CONF ARGS…` as a user runs it; with ``check``, its exit code must be that."""
    p = subprocess.run([sys.executable, "-m", "atarchive", "--config", str(conf), *args], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check is not None:
        assert p.returncode == check, (args, p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    return p
