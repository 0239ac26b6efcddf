"""The real-time factor of an ATA hour (issue 15, item 4).

For each observing length (minutes of data; the ``ata-10min`` preset's scans all scaled alike, see
``atarchive.simulate.with_minutes``; 10/20/40 are the ``ata-10min/20min/40min`` presets): simulate
into a fresh storage root (not timed), then `atarchive scan` and `atarchive run` on a fresh work root
with the default config (workers = cores) and time them. Processing wall = scan + run. Fit
wall = a + b·minutes, report linearity (residuals, ratio per doubling), the predicted processing time
of a 60-minute session and processing time / observing time for one hour against the goal ≤ 0.25.
Per run: load averages before/after (other processes on the box show there), peak RSS of the run's
process tree (sum and largest single process, sampled), per-step wall and unit-seconds from the
catalogue's step_runs, and the fluxes against the simulator's truth (calibrators, phase calibrator,
target), so a fast-but-wrong run cannot pass. Each root is deleted after its measurement.

Usage: python bench/realtime.py [--minutes 10 20 40] [--workers 0] [--root DIR]
       python bench/realtime.py --summarise bench/results/realtime.json   (fit saved runs again)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import line, save, step_times  # noqa: E402

EXE = [sys.executable, "-m", "atarchive"]
GOAL = 0.25  # processing time / observing time for one hour
# the same bounds as the tests' assert_fluxes_match_truth
TOL = {"fluxcal": 0.01, "phasecal": 0.02, "target": 0.03}


class PeakRSS:
    """Sample the RSS of a process and its descendants every ``every`` seconds: peak sum, peak single."""

    def __init__(self, pid: int, every: float = 0.5):
        self.pid, self.every = pid, every
        self.total = self.single = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = []
            rss = []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    pass
            if rss:
                self.total = max(self.total, sum(rss))
                self.single = max(self.single, max(rss))
            self._stop.wait(self.every)

    def stop(self) -> dict:
        self._stop.set()
        self._t.join()
        return {"peak_rss_tree_mb": round(self.total / 2**20), "peak_rss_process_mb": round(self.single / 2**20)}


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess, dict]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mon = PeakRSS(p.pid)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    return wall, subprocess.CompletedProcess(cmd, p.returncode, out, err), mon.stop()


def expected_flux(src: dict, freq_hz: float) -> float:
    from atarchive import calibrators

    if src["calibrator"]:
        return calibrators.pb2017_flux(src["calibrator"], freq_hz)
    return src["flux_jy"] * (freq_hz / src["ref_freq_hz"]) ** src["spectral_index"]


def flux_check(rows: list[dict], truth: dict) -> dict:
    """Each field and LO's flux against the truth, within the tests' bounds; every one must be there."""
    out, ok = {}, True
    for r in rows:
        src = truth["sources"][r["field"]]
        role = "fluxcal" if src["calibrator"] else ("target" if src["role_hint"] == "target" else "phasecal")
        exp = expected_flux(src, r["freq_hz"])
        dev = r["flux_jy"] / exp - 1 if r.get("flux_jy") else None
        good = dev is not None and abs(dev) < TOL[role]
        ok &= good
        out[f"{r['field']}/{r['lo']}"] = {"flux_jy": r.get("flux_jy"), "truth_jy": round(exp, 4), "role": role,
                                          "deviation": None if dev is None else round(dev, 4), "ok": good}
    want = {f"{f}/{lo}" for f in truth["sources"] for lo in truth["los"]}
    missing = sorted(want - set(out))
    return {"ok": ok and not missing, "missing": missing, "fields": out,
            "worst_deviation": max((abs(v["deviation"]) for v in out.values() if v["deviation"] is not None),
                                   default=None)}


def steps_of(db: Path) -> tuple[dict, int]:
    steps, failed = step_times(db)
    total = sum(v["unit_seconds"] for v in steps.values()) or 1.0
    for v in steps.values():
        v["share_of_unit_seconds"] = round(v["unit_seconds"] / total, 3)
    return steps, failed


def du_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def measure(minutes: float, workers: int, base: Path) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"realtime-{minutes:g}min-", dir=base))
    try:
        storage, work, db, conf = tmp / "storage", tmp / "work", tmp / "cat.db", tmp / "atarchive.toml"
        work.mkdir()  # atarchive never creates its work root
        conf.write_text(f'storage_roots = ["{storage}"]\nwork_root = "{work}"\ncatalogue = "{db}"\n'
                        f"[scan]\nstable_seconds = 0\n[execution]\nworkers = {workers}\n")
        t0 = time.perf_counter()
        sim = subprocess.run([sys.executable, "-c", (
            "import json, sys\nfrom atarchive.simulate import preset, simulate, with_minutes\n"
            f"res = simulate(with_minutes(preset('ata-10min'), {minutes!r}), {str(storage)!r})\n"
            "print(json.dumps({'truth': str(res.truth_path), 'files': len(res.files)}))")],
            check=True, capture_output=True, text=True)
        t_sim = time.perf_counter() - t0
        info = json.loads(sim.stdout)
        truth = json.loads(Path(info["truth"]).read_text())
        on_source_s = sum(s["integrations"] for s in truth["scans"]) * 10.0
        span_s = (truth["scans"][-1]["end_mjd"] - truth["scans"][0]["start_mjd"]) * 86400.0
        uvh5 = du_bytes(storage)
        load_before = os.getloadavg()
        t_scan, scan, rss_scan = timed([*EXE, "--config", str(conf), "scan"])
        if scan.returncode:
            raise SystemExit(f"scan failed: {scan.stderr[-2000:]}")
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t_run, run, rss_run = timed([*EXE, "--config", str(conf), "run"])
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds of `run` and every process it waited for (its CASA children): what the work costs
        # whatever else runs on the box; cpu / (cores × wall) says how much of the machine it got
        run_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        load_after = os.getloadavg()
        steps, failed = steps_of(db)
        fl = subprocess.run([*EXE, "--config", str(conf), "fluxes", "--json"], capture_output=True, text=True)
        fluxes = flux_check(json.loads(fl.stdout) if fl.returncode == 0 else [], truth)
        work_bytes = du_bytes(work)
        processing = t_scan + t_run
        return {"minutes": minutes, "on_source_s": on_source_s, "span_s": round(span_s, 1),
                "files": info["files"], "uvh5_gb": round(uvh5 / 1e9, 3), "work_gb": round(work_bytes / 1e9, 3),
                "simulate_s": round(t_sim, 1), "scan_s": round(t_scan, 2), "run_s": round(t_run, 1),
                "processing_s": round(processing, 1), "factor": round(processing / on_source_s, 4),
                "run_cpu_s": round(run_cpu, 1), "run_cpu_share_of_cores": round(run_cpu / (os.cpu_count() * t_run), 3),
                "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
                **rss_run, "scan_peak_rss_tree_mb": rss_scan["peak_rss_tree_mb"],
                "run_rc": run.returncode, "failed_units": failed, "steps": steps, "fluxes": fluxes,
                "run_stderr_tail": run.stderr[-1500:] if run.returncode else ""}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fit(xs: list[float], ys: list[float]) -> dict:
    """Least squares y = a + b·x; residuals; the ratio per doubling of x between measured pairs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    a = my - b * mx
    res = [y - (a + b * x) for x, y in zip(xs, ys)]
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1 - sum(r * r for r in res) / ss_tot if ss_tot else 1.0
    per_doubling = {}
    for i in range(n):
        for j in range(n):
            if xs[j] > xs[i]:
                per_doubling[f"{xs[i]:g}->{xs[j]:g}"] = round((ys[j] / ys[i]) ** (1 / math.log2(xs[j] / xs[i])), 3)
    return {"a_s": round(a, 1), "b_s_per_min": round(b, 2), "r2": round(r2, 4),
            "residuals_s": [round(r, 1) for r in res],
            "max_residual_frac": round(max(abs(r) / y for r, y in zip(res, ys)), 3), "ratio_per_doubling": per_doubling}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 20, 40],
                    help="observing lengths (minutes of data); default the ata-10min/20min/40min presets")
    ap.add_argument("--workers", type=int, default=0, help="0 = the default config's (number of cores)")
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()), help="where roots are made (and deleted)")
    ap.add_argument("--summarise", type=Path, metavar="JSON",
                    help="no runs: fit and print the runs saved in JSON (e.g. of an interrupted bench)")
    args = ap.parse_args()
    if args.summarise:
        data = json.loads(args.summarise.read_text())
        for k in ("benchmark", "when", "machine", "cpus"):
            data.pop(k, None)
        return summarise(args.summarise.stem, data)
    minutes = sorted(args.minutes)
    name = "realtime" if minutes == [10, 20, 40] else "realtime_" + "-".join(f"{m:g}" for m in minutes)
    runs = []
    data: dict = {"cpus_for_workers": args.workers or os.cpu_count(), "runs": runs}
    for m in minutes:
        print(f"  {m:g} min: simulating, then scan + run …", flush=True)
        r = measure(m, args.workers, args.root)
        runs.append(r)
        save(name, data)  # partial results survive an interrupted run
        print(f"  {m:g} min ({r['uvh5_gb']} GB uvh5): processing {r['processing_s']} s = {r['factor']} × observing; "
              f"load {r['load_before'][0]} → {r['load_after'][0]}; peak RSS {r['peak_rss_tree_mb']} MB "
              f"(largest process {r['peak_rss_process_mb']} MB); run CPU {r['run_cpu_s']} s "
              f"({100 * r['run_cpu_share_of_cores']:.0f} % of the cores); fluxes {'OK' if r['fluxes']['ok'] else 'WRONG'} "
              f"(worst {r['fluxes']['worst_deviation']})", flush=True)
    return summarise(name, data)


def summarise(name: str, data: dict) -> int:
    """The fit, the one-hour factor and the profile from ``data["runs"]``; saved and printed."""
    runs = data["runs"]
    ok_runs = all(r["run_rc"] == 0 and r["failed_units"] == 0 for r in runs)
    ok_flux = all(r["fluxes"]["ok"] for r in runs)
    xs = [r["on_source_s"] / 60 for r in runs]
    ys = [r["processing_s"] for r in runs]
    f = fit(xs, ys) if len(runs) > 1 else None
    pred60 = f["a_s"] + 60 * f["b_s_per_min"] if f else ys[0] * 60 / xs[0]
    factor60 = pred60 / 3600
    # the profile: which step dominates the longest run's unit-seconds (printed: its units' seconds,
    # share, and the slope in unit-seconds per minute of data over the runs)
    longest = runs[-1]
    top = sorted(longest["steps"].items(), key=lambda kv: -kv[1]["unit_seconds"])
    # unit-seconds per minute of data, per step (slope over the runs): where an hour's time goes
    per_min = {}
    for step in longest["steps"]:
        us = [r["steps"].get(step, {}).get("unit_seconds", 0.0) for r in runs]
        per_min[step] = fit(xs, us)["b_s_per_min"] if len(runs) > 1 else round(us[0] / xs[0], 2)
    data.update({"fit": f, "predicted_60min_s": round(pred60, 1), "factor_60min": round(factor60, 3), "goal": GOAL,
                 "goal_met": factor60 <= GOAL and ok_runs and ok_flux, "runs_ok": ok_runs, "fluxes_ok": ok_flux,
                 "unit_seconds_per_data_minute": per_min,
                 "profile_longest": [{"step": s, **v} for s, v in top]})
    save(name, data)
    print(line("realtime: runs done, no failed unit", "yes" if ok_runs else "no", "", "all", ok_runs))
    # the field closest to (or furthest past) its bound: deviation / tolerance
    worst = max(((abs(v["deviation"]) / TOL[v["role"]] if v["deviation"] is not None else math.inf, k, v, r["minutes"])
                 for r in runs for k, v in r["fluxes"]["fields"].items()), key=lambda t: t[0], default=None)
    if worst:
        print(line(f"realtime: flux vs truth, worst ({worst[1]} {worst[3]:g} min)",
                   f"{100 * (worst[2]['deviation'] or 1):+.2f}", "%", f"±{100 * TOL[worst[2]['role']]:g} %", ok_flux))
    for r in runs:
        for k in r["fluxes"]["missing"]:
            print(line(f"  {r['minutes']:g} min: no flux for {k}", "-", "", "present", False))
    for r in runs:
        print(line(f"  {r['minutes']:g} min: processing (scan + run)", f"{r['processing_s']:.1f}", "s", "-", True))
    if f:
        print(line(f"realtime: fit wall = a + b·min ({len(runs)} lengths)", f"{f['a_s']:.0f}+{f['b_s_per_min']:.1f}m", "s", "linear",
                   f["max_residual_frac"] <= 0.1))
        for k, v in f["ratio_per_doubling"].items():
            print(line(f"  ratio per doubling {k} min", f"{v:.2f}", "×", "-", True))
    if not f:
        print("  (one length: no fit; the hour below is this run scaled proportionally, its fixed part included)")
    print(line("realtime: predicted processing, 60 min", f"{pred60:.0f}", "s", "<= 900", pred60 <= GOAL * 3600))
    print(line("realtime: processing / observing, one hour", f"{factor60:.3f}", "×", f"<= {GOAL}",
               factor60 <= GOAL and ok_runs and ok_flux))
    for s, v in top:
        print(line(f"  {s}: {100 * v['share_of_unit_seconds']:.0f} % of unit-s, {per_min[s]:.1f} unit-s/min",
                   f"{v['unit_seconds']:.1f}", "unit-s", "-", True))
    return 0 if ok_runs and ok_flux else 1


if __name__ == "__main__":
    raise SystemExit(main())
