"""atarchive against the seed's way of working, on the same simulated session and the same CASA work.

The seed runs four scripts one after the other, each looping over its scans/LOs serially in one
process. `seed` mode here does exactly the CASA/pyuvdata calls atarchive makes (same functions, same
parameters, taken from atarchive's own plan; conversion with pyuvdata's read + write_ms as the seed's
copy script does, where atarchive writes the same MS directly; every scan converted and compressed,
also the flux-calibrator scan concat drops, which atarchive does not convert), but serially: one process per step, units one after
another, nothing in parallel, no catalogue. `atarchive` mode is `atarchive scan && atarchive run`
with the default executor (threads, one worker per core). Both are timed in the same run.

Usage: python bench/seed_serial.py [--preset demo|medium]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import line, save  # noqa: E402

from atarchive import config, naming  # noqa: E402
from atarchive.catalogue import Catalogue  # noqa: E402
from atarchive.contracts import ChildCall  # noqa: E402
from atarchive.execution.batch import execute_batch  # noqa: E402
from atarchive.plan import plan_session  # noqa: E402
from atarchive.view import load_view  # noqa: E402
from atarchive.steps import STEPS  # noqa: E402
from atarchive.steps.base import RunContext  # noqa: E402

CONF = ('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n[scan]\nstable_seconds = 0\n'
        "[steps.image]\nmax_imsize = 256\n")


def _seed_step(step):
    """The seed converts with pyuvdata's read + write_ms (atarchive's copy writes the MS directly) and
    does everything in one process (atarchive flags the calibrated fields in parallel)."""
    serial = {"copy": {"direct": False}, "calibrate": {"flag_workers": 1}}.get(step.name)
    if serial is None:
        return step

    class Serial(type(step)):
        def prepare(self, ctx):
            call = super().prepare(ctx)
            return ChildCall(call.func, {**call.kwargs, **serial})

    return Serial()


def seed_like(tmp: Path) -> dict:
    """Every step's units, prepared as atarchive prepares them, run serially in one child per step.
    Like the seed's copy script, every scan is converted and compressed, also the flux-calibrator
    scan concat then drops (atarchive skips those)."""
    # every step's child starts CASA itself, as each seed script does (no spare CASA child)
    (tmp / "atarchive.toml").write_text(CONF + "[steps.copy]\nconvert_dropped = true\n"
                                        "[execution]\nspare_casa_children = 0\n")
    cfg = config.load(tmp / "atarchive.toml")
    cat = Catalogue(cfg.catalogue)
    from atarchive.scanner.discover import Indexer

    Indexer(cat, cfg).scan()
    (session,) = cat.sessions()
    view = load_view(cat, cfg, session)
    plan = plan_session(view, latest={}, latest_done={}, forces=[])
    products: dict[str, list[dict]] = {}
    times = {}
    for step in STEPS:
        if step.name == "report":
            continue  # the seed has no report
        units = list(plan.units.get(step.name, {}).values())
        if not units:
            continue
        cancel = threading.Event()
        ctxs = []
        for u in units:
            token = uuid.uuid4().hex[:8]
            ctxs.append(RunContext(view=view, unit=u, tmp={o: naming.tmp_path(o, token) for o in u.spec.outputs},
                                   log_path=naming.log_path(view.sdir, u.step, u.key),
                                   workdir=naming.casa_workdir(view.sdir, u.step) / token, cancel=cancel,
                                   products=products))
        t0 = time.perf_counter()
        outcomes = execute_batch(_seed_step(step), ctxs, cfg)  # one child process, units in turn
        times[step.name] = round(time.perf_counter() - t0, 1)
        bad = [o.error for o in outcomes if not o.ok]
        if bad:
            raise SystemExit(f"seed-like {step.name} failed: {bad[0]}")
        products[step.name] = [{"kind": p.kind, "path": str(p.path), "meta": p.meta}
                               for o in outcomes for p in o.products]
    cat.close()
    return times


def atarchive_run(tmp: Path) -> dict:
    (tmp / "atarchive.toml").write_text(CONF)
    exe = [sys.executable, "-m", "atarchive", "--config", str(tmp / "atarchive.toml")]
    subprocess.run([*exe, "scan"], check=True, capture_output=True)
    r = subprocess.run([*exe, "run", "--until", "image", "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"atarchive run failed: {r.stderr[-2000:]}")
    import sqlite3

    with sqlite3.connect(tmp / "cat.db") as conn:  # wall time of each step, first start to last finish
        return {step: round(last - first, 1) for step, first, last in conn.execute(
            "SELECT step, MIN(started), MAX(finished) FROM step_runs WHERE status = 'done' GROUP BY step "
            "ORDER BY MIN(started)")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    args = ap.parse_args()
    from atarchive.simulate import preset, simulate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        simulate(preset(args.preset), tmp / "src")
        res = {}
        for mode in ("seed", "atarchive"):
            d = tmp / mode
            shutil.copytree(tmp / "src", d / "storage")
            t0 = time.perf_counter()
            detail = seed_like(d) if mode == "seed" else atarchive_run(d)
            res[mode] = {"wall_s": round(time.perf_counter() - t0, 1), "steps_s": detail}
    ratio = res["seed"]["wall_s"] / res["atarchive"]["wall_s"]
    save(f"seed_serial_{args.preset}", {"preset": args.preset, **res, "speedup": round(ratio, 2), "goal": 1.8})
    print(line(f"{args.preset}: seed-style serial (copy → image)", f"{res['seed']['wall_s']:.1f}", "s", "-", True))
    print(line(f"{args.preset}: atarchive run (copy → image)", f"{res['atarchive']['wall_s']:.1f}", "s", "-", True))
    for mode in res:
        print(f"  {mode}: " + ", ".join(f"{k} {v}" for k, v in res[mode]["steps_s"].items()))
    print(line(f"{args.preset}: speed-up over the serial seed", f"{ratio:.2f}", "x", ">= 1.8", ratio >= 1.8))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
