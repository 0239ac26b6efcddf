"""fix: SCAN_NUMBER increments on each field change and on time gaps > ``max_gap_s``.

Works on a copy of the concatenated MS so every product stays immutable once recorded.
"""

from __future__ import annotations

import shutil

from .. import naming
from ..casa import fix as casa_fix
from ..contracts import StepName, input_key
from .base import ChildCall, Product, RunContext, SessionView, Step, StepResult, UnitSpec


class Fix(Step):
    name = StepName.FIX
    version = 1

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        return [
            UnitSpec(
                key="",
                params=self.params(view.cfg),
                inputs={input_key(StepName.CONCAT): u.fingerprint},
                outputs=[naming.fixed_ms(view.sdir)],
                payload={"in_ms": str(u.spec.outputs[0])},
            )
            for u in up[StepName.CONCAT].values()
        ]

    def prepare(self, ctx: RunContext) -> ChildCall:
        spec = ctx.unit.spec
        return ChildCall(casa_fix.fix_scan_numbers, {
            "ms": str(ctx.out(spec.outputs[0])), "src": spec.payload["in_ms"],
            "max_gap_s": self.settings(ctx.view.cfg).max_gap_s})

    def after_success(self, ctx: RunContext, result: StepResult) -> None:
        # Flag backups that calibrate kept of an older fixed MS do not belong to this one.
        stale = naming.flag_backups(ctx.unit.spec.outputs[0])
        if stale.exists():
            shutil.rmtree(stale, ignore_errors=True)

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        return StepResult([Product("ms_fixed", ctx.unit.spec.outputs[0], res)], res)
