"""The same session with 1 and with 2 dask workers (execution.executor = "dask"): wall time of `run`
and the ratio, with the thread executor's figure beside it. ``--real``: a real `dask scheduler` and
separate `dask worker` processes on 127.0.0.1 (as on a cluster) instead of a LocalCluster.
Usage: python bench/dask_scale.py [--preset demo] [--real]"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import line, save  # noqa: E402
from e2e import run  # noqa: E402


def _real_cluster(workers: int) -> tuple[str, list[subprocess.Popen]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"], **quiet)]
    procs += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                "--host", "127.0.0.1", "--dashboard-address", ":0"], **quiet) for _ in range(workers)]
    from distributed import Client

    t0 = time.time()
    while time.time() - t0 < 120:
        try:
            with Client(address, timeout="5s") as c:
                if len(c.scheduler_info()["workers"]) == workers:
                    return address, procs
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError("dask workers did not register in 120 s")


def _run(preset: str, workers: int, real: bool) -> dict:
    if not real:
        return run(preset, workers, "dask")
    address, procs = _real_cluster(workers)
    try:
        return run(preset, workers, "dask", scheduler=address)
    finally:
        for p in procs[::-1]:
            p.terminate()
            p.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--real", action="store_true", help="dask scheduler + dask worker processes, not a LocalCluster")
    args = ap.parse_args()
    one = _run(args.preset, 1, args.real)
    two = _run(args.preset, 2, args.real)
    threads = run(args.preset, 2, "threads")
    ratio = one["run_s"] / two["run_s"]
    kind = "scheduler + worker processes" if args.real else "LocalCluster"
    save("dask_scale" + ("_real" if args.real else ""),
         {"preset": args.preset, "cluster": kind, "run_s_1_worker": one["run_s"], "run_s_2_workers": two["run_s"],
          "speedup": round(ratio, 2), "run_s_2_threads": threads["run_s"]})
    ok = one["run_rc"] == 0 and two["run_rc"] == 0 and threads["run_rc"] == 0
    # the goal: dask workers as fast as threads
    print(line(f"dask {args.preset} ({kind}): 1 worker / 2 workers", f"{ratio:.2f}", "x", "-", ok))
    print(line(f"dask {args.preset} ({kind}): 2 workers / 2 threads, wall", f"{two['run_s'] / threads['run_s']:.2f}",
               "x", "≤ 1.1", ok and two["run_s"] <= 1.1 * threads["run_s"]))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
