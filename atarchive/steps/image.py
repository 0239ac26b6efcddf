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
    version = 5  # 2: imfit box shrinks on failure; 3: targets from self-calibrated data, .pbcor, residual/model FITS; 4: maxpsffraction 0.5; 5: clean rounds continue the previous round and stop once one reaches its depth, an unresolved fit's flux is its fitted peak

    def params(self, cfg) -> dict:
        """The image settings as fingerprinted: the imager only when it is not the default (tclean), so
        choosing wsclean re-runs image and what follows it, and existing archives keep their fingerprints."""
        return cfg.steps.image.fingerprinted()

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        out = []
        r = view.roles
        base = self.params(view.cfg)
        selfcal = up.get(StepName.SELFCAL, {})
        for u in up[StepName.CALIBRATE].values():
            for name in sorted(r.fields):
                fr = r.fields[name]
                kind = "target" if fr.role == "target" else "calibrator"
                for lo in view.los:
                    key = f"{name}/Lo{lo['name']}"
                    sc = selfcal.get(key) if kind == "target" else None
                    inputs = ({input_key(StepName.SELFCAL, key): sc.fingerprint} if sc else
                              {input_key(StepName.CALIBRATE, u.key): u.fingerprint})
                    out.append(
                        UnitSpec(
                            key=key,
                            params={**base, "kind": kind},
                            inputs=inputs,
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
        settings = self.settings(ctx.view.cfg)
        if settings.imager == "wsclean":
            casa_image.wsclean_program()  # one clear line when the program is not installed
        pl = spec.payload
        final = spec.outputs[0]
        selfcal = self._selfcal(ctx)
        if selfcal is not None:
            candidates, mask = [selfcal["meta"]["ms"]], selfcal["meta"].get("mask_fits")
        else:
            splits = [p for p in ctx.products.get(StepName.CALIBRATE, [])
                      if p["kind"] == "ms_1gc" and p["meta"].get("name") == pl["field"]]
            if not splits:
                raise PermanentStepError(f"calibrate produced no split MS for field {pl['field']!r}")
            candidates, mask = [p["path"] for p in splits], None
        return ChildCall(casa_image.image_unit, {
            "candidates": candidates,
            "mask_fits": mask,
            "nsigma": ctx.view.cfg.steps.selfcal.nsigma,
            "lo_range": pl["lo_range"],
            "outdir": str(ctx.out(final)),
            "final_dir": str(final),
            "name": naming.safe(pl["field"]),
            "kind": spec.params["kind"],
            "params": settings.model_dump(),
        })

    @staticmethod
    def _selfcal(ctx: RunContext) -> dict | None:
        """The self-calibration product this unit images, if its input is one."""
        if not any(k.startswith(f"{StepName.SELFCAL}:") for k in ctx.unit.spec.inputs):
            return None
        pl = ctx.unit.spec.payload
        for p in ctx.products.get(StepName.SELFCAL, []):
            if p["kind"] == "selfcal" and p["unit"] == ctx.unit.key:
                return p
        raise PermanentStepError(f"selfcal produced nothing for {pl['field']!r} LO {pl['lo']}")

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        pl = ctx.unit.spec.payload
        selfcal = self._selfcal(ctx)
        if selfcal is not None:
            res["selfcal_rounds"] = selfcal["meta"].get("rounds_kept", 0)
            res["selfcal_note"] = selfcal["meta"].get("stop_reason")
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
        rounds = res.get("selfcal_rounds")
        row = {k: res.get(k) for k in ("rms_jy", "peak_jy", "beam_major_arcsec", "beam_minor_arcsec", "beam_pa_deg")}
        row.update(dynamic_range=res["peak_jy"] / res["rms_jy"] if res.get("rms_jy") else None,
                   selfcal_rounds=rounds or 0, mask=res.get("mask"), residual_path=res.get("residual_fits"),
                   note=res.get("selfcal_note"))
        # made from the selfcal step's product: "selfcal" (selfcal_rounds says how many rounds were kept, 0 for
        # a target too faint for it); imaged from calibrate's split directly (self-calibration off): "1gc"
        rows = [{**row, "kind": "selfcal" if rounds is not None else "1gc", "path": res.get("fits")}]
        if res.get("pbcor_fits"):
            rows.append({**row, "kind": "pbcor", "path": res["pbcor_fits"],
                         "note": f"Gaussian primary beam, blank below {res.get('pb_cutoff')} of its peak response"})
        cat.replace_images(session_id, run_id, self.name, image.field, image.lo, rows)
