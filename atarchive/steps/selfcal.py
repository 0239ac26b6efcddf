"""selfcal: per target field and LO — rounds of self-calibration with a guard, between calibrate and
image. The model comes from a clean inside a breizorro mask made on the previous restored image; a
round is kept only if the residual rms falls (or rises less than the peak) and the peak holds. Its product is the target's data as
after the last round kept (the 1GC data when none was, with the reason), the final mask, and the 1GC
image for the before/after comparison. ``rounds = 0`` turns the step off: targets are imaged from
their 1GC data as before."""

from __future__ import annotations

from .. import naming
from ..casa import selfcal as casa_selfcal
from ..contracts import StepName, input_key
from ..errors import PermanentStepError
from .base import ChildCall, Product, RunContext, SessionView, Step, StepResult, UnitSpec


class Selfcal(Step):
    name = StepName.SELFCAL
    casa_tools = True
    batchable = True
    version = 2  # 2: the guard keeps a round whose dynamic range rose (rms may rise less than the peak)

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        settings = self.settings(view.cfg)
        if settings.rounds <= 0:
            return []
        params = {**self.params(view.cfg), "image": view.cfg.steps.image.fingerprinted()}
        out = []
        for u in up[StepName.CALIBRATE].values():
            for name in sorted(view.roles.fields):
                if view.roles.fields[name].role != "target":
                    continue
                for lo in view.los:
                    out.append(UnitSpec(
                        key=f"{name}/Lo{lo['name']}",
                        params=params,
                        inputs={input_key(StepName.CALIBRATE, u.key): u.fingerprint},
                        outputs=[naming.selfcal_dir(view.sdir, name, lo["name"])],
                        payload={"field": name, "lo": lo["name"],
                                 "lo_range": [lo["freq_start_hz"], lo["freq_end_hz"]]},
                    ))
        return out

    def prepare(self, ctx: RunContext) -> ChildCall:
        spec = ctx.unit.spec
        pl = spec.payload
        cal = ctx.products.get(StepName.CALIBRATE, [])
        splits = [p["path"] for p in cal if p["kind"] == "ms_1gc" and p["meta"].get("name") == pl["field"]]
        if not splits:
            raise PermanentStepError(f"calibrate produced no split MS for field {pl['field']!r}")
        refants = [p["meta"].get("refant") for p in cal if p["kind"] == "caltables"]
        final = spec.outputs[0]
        params = dict(spec.params)
        return ChildCall(casa_selfcal.selfcal_unit, {
            "candidates": splits,
            "lo_range": pl["lo_range"],
            "outdir": str(ctx.out(final)),
            "final_dir": str(final),
            "name": naming.safe(pl["field"]),
            "refant": refants[0] if refants and refants[0] is not None else None,
            "image_params": params.pop("image"),
            "params": params,
        })

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        pl = ctx.unit.spec.payload
        product = Product("selfcal", ctx.unit.spec.outputs[0], res, field=pl["field"], lo=pl["lo"], role="target")
        return StepResult([product], {**res, "field": pl["field"], "lo": pl["lo"]})

    def record(self, cat, session_id: int, run_id: int, outcome) -> None:
        (p,) = outcome.products
        before = p.meta["before"]
        cat.replace_images(session_id, run_id, self.name, p.field, p.lo, [{
            "kind": "1gc", "path": before.get("fits"), "residual_path": before.get("residual_fits"),
            "rms_jy": before["rms_jy"], "peak_jy": before["peak_jy"], "dynamic_range": before["dynamic_range"],
            "beam_major_arcsec": before["beam_major_arcsec"], "beam_minor_arcsec": before["beam_minor_arcsec"],
            "beam_pa_deg": before["beam_pa_deg"], "selfcal_rounds": 0, "mask": p.meta.get("mask"),
            "note": "; ".join(n for n in (p.meta.get("stop_reason"), before.get("note")) if n)}])
