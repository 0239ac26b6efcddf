"""Why a calibrator gives no solutions, measured (issue #13 item 2): the figures of
:mod:`atarchive.casa.caldiag` on visibilities made here with known delays, noise or corruption, and on
the real ATA sample."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from atarchive.casa import caldiag
from conftest import REAL_FILES


def point_source(*, nant=10, nchan=32, width=0.5e6, f0=1.252e9, delays_ns=None, ntimes=3, snr=30.0, seed=1):
    """Rows of a 1 Jy point source at the phase centre seen through antenna gains and delays."""
    rng = np.random.default_rng(seed)
    delays = np.asarray(delays_ns if delays_ns is not None else np.zeros(nant)) * 1e-9
    freqs = f0 + width * np.arange(nchan)
    gphase = rng.uniform(-np.pi, np.pi, (ntimes, nant))
    rows = {k: [] for k in ("data", "ant1", "ant2", "time", "spw")}
    for t in range(ntimes):
        for a, b in itertools.combinations(range(nant), 2):
            v = np.exp(1j * (gphase[t, a] - gphase[t, b])) * np.exp(2j * np.pi * freqs * (delays[b] - delays[a]))
            noise = (rng.normal(size=(2, nchan)) + 1j * rng.normal(size=(2, nchan))) / snr
            rows["data"].append(v[None, :] + noise)
            rows["ant1"].append(a)
            rows["ant2"].append(b)
            rows["time"].append(float(t))
            rows["spw"].append(0)
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["flag"] = np.zeros(out["data"].shape, dtype=bool)
    out["chan_width_hz"] = {0: width}
    out["names"] = [f"{i + 1}a" for i in range(nant)]
    return out


def test_delays_are_recovered_and_named_when_they_decorrelate_the_averaged_channels():
    true = np.array([0, 40, -250, 10, 120, -30, 600, 0, -80, 20], dtype=float)
    rows = point_source(delays_ns=true)
    m = caldiag.measure(**rows)
    assert m["closure_median_deg"] < 10  # a point source: closure phases near 0 whatever the delays
    got = np.array([m["delays_ns"][f"{i + 1}a"] for i in range(len(true))])
    assert np.allclose(got - np.median(got), true - np.median(true), atol=5.0), got
    bl = np.array([true[b] - true[a] for a, b in itertools.combinations(range(len(true)), 2)]) * 1e-9
    for width in (0.5e6, 2e6):  # as recorded, and after averaging 4 channels
        j = caldiag.decorrelation(m, width)
        assert j["baselines_decorrelated"] == int((np.abs(np.sinc(bl * width)) < 0.8).sum())
        assert j["baseline_keep_min"] == pytest.approx(np.abs(np.sinc(bl * width)).min(), abs=0.02)
    small = caldiag.measure(**point_source(delays_ns=true / 10))
    assert small["baselines_decorrelated"] == 0 and "no cause found" in caldiag.cause(small, "3C286")
    avg = caldiag.decorrelation(m, 2e6)  # after chanbin 4
    line = caldiag.cause(avg, "3C286")
    assert line.startswith("residual delays up to") and "2 MHz channels" in line
    # the antennas named are the ones with the largest delays, 7a (600 ns) first
    named = line.split(" on ")[1].split(" decorrelate")[0].split(", ")
    assert named[0] == "7a" and "3a" in named and "1a" not in named


def test_random_and_corrupt_values_read_as_no_coherent_signal():
    rows = point_source()
    rng = np.random.default_rng(3)
    # what the real sample holds: purely imaginary values of random sign, exact zeros
    sign = rng.choice([-1.0, 1.0], size=rows["data"].shape)
    data = 1j * sign * rng.uniform(6, 9, size=rows["data"].shape)
    data[rng.random(rows["data"].shape) < 0.25] = 0
    rows["data"] = data
    m = caldiag.measure(**rows)
    assert m["closure_median_deg"] > 60
    assert m["zero_frac"] == pytest.approx(0.25, abs=0.03) and m["imag_only_frac"] == pytest.approx(0.75, abs=0.03)
    line = caldiag.cause(m, "3c286")
    assert line.startswith("no coherent signal on 3c286")
    assert f"{100 * m['zero_frac']:.0f} % exactly 0" in line and f"{100 * m['imag_only_frac']:.0f} % purely imaginary" in line
    assert "\n" not in line and len(line) <= 170  # fits the 300-character error line with its step and log path


def test_mostly_flagged_calibrator_says_so():
    rows = point_source()
    rows["flag"][:] = True
    rows["flag"][:3] = False
    m = caldiag.measure(**rows)
    assert m["unflagged_frac"] < 0.05
    assert caldiag.cause(m, "3C286").startswith("too little unflagged data on the calibrator 3C286: 2 %")


def test_real_ata_sample_measured_on_its_raw_files():
    """The real 3C286 integration: its visibilities are not a point source (closure phases random),
    most unflagged values are exactly 0 or purely imaginary."""
    m = caldiag.measure(**caldiag.read_uvh5([str(REAL_FILES[352]), str(REAL_FILES[544])]))
    assert m["unflagged_frac"] > 0.95  # the flags do not explain anything
    assert m["closure_median_deg"] > 80 and m["closure_within_30_frac"] < 0.1
    assert m["zero_frac"] > 0.15 and m["imag_only_frac"] > 0.5
    line = caldiag.cause(m, "3c286")
    assert line.startswith("no coherent signal on 3c286") and "reference antenna" in line
