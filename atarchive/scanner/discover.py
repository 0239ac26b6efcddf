"""Walk storage roots and bring the catalogue up to date (the indexer behind ``atarchive scan``).

Header-only and idempotent: a file whose size and mtime are unchanged is not opened again. A file
is *ready* once its size and mtime have been stable for ``scan.stable_seconds``; a scan is complete
when every LO/subband the session has is present and ready in it; a session is ready when all its
scans are complete, and failed (with a message) when any of its files or directories is broken.
Source files are only ever opened read-only.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from ..catalogue import Catalogue
from ..config import Config
from ..errors import IngestError
from .layout import FLAT_RE, STEM_RE, LayoutError, parse_data_path, session_of
from .uvh5 import read_header


PARALLEL_HEADERS_FROM = 200  # a first scan with at least this many headers reads them in parallel
HEADER_CHUNK = 32  # headers per task of the parallel read
MAIN_READS_TOO = True  # while the workers start, this process reads the chunks they have not begun


def _indexed_before_centres(old: dict | None) -> bool:
    """A ready file indexed before the field came from ``phase_center_id_array`` (its header record
    lacks ``phase_centre_ids``): read its header once more, it may have been given the wrong field."""
    return bool(old) and old["status"] == "ready" and old["kind"] == "uvh5" and \
        "phase_centre_ids" not in (old["header"] or "")


def _read_or_error(path: str):
    try:
        return read_header(path)
    except IngestError as err:
        return err


def _read_chunk(paths: list[str]) -> list:
    return [_read_or_error(p) for p in paths]


@dataclass
class ScanReport:
    files_seen: int = 0
    headers_read: int = 0
    new_files: int = 0
    changed_files: int = 0
    growing_files: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    sessions_touched: set[str] = field(default_factory=set)
    sessions_new: set[str] = field(default_factory=set)
    elapsed_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    empty_sessions: list[str] = field(default_factory=list)  # session directories holding no uvh5 file

    def as_dict(self) -> dict:
        return {
            "files_seen": self.files_seen,
            "headers_read": self.headers_read,
            "new_files": self.new_files,
            "changed_files": self.changed_files,
            "growing_files": self.growing_files,
            "errors": [{"path": p, "error": e} for p, e in self.errors],
            "sessions_touched": sorted(self.sessions_touched),
            "sessions_new": sorted(self.sessions_new),
            "elapsed_s": round(self.elapsed_s, 3),
            "warnings": self.warnings,
            "empty_sessions": self.empty_sessions,
        }


@dataclass
class _Found:
    path: Path
    size: int | None = None
    mtime: float | None = None
    error: str | None = None
    kind: str = "uvh5"


def projects_dir(root: Path) -> Path:
    return root if root.name == "projects" else root / "projects"


def walk(root: Path, report: ScanReport) -> list[_Found]:
    """Every ``*.uvh5`` under ``root/projects`` plus unreadable directories (as errors)."""
    top = projects_dir(root)
    out: list[_Found] = []
    if not root.is_dir():
        report.warnings.append(f"storage root does not exist or is not a directory: {root}")
        return out
    if not top.is_dir():
        report.warnings.append(f"storage root has no projects/ directory: {root}")
        return out
    stack = [top]
    session_dirs: dict[Path, int] = {}  # projects/<project>/<session>/ → uvh5 files found under it
    while stack:
        d = stack.pop()
        rel = d.relative_to(top).parts
        if len(rel) == 2 and not (STEM_RE.match(rel[1]) or FLAT_RE.match(rel[1])):
            session_dirs.setdefault(d, 0)
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError as err:
            out.append(_Found(d, error=f"unreadable directory: {err.strerror}", kind="dir"))
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.name.endswith(".uvh5") and e.is_file():
                    st = e.stat()
                    out.append(_Found(Path(e.path), st.st_size, st.st_mtime))
                    rel = Path(e.path).relative_to(top).parts
                    if len(rel) > 2:
                        session_dirs[top / rel[0] / rel[1]] = session_dirs.get(top / rel[0] / rel[1], 0) + 1
            except OSError as err:
                out.append(_Found(Path(e.path), error=f"cannot stat: {err.strerror}"))
    for d, n in sorted(session_dirs.items()):
        if n == 0 and not any(f.error and f.path.is_relative_to(d) for f in out):
            report.empty_sessions.append(str(d))
            report.warnings.append(f"session directory has no uvh5 files: {d}")
    return out


class Indexer:
    def __init__(self, cat: Catalogue, cfg: Config, *, now: float | None = None):
        self.cat = cat
        self.cfg = cfg
        self.now = now

    def scan(self, roots: list[Path] | None = None) -> ScanReport:
        t0 = time.perf_counter()
        report = ScanReport()
        now = self.now if self.now is not None else time.time()
        roots = roots if roots is not None else self.cfg.storage_roots
        known = self.cat.files_by_path()
        by_session: dict[str, list[tuple[_Found, object]]] = defaultdict(list)
        session_info: dict[str, tuple[str, str, str, str]] = {}
        seen_paths: set[str] = set()
        for root in roots:
            root = Path(root)
            top = projects_dir(root)
            for found in walk(root, report):
                report.files_seen += found.kind == "uvh5"
                where = session_of(PurePath(top), PurePath(found.path))
                if where is None:
                    if found.error:
                        report.errors.append((str(found.path), found.error))
                    else:
                        report.warnings.append(f"uvh5 file outside any session directory ignored: {found.path}")
                    continue
                project, sname, spath = where
                key = f"{project}/{sname}" if sname else project
                session_info[str(spath)] = (project, sname or project, key, str(root))
                by_session[str(spath)].append((found, None))
                seen_paths.add(str(found.path))
        headers = self._prefetch_headers(by_session, known, now)
        for spath, items in by_session.items():
            self._index_session(spath, session_info[spath], items, known, now, report, headers)
        self._forget_vanished(roots, seen_paths, known, now, report)
        report.elapsed_s = time.perf_counter() - t0
        return report

    def _prefetch_headers(self, by_session, known, now) -> dict:
        """Many headers to read (a first scan of an archive): read them in worker processes, since
        the read is CPU-bound in h5py. Returns path → Header or IngestError; the session loop
        reads anything not here itself (and decides, as always, what is read at all)."""
        stable_s = self.cfg.scan.stable_seconds
        todo = []
        for items in by_session.values():
            for found, _ in items:
                old = known.get(str(found.path))
                unchanged = old is not None and old["size"] == found.size and old["mtime"] == found.mtime
                if found.error or (unchanged and old["status"] in ("ready", "error")
                                   and not _indexed_before_centres(old)):
                    continue
                if unchanged or now - found.mtime >= stable_s:  # may be ready this pass
                    todo.append(str(found.path))
        workers = min(os.cpu_count() or 1, 8)
        if len(todo) < PARALLEL_HEADERS_FROM or workers < 2:
            return {}
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        chunks = [todo[i:i + HEADER_CHUNK] for i in range(0, len(todo), HEADER_CHUNK)]
        out: dict = {}
        try:
            # spawn: the daemon has threads, and forking a threaded process is unsafe
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futs = [pool.submit(_read_chunk, c) for c in chunks]
                # While the workers start (~0.5 s of imports each), this process reads too: chunks
                # from the end that no worker has begun.
                for c, fut in zip(reversed(chunks), reversed(futs)):
                    if MAIN_READS_TOO and fut.cancel():
                        out.update(zip(c, _read_chunk(c)))
                for c, fut in zip(chunks, futs):
                    if not fut.cancelled():
                        out.update(zip(c, fut.result()))
        except (OSError, RuntimeError):  # no processes to be had: read the rest one by one
            pass
        return out

    # -- one session --------------------------------------------------------------------------
    def _index_session(self, spath, info, items, known, now, report, headers: dict) -> None:
        """``headers``: path → Header or IngestError read ahead in parallel (anything missing is read here)."""
        project, sname, key, root = info
        stable_s = self.cfg.scan.stable_seconds
        cat = self.cat
        with cat.transaction():
            srow = cat.session_by_path(spath)
            changed = False
            if srow is None:
                sid = cat.add_session(project=project, name=sname, key=key, path=spath, root=root, now=now)
                report.sessions_new.add(key)
                changed = True
            else:
                sid = srow["id"]
            for found, _ in items:
                path = str(found.path)
                old = known.get(path)
                if found.error:
                    row = {"session_id": sid, "scan_id": None, "path": path, "kind": found.kind,
                           "status": "error", "error": found.error, "size": found.size, "mtime": found.mtime}
                    if old is None or old["status"] != "error" or old["error"] != found.error:
                        cat.upsert_file(row)
                        changed = True
                    report.errors.append((path, found.error))
                    continue
                same = old is not None and old["size"] == found.size and old["mtime"] == found.mtime
                reread = same and _indexed_before_centres(old)
                if same and old["status"] in ("ready", "error") and not reread:
                    if old["status"] == "error":
                        report.errors.append((path, old["error"]))
                    continue  # unchanged: no header read
                if old is None:
                    report.new_files += 1
                elif not same:
                    report.changed_files += 1
                if same:
                    stable_since = old["stable_since"]
                elif now - found.mtime >= stable_s and old is None:
                    stable_since = found.mtime  # an old file seen for the first time
                else:
                    stable_since = now
                row = {"session_id": sid, "path": path, "kind": "uvh5", "size": found.size,
                       "mtime": found.mtime, "stable_since": stable_since, "error": None}
                changed = changed or not same
                try:
                    df = parse_data_path(PurePath(projects_dir(Path(root))), PurePath(path))
                except LayoutError as err:
                    row.update(status="error", error=str(err), kind="unknown", scan_id=None)
                    cat.upsert_file(row)
                    report.errors.append((path, str(err)))
                    continue
                scan_id = self._scan_row(sid, df)
                row.update(scan_id=scan_id, lo=df.lo, subband=df.subband)
                if now - stable_since < stable_s:
                    row["status"] = "growing"
                    report.growing_files += 1
                    cat.upsert_file(row)
                    continue
                try:
                    hdr = headers.get(path) or read_header(path)
                    if isinstance(hdr, IngestError):
                        raise hdr
                    report.headers_read += 1
                except IngestError as err:
                    row.update(status="error", error=str(err))
                    cat.upsert_file(row)
                    report.errors.append((path, str(err)))
                    continue
                row.update(
                    status="ready", nants_data=hdr.nants_data, nants_telescope=hdr.nants_telescope,
                    ntimes=hdr.ntimes, nfreqs=hdr.nfreqs, npols=hdr.npols, freq_start_hz=hdr.freq_start_hz,
                    freq_end_hz=hdr.freq_end_hz, channel_width_hz=hdr.channel_width_hz,
                    integration_s=hdr.integration_s, start_mjd=hdr.start_mjd, end_mjd=hdr.end_mjd,
                    field=hdr.field, ra_deg=hdr.ra_deg, dec_deg=hdr.dec_deg,
                    header=json.dumps({"telescope": hdr.telescope, "polarizations": hdr.polarizations,
                                       "antenna_names": hdr.antenna_names,
                                       "phase_type": hdr.phase_type,
                                       "phase_centre_ids": [c["id"] for c in hdr.phase_centres]}),
                )
                several = hdr.several_centres()
                if several:  # each centre is a field of the session, but the chain needs one per file
                    row.update(status="error", error=several,
                               header=json.dumps({**json.loads(row["header"]), "phase_centres": hdr.phase_centres}))
                    report.errors.append((path, several))
                if reread and (row["status"] != "ready" or row["field"] != old["field"]
                               or row["ra_deg"] != old["ra_deg"] or row["dec_deg"] != old["dec_deg"]):
                    changed = True  # indexed wrongly before: the session is summarised again
                cat.upsert_file(row)
            if changed or srow is None or srow["ingest_state"] != "ready":
                cat.summarise_session(sid, now if changed else None)
            cat.mark_scanned(sid, now)
        if changed:
            report.sessions_touched.add(key)

    def _scan_row(self, sid: int, df) -> int:
        s = df.stem
        return self.cat.scan_id(sid, stem=s.stem, mjd=s.mjd, sec_of_day=s.sec_of_day, block=s.block, source=s.source)

    def _forget_vanished(self, roots, seen_paths, known, now, report) -> None:
        """Rows of files that disappeared from storage are removed; their sessions are re-summarised."""
        root_strs = [str(Path(r)) for r in roots]
        gone = [r for p, r in known.items()
                if p not in seen_paths and any(p.startswith(rs + os.sep) for rs in root_strs)]
        if not gone:
            return
        self.cat.forget_files(gone, now)
