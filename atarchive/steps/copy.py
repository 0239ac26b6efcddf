"""copy: per scan and LO, merge that LO's subband files and convert uvh5 → MS (pyuvdata, child process).

Source files are only read. Antennas with data are renumbered 0..N-1 and the data phased (in
``atarchive.casa.copy``). Memory holds one scan-LO at a time (or one time chunk of it).

Scans that concat leaves out (earlier flux-calibrator scans, ``SessionView.dropped``) are not
converted, so not compressed either, unless ``steps.copy.convert_dropped``.
"""

from __future__ import annotations

from .. import naming
from ..casa import copy as casa_copy
from ..contracts import StepName, input_key
from ..fingerprint import files_digest
from .base import ChildCall, Product, RunContext, SessionView, Step, StepResult, UnitSpec


class Copy(Step):
    name = StepName.COPY
    version = 1
    software = "convert"
    retention = ("convert_dropped",)  # which scans, not a product property

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        keep = view.cfg.steps.compress.keep_fullres
        skip = {} if view.cfg.steps.copy_.convert_dropped else view.dropped
        out = []
        for scan in view.used_scans:
            if scan["stem"] in skip:
                continue
            for lo in view.lo_names:
                files = view.files_by_scan_lo.get((scan["id"], lo))
                if not files:
                    continue
                key = f"{scan['stem']}/Lo{lo}"
                out.append(
                    UnitSpec(
                        key=key,
                        params=self.params(view.cfg),
                        inputs={input_key("files", key): files_digest(files)},
                        outputs=[naming.fullres_ms(view.sdir, scan["stem"], lo)],
                        payload={
                            "files": [f["path"] for f in files],
                            "stem": scan["stem"],
                            "lo": lo,
                            "field": scan["field"],
                            "scan_id": scan["id"],
                        },
                        releasable=not keep,
                    )
                )
        return out

    batchable = True

    def prepare(self, ctx: RunContext) -> ChildCall:
        spec = ctx.unit.spec
        return ChildCall(casa_copy.uvh5_to_ms, {
            "files": spec.payload["files"],
            "out_ms": str(ctx.out(spec.outputs[0])),
            "times_per_chunk": self.settings(ctx.view.cfg).times_per_chunk or None,
        })

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        return StepResult([Product("ms_fullres", ctx.unit.spec.outputs[0], res)], res)
