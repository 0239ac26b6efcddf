"""image: per field and LO — calibrators dirty then cleaned in rounds to 5×rms and fitted (imfit
flux ± error, image peak); targets cleaned with automatic masking. Fluxes go to the catalogue
beside the Perley-Butler 2017 model flux for flux calibrators."""

from __future__ import annotations

from .. import calibrators, naming
from ..casa import image as casa_image
from ..contracts import StepName, input_key
from ..errors import PermanentStepError
from .base import ChildCall, Product, RunContext, SessionView, Step, StepResult, UnitSpec


class Image(Step):
    name = StepName.IMAGE
    casa_tools = True
    batchable = True
    version = 2  # 2: imfit box shrinks on failure; targets fall back to a peak mask

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        out = []
        r = view.roles
        base = self.params(view.cfg)
        for u in up[StepName.CALIBRATE].values():
            for name in sorted(r.fields):
                fr = r.fields[name]
                kind = "target" if fr.role == "target" else "calibrator"
                for lo in view.los:
                    key = f"{name}/Lo{lo['name']}"
                    out.append(
                        UnitSpec(
                            key=key,
                            params={**base, "kind": kind},
                            inputs={input_key(StepName.CALIBRATE, u.key): u.fingerprint},
                            outputs=[naming.image_dir(view.sdir, name, lo["name"])],
                            payload={
                                "field": name,
                                "role": fr.role,
                                "standard": fr.standard,
                                "lo": lo["name"],
                                "lo_range": [lo["freq_start_hz"], lo["freq_end_hz"]],
                            },
                        )
                    )
        return out

    def prepare(self, ctx: RunContext) -> ChildCall:
        spec = ctx.unit.spec
        pl = spec.payload
        splits = [
            p
            for p in ctx.products.get(StepName.CALIBRATE, [])
            if p["kind"] == "ms_1gc" and p["meta"].get("name") == pl["field"]
        ]
        if not splits:
            raise PermanentStepError(f"calibrate produced no split MS for field {pl['field']!r}")
        final = spec.outputs[0]
        return ChildCall(casa_image.image_unit, {
            "candidates": [p["path"] for p in splits],
            "lo_range": pl["lo_range"],
            "outdir": str(ctx.out(final)),
            "final_dir": str(final),
            "name": naming.safe(pl["field"]),
            "kind": spec.params["kind"],
            "params": self.settings(ctx.view.cfg).model_dump(),
        })

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        pl = ctx.unit.spec.payload
        if pl["standard"] and res.get("freq_hz"):
            res["model_flux_jy"] = float(calibrators.pb2017_flux(pl["standard"], res["freq_hz"]))
        image = Product("image", ctx.unit.spec.outputs[0], res, field=pl["field"], lo=pl["lo"], role=pl["role"])
        return StepResult([image], {**res, "field": pl["field"], "lo": pl["lo"], "role": pl["role"]})

    def record(self, cat, session_id: int, run_id: int, outcome) -> None:
        (image,) = outcome.products
        res = image.meta
        cat.replace_flux(session_id, run_id, {
            "field": image.field, "role": image.role, "lo": image.lo, "method": res.get("method", "imfit"),
            **{k: res.get(k) for k in ("freq_hz", "flux_jy", "flux_err_jy", "peak_jy", "rms_jy", "model_flux_jy",
                                       "ra_deg", "dec_deg")}})
