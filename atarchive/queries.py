"""Query views: what `status`, `show`, `explain`, `fluxes`, `report --list` and `run --dry-run`
show, as plain data (the ``--json`` output). Pure apart from reading the catalogue and checking
that report pages exist; the CLI only renders them."""

from __future__ import annotations

from . import naming
from .catalogue import Catalogue
from .config import Config
from .contracts import STEP_ORDER, SessionState, StepName, UnitStatus
from .plan import SessionPlan, plan_all
from .steps.copy import one_pass
from .view import load_view

FLUX_KEYS = ("session", "field", "role", "lo", "freq_hz", "flux_jy", "flux_err_jy", "peak_jy", "rms_jy",
             "model_flux_jy", "ra_deg", "dec_deg", "method")


def status_rows(cat: Catalogue, cfg: Config) -> list[dict]:
    """One row per session: scans, fields, LOs, state, next step, error, each step's summary."""
    plans = plan_all(cat, cfg)
    scans = cat.scan_counts()
    names = cat.names_by_session()
    reports = cat.products_of_step("report")
    rows = []
    for p in plans:
        s = p.session
        sc = scans.get(s["id"], {"n": 0, "c": 0})
        rep = next((r["meta"] for r in reports.get(s["id"], []) if r["kind"] == "report"), {})
        rows.append({
            "key": s["key"], "project": s["project"], "session": s["name"], "path": s["path"],
            "scans": sc["n"], "scans_complete": sc["c"] or 0,
            "fields": names["fields"].get(s["id"], []), "los": names["los"].get(s["id"], []),
            "ingest_state": s["ingest_state"], "state": p.state, "next_step": p.next_step,
            "error": p.error or s["error"],
            "steps": p.step_summary() if s["ingest_state"] == "ready" else {},
            # from the newest QA page (atarchive.verdict); None until the report step has run
            "verdict": rep.get("verdict"), "verdict_reasons": rep.get("verdict_reasons") or [],
        })
    return rows


def daemon_info(cat: Catalogue) -> dict | None:
    from .daemon import daemon_status

    return daemon_status(cat)


def show_data(cat: Catalogue, cfg: Config, ref: str) -> dict:
    """Scans (field, time, LOs), fields (position, role and why), LOs, files with errors."""
    s = cat.session(ref)
    view = load_view(cat, cfg, s)
    roles = view.roles if s["ingest_state"] == "ready" else None
    lo_of_scan: dict[int, set] = {}
    for f in view.files:
        if f["scan_id"] is not None:
            lo_of_scan.setdefault(f["scan_id"], set()).add(f["lo"])
    data = {
        "session": {k: s[k] for k in ("key", "project", "name", "path", "layout", "ingest_state", "error")},
        "scans": [{"stem": x["stem"], "field": x["field"], "source": x["source"], "start_mjd": x["start_mjd"],
                   "end_mjd": x["end_mjd"], "ntimes": x["ntimes"], "complete": bool(x["complete"]),
                   "note": x["status_note"], "los": sorted(lo_of_scan.get(x["id"], []))} for x in view.scans],
        "fields": [],
        "los": [{k: lo[k] for k in ("name", "freq_start_hz", "freq_end_hz", "nchan", "nsubbands", "channel_width_hz")}
                for lo in view.los],
        "files_with_errors": [{"path": f["path"], "error": f["error"]} for f in view.files if f["status"] == "error"],
        "role_warnings": roles.warnings if roles else [],
    }
    for f in view.fields:
        r = roles.fields.get(f["name"]) if roles else None
        data["fields"].append({
            "name": f["name"], "ra_deg": f["ra_deg"], "dec_deg": f["dec_deg"],
            "role": r.role if r else None, "reason": r.reason if r else None,
            "matched": r.matched if r else None, "separation_arcsec": r.separation_arcsec if r else None,
            "phase_cal": r.phase_cal if r else None,
        })
    return data


def explain_data(cat: Catalogue, cfg: Config, ref: str) -> dict:
    """Per step: up to date or not and the exact reason, with every unit's status and fingerprint."""
    s = cat.session(ref)
    p = plan_all(cat, cfg, [s], use_watermark=False)[0]
    steps = []
    for name in STEP_ORDER:
        units = p.units.get(name, {})
        us = [{"unit": u.key, "status": u.status, "reason": u.reason, "fingerprint": u.fingerprint}
              for u in units.values()]
        reasons = sorted({u["reason"] for u in us if u["status"] != UnitStatus.OK})
        if not us:
            upstream = [u for n in STEP_ORDER[:STEP_ORDER.index(name)] for u in p.units.get(n, {}).values()]
            if name == StepName.SELFCAL and cfg.steps.selfcal.rounds <= 0:
                st, summ = "up to date", "off (steps.selfcal.rounds = 0)"
            elif name == StepName.COPY and one_pass(cfg):
                st, summ = "up to date", "off (steps.compress.one_pass: compress reads the uvh5 files)"
            elif p.state in (SessionState.INCOMPLETE, SessionState.FAILED):
                st, summ = "waiting", f"session {p.state}"
            elif upstream and all(u.status == UnitStatus.OK for u in upstream):
                st, summ = "up to date", "nothing to do for this session (no units)"
            else:
                st, summ = "waiting", "waiting for upstream steps"
        elif not reasons:
            # the status says "up to date"; the reason adds what the unit's reason says beyond that
            one = us[0]["reason"].removeprefix("up to date").strip(" ()")
            st, summ = "up to date", (one or "1 unit") if len(us) == 1 else f"{len(us)} units"
        else:
            st = "failed" if any(u["status"] == UnitStatus.FAILED for u in us) else "out of date"
            summ = "; ".join(reasons[:3]) + (f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else "")
        steps.append({"step": name, "status": st, "reason": summ, "units": us})
    return {"session": s["key"], "state": p.state, "next_step": p.next_step, "error": p.error, "steps": steps}


def dry_run_items(plans: list[SessionPlan]) -> list[dict]:
    """What `run` would do: every unit not up to date, of every step in run order (a unit downstream of
    one that runs is planned with the reason it will run then), one row each; concat's rows carry
    the scans it drops. Sessions with nothing to do have no rows (see :func:`dry_run_sessions`)."""
    items = []
    for p in plans:
        for name in STEP_ORDER:
            for u in p.units.get(name, {}).values():
                if u.status == UnitStatus.OK:
                    continue
                row = {"session": p.session["key"], "step": u.step, "unit": u.key, "status": u.status,
                       "reason": u.reason}
                if name == "concat":
                    row["dropped"] = dict(u.spec.payload.get("why_dropped", {}))
                items.append(row)
    return items


def dry_run_sessions(plans: list[SessionPlan], items: list[dict]) -> list[dict]:
    """Per session: its state and error, and per step the units that would run with their reasons."""
    out = []
    for p in plans:
        rows = [i for i in items if i["session"] == p.session["key"]]
        steps = []
        for name in STEP_ORDER:
            mine = [i for i in rows if i["step"] == name]
            if mine:
                reasons: dict[str, int] = {}
                for i in mine:
                    reasons[i["reason"]] = reasons.get(i["reason"], 0) + 1
                steps.append({"step": name, "units": len(mine), "reasons": reasons,
                              "dropped": next((i.get("dropped") for i in mine if i.get("dropped")), {})})
        out.append({"session": p.session["key"], "state": p.state, "error": p.error, "units": len(rows),
                    "steps": steps})
    return out


def flux_rows(cat: Catalogue, ref: str | None = None, field: str | None = None, *,
              tol_arcsec: float = 120.0) -> list[dict]:
    """Flux measurements (all sessions, or one), optionally of one field: by name (case-insensitive)
    or, for a Perley-Butler 2017 calibrator, by identity — ``3C286`` finds it under any name the data
    gave it (``1331+305``, ``J1331+3030``…), by alias or by its measured position within
    ``tol_arcsec``. A field with no measurement is an error that lists the fields measured."""
    from .calibrators import angular_sep_arcsec, find_flux_calibrator
    from .errors import AtarchiveError

    sid = cat.session(ref)["id"] if ref else None
    rows = cat.flux_measurements(sid)
    if field:
        cal = find_flux_calibrator(field)

        def same(r) -> bool:
            if r["field"].lower() == field.lower():
                return True
            if cal is None:
                return False
            if find_flux_calibrator(r["field"]) is cal:
                return True
            return r["ra_deg"] is not None and r["dec_deg"] is not None and angular_sep_arcsec(
                r["ra_deg"], r["dec_deg"], cal.ra_deg, cal.dec_deg) <= tol_arcsec

        measured = sorted({r["field"] for r in rows})
        rows = [r for r in rows if same(r)]
        if not rows and measured:
            raise AtarchiveError(f"no measurements of field {field!r}; fields measured: {', '.join(measured)}")
    return [{k: r.get(k) for k in FLUX_KEYS} for r in rows]


def report_pages(cat: Catalogue, cfg: Config) -> list[dict]:
    pages = []
    for s in cat.sessions():
        page = naming.report_dir(cfg.work_root, s["project"], s["name"]) / "index.html"
        if page.exists():
            pages.append({"session": s["key"], "path": str(page)})
    return pages


def held_elsewhere(cat: Catalogue) -> list[dict]:
    """Sessions with a unit running in another live process: {session, step, unit, pid, host, since}."""
    from .execution.ownership import owner_alive, owner_id

    me = owner_id()
    out, seen = [], set()
    for r in cat.running_runs():
        if r["owner"] == me or not owner_alive(r["owner"]) or r["session"] in seen:
            continue
        seen.add(r["session"])
        host, _, pid = (r["owner"] or "").rpartition(":")
        out.append({"session": r["session"], "step": r["step"], "unit": r["unit"], "pid": int(pid) if pid.isdigit()
                    else None, "host": host, "since": r["started"]})
    return out


IMAGE_KEYS = ("session", "field", "lo", "kind", "path", "residual_path", "rms_jy", "peak_jy", "dynamic_range",
              "beam_major_arcsec", "beam_minor_arcsec", "beam_pa_deg", "selfcal_rounds", "mask", "note")


def image_rows(cat: Catalogue, ref: str | None = None, field: str | None = None) -> list[dict]:
    """Every image (all sessions, or one; optionally of one field, case-insensitive) with its quality
    figures: kind 1gc (before self-calibration), selfcal (after) or pbcor (primary-beam corrected)."""
    from .errors import AtarchiveError

    sid = cat.session(ref)["id"] if ref else None
    rows = cat.images(sid)
    if field:
        names = sorted({r["field"] for r in rows})
        rows = [r for r in rows if r["field"].lower() == field.lower()]
        if not rows and names:
            raise AtarchiveError(f"no images of field {field!r}; fields imaged: {', '.join(names)}")
    return [{k: r.get(k) for k in IMAGE_KEYS} for r in rows]
SOURCE_KEYS = ("session", "field", "lo", "image", "pbcor", "source_id", "island", "ra_deg", "dec_deg",
               "ra_err_arcsec", "dec_err_arcsec", "flux_jy", "flux_err_jy", "peak_jy", "peak_err_jy", "major_arcsec",
               "minor_arcsec", "pa_deg", "rms_jy", "snr", "code", "start_mjd")


def source_rows(cat: Catalogue, ref: str | None = None, field: str | None = None, *,
                near: tuple[float, float] | None = None, radius_arcsec: float = 60.0) -> list[dict]:
    """Sources found in target images (all sessions, or one; optionally of one field), one row per
    source; with ``near`` = (ra, dec) in degrees, every measurement within ``radius_arcsec`` of it over
    all sessions, in time order, each with its ``separation_arcsec`` (a light curve)."""
    from .skymatch import near as near_rows

    sid = cat.session(ref)["id"] if ref else None
    rows = [{k: r.get(k) for k in SOURCE_KEYS} for r in cat.sources(sid, field)]
    for r in rows:
        r["pbcor"] = bool(r["pbcor"])
    if near is not None:
        rows = sorted(near_rows(rows, near[0], near[1], radius_arcsec),
                      key=lambda r: (r["start_mjd"] or 0, r["session"], r["lo"]))
    return rows


def source_checks(cat: Catalogue, ref: str | None = None) -> list[dict]:
    """Per target image: sources found and its check against the reference catalogue (None when no
    reference catalogue is configured)."""
    sid = cat.session(ref)["id"] if ref else None
    return [{k: r[k] for k in ("session", "field", "lo", "image", "n_sources", "reference")}
            for r in cat.source_checks(sid)]


def site_data(cat: Catalogue, cfg: Config) -> dict:
    """What `atarchive site` draws: every session (status row, start, QA page if made), the calibrators'
    flux density per session and LO, and per-antenna health from each session's QA page."""
    rows = status_rows(cat, cfg)
    starts = cat.first_scan_starts()
    reports = cat.products_of_step("report")
    by_key = {s["key"]: s["id"] for s in cat.sessions()}
    sessions = []
    for r in sorted(rows, key=lambda r: (starts.get(r["key"]) or 0, r["key"])):
        page = naming.report_dir(cfg.work_root, r["project"], r["session"]) / "index.html"
        sessions.append({**r, "start_mjd": starts.get(r["key"]), "report": str(page) if page.exists() else None})
    calibrators: dict[str, dict[str, list]] = {}
    for f in cat.flux_measurements():
        if f["role"] in ("flux_cal", "phase_cal") and f["flux_jy"] is not None and starts.get(f["session"]):
            calibrators.setdefault(f["field"], {}).setdefault(f["lo"], []).append(
                (starts[f["session"]], f["flux_jy"], f["flux_err_jy"]))
    health: dict = {"antennas": [], "sessions": [], "values": {}}
    for s in sessions:
        meta = next((p["meta"] for p in reports.get(by_key[s["key"]], []) if p["kind"] == "report"), {})
        ah = meta.get("antenna_health") or {}
        if not ah:
            continue
        health["sessions"].append(s["key"])
        for ant, v in ah.items():
            health["values"].setdefault(ant, {})[s["key"]] = v
    health["antennas"] = sorted(health["values"])
    return {"sessions": sessions, "calibrators": calibrators, "health": health}
