"""What the indexer writes: sessions found, file rows, scan rows, and the scans/fields/LOs/state
derived from a session's file rows."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import PurePath

from .db import Database


class IngestRows(Database):
    def files_by_path(self) -> dict[str, dict]:
        return {r["path"]: r for r in self.q("SELECT * FROM files")}

    def session_by_path(self, path: str) -> dict | None:
        return self.one("SELECT * FROM sessions WHERE path = ?", [path])

    def add_session(self, *, project: str, name: str, key: str, path: str, root: str, now: float) -> int:
        return self.db["sessions"].insert(
            {"project": project, "name": name, "key": key, "path": path, "root": root,
             "first_seen": now, "last_change": now, "ingest_state": "incomplete"}
        ).last_pk

    def mark_scanned(self, session_id: int, now: float) -> None:
        self.conn.execute("UPDATE sessions SET last_scanned = ? WHERE id = ?", [now, session_id])

    def upsert_file(self, row: dict) -> None:
        """Insert or update a files row by path (plain SQL: this is the indexer's hot path)."""
        cols = list(row)
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "path")
        self.conn.execute(
            f"INSERT INTO files ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT(path) DO UPDATE SET {sets}",
            [row[c] for c in cols],
        )

    def scan_id(self, session_id: int, *, stem: str, mjd, sec_of_day, block, source) -> int:
        """The id of the session's scan ``stem``, adding the row if it is new."""
        row = self.one("SELECT id FROM scans WHERE session_id = ? AND stem = ?", [session_id, stem])
        if row:
            return row["id"]
        return self.db["scans"].insert(
            {"session_id": session_id, "stem": stem, "mjd": mjd, "sec_of_day": sec_of_day, "block": block,
             "source": source, "complete": 0}
        ).last_pk

    def forget_files(self, rows: list[dict], now: float) -> None:
        """Rows of files that disappeared from storage go; their sessions are summarised again."""
        sids = {r["session_id"] for r in rows if r["session_id"] is not None}
        with self.transaction():
            for r in rows:
                self.conn.execute("DELETE FROM files WHERE id = ?", [r["id"]])
            for sid in sids:
                self.summarise_session(sid, now)

    def summarise_session(self, sid: int, changed_at: float | None) -> None:
        """Recompute scans, fields, LOs and the session's ingest state from its file rows."""
        files = self.q("SELECT * FROM files WHERE session_id = ?", [sid])
        layouts = set()
        errors = [f for f in files if f["status"] == "error"]
        data = [f for f in files if f["kind"] == "uvh5" and f["scan_id"] is not None]
        expected = {(f["lo"], f["subband"]) for f in data}
        per_scan: dict[int, list[dict]] = defaultdict(list)
        for f in data:
            per_scan[f["scan_id"]].append(f)
            layouts.add("flat" if PurePath(f["path"]).name.startswith("ata.") else "nested")
        for scan in self.q("SELECT id, stem FROM scans WHERE session_id = ?", [sid]):
            fs = per_scan.get(scan["id"], [])
            if not fs:
                self.conn.execute("DELETE FROM scans WHERE id = ?", [scan["id"]])
                continue
            have = {(f["lo"], f["subband"]) for f in fs if f["status"] == "ready"}
            missing = sorted(expected - {(f["lo"], f["subband"]) for f in fs})
            notes = []
            if missing:
                notes.append("missing subbands: " + ", ".join(f"Lo{lo}.C{sb:04d}" for lo, sb in missing))
            growing = [f for f in fs if f["status"] == "growing"]
            if growing:
                notes.append(f"{len(growing)} file(s) still growing")
            bad = [f for f in fs if f["status"] == "error"]
            if bad:
                notes.append(f"{len(bad)} unreadable file(s)")
            ready = [f for f in fs if f["status"] == "ready"]
            complete = not missing and not growing and not bad and have == expected
            first = min(ready, key=lambda f: f["start_mjd"]) if ready else None
            self.conn.execute(
                "UPDATE scans SET complete = ?, status_note = ?, field = ?, start_mjd = ?, end_mjd = ?, ntimes = ? "
                "WHERE id = ?",
                [int(complete), "; ".join(notes) or None, first["field"] if first else None,
                 min(f["start_mjd"] for f in ready) if ready else None,
                 max(f["end_mjd"] for f in ready) if ready else None,
                 first["ntimes"] if first else None, scan["id"]],
            )
        # fields: those of ready files, and each phase centre of a file that uses several
        centres = [(f["field"], f["ra"], f["dec"]) for f in self.q(
            "SELECT field, MIN(ra_deg) AS ra, MIN(dec_deg) AS dec FROM files WHERE session_id = ? "
            "AND status = 'ready' GROUP BY field", [sid])]
        for f in errors:
            for c in json.loads(f["header"] or "{}").get("phase_centres", []):
                if c["name"] not in {n for n, _, _ in centres}:
                    centres.append((c["name"], c["ra_deg"], c["dec_deg"]))
        self.conn.execute("DELETE FROM fields WHERE session_id = ? AND name NOT IN (SELECT value FROM json_each(?))",
                          [sid, json.dumps([n for n, _, _ in centres])])
        for name, ra, dec in centres:
            self.conn.execute(
                "INSERT INTO fields(session_id, name, ra_deg, dec_deg) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(session_id, name) DO UPDATE SET ra_deg = excluded.ra_deg, dec_deg = excluded.dec_deg",
                [sid, name, ra, dec],
            )
        # LOs
        self.conn.execute("DELETE FROM los WHERE session_id = ?", [sid])
        los: dict[str, dict[int, dict]] = defaultdict(dict)
        for f in data:
            if f["status"] == "ready":
                los[f["lo"]].setdefault(f["subband"], f)
        for lo, subs in los.items():
            fs = list(subs.values())
            self.db["los"].insert({
                "session_id": sid, "name": lo, "freq_start_hz": min(f["freq_start_hz"] for f in fs),
                "freq_end_hz": max(f["freq_end_hz"] for f in fs), "nchan": sum(f["nfreqs"] for f in fs),
                "nsubbands": len(fs), "channel_width_hz": fs[0]["channel_width_hz"],
            })
        scans = self.q("SELECT complete, status_note, stem FROM scans WHERE session_id = ?", [sid])
        if errors:
            state = "failed"
            first = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            err = f"{first['path']}: {first['error']}{more}"
        elif not scans or not all(s["complete"] for s in scans):
            state, err = "incomplete", None
        else:
            state, err = "ready", None
        sets = {"ingest_state": state, "layout": "mixed" if len(layouts) > 1 else (layouts.pop() if layouts else None)}
        if changed_at is not None:
            sets["last_change"] = changed_at
        cur = self.one("SELECT error, ingest_state FROM sessions WHERE id = ?", [sid])
        # An ingest error replaces any message; clearing it only clears ingest messages.
        if err is not None or (cur and cur["ingest_state"] == "failed"):
            sets["error"] = err
        self.db["sessions"].update(sid, sets)
