"""compress: flag at full resolution (aoflagger, else CASA tfcrop — recorded), then average with
mstransform. The full-resolution copy is removed afterwards unless ``keep_fullres``."""

from __future__ import annotations

import shutil

from .. import naming
from .base import RunContext, SessionView, Step, StepResult, UnitSpec


class Compress(Step):
    name = "compress"
    casa_tools = True
    version = 1

    def params(self, cfg) -> dict:
        p = cfg.steps.compress.model_dump()
        p.pop("keep_fullres")  # retention, not a product property
        p.pop("keep_averaged")
        return p

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        out = []
        for key, cu in up["copy"].items():
            stem, lo = cu.spec.payload["stem"], cu.spec.payload["lo"]
            out.append(
                UnitSpec(
                    key=key,
                    params=self.params(view.cfg),
                    inputs={f"copy:{key}": cu.fingerprint},
                    outputs=[naming.averaged_ms(view.sdir, stem, lo)],
                    payload={"in_ms": str(cu.spec.outputs[0]), **cu.spec.payload},
                    releasable=not view.cfg.steps.compress.keep_averaged,
                )
            )
        return out

    batchable = True

    def prepare(self, ctx: RunContext) -> tuple[str, dict]:
        spec = ctx.unit.spec
        p = spec.params
        return "atarchive.casa.flagavg:compress", {
            "in_ms": spec.payload["in_ms"],
            "out_ms": str(ctx.out(spec.outputs[0])),
            "timebin_s": p["timebin_s"],
            "chanbin": p["chanbin"],
            "flagger": p["flagger"],
        }

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        return StepResult([{"kind": "ms_averaged", "path": ctx.unit.spec.outputs[0], "meta": res}], res)

    def after_success(self, ctx: RunContext, result: StepResult) -> None:
        if not ctx.view.cfg.steps.compress.keep_fullres:
            shutil.rmtree(ctx.unit.spec.payload["in_ms"], ignore_errors=True)
