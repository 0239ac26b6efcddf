"""calibrate: first-generation calibration of the fixed MS (seed recipe), one chain per LO group.

Roles come from :mod:`atarchive.roles` (or the session override); the reference antenna is chosen
from the data inside the CASA child (by numeric ID) unless the override names one. LOs whose
centres are further apart than ``separate_lo_threshold_hz`` are calibrated separately.
"""

from __future__ import annotations

from .. import naming
from ..casa import calibrate as casa_calibrate
from ..contracts import StepName, input_key
from ..errors import PermanentStepError
from .base import ChildCall, Product, RunContext, SessionView, Step, StepResult, UnitSpec


def lo_groups(los: list[dict], threshold_hz: float) -> list[list[str]]:
    """LO names grouped for calibration: all together, or each alone when any two are far apart."""
    if not los:
        return []
    centres = {lo["name"]: 0.5 * (lo["freq_start_hz"] + lo["freq_end_hz"]) for lo in los}
    names = sorted(centres, key=centres.get)
    spread = centres[names[-1]] - centres[names[0]]
    if spread > threshold_hz:
        return [[n] for n in names]
    return [names]


def role_params(view: SessionView) -> dict:
    r = view.roles
    return {
        "flux_cals": [{"name": n, "standard": r.fields[n].standard} for n in r.names("flux_cal")],
        "phase_cals": r.names("phase_cal"),
        "targets": [{"name": n, "phase_cal": r.fields[n].phase_cal} for n in r.names("target")],
    }


def flux_cal_raw(view: SessionView) -> dict[str, list[str]]:
    """Flux calibrator → the uvh5 files of its scan that concat keeps (its last), one LO: read only if
    calibration fails, to measure why at the native channel width."""
    out = {}
    for fc in view.roles.names("flux_cal"):
        scans = [s for s in view.used_scans if s["field"] == fc and s["stem"] not in view.dropped]
        if scans:
            by_lo = {lo: fs for (sid, lo), fs in view.files_by_scan_lo.items() if sid == scans[-1]["id"]}
            if by_lo:
                out[fc] = [f["path"] for f in by_lo[min(by_lo)]]
    return out


class Calibrate(Step):
    name = StepName.CALIBRATE
    casa_tools = True
    version = 3  # 2: restores the fixed MS's flags before calibrating again; 3: flags the splits, not the MS

    def units(self, view: SessionView, up) -> list[UnitSpec]:
        ov = view.override
        c = view.cfg.steps.calibrate
        params = {
            **self.params(view.cfg),
            "roles": role_params(view),
            "groups": lo_groups(view.los, c.separate_lo_threshold_hz),
            "refant": ov.refant if ov else None,
            "exclude_antennas": ov.exclude_antennas if ov else [],
        }
        return [
            UnitSpec(
                key="",
                params=params,
                inputs={input_key(StepName.FIX): u.fingerprint},
                outputs=[naming.cal_dir(view.sdir)],
                payload={
                    "vis": str(u.spec.outputs[0]),
                    "flux_cal_raw": flux_cal_raw(view),
                    "lo_ranges": {lo["name"]: [lo["freq_start_hz"], lo["freq_end_hz"]] for lo in view.los},
                },
            )
            for u in up[StepName.FIX].values()
        ]

    def prepare(self, ctx: RunContext) -> ChildCall:
        spec = ctx.unit.spec
        p = spec.params
        if not p["roles"]["flux_cals"]:
            raise PermanentStepError(
                "no flux calibrator identified; name one in the config: "
                f'[sessions."{ctx.view.key}"] flux_cals = ["..."]'
            )
        final = spec.outputs[0]
        c = self.settings(ctx.view.cfg)
        return ChildCall(casa_calibrate.run, {
            "vis": spec.payload["vis"],
            "outdir": str(ctx.out(final)),
            "final_dir": str(final),
            "roles": p["roles"],
            "groups": p["groups"],
            "lo_ranges": spec.payload["lo_ranges"],
            "refant": p["refant"],
            "exclude_antennas": p["exclude_antennas"],
            "params": c.model_dump(include={"solint_short", "minsnr", "rflag"}),
            # to measure why a calibrator gives no solutions (not parameters of the product)
            "diagnose": {"raw": spec.payload.get("flux_cal_raw", {}), "chanbin": ctx.view.cfg.steps.compress.chanbin},
            "flag_tag": spec.inputs[input_key(StepName.FIX)][:12],
            # fields are flagged in parallel after calibration; not a parameter of the product
            "flag_workers": ctx.view.cfg.execution.n_workers(),
        })

    def collect(self, ctx: RunContext, res: dict) -> StepResult:
        final = ctx.unit.spec.outputs[0]
        products = [Product("caltables", final, {"refant": res.get("refant")})]
        for sp in res.get("splits", []):
            products.append(Product("ms_1gc", sp["path"], sp))
        return StepResult(products, res)
