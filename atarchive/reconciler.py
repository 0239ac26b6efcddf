"""The reconciler: plan → run the first missing or out-of-date step of each ready session → record.

Level-triggered: every pass re-plans from the catalogue, so a crash anywhere is recovered by the
next pass. The catalogue has one writer (this loop); step units run concurrently in worker threads,
each driving a CASA/pyuvdata child process. Products are written to temporary paths and renamed
on success; leftovers of interrupted runs are removed before a unit runs again.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import psutil

from . import naming
from .catalogue import Catalogue
from .casa.runner import SPARES
from .config import Config
from .errors import PermanentStepError, StepError, TemporaryStepError
from .executors import make_executor
from .plan import SessionPlan, plan_all
from .steps import BY_NAME, STEP_NAMES
from .steps.base import PlannedUnit, RunContext, StepResult

HOST = socket.gethostname()


def owner_id() -> str:
    return f"{HOST}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool:
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != HOST:
        return True  # cannot tell for another host: assume alive
    if int(pid) == os.getpid():
        return True
    return psutil.pid_exists(int(pid))


def kill_orphan(owner: str | None, pid: int) -> None:
    """Kill the process group of a dead reconciler's child (if it is still one of ours)."""
    host = (owner or "").rpartition(":")[0]
    if host != HOST or not psutil.pid_exists(pid):
        return
    try:
        if "atarchive.casa.child" in " ".join(psutil.Process(pid).cmdline()):
            os.killpg(pid, 9)
    except (psutil.Error, ProcessLookupError, PermissionError):
        pass


@dataclass
class RunSummary:
    ran: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # units whose last attempt in this call failed
    interrupted_cleaned: int = 0
    recovered: list[dict] = field(default_factory=list)  # failed attempts that a later retry made good

    def as_dict(self) -> dict:
        return {"ran": self.ran, "failed": self.failed, "interrupted_cleaned": self.interrupted_cleaned,
                "recovered": self.recovered}

    def add(self, rec: dict) -> None:
        if rec["status"] == "failed":
            self.failed.append(rec)
            return
        key = (rec["session"], rec["step"], rec["unit"])
        self.recovered += [f for f in self.failed if (f["session"], f["step"], f["unit"]) == key]
        self.failed = [f for f in self.failed if (f["session"], f["step"], f["unit"]) != key]
        self.ran.append(rec)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def install(tmp: Path, final: Path) -> None:
    """Rename a finished temporary product into place, replacing an older one."""
    if final.exists() or final.is_symlink():
        old = naming.tmp_path(final, "old")
        _remove(old)
        final.rename(old)
        tmp.rename(final)
        _remove(old)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(final)


def _install(step, ctx: RunContext) -> None:
    """Rename each temporary output into place (replacing an older product)."""
    for final in ctx.unit.spec.outputs:
        tmp = ctx.tmp[final]
        if not tmp.exists():
            raise PermanentStepError(f"{step.name} reported success but wrote no {final.name}")
        install(tmp, final)


class PidRecorder:
    """Called with the child's PID when a batch's CASA child starts (in a worker thread or on a dask
    worker): record it, through a fresh short connection, so a crash can be cleaned up. Only on the
    reconciler's host, where `kill_orphan` can act on it."""

    def __init__(self, catalogue: str, run_ids: list[int]):
        self.catalogue, self.run_ids, self.host = catalogue, run_ids, HOST

    def __call__(self, pid: int) -> None:
        if socket.gethostname() != self.host:
            return
        try:
            with Catalogue(self.catalogue) as c:
                c.set_worker_pid(self.run_ids, pid, time.time())
        except Exception:  # noqa: BLE001 - bookkeeping only
            pass


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
        last_step = STEP_NAMES.index(until) if until else len(STEP_NAMES) - 1
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
                                and STEP_NAMES.index(u.step) <= last_step]
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
                                                       "reason": u.reason})
                            fut, entries = self._submit(pool, p, batch)
                            inflight[fut] = entries
                    if inflight and len(inflight) < workers and not pool.remote and any(
                            p.next_step and any(BY_NAME[s].casa_tools
                                                for s in STEP_NAMES[STEP_NAMES.index(p.next_step):last_step + 1])
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
                    outcomes = [TemporaryStepError(f"interrupted: {type(err).__name__} {err}".strip())] * len(entries)
                record(entries, outcomes or [TemporaryStepError("interrupted: executor stopped")] * len(entries))
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
            )
            entries.append((view.session["id"], u, ctx, run_id))
            self.log(f"{view.key}: {u.step} {u.key or ''} → {u.reason}".replace("  ", " "))
        recorder = PidRecorder(str(self.cat.path), [e[3] for e in entries])
        for _, _, ctx, _ in entries:
            ctx.on_start = recorder
        ctxs = [e[2] for e in entries]
        if pool.remote:  # what crosses to a dask worker must pickle: no thread event (a fresh one there)
            ctxs = [replace(c, cancel=None) for c in ctxs]
        fut = pool.submit(self._execute_batch, step, ctxs, self.cfg)
        return fut, entries

    @staticmethod
    def _execute_batch(step, ctxs: list[RunContext], cfg: Config) -> list:
        """Prepare every unit, run their child calls in one child process, collect and rename outputs.
        Returns per unit a StepResult or the exception it failed with."""
        from .casa.runner import run_batch_in_child

        outcomes: list = [None] * len(ctxs)
        calls, idx = [], []
        if any(c.cancel is None for c in ctxs):  # on a dask worker
            ev = threading.Event()
            ctxs = [replace(c, cancel=ev) for c in ctxs]
        for i, ctx in enumerate(ctxs):
            try:
                ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
                for final in ctx.unit.spec.outputs:
                    for left in naming.tmp_leftovers(final):
                        _remove(left)
                    final.parent.mkdir(parents=True, exist_ok=True)
                ctx.workdir.mkdir(parents=True, exist_ok=True)
                func, kwargs = step.prepare(ctx)
                calls.append({"func": func, "kwargs": kwargs, "log_path": ctx.log_path})
                idx.append(i)
            except OSError as err:
                outcomes[i] = TemporaryStepError(f"{type(err).__name__}: {err}")
            except Exception as err:  # noqa: BLE001 - recorded per unit
                outcomes[i] = err
        if calls:
            first = ctxs[idx[0]]
            try:
                results = run_batch_in_child(calls, workdir=first.workdir,
                                             timeout=cfg.execution.step_timeout_s or None,
                                             on_start=first.on_start, cancel=first.cancel,
                                             casa_tools=step.casa_tools)
            except Exception as err:  # noqa: BLE001
                results = [err] * len(calls)
            for i, res in zip(idx, results):
                ctx = ctxs[i]
                if isinstance(res, Exception):
                    outcomes[i] = res
                    continue
                try:
                    result = step.collect(ctx, res)
                    _install(step, ctx)
                    step.after_success(ctx, result)
                    outcomes[i] = result
                except OSError as err:
                    outcomes[i] = TemporaryStepError(f"{type(err).__name__}: {err}")
                except Exception as err:  # noqa: BLE001
                    outcomes[i] = err
        for ctx in ctxs:
            for final in ctx.unit.spec.outputs:
                _remove(ctx.tmp[final])
            shutil.rmtree(ctx.workdir, ignore_errors=True)
        return outcomes

    def _finish(self, outcome, sid: int, u: PlannedUnit, ctx: RunContext, run_id: int) -> dict:
        rec = {"session": ctx.view.key, "step": u.step, "unit": u.key, "run_id": run_id}
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            if outcome is None:
                raise TemporaryStepError("no outcome (worker stopped)")
            result: StepResult = outcome
        except BaseException as err:  # noqa: BLE001 - every failure is recorded
            temporary = isinstance(err, TemporaryStepError) or not isinstance(err, StepError)
            if ctx.cancel.is_set():
                status, msg = "interrupted", "stopped by shutdown"
            else:
                status = "failed"
                msg = str(err) or type(err).__name__
                if not isinstance(err, StepError):
                    msg = f"internal error {type(err).__name__}: {msg}"
            self.cat.finish_run(run_id, status=status, temporary=int(temporary), error=msg[-4000:])
            rec.update(status=status, error=msg, temporary=temporary)
            self.log(f"{ctx.view.key}: {u.step} {u.key} {status}: {msg.splitlines()[0] if msg else ''}")
            if status == "failed" and (not temporary or u.attempt >= self.cfg.execution.max_attempts):
                self.cat.set_session_error(sid, f"{u.step} {u.key}: {msg}".strip()[-2000:])
            return rec
        fps = []
        for p in result.products:
            fps.append({"kind": p["kind"], "path": str(p["path"]), "fingerprint": u.fingerprint, "meta": p.get("meta")})
        self.cat.replace_products(sid, u.step, u.key, run_id, fps)
        BY_NAME[u.step].record(self.cat, sid, run_id, result)
        self.cat.finish_run(run_id, status="done", result=result.result)
        self.cat.set_session_error(sid, None)
        rec.update(status="done")
        return rec
