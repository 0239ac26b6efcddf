"""Latency of `atarchive daemon`: from a session's last file becoming stable (its last write +
scan.stable_seconds) to the first step of that session starting.

A session of real ATA headers is written into watched storage in chunks while the daemon runs.
Usage: python bench/daemon_latency.py [--stable 5] [--idle 10] [--poll 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REAL, line, save  # noqa: E402



def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stable", type=float, default=5.0)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--poll", type=float, default=60.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "storage" / "projects").mkdir(parents=True)
        conf = tmp / "atarchive.toml"
        conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                        f"[scan]\nstable_seconds = {args.stable}\nsession_idle_seconds = {args.idle}\n"
                        f"poll_seconds = {args.poll}\n[daemon]\nmin_free_gb = 0\nheartbeat_seconds = 5\n")
        (conf.parent / "work").mkdir(exist_ok=True)
        d = subprocess.Popen([sys.executable, "-m", "atarchive", "--config", str(conf), "daemon"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            time.sleep(8.0)  # daemon up
            sess = tmp / "storage" / "projects" / "p001" / "2024-12-12-17:29:25"
            stem = "uvh5_60647_62965_9760406_3c286_0001"
            last_write = 0.0
            for f in sorted(REAL.glob("ata.LoA.C*.uvh5")):
                sub = f.name.split(".")[2]
                dst = sess / stem / f"LoA.{sub}" / f"{stem}.uvh5"
                dst.parent.mkdir(parents=True, exist_ok=True)
                data = f.read_bytes()
                with open(dst, "wb") as fh:  # written in 4 chunks over ~1.5 s, as a recorder would
                    for i in range(4):
                        fh.write(data[i * len(data) // 4:(i + 1) * len(data) // 4])
                        fh.flush()
                        time.sleep(0.4)
                last_write = max(last_write, os.stat(dst).st_mtime)
            stable_at = last_write + args.stable
            started = None
            t0 = time.time()
            while time.time() - t0 < args.poll + args.idle + args.stable + 60:
                try:
                    c = sqlite3.connect(tmp / "cat.db")
                    row = c.execute("SELECT MIN(started) FROM step_runs").fetchone()
                    c.close()
                except sqlite3.Error:
                    row = None
                if row and row[0]:
                    started = row[0]
                    break
                time.sleep(0.2)
        finally:
            d.send_signal(signal.SIGTERM)
            d.wait(timeout=120)
    if started is None:
        print("processing never started")
        return 1
    lat = started - stable_at
    data = {"stable_seconds": args.stable, "session_idle_seconds": args.idle, "poll_seconds": args.poll,
            "latency_s": round(lat, 2), "latency_minus_idle_s": round(lat - args.idle, 2)}
    save("daemon_latency", data)
    print(line("last file stable -> processing starts", f"{lat:.1f}", "s", f"idle+{5:.0f} s", lat <= args.idle + 5.5))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
