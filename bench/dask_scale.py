"""The same session on a dask LocalCluster with 1 and with 2 worker processes (execution.executor =
"dask"): wall time of `run` and the ratio. Usage: python bench/dask_scale.py [--preset demo]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import line, save  # noqa: E402
from e2e import run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    args = ap.parse_args()
    one = run(args.preset, 1, "dask")
    two = run(args.preset, 2, "dask")
    ratio = one["run_s"] / two["run_s"]
    save("dask_scale", {"preset": args.preset, "run_s_1_worker": one["run_s"], "run_s_2_workers": two["run_s"],
                        "speedup": round(ratio, 2)})
    ok = one["run_rc"] == 0 and two["run_rc"] == 0
    # the issue asks for the ratio and sets no goal for it
    print(line(f"dask {args.preset}: 1 worker / 2 workers", f"{ratio:.2f}", "x", "-", ok))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
