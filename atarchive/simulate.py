"""Simulated ATA sessions in the real on-disk layout, with a truth file.

Visibilities are physical: unpolarised point sources (a Perley-Butler 2017 flux calibrator at its
model flux, phase calibrators and targets with a flux and spectral index, targets offset from
their phase centres), per-antenna, per-polarisation complex gains drifting linearly in time,
per-antenna delays, a per-antenna bandpass ripple, thermal noise, and the first flux-calibrator
scan on a different delay/phase model, as on the real telescope. Each source is simulated at its
own position and re-phased to its field's phase centre by pyuvdata, so geometry and sign
conventions are pyuvdata's own.

Layout: ``ROOT/projects/<project>/<YYYY-MM-DD-HH:MM:SS>/<stem>/Lo<L>.C<cccc>/<stem>.uvh5`` (or the
flattened ``ata.Lo<L>.C<cccc>.<stem>.uvh5``); truth in ``ROOT/truth/<session>.json``. Roles are
not written into the data — only field names and positions, like the real telescope.
"""

from __future__ import annotations

import csv
import json
import math
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import calibrators

C = 299792458.0
from .telescope import ATA_HEIGHT_M as ATA_ALT, ATA_LAT_DEG as ATA_LAT, ATA_LON_DEG as ATA_LON  # noqa: E402
POLS = [-5, -7, -8, -6]  # xx xy yx yy, as the ATA writes them


class SpecError(ValueError):
    """A simulation spec is wrong; the message names the key."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LOSpec(_M):
    name: str = Field(pattern=r"^[A-Za-z0-9]+$")
    start_freq_hz: float = Field(gt=0)
    subbands: int = Field(2, ge=1)
    channels_per_subband: int = Field(32, ge=1)
    channel_width_hz: float = Field(0.5e6, gt=0)
    first_subband_index: int = Field(352, ge=0)
    subband_index_step: int = Field(192, ge=1)

    @property
    def nchan(self) -> int:
        return self.subbands * self.channels_per_subband

    def freqs(self) -> np.ndarray:
        return self.start_freq_hz + self.channel_width_hz * np.arange(self.nchan)

    @property
    def centre_hz(self) -> float:
        f = self.freqs()
        return float(0.5 * (f[0] + f[-1]))


def _angle(v, hours: bool) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    from astropy.coordinates import Angle

    import astropy.units as u

    return float(Angle(v, unit=u.hourangle if hours else u.deg).deg)


class SourceSpec(_M):
    name: str = Field(min_length=1)
    calibrator: str | None = None  # a Perley-Butler 2017 standard: position and flux from the model
    ra: float | str | None = None  # degrees, or "13h31m08.29s"
    dec: float | str | None = None
    flux_jy: float | None = Field(None, gt=0)
    spectral_index: float = 0.0
    ref_freq_hz: float = Field(1.4e9, gt=0)
    offset_arcsec: tuple[float, float] = (0.0, 0.0)  # true position minus phase centre (dRA*cos(dec), dDec)

    @model_validator(mode="after")
    def _complete(self):
        if self.calibrator is not None:
            cal = calibrators.find_flux_calibrator(self.calibrator)
            if cal is None:
                raise ValueError(f"calibrator {self.calibrator!r} is not a Perley-Butler 2017 standard")
        elif self.ra is None or self.dec is None or self.flux_jy is None:
            raise ValueError("needs ra, dec and flux_jy (or calibrator = a known flux calibrator)")
        return self

    @property
    def ra_deg(self) -> float:
        if self.ra is None:
            return calibrators.find_flux_calibrator(self.calibrator).ra_deg
        return _angle(self.ra, hours=isinstance(self.ra, str))

    @property
    def dec_deg(self) -> float:
        if self.dec is None:
            return calibrators.find_flux_calibrator(self.calibrator).dec_deg
        return _angle(self.dec, hours=False)

    def true_position(self) -> tuple[float, float]:
        dra, ddec = self.offset_arcsec
        dec = self.dec_deg + ddec / 3600.0
        ra = self.ra_deg + dra / 3600.0 / math.cos(math.radians(self.dec_deg))
        return ra % 360.0, dec

    def flux(self, freq_hz):
        if self.calibrator is not None:
            return calibrators.pb2017_flux(self.calibrator, freq_hz)
        return self.flux_jy * (np.asarray(freq_hz, dtype=float) / self.ref_freq_hz) ** self.spectral_index


class ScanSpec(_M):
    source: str
    duration_s: float = Field(gt=0)


class CorruptionSpec(_M):
    enabled: bool = True
    gain_amp_spread: float = Field(0.15, ge=0)  # initial amplitudes 1 ± this
    gain_amp_drift: float = Field(0.05, ge=0)  # linear drift over the session (fraction)
    gain_phase_drift_deg: float = Field(40.0, ge=0)  # linear phase drift over the session
    delay_ns: float = Field(3.0, ge=0)
    bandpass_ripple: float = Field(0.08, ge=0)
    first_fluxcal_delay_ns: float = Field(6.0, ge=0)
    first_fluxcal_phase_deg: float = Field(120.0, ge=0)


class SimSpec(_M):
    project: str = Field(min_length=1)
    start: datetime
    n_antennas: int = Field(8, ge=3, le=42)
    integration_s: float = Field(10.0, gt=0)
    slew_s: float = Field(20.0, ge=0)
    block_start: int = Field(9760400, ge=0)
    noise_jy: float = Field(0.05, ge=0)
    sefd_jy: float = Field(500.0, gt=0)
    seed: int = 1
    layout: Literal["nested", "flat"] = "nested"
    los: list[LOSpec] = Field(min_length=1)
    sources: list[SourceSpec] = Field(min_length=1)
    scans: list[ScanSpec] = Field(min_length=1)
    corruptions: CorruptionSpec = Field(default_factory=CorruptionSpec)

    @field_validator("start")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)

    @model_validator(mode="after")
    def _refs(self):
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError("sources: duplicate names")
        for i, sc in enumerate(self.scans):
            if sc.source not in names:
                raise ValueError(f"scans.{i}.source: {sc.source!r} is not one of the sources {names}")
        los = [lo.name for lo in self.los]
        if len(set(los)) != len(los):
            raise ValueError("los: duplicate LO names")
        return self

    @property
    def session_name(self) -> str:
        return self.start.strftime("%Y-%m-%d-%H:%M:%S")

    def source(self, name: str) -> SourceSpec:
        return next(s for s in self.sources if s.name == name)


@dataclass
class SimResult:
    session_dir: Path
    truth_path: Path
    files: list[Path]


def _format_error(err: ValidationError, where: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
    msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
    return f"{where}: {loc}: {msg}"


def spec_from_dict(data: dict, where: str = "spec") -> SimSpec:
    try:
        return SimSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_error(err, where)) from None


def load_spec(path: str | Path) -> SimSpec:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as err:
        raise SpecError(f"{p}: cannot read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{p}: not valid TOML: {err}") from None
    return spec_from_dict(data, str(p))


def list_presets() -> list[str]:
    d = resources.files("atarchive") / "presets"
    return sorted(e.name[:-5] for e in d.iterdir() if e.name.endswith(".toml"))


def preset(name: str) -> SimSpec:
    d = resources.files("atarchive") / "presets"
    f = d / f"{name}.toml"
    if not f.is_file():
        raise SpecError(f"no preset {name!r}; presets: {', '.join(list_presets())}")
    return spec_from_dict(tomllib.loads(f.read_text()), f"preset {name}")


# -- the telescope ----------------------------------------------------------------------------------
def _ata_antennas() -> tuple[list[str], np.ndarray, np.ndarray]:
    text = (resources.files("atarchive") / "data" / "ata_antennas.csv").read_text()
    rows = [r for r in csv.reader(text.splitlines()) if r and not r[0].startswith("#")]
    rows = rows[1:]
    names = [r[0] for r in rows]
    nums = np.array([int(r[1]) for r in rows])
    pos = np.array([[float(x) for x in r[2:5]] for r in rows])
    return names, nums, pos


def _telescope():
    import astropy.units as u
    from astropy.coordinates import EarthLocation
    from pyuvdata import Telescope

    names, nums, pos = _ata_antennas()
    loc = EarthLocation.from_geodetic(ATA_LON * u.deg, ATA_LAT * u.deg, ATA_ALT * u.m)
    return Telescope.new(name="ATA", location=loc, antenna_positions=pos, antenna_names=names,
                         antenna_numbers=nums, instrument="ATA", antenna_diameters=np.full(len(names), 6.1),
                         feeds=["x", "y"], mount_type="alt-az", update_from_known=False)


def _choose_antennas(n: int, rng: np.random.Generator) -> np.ndarray:
    _, nums, _ = _ata_antennas()
    idx = np.sort(rng.choice(len(nums), size=n, replace=False))
    return nums[idx]


# -- corruptions ------------------------------------------------------------------------------------
@dataclass
class _Corruptions:
    amp0: np.ndarray  # (nant, 2)
    amp_drift: np.ndarray
    ph0: np.ndarray  # radians
    ph_drift: np.ndarray
    delay_s: np.ndarray  # (nant, 2)
    first_delay_s: np.ndarray
    first_ph: np.ndarray
    bp_amp: np.ndarray  # (nant, 2, 3) ripple amplitude, period (channels), phase
    enabled: bool

    @classmethod
    def draw(cls, c: CorruptionSpec, nant: int, rng: np.random.Generator) -> "_Corruptions":
        sh = (nant, 2)
        ref = np.zeros(sh)
        return cls(
            amp0=1 + c.gain_amp_spread * rng.uniform(-1, 1, sh),
            amp_drift=c.gain_amp_drift * rng.uniform(-1, 1, sh),
            ph0=np.radians(rng.uniform(-180, 180, sh)),
            ph_drift=np.radians(c.gain_phase_drift_deg) * rng.uniform(-1, 1, sh),
            delay_s=c.delay_ns * 1e-9 * rng.uniform(-1, 1, sh) + ref,
            first_delay_s=c.first_fluxcal_delay_ns * 1e-9 * rng.uniform(-1, 1, sh),
            first_ph=np.radians(c.first_fluxcal_phase_deg) * rng.uniform(-1, 1, sh),
            bp_amp=np.stack([c.bandpass_ripple * rng.uniform(0.3, 1, sh), rng.uniform(20, 60, sh),
                             rng.uniform(0, 2 * np.pi, sh)], axis=-1),
            enabled=c.enabled,
        )

    def gains(self, frac_t: np.ndarray, freqs: np.ndarray, f0: float, first_fluxcal: bool) -> np.ndarray:
        """Complex gain (nant, 2 pols, ntimes, nfreq)."""
        nant = self.amp0.shape[0]
        if not self.enabled:
            return np.ones((nant, 2, len(frac_t), len(freqs)), dtype=np.complex128)
        t = frac_t[None, None, :, None]
        amp = self.amp0[..., None, None] * (1 + self.amp_drift[..., None, None] * t)
        ph = self.ph0[..., None, None] + self.ph_drift[..., None, None] * t
        delay = self.delay_s + (self.first_delay_s if first_fluxcal else 0.0)
        if first_fluxcal:
            ph = ph + self.first_ph[..., None, None]
        df = (freqs - f0)[None, None, None, :]
        ph = ph - 2 * np.pi * delay[..., None, None] * df
        ch = np.arange(len(freqs))[None, None, None, :]
        a, period, phase = (self.bp_amp[..., k][..., None, None] for k in range(3))
        bp = (1 + a * np.sin(2 * np.pi * ch / period + phase)) * np.exp(0.5j * a * np.cos(2 * np.pi * ch / period))
        return amp * np.exp(1j * ph) * bp


# -- writing --------------------------------------------------------------------------------------
def _stem(t: datetime, block: int, source: str) -> str:
    mjd = (t - datetime(1858, 11, 17, tzinfo=timezone.utc)).total_seconds() / 86400.0
    sec = int(round((mjd - math.floor(mjd)) * 86400)) % 86400
    return f"uvh5_{int(math.floor(mjd))}_{sec}_{block}_{source}_0001"


def _jd(t: datetime) -> float:
    return (t - datetime(1858, 11, 17, tzinfo=timezone.utc)).total_seconds() / 86400.0 + 2400000.5


def _scan_uvdata(spec: SimSpec, tel, ants: np.ndarray, src: SourceSpec, lo: LOSpec, times_jd: np.ndarray, rng,
                 corr: _Corruptions, frac_t: np.ndarray, first_fluxcal: bool):
    from pyuvdata import UVData

    freqs = lo.freqs()
    pairs = [(int(a), int(b)) for i, a in enumerate(ants) for b in ants[i:]]
    true_ra, true_dec = src.true_position()
    cat = {0: {"cat_name": src.name, "cat_type": "sidereal", "cat_lon": math.radians(true_ra),
               "cat_lat": math.radians(true_dec), "cat_frame": "icrs", "cat_epoch": 2000.0}}
    uv = UVData.new(freq_array=freqs, polarization_array=POLS, times=times_jd, telescope=tel, antpairs=pairs,
                    do_blt_outer=True, integration_time=spec.integration_s, channel_width=lo.channel_width_hz,
                    phase_center_catalog=cat, phase_center_id_array=None, vis_units="uncalib",
                    empty=True)
    s = np.asarray(src.flux(freqs), dtype=float)
    data = np.zeros((uv.Nblts, len(freqs), 4), dtype=np.complex128)
    data[:, :, 0] = s
    data[:, :, 3] = s
    uv.data_array = data
    if src.offset_arcsec != (0.0, 0.0):
        uv.phase(lon=math.radians(src.ra_deg), lat=math.radians(src.dec_deg), cat_name=src.name, epoch="J2000")
    # corruptions
    a1 = np.searchsorted(ants, uv.ant_1_array)
    a2 = np.searchsorted(ants, uv.ant_2_array)
    _, tidx = np.unique(uv.time_array, return_inverse=True)
    g = corr.gains(frac_t, freqs, lo.start_freq_hz, first_fluxcal)  # (nant, 2, nt, nf)
    gi = g[a1, :, tidx, :]  # (nblt, 2, nf)
    gj = np.conj(g[a2, :, tidx, :])
    pol_pairs = [(0, 0), (0, 1), (1, 0), (1, 1)]  # xx xy yx yy
    vis = uv.data_array
    out = np.empty_like(vis)
    for k, (p, q) in enumerate(pol_pairs):
        out[:, :, k] = gi[:, p, :] * gj[:, q, :] * vis[:, :, k]
    noise = spec.noise_jy * (rng.standard_normal(out.shape) + 1j * rng.standard_normal(out.shape))
    auto = uv.ant_1_array == uv.ant_2_array
    out[~auto] += noise[~auto]
    # autocorrelations: real, |g|^2 (SEFD + S) on the parallel hands, a little on the cross hands
    for k, (p, q) in enumerate(pol_pairs):
        if p == q:
            out[auto, :, k] = (np.abs(gi[auto, p, :]) ** 2) * (spec.sefd_jy + s[None, :])
        else:
            out[auto, :, k] = 0.01 * spec.sefd_jy
    uv.data_array = out.astype(np.complex64)
    uv.flag_array = np.zeros(out.shape, dtype=bool)
    uv.nsample_array = np.ones(out.shape, dtype=np.float32)
    uv.history = "Simulated by atarchive.simulate (physical point-source model with corruptions)."
    return uv


def simulate(spec: SimSpec, out_root: str | Path, *, progress: Callable[[Path], None] | None = None) -> SimResult:
    """Write the session described by ``spec`` under ``out_root`` plus its truth file."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _simulate(spec, out_root, progress)


def _simulate(spec: SimSpec, out_root: str | Path, progress) -> SimResult:
    from astropy.utils import iers

    iers.conf.auto_download = False
    out_root = Path(out_root)
    rng = np.random.default_rng(spec.seed)
    tel = _telescope()
    ants = _choose_antennas(spec.n_antennas, rng)
    corr = _Corruptions.draw(spec.corruptions, len(ants), rng)
    sdir = out_root / "projects" / spec.project / spec.session_name
    # the scan timeline
    t = spec.start
    timeline = []
    for i, sc in enumerate(spec.scans):
        nint = max(1, int(round(sc.duration_s / spec.integration_s)))
        timeline.append((i, sc, t, nint))
        t = t + timedelta(seconds=nint * spec.integration_s + spec.slew_s)
    total_s = (t - spec.start).total_seconds()
    fluxcals = [s.name for s in spec.sources if s.calibrator]
    first_fc_scan = next((i for i, sc, _, _ in timeline if sc.source in fluxcals), None)
    files: list[Path] = []
    scans_truth = []
    for i, sc, t0, nint in timeline:
        src = spec.source(sc.source)
        block = spec.block_start + i
        stem = _stem(t0, block, src.name)
        offs = (np.arange(nint) + 0.5) * spec.integration_s
        times_jd = _jd(t0) + offs / 86400.0
        frac_t = np.array([((t0 - spec.start).total_seconds() + o) / max(total_s, 1.0) for o in offs])
        for lo in spec.los:
            uv = _scan_uvdata(spec, tel, ants, src, lo, times_jd, rng, corr, frac_t, i == first_fc_scan)
            for k in range(lo.subbands):
                sub = lo.first_subband_index + k * lo.subband_index_step
                part = uv.select(freq_chans=np.arange(k * lo.channels_per_subband, (k + 1) * lo.channels_per_subband),
                                 inplace=False, run_check=False)
                if spec.layout == "nested":
                    path = sdir / stem / f"Lo{lo.name}.C{sub:04d}" / f"{stem}.uvh5"
                else:
                    path = sdir / f"ata.Lo{lo.name}.C{sub:04d}.{stem}.uvh5"
                path.parent.mkdir(parents=True, exist_ok=True)
                part.write_uvh5(str(path), clobber=True, run_check=False)
                files.append(path)
                if progress:
                    progress(path)
        scans_truth.append({"stem": stem, "source": src.name, "start_mjd": _jd(t0) - 2400000.5,
                            "end_mjd": _jd(t0) - 2400000.5 + nint * spec.integration_s / 86400.0,
                            "integrations": nint, "first_fluxcal_scan": i == first_fc_scan})
    (sdir / "obsinfo.toml").write_text(
        "# side file like the real telescope's: ignored by the indexer\n"
        f"antennas = {json.dumps([str(n) for n in _names_of(ants)])}\n")
    truth_path = _write_truth(spec, out_root, sdir, ants, scans_truth)
    return SimResult(sdir, truth_path, files)


def _names_of(nums: np.ndarray) -> list[str]:
    names, allnums, _ = _ata_antennas()
    lut = dict(zip(allnums.tolist(), names))
    return [lut[int(n)] for n in nums]


def _role_hint(spec: SimSpec, src: SourceSpec) -> str:
    if src.calibrator:
        return "flux_cal"
    n = sum(1 for s in spec.scans if s.source == src.name)
    durs = [s.duration_s for s in spec.scans if s.source == src.name]
    others = [s.duration_s for s in spec.scans if s.source != src.name and not spec.source(s.source).calibrator]
    return "phase_cal" if n >= 2 and others and max(durs) < max(others) else "target"


def _write_truth(spec: SimSpec, out_root: Path, sdir: Path, ants, scans_truth) -> Path:
    los = {lo.name: {"centre_freq_hz": lo.centre_hz, "start_freq_hz": float(lo.freqs()[0]),
                     "end_freq_hz": float(lo.freqs()[-1]), "nchan": lo.nchan} for lo in spec.los}
    sources = {}
    for s in spec.sources:
        ra, dec = s.true_position()
        sources[s.name] = {
            "ra_deg": ra, "dec_deg": dec, "phase_centre_ra_deg": s.ra_deg, "phase_centre_dec_deg": s.dec_deg,
            "flux_jy": s.flux_jy if s.calibrator is None else None, "spectral_index": s.spectral_index,
            "ref_freq_hz": s.ref_freq_hz, "calibrator": calibrators.find_flux_calibrator(s.calibrator).name
            if s.calibrator else None, "role_hint": _role_hint(spec, s),
            "flux_per_lo": {lo.name: {"freq_hz": lo.centre_hz, "flux_jy": float(s.flux(lo.centre_hz))}
                            for lo in spec.los},
        }
    truth = {"project": spec.project, "session": spec.session_name, "session_dir": str(sdir),
             "start": spec.start.isoformat(), "los": los, "sources": sources, "antennas": _names_of(ants),
             "scans": scans_truth, "corruptions": spec.corruptions.model_dump(), "noise_jy": spec.noise_jy,
             "spec": json.loads(spec.model_dump_json())}
    p = out_root / "truth" / f"{spec.session_name}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(truth, indent=2))
    return p
