"""Run the seed-style baseline on one session: ``python bench/seed_baseline/run.py --storage S --work W``.

The stages of ``stages.py`` run one after the other, each in its own Python process (like the seed's
scripts), each looping over its units serially: no catalogue, no parallelism, no warm CASA
processes. CASA runs offline with a site config written into the work directory. Field names come
from the simulator's truth file (the seed's user typed them): the source with a calibrator model is
the flux calibrator, ``role_hint`` names the phase calibrator and targets.

Prints (and with ``--out`` writes) JSON: wall time, per-stage seconds, the flagger that ran, fluxes.
Imports nothing from atarchive.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("copy", "compress", "concat", "fix", "calibrate", "image")
SITE = """\
import casadata
measurespath = casadata.datapath
datapath = [casadata.datapath]
measures_auto_update = False
data_auto_update = False
nologfile = True
telemetry_enabled = False
crashreporter_enabled = False
"""


def roles_from_truth(truth: dict) -> dict:
    src = truth["sources"]
    flux = [n for n, s in src.items() if s.get("calibrator")]
    phase = [n for n, s in src.items() if s.get("role_hint") == "phase_cal"]
    targets = [n for n, s in src.items() if s.get("role_hint") == "target"]
    if len(flux) != 1 or len(phase) != 1 or not targets:
        raise SystemExit(f"the seed recipe wants one flux calibrator, one phase calibrator, targets: {flux} {phase}")
    return {"flux_cal": flux[0], "phase_cal": phase[0], "targets": targets}


def run(storage: Path, work: Path, *, flagger: str = "auto", imsize: int = 256) -> dict:
    storage, work = Path(storage).resolve(), Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (truth_file,) = glob.glob(str(storage / "truth" / "*" / "*.json"))
    roles = roles_from_truth(json.loads(Path(truth_file).read_text()))
    site = work / "casasiteconfig.py"
    site.write_text(SITE)
    env = {**os.environ, "CASASITECONFIG": str(site), "PYTHONUNBUFFERED": "1"}
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    out: dict = {"stages_s": {}, "roles": roles}
    t_all = time.perf_counter()
    for stage in ORDER:
        kw = {"work": str(work), "storage": str(storage), "log": str(logs / f"{stage}.casa.log"), **roles,
              "flagger": flagger, "imsize": imsize}
        cwd = work / "cwd" / stage  # CASA drops casa-*.log files into its working directory
        cwd.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(logs / f"{stage}.log", "w") as log:
            r = subprocess.run([sys.executable, str(HERE / "stages.py"), stage, "--args", json.dumps(kw)],
                               cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        out["stages_s"][stage] = round(time.perf_counter() - t0, 1)
        if r.returncode != 0:
            raise SystemExit(f"seed baseline: stage {stage} failed (exit {r.returncode}); see {logs / (stage + '.log')}")
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        out[stage] = json.loads(lines[-1]) if lines else {}
    out["wall_s"] = round(time.perf_counter() - t_all, 1)
    out["flagger"] = out["compress"].get("flagger")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", type=Path, required=True, help="storage root holding one simulated session")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--flagger", default="auto", choices=["auto", "aoflagger", "tfcrop"])
    ap.add_argument("--imsize", type=int, default=256)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    res = run(a.storage, a.work, flagger=a.flagger, imsize=a.imsize)
    text = json.dumps(res, indent=2)
    if a.out:
        a.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
