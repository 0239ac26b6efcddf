"""compress: flag at full resolution (aoflagger, a dependency; CASA tfcrop if it cannot run — which
one ran is recorded), then average with mstransform. The full-resolution copy is removed afterwards
unless ``keep_fullres``."""

from __future__ import annotations

import shutil

from .. import naming
from ..casa import compress as casa_compress
from ..contracts import StepName, input_key
from .base import ChildCall, Product, RunContext, SessionView, Step, StepResult, UnitSpec


class Compress(Step):
    name = StepName.COMPRESS
    casa_tools = True
    version = 2  # 2: aoflagger is a dependency, so flagger "auto" flags with it (was CASA tfcrop)
    retention = ("keep_fullres", "keep_averaged")

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        out = []
        for key, cu in up[StepName.COPY].items():
            stem, lo = cu.spec.payload["stem"], cu.spec.payload["lo"]
            out.append(
                UnitSpec(
                    key=key,
                    params=self.params(view.cfg),
                    inputs={input_key(StepName.COPY, key): cu.fingerprint},
                    outputs=[naming.averaged_ms(view.sdir, stem, lo)],
                    payload={"in_ms": str(cu.spec.outputs[0]), **cu.spec.payload},
                    releasable=not view.cfg.steps.compress.keep_averaged,
                )
            )
        return out

    batchable = True

    def prepare(self, ctx: RunContext) -> ChildCall:
        spec = ctx.unit.spec
        c = self.settings(ctx.view.cfg)
        return ChildCall(casa_compress.compress, {
            "in_ms": spec.payload["in_ms"],
            "out_ms": str(ctx.out(spec.outputs[0])),
            "timebin_s": c.timebin_s,
            "chanbin": c.chanbin,
            "flagger": c.flagger,
        })

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        meta = {k: v for k, v in res.items() if k != "channel_flags"}  # per-channel flags: in the run's result only
        return StepResult([Product("ms_averaged", ctx.unit.spec.outputs[0], meta)], res)

    def after_success(self, ctx: RunContext, result: StepResult) -> None:
        if not ctx.view.cfg.steps.compress.keep_fullres:
            shutil.rmtree(ctx.unit.spec.payload["in_ms"], ignore_errors=True)
