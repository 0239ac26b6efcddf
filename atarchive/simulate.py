"""Simulated ATA sessions in the real on-disk layout, with a truth file.

Visibilities are physical: unpolarised point sources (a Perley-Butler 2017 flux calibrator at its
model flux, phase calibrators and targets with a flux and spectral index, targets offset from
their phase centres), per-antenna, per-polarisation complex gains drifting linearly in time,
per-antenna delays, a per-antenna bandpass ripple, thermal noise, and the first flux-calibrator
scan on a different delay/phase model, as on the real telescope. Each source is simulated at its
own position and re-phased to its field's phase centre by pyuvdata, so geometry and sign
conventions are pyuvdata's own.

Optional (off in the presets that predate them, which stay bit-for-bit the same: each draws from its
own generator): more point components in a field, attenuated by the ATA primary beam
(:mod:`atarchive.beam`); Ornstein-Uhlenbeck phase noise per antenna and polarisation; bad antennas
(noise only); RFI blocks (channels × a time range, strong and not fringe-stopped).

Layout: ``ROOT/projects/<project>/<YYYY-MM-DD-HH:MM:SS>/<stem>/Lo<L>.C<cccc>/<stem>.uvh5`` (or the
flattened ``ata.Lo<L>.C<cccc>.<stem>.uvh5``); truth in ``ROOT/truth/<project>/<session>.json``. Roles are
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

from . import beam, calibrators

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


def _offset_position(ra0_deg: float, dec0_deg: float, offset_arcsec: tuple[float, float]) -> tuple[float, float]:
    """Position ``offset_arcsec`` = (dRA·cos(dec), dDec) from (ra0, dec0), degrees."""
    dra, ddec = offset_arcsec
    dec = dec0_deg + ddec / 3600.0
    ra = ra0_deg + dra / 3600.0 / math.cos(math.radians(dec0_deg))
    return ra % 360.0, dec


class ComponentSpec(_M):
    """An extra point source in a source's field, attenuated by the primary beam at its offset."""

    offset_arcsec: tuple[float, float]  # position minus the field's phase centre (dRA*cos(dec), dDec)
    flux_jy: float = Field(gt=0)  # true (unattenuated) flux density at the source's ref_freq_hz
    spectral_index: float = 0.0


class SourceSpec(_M):
    name: str = Field(min_length=1)
    calibrator: str | None = None  # a Perley-Butler 2017 standard: position and flux from the model
    ra: float | str | None = None  # degrees, or "13h31m08.29s"
    dec: float | str | None = None
    flux_jy: float | None = Field(None, gt=0)
    spectral_index: float = 0.0
    ref_freq_hz: float = Field(1.4e9, gt=0)
    offset_arcsec: tuple[float, float] = (0.0, 0.0)  # true position minus phase centre (dRA*cos(dec), dDec)
    components: list[ComponentSpec] = Field(default_factory=list)  # more point sources in the field

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
        return _offset_position(self.ra_deg, self.dec_deg, self.offset_arcsec)

    def component_position(self, comp: ComponentSpec) -> tuple[float, float]:
        return _offset_position(self.ra_deg, self.dec_deg, comp.offset_arcsec)

    def component_flux(self, comp: ComponentSpec, freq_hz):
        """True (unattenuated) flux density of a component."""
        return comp.flux_jy * (np.asarray(freq_hz, dtype=float) / self.ref_freq_hz) ** comp.spectral_index

    def component_beam(self, comp: ComponentSpec, freq_hz):
        """Primary-beam power response at a component (the phase centre is the pointing centre)."""
        ra, dec = self.component_position(comp)
        return beam.response_at(ra, dec, self.ra_deg, self.dec_deg, freq_hz)

    def flux(self, freq_hz):
        if self.calibrator is not None:
            return calibrators.pb2017_flux(self.calibrator, freq_hz)
        return self.flux_jy * (np.asarray(freq_hz, dtype=float) / self.ref_freq_hz) ** self.spectral_index


class ScanSpec(_M):
    source: str
    duration_s: float = Field(gt=0)


class RFISpec(_M):
    """A strong signal in a block of channels and a range of the session's time."""

    channels: tuple[int, int]  # first and last channel (inclusive) of the LO, 0-based
    time_fraction: tuple[float, float] = (0.0, 1.0)  # of the span first scan start → last scan end
    amplitude_jy: float = Field(50.0, gt=0)
    lo: str | None = None  # None: every LO

    @model_validator(mode="after")
    def _ranges(self):
        a, b = self.channels
        if a < 0 or b < a:
            raise ValueError("channels must be [first, last] with 0 <= first <= last")
        t0, t1 = self.time_fraction
        if not 0.0 <= t0 < t1 <= 1.0:
            raise ValueError("time_fraction must be [t0, t1] with 0 <= t0 < t1 <= 1")
        return self


class CorruptionSpec(_M):
    enabled: bool = True  # false: no gains, delays, bandpass or phase noise (bad antennas and RFI stay)
    gain_amp_spread: float = Field(0.15, ge=0)  # initial amplitudes 1 ± this
    gain_amp_drift: float = Field(0.05, ge=0)  # linear drift over the session (fraction)
    gain_phase_drift_deg: float = Field(40.0, ge=0)  # linear phase drift over the session
    delay_ns: float = Field(3.0, ge=0)
    bandpass_ripple: float = Field(0.08, ge=0)
    first_fluxcal_delay_ns: float = Field(6.0, ge=0)
    first_fluxcal_phase_deg: float = Field(120.0, ge=0)
    phase_noise_deg: float = Field(0.0, ge=0)  # rms of a random per-antenna, per-pol phase (0 = none)
    phase_noise_timescale_s: float = Field(60.0, ge=0)  # its correlation time (Ornstein-Uhlenbeck)
    bad_antennas: list[str] = Field(default_factory=list)  # antenna names: noise only, no signal
    rfi: list[RFISpec] = Field(default_factory=list)


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
        for i, r in enumerate(self.corruptions.rfi):
            if r.lo is not None and r.lo not in los:
                raise ValueError(f"corruptions.rfi.{i}.lo: {r.lo!r} is not one of the LOs {los}")
            for lo in self.los:
                if (r.lo is None or r.lo == lo.name) and r.channels[1] >= lo.nchan:
                    raise ValueError(f"corruptions.rfi.{i}.channels: LO {lo.name} has {lo.nchan} channels")
        if self.corruptions.bad_antennas:
            have = _names_of(_choose_antennas(self.n_antennas, np.random.default_rng(self.seed)))
            for name in self.corruptions.bad_antennas:
                if name not in have:
                    raise ValueError(f"corruptions.bad_antennas: {name!r} has no data in this session "
                                     f"(n_antennas and seed choose {have})")
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

    def gains(self, frac_t: np.ndarray, freqs: np.ndarray, f0: float, first_fluxcal: bool,
              phase_noise: np.ndarray | None = None) -> np.ndarray:
        """Complex gain (nant, 2 pols, ntimes, nfreq); ``phase_noise`` (nant, 2, ntimes) radians is added."""
        nant = self.amp0.shape[0]
        if not self.enabled:
            return np.ones((nant, 2, len(frac_t), len(freqs)), dtype=np.complex128)
        t = frac_t[None, None, :, None]
        amp = self.amp0[..., None, None] * (1 + self.amp_drift[..., None, None] * t)
        ph = self.ph0[..., None, None] + self.ph_drift[..., None, None] * t
        if phase_noise is not None:
            ph = ph + phase_noise[..., None]
        delay = self.delay_s + (self.first_delay_s if first_fluxcal else 0.0)
        if first_fluxcal:
            ph = ph + self.first_ph[..., None, None]
        df = (freqs - f0)[None, None, None, :]
        ph = ph - 2 * np.pi * delay[..., None, None] * df
        ch = np.arange(len(freqs))[None, None, None, :]
        a, period, phase = (self.bp_amp[..., k][..., None, None] for k in range(3))
        bp = (1 + a * np.sin(2 * np.pi * ch / period + phase)) * np.exp(0.5j * a * np.cos(2 * np.pi * ch / period))
        return amp * np.exp(1j * ph) * bp


def phase_noise_series(t_s: np.ndarray, nant: int, rms_rad: float, timescale_s: float,
                       rng: np.random.Generator) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck phases (nant, 2, len(t_s)) at the sorted times ``t_s`` (seconds):
    rms ``rms_rad``, autocorrelation exp(-|dt| / timescale_s) (white if the timescale is 0)."""
    out = np.empty((nant, 2, len(t_s)))
    if len(t_s) == 0:
        return out
    out[..., 0] = rms_rad * rng.standard_normal((nant, 2))
    for k in range(1, len(t_s)):
        rho = math.exp(-(t_s[k] - t_s[k - 1]) / timescale_s) if timescale_s > 0 else 0.0
        out[..., k] = rho * out[..., k - 1] + rms_rad * math.sqrt(1.0 - rho * rho) * rng.standard_normal((nant, 2))
    return out


# -- writing --------------------------------------------------------------------------------------
def _stem(t: datetime, block: int, source: str) -> str:
    mjd = (t - datetime(1858, 11, 17, tzinfo=timezone.utc)).total_seconds() / 86400.0
    sec = int(round((mjd - math.floor(mjd)) * 86400)) % 86400
    return f"uvh5_{int(math.floor(mjd))}_{sec}_{block}_{source}_0001"


def _jd(t: datetime) -> float:
    return (t - datetime(1858, 11, 17, tzinfo=timezone.utc)).total_seconds() / 86400.0 + 2400000.5


@dataclass
class _Extras:
    """What the default presets do not have: per-scan phase noise, bad antennas, RFI."""

    phase_noise: np.ndarray | None = None  # (nant, 2, ntimes) radians for this scan
    bad: np.ndarray | None = None  # antenna numbers with noise only
    rfi: list | None = None  # [(RFISpec, time mask (ntimes,))] applying to this scan and LO
    rfi_rng: np.random.Generator | None = None


def _point_uv(spec: SimSpec, tel, pairs, times_jd, lo: LOSpec, name: str, ra_deg: float, dec_deg: float,
              flux: np.ndarray):
    """An unpolarised point source of spectrum ``flux`` at (ra, dec), phased to that position."""
    from pyuvdata import UVData

    freqs = lo.freqs()
    cat = {0: {"cat_name": name, "cat_type": "sidereal", "cat_lon": math.radians(ra_deg),
               "cat_lat": math.radians(dec_deg), "cat_frame": "icrs", "cat_epoch": 2000.0}}
    uv = UVData.new(freq_array=freqs, polarization_array=POLS, times=times_jd, telescope=tel, antpairs=pairs,
                    do_blt_outer=True, integration_time=spec.integration_s, channel_width=lo.channel_width_hz,
                    phase_center_catalog=cat, phase_center_id_array=None, vis_units="uncalib",
                    empty=True)
    data = np.zeros((uv.Nblts, len(freqs), 4), dtype=np.complex128)
    data[:, :, 0] = flux
    data[:, :, 3] = flux
    uv.data_array = data
    return uv


def _scan_uvdata(spec: SimSpec, tel, ants: np.ndarray, src: SourceSpec, lo: LOSpec, times_jd: np.ndarray, rng,
                 corr: _Corruptions, frac_t: np.ndarray, first_fluxcal: bool, extras: _Extras | None = None):
    extras = extras or _Extras()
    freqs = lo.freqs()
    pairs = [(int(a), int(b)) for i, a in enumerate(ants) for b in ants[i:]]
    true_ra, true_dec = src.true_position()
    s = np.asarray(src.flux(freqs), dtype=float)
    uv = _point_uv(spec, tel, pairs, times_jd, lo, src.name, true_ra, true_dec, s)
    if src.offset_arcsec != (0.0, 0.0):
        uv.phase(lon=math.radians(src.ra_deg), lat=math.radians(src.dec_deg), cat_name=src.name, epoch="J2000")
    for comp in src.components:  # each at its own position, re-phased to the field's phase centre
        cra, cdec = src.component_position(comp)
        cflux = src.component_flux(comp, freqs) * src.component_beam(comp, freqs)
        cuv = _point_uv(spec, tel, pairs, times_jd, lo, src.name, cra, cdec, cflux)
        cuv.phase(lon=math.radians(src.ra_deg), lat=math.radians(src.dec_deg), cat_name=src.name, epoch="J2000")
        if not (np.array_equal(cuv.ant_1_array, uv.ant_1_array) and np.array_equal(cuv.ant_2_array, uv.ant_2_array)
                and np.array_equal(cuv.time_array, uv.time_array)):
            raise RuntimeError("simulate: component baseline-time order differs from the source's")
        uv.data_array = uv.data_array + cuv.data_array
        s = s + cflux  # total flux in the beam, for the autocorrelations
    # corruptions
    a1 = np.searchsorted(ants, uv.ant_1_array)
    a2 = np.searchsorted(ants, uv.ant_2_array)
    _, tidx = np.unique(uv.time_array, return_inverse=True)
    g = corr.gains(frac_t, freqs, lo.start_freq_hz, first_fluxcal, extras.phase_noise)  # (nant, 2, nt, nf)
    gi = g[a1, :, tidx, :]  # (nblt, 2, nf)
    gj = np.conj(g[a2, :, tidx, :])
    pol_pairs = [(0, 0), (0, 1), (1, 0), (1, 1)]  # xx xy yx yy
    vis = uv.data_array
    out = np.empty_like(vis)
    for k, (p, q) in enumerate(pol_pairs):
        out[:, :, k] = gi[:, p, :] * gj[:, q, :] * vis[:, :, k]
    bad = None
    if extras.bad is not None and len(extras.bad):  # dead signal path: no sky, no RFI, noise only
        bad = np.isin(uv.ant_1_array, extras.bad) | np.isin(uv.ant_2_array, extras.bad)
        out[bad] = 0.0
    noise = spec.noise_jy * (rng.standard_normal(out.shape) + 1j * rng.standard_normal(out.shape))
    auto = uv.ant_1_array == uv.ant_2_array
    out[~auto] += noise[~auto]
    # autocorrelations: real, |g|^2 (SEFD + S) on the parallel hands, a little on the cross hands
    for k, (p, q) in enumerate(pol_pairs):
        if p == q:
            out[auto, :, k] = (np.abs(gi[auto, p, :]) ** 2) * (spec.sefd_jy + s[None, :])
            if bad is not None:
                sel = auto & bad
                out[sel, :, k] = (np.abs(gi[sel, p, :]) ** 2) * spec.sefd_jy
        else:
            out[auto, :, k] = 0.01 * spec.sefd_jy
    for r, tmask in extras.rfi or []:
        _add_rfi(out, r, tmask, tidx, a1, a2, auto, bad, len(ants), extras.rfi_rng)
    uv.data_array = out.astype(np.complex64)
    uv.flag_array = np.zeros(out.shape, dtype=bool)
    uv.nsample_array = np.ones(out.shape, dtype=np.float32)
    uv.history = "Simulated by atarchive.simulate (physical point-source model with corruptions)."
    return uv


def _add_rfi(out: np.ndarray, r: RFISpec, tmask: np.ndarray, tidx, a1, a2, auto, bad, nant: int,
             rng: np.random.Generator) -> None:
    """A narrow-band terrestrial signal: every antenna receives it with its own random phase per
    integration and polarisation (not fringe-stopped), so each baseline sees ``amplitude_jy`` with a
    phase jumping from one integration to the next; the autocorrelations gain ``amplitude_jy``."""
    ph = rng.uniform(0, 2 * np.pi, (nant, 2, len(tmask)))
    ch = slice(r.channels[0], r.channels[1] + 1)
    rows = tmask[tidx]
    if bad is not None:
        rows = rows & ~bad
    for k, (p, q) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        v = r.amplitude_jy * np.exp(1j * (ph[a1, p, tidx] - ph[a2, q, tidx]))
        v = np.where(auto, r.amplitude_jy if p == q else 0.0, v)
        out[rows, ch, k] += v[rows, None]


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
    # what today's presets lack draws from its own generators, so their data stay bit-for-bit the same
    c = spec.corruptions
    scan_t_s = [(t0 - spec.start).total_seconds() + (np.arange(nint) + 0.5) * spec.integration_s
                for _, _, t0, nint in timeline]
    noise_by_scan: list = [None] * len(timeline)
    if c.enabled and c.phase_noise_deg > 0:
        allt = np.concatenate(scan_t_s)
        series = phase_noise_series(allt, len(ants), math.radians(c.phase_noise_deg), c.phase_noise_timescale_s,
                                    np.random.default_rng([spec.seed, 16, 1]))
        edges = np.cumsum([0] + [len(x) for x in scan_t_s])
        noise_by_scan = [series[..., edges[k]:edges[k + 1]] for k in range(len(timeline))]
    bad_nums = _numbers_of(c.bad_antennas)
    span_s = max(timeline[-1][2] - spec.start + timedelta(seconds=timeline[-1][3] * spec.integration_s),
                 timedelta(seconds=1e-9)).total_seconds()
    rfi_rng = np.random.default_rng([spec.seed, 14, 6])
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
            rfi = []
            for r in c.rfi:
                tmask = (scan_t_s[i] >= r.time_fraction[0] * span_s) & (scan_t_s[i] < r.time_fraction[1] * span_s)
                if (r.lo is None or r.lo == lo.name) and tmask.any():
                    rfi.append((r, tmask))
            extras = _Extras(phase_noise=noise_by_scan[i], bad=bad_nums, rfi=rfi, rfi_rng=rfi_rng)
            uv = _scan_uvdata(spec, tel, ants, src, lo, times_jd, rng, corr, frac_t, i == first_fc_scan, extras)
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
    rfi_truth = []
    for r in c.rfi:
        entry = {"lo": r.lo, "channels": list(r.channels), "time_fraction": list(r.time_fraction),
                 "amplitude_jy": r.amplitude_jy,
                 "start_mjd": _jd(spec.start) - 2400000.5 + r.time_fraction[0] * span_s / 86400.0,
                 "end_mjd": _jd(spec.start) - 2400000.5 + r.time_fraction[1] * span_s / 86400.0,
                 "freq_hz": {lo.name: [float(lo.freqs()[r.channels[0]]), float(lo.freqs()[r.channels[1]])]
                             for lo in spec.los if r.lo is None or r.lo == lo.name},
                 "scans": [scans_truth[i]["stem"] for i in range(len(timeline))
                           if ((scan_t_s[i] >= r.time_fraction[0] * span_s)
                               & (scan_t_s[i] < r.time_fraction[1] * span_s)).any()]}
        rfi_truth.append(entry)
    truth_path = _write_truth(spec, out_root, sdir, ants, scans_truth, rfi_truth)
    return SimResult(sdir, truth_path, files)


def on_source_s(spec: SimSpec) -> float:
    """Seconds of data the session holds: each scan's whole integrations (slews not counted)."""
    return sum(max(1, int(round(sc.duration_s / spec.integration_s))) * spec.integration_s for sc in spec.scans)


def with_minutes(spec: SimSpec, minutes: float) -> SimSpec:
    """``spec`` with every scan's duration scaled by the same factor so the session holds ``minutes`` of
    data (slews not counted), each scan a whole number (≥ 1) of integrations; the scan pattern, sources,
    LOs and everything else unchanged. The ``ata-*min`` presets are ``ata-10min`` scaled this way."""
    if minutes <= 0:
        raise SpecError("minutes must be > 0")
    total = sum(sc.duration_s for sc in spec.scans)
    scale = minutes * 60.0 / total
    scans = [sc.model_copy(update={"duration_s": max(1, round(sc.duration_s * scale / spec.integration_s))
                                   * spec.integration_s}) for sc in spec.scans]
    return spec.model_copy(update={"scans": scans}, deep=True)


def _names_of(nums: np.ndarray) -> list[str]:
    names, allnums, _ = _ata_antennas()
    lut = dict(zip(allnums.tolist(), names))
    return [lut[int(n)] for n in nums]


def _numbers_of(names: list[str]) -> np.ndarray:
    allnames, allnums, _ = _ata_antennas()
    lut = dict(zip(allnames, allnums.tolist()))
    return np.array([lut[n] for n in names], dtype=int)


def _role_hint(spec: SimSpec, src: SourceSpec) -> str:
    if src.calibrator:
        return "flux_cal"
    n = sum(1 for s in spec.scans if s.source == src.name)
    durs = [s.duration_s for s in spec.scans if s.source == src.name]
    others = [s.duration_s for s in spec.scans if s.source != src.name and not spec.source(s.source).calibrator]
    return "phase_cal" if n >= 2 and others and max(durs) < max(others) else "target"


def _write_truth(spec: SimSpec, out_root: Path, sdir: Path, ants, scans_truth, rfi_truth=()) -> Path:
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
            "components": [_component_truth(spec, s, comp) for comp in s.components],
        }
    truth = {"project": spec.project, "session": spec.session_name, "session_dir": str(sdir),
             "start": spec.start.isoformat(), "los": los, "sources": sources, "antennas": _names_of(ants),
             "scans": scans_truth, "corruptions": spec.corruptions.model_dump(), "noise_jy": spec.noise_jy,
             "bad_antennas": list(spec.corruptions.bad_antennas), "rfi": list(rfi_truth),
             "spec": json.loads(spec.model_dump_json())}
    p = out_root / "truth" / spec.project / f"{spec.session_name}.json"  # sessions of two projects may share a start
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(truth, indent=2))
    return p


def _component_truth(spec: SimSpec, s: SourceSpec, comp: ComponentSpec) -> dict:
    ra, dec = s.component_position(comp)
    sep = float(beam.separation_deg(s.ra_deg, s.dec_deg, ra, dec))
    per_lo = {}
    for lo in spec.los:
        f = lo.centre_hz
        flux = float(s.component_flux(comp, f))
        gain = float(beam.response(sep, f))
        per_lo[lo.name] = {"freq_hz": f, "flux_jy": flux, "beam_gain": gain, "apparent_flux_jy": flux * gain,
                           "beam_fwhm_deg": float(beam.fwhm_deg(f))}
    return {"ra_deg": ra, "dec_deg": dec, "offset_arcsec": list(comp.offset_arcsec), "separation_deg": sep,
            "flux_jy": comp.flux_jy, "spectral_index": comp.spectral_index, "ref_freq_hz": s.ref_freq_hz,
            "flux_per_lo": per_lo}
