"""Peak memory of `copy` (uvh5 → MS for one scan × LO) for a short and a 4× longer scan.

Each conversion runs in a fresh process and reports its own peak RSS (VmHWM), the way the
reconciler runs it. Throughput is bench/convert_rate.py's (a fresh process pays imports first). Usage: python bench/copy_rss.py [--antennas 24] [--channels 512] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import line, one_scan_lo, save  # noqa: E402


def one(files: list[str], out: str, chunk: int) -> None:
    from atarchive.casa.child import offline_astropy
    from atarchive.casa.copy import uvh5_to_ms

    offline_astropy()
    t0 = time.perf_counter()
    res = uvh5_to_ms(files, out, times_per_chunk=chunk or None)
    dt = time.perf_counter() - t0
    # VmHWM belongs to this process image; getrusage's ru_maxrss survives fork+exec and would report
    # the parent's (simulator's) peak instead.
    rss = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:")) / 1024  # MB
    print(json.dumps({"peak_rss_mb": rss, "seconds": dt, "nbytes_in": res["nbytes_in"]}))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--antennas", type=int, default=24)
    ap.add_argument("--channels", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--chunk", type=int, default=6, help="integrations per chunk (steps.copy.times_per_chunk)")
    ap.add_argument("--one", nargs="+")
    args = ap.parse_args()
    if args.one:
        one(args.one[:-1], args.one[-1], args.chunk)
        return 0
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, mult in (("short", 1), ("long_4x", 4)):
            files = one_scan_lo(Path(tmp) / label, antennas=args.antennas, channels=args.channels,
                                seconds=args.seconds * mult, project=f"rss{label}")
            for chunk in (0, args.chunk):
                key = f"{label}_{'chunked' if chunk else 'whole'}"
                r = subprocess.run([sys.executable, __file__, "--chunk", str(chunk), "--one", *files,
                                    str(Path(tmp) / f"{key}.ms")], capture_output=True, text=True, check=True)
                out[key] = json.loads(r.stdout.strip().splitlines()[-1])
                out[key]["uvh5_mb"] = out[key]["nbytes_in"] / 1e6
    ratio = out["long_4x_chunked"]["peak_rss_mb"] / out["short_chunked"]["peak_rss_mb"]
    ratio_whole = out["long_4x_whole"]["peak_rss_mb"] / out["short_whole"]["peak_rss_mb"]
    save("copy_rss", {"antennas": args.antennas, "channels": args.channels, "seconds": args.seconds,
                      "times_per_chunk": args.chunk, **out, "ratio_long_to_short_chunked": ratio,
                      "ratio_long_to_short_whole": ratio_whole})
    for k, v in out.items():
        print(line(f"copy peak RSS, {k} ({v['uvh5_mb']:.0f} MB uvh5)", f"{v['peak_rss_mb']:.0f}", "MB", "-", True))
    print(line("peak RSS long/short, whole-scan reads", f"{ratio_whole:.2f}", "x", "-", True))
    print(line(f"peak RSS long/short, {args.chunk}-integration chunks", f"{ratio:.2f}", "x", "<= 2", ratio <= 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
