"""The image step's decisions that need no CASA: which flux an imfit component stands for, and when a
clean round is the last (tclean's returned summary)."""

from __future__ import annotations

import numpy as np
import pytest

from atarchive.casa.image import UNRESOLVED_RATIO, point_flux, reached_depth


def _comp(integrated: float, peak: float | None) -> dict:
    comp = {"flux": {"value": np.array([integrated, 0.0, 0.0, 0.0]), "error": np.array([0.03, 0.0, 0.0, 0.0])}}
    if peak is not None:
        comp["peak"] = {"value": peak, "error": 0.01, "unit": "Jy/beam"}
    return comp


def test_an_unresolved_source_is_measured_by_its_fitted_peak():
    # the ata-10min 3C286 image in LO A: integral 12.622, fitted peak 12.491, model 12.486 Jy
    flux, err, how = point_flux(_comp(12.622, 12.491))
    assert (flux, err) == (pytest.approx(12.491), pytest.approx(0.01)) and "unresolved" in how


def test_a_resolved_source_keeps_its_integrated_flux():
    integrated = 2.0 * UNRESOLVED_RATIO * 1.01  # just wider than the beam allows
    flux, err, how = point_flux(_comp(integrated, 2.0))
    assert (flux, err, how) == (pytest.approx(integrated), pytest.approx(0.03), "imfit")
    assert point_flux(_comp(3.0, 1.0))[0] == pytest.approx(3.0)


def test_without_a_usable_peak_the_integral_is_reported():
    assert point_flux(_comp(1.5, None))[:2] == (pytest.approx(1.5), pytest.approx(0.03))
    assert point_flux(_comp(1.5, -0.2))[0] == pytest.approx(1.5)  # a negative fit is no peak to trust


@pytest.mark.parametrize("summary, last", [
    ({"stopcode": 8, "iterdone": 140}, True),  # nsigma reached: another round would repeat nothing
    ({"stopcode": 2, "iterdone": 90}, True),  # threshold reached
    ({"stopcode": 1, "iterdone": 5000}, False),  # iteration limit: more to clean
    ({"stopcode": 4}, False),  # no change in the peak residual: the rms decides, as before
    (None, False), ({}, False),  # no summary (an older tclean): the rms decides
])
def test_a_round_that_reached_its_depth_is_the_last(summary, last):
    assert reached_depth(summary) is last
