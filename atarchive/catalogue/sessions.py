"""Sessions and what the indexer found in them: scans, fields, LOs, files (reads), session errors
and plan watermarks (writes)."""

from __future__ import annotations

from ..errors import AtarchiveError
from .db import Database, id_list


class SessionNotFound(AtarchiveError):
    pass


class SessionRows(Database):
    def sessions(self) -> list[dict]:
        return self.q("SELECT * FROM sessions ORDER BY project, name")

    def session(self, ref: str | int) -> dict:
        """Find a session by id, key ("project/name"), or name alone when unique."""
        ref = str(ref)
        row = self.one("SELECT * FROM sessions WHERE key = ?", [ref])
        if row is None and ref.isdigit():
            row = self.one("SELECT * FROM sessions WHERE id = ?", [int(ref)])
        if row is None:
            rows = self.q("SELECT * FROM sessions WHERE name = ? OR path = ?", [ref, ref])
            if len(rows) > 1:
                keys = ", ".join(r["key"] for r in rows)
                raise SessionNotFound(f"session {ref!r} is ambiguous: {keys}")
            row = rows[0] if rows else None
        if row is None:
            raise SessionNotFound(f"no session {ref!r} in the catalogue (see `atarchive status`)")
        return row

    def scans(self, session_id: int) -> list[dict]:
        return self.q("SELECT * FROM scans WHERE session_id = ? ORDER BY start_mjd, stem", [session_id])

    def fields(self, session_id: int) -> list[dict]:
        return self.q("SELECT * FROM fields WHERE session_id = ? ORDER BY name", [session_id])

    def los(self, session_id: int) -> list[dict]:
        return self.q("SELECT * FROM los WHERE session_id = ? ORDER BY name", [session_id])

    def files(self, session_id: int) -> list[dict]:
        return self.q("SELECT * FROM files WHERE session_id = ? ORDER BY path", [session_id])

    def rows_of_sessions(self, ids: list[int]) -> dict[str, dict[int, list[dict]]]:
        """scans, files, fields, LOs of many sessions in four queries: table → session id → rows."""
        out: dict[str, dict[int, list]] = {}
        order = {"scans": "start_mjd, stem", "files": "path", "fields": "name", "los": "name"}
        for table, by in order.items():
            d: dict[int, list] = {}
            for r in self.db.query(f"SELECT * FROM {table} WHERE session_id IN ({id_list(ids)}) "
                                   f"ORDER BY session_id, {by}"):
                d.setdefault(r["session_id"], []).append(r)
            out[table] = d
        return out

    def scan_counts(self) -> dict[int, dict]:
        """session id → {n: scans, c: complete scans}."""
        return {r["session_id"]: r for r in self.q(
            "SELECT session_id, COUNT(*) AS n, SUM(complete) AS c FROM scans GROUP BY session_id")}

    def names_by_session(self) -> dict[str, dict[int, list[str]]]:
        """``{"fields": {session id: [names]}, "los": {…}}``, names sorted."""
        out: dict[str, dict[int, list]] = {"fields": {}, "los": {}}
        for r in self.q("SELECT session_id, name FROM fields ORDER BY name"):
            out["fields"].setdefault(r["session_id"], []).append(r["name"])
        for r in self.q("SELECT session_id, name FROM los ORDER BY name"):
            out["los"].setdefault(r["session_id"], []).append(r["name"])
        return out

    def first_scan_starts(self) -> dict[str, float]:
        """session key → MJD of its first scan."""
        return {r["key"]: r["mjd"] for r in self.q(
            "SELECT s.key, MIN(sc.start_mjd) AS mjd FROM sessions s JOIN scans sc ON sc.session_id = s.id "
            "GROUP BY s.key")}

    def set_session_error(self, session_id: int, error: str | None) -> None:
        self.db["sessions"].update(session_id, {"error": error})

    def save_plan_watermarks(self, rows: list[tuple[str, str, int]]) -> None:
        """(watermark, step summary JSON, session id) of sessions found fully up to date."""
        with self.transaction():
            self.conn.executemany("UPDATE sessions SET plan_watermark = ?, plan_summary = ? WHERE id = ?", rows)
