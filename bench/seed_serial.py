"""atarchive against the frozen seed-style baseline, on the same simulated session, timed in one run.

`seed` mode runs ``bench/seed_baseline`` (its own code: pyuvdata read + write_ms per scan-LO, aoflagger
or tfcrop + mstransform per MS, concat without the first flux-calibrator scan, scan numbers fixed,
setjy/gaincal/bandpass/fluxscale/applycal, tclean + imfit; one process per stage, units in turn). It
imports nothing from atarchive, so changes to atarchive cannot move it. `atarchive` mode runs the
``atarchive`` CLI on a fresh work root: ``scan`` then ``run --until image`` with the default executor.
The session is made by ``atarchive simulate``, copied once for each mode.

Usage: python bench/seed_serial.py [--preset demo|medium]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import line, save  # noqa: E402

BENCH = Path(__file__).resolve().parent
ATARCHIVE = [sys.executable, "-m", "atarchive"]
CONF = ('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n[scan]\nstable_seconds = 0\n'
        "[steps.image]\nmax_imsize = 256\n")


def seed_run(d: Path) -> dict:
    out = d / "seed.json"
    r = subprocess.run([sys.executable, str(BENCH / "seed_baseline" / "run.py"), "--storage", str(d / "storage"),
                        "--work", str(d / "work"), "--out", str(out)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"seed baseline failed: {(r.stderr or r.stdout)[-2000:]}")
    return json.loads(out.read_text())


def atarchive_run(d: Path) -> dict:
    (d / "atarchive.toml").write_text(CONF)
    (d / "work").mkdir(exist_ok=True)
    exe = [*ATARCHIVE, "--config", str(d / "atarchive.toml")]
    subprocess.run([*exe, "scan"], check=True, capture_output=True)
    r = subprocess.run([*exe, "run", "--until", "image", "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"atarchive run failed: {r.stderr[-2000:]}")
    fluxes = json.loads(subprocess.run([*exe, "fluxes", "--json"], check=True, capture_output=True, text=True).stdout)
    with sqlite3.connect(d / "cat.db") as conn:  # wall time of each step, first start to last finish
        steps = {step: round(last - first, 1) for step, first, last in conn.execute(
            "SELECT step, MIN(started), MAX(finished) FROM step_runs WHERE status = 'done' GROUP BY step "
            "ORDER BY MIN(started)")}
        flagger = sorted({json.loads(r)["flagger"] for (r,) in conn.execute(
            "SELECT result FROM step_runs WHERE step = 'compress' AND status = 'done'") if r})
    return {"stages_s": steps, "flagger": ", ".join(flagger), "fluxes": fluxes}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([*ATARCHIVE, "simulate", "--preset", args.preset, "--out", str(tmp / "src")], check=True,
                       capture_output=True)
        truth = json.loads(next((tmp / "src" / "truth").rglob("*.json")).read_text())
        res = {}
        for mode in ("seed", "atarchive"):
            d = tmp / mode
            shutil.copytree(tmp / "src", d / "storage")
            t0 = time.perf_counter()
            detail = seed_run(d) if mode == "seed" else atarchive_run(d)
            res[mode] = {"wall_s": round(time.perf_counter() - t0, 1), **detail}
    ratio = res["seed"]["wall_s"] / res["atarchive"]["wall_s"]
    seed_fluxes = {f"{f['field']}/spw{f['spw']}": f["flux_jy"] for f in res["seed"]["image"]["fits"]}
    truth_fluxes = {n: {lo: v["flux_jy"] for lo, v in s["flux_per_lo"].items()} for n, s in truth["sources"].items()}
    save(f"seed_serial_{args.preset}", {"preset": args.preset, "speedup": round(ratio, 2), "goal": 3.0,
                                        "seed": {k: res["seed"][k] for k in ("wall_s", "stages_s", "flagger")},
                                        "seed_fluxes_jy": seed_fluxes,
                                        "atarchive": {k: res["atarchive"][k] for k in ("wall_s", "stages_s", "flagger")},
                                        "atarchive_fluxes_jy": {f"{r['field']}/{r['lo']}": r["flux_jy"]
                                                                for r in res["atarchive"]["fluxes"]},
                                        "truth_flux_jy": truth_fluxes})
    print(line(f"{args.preset}: seed-style serial (copy → image)", f"{res['seed']['wall_s']:.1f}", "s", "-", True))
    print(line(f"{args.preset}: atarchive run (copy → image)", f"{res['atarchive']['wall_s']:.1f}", "s", "-", True))
    for mode in res:
        print(f"  {mode} (flagger: {res[mode]['flagger']}): "
              + ", ".join(f"{k} {v}" for k, v in res[mode]["stages_s"].items()))
    print(line(f"{args.preset}: speed-up over the serial seed", f"{ratio:.2f}", "x", ">= 3", ratio >= 3.0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
