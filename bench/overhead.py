"""Orchestration overhead: `atarchive run` wall time minus the time spent inside the CASA/pyuvdata
calls themselves (each child reports it per call), with one worker so nothing overlaps.

What counts as overhead: planning, catalogue writes, child-process start-up (interpreter, offline
astropy set-up), JSON hand-over, renames. Usage: python bench/overhead.py [--preset demo]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import line, save  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    args = ap.parse_args()
    exe = [sys.executable, "-m", "atarchive"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        conf = tmp / "atarchive.toml"
        conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                        "[scan]\nstable_seconds = 0\n[execution]\nworkers = 1\n[steps.image]\nmax_imsize = 256\n")
        (conf.parent / "work").mkdir(exist_ok=True)
        subprocess.run([*exe, "simulate", "--preset", args.preset, "--out", str(tmp / "storage")], check=True,
                       capture_output=True)
        subprocess.run([*exe, "--config", str(conf), "scan"], check=True, capture_output=True)
        t0 = time.perf_counter()
        r = subprocess.run([*exe, "--config", str(conf), "run", "--until", "image"], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        conn = sqlite3.connect(tmp / "cat.db")
        per_step: dict[str, float] = {}
        spans: dict[str, list[float]] = {}
        for step, res, a, b in conn.execute("SELECT step, result, started, finished FROM step_runs WHERE status = 'done'"):
            s = (json.loads(res or "{}") or {}).get("_call_seconds") or 0.0
            per_step[step] = per_step.get(step, 0.0) + s
            spans.setdefault(step, []).extend([a, b])
        conn.close()
    # where the rest goes: inside each step's span but outside its calls (child start-up, hand-over),
    # and between steps (CLI start, planning, catalogue writes)
    order = sorted(spans, key=lambda k: min(spans[k]))
    in_span = {k: round(max(spans[k]) - min(spans[k]) - per_step[k], 2) for k in order}
    between = round(wall - sum(max(v) - min(v) for v in spans.values()), 2)
    inside = sum(per_step.values())
    pct = 100.0 * (wall - inside) / wall
    save(f"overhead_{args.preset}", {"preset": args.preset, "workers": 1, "run_wall_s": round(wall, 1),
                                     "inside_calls_s": round(inside, 1), "overhead_percent": round(pct, 1),
                                     "inside_by_step_s": {k: round(v, 1) for k, v in per_step.items()},
                                     "overhead_within_steps_s": in_span, "overhead_between_steps_s": between,
                                     "run_rc": r.returncode, "goal_percent": 3.0})
    print(line(f"{args.preset}: run wall, 1 worker", f"{wall:.1f}", "s", "-", r.returncode == 0))
    print(line(f"{args.preset}: inside CASA/pyuvdata calls", f"{inside:.1f}", "s", "-", True))
    print(f"  overhead within steps (child start, hand-over): {in_span}; between steps and CLI: {between} s")
    print(line(f"{args.preset}: orchestration overhead", f"{pct:.1f}", "%", "<= 3 %", pct <= 3.0))
    return 0 if r.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
