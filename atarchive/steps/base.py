"""The shape every step shares, and the read-only view of a session that planning works on."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from .. import naming, roles
from ..config import Config, SessionOverride


@dataclass
class SessionView:
    """Catalogue rows of one session plus config: everything planning needs, nothing more."""

    session: dict
    scans: list[dict]
    files: list[dict]
    fields: list[dict]
    los: list[dict]
    cfg: Config

    @property
    def key(self) -> str:
        return self.session["key"]

    @cached_property
    def sdir(self) -> Path:
        return naming.session_dir(self.cfg.work_root, self.session["project"], self.session["name"])

    @cached_property
    def override(self) -> SessionOverride | None:
        return self.cfg.sessions.get(self.key) or self.cfg.sessions.get(self.session["name"])

    @cached_property
    def used_scans(self) -> list[dict]:
        """Complete scans, minus those excluded in the config, in time order."""
        excl = set(self.override.exclude_scans) if self.override else set()
        return [
            s
            for s in sorted(self.scans, key=lambda s: (s["start_mjd"] or 0, s["stem"]))
            if s["complete"] and s["stem"] not in excl
        ]

    @cached_property
    def dropped(self) -> dict[str, str]:
        """stem → why concat leaves the scan out (``steps.concat.flux_cal_scans``): every scan of a flux
        calibrator but its last, which alone was taken on the final delay/phase model."""
        if self.cfg.steps.concat.flux_cal_scans == "all":
            return {}
        out = {}
        for fc in sorted(set(self.roles.names("flux_cal"))):
            stems = [s["stem"] for s in self.used_scans if s["field"] == fc]
            for stem in stems[:-1]:
                out[stem] = f"earlier scan of flux calibrator {fc} (old delay/phase model); kept {stems[-1]}"
        return out

    @cached_property
    def files_by_scan_lo(self) -> dict[tuple[int, str], list[dict]]:
        out: dict[tuple[int, str], list[dict]] = {}
        for f in self.files:
            if f["status"] == "ready" and f["scan_id"] is not None:
                out.setdefault((f["scan_id"], f["lo"]), []).append(f)
        for v in out.values():
            v.sort(key=lambda f: f["subband"])
        return out

    @cached_property
    def roles(self) -> roles.Roles:
        c = self.cfg.steps.calibrate
        return roles.identify(
            self.fields, self.used_scans, override=self.override, flux_tol_arcsec=c.flux_cal_tolerance_arcsec
        )

    @cached_property
    def lo_names(self) -> list[str]:
        return sorted(lo["name"] for lo in self.los)


@dataclass
class UnitSpec:
    """One unit of work of a step (e.g. one scan × LO for copy)."""

    key: str
    params: dict
    inputs: dict[str, str]
    outputs: list[Path]
    payload: dict = field(default_factory=dict)  # what run() needs; not part of the fingerprint
    releasable: bool = False  # outputs may be deleted once downstream products exist


@dataclass
class PlannedUnit:
    step: str
    spec: UnitSpec
    fingerprint: str
    version: int
    versions: dict
    status: str  # ok | pending | running | failed | waiting
    reason: str
    attempt: int = 1
    not_before: float = 0.0  # retry backoff
    last_run: dict | None = None
    released: bool = False  # up to date, but its product was deleted after downstream used it

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass
class RunContext:
    view: SessionView
    unit: PlannedUnit
    tmp: dict[Path, Path]  # final output path → temporary path to write
    log_path: Path
    workdir: Path
    cancel: threading.Event
    on_start: Callable[[int], None] | None = None
    upstream: dict[str, dict[str, PlannedUnit]] = field(default_factory=dict)
    products: dict[str, list[dict]] = field(default_factory=dict)  # catalogue products by step

    def out(self, final: Path) -> Path:
        return self.tmp[final]


@dataclass
class StepResult:
    products: list[dict]  # {kind, path (final), meta}
    result: dict[str, Any] = field(default_factory=dict)


class Step:
    """Base class: subclasses set name, version, software and implement params/units/run."""

    name: str = ""
    version: int = 1
    software: str = "casa"  # key of fingerprint.SOFTWARE

    def params(self, cfg: Config) -> dict:
        return cfg.steps.for_step(self.name).model_dump()

    def units(self, view: SessionView, up: dict[str, dict[str, PlannedUnit]]) -> list[UnitSpec]:
        raise NotImplementedError

    batchable: bool = False  # many small units may share one child process
    casa_tools: bool = False  # the child call uses casatools: a spare, already started CASA child may run it

    def prepare(self, ctx: RunContext) -> tuple[str, dict]:
        """Parent-side work before the child runs; returns the child call ("module:function", kwargs)."""
        raise NotImplementedError

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        """Turn the child's result into products."""
        return StepResult([{"kind": self.name, "path": ctx.unit.spec.outputs[0], "meta": res}], res)

    def run(self, ctx: RunContext) -> StepResult:
        from ._child import call

        func, kwargs = self.prepare(ctx)
        return self.collect(ctx, call(func, kwargs, ctx))

    def after_success(self, ctx: RunContext, result: StepResult) -> None:
        """Called after outputs were renamed into place (e.g. to release inputs)."""

    def record(self, cat, session_id: int, run_id: int, result: StepResult) -> None:
        """Write step-specific catalogue rows (runs in the reconciler, the single writer)."""
