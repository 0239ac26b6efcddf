"""copy by time chunks (bounded memory for long scans) writes the MS a whole-scan conversion writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atarchive.execution.children import run_in_child
from atarchive.simulate import preset, simulate

pytestmark = pytest.mark.casa
REPO = str(Path(__file__).resolve().parent.parent)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "pyuvdata"])
def test_chunked_conversion_equals_whole_scan(tmp_path, direct):
    simulate(preset("tiny"), tmp_path / "storage")
    files = sorted(str(p) for p in (tmp_path / "storage").rglob("*.uvh5") if "/LoA." in str(p))
    stem = sorted({Path(f).parent.parent.name for f in files})[1]  # a scan with several integrations
    scan_files = [f for f in files if f"/{stem}/" in f]
    assert len(scan_files) >= 2  # several subbands merged in frequency
    env = {**os.environ, "PYTHONPATH": REPO}
    kw = {"workdir": tmp_path / "w", "log_path": tmp_path / "convert.log", "env": env}
    whole = run_in_child("atarchive.casa.copy:uvh5_to_ms", {"files": scan_files, "out_ms": str(tmp_path / "a.ms"), "direct": direct},
                         **kw)
    chunked = run_in_child("atarchive.casa.copy:uvh5_to_ms",
                           {"files": scan_files, "out_ms": str(tmp_path / "b.ms"), "times_per_chunk": 2,
                            "direct": direct}, **kw)
    assert whole["writer"] == chunked["writer"] == ("direct" if direct else "pyuvdata")
    assert whole["chunks"] == 1 and chunked["chunks"] == -(-whole["ntimes"] // 2) >= 3
    cmp = run_in_child("tests.casa_probe:ms_compare", {"a": str(tmp_path / "a.ms"), "b": str(tmp_path / "b.ms")},
                       **kw)
    assert cmp["diffs"] == [] and cmp["ntimes"] == whole["ntimes"], cmp
    assert not list(tmp_path.glob("b.ms.chunk*"))
