"""The verdict on real processed sessions and the archive's site (issue 14): the clean `tiny` session
passes; `degraded` (antenna 1d noise only, RFI in both LOs) warns naming the antenna and the RFI;
`status` shows and filters verdicts; `site` renders in headless Chromium with the bad antenna marked.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import atarchive_ok, assert_png_shows_something

pytestmark = pytest.mark.casa

TINY = "ptiny/2025-03-15-10:40:00"
DEGRADED = "pdegraded/2025-03-16-09:00:00"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    from atarchive.simulate import preset, simulate

    root = tmp_path_factory.mktemp("verdicts")
    for name in ("tiny", "degraded"):
        simulate(preset(name), root / "storage")
    conf = root / "atarchive.toml"
    # no reference antenna set: the automatic choice must pass over degraded's dead antenna
    conf.write_text(f'storage_roots = ["{root / "storage"}"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    "[scan]\nstable_seconds = 0\n[steps.compress]\nchanbin = 2\n[steps.image]\nmax_imsize = 256\n"
                    "[execution]\nworkers = 1\n")
    (conf.parent / "work").mkdir(exist_ok=True)
    atarchive_ok(conf, "scan")
    atarchive_ok(conf, "run", timeout=1200)
    return {"root": root, "conf": conf}


def _status(conf, *args) -> dict[str, dict]:
    return {r["key"]: r for r in json.loads(atarchive_ok(conf, "status", "--json", *args))["sessions"]}


def test_clean_session_passes_and_degraded_warns_naming_antenna_and_rfi(archive):
    rows = _status(archive["conf"])
    assert rows[TINY]["state"] == rows[DEGRADED]["state"] == "done"
    assert rows[TINY]["verdict"] == "pass" and rows[TINY]["verdict_reasons"] == []
    d = rows[DEGRADED]
    assert d["verdict"] == "warn", d
    reasons = " | ".join(d["verdict_reasons"])
    assert "bandpass-outlier antennas" in reasons and "1d" in reasons, reasons
    assert "RFI in LoA" in reasons, reasons
    # the RFI block of LO A is at raw channels 9-12 (truth): the named frequencies fall inside it
    truth = json.loads(next((archive["root"] / "storage" / "truth").rglob("2025-03-16-09:00:00.json")).read_text())
    f0, f1 = next(r["freq_hz"]["A"] for r in truth["rfi"] if r["lo"] == "A")
    named = [float(x) for x in reasons.split("RFI in LoA")[1].split("MHz")[0].split(" at ")[1].split("–")]
    assert all(f0 / 1e6 - 1.0 <= x <= f1 / 1e6 + 1.0 for x in named), (named, f0, f1)
    # LO B's one raw channel, RFI all session: flagged at full resolution, hidden by averaging; named exactly
    (fb,) = {r["freq_hz"]["B"][0] for r in truth["rfi"] if r["lo"] == "B"}
    assert f"RFI in LoB: 1 channel(s) at {fb / 1e6:.1f} MHz flagged (full resolution)" in reasons, reasons
    # filterable
    assert list(_status(archive["conf"], "--verdict", "warn")) == [DEGRADED]
    assert list(_status(archive["conf"], "--verdict", "pass")) == [TINY]
    assert _status(archive["conf"], "--verdict", "fail") == {}


def test_qa_page_starts_with_the_verdict(archive):
    pages = {p["session"]: Path(p["path"]) for p in json.loads(atarchive_ok(archive["conf"], "report", "--list",
                                                                           "--json"))}
    html = pages[DEGRADED].read_text()
    assert html.index("verdict: warn") < html.index("<h2>Summary</h2>")
    assert "1d" in html[html.index("verdict: warn"):html.index("<h2>Summary</h2>")]
    assert "<h2>Sources</h2>" in html and "target_2" in html.split("<h2>Sources</h2>")[1]
    assert "verdict: pass" in pages[TINY].read_text()


def test_site_renders_in_chromium_with_the_dead_antenna_marked(archive, tmp_path):
    from test_pipeline import _load_in_chromium

    out = tmp_path / "site"
    res = json.loads(atarchive_ok(archive["conf"], "site", "--out", str(out), "--json"))
    assert res["sessions"] == 2 and "health.png" in res["figures"]
    assert any(f.startswith("flux_1331") for f in res["figures"]) and any("J1407" in f for f in res["figures"])
    got = _load_in_chromium(out / "index.html")
    assert got["errors"] == [] and got["failed"] == [], got
    assert len(got["imgs"]) == len(res["figures"])
    for src, complete, width in got["imgs"]:
        assert complete and width > 0, src
        assert_png_shows_something(out / src)
    for word in (TINY, DEGRADED, "warn", "pass", "QA page", "1d"):
        assert word in got["text"], word
    # the links to the QA pages resolve from the site's directory
    html = (out / "index.html").read_text()
    for href in [h.split("'")[0] for h in html.split("href='")[1:] if h.split("'")[0].endswith("index.html")]:
        assert (out / href).resolve().is_file(), href
    # the heatmap's data: 1d is a bandpass outlier with (almost) nothing left unflagged in degraded only
    from atarchive.catalogue import Catalogue
    from atarchive.config import load
    from atarchive.queries import site_data

    cfg = load(archive["conf"])
    with Catalogue(cfg.catalogue) as cat:
        h = site_data(cat, cfg)["health"]
    assert h["values"]["1d"][DEGRADED]["bandpass_outlier"] is True
    others = [v for a, per in h["values"].items() if a != "1d" for v in per.values()]
    assert not any(v["bandpass_outlier"] for v in others)
    if os.environ.get("ATARCHIVE_SITE_SHOT"):  # docs/site.png is made this way
        shutil.copy(out / "health.png", os.environ["ATARCHIVE_SITE_SHOT"])
