"""Sessions holding only a calibrator (issue #13 item 2), on real CASA.

Operators take such sessions to check the array: the calibrator is calibrated and imaged. When the
data cannot be calibrated the error names the measured cause: the real ATA sample (no coherent signal),
a simulated delay-update scan whose residual delays decorrelate the averaged channels.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atarchive.simulate import simulate, spec_from_dict
from conftest import put_real_nested
from conftest import cli_run as cli

pytestmark = pytest.mark.casa


def write_conf(root: Path, chanbin: int = 4) -> Path:
    conf = root / "atarchive.toml"
    conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                    f"[scan]\nstable_seconds = 0\n[steps.compress]\nchanbin = {chanbin}\n"
                    "[steps.image]\nmax_imsize = 256\n[execution]\nmax_attempts = 1\n")
    (conf.parent / "work").mkdir(exist_ok=True)
    return conf


def one_calibrator_scan(project: str, delay_ns: float, seed: int) -> dict:
    """One 30 s scan of 3C286, ATA-like: 12 antennas, 2 subbands of 16 x 0.5 MHz channels, antenna
    delays drawn uniformly within ±delay_ns (the simulator's corruption)."""
    return {"project": project, "start": "2025-03-15T10:40:00Z", "n_antennas": 12, "integration_s": 10.0,
            "noise_jy": 0.02, "seed": seed,
            "los": [{"name": "A", "start_freq_hz": 1.252e9, "subbands": 2, "channels_per_subband": 16}],
            "sources": [{"name": "3c286", "calibrator": "3C286"}],
            "scans": [{"source": "3c286", "duration_s": 30}],
            "corruptions": {"delay_ns": delay_ns}}


def _row(conf, key):
    return next(r for r in json.loads(cli(conf, "status", "--json").stdout)["sessions"] if r["key"] == key)


def _flux_ok(conf, key):
    rows = [r for r in json.loads(cli(conf, "fluxes", key, "--json").stdout) if r["field"] == "3c286"]
    assert rows, key
    for r in rows:  # against Perley-Butler 2017
        assert abs(r["flux_jy"] / r["model_flux_jy"] - 1) < 0.10, r
    return rows


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The real ATA sample and two simulated calibrator-only sessions (±250 ns, ±600 ns delays) in
    one storage root, run once with the default averaging (4 x 0.5 MHz channels)."""
    root = tmp_path_factory.mktemp("calonly")
    storage = root / "storage"
    put_real_nested(storage)
    simulate(spec_from_dict(one_calibrator_scan("pdly250", 250.0, 3)), storage)
    simulate(spec_from_dict(one_calibrator_scan("pdly600", 600.0, 3)), storage)
    conf = write_conf(root)
    cli(conf, "scan")
    first = cli(conf, "run", "--json", check=1)
    return root, conf, first


def test_real_ata_sample_fails_with_the_measured_cause(ran):
    root, conf, first = ran
    assert "Traceback" not in first.stderr
    row = _row(conf, "p001/2024-12-12-17:29:25")
    assert row["state"] == "failed" and row["steps"]["fix"]["status"] == "done", row
    err = row["error"]
    assert "no coherent signal on 3c286: closure phases random" in err, err
    assert "exactly 0" in err and "purely imaginary" in err
    assert "too little unflagged data" not in err and "wrong reference antenna" not in err
    # one line: the step, the cause and the step log's path, no traceback
    assert err.startswith("calibrate: ") and err.endswith("/logs/calibrate.log)") and len(err) <= 300, err
    assert "\n" not in err and "Traceback" not in err and "^^^" not in err
    log = next((root / "work" / "p001").glob("*/logs/calibrate.log")).read_text()
    assert "calibrator diagnosis:" in log and "measured_on=raw uvh5 (2 file(s))" in log


def test_calibrator_only_sessions_imaged_or_failed_with_the_measured_delays(ran):
    root, conf, _ = ran
    k250, k600 = "pdly250/2025-03-15-10:40:00", "pdly600/2025-03-15-10:40:00"
    # ±250 ns: 2 MHz channels keep >= 64 % on every baseline; calibrated and imaged
    assert _row(conf, k250)["state"] == "done"
    _flux_ok(conf, k250)
    assert list((root / "work" / "pdly250").glob("*/images/3c286/LoA/*.fits"))
    # ±600 ns: 2 MHz channels are washed out; the error says so, with the antennas and the cure
    row = _row(conf, k600)
    assert row["state"] == "failed", row
    err = row["error"]
    assert "residual delays up to" in err and "decorrelate 2 MHz channels" in err, err
    assert "wrong reference antenna" not in err and "\n" not in err and len(err) <= 300
    assert err.startswith("calibrate: ") and err.endswith("/logs/calibrate.log)"), err
    cure = err.rsplit("set steps.compress.chanbin = ", 1)[1].split()[0]
    # following it calibrates the session
    write_conf(root, chanbin=int(cure))
    cli(conf, "run", k600, check=None)
    assert _row(conf, k600)["state"] == "done" and _row(conf, k600)["error"] is None  # the error is cleared
    _flux_ok(conf, k600)
