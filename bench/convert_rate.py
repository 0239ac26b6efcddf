"""Conversion throughput (uvh5 → MS, one scan × LO): atarchive's direct writer vs pyuvdata's read + write_ms,
same files, same process set-up.

Each writer runs in a fresh process: one conversion to warm up (imports, numba cache, page cache),
then --reps timed conversions; MB/s = uvh5 bytes / seconds of the call. The two MSs are compared
table by table (tests/casa_probe.ms_identical). Usage: python bench/convert_rate.py [--antennas 28 --channels 1344 --seconds 120]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, line, one_scan_lo, save  # noqa: E402


def one(files: list[str], out: str, direct: bool, reps: int) -> None:
    from atarchive.casa.child import offline_astropy
    from atarchive.casa.copy import uvh5_to_ms

    offline_astropy()
    times = []
    for i in range(reps + 1):
        dest = out if i == reps else f"{out}.{i}"
        t0 = time.perf_counter()
        res = uvh5_to_ms(files, dest, direct=direct)
        times.append(time.perf_counter() - t0)
        if i < reps:
            shutil.rmtree(dest)
    print(json.dumps({"first_s": times[0], "steady_s": statistics.median(times[1:]), "nbytes_in": res["nbytes_in"],
                      "writer": res["writer"]}))


def main() -> int:
    ap = argparse.ArgumentParser()
    # the shape of a real ATA scan-LO (ATA.md: 28 antennas with data, 1344 channels per LO), 2 minutes
    ap.add_argument("--antennas", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1344)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--one", nargs="+")
    ap.add_argument("--direct", type=int, default=1)
    ap.add_argument("--name", default="convert_rate", help="results file name (bench/results/NAME.json)")
    args = ap.parse_args()
    if args.one:
        one(args.one[:-1], args.one[-1], bool(args.direct), args.reps)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        files = one_scan_lo(Path(tmp) / "storage", antennas=args.antennas, channels=args.channels,
                            seconds=args.seconds, project="convrate")
        out = {}
        for label, direct in (("write_ms", 0), ("atarchive", 1)):
            r = subprocess.run([sys.executable, __file__, "--reps", str(args.reps), "--direct", str(direct),
                                "--one", *files, str(Path(tmp) / f"{label}.ms")],
                               capture_output=True, text=True, check=True, cwd=REPO)
            out[label] = json.loads(r.stdout.strip().splitlines()[-1])
        sys.path.insert(0, str(REPO))
        from atarchive.casa.child import offline_astropy
        from tests.casa_probe import ms_identical

        offline_astropy()
        same = ms_identical(str(Path(tmp) / "write_ms.ms"), str(Path(tmp) / "atarchive.ms"))
    mb = out["atarchive"]["nbytes_in"] / 1e6
    for v in out.values():
        v["steady_mb_s"] = mb / v["steady_s"]
        v["first_mb_s"] = mb / v["first_s"]
    speedup = out["write_ms"]["steady_s"] / out["atarchive"]["steady_s"]
    save(args.name, {"antennas": args.antennas, "channels": args.channels, "seconds": args.seconds,
                          "uvh5_mb": mb, **out, "speedup": speedup, "identical": not same["diffs"],
                          "diffs": same["diffs"], "columns_compared": same["columns"]})
    a, w = out["atarchive"], out["write_ms"]
    shape = f"{args.antennas} ant × {args.channels} ch, {mb:.0f} MB"
    print(line(f"conversion, atarchive ({shape})", f"{a['steady_mb_s']:.0f}", "MB/s", ">= 200",
               a["steady_mb_s"] >= 200))
    print(line(f"conversion, read + write_ms ({shape})", f"{w['steady_mb_s']:.0f}", "MB/s", "-", True))
    print(line("conversion, first in a new process (atarchive)", f"{a['first_mb_s']:.0f}", "MB/s", "-", True))
    print(line("conversion, first in a new process (write_ms)", f"{w['first_mb_s']:.0f}", "MB/s", "-", True))
    print(line("conversion speed-up over write_ms", f"{speedup:.2f}", "x", "-", True))
    print(line(f"MS identical to write_ms ({same['columns']} columns)", str(not same["diffs"]), "", "True",
               not same["diffs"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
