"""Configuration: a TOML file validated by pydantic models.

Relative paths in the file are resolved against the directory of the file, so a config can travel
with its data. A wrong key or value raises :class:`ConfigError` with one line naming it.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

ENV_VAR = "ATARCHIVE_CONFIG"
# CASA-bound strings, checked when the config is read (not when CASA rejects them mid-run)
_SOLINT = re.compile(r"^(int|inf|\d+(\.\d+)?(s|min|h)?)$")
_WEIGHTINGS = {"natural", "uniform", "briggs", "briggsabs", "briggsbwtaper", "superuniform", "radial"}
_WSCLEAN_WEIGHTINGS = {"natural", "uniform", "briggs"}
DEFAULT_IMAGER = "tclean"
_ANTENNA = re.compile(r"^[A-Za-z0-9]+$")
_NOT_IN_NAMES = re.compile(r"[,\x00-\x1f\x7f]")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ScanConfig(_Strict):
    stable_seconds: float = Field(60.0, ge=0, description="size and mtime unchanged this long → file ready")
    session_idle_seconds: float = Field(300.0, ge=0, description="daemon waits this long after the last change")
    poll_seconds: float = Field(60.0, gt=0, description="daemon full rescan interval (NFS sends no events)")


class DaemonConfig(_Strict):
    heartbeat_seconds: float = Field(5.0, gt=0)
    metrics_port: int | None = Field(None, ge=0, le=65535,
                                     description="serve Prometheus metrics on this port (also --metrics-port)")
    metrics_address: str = Field("127.0.0.1", description="address the metrics port listens on (0.0.0.0: all)")
    grace_seconds: float = Field(60.0, ge=0, description="on SIGTERM, running steps get this long before being killed")
    min_free_gb: float = Field(5.0, ge=0, description="pause new work while the work root has less free space")


class CopyConfig(_Strict):
    times_per_chunk: int = Field(0, ge=0, description="0 = read a whole scan-LO at once")
    convert_dropped: bool = Field(False, description="also convert (and compress) scans concat leaves out")


class CompressConfig(_Strict):
    flagger: Literal["auto", "aoflagger", "tfcrop", "none"] = "auto"
    timebin_s: float = Field(20.0, ge=0)
    chanbin: int = Field(4, ge=1)
    keep_fullres: bool = False
    one_pass: bool = Field(True, description="convert, flag (AOFlagger) and average each scan-LO in one pass, never "
                                             "writing the full-resolution MS (two steps when keep_fullres or "
                                             "flagger tfcrop)")
    keep_averaged: bool = Field(True, description="keep the per-scan averaged MSs after concat; false deletes them "
                                                  "(remade from the full-resolution MS, or the source, if needed again)")


class ConcatConfig(_Strict):
    flux_cal_scans: Literal["last", "all"] = Field(
        "last", description="keep only the last scan of each flux calibrator (earlier ones are on an old delay model)"
    )


class FixConfig(_Strict):
    max_gap_s: float = Field(120.0, gt=0, description="a time gap longer than this starts a new scan")


class CalibrateConfig(_Strict):
    separate_lo_threshold_hz: float = Field(
        500e6, ge=0, description="LOs whose centres are further apart are calibrated and imaged separately"
    )
    flux_cal_tolerance_arcsec: float = Field(120.0, gt=0)
    solint_short: str = "int"
    minsnr: float = 3.0
    rflag: bool = True

    @field_validator("solint_short")
    @classmethod
    def _solint(cls, v: str) -> str:
        if not _SOLINT.match(v):
            raise ValueError(f"{v!r} is not a CASA solution interval: int, inf, or a time such as 30s, 2min, 1h")
        return v


class ImageConfig(_Strict):
    cell_arcsec: float = Field(0.0, ge=0, description="0 = from the longest baseline at the highest frequency")
    imsize: int = Field(0, ge=0, description="0 = cover the primary beam")
    max_imsize: int = Field(1024, ge=64)
    weighting: str = "briggs"
    robust: float = 0.0
    rounds: int = Field(6, ge=1, description="at most this many clean rounds after the dirty image, each "
                                             "continuing the last to 5 x rms (until one reaches it)")
    niter: int = Field(5000, ge=0)
    imager: Literal["tclean", "wsclean"] = Field(DEFAULT_IMAGER, description=(
        "tclean (CASA) or wsclean (Debian's wsclean 3.1 program; `make test`/`make demo` install it); the "
        "image step's fitting, FITS products and catalogue rows are the same with both"))

    @field_validator("weighting")
    @classmethod
    def _weighting(cls, v: str) -> str:
        if v not in _WEIGHTINGS:
            raise ValueError(f"{v!r} is not a tclean weighting: {', '.join(sorted(_WEIGHTINGS))}")
        return v

    @model_validator(mode="after")
    def _wsclean_weighting(self):
        if self.imager == "wsclean" and self.weighting not in _WSCLEAN_WEIGHTINGS:
            raise ValueError(f"weighting {self.weighting!r} is not a wsclean weighting: "
                             f"{', '.join(sorted(_WSCLEAN_WEIGHTINGS))}")
        return self

    def fingerprinted(self) -> dict:
        """The settings as fingerprinted: ``imager`` only when it is not the default, so archives imaged
        before the choice existed keep their fingerprints (nothing re-runs) and choosing wsclean re-runs
        the images and what follows them."""
        d = self.model_dump()
        if d["imager"] == DEFAULT_IMAGER:
            del d["imager"]
        return d


class SelfcalConfig(_Strict):
    rounds: int = Field(0, ge=0, description="phase-only self-calibration rounds per target and LO; 0 = off (the "
                                             "default: on `medium` 4 rounds add 42 % to the run, 214 → 304 s, and "
                                             "gain nothing there); 4 for fields limited by phase errors")
    solints: list[str] = Field(["60s", "int"], min_length=1,
                               description="solution interval of each phase round, shrinking; the last repeats")
    ap_solint: str = Field("inf", description="solution interval of the amplitude+phase round after the phase "
                                              "rounds; empty = no amplitude round")
    ap_min_peak_snr: float = Field(50.0, ge=0, description="amplitude round only when peak/rms after the phase "
                                                           "rounds reaches this")
    min_snr: float = Field(3.0, ge=0, description="gaincal minsnr: solutions below it are flagged")
    min_peak_snr: float = Field(10.0, ge=0, description="a target whose 1GC peak/rms is below this keeps its 1GC "
                                                        "data (too faint for self-calibration)")
    mask_threshold: float = Field(5.0, gt=0, description="breizorro mask threshold, in σ of its local noise")
    model_nsigma: float = Field(3.0, gt=0, description="round 0's model of the 1GC data: clean inside the mask to "
                                                        "this × rms (data with phase errors diverge when deeper)")
    nsigma: float = Field(1.5, gt=0, description="every self-calibration round, the final target image and the 1GC "
                                                 "image compared with it: clean inside the mask to this × rms. A sparse array's "
                                                 "residual rms is its sidelobes: shallower cleaning limits the "
                                                 "dynamic range")
    max_peak_drop: float = Field(0.03, ge=0, lt=1, description="guard: a round whose peak falls by more than "
                                                               "this fraction is not kept")

    @field_validator("solints")
    @classmethod
    def _solints(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not _SOLINT.match(s)]
        if bad:
            raise ValueError(f"not CASA solution intervals: {', '.join(map(repr, bad))} (int, inf, or a time "
                             f"such as 30s, 2min)")
        return v

    @field_validator("ap_solint")
    @classmethod
    def _ap_solint(cls, v: str) -> str:
        if v and not _SOLINT.match(v):
            raise ValueError(f"{v!r} is not a CASA solution interval: int, inf, or a time such as 30s, 2min, 1h")
        return v
class SourcesConfig(_Strict):
    """PyBDSF on every final target image (``[steps.sources]``)."""

    thresh_pix: float = Field(5.0, gt=0, description="island peaks must exceed this many sigma")
    thresh_isl: float = Field(3.0, gt=0, description="island boundaries at this many sigma")
    rms_box: tuple[int, int] | None = Field(None, description="[box, step] pixels for the rms map; empty = PyBDSF "
                                                              "chooses")
    adaptive_rms_box: bool = Field(False, description="smaller rms boxes near bright sources")


class StepsConfig(_Strict):
    copy_: CopyConfig = Field(default_factory=CopyConfig, alias="copy")
    compress: CompressConfig = Field(default_factory=CompressConfig)
    concat: ConcatConfig = Field(default_factory=ConcatConfig)
    fix: FixConfig = Field(default_factory=FixConfig)
    calibrate: CalibrateConfig = Field(default_factory=CalibrateConfig)
    selfcal: SelfcalConfig = Field(default_factory=SelfcalConfig)
    image: ImageConfig = Field(default_factory=ImageConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def for_step(self, name: str) -> BaseModel:
        return self.copy_ if name == "copy" else getattr(self, name)


class ExecutionConfig(_Strict):
    workers: int = Field(0, ge=0, description="parallel step units; 0 = number of cores")
    max_attempts: int = Field(3, ge=1)
    retry_backoff_s: float = Field(5.0, ge=0)
    step_timeout_s: float = Field(0.0, ge=0, description="0 = no limit")
    executor: Literal["threads", "dask"] = Field(
        "threads", description="threads: units run from this process; dask: on dask.distributed workers")
    dask_scheduler: str = Field("", description="dask scheduler address (tcp://host:8786); empty = a local "
                                                "cluster of `workers` processes")
    spare_casa_children: int | None = Field(
        None, ge=0, description="threads executor: CASA child processes started ahead of need, on a free core "
        "while CASA work is ahead, so a CASA step does not wait ~3.5 s for casatools to import (~270 MB each "
        "while idle); empty = one per worker, 0 = none")

    def n_workers(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    def n_spares(self) -> int:
        """Spare CASA children the reconciler keeps (threads executor)."""
        return self.n_workers() if self.spare_casa_children is None else self.spare_casa_children


class QAConfig(_Strict):
    """A verdict on every session (``[qa]``): the rules and their limits (docs/QA.md), and the reference
    catalogue every target image's sources are checked against."""

    reference_catalogue: Path | None = Field(None, description="local FITS/CSV/VOTable with ra, dec (deg), flux "
                                                                "(Jy) and freq (Hz) columns")
    reference_spectral_index: float = Field(-0.7, description="scales reference fluxes to the image frequency")
    match_radius_arcsec: float = Field(0.0, ge=0, description="0 = half the image's restoring beam major axis")
    flux_cal_tolerance: float = Field(0.05, ge=0, description="flux calibrator measured/model within this")
    max_flagged_fraction: float = Field(0.30, ge=0, le=1, description="flagged fraction of any scan below this")
    min_scan_seconds: float = Field(60.0, ge=0, description="shorter scans are not judged on flagging")
    rfi_channel_excess: float = Field(0.15, ge=0, le=1, description="channels flagged this much more than the "
                                                                     "LO's median channel: RFI")
    max_bandpass_outliers: int = Field(0, ge=0, description="bandpass-outlier antennas allowed")
    max_rms_factor: float = Field(3.0, gt=0, description="image rms at most this × the radiometer expectation")
    sefd_jy: float = Field(7000.0, gt=0, description="system equivalent flux density per antenna (radiometer)")
    max_offset_beams: float = Field(0.2, ge=0, description="median offset from the reference, in beams")
    reference_flux_tolerance: float = Field(0.10, ge=0, description="median flux ratio to the reference within this")
    phase_cal_tolerance: float = Field(0.10, ge=0, description="phase-calibrator flux within this of its median "
                                                               "over earlier sessions")
    fail_on: list[str] = Field(default_factory=lambda: ["flux_cal"], description="rules whose breach is a fail "
                                                                                 "(others warn)")


class SessionOverride(_Strict):
    flux_cals: list[str] | None = None
    phase_cals: list[str] | None = None
    targets: list[str] | None = None
    refant: str | None = None
    exclude_antennas: list[str] = Field(default_factory=list)
    exclude_scans: list[str] = Field(default_factory=list)

    @field_validator("refant")
    @classmethod
    def _refant(cls, v: str | None) -> str | None:
        if v is not None and not _ANTENNA.match(v):
            raise ValueError(f"{v!r} is not an antenna name (letters and digits, e.g. 1c)")
        return v

    @field_validator("exclude_antennas")
    @classmethod
    def _antennas(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if not _ANTENNA.match(a)]
        if bad:
            raise ValueError(f"not antenna names (letters and digits, e.g. 1c): {', '.join(map(repr, bad))}")
        return v

    @field_validator("flux_cals", "phase_cals", "targets", "exclude_scans")
    @classmethod
    def _names(cls, v: list[str] | None) -> list[str] | None:
        bad = [n for n in v or [] if not n.strip() or _NOT_IN_NAMES.search(n)]
        if bad:
            raise ValueError(f"names must be non-empty, without commas or control characters: "
                             f"{', '.join(map(repr, bad))}")
        return v


class Config(_Strict):
    storage_roots: list[Path] = Field(default_factory=list, description="each holds projects/<project>/<session>/")
    work_root: Path = Path("atarchive-work")
    catalogue: Path = Path("atarchive.db")
    log_format: Literal["text", "json"] = Field("text", description="log lines on stderr (also --log-format)")
    scan: ScanConfig = Field(default_factory=ScanConfig)
    steps: StepsConfig = Field(default_factory=StepsConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    qa: QAConfig = Field(default_factory=QAConfig)
    sessions: dict[str, SessionOverride] = Field(default_factory=dict)
    source: Path | None = Field(None, exclude=True, description="file this config was read from")

    @field_validator("storage_roots")
    @classmethod
    def _roots_distinct(cls, v: list[Path]) -> list[Path]:
        if len(set(v)) != len(v):
            raise ValueError("storage_roots lists the same directory twice")
        return v

    def resolve_paths(self, base: Path) -> "Config":
        def r(p: Path) -> Path:
            p = Path(os.path.expanduser(p))
            return p if p.is_absolute() else (base / p).resolve()

        self.storage_roots = [r(p) for p in self.storage_roots]
        self.work_root = r(self.work_root)
        self.catalogue = r(self.catalogue)
        if self.qa.reference_catalogue is not None:
            self.qa.reference_catalogue = r(self.qa.reference_catalogue)
        return self


def check_paths(cfg: Config) -> None:
    """Before `run`, `daemon` or `scan` touch anything: the storage roots and the catalogue's directory
    exist and are directories, and so does the work root (never created here: a typo or an unmounted
    disk must not fill the wrong file system). Raises :class:`ConfigError` with one line naming the key."""
    for i, root in enumerate(cfg.storage_roots):
        if not root.is_dir():
            what = "is not a directory" if root.exists() else "does not exist"
            raise ConfigError(f"storage_roots[{i}]: {root} {what}")
    parent = cfg.catalogue.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise ConfigError(f"catalogue: the directory of {cfg.catalogue} {what}")
    if cfg.catalogue.is_dir():
        raise ConfigError(f"catalogue: {cfg.catalogue} is a directory, not a catalogue file")
    root = cfg.work_root
    if not root.is_dir():
        what = "is not a directory" if root.exists() else f"does not exist (create it: mkdir -p {root})"
        raise ConfigError(f"work_root: {root} {what}")


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def from_dict(data: dict, *, base: Path, source: str = "config") -> Config:
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None
    return cfg.resolve_paths(base)


def load(path: str | os.PathLike | None = None) -> Config:
    """Load and validate a config file (``path``, else ``$ATARCHIVE_CONFIG``, else ./atarchive.toml)."""
    if path is None:
        path = os.environ.get(ENV_VAR) or "atarchive.toml"
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p} (pass --config PATH or set {ENV_VAR})")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: not valid TOML: {err}") from None
    cfg = from_dict(data, base=p.resolve().parent, source=str(p))
    cfg.source = p.resolve()
    return cfg
