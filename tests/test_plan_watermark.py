"""The no-op plan: sessions found up to date are skipped while their watermark holds, and the
watermark moves with every new run or force of that session alone. No CASA, no files."""

from __future__ import annotations

import time

from atarchive.catalogue import Catalogue
from atarchive.contracts import SessionState, UnitStatus
from atarchive.plan import plan_all
from conftest import make_config

C286 = (202.784529, 30.509155)
PCAL = (211.751625, 28.454083)
TGT = (210.0, 29.0)


def _populate(cat: Catalogue, n_sessions: int) -> None:
    now = time.time()
    with cat.transaction() as conn:
        for i in range(n_sessions):
            key = f"pw/2025-01-{i:04d}"
            sid = conn.execute(
                "INSERT INTO sessions(project, name, key, path, root, layout, ingest_state, first_seen, last_change) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                ["pw", f"2025-01-{i:04d}", key, f"/s/projects/{key}", "/s", "nested", "ready", now, now]).lastrowid
            for name, (ra, dec) in (("3C286", C286), ("J1407+2827", PCAL), ("target", TGT)):
                conn.execute("INSERT INTO fields(session_id, name, ra_deg, dec_deg) VALUES (?,?,?,?)",
                             [sid, name, ra, dec])
            for lo, f0 in (("A", 1.3e9), ("B", 1.6e9)):
                conn.execute("INSERT INTO los(session_id, name, freq_start_hz, freq_end_hz, nchan, nsubbands) "
                             "VALUES (?,?,?,?,?,?)", [sid, lo, f0, f0 + 5e7, 64, 2])
            for j, name in enumerate(["3C286", "3C286", "J1407+2827", "target", "J1407+2827"]):
                stem = f"uvh5_60000_{1000 + 300 * j}_{j}_{name}_0001"
                start = 60000 + (1000 + 300 * j) / 86400
                scid = conn.execute(
                    "INSERT INTO scans(session_id, stem, field, source, start_mjd, end_mjd, complete) "
                    "VALUES (?,?,?,?,?,?,1)", [sid, stem, name, name, start, start + 100 / 86400]).lastrowid
                for lo in "AB":
                    conn.execute("INSERT INTO files(session_id, scan_id, path, lo, subband, size, mtime, status) "
                                 "VALUES (?,?,?,?,?,?,?, 'ready')",
                                 [sid, scid, f"/s/{key}/{stem}/Lo{lo}.C0352/{stem}.uvh5", lo, 352, 1000, 1.0])


def _run_everything(cat: Catalogue, cfg) -> None:
    """Record a done run for every unit planned, until nothing is left (as reconciles would)."""
    for _ in range(10):
        todo = [(p.session["id"], u) for p in plan_all(cat, cfg, exists=lambda p: True, use_watermark=False)
                for units in p.units.values() for u in units.values() if u.status != UnitStatus.OK]
        if not todo:
            return
        for sid, u in todo:
            cat.start_run(session_id=sid, step=u.step, unit=u.key, fingerprint=u.fingerprint, version=u.version,
                          params=u.spec.params, inputs=u.spec.inputs, versions=u.versions, reason="test",
                          status="done", finished=time.time())
    raise AssertionError("plan never settled")


def test_newest_ids_are_each_sessions_newest_run_and_force(tmp_path):
    cfg = make_config(tmp_path)
    cat = Catalogue(cfg.catalogue)
    _populate(cat, 3)
    sids = [s["id"] for s in cat.sessions()]
    assert cat.newest_ids() == {sid: (0, 0) for sid in sids}
    _run_everything(cat, cfg)
    cat.add_force(sids[1], "concat")
    truth: dict[int, list[int]] = {sid: [0, 0] for sid in sids}
    for r in cat.q("SELECT session_id, id FROM step_runs"):
        truth[r["session_id"]][0] = max(truth[r["session_id"]][0], r["id"])
    for f in cat.forces():
        truth[f["session_id"]][1] = max(truth[f["session_id"]][1], f["id"])
    assert cat.newest_ids() == {sid: tuple(v) for sid, v in truth.items()}
    assert all(v[0] > 0 for v in truth.values()) and truth[sids[1]][1] > 0 and truth[sids[0]][1] == 0


def test_noop_plan_skips_up_to_date_sessions_until_their_own_runs_or_forces_change(tmp_path):
    cfg = make_config(tmp_path)
    cat = Catalogue(cfg.catalogue)
    _populate(cat, 3)
    _run_everything(cat, cfg)
    full = plan_all(cat, cfg, exists=lambda p: True)  # remembers watermarks
    assert {p.state for p in full} == {SessionState.DONE}
    again = plan_all(cat, cfg, exists=lambda p: True)
    assert all(p.cached_summary is not None for p in again)  # skipped: nothing changed
    assert [p.step_summary() for p in again] == [p.step_summary() for p in full]  # same answer as planning
    a, b, c = (p.session["id"] for p in full)
    cat.add_force(b, "image")
    (u,) = [u for u in full[2].units["report"].values()]
    cat.start_run(session_id=c, step=u.step, unit=u.key, fingerprint=u.fingerprint, version=u.version,
                  params=u.spec.params, inputs=u.spec.inputs, versions=u.versions, reason="test", status="running")
    after = {p.session["id"]: p for p in plan_all(cat, cfg, exists=lambda p: True)}
    assert after[a].cached_summary is not None and after[a].state == SessionState.DONE
    assert after[b].cached_summary is None and after[b].next_step == "image"  # forced: planned again
    assert after[c].cached_summary is None and after[c].state == SessionState.RUNNING  # new run: planned again
