"""Planning and fingerprints: pure decision logic, no CASA, no files."""

from __future__ import annotations

import json
import time


from atarchive.plan import plan_session
from atarchive.steps import BY_NAME, STEP_NAMES
from atarchive.steps.base import SessionView
from conftest import make_config

C286 = (202.784529, 30.509155)
PCAL = (211.751625, 28.454083)  # J1407+2827
TGT = (210.0, 29.0)


def _view(tmp_path, *, extra_scan=False, **cfg_sections):
    cfg = make_config(tmp_path, **cfg_sections)
    plan_scans = [("3C286", C286, 0), ("3C286", C286, 1), ("J1407+2827", PCAL, 2), ("target", TGT, 3),
                  ("J1407+2827", PCAL, 4), ("target", TGT, 5), ("J1407+2827", PCAL, 6)]
    if extra_scan:
        plan_scans.append(("target", TGT, 7))
    scans, files = [], []
    for i, (name, _, t) in enumerate(plan_scans):
        stem = f"uvh5_60000_{1000 + 300 * t}_{i}_{name}_0001"
        start = 60000 + (1000 + 300 * t) / 86400
        dur = (60 if name != "target" else 180) / 86400
        scans.append({"id": i + 1, "stem": stem, "field": name, "start_mjd": start, "end_mjd": start + dur,
                      "complete": 1, "source": name})
        for lo in "AB":
            files.append({"id": len(files) + 1, "scan_id": i + 1, "lo": lo, "subband": 352, "status": "ready",
                          "path": f"/s/{stem}/Lo{lo}.C0352/{stem}.uvh5", "size": 1000, "mtime": 1.0})
    fields = [{"name": n, "ra_deg": p[0], "dec_deg": p[1]} for n, p in
              {"3C286": C286, "J1407+2827": PCAL, "target": TGT}.items()]
    los = [{"name": "A", "freq_start_hz": 1.3e9, "freq_end_hz": 1.332e9},
           {"name": "B", "freq_start_hz": 1.6e9, "freq_end_hz": 1.632e9}]
    session = {"id": 1, "key": "p1/2025-01-01-00:00:00", "project": "p1", "name": "2025-01-01-00:00:00",
               "ingest_state": "ready", "error": None}
    return SessionView(session, scans, files, fields, los, cfg)


class Runs:
    """A stand-in for the step_runs table: records runs the way the reconciler does."""

    def __init__(self):
        self.rows = []

    def record(self, unit, status="done", **kw):
        row = {"id": len(self.rows) + 1, "step": unit.step, "unit": unit.key, "fingerprint": unit.fingerprint,
               "version": unit.version, "params": json.dumps(unit.spec.params), "inputs": json.dumps(unit.spec.inputs),
               "versions": json.dumps(unit.versions), "status": status, "attempt": unit.attempt, "temporary": 0,
               "started": time.time(), "finished": time.time(), "error": None, **kw}
        self.rows.append(row)

    def latest(self):
        return {(r["step"], r["unit"]): r for r in self.rows}

    def latest_done(self):
        return {(r["step"], r["unit"]): r for r in self.rows if r["status"] == "done"}


def plan(view, runs, forces=(), exists=lambda p: True):
    return plan_session(view, latest=runs.latest(), latest_done=runs.latest_done(), forces=list(forces),
                        exists=exists)


def run_all(view, runs, exists=lambda p: True):
    """Mark every step done in order, as a full reconcile would."""
    for _ in STEP_NAMES:
        p = plan(view, runs, exists=exists)
        if p.next_step is None:
            break
        for u in p.units[p.next_step].values():
            if u.status != "ok":
                runs.record(u)
    return plan(view, runs, exists=exists)


def test_fresh_session_starts_with_one_compress_per_scan_and_lo(tmp_path):
    """One pass (the default): compress reads each scan-LO's uvh5 files, copy has no units; two steps
    (one_pass false, keep_fullres or tfcrop): copy per scan-LO first."""
    p = plan(_view(tmp_path), Runs())
    assert p.state == "pending" and p.next_step == "compress" and p.units["copy"] == {}
    # 7 scans × 2 LOs, less the earlier 3C286 scan that concat drops (not converted at all)
    assert len(p.units["compress"]) == 12 and {u.reason for u in p.units["compress"].values()} == {"never run"}
    assert not any("_3C286_" in k and "uvh5_60000_1000_0" in k for k in p.units["compress"])
    everything = plan(_view(tmp_path, steps={"copy": {"convert_dropped": True}}), Runs())
    assert len(everything.units["compress"]) == 14
    # the choice is not a product property: converting the dropped scan too leaves the others up to date
    assert {k: u.fingerprint for k, u in everything.units["compress"].items() if k in p.units["compress"]} == {
        k: u.fingerprint for k, u in p.units["compress"].items()}
    two = plan(_view(tmp_path, steps={"compress": {"one_pass": False}}), Runs())
    assert two.next_step == "copy" and len(two.units["copy"]) == 12 and set(two.units["compress"]) == set(
        p.units["compress"])
    two_all = plan(_view(tmp_path, steps={"compress": {"one_pass": False}, "copy": {"convert_dropped": True}}), Runs())
    assert len(two_all.units["copy"]) == 14
    assert {k: u.fingerprint for k, u in two_all.units["copy"].items() if k in two.units["copy"]} == {
        k: u.fingerprint for k, u in two.units["copy"].items()}


def test_concat_drops_all_but_last_flux_cal_scan(tmp_path):
    view = _view(tmp_path)
    p = run_all(view, Runs())
    (c,) = p.units["concat"].values()
    assert c.spec.params["dropped"] == ["uvh5_60000_1000_0_3C286_0001"]
    assert len(c.spec.inputs) == 12  # 6 scans kept × 2 LOs
    view2 = _view(tmp_path, steps={"concat": {"flux_cal_scans": "all"}})
    (c2,) = run_all(view2, Runs()).units["concat"].values()
    assert c2.spec.params["dropped"] == [] and len(c2.spec.inputs) == 14
    assert len(run_all(view2, Runs()).units["compress"]) == 14  # kept scans are converted


def test_everything_done_is_up_to_date(tmp_path):
    view = _view(tmp_path)
    p = run_all(view, Runs())
    assert p.state == "done" and p.next_step is None
    assert all(u.status == "ok" for units in p.units.values() for u in units.values())
    assert p.units["fix"][""].reason.startswith("up to date")


def test_compress_param_change_reruns_compress_concat_fix_and_later_only(tmp_path):
    runs = Runs()
    run_all(_view(tmp_path, steps={"compress": {"keep_fullres": True}}), runs)
    view = _view(tmp_path, steps={"compress": {"chanbin": 8, "keep_fullres": True}})
    p = plan(view, runs)
    assert p.next_step == "compress"
    assert all(u.status == "ok" for u in p.units["copy"].values())
    reasons = {u.reason for u in p.units["compress"].values()}
    assert reasons == {"params changed: compress.chanbin 4→8"}
    for step in ("concat", "fix", "calibrate"):
        assert all(u.status == "pending" and "input changed" in u.reason for u in p.units[step].values()), step
    assert p.units["concat"][""].reason == "input changed: compress"


def test_released_fullres_copy_is_remade_when_compress_must_rerun(tmp_path):
    runs = Runs()
    fullres = lambda p: "/ms/fullres/" not in str(p)  # noqa: E731 - full-res MSs deleted after compress
    run_all(_view(tmp_path, steps={"compress": {"one_pass": False}}), runs)  # each full-res MS exists until its compress has run
    p = plan(_view(tmp_path, steps={"compress": {"one_pass": False}}), runs, exists=fullres)
    assert p.state == "done"
    assert {u.reason for u in p.units["copy"].values()} == {"up to date (product released after use)"}
    p = plan(_view(tmp_path, steps={"compress": {"chanbin": 8, "one_pass": False}}), runs, exists=fullres)
    assert p.next_step == "copy"
    assert {u.reason for u in p.units["copy"].values()} == {
        "needed again by compress (its product was removed after use)"}
    assert {u.reason for u in p.units["compress"].values()} == {"params changed: compress.chanbin 4→8"}


def test_released_averaged_and_fullres_are_remade_when_a_new_scan_reopens_concat(tmp_path):
    runs = Runs()
    gone = lambda p: "/ms/fullres/" not in str(p) and "/ms/avg/" not in str(p)  # noqa: E731 - both released
    cfg = {"steps": {"compress": {"keep_averaged": False, "one_pass": False}}}
    run_all(_view(tmp_path, **cfg), runs)
    p = plan(_view(tmp_path, **cfg), runs, exists=gone)
    assert p.state == "done"
    assert {u.reason for u in p.units["compress"].values()} == {"up to date (product released after use)"}
    # a later scan: concat must run again with every scan, so the released averaged MSs (and the
    # full-resolution MSs they come from) are made again; the new scan is copied for the first time
    p = plan(_view(tmp_path, extra_scan=True, **cfg), runs, exists=gone)
    assert p.next_step == "copy"
    copy = {u.key: u.reason for u in p.units["copy"].values()}
    for key, reason in copy.items():
        if "_7_target" in key:
            assert reason == "never run"
        elif "_0_3C286" in key:  # the first flux-calibrator scan is not concatenated: stays released
            assert reason == "up to date (product released after use)"
        else:
            assert reason == "needed again by compress (its product was removed after use)", key
    comp = {u.key: u.reason for u in p.units["compress"].values()}
    assert {r for k, r in comp.items() if "_7_target" not in k and "_0_3C286" not in k} == {
        "needed again by concat (its product was removed after use)"}


def test_one_pass_remakes_released_averaged_ms_from_the_source(tmp_path):
    """One pass: a released averaged MS needed again is made again straight from the uvh5 files."""
    runs = Runs()
    gone = lambda p: "/ms/avg/" not in str(p)  # noqa: E731 - released
    cfg = {"steps": {"compress": {"keep_averaged": False}}}
    run_all(_view(tmp_path, **cfg), runs)
    assert plan(_view(tmp_path, **cfg), runs, exists=gone).state == "done"
    p = plan(_view(tmp_path, extra_scan=True, **cfg), runs, exists=gone)
    assert p.next_step == "compress" and p.units["copy"] == {}
    comp = {u.key: u.reason for u in p.units["compress"].values()}
    assert {r for k, r in comp.items() if "_7_target" in k} == {"never run"}
    assert {r for k, r in comp.items() if "_7_target" not in k and "_0_3C286" not in k} == {
        "needed again by concat (its product was removed after use)"}


def test_step_version_bump_reruns_it(tmp_path, monkeypatch):
    runs = Runs()
    run_all(_view(tmp_path, steps={"compress": {"one_pass": False}}), runs)
    monkeypatch.setattr(BY_NAME["fix"], "version", 2)
    p = plan(_view(tmp_path, steps={"compress": {"one_pass": False}}), runs)
    assert p.next_step == "fix" and p.units["fix"][""].reason == "step version 1→2"
    assert p.units["calibrate"][""].reason == "input changed: fix"


def test_software_change_is_named(tmp_path, monkeypatch):
    runs = Runs()
    run_all(_view(tmp_path, steps={"compress": {"one_pass": False}}), runs)
    from atarchive import fingerprint

    real = fingerprint.software_versions
    monkeypatch.setattr("atarchive.plan.fp.software_versions",
                        lambda kind: {**real(kind), **({"casatools": "9.9"} if kind == "casa" else {})})
    p = plan(_view(tmp_path, steps={"compress": {"one_pass": False}}), runs)
    assert p.next_step == "compress"
    assert "software changed: casatools" in next(iter(p.units["compress"].values())).reason


def test_reprocess_from_concat_forces_concat_and_later(tmp_path):
    runs = Runs()
    run_all(_view(tmp_path, steps={"compress": {"one_pass": False}}), runs)
    p = plan(_view(tmp_path, steps={"compress": {"one_pass": False}}), runs, forces=[{"from_step": "concat", "created": time.time() + 1}])
    assert p.next_step == "concat"
    assert all(u.status == "ok" for s in ("copy", "compress") for u in p.units[s].values())
    assert p.units["concat"][""].reason == "forced by `atarchive reprocess`"
    assert p.units["fix"][""].status == "pending"


def test_new_scan_reopens_the_session(tmp_path):
    runs = Runs()
    run_all(_view(tmp_path, steps={"compress": {"one_pass": False}}), runs)
    p = plan(_view(tmp_path, extra_scan=True, steps={"compress": {"one_pass": False}}), runs)
    assert p.next_step == "copy"
    pending = [u for u in p.units["copy"].values() if u.status == "pending"]
    assert len(pending) == 2 and {u.reason for u in pending} == {"never run"}
    assert p.units["concat"][""].reason == "input changed: compress (2 new)"


def test_permanent_failure_fails_the_session_and_temporary_is_retried(tmp_path):
    view = _view(tmp_path, steps={"compress": {"one_pass": False}})
    runs = Runs()
    p = plan(view, runs)
    units = list(p.units["copy"].values())
    runs.record(units[0], status="failed", error="truncated file", temporary=0)
    runs.record(units[1], status="failed", error="disk full", temporary=1)
    p = plan(view, runs)
    assert p.state == "failed" and "truncated file" in p.error
    runs.rows[0]["fingerprint"] = "something else"  # the bad file was replaced: new fingerprint
    p = plan(view, runs)
    u1 = p.units["copy"][units[1].key]
    assert p.state == "pending" and u1.attempt == 2 and u1.not_before > time.time()
    assert u1.reason.startswith("retrying after temporary error (attempt 2/3)")


def test_exhausted_retries_fail(tmp_path):
    view = _view(tmp_path, steps={"compress": {"one_pass": False}})
    runs = Runs()
    u = next(iter(plan(view, runs).units["copy"].values()))
    for a in (1, 2, 3):
        u.attempt = a
        runs.record(u, status="failed", error="CASA crashed", temporary=1)
    p = plan(view, runs)
    assert p.state == "failed" and "after 3 attempts" in p.error


def test_session_error_is_the_runs_one_line_error(tmp_path):
    """A run's error written by `error_line` names its step, unit and log: the session's error is that
    line, not wrapped in a second "step unit: failed: …"."""
    from atarchive.errors import error_line

    view = _view(tmp_path, steps={"compress": {"one_pass": False}})
    runs = Runs()
    u = next(iter(plan(view, runs).units["copy"].values()))
    line = error_line("copy", u.key, "RuntimeError: truncated file", "/w/logs/copy.log")
    runs.record(u, status="failed", error=line, temporary=0)
    p = plan(view, runs)
    assert p.state == "failed" and p.error == line == f"copy {u.key}: RuntimeError: truncated file (log: /w/logs/copy.log)"


def test_running_unit_is_not_planned_again(tmp_path):
    view = _view(tmp_path, steps={"compress": {"one_pass": False}})
    runs = Runs()
    u = next(iter(plan(view, runs).units["copy"].values()))
    runs.record(u, status="running", finished=None)
    p = plan(view, runs)
    assert p.units["copy"][u.key].status == "running"
    assert u.key not in {x.key for x in p.pending()}


def test_incomplete_and_failed_sessions_plan_nothing(tmp_path):
    view = _view(tmp_path, steps={"compress": {"one_pass": False}})
    view.session["ingest_state"] = "incomplete"
    assert plan(view, Runs()).state == "incomplete" and plan(view, Runs()).pending() == []
    view = _view(tmp_path, steps={"compress": {"one_pass": False}})
    view.session.update(ingest_state="failed", error="x.uvh5: empty file (0 bytes)")
    p = plan(view, Runs())
    assert p.state == "failed" and p.error.endswith("empty file (0 bytes)")
