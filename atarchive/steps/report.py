"""report: the session's QA page (verdict, figures, step table, fluxes, sources), made once every image
is up to date and made again whenever one of them, their sources, the calibration or the ``[qa]``
rules change. The verdict (:mod:`atarchive.verdict`) is worked out here and kept in the product's meta.

The child reads the MS and calibration tables and draws the page; the session's catalogue rows
reach it through the run context (``records``), so nothing here opens the catalogue.
"""

from __future__ import annotations

from pathlib import Path

from .. import naming
from ..casa import report as casa_report
from ..config import Config
from ..contracts import StepName, input_key
from ..view import SessionView
from .base import ChildCall, Product, RunContext, Step, StepResult, UnitSpec


def report_call(view: SessionView, records: dict, *, outdir: Path, final_dir: Path) -> ChildCall:
    """The child call that writes the QA page of ``view``'s session into ``outdir``."""
    vis, caldir = naming.fixed_ms(view.sdir), naming.cal_dir(view.sdir)
    lo_ranges = {lo["name"]: [lo["freq_start_hz"], lo["freq_end_hz"]] for lo in view.los}
    return ChildCall(casa_report.make_report, {
        "records": records, "vis": str(vis) if vis.is_dir() else "",
        "caldir": str(caldir) if caldir.is_dir() else None, "lo_ranges": lo_ranges,
        "outdir": str(outdir), "final_dir": str(final_dir)})


class Report(Step):
    name = StepName.REPORT
    casa_tools = True
    needs_records = True
    version = 2  # 2: the verdict at the top, the sources table
    software = "report"

    def settings(self, cfg: Config) -> None:
        return None

    def params(self, cfg: Config) -> dict:
        """The verdict's rules and limits (``[qa]``): changing them remakes the page and the verdict."""
        return {"qa": cfg.qa.model_dump(mode="json", exclude={"reference_catalogue", "reference_spectral_index",
                                                              "match_radius_arcsec"})}

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        images = up.get(StepName.IMAGE, {})
        if not images:
            return []
        inputs = {input_key(StepName.CALIBRATE, k): u.fingerprint for k, u in up[StepName.CALIBRATE].items()}
        inputs.update({input_key(StepName.IMAGE, k): u.fingerprint for k, u in images.items()})
        inputs.update({input_key(StepName.SOURCES, k): u.fingerprint for k, u in up.get(StepName.SOURCES, {}).items()})
        return [UnitSpec(key="", params=self.params(view.cfg), inputs=inputs, outputs=[self.output(view)])]

    @staticmethod
    def output(view: SessionView) -> Path:
        return naming.report_dir(view.cfg.work_root, view.session["project"], view.session["name"])

    def prepare(self, ctx: RunContext) -> ChildCall:
        out = ctx.out(ctx.unit.spec.outputs[0])
        out.mkdir(parents=True, exist_ok=True)
        return report_call(ctx.view, ctx.records or {}, outdir=out, final_dir=ctx.unit.spec.outputs[0])

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        return StepResult([Product("report", ctx.unit.spec.outputs[0], res)], res)
