"""Source finding per image and `atarchive site` over an archive already processed (issue 14).

    python bench/sources_site.py --config ARCHIVE.toml [--out DIR]

Reads every done `sources` run of the catalogue (PyBDSF's own time, the unit's wall time, sources
found, image size) and times `atarchive site` over the whole archive. Goals: ≤ 10 s of PyBDSF per
image of ≤ 512² pixels; `site` ≤ 30 s for 10 sessions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from common import line, save


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    from atarchive.catalogue import Catalogue
    from atarchive.config import load

    cfg = load(a.config)
    with Catalogue(cfg.catalogue) as cat:
        runs = cat.q("SELECT s.key, r.unit, r.started, r.finished, r.result FROM step_runs r JOIN sessions s "
                     "ON s.id = r.session_id WHERE r.step = 'sources' AND r.status = 'done' ORDER BY r.id")
        n_sessions = len(cat.sessions())
    images = []
    for r in runs:
        res = json.loads(r["result"] or "{}")
        images.append({"session": r["key"], "image": r["unit"], "bdsf_s": res.get("seconds"),
                       "unit_s": r["finished"] - r["started"], "sources": res.get("n_sources")})
    out = a.out or tempfile.mkdtemp(prefix="site-")
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "atarchive", "--config", a.config, "site", "--out", out, "--json"],
                       capture_output=True, text=True, check=True)
    wall = time.time() - t0
    site = json.loads(p.stdout)
    bdsf = sorted(i["bdsf_s"] for i in images if i["bdsf_s"] is not None)
    med = bdsf[len(bdsf) // 2] if bdsf else None
    print(line("PyBDSF per image (median)", f"{med:.2f}" if med is not None else "-", "s", "<= 10", bool(med and med <= 10)))
    print(line(f"site over {n_sessions} sessions (CLI wall)", f"{wall:.1f}", "s", "<= 30", wall <= 30))
    save("sources_site", {"images": images, "bdsf_median_s": med, "site_wall_s": wall,
                          "site_write_s": site["seconds"], "sessions": n_sessions})


if __name__ == "__main__":
    main()
