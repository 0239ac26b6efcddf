"""How the CLI shows things to people: rich tables and one-line messages on a terminal, plain
tab-separated lines when piped. Only the CLI calls this; the data come from :mod:`atarchive.queries`."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .contracts import STEP_ORDER as STEP_NAMES

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
STATE_STYLE = {"done": "green", "failed": "red", "running": "cyan", "pending": "yellow", "incomplete": "magenta"}


def print_status(rows: list[dict], daemon: dict | None) -> None:

    if daemon:
        alive = daemon.get("alive")
        out.print(f"daemon: {'[green]alive[/green]' if alive else '[red]not running[/red]'}"
                  + (f" ({daemon.get('activity')})" if alive and daemon.get("activity") else ""), markup=True)
    if not rows:
        out.print("no sessions in the catalogue yet (run `atarchive scan`)")
        return
    if not out.is_terminal:  # piped: one plain line per session
        for r in rows:
            steps = " ".join(f"{n}={s['done']}/{s['units']}" for n, s in r["steps"].items() if s["units"])
            click.echo("\t".join([r["key"], f"scans={r['scans_complete']}/{r['scans']}", f"los={','.join(r['los'])}",
                                  r["state"] + (f"({r['next_step']})" if r["next_step"] else ""), steps,
                                  f"verdict={r.get('verdict') or '-'}", r["error"] or ""]).rstrip())
        return
    t = Table(show_lines=False)
    for c in ("session", "scans", "fields", "LOs", "state", *STEP_NAMES, "verdict", "error"):
        t.add_column(c, overflow="fold")
    for r in rows:
        st = r["state"]
        cells = []
        for name in STEP_NAMES:
            s = r["steps"].get(name)
            cells.append("" if not s else (f"{s['done']}/{s['units']}" if s["units"] else "-")
                         + ("" if not s or s["status"] in ("done", "waiting", "none") else f" {s['status']}"))
        t.add_row(r["key"], f"{r['scans_complete']}/{r['scans']}", ", ".join(r["fields"]), ",".join(r["los"]),
                  f"[{STATE_STYLE.get(st, 'white')}]{st}[/]" + (f" ({r['next_step']})" if r["next_step"] else ""),
                  *cells, _verdict_cell(r), (r["error"] or "")[:300])
    out.print(t)


def _table(title: str, columns, rows, *, overflow: str | None = None) -> Table:
    """A rich table titled ``title`` with ``columns`` (names) and ``rows`` (tuples of cell strings)."""
    t = Table(title=title)
    for c in columns:
        if overflow:
            t.add_column(c, overflow=overflow)
        else:
            t.add_column(c)
    for r in rows:
        t.add_row(*r)
    return t


def _print_wide(t: Table, width: int) -> None:
    # piped (make demo, logs): a wide table rather than squeezed columns
    (out if out.is_terminal else Console(highlight=False, width=width)).print(t)


VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "red"}


def _verdict_cell(r: dict) -> str:
    v = r.get("verdict")
    if not v:
        return ""
    cell = f"[{VERDICT_STYLE.get(v, 'white')}]{v}[/]"
    return cell + (f": {r['verdict_reasons'][0][:80]}" + (f" (+{len(r['verdict_reasons']) - 1})"
                                                          if len(r["verdict_reasons"]) > 1 else "")
                   if r.get("verdict_reasons") else "")


def show(data: dict) -> None:
    """`show`: the session line, then tables of scans, fields and LOs, then warnings and bad files."""
    ss = data["session"]
    out.print(f"[bold]{ss['key']}[/bold]  {ss['path']}  layout={ss['layout']}  ingest={ss['ingest_state']}",
              markup=True)
    if ss["error"]:
        out.print(f"[red]error:[/red] {ss['error']}", markup=True)
    def dur(x):
        return (x["end_mjd"] - x["start_mjd"]) * 86400 if x["start_mjd"] is not None else None

    out.print(_table("scans", ("stem", "field", "start (MJD)", "dur (s)", "LOs", "complete", "note"), (
        (x["stem"], x["field"] or "", f"{x['start_mjd']:.5f}" if x["start_mjd"] else "",
         f"{dur(x):.0f}" if dur(x) is not None else "", ",".join(x["los"]), "yes" if x["complete"] else "no",
         x["note"] or "") for x in data["scans"]), overflow="fold"))
    out.print(_table("fields", ("name", "RA (deg)", "Dec (deg)", "role", "why", "phase cal"), (
        (f["name"], f"{f['ra_deg']:.5f}" if f["ra_deg"] is not None else "",
         f"{f['dec_deg']:.5f}" if f["dec_deg"] is not None else "", f["role"] or "", f["reason"] or "",
         f["phase_cal"] or "") for f in data["fields"]), overflow="fold"))
    out.print(_table("LOs", ("LO", "start (MHz)", "end (MHz)", "channels", "subbands"), (
        (lo["name"], f"{lo['freq_start_hz'] / 1e6:.3f}", f"{lo['freq_end_hz'] / 1e6:.3f}", str(lo["nchan"]),
         str(lo["nsubbands"])) for lo in data["los"])))
    for w in data["role_warnings"]:
        out.print(f"[yellow]warning:[/yellow] {w}", markup=True)
    for f in data["files_with_errors"]:
        out.print(f"[red]bad file:[/red] {f['path']}: {f['error']}", markup=True)


def explain(data: dict) -> None:
    out.print(f"[bold]{data['session']}[/bold]: {data['state']}"
              + (f" (next: {data['next_step']})" if data["next_step"] else ""), markup=True)
    if data["error"]:
        out.print(f"[red]error:[/red] {data['error']}", markup=True)
    for st in data["steps"]:
        colour = {"up to date": "green", "failed": "red", "waiting": "dim"}.get(st["status"], "yellow")
        out.print(f"  [{colour}]{st['step']:>9}[/{colour}]: {st['status']} — {st['reason']}", markup=True)


def fluxes(rows: list[dict]) -> None:
    if not rows:
        out.print("no flux measurements yet (they come from the image step)")
        return
    def ratio(r):
        return (r["flux_jy"] / r["model_flux_jy"]) if r["model_flux_jy"] and r["flux_jy"] else None

    _print_wide(_table("flux densities", ("session", "field", "role", "LO", "freq (MHz)", "flux (Jy)", "± (Jy)",
                                          "peak (Jy/bm)", "model (Jy)", "ratio"), (
        (r["session"], r["field"], r["role"] or "", r["lo"] or "", f"{(r['freq_hz'] or 0) / 1e6:.1f}",
         _fmt(r["flux_jy"]), _fmt(r["flux_err_jy"]), _fmt(r["peak_jy"]), _fmt(r["model_flux_jy"]),
         f"{ratio(r):.3f}" if ratio(r) else "") for r in rows)), 160)


def images(rows: list[dict]) -> None:
    if not rows:
        out.print("no images yet (they come from the selfcal and image steps)")
        return
    _print_wide(_table("images", ("session", "field", "LO", "kind", "rms (mJy/bm)", "peak (Jy/bm)", "DR", "beam (″)",
                                  "self-cal rounds", "mask"), (
        (r["session"], r["field"], r["lo"], r["kind"], _fmt((r["rms_jy"] or 0) * 1e3), _fmt(r["peak_jy"]),
         f"{r['dynamic_range']:.0f}" if r["dynamic_range"] else "",
         f"{r['beam_major_arcsec']:.0f}×{r['beam_minor_arcsec']:.0f}" if r["beam_major_arcsec"] else "",
         str(r["selfcal_rounds"]), r["mask"] or "") for r in rows)), 180)
    notes = {(r["session"], r["field"], r["lo"]): r["note"] for r in rows if r["kind"] != "pbcor" and r["note"]}
    for (s, f, lo), note in notes.items():
        out.print(f"{s} {f} LO {lo}: {note}", markup=False)


def sources(rows: list[dict]) -> None:
    if not rows:
        out.print("no sources yet (they come from the sources step, on target images)")
        return
    _print_wide(_table("sources", ("session", "field", "LO", "RA (deg)", "Dec (deg)", "± (″)", "flux (Jy)", "± (Jy)",
                                   "peak (Jy/bm)", "shape (″ × ″, °)", "S/N", "sep (″)"), (
        (r["session"], r["field"], r["lo"], f"{r['ra_deg']:.5f}", f"{r['dec_deg']:+.5f}",
         f"{max(r['ra_err_arcsec'] or 0, r['dec_err_arcsec'] or 0):.1f}", _fmt(r["flux_jy"]), _fmt(r["flux_err_jy"]),
         _fmt(r["peak_jy"]), f"{r['major_arcsec'] or 0:.0f} × {r['minor_arcsec'] or 0:.0f}, {r['pa_deg'] or 0:.0f}",
         f"{r['snr']:.0f}" if r["snr"] else "",
         f"{r['separation_arcsec']:.1f}" if "separation_arcsec" in r else "") for r in rows)), 180)


def sources_csv(rows: list[dict]) -> None:
    import csv
    import io

    from .queries import SOURCE_KEYS

    keys = list(SOURCE_KEYS) + (["separation_arcsec"] if rows and "separation_arcsec" in rows[0] else [])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    click.echo(buf.getvalue(), nl=False)


def sources_votable(rows: list[dict]) -> None:
    """The rows as a VOTable (astropy), units on the columns."""
    import io

    from astropy.table import Table as ATable

    from .queries import SOURCE_KEYS

    keys = list(SOURCE_KEYS) + (["separation_arcsec"] if rows and "separation_arcsec" in rows[0] else [])
    text = {"session", "field", "lo", "image", "code"}
    cols = {k: [("" if r.get(k) is None else str(r[k])) if k in text else
                (float("nan") if r.get(k) is None else float(r[k])) for r in rows] for k in keys}
    t = ATable(cols, names=keys, dtype=[str if k in text else float for k in keys])
    for k in keys:
        unit = ("deg" if k.endswith("_deg") else "arcsec" if k.endswith("_arcsec") else "Jy" if k.endswith("_jy")
                else "d" if k == "start_mjd" else None)
        if unit:
            t[k].unit = unit
    t.meta["description"] = "atarchive sources (PyBDSF)"
    buf = io.BytesIO()
    t.write(buf, format="votable")
    click.echo(buf.getvalue().decode(), nl=False)


def source_checks(rows: list[dict]) -> None:
    if not rows:
        out.print("no target images searched yet")
        return
    refs = ((r, r["reference"] or {}) for r in rows)
    _print_wide(_table("sources per image, against the reference catalogue", (
        "session", "field", "LO", "sources", "matched", "offset (″)", "scatter (″)", "offset (beams)", "flux ratio",
        "ratio scatter"), (
        (r["session"], r["field"], r["lo"], str(r["n_sources"]), str(ref.get("matched", "")),
         _fmt(ref.get("median_offset_arcsec")), _fmt(ref.get("offset_scatter_arcsec")),
         _fmt(ref.get("median_offset_beams")), _fmt(ref.get("median_flux_ratio")), _fmt(ref.get("flux_ratio_scatter")))
        for r, ref in refs)), 180)


def summary_line(summary) -> str:
    line = f"ran {len(summary.ran)} unit(s), {len(summary.failed)} failed"
    if summary.recovered:
        line += f" ({len(summary.recovered)} temporary failure(s) made good by a retry)"
    return line


EVENT_KEYS = ("ts", "level", "event", "session", "step", "unit", "duration_s", "log_path")
_MARKUP = re.compile(r"\[/?[a-z ]*\]")


def json_event(event: str, info: dict | None = None, *, level: str = "info", when: float | None = None) -> str:
    """One log event as one JSON object (``--log-format json``): the keys of :data:`EVENT_KEYS` always
    (null where they do not apply), then any others given (``msg``, ``error``, ``done``, ``total``…);
    no rich markup."""
    info = dict(info or {})
    ts = datetime.fromtimestamp(time.time() if when is None else when, timezone.utc)
    obj = {"ts": ts.isoformat(timespec="milliseconds"), "level": level, "event": event}
    for k in EVENT_KEYS[3:]:
        obj[k] = info.pop(k, None)
    if isinstance(info.get("msg"), str):
        info["msg"] = _MARKUP.sub("", info["msg"])
    obj.update(info)
    return json.dumps(obj, default=str, ensure_ascii=False)


def unit_event(kind: str, info: dict) -> tuple[str, str]:
    """(event name, level) of a reconciler event: ``start`` or a finished unit's status."""
    if kind == "start":
        return "unit_started", "info"
    status = info.get("status") or "done"
    return f"unit_{status}", "info" if status == "done" else ("warning" if status == "interrupted" else "error")


class RunProgress:
    """`run` and `reprocess --now`: per step, units done / total. On a terminal, rich progress bars on
    stderr (also with ``--json``, whose output is stdout); every finished unit is a log line (text or
    JSON) with the step's count. ``totals``: units to run per step, from the plan at the start (a
    retried unit counts once)."""

    def __init__(self, obj, totals: dict[str, int]):
        self.obj, self.totals = obj, dict(totals)
        self.done: dict[str, set] = {}
        self.t0: dict[tuple, float] = {}
        self.bar = None
        self.tasks: dict[str, int] = {}
        if err.is_terminal and obj.log_format == "text" and totals:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=err, transient=False)
            for step, n in totals.items():
                self.tasks[step] = self.bar.add_task(step, total=n)

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, kind: str, info: dict) -> None:
        key = (info.get("session"), info.get("step"), info.get("unit"))
        step = info.get("step")
        if kind == "start":
            self.t0[key] = time.time()
            if self.obj.log_format == "json":
                self.obj.event(kind, info)
            return
        self.t0.pop(key, None)
        self.done.setdefault(step, set()).add(key)  # a set: a retried unit counts once
        n = len(self.done.get(step, ()))
        total = max(self.totals.get(step, 0), n)
        if self.bar is not None and step in self.tasks:
            self.bar.update(self.tasks[step], completed=n, total=total)
        self.obj.event(kind, {**info, "done": n, "total": total})


def event_line(kind: str, info: dict) -> str:
    """A finished unit as a text log line (rich markup; the names escaped), with its step's count."""
    from rich.markup import escape

    status = info.get("status")
    colour = "green" if status == "done" else "red"
    dur = f" ({info['duration_s']:.1f} s)" if info.get("duration_s") is not None else ""
    count = f" · {info['step']} {info['done']}/{info['total']}" if info.get("total") else ""
    return (f"[{colour}]{status}[/{colour}] " + escape(f"{info['session']} {info['step']} {info['unit'] or ''}".rstrip()
            + dur + count + (f": {info.get('error')}" if info.get("error") else "")))


def flux_trend_plot(rows: list[dict], field: str, path: str, starts: dict[str, float]) -> None:
    """measured/model against each session's first scan start (MJD, ``starts``), one series per LO."""
    from .report import plots

    series: dict[str, list] = {}
    for r in rows:
        if not (r["model_flux_jy"] and r["flux_jy"]):
            continue
        err_ = (r["flux_err_jy"] or 0.0) / r["model_flux_jy"]
        series.setdefault(r["lo"] or "?", []).append(
            (starts.get(r["session"], float("nan")), r["flux_jy"] / r["model_flux_jy"], err_))
    if not series:
        raise click.UsageError(f"no measurements of {field!r} with a model flux (only flux calibrators have one)")
    plots.flux_trend(series, Path(path), f"{field}: measured / Perley-Butler 2017 across sessions")


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4f}"


def dry_run(sessions: list[dict]) -> None:
    """`run --dry-run`: per session its state, then every step that would run, in order, with how many
    units and why (the scans concat drops under concat)."""
    if not sessions:
        out.print("nothing to do: no sessions")
    for s in sessions:
        head = f"{s['session']}: {s['state']}" + (f": {s['error']}" if s["error"] else "")
        out.print(head + (f" — {s['units']} unit(s) to run" if s["units"] else ""))
        for st in s["steps"]:
            why = "; ".join(f"{r}" + (f" (×{n})" if n > 1 else "") for r, n in st["reasons"].items())
            out.print(f"  {st['step']:>9} ({st['units']}): {why}")
            for stem, reason in sorted(st["dropped"].items()):
                out.print(f"  {'':>9}  drops {stem}: {reason}")
