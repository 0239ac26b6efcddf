"""Offline CASA: a site config pointing at the casadata wheel, never ~/.casa."""

from __future__ import annotations

import os
import threading
from pathlib import Path

SITE_TEMPLATE = """\
# Written by atarchive: CASA runs offline with the data of the casadata wheel.
import casadata
measurespath = casadata.datapath
datapath = [casadata.datapath]
measures_auto_update = False
data_auto_update = False
nologfile = True
telemetry_enabled = False
crashreporter_enabled = False
"""


def site_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "atarchive" / "casa-site"


def write_site_config(directory: Path | None = None) -> Path:
    """Write (if changed) the CASA site config and return its path."""
    d = Path(directory) if directory else site_dir()
    d.mkdir(parents=True, exist_ok=True)
    p = d / "casasiteconfig.py"
    if not p.exists() or p.read_text() != SITE_TEMPLATE:
        tmp = p.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")  # threads of one process race too
        tmp.write_text(SITE_TEMPLATE)
        tmp.replace(p)
    return p


def child_env(base_env: dict | None = None) -> dict:
    env = dict(os.environ if base_env is None else base_env)
    env["CASASITECONFIG"] = str(write_site_config())
    # a dask nanny sets MALLOC_TRIM_THRESHOLD_=65536 for its worker; CASA and pyuvdata children
    # inheriting it hand memory back to the kernel on nearly every free
    if env.get("MALLOC_TRIM_THRESHOLD_") == "65536":
        env.pop("MALLOC_TRIM_THRESHOLD_")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env
