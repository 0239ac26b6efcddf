"""Command line: the only module that prints. Errors become one line and a non-zero exit code.

Exit codes: 0 ok, 1 operational failure (a step failed, a session not found), 2 bad usage or config.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from . import __version__
from . import config as config_mod
from . import render
from .errors import AtarchiveError, ConfigError
from .render import err, out



def _json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Machine-readable output (stable keys; see the README).")


class Ctx:
    def __init__(self, config_path: str | None, log_format: str | None):
        self.config_path = config_path
        self._log_format = log_format
        self._cfg = None
        self._cat = None

    @property
    def log_format(self) -> str:
        """--log-format, else the config's ``log_format`` (text if the config cannot be read)."""
        if self._log_format is None:
            try:
                self._log_format = self.cfg.log_format
            except ConfigError:
                self._log_format = "text"
        return self._log_format

    @property
    def cfg(self):
        if self._cfg is None:
            self._cfg = config_mod.load(self.config_path)
        return self._cfg

    @property
    def cat(self):
        """The catalogue, which must exist: queries never create one (nor its directory)."""
        if self._cat is None:
            from .catalogue import Catalogue

            if not self.cfg.catalogue.is_file():
                raise ConfigError(f"no catalogue at {self.cfg.catalogue} (config key catalogue): "
                                  "run `atarchive scan` first")
            self._cat = Catalogue(self.cfg.catalogue)
        return self._cat

    def prepare(self):
        """`run`, `daemon` and `scan`: check the configured paths (one line naming the key, exit 2),
        then open the catalogue, creating it if it is new."""
        from .catalogue import Catalogue

        config_mod.check_paths(self.cfg)
        if self._cat is None:
            self._cat = Catalogue(self.cfg.catalogue)
        return self._cat

    def log(self, msg: str, **fields) -> None:
        if self.log_format == "json":
            click.echo(render.json_event("message", {"msg": msg, **fields}), err=True)
        else:
            err.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}", markup=True)

    def event(self, kind: str, info: dict) -> None:
        """A reconciler event (a unit started or finished) as a log line."""
        if self.log_format == "json":
            name, level = render.unit_event(kind, info)
            click.echo(render.json_event(name, info, level=level), err=True)
        elif kind != "start":
            err.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {render.event_line(kind, info)}", markup=True)

    def progress(self, rec, chosen, until=None) -> "render.RunProgress":
        """Units to run per step (the plan now, up to ``until``), for `run`'s progress."""
        from .contracts import STEP_ORDER
        from .queries import dry_run_items

        last = STEP_ORDER.index(until) if until else len(STEP_ORDER) - 1
        totals: dict[str, int] = {}
        for item in dry_run_items(rec.plan(chosen)):
            if item["status"] != "failed" and STEP_ORDER.index(item["step"]) <= last:
                totals[item["step"]] = totals.get(item["step"], 0) + 1
        return render.RunProgress(self, totals)


class AtarchiveGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            err.print(f"[red]config error:[/red] {e}", markup=True)
            sys.exit(2)
        except AtarchiveError as e:
            err.print(f"[red]error:[/red] {e}", markup=True)
            sys.exit(1)
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)


@click.group(cls=AtarchiveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar=config_mod.ENV_VAR, type=click.Path(dir_okay=False),
              help=f"Config file (TOML). Default: ${config_mod.ENV_VAR}, else ./atarchive.toml.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log lines on stderr: text (default; config key log_format) or json, one object per event "
                   "(ts, level, event, session, step, unit, duration_s, log_path).")
@click.version_option(__version__, prog_name="atarchive")
@click.pass_context
def cli(ctx, config_path, log_format):
    """atarchive — turn raw ATA uvh5 sessions into calibrated images, reproducibly.

    \b
    Typical use:
      atarchive --config atarchive.toml scan      # index new sessions (headers only)
      atarchive --config atarchive.toml run       # bring every ready session up to date
      atarchive --config atarchive.toml status    # one row per session
      atarchive explain SESSION                   # why each step runs or not
      atarchive reprocess SESSION --from concat   # force a step and everything after it
    """
    ctx.obj = Ctx(config_path, log_format)


# -- doctor -------------------------------------------------------------------------------------
@cli.command()
@json_option
@click.pass_obj
def doctor(obj: Ctx, as_json):
    """Versions of CASA, casadata, pyuvdata and whether CASA starts offline."""
    from .casa.doctor import doctor as run_doctor

    rep = run_doctor()
    if as_json:
        _json(rep)
    else:
        for k, v in rep.items():
            if k not in ("fix",):
                out.print(f"{k:>16}: {v}")
        if rep.get("fix"):
            out.print(f"[yellow]fix:[/yellow] {rep['fix']}", markup=True)
    if not rep.get("casa_ok"):
        sys.exit(1)


# -- simulate -----------------------------------------------------------------------------------
@cli.command()
@click.option("--spec", type=click.Path(exists=True, dir_okay=False), help="Simulation spec (TOML).")
@click.option("--preset", help="Built-in spec (see --list-presets).")
@click.option("--out", "out_root", type=click.Path(file_okay=False), help="Storage root to write into.")
@click.option("--list-presets", is_flag=True, help="List built-in presets and exit.")
@json_option
@click.pass_obj
def simulate(obj: Ctx, spec, preset, out_root, list_presets, as_json):
    """Write a simulated ATA session (real on-disk layout) plus a truth file."""
    from . import simulate as sim

    if list_presets:
        names = sim.list_presets()
        _json(names) if as_json else out.print("\n".join(names))
        return
    if bool(spec) == bool(preset):
        raise click.UsageError("give exactly one of --spec or --preset")
    if not out_root:
        raise click.UsageError("--out ROOT is required")
    try:
        s = sim.load_spec(spec) if spec else sim.preset(preset)
    except (sim.SpecError, KeyError, ValueError) as e:
        raise ConfigError(str(e).strip("'\"")) from None
    n = {"files": 0}

    def progress(*_a, **_k):
        n["files"] += 1
        if not as_json and sys.stderr.isatty():
            err.print(f"\rwritten {n['files']} files", end="")

    res = sim.simulate(s, Path(out_root), progress=progress)
    if sys.stderr.isatty() and not as_json:
        err.print()
    info = {"session_dir": str(res.session_dir), "truth": str(res.truth_path), "files": len(res.files)}
    _json(info) if as_json else out.print(f"simulated {info['files']} files in {info['session_dir']}\n"
                                          f"truth: {info['truth']}")


# -- scan ---------------------------------------------------------------------------------------
@cli.command()
@json_option
@click.pass_obj
def scan(obj: Ctx, as_json):
    """Index the storage roots (uvh5 headers only). Idempotent."""
    from .scanner.discover import Indexer

    rep = Indexer(obj.prepare(), obj.cfg).scan()
    if as_json:
        _json(rep.as_dict())
        return
    out.print(f"scanned {rep.files_seen} files in {rep.elapsed_s:.2f} s: {rep.new_files} new, "
              f"{rep.changed_files} changed, {rep.growing_files} still growing, {rep.headers_read} headers read, "
              f"{len(rep.errors)} with errors")
    for w in rep.warnings:
        err.print(f"[yellow]warning:[/yellow] {w}", markup=True)
    for p, e in rep.errors[:20]:
        err.print(f"[red]bad input:[/red] {p}: {e}", markup=True)
    if len(rep.errors) > 20:
        err.print(f"... and {len(rep.errors) - 20} more (see `atarchive status`)")


# -- status -------------------------------------------------------------------------------------
@cli.command()
@json_option
@click.option("--watch", type=float, default=None, metavar="SECONDS", help="Refresh every SECONDS.")
@click.option("--verdict", "verdict", type=click.Choice(["pass", "warn", "fail", "none"]), default=None,
              help="Only sessions with this verdict (none: no QA page yet).")
@click.pass_obj
def status(obj: Ctx, as_json, watch, verdict):
    """One row per session: scans, fields, LOs, state, each step's status and the QA verdict."""
    from .queries import daemon_info, status_rows

    while True:
        rows = status_rows(obj.cat, obj.cfg)
        if verdict:
            rows = [r for r in rows if (r["verdict"] or "none") == verdict]
        d = daemon_info(obj.cat)
        if as_json:
            _json({"sessions": rows, "daemon": d})
        else:
            if watch:
                out.clear()
            render.print_status(rows, d)
        if not watch:
            return
        time.sleep(watch)


# -- show ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("session")
@json_option
@click.pass_obj
def show(obj: Ctx, session, as_json):
    """Scans (field, time, LOs), fields (positions, roles and why), LOs and file problems."""
    from .queries import show_data

    data = show_data(obj.cat, obj.cfg, session)
    if as_json:
        _json(data)
        return
    render.show(data)


# -- run / explain / reprocess ------------------------------------------------------------------
def _sessions(obj: Ctx, refs) -> list[dict] | None:
    return [obj.cat.session(r) for r in refs] if refs else None


@cli.command()
@click.argument("sessions", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Print the plan; run nothing.")
@click.option("--until", "until", metavar="STEP", help="Run no step after STEP (e.g. --until fix).")
@json_option
@click.pass_obj
def run(obj: Ctx, sessions, dry_run, until, as_json):
    """Bring ready sessions up to date: run every missing or out-of-date step, in order."""
    from .contracts import STEP_ORDER as STEP_NAMES
    from .reconciler import Reconciler

    if until and until not in STEP_NAMES:
        raise click.BadParameter(f"unknown step {until!r}; steps: {', '.join(STEP_NAMES)}", param_hint="--until")

    # unit events carry what the reconciler's own lines say: in JSON, only the events
    rec = Reconciler(obj.cfg, obj.cat if dry_run else obj.prepare(),
                     log=None if as_json or obj.log_format == "json" else obj.log)
    chosen = _sessions(obj, sessions)
    if dry_run:
        from .queries import dry_run_items, dry_run_sessions

        plans = rec.plan(chosen)
        items = dry_run_items(plans)
        _json(items) if as_json else render.dry_run(dry_run_sessions(plans, items))
        return
    from . import queries
    from .queries import held_elsewhere

    with obj.progress(rec, chosen, until) as progress:  # on stderr, with --json too
        summary = rec.run(chosen, on_event=progress, until=until)
    held = held_elsewhere(obj.cat)
    if as_json:
        _json({**summary.as_dict(), "held_elsewhere": held})
    else:
        for h in held:
            out.print(f"{h['session']}: being run by PID {h['pid']} on {h['host']} ({h['step']} {h['unit']}".rstrip()
                      + f", since {time.strftime('%H:%M:%S', time.localtime(h['since']))})")
        rows = queries.status_rows(obj.cat, obj.cfg)
        if not summary.ran and not summary.failed:
            failed = sum(r["state"] == "failed" for r in rows)
            if failed:
                out.print(f"nothing to run: {failed} session(s) failed, the others are up to date "
                          "(`atarchive reprocess SESSION` runs a failed one again)")
            else:
                out.print("nothing to run: every ready session is up to date (see `atarchive explain SESSION`)"
                          if not held else "nothing else to run")
        else:
            out.print(render.summary_line(summary))
        render.print_status(rows, None)
    if summary.failed:
        sys.exit(1)


@cli.command()
@click.argument("session")
@json_option
@click.pass_obj
def explain(obj: Ctx, session, as_json):
    """For each step: up to date or not, and exactly why."""
    from .queries import explain_data

    data = explain_data(obj.cat, obj.cfg, session)
    if as_json:
        _json(data)
        return
    render.explain(data)


@cli.command()
@click.argument("session")
@click.option("--from", "from_step", default="copy", show_default=True, help="First step to redo.")
@click.option("--now", is_flag=True, help="Run it now instead of on the next `run`/daemon pass.")
@click.pass_obj
def reprocess(obj: Ctx, session, from_step, now):
    """Force one session's step FROM and everything downstream to run again. No other session is touched."""
    from .contracts import STEP_ORDER as STEP_NAMES

    if from_step not in STEP_NAMES:
        raise click.BadParameter(f"unknown step {from_step!r}; steps: {', '.join(STEP_NAMES)}", param_hint="--from")
    s = obj.cat.session(session)
    obj.cat.add_force(s["id"], from_step, note="cli reprocess")
    obj.cat.set_session_error(s["id"], None)
    out.print(f"{s['key']}: {from_step} and every later step will run again"
              + (" now" if now else " on the next `atarchive run` (or daemon pass)"))
    if now:
        from .reconciler import Reconciler

        rec = Reconciler(obj.cfg, obj.cat, log=None if obj.log_format == "json" else obj.log)
        with obj.progress(rec, [s]) as progress:
            summary = rec.run([s], on_event=progress)
        out.print(render.summary_line(summary))
        if summary.failed:
            sys.exit(1)


# -- daemon ------------------------------------------------------------------------------------
@cli.command()
@click.option("--max-seconds", type=float, default=None, help="Stop after this long (tests, cron).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve Prometheus metrics at http://ADDRESS:PORT/metrics (config daemon.metrics_port; "
                   "ADDRESS is daemon.metrics_address, default 127.0.0.1).")
@click.pass_obj
def daemon(obj: Ctx, max_seconds, metrics_port):
    """Watch the storage roots, index new sessions, and reconcile ready ones. One per catalogue."""
    from .daemon import Daemon

    config_mod.check_paths(obj.cfg)  # the daemon opens (and creates) the catalogue itself
    d = Daemon(obj.cfg, log=obj.log, max_seconds=max_seconds, event=obj.event, metrics_port=metrics_port,
               site=_write_site)
    d.install_signals()
    sys.exit(d.run())


# -- fluxes -------------------------------------------------------------------------------------
@cli.command()
@click.argument("session", required=False)
@click.option("--field", help="Only this field (case-insensitive).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, metavar="PNG",
              help="With --field: plot measured/model flux across sessions to this PNG (a trend shows a "
                   "failing antenna, delay model or system problem).")
@json_option
@click.pass_obj
def fluxes(obj: Ctx, session, field, plot_path, as_json):
    """Measured flux densities per field, LO and frequency (with the model flux for flux calibrators)."""
    from .queries import flux_rows

    rows = flux_rows(obj.cat, session, field, tol_arcsec=obj.cfg.steps.calibrate.flux_cal_tolerance_arcsec)
    if plot_path:
        if not field:
            raise click.UsageError("--plot needs --field (e.g. --field 3C286)")
        render.flux_trend_plot(rows, field, plot_path, obj.cat.first_scan_starts())
        err.print(f"plot: {plot_path}")
    if as_json:
        _json(rows)
        return
    render.fluxes(rows)


# -- images -------------------------------------------------------------------------------------
@cli.command()
@click.argument("session", required=False)
@click.option("--field", help="Only this field (case-insensitive).")
@json_option
@click.pass_obj
def images(obj: Ctx, session, field, as_json):
    """Every image with its rms, peak, dynamic range and beam: a target's 1GC image (before
    self-calibration), its self-calibrated image and the primary-beam corrected one; calibrators' images."""
    from .queries import image_rows

    rows = image_rows(obj.cat, session, field)
    if as_json:
        _json(rows)
        return
    render.images(rows)
# -- sources ------------------------------------------------------------------------------------
@cli.command()
@click.argument("session", required=False)
@click.option("--field", help="Only this field (case-insensitive).")
@click.option("--near", nargs=2, metavar="RA DEC", default=None,
              help="Every measurement of this sky position over all sessions (degrees, or 14h02m30s +29d10m00s).")
@click.option("--radius", "radius_arcsec", type=float, default=60.0, show_default=True, metavar="ARCSEC",
              help="With --near: how far from the position.")
@click.option("--checks", is_flag=True, help="Per image: sources found and the reference-catalogue check.")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="CSV (one row per source) on stdout.")
@click.option("--votable", "as_votable", is_flag=True, help="VOTable (for TOPCAT, Aladin) on stdout.")
@click.pass_obj
def sources(obj: Ctx, session, field, near, radius_arcsec, checks, as_json, as_csv, as_votable):
    """Sources PyBDSF found in the final target images (the sources step), with position, flux density,
    shape and S/N; --checks: each image against the reference catalogue ([qa] reference_catalogue)."""
    from .queries import source_checks, source_rows
    from .skymatch import parse_angle

    if sum(map(bool, (as_json, as_csv, as_votable))) > 1:
        raise click.UsageError("choose one of --json, --csv, --votable")
    if checks:
        rows = source_checks(obj.cat, session)
        if as_json:
            _json(rows)
        else:
            render.source_checks(rows)
        return
    pos = None
    if near:
        try:
            pos = (parse_angle(near[0], hours=True), parse_angle(near[1], hours=False))
        except ValueError as e:
            raise click.UsageError(f"--near: {e}") from None
    rows = source_rows(obj.cat, session, field, near=pos, radius_arcsec=radius_arcsec)
    if as_json:
        _json(rows)
    elif as_csv:
        render.sources_csv(rows)
    elif as_votable:
        render.sources_votable(rows)
    else:
        render.sources(rows)


# -- site ---------------------------------------------------------------------------------------
def _write_site(cat, cfg, out_dir: Path | None = None) -> dict:
    """The archive's site into ``out_dir`` (default <work_root>/site; the daemon refreshes that one)."""
    from . import naming
    from .queries import site_data
    from .report.archive import write_site

    return write_site(site_data(cat, cfg), out_dir or naming.site_dir(cfg.work_root))


@cli.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Directory to write (default: <work_root>/site, which the daemon refreshes).")
@json_option
@click.pass_obj
def site(obj: Ctx, out_dir, as_json):
    """Static offline HTML over the whole archive: every session (state, verdict, LOs, fields, its QA
    page), calibrator flux density over time per calibrator and LO, and per-antenna health across
    sessions (unflagged fraction, gain amplitude vs the array median, bandpass outliers)."""
    res = _write_site(obj.cat, obj.cfg, Path(out_dir) if out_dir else None)
    if as_json:
        _json(res)
        return
    out.print(f"site: {res['path']} ({res['sessions']} sessions, {len(res['figures'])} figures, "
              f"{res['seconds']:.1f} s)")


# -- report -------------------------------------------------------------------------------------
@cli.command()
@click.argument("session", required=False)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser afterwards.")
@click.option("--list", "list_only", is_flag=True, help="Only list the report pages that exist (no rebuild).")
@json_option
@click.pass_obj
def report(obj: Ctx, session, open_browser, list_only, as_json):
    """Write a session's QA page (static HTML with figures) under the work root.

    The page is reports/<project>/<session>/index.html: figures (uv-coverage, elevations, scan
    timeline, bandpass, gains, flux calibrator against its model, image thumbnails) and the step
    table. Works on a partly processed or failed session too: it shows what exists. `run` also
    refreshes it as its last step.
    """
    from .queries import report_pages
    from .reconciler import rebuild_report

    if list_only or not session:
        if not list_only:
            raise click.UsageError("name a SESSION to (re)build its report, or use --list")
        pages = report_pages(obj.cat, obj.cfg)
        if as_json:
            _json(pages)
        elif not pages:
            out.print("no reports yet (`atarchive run` makes them after the image step)")
        for p in ([] if as_json else pages):
            out.print(f"report: {p['session']}  {p['path']}")
        return
    s = obj.cat.session(session)
    obj.log(f"{s['key']}: writing report")
    res = rebuild_report(obj.cfg, obj.cat, s)
    page = Path(res["path"])
    if as_json:
        _json({"session": s["key"], **res})
    else:
        for n in res["notes"]:
            err.print(f"[yellow]note:[/yellow] {n}", markup=True)
        out.print(f"report: {page}  ({len(res['figures'])} figures)")
    if open_browser:
        import webbrowser

        webbrowser.open(page.as_uri())


def main(argv=None):
    cli.main(args=argv, prog_name="atarchive")


if __name__ == "__main__":  # pragma: no cover
    main()
