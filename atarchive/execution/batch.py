"""The one path that runs units: prepare each, run their child calls in one child process, collect
the products, rename them into place. Used by the reconciler (which records the outcomes) and by
`atarchive report` (which does not).

Each unit's outcome carries its own time span: its prepare, child call and install times, plus an
equal share of what the batch spent around them (starting the child, loading CASA), laid end to
end from the batch's start — so the spans of a batch add up to its wall time.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

from .. import naming
from ..config import Config
from ..contracts import Outcome
from ..errors import PermanentStepError, TemporaryStepError, is_temporary
from ..steps.base import RunContext, Step, StepResult


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def install(tmp: Path, final: Path) -> None:
    """Rename a finished temporary product into place, replacing an older one."""
    if final.exists() or final.is_symlink():
        old = naming.tmp_path(final, "old")
        remove(old)
        final.rename(old)
        tmp.rename(final)
        remove(old)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(final)


def install_outputs(step: Step, ctx: RunContext) -> None:
    """Rename each temporary output of a unit into place (replacing an older product)."""
    for final in ctx.unit.spec.outputs:
        tmp = ctx.tmp[final]
        if not tmp.exists():
            raise PermanentStepError(f"{step.name} reported success but wrote no {final.name}")
        install(tmp, final)


class PidRecorder:
    """Called with the child's PID when a batch's CASA child starts (in a worker thread or on a dask
    worker): record it, through a fresh short connection, so a crash can be cleaned up. Only on the
    reconciler's host, where the ownership helpers can act on it."""

    def __init__(self, catalogue: str, run_ids: list[int]):
        self.catalogue, self.run_ids, self.host = catalogue, run_ids, socket.gethostname()

    def __call__(self, pid: int) -> None:
        if socket.gethostname() != self.host:
            return
        try:
            from ..catalogue import Catalogue

            with Catalogue(self.catalogue) as c:
                c.set_worker_pid(self.run_ids, pid, time.time())
        except Exception:  # noqa: BLE001 - bookkeeping only
            pass


def _make_workdir(path: Path) -> None:
    """mkdir -p, again if another unit's cleanup removed the empty ``tmp/`` just as it was made."""
    for _ in range(3):
        try:
            path.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            continue
    path.mkdir(parents=True, exist_ok=True)


def _os_error(err: OSError) -> Exception:
    """An OS error around a unit (making its directories, installing its outputs) as a step error:
    temporary only when its errno is transient (:func:`atarchive.errors.is_temporary`)."""
    cls = TemporaryStepError if is_temporary(err) else PermanentStepError
    return cls(f"{type(err).__name__}: {err}")


def execute_batch(step: Step, ctxs: list[RunContext], cfg: Config) -> list[Outcome]:
    """Prepare every unit, run their child calls in one child process, collect and rename outputs.
    Returns one :class:`Outcome` per unit, in order."""
    from .children import run_batch_in_child

    t_batch = time.time()
    n = len(ctxs)
    errors: list[BaseException | None] = [None] * n
    results: list[StepResult | None] = [None] * n
    own = [0.0] * n  # seconds spent on each unit alone
    calls, idx = [], []
    if any(c.cancel is None for c in ctxs):  # on a dask worker
        ev = threading.Event()
        ctxs = [replace(c, cancel=ev) for c in ctxs]
    for i, ctx in enumerate(ctxs):
        t0 = time.perf_counter()
        try:
            ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
            for final in ctx.unit.spec.outputs:
                for left in naming.tmp_leftovers(final):
                    remove(left)
                final.parent.mkdir(parents=True, exist_ok=True)
            _make_workdir(ctx.workdir)
            call = step.prepare(ctx)
            calls.append({"func": call.target, "kwargs": call.kwargs, "log_path": ctx.log_path})
            idx.append(i)
        except OSError as err:  # disk full: retried; a work root that is a file: not
            errors[i] = _os_error(err)
        except Exception as err:  # noqa: BLE001 - recorded per unit
            errors[i] = err
        own[i] += time.perf_counter() - t0
    if calls:
        first = ctxs[idx[0]]
        try:
            outs = run_batch_in_child(calls, workdir=first.workdir, timeout=cfg.execution.step_timeout_s or None,
                                      on_start=first.on_start, cancel=first.cancel,
                                      casa_tools=step.uses_casa_tools(cfg))
        except Exception as err:  # noqa: BLE001
            outs = [err] * len(calls)
        for i, res in zip(idx, outs):
            ctx = ctxs[i]
            if isinstance(res, Exception):
                errors[i] = res
                continue
            own[i] += float(res.get("_call_seconds", 0.0)) if isinstance(res, dict) else 0.0
            t0 = time.perf_counter()
            try:
                result = step.collect(ctx, res)
                install_outputs(step, ctx)
                step.after_success(ctx, result)
                results[i] = result
            except OSError as err:
                errors[i] = _os_error(err)
            except Exception as err:  # noqa: BLE001
                errors[i] = err
            own[i] += time.perf_counter() - t0
    for ctx in ctxs:
        for final in ctx.unit.spec.outputs:
            remove(ctx.tmp[final])
        shutil.rmtree(ctx.workdir, ignore_errors=True)
        for d in (ctx.workdir.parent, ctx.workdir.parent.parent):  # tmp/<step_unit>/, then tmp/: if empty
            try:
                d.rmdir()
            except OSError:
                break
    t_end = time.time()
    share = max(0.0, (t_end - t_batch) - sum(own)) / n
    outcomes, t = [], t_batch
    for i in range(n):
        end = t_end if i == n - 1 else min(t_end, t + own[i] + share)
        r = results[i]
        error = (errors[i] or TemporaryStepError("no outcome")) if r is None else None
        outcomes.append(Outcome(products=tuple(r.products) if r else (), result=r.result if r else {},
                                error=error, started=t, finished=end))
        t = end
    return outcomes
