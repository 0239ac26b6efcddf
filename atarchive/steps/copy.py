"""copy: per scan and LO, merge that LO's subband files and convert uvh5 → MS (pyuvdata, child process).

Source files are only read. Antennas with data are renumbered 0..N-1 and the data phased (in
``atarchive.casa.convert``). Memory holds one scan-LO at a time (or one time chunk of it).

Scans that concat leaves out (earlier flux-calibrator scans, ``SessionView.dropped``) are not
converted, so not compressed either, unless ``steps.copy.convert_dropped``.
"""

from __future__ import annotations

from .. import naming
from ..fingerprint import files_digest
from .base import RunContext, SessionView, Step, StepResult, UnitSpec


class Copy(Step):
    name = "copy"
    version = 1
    software = "convert"

    def params(self, cfg) -> dict:
        p = cfg.steps.copy_.model_dump()
        p.pop("convert_dropped")  # which scans, not a product property
        return p

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
                        inputs={f"files:{key}": files_digest(files)},
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

    def prepare(self, ctx: RunContext) -> tuple[str, dict]:
        spec = ctx.unit.spec
        chunk = ctx.view.cfg.steps.copy_.times_per_chunk or None
        return "atarchive.casa.convert:uvh5_to_ms", {
            "files": spec.payload["files"],
            "out_ms": str(ctx.out(spec.outputs[0])),
            "times_per_chunk": chunk,
        }

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        return StepResult([{"kind": "ms_fullres", "path": ctx.unit.spec.outputs[0], "meta": res}], res)
