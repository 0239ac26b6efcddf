"""End to end: simulate a preset, `scan`, `run`, and report the wall time of each step.

Usage: python bench/e2e.py [--preset demo] [--workers 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import line, save, step_times  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--executor", choices=["threads", "dask"], default="threads")
    args = ap.parse_args()
    return 0 if run(args.preset, args.workers, args.executor)["run_rc"] == 0 else 1


def run(preset: str, workers: int = 0, executor: str = "threads", scheduler: str = "") -> dict:
    """Simulate ``preset``, scan and run it; returns (and saves) the timings. ``scheduler``: a dask
    scheduler's address (its workers run the units) instead of a LocalCluster."""
    from types import SimpleNamespace

    args = SimpleNamespace(preset=preset, workers=workers, executor=executor)
    exe = [sys.executable, "-m", "atarchive"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        conf = tmp / "atarchive.toml"
        conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                        f"[scan]\nstable_seconds = 0\n[execution]\nworkers = {args.workers}\nexecutor = \"{args.executor}\"\n"
                        + (f'dask_scheduler = "{scheduler}"\n' if scheduler else "")
                        + "[steps.image]\nmax_imsize = 256\n")
        (conf.parent / "work").mkdir(exist_ok=True)
        t0 = time.perf_counter()
        subprocess.run([*exe, "simulate", "--preset", args.preset, "--out", str(tmp / "storage")], check=True,
                       capture_output=True)
        t_sim = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([*exe, "--config", str(conf), "scan"], check=True, capture_output=True)
        t_scan = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = subprocess.run([*exe, "--config", str(conf), "run"], capture_output=True, text=True)
        t_run = time.perf_counter() - t0
        steps, failed = step_times(tmp / "cat.db")
        data = {"preset": args.preset, "executor": args.executor, "workers": args.workers,
                "simulate_s": round(t_sim, 1), "scan_s": round(t_scan, 2),
                "run_s": round(t_run, 1), "steps": steps, "failed_units": failed, "run_rc": r.returncode}
        save(f"e2e_{args.preset}" + ("" if args.executor == "threads" else f"_{args.executor}{args.workers}")
             + ("_scheduler" if scheduler else ""), data)
        print(line(f"e2e {args.preset}: simulate", f"{t_sim:.1f}", "s", "-", True))
        print(line(f"e2e {args.preset}: run (copy → image)", f"{t_run:.1f}", "s", "-", r.returncode == 0))
        for k, v in steps.items():
            print(line(f"  {k} ({v['units']} units)", f"{v['wall_s']:.1f}", "s wall", "-", True))
    return data


if __name__ == "__main__":
    raise SystemExit(main())
