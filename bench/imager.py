"""The image step with tclean and with wsclean on the same session (issue 15, item 1).

Simulate a preset, `scan` and `run` it with ``steps.image.imager = "tclean"``, then switch the config
between "wsclean" and "tclean" and `run` again: the imager is part of the image step's fingerprint,
so each switch re-runs image (and sources, report) on the same calibrated data, same image size. Each
imager is measured twice (alternating); the figures are the faster pass of each: the step's wall time,
and the imaging alone (``imaging_s`` of each unit: the imager's runs, without the measurement, FITS
export and primary-beam correction both share). Fluxes of both are
compared with each other and with the truth (Perley-Butler for the flux calibrator).

Usage: python bench/imager.py [--preset medium] [--workers 0] [--passes 2]
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

EXE = [sys.executable, "-m", "atarchive"]


def conf_text(imager: str, workers: int) -> str:
    return ('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
            f"[scan]\nstable_seconds = 0\n[execution]\nworkers = {workers}\n"
            f'[steps.image]\nmax_imsize = 256\nimager = "{imager}"\n')


def image_pass(conf: Path, db: Path) -> dict:
    """`run` and the image step's figures in it: wall time (first start to last finish), the sum of
    its units' times, and each unit's flux."""
    conn = sqlite3.connect(db)
    (after,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM step_runs").fetchone()
    conn.close()
    t0 = time.perf_counter()
    r = subprocess.run([*EXE, "--config", str(conf), "run"], capture_output=True, text=True)
    t_run = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"run failed: {r.stderr[-2000:]}")
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT unit, started, finished, result FROM step_runs WHERE id > ? AND step = 'image' "
                        "AND status = 'done'", [after]).fetchall()
    conn.close()
    if not rows:
        raise SystemExit("the image step did not run")
    units = {}
    times = {}
    for unit, started, finished, result in rows:
        times[unit] = round(finished - started, 2)
        res = json.loads(result)
        units[unit] = {"flux_jy": res.get("flux_jy"), "model_flux_jy": res.get("model_flux_jy"),
                       "rms_jy": res.get("rms_jy"), "peak_jy": res.get("peak_jy"), "imsize": res.get("imsize"),
                       "freq_hz": res.get("freq_hz"), "imaging_s": res.get("imaging_s")}
    return {"wall_s": round(max(f for _, _, f, _ in rows) - min(s for _, s, _, _ in rows), 2),
            "unit_seconds": round(sum(f - s for _, s, f, _ in rows), 2), "units": len(rows),
            "imaging_seconds": round(sum(u["imaging_s"] or 0 for u in units.values()), 2),
            "run_s": round(t_run, 1), "unit_times": times, "fluxes": units}


def truth_flux(truth: dict, unit: str, res: dict) -> float | None:
    if res.get("model_flux_jy"):
        return res["model_flux_jy"]
    src = truth["sources"][unit.split("/")[0]]
    if src.get("flux_jy") is None or not res.get("freq_hz"):
        return None
    return src["flux_jy"] * (res["freq_hz"] / src["ref_freq_hz"]) ** src["spectral_index"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--passes", type=int, default=2, help="passes of each imager, alternating (the faster counts)")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        tmp = args.keep or Path(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        conf, db = tmp / "atarchive.toml", tmp / "cat.db"
        sim = subprocess.run([*EXE, "simulate", "--preset", args.preset, "--out", str(tmp / "storage"), "--json"],
                             check=True, capture_output=True, text=True)
        truth = json.loads(Path(json.loads(sim.stdout)["truth"]).read_text())
        conf.write_text(conf_text("tclean", args.workers))
        (tmp / "work").mkdir(exist_ok=True)  # atarchive never creates its work root
        subprocess.run([*EXE, "--config", str(conf), "scan"], check=True, capture_output=True)
        passes = []
        for imager in ("tclean", "wsclean") * max(1, args.passes):
            conf.write_text(conf_text(imager, args.workers))
            passes.append({"imager": imager, **image_pass(conf, db)})
            print(f"  pass {len(passes)} {imager}: image wall {passes[-1]['wall_s']} s, units "
                  f"{passes[-1]['unit_seconds']} s, imaging alone {passes[-1]['imaging_seconds']} s", flush=True)
    best = {im: min((p for p in passes if p["imager"] == im), key=lambda p: p["wall_s"]) for im in ("tclean", "wsclean")}
    tc, ws = best["tclean"], best["wsclean"]
    speedup = tc["wall_s"] / ws["wall_s"]
    img = {im: min(p["imaging_seconds"] for p in passes if p["imager"] == im) for im in ("tclean", "wsclean")}
    imaging_speedup = img["tclean"] / img["wsclean"]
    flux = {}
    for unit, r in sorted(tc["fluxes"].items()):
        w = ws["fluxes"].get(unit, {})
        t = truth_flux(truth, unit, r)
        flux[unit] = {"tclean_jy": r["flux_jy"], "wsclean_jy": w.get("flux_jy"), "truth_jy": t,
                      "wsclean/tclean": round(w["flux_jy"] / r["flux_jy"], 4) if w.get("flux_jy") and r["flux_jy"] else None,
                      "wsclean/truth": round(w["flux_jy"] / t, 4) if w.get("flux_jy") and t else None,
                      "tclean/truth": round(r["flux_jy"] / t, 4) if r["flux_jy"] and t else None,
                      "rms_tclean_jy": r["rms_jy"], "rms_wsclean_jy": w.get("rms_jy")}
    worst = max(abs(v["wsclean/tclean"] - 1) for v in flux.values() if v["wsclean/tclean"])
    data = {"preset": args.preset, "workers": args.workers, "imsize": tc["fluxes"][next(iter(tc["fluxes"]))]["imsize"],
            "tclean_wall_s": tc["wall_s"], "wsclean_wall_s": ws["wall_s"], "speedup": round(speedup, 2),
            "tclean_imaging_seconds": img["tclean"], "wsclean_imaging_seconds": img["wsclean"],
            "imaging_speedup": round(imaging_speedup, 2),
            "tclean_unit_seconds": tc["unit_seconds"], "wsclean_unit_seconds": ws["unit_seconds"],
            "worst_flux_difference": round(worst, 4), "fluxes": flux,
            "passes": [{k: v for k, v in p.items() if k != "fluxes"} for p in passes],
            "command": f"python bench/imager.py --preset {args.preset} --workers {args.workers} --passes {args.passes}"}
    save(f"imager_{args.preset}" + (f"_workers{args.workers}" if args.workers else ""), data)
    print(line(f"image step {args.preset}: tclean", f"{tc['wall_s']:.1f}", "s wall", "-", True))
    print(line(f"image step {args.preset}: wsclean", f"{ws['wall_s']:.1f}", "s wall", "-", True))
    print(line(f"image step {args.preset}: wsclean speed-up", f"{speedup:.2f}", "x", ">= 3x", speedup >= 3))
    print(line(f"imaging alone {args.preset}: wsclean speed-up", f"{imaging_speedup:.2f}", "x", ">= 3x",
               imaging_speedup >= 3))
    print(line(f"image {args.preset}: wsclean flux vs tclean (worst)", f"{100 * worst:.2f}", "%", "<= 2 %",
               worst <= 0.02))
    for unit, v in flux.items():
        print(f"  {unit:<28} tclean {v['tclean_jy'] or 0:9.4f}  wsclean {v['wsclean_jy'] or 0:9.4f}  "
              f"truth {v['truth_jy'] or 0:9.4f}  rms {v['rms_tclean_jy'] or 0:.5f} / {v['rms_wsclean_jy'] or 0:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
