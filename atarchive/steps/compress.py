"""compress: flag at full resolution (aoflagger, a dependency; CASA tfcrop if it cannot run — which
one ran is recorded), then average as mstransform does.

By default (``steps.compress.one_pass``, see ``copy.one_pass``) one unit per scan-LO reads its uvh5
files, flags each chunk of integrations in memory and averages it (``casa/onepass.py``): no
full-resolution MS is written and copy has no units. Otherwise (``keep_fullres``, flagger tfcrop)
it flags copy's full-resolution MS and averages it with mstransform; the full-resolution copy is
removed afterwards unless ``keep_fullres``."""

from __future__ import annotations

import shutil

from .. import naming
from ..casa import compress as casa_compress
from ..casa import onepass as casa_onepass
from ..config import Config
from ..contracts import StepName, input_key
from ..fingerprint import files_digest
from .base import ChildCall, Product, RunContext, SessionView, Step, StepResult, UnitSpec
from .copy import one_pass, scan_lo_payload, scan_los


class Compress(Step):
    name = StepName.COMPRESS
    casa_tools = True
    # 2: aoflagger is a dependency, so flagger "auto" flags with it (was CASA tfcrop); one pass from the
    # uvh5 files by default (its units take the files and copy's chunking as inputs)
    version = 2
    retention = ("keep_fullres", "keep_averaged")

    def uses_casa_tools(self, cfg: Config) -> bool:
        return not one_pass(cfg)  # one pass: python-casacore (and CASA, if at all, in a child of its own)

    def params(self, cfg: Config) -> dict:
        """The settings as fingerprinted: in one pass, also copy's chunking (AOFlagger sees one chunk of
        integrations at a time); two steps fingerprint as before."""
        p = {k: v for k, v in super().params(cfg).items() if k != "one_pass"}
        if one_pass(cfg):
            p.update(one_pass=True, times_per_chunk=cfg.steps.copy_.times_per_chunk)
        return p

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        if one_pass(view.cfg):
            return [
                UnitSpec(
                    key=key,
                    params=self.params(view.cfg),
                    inputs={input_key("files", key): files_digest(files)},
                    outputs=[naming.averaged_ms(view.sdir, scan["stem"], lo)],
                    payload={**scan_lo_payload(scan, lo, files),
                             "scratch_ms": str(naming.fullres_ms(view.sdir, scan["stem"], lo))},
                    releasable=not view.cfg.steps.compress.keep_averaged,
                )
                for key, scan, lo, files in scan_los(view)
            ]
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
        common = {"out_ms": str(ctx.out(spec.outputs[0])), "timebin_s": c.timebin_s, "chanbin": c.chanbin,
                  "flagger": c.flagger}
        if "in_ms" not in spec.payload:  # one pass from the uvh5 files
            return ChildCall(casa_onepass.uvh5_to_averaged_ms, {
                "files": spec.payload["files"], **common,
                "times_per_chunk": ctx.view.cfg.steps.copy_.times_per_chunk,
                "scratch_ms": spec.payload["scratch_ms"],
            })
        return ChildCall(casa_compress.compress, {"in_ms": spec.payload["in_ms"], **common})

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        meta = {k: v for k, v in res.items() if k != "channel_flags"}  # per-channel flags: in the run's result only
        return StepResult([Product("ms_averaged", ctx.unit.spec.outputs[0], meta)], res)

    def after_success(self, ctx: RunContext, result: StepResult) -> None:
        if "in_ms" in ctx.unit.spec.payload and not ctx.view.cfg.steps.compress.keep_fullres:
            shutil.rmtree(ctx.unit.spec.payload["in_ms"], ignore_errors=True)
