"""The Perley-Butler 2017 model the simulator, the pipeline's setjy and the flux checks all share
(`atarchive.calibrators.pb2017_flux`) against CASA's own implementation of the standard: every
flux calibrator atarchive knows, at frequencies across 0.5-11 GHz, within 0.1 %."""

from __future__ import annotations

import os

import numpy as np
import pytest

from atarchive.calibrators import FLUX_CALIBRATORS, pb2017_flux
from atarchive.execution.children import run_in_child
from conftest import REPO

pytestmark = pytest.mark.casa
FREQS_HZ = [0.5e9, 1.0e9, 1.4e9, 2.0e9, 3.0e9, 5.0e9, 8.0e9, 11.0e9]


def test_pb2017_matches_casa_setjy_for_every_calibrator(tmp_path):
    sources = {c.name: [c.ra_deg, c.dec_deg] for c in FLUX_CALIBRATORS}
    casa = run_in_child("tests.casa_probe:casa_pb2017",
                        {"ms": str(tmp_path / "pb.ms"), "sources": sources, "freqs_hz": FREQS_HZ},
                        workdir=tmp_path / "w", log_path=tmp_path / "casa.log",
                        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)["by_source"]
    assert set(casa) == set(sources)
    bad = {}
    for name, got in casa.items():
        ours = np.asarray(pb2017_flux(name, FREQS_HZ))
        rel = ours / np.asarray(got) - 1
        if np.any(np.abs(rel) > 1e-3):
            bad[name] = {f"{f / 1e9:g} GHz": f"ours {o:.4f} CASA {c:.4f}" for f, o, c, r in
                         zip(FREQS_HZ, ours, got, rel) if abs(r) > 1e-3}
    assert not bad, bad
