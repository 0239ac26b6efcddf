"""compress's flaggers on a session with RFI: AOFlagger (the default; whole baselines read and
written at once) and CASA tfcrop both flag the injected RFI and spare the clean data.

The session is tiny's antennas, fields and scan order with the degraded preset's RFI (a 4-channel
block for part of the session in LO A, one channel all session in LO B), 64-channel subbands
(AOFlagger's smoothing kernel spans ~30 channels: with 32 an LO it flagged 19 % around the RFI block)
and scans five times longer (4-6 integrations leave it no time axis: 60 % of the block flagged); at
two noise levels: the simulator's default (0.02 Jy per visibility, so a 15 Jy calibrator's 8 % bandpass
ripple is ~750 sigma: the generic strategy alone flagged 28-31 % of its clean cells, which is why
``aoflag`` divides the steady spectrum and the gain drift out first) and 1 Jy, near the ATA's own
(~3 Jy at 0.5 MHz x 10 s).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from atarchive.casa.compress import baselines
from atarchive.execution.children import run_in_child
from atarchive.simulate import preset, simulate, spec_from_dict

REPO = str(Path(__file__).resolve().parent.parent)


def test_baselines_group_rows_by_baseline_and_window_in_time_order():
    # rows as a correlator writes them: time-major, baselines in turn, one autocorrelation
    a1 = np.array([0, 0, 1, 0, 0, 1, 0, 0, 1])
    a2 = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    t = np.array([3, 3, 3, 1, 1, 1, 2, 2, 2], float)  # not sorted: the groups must be
    dd = np.zeros(9, int)
    got = [r.tolist() for r in baselines(a1, a2, dd, t)]
    assert got == [[4, 7, 1], [5, 8, 2]]  # (0,1) and (1,2), each oldest first; (0,0) left out
    dd[[0, 1, 2]] = 1  # the same baselines in a second spectral window are their own groups
    assert len(baselines(a1, a2, dd, t)) == 4


def _plane(noise, rng, ntime=40, nchan=128):
    """One baseline seen on a 15 Jy calibrator: an 8 % bandpass ripple (23 channels a period), a gain
    drifting 1 % over the scan, weak cross-hands, complex noise of ``noise`` Jy per component."""
    ch, t = np.arange(nchan), np.arange(ntime)
    bp = 1 + 0.08 * np.sin(2 * np.pi * ch / 23 + 0.3)
    v = 15 * bp[None, :, None] * (1 + 0.01 * t / ntime)[:, None, None] * np.ones((ntime, nchan, 4))
    v = v * np.exp(1j * 0.01 * ch)[None, :, None]
    v[:, :, 1:3] *= 0.01
    return (v + noise * (rng.standard_normal(v.shape) + 1j * rng.standard_normal(v.shape))).astype(np.complex64)


def test_aoflag_medians_by_one_sort_equal_numpys_nanmedian():
    """The flagger's medians (over time per channel, over channels per time) take one sort instead of
    np.nanmedian's per-slice path; they must be the same numbers, so the flags are the same."""
    import warnings

    from atarchive.casa.aoflag import _nanmedian0

    rng = np.random.default_rng(11)
    for nt, nc, npol in ((4, 16, 1), (15, 1024, 4), (7, 255, 2), (30, 64, 4)):
        x = (rng.normal(size=(nt, nc, npol)) + 1).astype(np.float32)
        x[:, rng.integers(0, nc, 5), :] = np.nan  # flagged channels, all-NaN over time
        x[rng.integers(0, nt), :, :] = np.nan  # a flagged integration, all-NaN over channels
        x[rng.random(x.shape) < 0.1] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for axis in (0, 1):
                want = np.nanmedian(x, axis=axis)
                got = _nanmedian0(np.moveaxis(x, axis, 0))
                assert got.shape == want.shape and np.array_equal(got, want, equal_nan=True), (nt, nc, npol, axis)


def test_aoflag_spares_a_bright_calibrator_and_flags_a_burst():
    from atarchive.casa import aoflag

    pytest.importorskip("aoflagger")
    rng = np.random.default_rng(3)
    v = _plane(0.02, rng)  # ~750 sigma of ripple: the strategy alone flags much of this
    assert aoflag.flag_baseline(v, np.zeros(v.shape, bool)).mean() < 0.01
    v[10:25, 80:84] += 50 * np.exp(1j * rng.uniform(0, 2 * np.pi, (15, 4, 4)))  # RFI for part of the scan
    got = aoflag.flag_baseline(v, np.zeros(v.shape, bool))
    block = np.zeros(got.shape, bool)
    block[10:25, 80:84] = True
    assert got[block].all() and got[~block].mean() < 0.15


def test_aoflag_flags_a_steady_carrier_that_normalising_would_hide():
    from atarchive.casa import aoflag

    pytest.importorskip("aoflagger")
    rng = np.random.default_rng(4)
    v = (3 * (rng.standard_normal((60, 128, 4)) + 1j * rng.standard_normal((60, 128, 4)))).astype(np.complex64)
    v[:, 50] += 50  # steady all scan: dividing each channel by its median would make it look clean
    given = np.zeros(v.shape, bool)
    given[:, 90] = True  # flagged on input: stays flagged, left out of the estimates
    got = aoflag.flag_baseline(v, given)
    assert got[:, 50].all() and got[:, 90].all()
    assert np.delete(got, [50, 90], axis=1).mean() < 0.03
    # a scan of 3 integrations gives the strategy no time axis (on a 30 s calibrator scan it flagged
    # enough to stop the bandpass): only the steady-carrier test runs there
    short = aoflag.flag_baseline(v[:aoflag.MIN_TIMES - 1], given[:aoflag.MIN_TIMES - 1])
    assert short[:, 50].all() and not np.delete(short, [50, 90], axis=1).any()


@pytest.fixture(scope="module", params=[None, 1.0], ids=["sim-noise", "ata-noise"])
def rfi_session(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("rfi")
    d = preset("tiny").model_dump()
    d["corruptions"]["rfi"] = [r.model_dump() for r in preset("degraded").corruptions.rfi]
    for scan in d["scans"]:  # scans of 20-60 integrations, not 4-12: a flagger needs some time axis
        scan["duration_s"] *= 5
    for lo in d["los"]:  # 128 channels an LO, not 32: AOFlagger's smoothing spans ~30 channels
        lo["channels_per_subband"] = 64
    if request.param is not None:
        d["noise_jy"] = request.param  # realistic signal-to-noise (see the module doc)
    res = simulate(spec_from_dict(d), tmp / "storage")
    truth = json.loads(Path(res.truth_path).read_text())
    files = sorted(str(p) for p in (tmp / "storage").rglob("*.uvh5"))
    env = {**os.environ, "PYTHONPATH": REPO}
    kw = {"workdir": tmp / "w", "log_path": tmp / "convert.log", "env": env}
    # the scans each RFI block touches (LO A: part of the session; LO B: all of it), at most two each
    items = []
    for r in truth["rfi"]:
        for stem in r["scans"][:2]:
            ms = str(tmp / f"{stem}_Lo{r['lo']}.ms")
            run_in_child("atarchive.casa.copy:uvh5_to_ms",
                         {"files": [f for f in files if f"/{stem}/Lo{r['lo']}." in f], "out_ms": ms}, **kw)
            items.append({"ms": ms, "lo": r["lo"]})
    return {"tmp": tmp, "truth": truth, "items": items, "env": env}


@pytest.mark.casa
@pytest.mark.parametrize("flagger", ["aoflagger", "tfcrop"])
def test_flagger_flags_the_rfi_and_spares_clean_data(rfi_session, flagger):
    s = rfi_session
    res = run_in_child("tests.casa_probe:flag_and_score",
                       {"items": s["items"], "flagger": flagger, "rfi": s["truth"]["rfi"], "work": str(s["tmp"])},
                       workdir=s["tmp"] / "w", log_path=s["tmp"] / f"{flagger}.log", env=s["env"])["by_ms"]
    assert {r["flagger"] for r in res.values()} == {flagger}  # no fallback: this flagger ran
    rfi = sum(r["rfi_cells"] for r in res.values())
    clean = sum(r["clean_cells"] for r in res.values())
    assert rfi > 100 and clean > 10 * rfi, res  # both LOs' RFI blocks are in the scans tested
    for name, r in res.items():
        assert r["rfi_cells"] and r["rfi_flagged"] > 0.9 * r["rfi_cells"], (flagger, name, r)
        assert r["clean_flagged"] < 0.05 * r["clean_cells"], (flagger, name, r)
