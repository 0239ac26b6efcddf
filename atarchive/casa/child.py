"""Entry point of a child process: ``python -m atarchive.casa.child SPEC.json``.

Sends CASA's log to the step log, calls the function and writes {"ok": true, "result": …} or
{"ok": false, "kind", "type", "message"}.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback


_OFFLINE = False


def offline_astropy() -> None:
    """No downloads: IERS auto-download off and a non-empty site registry with the ATA site
    (astropy 8 fetches sites.json otherwise, and pyuvdata asks for it). Called by the child functions
    that use astropy or pyuvdata, before they import pyuvdata; CASA-only children skip astropy's
    import (~0.7 s a process)."""
    global _OFFLINE
    if _OFFLINE:
        return
    _OFFLINE = True
    from astropy.utils import iers
    from astropy.utils.data import conf as data_conf

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    data_conf.allow_internet = False
    try:
        import astropy.units as u
        from astropy.coordinates import EarthLocation
        from astropy.coordinates.sites import SiteRegistry

        reg = SiteRegistry()
        from atarchive.telescope import ATA_HEIGHT_M, ATA_LAT_DEG, ATA_LON_DEG

        ata = EarthLocation.from_geodetic(ATA_LON_DEG * u.deg, ATA_LAT_DEG * u.deg, ATA_HEIGHT_M * u.m)
        ata.info.name = "Allen Telescope Array"
        reg.add_site(["ATA", "Allen Telescope Array", "HCRO", "hat creek"], ata)
        EarthLocation._site_registry = reg
    except Exception:  # noqa: BLE001 - best effort; conversions work without it
        pass


def cache_numba() -> None:
    """pyuvdata's baseline-number kernels are numba functions compiled in every process (about 3 s
    per copy child here); turn on numba's on-disk cache for them so later children load them."""
    try:
        from pyuvdata.utils import bls_numba
    except Exception:  # noqa: BLE001 - older pyuvdata: nothing to cache
        return
    for name in dir(bls_numba):
        fn = getattr(bls_numba, name)
        if hasattr(fn, "enable_caching"):
            try:
                fn.enable_caching()
            except Exception:  # noqa: BLE001 - cache dir not writable: compile as before
                pass


def _call(c: dict, waited: float = 0.0) -> dict:
    """``waited``: seconds the call waited for CASA to finish loading in a spare child; counted as
    time inside the call, as a child started for the call counts its imports."""
    from atarchive.errors import PermanentStepError, TemporaryStepError, is_temporary

    os.environ["ATARCHIVE_CASA_LOG"] = c["log"]
    t0 = time.perf_counter()
    try:
        mod_name, _, fn_name = c["func"].partition(":")
        mod = importlib.import_module(mod_name)
        result = getattr(mod, fn_name)(**c["kwargs"])
        return {"ok": True, "result": result, "seconds": time.perf_counter() - t0 + waited}
    except BaseException as err:  # noqa: BLE001 - report everything to the parent
        if isinstance(err, PermanentStepError):
            kind = "permanent"
        elif isinstance(err, TemporaryStepError) or (isinstance(err, OSError) and is_temporary(err)):
            kind = "temporary"
        else:
            kind = "error"
        traceback.print_exc()
        return {"ok": False, "kind": kind, "type": type(err).__name__, "message": str(err) or type(err).__name__,
                "traceback": traceback.format_exc()}


def main(argv: list[str], waited: float = 0.0) -> int:
    """Run the calls of SPEC in order; each call's stdout/stderr and CASA log go to its own log file."""
    with open(argv[1]) as fh:
        spec = json.load(fh)
    for i, c in enumerate(spec["calls"]):
        with open(c["log"], "a") as log:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        out = _call(c, waited if i == 0 else 0.0)
        sys.stdout.flush()
        sys.stderr.flush()
        with open(c["result"], "w") as fh:
            json.dump(out, fh, default=_jsonable)
    return 0


def _jsonable(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


def wait_warm() -> tuple[list[str], float]:
    """A spare child: load CASA now, then wait for work. The parent writes one line to stdin,
    {"spec": SPEC.json, "cwd": work dir, "t": when}; EOF without a line means "not needed": exit.
    Returns main's argv and how long the call waited for CASA to load."""
    from atarchive.casa._casa import casa

    casa()
    ready = time.time()
    line = sys.stdin.readline()
    if not line.strip():
        os._exit(0)
    job = json.loads(line)
    os.chdir(job["cwd"])
    return [sys.argv[0], job["spec"]], max(0.0, ready - float(job.get("t", ready)))


if __name__ == "__main__":
    rc = main(*wait_warm()) if sys.argv[1:] == ["--warm"] else main(sys.argv)
    # Every result file is written and closed: leave without the interpreter's teardown, which takes
    # ~0.4 s once casatools is loaded (its atexit handlers), per child process.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
