"""Idle CPU of `atarchive daemon` with 1,000 indexed, up-to-date sessions on disk (real ATA headers).

The daemon rescans the storage every `poll_seconds`, plans every `heartbeat_seconds`; nothing needs
doing. Measures the daemon's CPU time (user + system, children included) over one minute after it
reported itself idle in the catalogue (activity "idle" in a fresh heartbeat, after its first rescan);
fails loudly if it never does, or if it is not idle at the end of the window. Usage: python bench/daemon_idle.py [--sessions 1000] [--seconds 60] [--poll 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REAL, line, save  # noqa: E402
from plan_noop import mark_all_done  # noqa: E402

from atarchive import config  # noqa: E402
from atarchive.catalogue import Catalogue  # noqa: E402
from atarchive.plan import plan_all  # noqa: E402
from atarchive.scanner.discover import Indexer  # noqa: E402



def make_storage(root: Path, n: int) -> None:
    src = sorted(REAL.glob("ata.LoA.C*.uvh5"))
    local = root / "src"
    local.mkdir(parents=True)
    copies = [shutil.copy(f, local / f.name) for f in src]
    for i in range(n):
        sess = root / "storage" / "projects" / f"p{i // 100:03d}" / f"2024-12-{1 + i % 28:02d}-{i % 24:02d}:{i % 60:02d}:00"
        stem = f"uvh5_60647_{10000 + i}_{i}_3c286_0001"
        for f in copies:
            sub = Path(f).name.split(".")[2]
            d = sess / stem / f"LoA.{sub}"
            d.mkdir(parents=True, exist_ok=True)
            os.link(f, d / f"{stem}.uvh5")


def daemon_row(catalogue: Path) -> dict:
    c = sqlite3.connect(f"file:{catalogue}?mode=ro", uri=True, timeout=30)
    c.row_factory = sqlite3.Row
    try:
        row = c.execute("SELECT * FROM daemon WHERE id = 1").fetchone()
        return dict(row) if row else {}
    except sqlite3.OperationalError:  # not created yet
        return {}
    finally:
        c.close()


def wait_idle(catalogue: Path, d: subprocess.Popen, since: float, timeout: float) -> float:
    """Wait until the daemon says, in the catalogue, that it is idle: activity "idle" in two heartbeats
    written after `since` (its first rescan and plan done, nothing running). Returns the seconds waited;
    exits loudly if the daemon dies or never gets there."""
    seen = []
    while time.time() - since < timeout:
        if d.poll() is not None:
            raise SystemExit(f"daemon exited with code {d.returncode} before it was idle")
        row = daemon_row(catalogue)
        if row and row.get("heartbeat", 0) > since and row.get("stopped") is None:
            seen = [r for r in seen if r[1] == "idle"] if row["activity"] == "idle" else []
            if not seen or seen[-1][0] != row["heartbeat"]:
                seen.append((row["heartbeat"], row["activity"]))
            if len(seen) >= 2:
                return time.time() - since
        time.sleep(0.5)
    raise SystemExit(f"daemon never reported idle within {timeout:.0f} s (last: {daemon_row(catalogue)})")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--poll", type=float, default=30.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_storage(tmp, args.sessions)
        conf = tmp / "atarchive.toml"
        conf.write_text('storage_roots = ["storage"]\nwork_root = "work"\ncatalogue = "cat.db"\n'
                        f"[scan]\nstable_seconds = 0\nsession_idle_seconds = 0\npoll_seconds = {args.poll}\n"
                        "[daemon]\nmin_free_gb = 0\n")
        (conf.parent / "work").mkdir(exist_ok=True)
        cfg = config.load(conf)
        cat = Catalogue(cfg.catalogue)
        t0 = time.perf_counter()
        Indexer(cat, cfg).scan()
        index_s = time.perf_counter() - t0
        mark_all_done(cat, cfg)  # as if every session had been processed
        plan_all(cat, cfg, exists=lambda p: True)  # remembers the up-to-date watermarks
        nsess = cat.one("SELECT COUNT(*) AS n FROM sessions")["n"]
        cat.close()
        d = subprocess.Popen([sys.executable, "-m", "atarchive", "--config", str(conf), "daemon"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        try:
            proc = psutil.Process(d.pid)
            waited = wait_idle(cfg.catalogue, d, since=time.time(), timeout=600.0)
            c0 = proc.cpu_times()
            w0 = time.time()
            time.sleep(args.seconds)
            c1 = proc.cpu_times()
            wall = time.time() - w0
            alive = d.poll() is None
            end_activity = daemon_row(cfg.catalogue)["activity"]
        finally:
            d.send_signal(signal.SIGTERM)
            _, errs = d.communicate(timeout=120)
        cpu = (c1.user + c1.system) - (c0.user + c0.system)
        pct = 100.0 * cpu / wall
        ran = [ln for ln in errs.splitlines() if "done:" in ln or "failed:" in ln]
        data = {"sessions": nsess, "files": nsess * 2, "index_s": round(index_s, 2), "poll_seconds": args.poll,
                "heartbeat_seconds": cfg.daemon.heartbeat_seconds, "window_s": round(wall, 1),
                "cpu_s": round(cpu, 3), "cpu_percent_of_one_core": round(pct, 2), "steps_run": len(ran),
                "daemon_alive": alive, "settle_s": round(waited, 1), "activity_at_end": end_activity,
                "goal_cpu_percent": 5.0}
        save("daemon_idle", data)
        print(line(f"daemon idle CPU, {nsess} sessions, poll {args.poll:.0f} s", f"{pct:.2f}", "% core", "< 5 %",
                   pct < 5.0 and alive and not ran))
        if not alive or end_activity != "idle" and not end_activity.startswith("scanning"):
            raise SystemExit(f"daemon not idle at the end of the window (alive={alive}, activity={end_activity!r}): "
                             "the measurement is not of an idle daemon")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
