"""Every path atarchive writes is computed here, and nowhere else.

Work tree of one session (names made safe for CASA and shells; session names contain colons):

    <work_root>/<project>/<session>/
        ms/fullres/<stem>_Lo<L>.ms     copy
        ms/avg/<stem>_Lo<L>.ms         compress
        ms/concat.ms                   concat
        ms/fixed.ms                    fix
        cal/                           calibrate: tables per LO group, split MSs (<target>_noauto_1GC.ms)
        images/<field>/Lo<L>/          image: CASA images + FITS
        images/<field>/Lo<L>.srl.fits  sources: PyBDSF source list of that image (FITS table)
        logs/<step>[_<unit>].log
        tmp/                           CASA working directories
    <work_root>/reports/<session>/index.html
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")
TMP_MARK = ".tmp-"


def safe(name: str) -> str:
    """A file-name-safe form of ``name``; a short hash keeps distinct names distinct."""
    cleaned = _SAFE.sub("_", name).strip("._") or "unnamed"
    if cleaned != name:
        cleaned = f"{cleaned}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"
    return cleaned


def session_dir(work_root: Path, project: str, session: str) -> Path:
    return Path(work_root) / safe(project) / safe(session or project)


def fullres_ms(sdir: Path, stem: str, lo: str) -> Path:
    return sdir / "ms" / "fullres" / f"{safe(stem)}_Lo{safe(lo)}.ms"


def averaged_ms(sdir: Path, stem: str, lo: str) -> Path:
    return sdir / "ms" / "avg" / f"{safe(stem)}_Lo{safe(lo)}.ms"


def concat_ms(sdir: Path) -> Path:
    return sdir / "ms" / "concat.ms"


def fixed_ms(sdir: Path) -> Path:
    return sdir / "ms" / "fixed.ms"


def flag_backups(ms: Path) -> Path:
    """Where CASA's flagmanager keeps saved flag versions of ``ms``."""
    return Path(str(ms) + ".flagversions")


def cal_dir(sdir: Path) -> Path:
    return sdir / "cal"


def cal_group_dir(caldir: Path, group: str) -> Path:
    return caldir / f"group_{safe(group)}"


def split_dir(caldir: str | Path) -> str:
    """Where calibrate puts the calibrated split MS of every field, inside its caltables directory."""
    return str(Path(caldir) / "split")


def split_name(field: str) -> str:
    return f"{safe(field)}_noauto_1GC.ms"


def image_dir(sdir: Path, field: str, lo: str) -> Path:
    return sdir / "images" / safe(field) / f"Lo{safe(lo)}"


def selfcal_dir(sdir: Path, field: str, lo: str) -> Path:
    """Self-calibration of one target and LO: its data after the rounds kept, mask and 1GC image."""
    return sdir / "selfcal" / safe(field) / f"Lo{safe(lo)}"
def sources_catalogue(image_dir: Path) -> Path:
    """The source list (FITS table) of the image in ``image_dir``, beside that directory."""
    return Path(image_dir).with_name(Path(image_dir).name + ".srl.fits")


def site_dir(work_root: Path) -> Path:
    """Where ``atarchive site`` writes the archive's pages when no ``--out`` is given (the daemon)."""
    return Path(work_root) / "site"


def log_path(sdir: Path, step: str, unit: str = "") -> Path:
    return sdir / "logs" / (f"{step}_{safe(unit)}.log" if unit else f"{step}.log")


def casa_workdir(sdir: Path, step: str, unit: str = "") -> Path:
    return sdir / "tmp" / (f"{step}_{safe(unit)}" if unit else step)


def flag_log(workdir: str | Path, i: int) -> str:
    """CASA log of the i-th child that flags calibrated splits, inside the calibrate child's work dir."""
    return str(Path(workdir) / f"flag-{i}" / "flag.log")


def tmp_path(final: Path, token: str) -> Path:
    """Where a product is written before it is renamed to ``final``."""
    return final.with_name(final.name + TMP_MARK + token)


def tmp_leftovers(final: Path) -> list[Path]:
    """Temporary siblings of ``final`` left by interrupted runs."""
    if not final.parent.is_dir():
        return []
    return sorted(final.parent.glob(final.name + TMP_MARK + "*"))


def report_dir(work_root: Path, project: str, session: str) -> Path:
    return Path(work_root) / "reports" / safe(project) / safe(session or project)


def daemon_lock(catalogue: Path) -> Path:
    return Path(catalogue).with_name(Path(catalogue).name + ".daemon.lock")


def casa_site_dir(work_root: Path) -> Path:
    return Path(work_root) / ".casa-site"
