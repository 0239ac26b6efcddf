"""concat: all scans and LOs into one MS, dropping every flux-calibrator scan but the last.

The earlier flux-calibrator scans were taken on an old delay/phase model (they were used to update
it). The rule is ``steps.concat.flux_cal_scans`` ("last" or "all"); what was dropped is in the
step's params, so it shows in ``explain`` and in the log.
"""

from __future__ import annotations

import shutil

from .. import naming
from ..casa import concat as casa_concat
from ..contracts import StepName, input_key
from ..errors import PermanentStepError
from .base import ChildCall, Product, RunContext, SessionView, Step, StepResult, UnitSpec


class Concat(Step):
    name = StepName.CONCAT
    casa_tools = True
    version = 1

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        comp = up[StepName.COMPRESS]
        if not comp:
            return []
        drop = view.dropped
        kept = {k: u for k, u in comp.items() if u.spec.payload["stem"] not in drop}
        order = {s["stem"]: i for i, s in enumerate(view.used_scans)}
        ordered = sorted(kept.values(), key=lambda u: (order[u.spec.payload["stem"]], u.spec.payload["lo"]))
        params = {**self.params(view.cfg), "dropped": sorted(drop)}
        return [
            UnitSpec(
                key="",
                params=params,
                inputs={input_key(StepName.COMPRESS, u.key): u.fingerprint for u in ordered},
                outputs=[naming.concat_ms(view.sdir)],
                payload={"in_ms": [str(u.spec.outputs[0]) for u in ordered], "why_dropped": drop},
            )
        ]

    def prepare(self, ctx: RunContext) -> ChildCall:
        spec = ctx.unit.spec
        if not spec.payload["in_ms"]:
            raise PermanentStepError("nothing to concatenate: every scan was dropped or excluded")
        ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(ctx.log_path, "a") as log:
            rule = self.settings(ctx.view.cfg).flux_cal_scans
            log.write(f"atarchive concat: rule flux_cal_scans={rule}; {len(spec.payload['in_ms'])} MSs in\n")
            for stem, why in sorted(spec.payload["why_dropped"].items()):
                log.write(f"atarchive concat: dropped {stem}: {why}\n")
        return ChildCall(casa_concat.concat, {
            "in_ms": spec.payload["in_ms"],
            "out_ms": str(ctx.out(spec.outputs[0])),
        })

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        res["dropped"] = ctx.unit.spec.payload["why_dropped"]
        return StepResult([Product("ms_concat", ctx.unit.spec.outputs[0], res)], res)

    def after_success(self, ctx: RunContext, result: StepResult) -> None:
        # Retention: the per-scan averaged MSs are in concat.ms now.
        if not ctx.view.cfg.steps.compress.keep_averaged:
            for ms in ctx.unit.spec.payload["in_ms"]:
                shutil.rmtree(ms, ignore_errors=True)
