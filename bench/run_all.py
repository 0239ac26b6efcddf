"""`make bench`: every benchmark, each writing JSON to bench/results/ and printing figure vs goal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ["index_rate.py", "--files", "600"],
    ["plan_noop.py", "--sessions", "1000", "--scans", "50"],
    ["copy_rss.py"],
    ["e2e.py", "--preset", "demo"],
    ["overhead.py", "--preset", "demo"],
    ["seed_serial.py", "--preset", "demo"],
    ["seed_serial.py", "--preset", "medium"],
    ["dask_scale.py"],
    ["daemon_latency.py"],
    ["daemon_idle.py"],
]

if __name__ == "__main__":
    rc = 0
    for b in BENCHES:
        print(f"== {' '.join(b)}", flush=True)
        rc |= subprocess.run([sys.executable, str(HERE / b[0]), *b[1:]]).returncode
    sys.exit(rc)
