"""image: per field and LO — calibrators dirty then cleaned in rounds to 5×rms and fitted (imfit
flux ± error, image peak); targets cleaned with automatic masking. Fluxes go to the catalogue
beside the Perley-Butler 2017 model flux for flux calibrators."""

from __future__ import annotations

from .. import calibrators, naming
from ..errors import PermanentStepError
from .base import RunContext, SessionView, Step, StepResult, UnitSpec


class Image(Step):
    name = "image"
    casa_tools = True
    version = 2  # 2: imfit box shrinks on failure; targets fall back to a peak mask

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        out = []
        r = view.roles
        base = self.params(view.cfg)
        for u in up["calibrate"].values():
            for name in sorted(r.fields):
                fr = r.fields[name]
                kind = "target" if fr.role == "target" else "calibrator"
                for lo in view.los:
                    key = f"{name}/Lo{lo['name']}"
                    out.append(
                        UnitSpec(
                            key=key,
                            params={**base, "kind": kind},
                            inputs={"calibrate": u.fingerprint},
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

    batchable = True

    def prepare(self, ctx: RunContext) -> tuple[str, dict]:
        spec = ctx.unit.spec
        pl = spec.payload
        splits = [
            p
            for p in ctx.products.get("calibrate", [])
            if p["kind"] == "ms_1gc" and p["meta"].get("name") == pl["field"]
        ]
        if not splits:
            raise PermanentStepError(f"calibrate produced no split MS for field {pl['field']!r}")
        final = spec.outputs[0]
        return "atarchive.casa.imgstep:run", {
            "candidates": [p["path"] for p in splits],
            "lo_range": pl["lo_range"],
            "outdir": str(ctx.out(final)),
            "final_dir": str(final),
            "name": naming.safe(pl["field"]),
            "kind": spec.params["kind"],
            "params": spec.params,
        }

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        pl = ctx.unit.spec.payload
        if pl["standard"] and res.get("freq_hz"):
            res["model_flux_jy"] = float(calibrators.pb2017_flux(pl["standard"], res["freq_hz"]))
        res.update(_field=pl["field"], _lo=pl["lo"], _role=pl["role"])
        return StepResult([{"kind": "image", "path": ctx.unit.spec.outputs[0], "meta": res}], res)

    def record(self, cat, session_id: int, run_id: int, result: StepResult) -> None:
        res = result.result
        cat.replace_flux(session_id, run_id, {
            "field": res.get("_field"), "role": res.get("_role"), "lo": res.get("_lo"),
            "method": res.get("method", "imfit"),
            **{k: res.get(k) for k in ("freq_hz", "flux_jy", "flux_err_jy", "peak_jy", "rms_jy", "model_flux_jy",
                                       "ra_deg", "dec_deg")}})
