"""Parse ATA storage paths (pure functions, no I/O).

Nested:    <root>/projects/<project>/<session>/<stem>/Lo<L>.C<cccc>/<stem>.uvh5
Flattened: <root>/projects/<project>/<session>/[<stem>/]ata.Lo<L>.C<cccc>.<stem>.uvh5
Older sessions sit directly in ``projects/pNNN/``: the project directory is then the session.

stem = uvh5_<MJD>_<secondOfDay>_<blockIndex>_<SOURCE>_<seq>. SOURCE may contain ``_``, ``+``,
spaces or quotes, so the stem is parsed from both ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

STEM_RE = re.compile(r"^uvh5_(?P<mjd>\d+)_(?P<sec>\d+)_(?P<block>\d+)_(?P<source>.+)_(?P<seq>\d{4})$")
LO_DIR_RE = re.compile(r"^Lo(?P<lo>[A-Za-z0-9]+)\.C(?P<sub>\d+)$")
FLAT_RE = re.compile(r"^ata\.Lo(?P<lo>[A-Za-z0-9]+)\.C(?P<sub>\d+)\.(?P<stem>uvh5_.+)\.uvh5$")


@dataclass(frozen=True)
class Stem:
    stem: str
    mjd: int
    sec_of_day: int
    block: int
    source: str
    seq: int


@dataclass(frozen=True)
class DataFile:
    """What a uvh5 path says about itself."""

    path: str
    project: str
    session: str  # session directory name ('' when the project directory is the session)
    session_path: str
    stem: Stem
    lo: str
    subband: int
    layout: str  # nested | flat


class LayoutError(ValueError):
    pass


def parse_stem(stem: str) -> Stem:
    m = STEM_RE.match(stem)
    if not m:
        raise LayoutError(f"not an ATA scan name (uvh5_<MJD>_<sec>_<block>_<SOURCE>_<seq>): {stem!r}")
    return Stem(stem, int(m["mjd"]), int(m["sec"]), int(m["block"]), m["source"], int(m["seq"]))


def session_of(projects_dir: PurePath, path: PurePath) -> tuple[str, str, PurePath] | None:
    """(project, session name, session path) for anything under ``projects/<project>/<session>/``."""
    try:
        rel = path.relative_to(projects_dir)
    except ValueError:
        return None
    parts = rel.parts
    if len(parts) < 2:
        return None
    project = parts[0]
    second = parts[1]
    # Old layout: scan directories / files directly in the project directory.
    if STEM_RE.match(second) or FLAT_RE.match(second) or (len(parts) == 2 and second.endswith(".uvh5")):
        return project, "", projects_dir / project
    return project, second, projects_dir / project / second


def parse_data_path(projects_dir: PurePath, path: PurePath) -> DataFile:
    """Interpret a ``.uvh5`` path found under ``projects_dir``; raise LayoutError if it fits no layout."""
    where = session_of(projects_dir, path)
    if where is None:
        raise LayoutError(f"file is not inside projects/<project>/<session>/: {path}")
    project, session, session_path = where
    name = path.name
    flat = FLAT_RE.match(name)
    if flat:
        stem = parse_stem(flat["stem"])
        parent = path.parent
        if parent != session_path and parent.name != stem.stem:
            raise LayoutError(f"flattened file in an unexpected directory: {path}")
        return DataFile(str(path), project, session, str(session_path), stem, flat["lo"], int(flat["sub"]), "flat")
    lo_dir = LO_DIR_RE.match(path.parent.name)
    if lo_dir and name == f"{path.parent.parent.name}.uvh5" and path.parent.parent.parent == session_path:
        stem = parse_stem(path.parent.parent.name)
        return DataFile(str(path), project, session, str(session_path), stem, lo_dir["lo"], int(lo_dir["sub"]), "nested")
    raise LayoutError(
        "unknown layout (expected <stem>/Lo<L>.C<cccc>/<stem>.uvh5 or ata.Lo<L>.C<cccc>.<stem>.uvh5): "
        f"{path.relative_to(session_path) if session_path in path.parents else path}"
    )
