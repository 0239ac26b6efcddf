"""No-op reconcile at archive scale: 1,000 sessions × 100 scan-LOs, everything up to date.

Goal: planning all of them takes < 1 s. Reports the cold full plan too (no watermark yet).
Usage: python bench/plan_noop.py [--sessions 1000] [--scans 50] [--db PATH]

``--db PATH`` keeps the populated catalogue there and reuses it when it exists (setup at 10,000
sessions takes ~15 min): before/after figures of a change then plan the very same rows. A reused
catalogue already holds its watermarks, so its "cold" plan is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import line, save  # noqa: E402

from atarchive import config  # noqa: E402
from atarchive.catalogue import Catalogue  # noqa: E402
from atarchive.plan import config_digest, plan_all  # noqa: E402

C286 = (202.784529, 30.509155)
PCAL = (211.751625, 28.454083)
TGT = (210.0, 29.0)


def populate(cat: Catalogue, n_sessions: int, n_scans: int) -> None:
    conn = cat.conn
    now = time.time()
    conn.execute("BEGIN")
    fid = 0
    for i in range(n_sessions):
        key = f"pbench/2025-01-{i:04d}"
        sid = conn.execute(
            "INSERT INTO sessions(project, name, key, path, root, layout, ingest_state, first_seen, last_change) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            ["pbench", f"2025-01-{i:04d}", key, f"/s/projects/{key}", "/s", "nested", "ready", now, now]).lastrowid
        fields = [("3C286", C286), ("J1407+2827", PCAL), ("target", TGT)]
        for name, (ra, dec) in fields:
            conn.execute("INSERT INTO fields(session_id, name, ra_deg, dec_deg) VALUES (?,?,?,?)", [sid, name, ra, dec])
        for lo, f0 in (("A", 1.3e9), ("B", 1.6e9)):
            conn.execute("INSERT INTO los(session_id, name, freq_start_hz, freq_end_hz, nchan, nsubbands) "
                         "VALUES (?,?,?,?,?,?)", [sid, lo, f0, f0 + 0.5e9 / 1.0e1, 1344, 7])
        for j in range(n_scans):
            name = "3C286" if j < 2 else ("J1407+2827" if j % 2 == 0 else "target")
            stem = f"uvh5_60000_{1000 + 300 * j}_{j}_{name}_0001"
            start = 60000 + (1000 + 300 * j) / 86400
            scid = conn.execute(
                "INSERT INTO scans(session_id, stem, field, source, start_mjd, end_mjd, complete) VALUES (?,?,?,?,?,?,1)",
                [sid, stem, name, name, start, start + 100 / 86400]).lastrowid
            for lo in "AB":
                fid += 1
                conn.execute("INSERT INTO files(session_id, scan_id, path, lo, subband, size, mtime, status) "
                             "VALUES (?,?,?,?,?,?,?, 'ready')",
                             [sid, scid, f"/s/{key}/{stem}/Lo{lo}.C0352/{stem}.uvh5", lo, 352, 1000, 1.0])
    conn.execute("COMMIT")


def mark_all_done(cat: Catalogue, cfg) -> None:
    """Record a done run for every planned unit (fingerprints as a reconcile would record them); again
    until the plan has nothing left, in case a step's units depend on what ran before."""
    for _ in range(8):
        plans = plan_all(cat, cfg, exists=lambda p: True, use_watermark=False)
        rows = []
        now = time.time()
        for p in plans:
            for u in (u for units in p.units.values() for u in units.values()):
                if u.status != "ok":
                    rows.append([p.session["id"], u.step, u.key, u.fingerprint, u.version,
                                 json.dumps(u.spec.params), json.dumps(u.spec.inputs), json.dumps(u.versions),
                                 "bench", "done", now, now])
        if not rows:
            return
        with cat.transaction():
            cat.conn.executemany(
                "INSERT INTO step_runs(session_id, step, unit, fingerprint, version, params, inputs, versions, reason, "
                "status, started, finished) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--scans", type=int, default=50)
    ap.add_argument("--db", type=Path, help="keep the populated catalogue here; reuse it if it exists")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db.resolve() if args.db else Path(tmp) / "c.db"
        reused = db.exists()
        # the work root is part of the config digest in every watermark: the same for a reused catalogue
        cfg = config.from_dict({"storage_roots": [], "work_root": "w", "catalogue": str(db)}, base=db.parent)
        t0 = time.perf_counter()
        cat = Catalogue(cfg.catalogue)  # a reused catalogue gets this version's migrations here
        opened = time.perf_counter() - t0
        t0 = time.perf_counter()
        if not reused:
            populate(cat, args.sessions, args.scans)
            mark_all_done(cat, cfg)
        setup = time.perf_counter() - t0
        nruns = cat.one("SELECT COUNT(*) AS n FROM step_runs")["n"]
        nsessions = cat.one("SELECT COUNT(*) AS n FROM sessions")["n"]
        if reused and nsessions != args.sessions:
            raise SystemExit(f"{db} holds {nsessions} sessions, not {args.sessions}")
        cold = None
        if not reused:
            t0 = time.perf_counter()
            plans = plan_all(cat, cfg, exists=lambda p: True)  # full plan (no products on disk); remembers watermarks
            cold = time.perf_counter() - t0
            del plans
        config_digest(cfg)  # software versions looked up once per process (a cold plan did it already)
        runs_s, states = [], set()
        for _ in range(3):  # the daemon plans on every pass: the first and two more
            t0 = time.perf_counter()
            plans2 = plan_all(cat, cfg)
            runs_s.append(round(time.perf_counter() - t0, 3))
            states |= {p.state for p in plans2}
        noop = runs_s[0]
        data = {"sessions": args.sessions, "scan_los_per_session": args.scans * 2, "step_runs": nruns,
                "cold_full_plan_s": None if cold is None else round(cold, 3), "noop_plan_s": round(noop, 3),
                "noop_plan_runs_s": runs_s,
                "states": sorted(states), "setup_s": round(setup, 1), "open_s": round(opened, 2),
                "catalogue_reused": reused, "goal_noop_s": 1.0}
        save("plan_noop", data)
        if cold is None:
            print(f"catalogue reused ({db}): opened (migrations) in {opened:.2f} s; cold plan not measured")
        else:
            print(line("cold full plan (stat every product)", f"{cold:.2f}", "s", "-", True))
        print(line(f"no-op plan, {args.sessions} sessions x {args.scans * 2} scan-LOs", f"{noop:.3f}", "s", "< 1 s",
                   noop < 1.0 and states == {"done"}))
        print(f"  no-op plans in a row: {', '.join(f'{x:.3f}' for x in runs_s)} s")
        cat.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
