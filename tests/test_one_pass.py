"""One pass from uvh5 to the averaged MS (atarchive/casa/onepass.py) gives what today's two steps give
(copy's full-resolution MS, then compress: AOFlagger + mstransform), and the steps choose it by
default. One simulated session for the module: `degraded` (tiny's layout with RFI and a dead
antenna, so AOFlagger has something to flag)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from atarchive.casa import average
from atarchive.contracts import StepName
from atarchive.execution.children import run_in_child
from conftest import make_config

REPO = str(Path(__file__).resolve().parent.parent)


def _child(tmp: Path, func: str, name: str, **kw) -> dict:
    env = {**os.environ, "PYTHONPATH": REPO}
    return run_in_child(func, kw, workdir=tmp / "w", log_path=tmp / f"{name}.log", env=env)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from atarchive.simulate import preset, simulate

    root = tmp_path_factory.mktemp("onepass")
    simulate(preset("degraded"), root / "storage")
    files = sorted(str(p) for p in (root / "storage").rglob("*.uvh5"))
    stems = sorted({Path(f).parent.parent.name for f in files})
    target = next(s for s in stems if "target" in s)

    def scan_lo(stem, lo):
        return [f for f in files if f"/{stem}/Lo{lo}." in f]

    return {"root": root, "scan_lo": scan_lo, "target": target, "stems": stems}


def _two_steps(tmp: Path, files: list[str], name: str, tpc: int = 0) -> dict:
    conv = _child(tmp, "atarchive.casa.copy:uvh5_to_ms", f"{name}-copy", files=files,
                  out_ms=str(tmp / f"{name}.full.ms"), times_per_chunk=tpc or None)
    comp = _child(tmp, "atarchive.casa.compress:compress", f"{name}-compress", in_ms=str(tmp / f"{name}.full.ms"),
                  out_ms=str(tmp / f"{name}.two.ms"), timebin_s=20.0, chanbin=4, flagger="auto")
    return {"copy": conv, "compress": comp}


def _one_pass(tmp: Path, files: list[str], name: str, tpc: int = 0) -> dict:
    return _child(tmp, "atarchive.casa.onepass:uvh5_to_averaged_ms", f"{name}-one", files=files,
                  out_ms=str(tmp / f"{name}.one.ms"), timebin_s=20.0, chanbin=4, flagger="auto",
                  times_per_chunk=tpc, scratch_ms=str(tmp / f"{name}.scratch.ms"))


@pytest.mark.casa
@pytest.mark.parametrize("lo", ["A", "B"])
def test_one_pass_equals_copy_then_compress(session, tmp_path, lo):
    """Whole scan in one chunk: the averaged MS is the two steps' one — every table, column and keyword
    exactly, DATA within float rounding — and the run records the same keys and values."""
    files = session["scan_lo"](session["target"], lo)
    two = _two_steps(tmp_path, files, "s")
    one = _one_pass(tmp_path, files, "s")
    assert one["one_pass"] is True and one["flagger"] == two["compress"]["flagger"] == "aoflagger"
    assert two["compress"]["flagged_fraction_after"] > two["compress"]["flagged_fraction_before"]  # it flagged
    for k, v in two["compress"].items():
        if k != "_call_seconds":
            assert one[k] == v, k
    for k, v in two["copy"].items():
        if k not in ("_call_seconds", "nchan"):
            assert one[k] == v, k
    assert one["nchan_fullres"] == two["copy"]["nchan"]
    cmp = _child(tmp_path, "tests.casa_probe:ms_compare", "cmp", a=str(tmp_path / "s.two.ms"),
                 b=str(tmp_path / "s.one.ms"))
    assert cmp["diffs"] == [], cmp
    same = _child(tmp_path, "tests.casa_probe:ms_identical", "same", a=str(tmp_path / "s.two.ms"),
                  b=str(tmp_path / "s.one.ms"))
    assert same["diffs"] in ([], ["MAIN.DATA"]) and same["columns"] >= 100, same  # DATA: summed in another order
    assert not (tmp_path / "s.scratch.ms").exists()


@pytest.mark.casa
def test_one_pass_on_real_ata_files(tmp_path):
    """The two real ATA subbands (baselines stored both ways round, garbage nsamples): the same averaged
    MS as the two steps."""
    from conftest import REAL_FILES

    files = [str(p) for p in REAL_FILES.values()]
    two = _two_steps(tmp_path, files, "r")
    one = _one_pass(tmp_path, files, "r")
    assert one["one_pass"] is True and one["flagger"] == two["compress"]["flagger"]
    for k in ("flagged_fraction_before", "flagged_fraction_after", "channel_flags", "nrows", "nchan"):
        assert one[k] == two["compress"][k], k
    cmp = _child(tmp_path, "tests.casa_probe:ms_compare", "cmp", a=str(tmp_path / "r.two.ms"),
                 b=str(tmp_path / "r.one.ms"))
    assert cmp["diffs"] == [], cmp


@pytest.mark.casa
def test_chunked_one_pass_flags_close_to_whole_scan(session, tmp_path):
    """Two integrations at a time (one 20 s bin per chunk): AOFlagger sees short planes, so the flags
    may differ from the whole-scan ones, but only a little; the averaged rows are the same, and an
    averaged cell made of the same samples has the same value."""
    files = session["scan_lo"](session["target"], "B")
    two = _two_steps(tmp_path, files, "c")
    one = _one_pass(tmp_path, files, "c", tpc=2)
    assert one["chunks"] == -(-one["ntimes"] // 2) >= 3 and one["nrows"] == two["compress"]["nrows"]
    d_full = abs(one["flagged_fraction_after"] - two["compress"]["flagged_fraction_after"])
    st = _child(tmp_path, "tests.casa_probe:averaged_flag_stats", "fl", a=str(tmp_path / "c.two.ms"),
                b=str(tmp_path / "c.one.ms"))
    print(f"chunked (2 integrations) vs whole scan: full-resolution flagged {two['compress']['flagged_fraction_after']:.4f}"
          f" vs {one['flagged_fraction_after']:.4f}; averaged cells flagged {st['flagged_a']:.4f} vs {st['flagged_b']:.4f},"
          f" {st['differ']:.4f} differ; {st['other_samples']:.4f} of averaged cells made of other samples")
    assert d_full < 0.02 and st["differ"] < 0.01 and st["other_samples"] < 0.2, (d_full, st)
    # equal summed weight (unit weights: as many samples) is nearly always the same samples
    assert st["data_close_where_same_samples"] > 0.99, st


@pytest.mark.casa
def test_numpy_averaging_is_mstransforms(session, tmp_path):
    """atarchive.casa.average against CASA's mstransform with planted flags (whole rows, all-flagged
    cells, a flagged baseline, one polarisation) and random SIGMA, for several time and channel bins
    (including a partial last time bin and a dropped partial channel bin)."""
    files = session["scan_lo"](session["target"], "A")
    _child(tmp_path, "atarchive.casa.copy:uvh5_to_ms", "full", files=files, out_ms=str(tmp_path / "full.ms"))
    _child(tmp_path, "tests.casa_probe:plant_flags", "plant", ms=str(tmp_path / "full.ms"), out=str(tmp_path / "p.ms"))
    cases = [[20.0, 4], [30.0, 3], [50.0, 1], [15.0, 5], [0.0, 4]]
    _child(tmp_path, "tests.casa_probe:mstransform_cases", "mst", src=str(tmp_path / "p.ms"), work=str(tmp_path),
           cases=cases)
    diffs = _child(tmp_path, "tests.casa_probe:compare_average", "cmpavg", src=str(tmp_path / "p.ms"),
                   work=str(tmp_path), cases=cases)
    diffs.pop("_call_seconds", None)
    assert diffs == {f"{t}/{c}": [] for t, c in cases}, diffs


# ---- pure: bins, chunks and the step graph (no CASA) ----

def test_time_bins_start_at_their_first_integration():
    jitter = np.array([0, -1.3e-5, -2.8e-5, -2e-6, -1.5e-5, -3e-5, -3e-6])
    t = 10.0 * np.arange(7) + jitter
    assert average.time_bins(t, 20.0, 10.0).tolist() == [0, 0, 1, 1, 2, 2, 3]  # last bin shorter
    assert average.time_bins(t, 25.0, 10.0).tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert average.time_bins(t, 10.0, 10.0).tolist() == list(range(7))
    assert average.time_bins(t, 0.0, 10.0).tolist() == list(range(7))


def test_chunks_hold_whole_bins_and_at_most_times_per_chunk():
    bins = np.array([0, 0, 1, 1, 2, 2, 3])
    assert average.chunks_of_bins(bins, 0) == [(0, 7)]
    assert average.chunks_of_bins(bins, 2) == [(0, 2), (2, 4), (4, 6), (6, 7)]
    assert average.chunks_of_bins(bins, 5) == [(0, 4), (4, 7)]
    assert average.chunks_of_bins(bins, 1) == [(0, 2), (2, 4), (4, 6), (6, 7)]  # a bin is never cut


def test_channel_axis_drops_a_partial_bin():
    f = 1.4e9 + 0.5e6 * np.arange(10)
    ch = average.channel_axis(f, np.full(10, 0.5e6), 4)
    assert ch["NUM_CHAN"] == 2 and ch["CHAN_FREQ"].tolist() == [1.4e9 + 0.75e6, 1.4e9 + 2.75e6]
    assert ch["CHAN_WIDTH"].tolist() == [2e6, 2e6] and ch["REF_FREQUENCY"] == 1.4e9 + 0.75e6


@pytest.mark.parametrize("compress,one", [
    ({}, True),
    ({"one_pass": False}, False),
    ({"keep_fullres": True}, False),
    ({"flagger": "tfcrop"}, False),
    ({"flagger": "none"}, True),
    ({"flagger": "aoflagger"}, True),
])
def test_one_pass_decision(tmp_path, compress, one):
    from atarchive.steps.copy import one_pass

    assert one_pass(make_config(tmp_path, steps={"compress": compress})) is one


def test_fingerprint_takes_copy_chunking_only_in_one_pass(tmp_path):
    from atarchive.steps import BY_NAME

    comp = BY_NAME[StepName.COMPRESS]
    p1 = comp.params(make_config(tmp_path, steps={"copy": {"times_per_chunk": 6}}))
    assert p1["one_pass"] is True and p1["times_per_chunk"] == 6
    p2 = comp.params(make_config(tmp_path, steps={"compress": {"keep_fullres": True}}))
    assert "one_pass" not in p2 and "times_per_chunk" not in p2  # two steps: fingerprinted as before
    assert comp.uses_casa_tools(make_config(tmp_path)) is False
    assert comp.uses_casa_tools(make_config(tmp_path, steps={"compress": {"keep_fullres": True}})) is True
