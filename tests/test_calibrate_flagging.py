"""After calibration every field's split is flagged (tfcrop + rflag), the splits in parallel: this
process takes the heaviest share, helper children started early take the others."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from atarchive.casa.calchain import shares
from atarchive.execution.children import run_in_child
from atarchive.simulate import preset, simulate

REPO = str(Path(__file__).resolve().parent.parent)


def _load(parts, sizes):
    return [sum(sizes[p] for p in part) for part in parts]


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_shares_cover_every_split_once_heaviest_first(workers):
    sizes = {"target.ms": 90, "phase.ms": 50, "flux.ms": 45, "second_target.ms": 40, "tiny.ms": 1}
    parts = shares(sizes, workers)
    assert len(parts) == min(workers, len(sizes))
    assert sorted(p for part in parts for p in part) == sorted(sizes)
    load = _load(parts, sizes)
    assert load == sorted(load, reverse=True)  # this process (share 0) takes the most
    assert max(load) - min(load) <= max(sizes.values())  # no share idle while another has two big ones


def test_shares_of_equal_splits_are_even():
    sizes = {f"f{i}.ms": 10 for i in range(6)}
    assert _load(shares(sizes, 2), sizes) == [30, 30]
    assert _load(shares(sizes, 4), sizes) == [20, 20, 10, 10]


@pytest.mark.casa
def test_every_split_is_flagged_by_this_process_or_a_helper(tmp_path):
    simulate(preset("tiny"), tmp_path / "storage")
    files = sorted(str(p) for p in (tmp_path / "storage").rglob("*.uvh5") if "/LoA." in str(p))
    stem = sorted({Path(f).parent.parent.name for f in files})[1]
    env = {**os.environ, "PYTHONPATH": REPO}
    kw = {"workdir": tmp_path / "w", "log_path": tmp_path / "flag.log", "env": env}
    run_in_child("atarchive.casa.copy:uvh5_to_ms",
                 {"files": [f for f in files if f"/{stem}/" in f], "out_ms": str(tmp_path / "scan.ms")}, **kw)
    paths = []
    for i in range(3):
        p = tmp_path / f"field{i}.ms"
        shutil.copytree(tmp_path / "scan.ms", p)
        assert run_in_child("tests.casa_probe:inject_rfi", {"ms": str(p), "chan": 5, "amp": 1e3}, **kw) > 0
        paths.append(str(p))
    res = run_in_child("tests.casa_probe:flag_in_parallel", {"paths": paths, "workers": 2}, **kw)["by_ms"]
    # Who flagged what, from each process's own CASA log: this process's, then each helper child's
    # (appended after a marker). Not from flag_splits' return value: a helper that flagged nothing
    # (or this process flagging everything itself) must fail here.
    log = (tmp_path / "flag.log").read_text()
    sections = log.split("--- flagging child (")
    assert len(sections) == 2, "expected this process's log and one helper's"

    def flagged_in(text, mode):
        return {p for p in paths if f"flagdata( vis='{p}', mode='{mode}'" in text}

    by_proc = [flagged_in(sec, "tfcrop") for sec in sections]
    assert [flagged_in(sec, "rflag") for sec in sections] == by_proc  # rflag after tfcrop, same process
    assert len(by_proc[1]) == 1 and len(by_proc[0]) == 2, by_proc  # the helper took one split
    assert by_proc[0] | by_proc[1] == set(paths) and not by_proc[0] & by_proc[1]  # each split once
    helper_log = Path(sections[1].split(")", 1)[0])
    assert helper_log.is_file() and flagged_in(helper_log.read_text(), "tfcrop") == by_proc[1]
    # what the helper flagged is in its split's FLAG column: the RFI channel, in every split
    assert {p for p, r in res.items() if not r["here"]} == by_proc[1]
    for p, r in res.items():
        assert r["per_chan"][5] > 0.9, (p, r["per_chan"])  # the RFI channel, in every split
        assert r["all"] < 0.5, (p, r["all"])  # and not the whole split
