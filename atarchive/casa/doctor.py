"""`atarchive doctor`: versions and whether CASA starts offline (in a child process)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ..errors import StepError
from ..fingerprint import package_version


def probe() -> dict:
    """Child side: start CASA offline and convert an epoch with the measures data."""
    ct, tasks = __import__("atarchive.casa._casa", fromlist=["casa"]).casa()
    me = ct.measures()
    ep = me.epoch("utc", "2024-12-12T17:29:25")
    tai = me.measure(ep, "tai")
    import casadata

    return {"casatools": ct.version_string(), "tai_minus_utc_s": (tai["m0"]["value"] - ep["m0"]["value"]) * 86400,
            "casadata_path": casadata.datapath}


def wsclean_version() -> str | None:
    """"<path> <version>" of the wsclean program on PATH (its --version banner), or None."""
    import shutil
    import subprocess

    path = shutil.which("wsclean")
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{path} (does not run: {err})"
    line = next((ln.strip() for ln in out.splitlines() if ln.strip().startswith("WSClean version")), "version unknown")
    return f"{path} ({line.removeprefix('WSClean version ').strip()})"


def doctor() -> dict:
    from ..execution.children import run_in_child
    from .site import write_site_config

    rep = {name: package_version(name) for name in
           ("casatools", "casatasks", "casadata", "pyuvdata", "python-casacore", "aoflagger", "astropy")}
    rep["python"] = sys.version.split()[0]
    from .selfcal import breizorro_path

    rep["breizorro"] = breizorro_path() or "absent (self-calibration masks fall back to auto-multithresh; `make venv`)"
    rep["wsclean"] = wsclean_version() or "absent (steps.image.imager = \"wsclean\" needs it: apt-get install wsclean)"
    rep["site_config"] = str(write_site_config())
    with tempfile.TemporaryDirectory() as tmp:
        try:
            res = run_in_child("atarchive.casa.doctor:probe", {}, workdir=Path(tmp), log_path=Path(tmp) / "log",
                               timeout=300)
            rep["casa_ok"] = abs(res["tai_minus_utc_s"] - 37.0) < 1.0
            rep["casa_data"] = res["casadata_path"]
            if not rep["casa_ok"]:
                rep["fix"] = "measures data look wrong: reinstall casadata (pip install -U casadata)"
        except StepError as err:
            rep["casa_ok"] = False
            rep["casa_error"] = str(err).splitlines()[0]
            rep["fix"] = ("CASA did not start offline: run `make venv` (installs casatools/casatasks 6.7.0.31, "
                          "casadata, six) and check that nothing sets CASASITECONFIG to another file")
    return rep
