"""sources: PyBDSF source finding on every final target image, one unit per image unit.

Its input is the image unit's fingerprint, so it runs again only when its image, its settings
(``[steps.sources]``) or the reference catalogue it checks against (``[qa]``: the file's content, the
spectral index, the match radius) change. It reads the primary-beam corrected FITS where the image
step made one (``meta.pbcor_fits``), else the restored one (``meta.fits``), and records which.
The source list is a FITS table beside the image directory (:func:`naming.sources_catalogue`); its
rows and the reference check go to the catalogue (``sources`` and ``source_checks`` tables).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .. import naming
from ..casa import sources as casa_sources
from ..contracts import StepName, input_key
from ..errors import PermanentStepError
from .base import ChildCall, Product, RunContext, SessionView, Step, StepResult, UnitSpec


def file_digest(path: Path) -> str:
    """sha1 of a file's content (the reference catalogue is part of the fingerprint by content)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def image_fits(product: dict) -> tuple[str, bool]:
    """(FITS path, primary-beam corrected?) of an image product row: ``pbcor_fits`` where the image
    step made one, else ``fits``; the meta names files as written in the temporary directory, so the
    file is looked up by name in the product's installed directory."""
    meta = product["meta"]
    name = meta.get("pbcor_fits") or meta.get("fits")
    if not name:
        raise PermanentStepError(f"image {product['unit']} has no FITS file")
    return os.path.join(product["path"], os.path.basename(name)), bool(meta.get("pbcor_fits"))


class Sources(Step):
    name = StepName.SOURCES
    casa_tools = False
    batchable = True
    version = 1
    software = "bdsf"

    def params(self, cfg) -> dict:
        p = super().params(cfg)
        qa = cfg.qa
        if qa.reference_catalogue is not None:
            ref = Path(qa.reference_catalogue)
            p["reference"] = {"sha1": file_digest(ref) if ref.is_file() else "missing",
                              "spectral_index": qa.reference_spectral_index,
                              "match_radius_arcsec": qa.match_radius_arcsec}
        return p

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        base = self.params(view.cfg)
        out = []
        for key, u in sorted(up.get(StepName.IMAGE, {}).items()):
            if u.spec.params.get("kind") != "target":
                continue
            pl = u.spec.payload
            out.append(UnitSpec(
                key=key, params=base, inputs={input_key(StepName.IMAGE, key): u.fingerprint},
                outputs=[naming.sources_catalogue(u.spec.outputs[0])],
                payload={"field": pl["field"], "lo": pl["lo"], "role": pl["role"]}))
        return out

    def prepare(self, ctx: RunContext) -> ChildCall:
        spec = ctx.unit.spec
        img = next((p for p in ctx.products.get(StepName.IMAGE, []) if p["unit"] == spec.key and p["kind"] == "image"),
                   None)
        if img is None:
            raise PermanentStepError(f"no image product for {spec.key}")
        fits, pbcor = image_fits(img)
        qa = ctx.view.cfg.qa
        ref = None
        if qa.reference_catalogue is not None:
            ref = {"path": str(qa.reference_catalogue), "spectral_index": qa.reference_spectral_index,
                   "match_radius_arcsec": qa.match_radius_arcsec}
        return ChildCall(casa_sources.find_sources, {
            "fits": fits, "pbcor": pbcor, "out_fits": str(ctx.out(spec.outputs[0])), "workdir": str(ctx.workdir),
            "params": self.settings(ctx.view.cfg).model_dump(), "reference": ref})

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        pl = ctx.unit.spec.payload
        meta = {k: v for k, v in res.items() if k != "sources"}
        cat = Product("sources", ctx.unit.spec.outputs[0], meta, field=pl["field"], lo=pl["lo"], role=pl["role"])
        return StepResult([cat], {**res, "field": pl["field"], "lo": pl["lo"], "image": ctx.unit.spec.key})

    def record(self, cat, session_id: int, run_id: int, outcome) -> None:
        res = outcome.result
        cat.replace_sources(session_id, run_id, field=res["field"], lo=res["lo"], image=res["fits"],
                            pbcor=res["pbcor"], rows=res.get("sources", []), check=res.get("reference"))
