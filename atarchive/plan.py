"""Planning: catalogue rows + config → for every unit of every step, up to date or not, and why.

Pure apart from cheap existence checks of recorded product paths (``exists`` is injectable). The
fingerprint of a unit is computed from its step's version and params, its inputs' *current*
fingerprints and software versions, so a change anywhere upstream shows downstream as
"input changed: <step>".
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import fingerprint as fp
from .catalogue import Catalogue
from .config import Config
from .contracts import STEP_ORDER, RunStatus, SessionState, StepSummary, UnitStatus, parse_input_key
from .steps import STEPS
from .steps.base import PlannedUnit
from .view import SessionView


@dataclass
class SessionPlan:
    view: SessionView
    units: dict[str, dict[str, PlannedUnit]] = field(default_factory=dict)  # step → key → unit
    state: SessionState = SessionState.INCOMPLETE
    next_step: str | None = None
    error: str | None = None
    cached_summary: dict | str | None = None  # set when the plan was skipped (watermark matched); JSON until read

    @property
    def session(self) -> dict:
        return self.view.session

    def pending(self) -> list[PlannedUnit]:
        """Units of the first step that has work, if they may run now."""
        if self.next_step is None:
            return []
        return [u for u in self.units[self.next_step].values() if u.status == UnitStatus.PENDING]

    def step_summary(self) -> dict[str, dict]:
        if isinstance(self.cached_summary, str):  # decoded when asked for, not for every session planned
            self.cached_summary = json.loads(self.cached_summary or "{}")
        if self.cached_summary is not None:
            return self.cached_summary
        out = {}
        for name in STEP_ORDER:
            us = list(self.units.get(name, {}).values())
            counts: dict[str, int] = {}
            for u in us:
                counts[u.status] = counts.get(u.status, 0) + 1
            if not us:
                status = StepSummary.WAITING if self.state != SessionState.DONE else StepSummary.NONE
            elif counts.get(UnitStatus.FAILED):
                status = StepSummary.FAILED
            elif counts.get(UnitStatus.RUNNING):
                status = StepSummary.RUNNING
            elif all(u.status == UnitStatus.OK for u in us):
                status = StepSummary.DONE
            else:
                status = StepSummary.PENDING
            out[name] = {"status": status, "units": len(us), "done": counts.get(UnitStatus.OK, 0)}
        return out


def _loads(s):
    return json.loads(s) if isinstance(s, str) else (s or {})


def plan_session(view: SessionView, *, latest: dict, latest_done: dict, forces: list[dict], now: float | None = None,
                 exists: Callable[[Path], bool] = os.path.exists) -> SessionPlan:
    """Plan one session. ``latest``/``latest_done``: (step, unit) → newest run row / newest done run."""
    cfg = view.cfg
    now = time.time() if now is None else now
    plan = SessionPlan(view)
    s = view.session
    if s["ingest_state"] == "failed":
        plan.state, plan.error = SessionState.FAILED, s["error"]
        return plan
    if s["ingest_state"] != "ready":
        plan.state = SessionState.INCOMPLETE
        return plan
    force_at = {}  # step index → latest force time affecting it
    for f in forces:
        if f["from_step"] in STEP_ORDER:
            i0 = STEP_ORDER.index(f["from_step"])
            for i in range(i0, len(STEP_ORDER)):
                force_at[i] = max(force_at.get(i, 0.0), f["created"])
    up: dict[str, dict[str, PlannedUnit]] = {}
    max_attempts = cfg.execution.max_attempts
    for i, step in enumerate(STEPS):
        specs = step.units(view, up)
        versions = fp.software_versions(step.software)
        planned: dict[str, PlannedUnit] = {}
        for spec in specs:
            f = fp.digest(step=step.name, version=step.version, params=spec.params, inputs=spec.inputs,
                          versions=versions)
            last = latest.get((step.name, spec.key))
            done = latest_done.get((step.name, spec.key))
            pu = PlannedUnit(step.name, spec, f, step.version, versions, UnitStatus.PENDING, "", last_run=last)
            _decide(pu, last, done, force_at.get(i), max_attempts, cfg.execution.retry_backoff_s, now, exists)
            planned[spec.key] = pu
        up[step.name] = planned
        plan.units[step.name] = planned
    _rematerialise(plan)
    _summarise(plan)
    return plan


def _decide(pu: PlannedUnit, last, done, force_time, max_attempts, backoff, now, exists) -> None:
    spec = pu.spec
    if last is not None and last["status"] == RunStatus.RUNNING:
        pu.status, pu.reason = UnitStatus.RUNNING, f"running since {time.strftime('%H:%M:%S', time.localtime(last['started']))}"
        return
    if force_time is not None and (last is None or last["started"] < force_time) and \
            (done is None or done["started"] < force_time):
        pu.status, pu.reason = UnitStatus.PENDING, "forced by `atarchive reprocess`"
        return
    # failures of the current fingerprint
    if last is not None and last["status"] in (RunStatus.FAILED, RunStatus.INTERRUPTED) and last["fingerprint"] == pu.fingerprint \
            and (done is None or last["id"] > done["id"]):
        attempt = last["attempt"] + 1
        if last["status"] == RunStatus.FAILED and (not last["temporary"] or last["attempt"] >= max_attempts):
            why = "" if not last["temporary"] else f" after {last['attempt']} attempts"
            pu.status, pu.reason = UnitStatus.FAILED, f"failed{why}: {last['error']}"
            pu.attempt = last["attempt"]
            return
        pu.attempt = attempt
        if last["status"] == RunStatus.INTERRUPTED:
            pu.reason = "last run was interrupted; running again"
        else:
            pu.reason = f"retrying after temporary error (attempt {attempt}/{max_attempts}): {last['error']}"
            pu.not_before = (last["finished"] or now) + backoff * 2 ** (last["attempt"] - 1)
        pu.status = UnitStatus.PENDING
        return
    if done is None:
        pu.status, pu.reason = UnitStatus.PENDING, "never run"
        return
    if done["fingerprint"] != pu.fingerprint:
        old = {k: _loads(done[k]) if k != "version" else done[k] for k in ("version", "params", "inputs", "versions")}
        new = {"version": pu.version, "params": spec.params, "inputs": spec.inputs, "versions": pu.versions}
        pu.status, pu.reason = UnitStatus.PENDING, fp.explain_difference(pu.step, old, new)
        return
    missing = [p for p in spec.outputs if not exists(p)]
    if missing:
        if spec.releasable:
            pu.status, pu.reason = UnitStatus.OK, "up to date (product released after use)"
            pu.released = True
            return
        pu.status, pu.reason = UnitStatus.PENDING, f"product missing: {missing[0]}"
        return
    pu.status = UnitStatus.OK
    pu.reason = f"up to date (fingerprint {pu.fingerprint[:12]}, run {time.strftime('%Y-%m-%d %H:%M', time.localtime(done['finished'] or done['started']))})"


def _rematerialise(plan: SessionPlan) -> None:
    """A released product needed by a downstream unit that must run is made again first (walking
    the steps backwards, so a chain of released products is remade: averaged ← full-resolution)."""
    for name, units in reversed(list(plan.units.items())):
        for u in units.values():
            if u.status != UnitStatus.PENDING:
                continue
            for inp in u.spec.inputs:
                step, key = parse_input_key(inp)
                up = plan.units.get(step, {}).get(key)
                if up is not None and up.status == UnitStatus.OK and up.released:
                    up.status = UnitStatus.PENDING
                    up.reason = f"needed again by {name} (its product was removed after use)"


def _summarise(plan: SessionPlan) -> None:
    first_failed = None
    for name in STEP_ORDER:
        units = plan.units.get(name, {})
        for u in units.values():
            if u.status == UnitStatus.FAILED and first_failed is None:
                first_failed = u
        if any(u.status != UnitStatus.OK for u in units.values()):
            plan.next_step = name
            break
    if first_failed is not None:
        plan.state = SessionState.FAILED
        stored = first_failed.reason.partition(": ")[2]  # the run's one-line error names step, unit and log
        plan.error = stored if stored.startswith(f"{first_failed.step}") and "(log: " in stored else \
            f"{first_failed.step} {first_failed.key}: {first_failed.reason}".replace(" : ", ": ")
        plan.next_step = None
        return
    if plan.next_step is None:
        plan.state = SessionState.DONE
        return
    units = plan.units[plan.next_step].values()
    if any(u.status == UnitStatus.RUNNING for u in units):
        plan.state = SessionState.RUNNING
    else:
        plan.state = SessionState.PENDING


def config_digest(cfg: Config) -> str:
    """Everything in the config that planning depends on, plus software versions."""
    data = {"steps": cfg.steps.model_dump(mode="json"), "execution": cfg.execution.model_dump(mode="json"),
            "sessions": {k: v.model_dump(mode="json") for k, v in cfg.sessions.items()},
            "qa": cfg.qa.model_dump(mode="json"), "qa_reference": _file_stamp(cfg.qa.reference_catalogue),
            "work_root": str(cfg.work_root), "steps_v": {s.name: s.version for s in STEPS},
            "sw": {k: fp.software_versions(k) for k in fp.SOFTWARE}}
    return fp.digest(step="*", version=0, params=data, inputs={}, versions={})


def _file_stamp(path: Path | None) -> list | None:
    """(size, mtime) of a file the plan reads (the reference catalogue), None when unset or missing."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime]


def _watermark(cdig: str, s: dict, max_run: int, max_force: int) -> str:
    return f"{cdig}:{s['last_change']}:{s['ingest_state']}:{max_run}:{max_force}"


def plan_all(cat: Catalogue, cfg: Config, sessions: list[dict] | None = None, *, now: float | None = None,
             exists: Callable[[Path], bool] = os.path.exists, use_watermark: bool = True) -> list[SessionPlan]:
    """Plan every session (or the given ones), reading the catalogue in a handful of queries.

    Sessions found fully up to date remember a watermark (config digest, software versions, last
    file change, newest run and force ids); while it matches they are not planned again. Products
    deleted by hand are then noticed by ``explain`` or after any change (or ``reprocess``).
    """
    sessions = cat.sessions() if sessions is None else sessions
    if not sessions:
        return []
    cdig = config_digest(cfg)
    newest = cat.newest_ids()  # (newest run id, newest force id) per session: one index seek each
    plans: dict[int, SessionPlan] = {}
    todo = []
    for s in sessions:
        wm = _watermark(cdig, s, *newest.get(s["id"], (0, 0)))
        if use_watermark and s.get("plan_watermark") == wm:
            p = SessionPlan(SessionView(s, [], [], [], [], cfg), state=SessionState.DONE,
                            cached_summary=s["plan_summary"] or "{}")
            plans[s["id"]] = p
        else:
            todo.append((s, wm))
    if todo:
        ids = [s["id"] for s, _ in todo]
        latest: dict[int, dict] = {}
        done: dict[int, dict] = {}
        for r in cat.latest_runs_of(ids, done_only=False):
            latest.setdefault(r["session_id"], {})[(r["step"], r["unit"])] = r
        for r in cat.latest_runs_of(ids, done_only=True):
            done.setdefault(r["session_id"], {})[(r["step"], r["unit"])] = r
        forces: dict[int, list] = {}
        for f in cat.forces():
            forces.setdefault(f["session_id"], []).append(f)
        rows = cat.rows_of_sessions(ids)
        remember = []
        for s, wm in todo:
            sid = s["id"]
            view = SessionView(s, rows["scans"].get(sid, []), rows["files"].get(sid, []),
                               rows["fields"].get(sid, []), rows["los"].get(sid, []), cfg)
            p = plan_session(view, latest=latest.get(sid, {}), latest_done=done.get(sid, {}),
                             forces=forces.get(sid, []), now=now, exists=exists)
            plans[sid] = p
            if p.state == SessionState.DONE and s.get("plan_watermark") != wm:
                remember.append((wm, json.dumps(p.step_summary()), sid))
        if remember and use_watermark:
            cat.save_plan_watermarks(remember)
    return [plans[s["id"]] for s in sessions]
