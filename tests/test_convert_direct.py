"""copy writes the MS straight from chunked uvh5 reads (atarchive.casa.mswrite); the result must be
the MS pyuvdata's read + write_ms gives, table by table, column by column."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from atarchive.casa import h5chunks
from atarchive.execution.children import run_in_child
from atarchive.simulate import preset, simulate
from conftest import REAL_FILES

REPO = str(Path(__file__).resolve().parent.parent)


def _convert(tmp_path: Path, files: list[str], name: str, **kw) -> dict:
    env = {**os.environ, "PYTHONPATH": REPO}
    return run_in_child("atarchive.casa.copy:uvh5_to_ms", {"files": files, "out_ms": str(tmp_path / name), **kw},
                        workdir=tmp_path / "w", log_path=tmp_path / f"{name}.log", env=env)


def _identical(tmp_path: Path, a: str, b: str) -> dict:
    env = {**os.environ, "PYTHONPATH": REPO}
    return run_in_child("tests.casa_probe:ms_identical", {"a": str(tmp_path / a), "b": str(tmp_path / b)},
                        workdir=tmp_path / "w", log_path=tmp_path / "cmp.log", env=env)


@pytest.mark.casa
def test_direct_writer_equals_write_ms_whole_and_chunked(tmp_path):
    simulate(preset("tiny"), tmp_path / "storage")
    files = sorted(str(p) for p in (tmp_path / "storage").rglob("*.uvh5") if "/LoA." in str(p))
    stem = sorted({Path(f).parent.parent.name for f in files})[1]  # a scan with several integrations
    scan_files = [f for f in files if f"/{stem}/" in f]
    assert len(scan_files) >= 2
    ref = _convert(tmp_path, scan_files, "ref.ms", direct=False)
    whole = _convert(tmp_path, scan_files, "whole.ms")
    chunked = _convert(tmp_path, scan_files, "chunked.ms", times_per_chunk=2)
    assert (ref["writer"], whole["writer"], chunked["writer"]) == ("pyuvdata", "direct", "direct")
    assert chunked["chunks"] == -(-whole["ntimes"] // 2) >= 3
    for name in ("whole.ms", "chunked.ms"):
        cmp = _identical(tmp_path, "ref.ms", name)
        assert cmp["diffs"] == [] and cmp["columns"] >= 100, (name, cmp)
    assert {k: v for k, v in whole.items() if k not in ("writer", "_call_seconds")} == {
        k: v for k, v in ref.items() if k not in ("writer", "_call_seconds")}


@pytest.mark.casa
def test_direct_writer_on_real_ata_files(tmp_path):
    """Real ATA subbands: baselines stored both ways round and garbage nsamples."""
    files = [str(p) for p in REAL_FILES.values()]
    with h5py.File(files[0]) as h:
        a1, a2 = h["Header/ant_1_array"][()], h["Header/ant_2_array"][()]
        assert (a1 > a2).any() and (a1 < a2).any() and (h["Data/nsamples"][()] <= 0).all()
    ref = _convert(tmp_path, files, "ref.ms", direct=False)
    direct = _convert(tmp_path, files, "direct.ms")
    assert direct["writer"] == "direct" and direct["nchan"] == ref["nchan"] == 32
    cmp = _identical(tmp_path, "ref.ms", "direct.ms")
    assert cmp["diffs"] == [] and cmp["columns"] >= 100, cmp


def _write(path: Path, arr: np.ndarray, **kw) -> None:
    with h5py.File(path, "w") as h:
        h.create_dataset("x", data=arr, **kw)


@pytest.mark.parametrize("kw", [
    {"chunks": (7, 3, 1), "compression": "lzf"},
    {"chunks": (7, 3, 2)},
    {"chunks": (5, 16, 4), "compression": "gzip"},  # another filter: read through h5py
    {},  # contiguous
], ids=["lzf", "plain", "gzip", "contiguous"])
@pytest.mark.parametrize("dtype", [np.complex64, np.float32, bool])
def test_chunk_reader_equals_h5py(tmp_path, kw, dtype):
    rng = np.random.default_rng(1)
    shape = (40, 16, 4)
    if dtype is bool:
        arr = rng.random(shape) < 0.1
    else:
        arr = (rng.normal(size=shape) + (1j * rng.normal(size=shape) if dtype is np.complex64 else 0)).astype(dtype)
        arr[:, 5:9] = 1  # runs that LZF turns into back references
    _write(tmp_path / "a.h5", arr, **kw)
    pols = [0, 2, 3, 1]
    with h5py.File(tmp_path / "a.h5") as h:
        d = h["x"]
        for a, b in ((0, 40), (3, 33), (13, 14)):
            assert np.array_equal(h5chunks.read_rows(d, a, b), d[a:b])
            wide = np.zeros((b - a, 20, 4), dtype)
            h5chunks.read_rows(d, a, b, out=wide[:, 2:18], pols=pols)
            assert np.array_equal(wide[:, 2:18], arr[a:b][:, :, pols]) and not wide[:, :2].any()


def test_lzf_decoder_rejects_corrupt_input():
    out = np.zeros(64, np.uint8)
    assert h5chunks._lzf_decode(np.array([2, 65, 66, 67], np.uint8), out) == 3 and bytes(out[:3]) == b"ABC"
    assert h5chunks._lzf_decode(np.array([0, 65, 0b00100000, 0], np.uint8), out) == 4  # back reference
    assert bytes(out[:4]) == b"AAAA"
    assert h5chunks._lzf_decode(np.array([31, 1, 2], np.uint8), out) == -1  # literal run past the end
    assert h5chunks._lzf_decode(np.array([0b00100000, 9], np.uint8), out) == -1  # reference before start


@pytest.mark.casa
def test_truncated_subband_is_a_permanent_error_naming_the_file(tmp_path):
    from atarchive.errors import PermanentStepError

    files = [str(p) for p in REAL_FILES.values()]
    cut = tmp_path / Path(files[1]).name
    data = Path(files[1]).read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    before = Path(files[1]).stat().st_size
    with pytest.raises(PermanentStepError, match="cannot read uvh5") as err:
        _convert(tmp_path, [files[0], str(cut)], "cut.ms")
    assert cut.name in str(err.value) and Path(files[1]).stat().st_size == before
