"""The one import point of casatools/casatasks inside a child: logs go to the step's log file."""

from __future__ import annotations

import os


def casa():
    """(casatools, casatasks), with CASA's log sent to the step log."""
    import casatasks
    import casatools

    path = os.environ.get("ATARCHIVE_CASA_LOG")
    if path:
        casatasks.casalog.setlogfile(path)
    return casatools, casatasks


def table(path: str, *, readonly: bool = True):
    ct, _ = casa()
    tb = ct.table()
    tb.open(path, nomodify=readonly)
    return tb
