"""fix: SCAN_NUMBER increments on each field change and on time gaps > ``max_gap_s``.

Works on a copy of the concatenated MS so every product stays immutable once recorded.
"""

from __future__ import annotations

import shutil

from .. import naming
from ._child import call
from .base import RunContext, SessionView, Step, StepResult, UnitSpec


class Fix(Step):
    name = "fix"
    version = 1

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        return [
            UnitSpec(
                key="",
                params=self.params(view.cfg),
                inputs={"concat": u.fingerprint},
                outputs=[naming.fixed_ms(view.sdir)],
                payload={"in_ms": str(u.spec.outputs[0])},
            )
            for u in up["concat"].values()
        ]

    def run(self, ctx: RunContext) -> StepResult:
        spec = ctx.unit.spec
        final = spec.outputs[0]
        tmp = ctx.out(final)
        shutil.copytree(spec.payload["in_ms"], tmp, symlinks=True)
        res = call(
            "atarchive.casa.scans:fix_scan_numbers", {"ms": str(tmp), "max_gap_s": spec.params["max_gap_s"]}, ctx
        )
        return StepResult([{"kind": "ms_fixed", "path": final, "meta": res}], res)
