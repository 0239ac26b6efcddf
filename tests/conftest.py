"""Shared fixtures: real SQLite catalogues in tmp_path, real ATA headers in the real layouts."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from atarchive import config
from atarchive.catalogue import Catalogue

REPO = Path(__file__).resolve().parent.parent
ATA_REAL = REPO.parent / "shared" / "data" / "ata-real"
if not ATA_REAL.is_dir():  # CI clones next to shared/
    ATA_REAL = Path("/work/shared/data/ata-real")
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
