"""report: the session's QA page (figures, step table, fluxes), made once every image is up to date
and made again whenever one of them, or the calibration, changes."""

from __future__ import annotations

from .. import naming
from ..config import Config
from .base import RunContext, SessionView, Step, StepResult, UnitSpec


class Report(Step):
    name = "report"
    casa_tools = True
    version = 1
    software = "report"

    def params(self, cfg: Config) -> dict:
        return {}

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        images = up.get("image", {})
        if not images:
            return []
        inputs = {f"calibrate:{k}" if k else "calibrate": u.fingerprint for k, u in up["calibrate"].items()}
        inputs.update({f"image:{k}": u.fingerprint for k, u in images.items()})
        final = naming.report_dir(view.cfg.work_root, view.session["project"], view.session["name"])
        return [UnitSpec(key="", params={}, inputs=inputs, outputs=[final])]

    def prepare(self, ctx: RunContext) -> tuple[str, dict]:
        from ..report.build import extract_call

        out = ctx.out(ctx.unit.spec.outputs[0])
        out.mkdir(parents=True, exist_ok=True)
        return extract_call(ctx.view.sdir, ctx.view.los, out / "qa.npz")

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        from ..report.build import load, render_report

        final = ctx.unit.spec.outputs[0]
        summary = render_report(load(ctx.view.cfg, ctx.view.key), outdir=ctx.out(final), final_dir=final)
        return StepResult([{"kind": "report", "path": final, "meta": summary}], summary)
