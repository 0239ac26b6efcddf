"""Entry point of a child process: ``python -m atarchive.casa.child SPEC.json``.

Makes astropy work offline before anything imports pyuvdata, sends CASA's log to the step log,
calls the function and writes {"ok": true, "result": …} or {"ok": false, "kind", "type", "message"}.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import sys
import traceback


def offline_astropy() -> None:
    """No downloads: IERS auto-download off and a non-empty site registry with the ATA site
    (astropy 8 fetches sites.json otherwise, and pyuvdata asks for it)."""
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
        ata = EarthLocation.from_geodetic(-121.4707361 * u.deg, 40.8174306 * u.deg, 1019.222 * u.m)
        ata.info.name = "Allen Telescope Array"
        reg.add_site(["ATA", "Allen Telescope Array", "HCRO", "hat creek"], ata)
        EarthLocation._site_registry = reg
    except Exception:  # noqa: BLE001 - best effort; conversions work without it
        pass


def main(argv: list[str]) -> int:
    with open(argv[1]) as fh:
        spec = json.load(fh)
    out = {"ok": False}
    try:
        offline_astropy()
        os.environ["ATARCHIVE_CASA_LOG"] = spec["log"]
        mod_name, _, fn_name = spec["func"].partition(":")
        mod = importlib.import_module(mod_name)
        res = getattr(mod, fn_name)(**spec["kwargs"])
        out = {"ok": True, "result": res}
    except BaseException as err:  # noqa: BLE001 - report everything to the parent
        from atarchive.errors import PermanentStepError, TemporaryStepError

        if isinstance(err, PermanentStepError):
            kind = "permanent"
        elif isinstance(err, TemporaryStepError) or (
                isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EIO, errno.EACCES, errno.EROFS,
                                                          errno.EDQUOT)):
            kind = "temporary"
        else:
            kind = "error"
        out = {"ok": False, "kind": kind, "type": type(err).__name__, "message": str(err) or type(err).__name__,
               "traceback": traceback.format_exc()}
        traceback.print_exc()
    with open(spec["result"], "w") as fh:
        json.dump(out, fh, default=_jsonable)
    sys.stdout.flush()
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


if __name__ == "__main__":
    sys.exit(main(sys.argv))
