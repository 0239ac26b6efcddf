"""The ATA-shaped presets (issue 15, item 4): the shape the real-time bench measures. No CASA."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from atarchive.simulate import list_presets, on_source_s, preset, simulate, with_minutes

ATA = {"ata-10min": 10, "ata-20min": 20, "ata-40min": 40}


@pytest.mark.parametrize("name,minutes", ATA.items())
def test_ata_presets_have_the_shape_of_a_real_ata_session(name, minutes):
    spec = preset(name)
    assert name in list_presets()
    assert spec.n_antennas == 28 and spec.integration_s == 10.0
    assert len(spec.los) == 2
    for lo in spec.los:
        assert lo.nchan == 1024 and lo.channel_width_hz == 0.5e6
    a, b = (lo.freqs() for lo in spec.los)
    assert a[-1] < b[0] or b[-1] < a[0]  # the LOs do not overlap
    assert on_source_s(spec) == minutes * 60
    # the demo's pattern: 3C286 twice first, then the phase calibrator around each target scan
    demo = preset("demo")
    assert [sc.source for sc in spec.scans] == [sc.source for sc in demo.scans]
    assert [s.model_dump() for s in spec.sources] == [s.model_dump() for s in demo.sources]


@pytest.mark.parametrize("name", ["ata-20min", "ata-40min"])
def test_longer_ata_presets_are_the_10_minute_one_scaled(name):
    assert preset(name) == with_minutes(preset("ata-10min"), ATA[name])


def test_with_minutes_scales_every_scan_in_whole_integrations():
    base = preset("ata-10min")
    for minutes in (2, 4, 60):
        s = with_minutes(base, minutes)
        assert on_source_s(s) == minutes * 60
        ratios = [sc.duration_s / b.duration_s for sc, b in zip(s.scans, base.scans)]
        assert max(ratios) == pytest.approx(min(ratios))
        assert all(sc.duration_s % s.integration_s == 0 for sc in s.scans)
    assert preset("demo") == with_minutes(preset("demo"), on_source_s(preset("demo")) / 60)  # identity


def test_ata_files_hold_28_antennas_4_pols_256_channels_of_half_a_megahertz_10_s(tmp_path):
    spec = preset("ata-10min")
    spec = spec.model_copy(update={"scans": [spec.scans[0].model_copy(update={"duration_s": 20.0})]})
    res = simulate(spec, tmp_path)
    assert len(res.files) == 2 * 4  # LOs × subband files
    assert sorted({f.parent.name for f in res.files}) == [
        f"Lo{lo}.C{c:04d}" for lo in "AB" for c in (256, 512, 768, 1024)]
    for f in res.files:
        with h5py.File(f) as h:
            hd = h["Header"]
            assert hd["Nants_data"][()] == 28 and hd["Nfreqs"][()] == 256 and hd["Ntimes"][()] == 2
            assert list(hd["polarization_array"][()]) == [-5, -7, -8, -6]  # xx xy yx yy
            assert np.allclose(np.diff(hd["freq_array"][()].ravel()), 0.5e6)
            assert np.allclose(hd["integration_time"][()], 10.0)
