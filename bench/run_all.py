"""`make bench`: every benchmark, each writing JSON to bench/results/ and printing figure vs goal; at the
end all figures again in one table, with the total time (bench/results/summary.json)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ["index_rate.py", "--files", "600"],
    ["plan_noop.py", "--sessions", "1000", "--scans", "50"],
    ["copy_rss.py"],
    ["onepass.py", "--preset", "medium"],  # issue 15: copy + compress vs one pass (add --before a main checkout)
    ["convert_rate.py"],  # a real ATA scan-LO's shape: 28 antennas, 1344 channels
    ["convert_rate.py", "--antennas", "24", "--channels", "512", "--seconds", "240", "--name", "convert_rate_small"],
    # (bench/e2e.py --preset demo, per step including report, runs inside dask_scale.py)
    ["overhead.py", "--preset", "demo"],
    ["seed_serial.py", "--preset", "demo"],
    ["seed_serial.py", "--preset", "medium"],
    ["imager.py", "--preset", "medium", "--passes", "1"],  # issue 15: tclean vs wsclean, same session
    ["dask_scale.py"],
    ["dask_scale.py", "--real"],
    ["daemon_latency.py"],
    ["daemon_idle.py"],
    # issue 15: an ATA-shaped session of 10, 20, 40 min (1.6/3.2/6.4 GB of uvh5, simulated untimed,
    # ~25 min with the simulation): processing / observing time for one hour
    ["realtime.py"],
    ["compress_profile.py"],  # where compress (the largest share of realtime's unit-seconds) spends its time
]


def main() -> int:
    rc = 0
    figures: list[str] = []
    timings = {}
    t_all = time.perf_counter()
    for b in BENCHES:
        name = " ".join(b)
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, str(HERE / b[0]), *b[1:]], stdout=subprocess.PIPE, text=True)
        for ln in p.stdout:
            print(ln, end="", flush=True)
            if " goal " in ln and not ln.startswith(" ") and ln.rstrip() not in figures:
                figures.append(ln.rstrip())  # step breakdowns (indented) stay in the log above
        rc |= p.wait()
        timings[name] = round(time.perf_counter() - t0, 1)
        print(f"   ({timings[name]} s)", flush=True)
    total = time.perf_counter() - t_all
    print("\n== all figures")
    for ln in figures:
        print(ln)
    # the 20-minute budget is for the benches a change is checked with; realtime.py (70 minutes of
    # ATA-shaped data in three sessions, ~30 min) comes on top of it
    rest = total - sum(t for n, t in timings.items() if n.startswith("realtime.py"))
    ok = rest <= 20 * 60
    print(f"{'make bench, total without realtime.py':<44} {rest / 60:>10.1f} min      goal <= 20       "
          f"{'OK' if ok else 'MISSED'}")
    print(f"{'make bench, total':<44} {total / 60:>10.1f} min      goal -          OK")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "summary.json").write_text(json.dumps(
        {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "total_s": round(total, 1), "total_without_realtime_s": round(rest, 1),
         "seconds_by_bench": timings,
         "figures": figures, "exit_code": rc}, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main())
