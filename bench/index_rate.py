"""Indexing rate of `atarchive scan` on ≥500 real-ATA-header uvh5 files (goal ≥ 300 files/s).

Usage: python bench/index_rate.py [--files 600]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REAL, line, save  # noqa: E402

from atarchive import config  # noqa: E402
from atarchive.catalogue import Catalogue  # noqa: E402
from atarchive.scanner.discover import Indexer  # noqa: E402



def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=600)
    args = ap.parse_args()
    src = sorted(REAL.glob("ata.LoA.C*.uvh5"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        nscan = args.files // len(src)
        for i in range(nscan):
            sess = f"2024-12-{1 + i // 50:02d}-00:00:00"
            stem = f"uvh5_60647_{10000 + i}_{i}_src{i % 7}_0001"
            for f in src:
                sub = f.name.split(".")[2]
                d = tmp / "storage" / "projects" / "pbench" / sess / stem / f"LoA.{sub}"
                d.mkdir(parents=True)
                shutil.copy(f, d / f"{stem}.uvh5")
        cfg = config.from_dict({"storage_roots": ["storage"], "work_root": "w", "catalogue": "c.db",
                                "scan": {"stable_seconds": 0}}, base=tmp)
        cat = Catalogue(cfg.catalogue)
        t0 = time.perf_counter()
        rep = Indexer(cat, cfg).scan()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        rep2 = Indexer(cat, cfg).scan()
        second = time.perf_counter() - t0
        n = rep.headers_read
        rate = n / first
        data = {"files": n, "first_scan_s": round(first, 3), "files_per_s": round(rate, 1),
                "rescan_s": round(second, 3), "rescan_headers_read": rep2.headers_read, "goal_files_per_s": 300}
        save("index_rate", data)
        print(line("indexing rate (first scan, headers only)", f"{rate:.0f}", "files/s", ">= 300", rate >= 300))
        print(line("no-change rescan", f"{second:.3f}", "s", "-", rep2.headers_read == 0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
