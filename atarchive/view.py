"""The read-only view of one session that planning, the steps and the report work on: its catalogue
rows plus the config, and what follows from them (work directory, override, scans used and
dropped, roles). A low floor: it imports naming, roles and config, nothing that plans or runs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from . import naming, roles
from .config import Config, SessionOverride


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


def load_view(cat, cfg: Config, session: dict) -> SessionView:
    """The view of ``session`` (a sessions row), read from the catalogue ``cat``."""
    sid = session["id"]
    return SessionView(session, cat.scans(sid), cat.files(sid), cat.fields(sid), cat.los(sid), cfg)


def session_records(cat, view: SessionView) -> dict:
    """What the QA report shows of a session, as plain rows (they travel to the report's child
    process as JSON): the catalogue rows plus the session's roles as planning sees them."""
    from .contracts import STEP_ORDER

    sid = view.session["id"]
    order = {n: i for i, n in enumerate(STEP_ORDER)}
    runs = sorted(cat.latest_runs(sid), key=lambda r: (order.get(r["step"], 99), r["unit"]))
    try:
        roles = view.roles.as_dict()
    except Exception as e:  # noqa: BLE001 - roles need complete scans; a broken session's report still renders
        roles = {"error": str(e)}
    return {
        "session": dict(view.session),
        "sdir": str(view.sdir),
        "scans": sorted(view.scans, key=lambda r: (r["start_mjd"] or 0, r["stem"])),
        "fields": view.fields,
        "los": view.los,
        "runs": runs,
        "products": cat.products(sid),
        "fluxes": cat.flux_measurements(sid),
        "images": cat.images(sid),
        "roles": roles,
        "sources": cat.sources(sid),
        "source_checks": cat.source_checks(sid),
        "qa": view.cfg.qa.model_dump(mode="json"),
        "phase_cal_history": phase_cal_history(cat, sid),
    }


def phase_cal_history(cat, session_id: int) -> dict[str, list[float]]:
    """"field/LO" → the phase calibrator's flux in every session that started before this one (the
    verdict compares this session's with their median)."""
    starts = cat.first_scan_starts()
    rows = cat.flux_measurements()
    mine = next((r["session"] for r in rows if r["session_id"] == session_id), None)
    t0 = starts.get(mine) if mine else None
    out: dict[str, list[float]] = {}
    if t0 is None:
        return out
    for r in rows:
        if r["role"] == "phase_cal" and r["session_id"] != session_id and r["flux_jy"] is not None \
                and (starts.get(r["session"]) or t0) < t0:
            out.setdefault(f"{r['field']}/{r['lo']}", []).append(r["flux_jy"])
    return out
