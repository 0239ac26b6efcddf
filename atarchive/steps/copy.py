"""copy: per scan and LO, merge that LO's subband files and convert uvh5 → MS (pyuvdata, child process).

Source files are only read. Antennas with data are renumbered 0..N-1 and the data phased (in
``atarchive.casa.copy``). Memory holds one scan-LO at a time (or one time chunk of it).

With ``steps.compress.one_pass`` (the default; see :func:`one_pass`) copy has no units: compress reads
the uvh5 files itself and writes only the averaged MS.

Scans that concat leaves out (earlier flux-calibrator scans, ``SessionView.dropped``) are not
converted, so not compressed either, unless ``steps.copy.convert_dropped``.
"""

from __future__ import annotations

from .. import naming
from ..casa import copy as casa_copy
from ..config import Config
from ..contracts import StepName, input_key
from ..fingerprint import files_digest
from .base import ChildCall, Product, RunContext, SessionView, Step, StepResult, UnitSpec


def one_pass(cfg: Config) -> bool:
    """Whether compress converts, flags and averages each scan-LO in one pass (no full-resolution MS,
    no copy units): asked for, no full-resolution MS to keep, and a flagger that works in memory
    (tfcrop needs an MS)."""
    c = cfg.steps.compress
    return bool(c.one_pass) and not c.keep_fullres and c.flagger != "tfcrop"


def scan_los(view: SessionView) -> list[tuple[str, dict, str, list[dict]]]:
    """(unit key, scan, LO, its files) of every scan-LO to convert: the scans concat uses (or every
    scan with ``convert_dropped``) that have files in that LO."""
    skip = {} if view.cfg.steps.copy_.convert_dropped else view.dropped
    out = []
    for scan in view.used_scans:
        if scan["stem"] in skip:
            continue
        for lo in view.lo_names:
            files = view.files_by_scan_lo.get((scan["id"], lo))
            if files:
                out.append((f"{scan['stem']}/Lo{lo}", scan, lo, files))
    return out


def scan_lo_payload(scan: dict, lo: str, files: list[dict]) -> dict:
    return {"files": [f["path"] for f in files], "stem": scan["stem"], "lo": lo, "field": scan["field"],
            "scan_id": scan["id"]}


class Copy(Step):
    name = StepName.COPY
    version = 1
    software = "convert"
    retention = ("convert_dropped",)  # which scans, not a product property

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        if one_pass(view.cfg):
            return []  # compress reads the uvh5 files itself
        keep = view.cfg.steps.compress.keep_fullres
        return [
            UnitSpec(
                key=key,
                params=self.params(view.cfg),
                inputs={input_key("files", key): files_digest(files)},
                outputs=[naming.fullres_ms(view.sdir, scan["stem"], lo)],
                payload=scan_lo_payload(scan, lo, files),
                releasable=not keep,
            )
            for key, scan, lo, files in scan_los(view)
        ]

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
