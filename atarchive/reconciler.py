"""The reconciler: plan → run the first missing or out-of-date step of each ready session → record.

Level-triggered: every pass re-plans from the catalogue, so a crash anywhere is recovered by the
next pass. The catalogue has one writer (this loop); step units run concurrently in worker threads,
each driving a CASA/pyuvdata child process. Products are written to temporary paths and renamed
on success; leftovers of interrupted runs are removed before a unit runs again.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from typing import Callable

from . import naming
from .catalogue import Catalogue
from .config import Config
from .contracts import STEP_ORDER, Outcome, RunStatus, StepName, UnitStatus
from .errors import StepError, TemporaryStepError, error_line, is_temporary
from .execution.batch import PidRecorder, execute_batch
from .execution.children import SPARES
from .execution.executors import make_executor
from .execution.ownership import kill_orphan, owner_alive, owner_id
from .plan import SessionPlan, plan_all
from .steps import BY_NAME
from .steps.base import PlannedUnit, RunContext, UnitSpec
from .view import load_view, session_records

@dataclass
class RunSummary:
    ran: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # units whose last attempt in this call failed
    interrupted_cleaned: int = 0
    recovered: list[dict] = field(default_factory=list)  # failed attempts that a later retry made good
    _attempts: dict = field(default_factory=dict, repr=False)  # (session, step, unit) → its failed attempts

    def as_dict(self) -> dict:
        return {"ran": self.ran, "failed": self.failed, "interrupted_cleaned": self.interrupted_cleaned,
                "recovered": self.recovered}

    def add(self, rec: dict) -> None:
        """Count units, not attempts: ``failed`` holds a unit once (its last failed attempt);
        ``recovered`` every failed attempt a later retry made good."""
        key = (rec["session"], rec["step"], rec["unit"])
        self.failed = [f for f in self.failed if (f["session"], f["step"], f["unit"]) != key]
        if rec["status"] == "failed":
            self.failed.append(rec)
            self._attempts.setdefault(key, []).append(rec)
            return
        self.recovered += self._attempts.pop(key, [])
        self.ran.append(rec)


class Reconciler:
    def __init__(self, cfg: Config, cat: Catalogue, *, log: Callable[[str], None] | None = None,
                 stop: threading.Event | None = None):
        self.cfg = cfg
        self.cat = cat
        self.log = log or (lambda msg: None)
        self.stop = stop or threading.Event()
        self.owner = owner_id()

    # -- public -----------------------------------------------------------------------------
    def plan(self, sessions: list[dict] | None = None) -> list[SessionPlan]:
        return plan_all(self.cat, self.cfg, sessions)

    def recover(self) -> int:
        """Runs whose owner died are marked interrupted (their tmp products are cleaned when rerun);
        a child process of theirs still alive on this host is killed first."""
        return self.cat.mark_interrupted(alive=owner_alive, kill_orphan=kill_orphan)

    def run(self, sessions: list[dict] | None = None, *, once: bool = False,
            on_event: Callable[[str, dict], None] | None = None,
            session_filter: Callable[[dict], bool] | None = None, keep_running: bool = False,
            wake: threading.Event | None = None, pause: Callable[[], str | None] | None = None,
            grace_seconds: float = 0.0, until: str | None = None) -> RunSummary:
        """Run until nothing is left to do (or ``stop`` is set).

        ``once``: a single wave. ``keep_running`` (daemon): wait on ``wake`` for new work instead of
        returning. ``session_filter``: which sessions may start work now (re-evaluated every pass).
        ``pause``: returns a reason to start no new work (e.g. low disk). On stop, running units get
        ``grace_seconds`` to finish before their children are killed and recorded as interrupted.
        ``until``: run no step after this one.
        """
        last_step = STEP_ORDER.index(until) if until else len(STEP_ORDER) - 1
        summary = RunSummary(interrupted_cleaned=self.recover())
        ids = None if sessions is None else {s["id"] for s in sessions}
        workers = self.cfg.execution.n_workers()
        inflight: dict[Future, list[tuple[int, PlannedUnit, RunContext, int]]] = {}
        inflight_keys: set[tuple] = set()
        runs_here: dict[tuple, int] = {}  # (session, step, unit) → runs started in this call
        pool = make_executor(self.cfg)
        wake = wake or threading.Event()
        SPARES.limit = 0 if pool.remote else self.cfg.execution.n_spares()

        def record(entries, outcomes):
            for (sid, u, ctx, run_id), outcome in zip(entries, outcomes):
                inflight_keys.discard((sid, u.step, u.key))
                rec = self._finish(outcome, sid, u, ctx, run_id)
                summary.add(rec)
                if on_event:
                    on_event("finish", rec)

        try:
            while True:
                soonest = None
                paused = pause() if pause else None
                if not self.stop.is_set() and not paused and len(inflight) < workers:
                    wake.clear()
                    rows = [s for s in self.cat.sessions() if (ids is None or s["id"] in ids)
                            and (session_filter is None or session_filter(s))]
                    plans = plan_all(self.cat, self.cfg, rows)
                    for p in plans:
                        sid = p.session["id"]
                        free = workers - len(inflight)
                        if free <= 0:
                            break
                        todo = [u for u in p.pending() if (sid, u.step, u.key) not in inflight_keys
                                and STEP_ORDER.index(u.step) <= last_step]
                        now = time.time()
                        ready = [u for u in todo if u.not_before <= now
                                 and runs_here.get((sid, u.step, u.key), 0) < 2 * self.cfg.execution.max_attempts]
                        if todo and not ready:
                            t = min(u.not_before for u in todo)
                            soonest = t if soonest is None else min(soonest, t)
                        if not ready:
                            continue
                        for batch in self._batches(ready, free):
                            for u in batch:
                                runs_here[(sid, u.step, u.key)] = runs_here.get((sid, u.step, u.key), 0) + 1
                                inflight_keys.add((sid, u.step, u.key))
                                if on_event:
                                    on_event("start", {"session": p.session["key"], "step": u.step, "unit": u.key,
                                                       "reason": u.reason,
                                                       "log_path": str(naming.log_path(p.view.sdir, u.step, u.key))})
                            fut, entries = self._submit(pool, p, batch)
                            inflight[fut] = entries
                    if inflight and len(inflight) < workers and not pool.remote and any(
                            p.next_step and any(BY_NAME[s].uses_casa_tools(p.view.cfg)
                                                for s in STEP_ORDER[STEP_ORDER.index(p.next_step):last_step + 1])
                            for p in plans):
                        SPARES.refill()  # CASA work ahead and a core free: load CASA for the next CASA units
                if not inflight:
                    if self.stop.is_set() or once:
                        break
                    if soonest is None and not keep_running:
                        break
                    SPARES.close()  # nothing to run now: no idle CASA processes while waiting
                    timeout = 5.0 if soonest is None else max(0.05, min(5.0, soonest - time.time()))
                    wake.wait(timeout)
                    if self.stop.is_set():
                        break
                    continue
                done, _ = wait(list(inflight), timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    record(inflight.pop(fut), fut.result())
                if self.stop.is_set() and inflight:
                    self._drain(inflight, record, grace_seconds)
                    break
                if once and not inflight:
                    break
        finally:
            for entries in inflight.values():
                for _, _, ctx, _ in entries:
                    ctx.cancel.set()
            # threads: wait for the cancelled children; dask: cancel what is left and close the cluster
            pool.shutdown(wait=not (pool.remote and self.stop.is_set()))
            SPARES.close()
            for fut, entries in list(inflight.items()):
                try:
                    outcomes = fut.result(timeout=0) if fut.done() else None
                except BaseException as err:  # noqa: BLE001 - e.g. cancelled on a dask worker
                    outcomes = [Outcome(error=TemporaryStepError(f"interrupted: {type(err).__name__} {err}".strip()))
                                ] * len(entries)
                record(entries, outcomes or [Outcome(error=TemporaryStepError("interrupted: executor stopped"))]
                       * len(entries))
            inflight.clear()
        return summary

    def _batches(self, ready: list[PlannedUnit], free: int) -> list[list[PlannedUnit]]:
        """Units of one step share child processes when the step allows it: at most ``free`` batches."""
        step = BY_NAME[ready[0].step]
        if not step.batchable or len(ready) == 1:
            return [[u] for u in ready[:free]]
        n = min(free, len(ready))
        return [ready[i::n] for i in range(n)]

    def _drain(self, inflight, record, grace_seconds: float) -> None:
        """Stop requested: let running units finish within the grace period, then cancel the rest."""
        deadline = time.time() + grace_seconds
        while inflight and time.time() < deadline:
            done, _ = wait(list(inflight), timeout=min(1.0, max(0.01, deadline - time.time())),
                           return_when=FIRST_COMPLETED)
            for fut in done:
                record(inflight.pop(fut), fut.result())
        for entries in inflight.values():
            for _, _, ctx, _ in entries:
                ctx.cancel.set()

    # -- units ------------------------------------------------------------------------------
    def _submit(self, pool, plan: SessionPlan, batch: list[PlannedUnit]):
        view = plan.view
        step = BY_NAME[batch[0].step]
        sdir = view.sdir
        products = self.cat.products_by_step(view.session["id"])
        records = session_records(self.cat, view) if step.needs_records else None
        cancel = threading.Event()
        entries = []
        for u in batch:
            token = uuid.uuid4().hex[:8]
            log_path = naming.log_path(sdir, u.step, u.key)  # made by the worker (the disk may refuse)
            run_id = self.cat.start_run(
                session_id=view.session["id"], step=u.step, unit=u.key, fingerprint=u.fingerprint,
                version=u.version, params=u.spec.params, inputs=u.spec.inputs, versions=u.versions,
                reason=u.reason, attempt=u.attempt, log_path=str(log_path), owner=self.owner,
            )
            ctx = RunContext(
                view=view, unit=u, tmp={o: naming.tmp_path(o, token) for o in u.spec.outputs}, log_path=log_path,
                workdir=naming.casa_workdir(sdir, u.step, u.key) / token, cancel=cancel, products=products,
                records=records,
            )
            entries.append((view.session["id"], u, ctx, run_id))
            self.log(f"{view.key}: {u.step} {u.key or ''} → {u.reason}".replace("  ", " "))
        recorder = PidRecorder(str(self.cat.path), [e[3] for e in entries])
        for _, _, ctx, _ in entries:
            ctx.on_start = recorder
        ctxs = [e[2] for e in entries]
        if pool.remote:  # what crosses to a dask worker must pickle: no thread event (a fresh one there)
            ctxs = [replace(c, cancel=None) for c in ctxs]
        fut = pool.submit(execute_batch, step, ctxs, self.cfg)
        return fut, entries

    @staticmethod
    def _log_text(ctx: RunContext, text: str) -> None:
        """An error raised in this process (not in the child): its full text goes to the step log too."""
        try:
            ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(ctx.log_path, "a") as fh:
                fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} error in atarchive\n{text}\n")
        except OSError:
            pass

    def _finish(self, outcome: Outcome | None, sid: int, u: PlannedUnit, ctx: RunContext, run_id: int) -> dict:
        """Record one unit's outcome: the run row (with the unit's own time span), its products and
        step rows, and the session's error."""
        rec = {"session": ctx.view.key, "step": u.step, "unit": u.key, "run_id": run_id}
        if outcome is None:
            outcome = Outcome(error=TemporaryStepError("no outcome (worker stopped)"))
        span = {k: v for k, v in (("started", outcome.started), ("finished", outcome.finished)) if v is not None}
        if outcome.seconds is not None:
            rec["duration_s"] = round(outcome.seconds, 3)
        rec["log_path"] = str(ctx.log_path)
        if not outcome.ok:
            err = outcome.error
            temporary = is_temporary(err)
            if ctx.cancel is not None and ctx.cancel.is_set():
                status, text = RunStatus.INTERRUPTED, "stopped by shutdown"
            else:
                status = RunStatus.FAILED
                text = str(err) or type(err).__name__
                if not isinstance(err, StepError):
                    text = f"{type(err).__name__}: {text}"
                    self._log_text(ctx, "".join(traceback.format_exception(err)))
            last = temporary and u.attempt >= self.cfg.execution.max_attempts > 1
            msg = error_line(u.step, u.key, text, str(ctx.log_path),  # the full text is in the step log
                             note=f"after {u.attempt} attempts" if last and status == RunStatus.FAILED else "")
            self.cat.finish_run(run_id, status=status, temporary=int(temporary), error=msg, **span)
            rec.update(status=status, error=msg, temporary=temporary)
            if status == RunStatus.FAILED and (not temporary or u.attempt >= self.cfg.execution.max_attempts):
                self.cat.set_session_error(sid, msg)
            return rec
        self.cat.replace_products(sid, u.step, u.key, run_id, [p.row(u.fingerprint) for p in outcome.products])
        BY_NAME[u.step].record(self.cat, sid, run_id, outcome)
        self.cat.finish_run(run_id, status=RunStatus.DONE, result=outcome.result, **span)
        self.cat.set_session_error(sid, None)
        rec.update(status=RunStatus.DONE)
        return rec


def rebuild_report(cfg: Config, cat: Catalogue, session: dict) -> dict:
    """`atarchive report`: the report step's unit for ``session`` run now, through the same path as
    `run` (child call, install), whatever state the session is in. Not recorded as a step run."""
    view = load_view(cat, cfg, session)
    step = BY_NAME[StepName.REPORT]
    final = step.output(view)
    unit = PlannedUnit(step.name, UnitSpec(key="", params={}, inputs={}, outputs=[final]), "", step.version, {},
                       UnitStatus.PENDING, "requested by `atarchive report`")
    token = uuid.uuid4().hex[:8]
    ctx = RunContext(view=view, unit=unit, tmp={final: naming.tmp_path(final, token)},
                     log_path=naming.log_path(view.sdir, step.name),
                     workdir=naming.casa_workdir(view.sdir, step.name) / token, cancel=threading.Event(),
                     products=cat.products_by_step(session["id"]), records=session_records(cat, view))
    (outcome,) = execute_batch(step, [ctx], cfg)
    if not outcome.ok:
        if isinstance(outcome.error, StepError):
            raise outcome.error
        raise StepError(f"report: {type(outcome.error).__name__}: {outcome.error}")
    return outcome.result
