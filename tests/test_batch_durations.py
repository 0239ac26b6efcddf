"""Units that share a child process (a batch) are each recorded with their own time, so per-step
sums of durations (examples/queries.sql) add up to the wall time instead of n × it."""

from __future__ import annotations

import threading
import time

from conftest import REPO, make_config

from atarchive.catalogue import Catalogue
from atarchive.contracts import StepName, UnitStatus
from atarchive.execution.batch import execute_batch
from atarchive.reconciler import Reconciler
from atarchive.steps.base import ChildCall, PlannedUnit, RunContext, SessionView, Step, UnitSpec

NAPS = {"short": 0.3, "long": 2.4, "middle": 1.2}


class Nap(Step):
    name = StepName.FIX
    casa_tools = False
    batchable = True

    def prepare(self, ctx):
        from child_funcs import nap

        return ChildCall(nap, {"seconds": ctx.unit.spec.payload["seconds"], "out": str(ctx.out(ctx.unit.spec.outputs[0]))})


def test_each_unit_of_a_batch_is_recorded_with_its_own_time(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))
    monkeypatch.syspath_prepend(str(REPO / "tests"))
    cfg = make_config(tmp_path)
    cat = Catalogue(cfg.catalogue)
    sid = cat.add_session(project="p", name="s", key="p/s", path=str(tmp_path / "s"), root=str(tmp_path), now=0.0)
    view = SessionView(cat.session(sid), [], [], [], [], cfg)
    ctxs, run_ids = [], []
    for key, secs in NAPS.items():
        out = tmp_path / "work" / f"{key}.txt"
        unit = PlannedUnit(StepName.FIX, UnitSpec(key, {}, {}, [out], payload={"seconds": secs}), "f" * 20, 1, {},
                           UnitStatus.PENDING, "test")
        ctxs.append(RunContext(view, unit, {out: tmp_path / "work" / f".tmp-{key}.txt"},
                               log_path=tmp_path / "logs" / f"{key}.log", workdir=tmp_path / "tmp" / key,
                               cancel=threading.Event()))
        run_ids.append(cat.start_run(session_id=sid, step="fix", unit=key, fingerprint="f" * 20, version=1,
                                     params={}, inputs={}, versions={}, reason="test", attempt=1, log_path="",
                                     owner="test"))
    t0 = time.time()
    outcomes = execute_batch(Nap(), ctxs, cfg)
    wall = time.time() - t0
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    rec = Reconciler(cfg, cat)
    for ctx, o, rid in zip(ctxs, outcomes, run_ids):
        rec._finish(o, sid, ctx.unit, ctx, rid)
    rows = {r["unit"]: r for r in cat.runs(sid)}
    took = {k: rows[k]["finished"] - rows[k]["started"] for k in NAPS}
    assert all(rows[k]["status"] == "done" for k in NAPS)
    # each unit took at least its own nap, and not the whole batch's time
    for k, secs in NAPS.items():
        assert secs <= took[k] < secs + (wall - sum(NAPS.values())) + 0.2, (k, took, wall)
    # together they add up to the batch's wall time (not 3 × it)
    assert abs(sum(took.values()) - wall) < 0.25, (took, wall)
    assert took["long"] > took["middle"] > took["short"]
    # one after the other, as they ran
    spans = sorted((rows[k]["started"], rows[k]["finished"]) for k in NAPS)
    assert all(a[1] <= b[0] + 1e-6 for a, b in zip(spans, spans[1:]))
    cat.close()
