"""Where the compress step's time goes on one ATA-shaped scan-LO (issue 15, item 4's profile).

compress dominates an ATA-shaped session's unit-seconds (bench/realtime.py). This simulates one scan-LO
of the ``ata-10min`` shape (28 antennas, 1024 channels in 4 subband files, 4 pols, 10 s), converts it
with the copy step's function, then runs the compress step's function (default settings: AOFlagger,
20 s × 4 channels averaging) under cProfile in a child process with the same environment as the step's
children, and prints the cumulative seconds of its parts.

Usage: python bench/compress_profile.py [--seconds 150]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import line, one_scan_lo, save  # noqa: E402

CHILD = r"""
import cProfile, json, pstats, sys, time
from atarchive.casa.compress import compress
from atarchive.config import CompressConfig
from atarchive.casa import aoflag
from atarchive.casa._casa import casa
casa(); aoflag._flagger()  # warm, as the step's spare children are: imports are not the step's cost
c = CompressConfig()
pr = cProfile.Profile()
t0, c0 = time.perf_counter(), time.process_time()
pr.enable()
res = compress(sys.argv[1], sys.argv[2], timebin_s=c.timebin_s, chanbin=c.chanbin, flagger=c.flagger)
pr.disable()
total, cpu = time.perf_counter() - t0, time.process_time() - c0
st = pstats.Stats(pr)
def label(fn, name):
    base = fn.rsplit("/", 1)[-1]
    if base == "compress.py" and name in ("_aoflag", "flag_summary", "flagged_fraction"):
        return {"_aoflag": "aoflagger pass (reads, flags, writes every baseline)",
                "flag_summary": "flag summary after (reads FLAG)",
                "flagged_fraction": "flagged fraction before (reads FLAG)"}[name]
    if base == "aoflag.py" and name in ("flag_baseline", "steady_channels"):
        return {"flag_baseline": "  flag_baseline (numpy + AOFlagger, per baseline)",
                "steady_channels": "    steady-channel test"}[name]
    if "nanmedian" == name and "nanfunctions" in base:
        return "    numpy nanmedian (all calls)"
    if "aoflagger.run" in name:
        return "    AOFlagger strategy.run (C++)"
    for op in ("getcol", "putcol", "selectrows"):
        if f"_table.table_{op}" in name:
            return f"  casatools table {op} (C++)"
    if base == "mstransform.py" and name == "__call__":
        return "mstransform (average 20 s x 4 ch, write MS)"
    return None
out = {}
for (fn, line_, name), (cc, nc, tt, ct, callers) in st.stats.items():
    k = label(fn, name)
    if k:
        out[k] = out.get(k, 0.0) + ct
print(json.dumps({"total_s": total, "cpu_s": cpu, "parts": out, "flagger": res["flagger"],
                  "top": [(f"{k[2]} ({k[0].rsplit('/', 1)[-1]}:{k[1]})", v[2], v[3]) for k, v in
                          sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:12]]}))
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=150.0, help="scan length (ata-10min's target scans: 150 s)")
    args = ap.parse_args()
    from atarchive.casa.site import child_env

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = one_scan_lo(tmp / "storage", antennas=28, channels=1024, seconds=args.seconds, project="pprof")
        ms, avg = tmp / "full.ms", tmp / "avg.ms"
        subprocess.run([sys.executable, "-c", "import sys, json; from atarchive.casa.copy import uvh5_to_ms; "
                        "uvh5_to_ms(json.loads(sys.argv[1]), sys.argv[2])", json.dumps(files), str(ms)],
                       check=True, capture_output=True, env=child_env(), cwd=tmp)
        mb = sum(f.stat().st_size for f in ms.rglob("*") if f.is_file()) / 1e6
        p = subprocess.run([sys.executable, "-c", CHILD, str(ms), str(avg)], capture_output=True, text=True,
                           env=child_env(), cwd=tmp)
        if p.returncode:
            raise SystemExit(p.stderr[-3000:])
        prof = json.loads(p.stdout.strip().splitlines()[-1])
    total = prof["total_s"]
    data = {"seconds": args.seconds, "antennas": 28, "channels": 1024, "ms_mb": round(mb), **prof,
            "shares": {k: round(v / total, 3) for k, v in prof["parts"].items()}}
    save("compress_profile", data)
    print(line(f"compress, one scan-LO ({args.seconds:g} s, {mb:.0f} MB MS)", f"{total:.1f}", "s", "-", True))
    print(f"  (CPU time of the process {prof['cpu_s']:.1f} s: the rest of the wall time it waited for a core; "
          f"load {os.getloadavg()[0]:.1f} after)")
    order = ["aoflagger pass", "  flag_baseline", "    AOFlagger", "    numpy", "    steady", "  casatools table",
             "mstransform", "flag summary", "flagged fraction"]
    for k, v in sorted(prof["parts"].items(), key=lambda kv: (next(i for i, o in enumerate(order + [""])
                                                                      if kv[0].startswith(o)), -kv[1])):
        print(f"  {k:<56} {v:7.1f} s  {100 * v / total:5.1f} %")
    print("  top own time (cProfile tottime / cumtime):")
    for name, tt, ct in prof["top"][:10]:
        print(f"    {name[:64]:<64} {tt:7.1f} / {ct:7.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
