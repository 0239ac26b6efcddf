"""Sources found in target images (PyBDSF) and each image's check against the reference catalogue."""

from __future__ import annotations

import json
import time

from .db import Database, session_field_where

SOURCE_COLUMNS = ("source_id", "island", "ra_deg", "dec_deg", "ra_err_arcsec", "dec_err_arcsec", "flux_jy",
                  "flux_err_jy", "peak_jy", "peak_err_jy", "major_arcsec", "minor_arcsec", "pa_deg", "rms_jy", "snr",
                  "code")


class SourceRows(Database):
    def replace_sources(self, session_id: int, run_id: int, *, field: str, lo: str, image: str, pbcor: bool,
                        rows: list[dict], check: dict | None) -> None:
        """The sources of (session, field, LO) are now ``rows``; its reference check is ``check``."""
        now = time.time()
        with self.transaction():
            self.conn.execute("DELETE FROM sources WHERE session_id = ? AND field = ? AND lo = ?",
                              [session_id, field, lo])
            self.conn.execute("DELETE FROM source_checks WHERE session_id = ? AND field = ? AND lo = ?",
                              [session_id, field, lo])
            if rows:
                self.db["sources"].insert_all([
                    {"session_id": session_id, "run_id": run_id, "field": field, "lo": lo, "image": image,
                     "pbcor": int(bool(pbcor)), "created": now, **{k: r.get(k) for k in SOURCE_COLUMNS}}
                    for r in rows])
            self.db["source_checks"].insert({
                "session_id": session_id, "field": field, "lo": lo, "run_id": run_id, "image": image,
                "n_sources": len(rows), "reference": json.dumps(check) if check else None, "created": now})

    def sources(self, session_id: int | None = None, field: str | None = None) -> list[dict]:
        """Sources with their session key, by session, field, LO and descending flux."""
        where, args = session_field_where("x", session_id, field, nocase=True)
        sql = ("SELECT s.key AS session, (SELECT MIN(sc.start_mjd) FROM scans sc WHERE sc.session_id = s.id) "
               "AS start_mjd, x.* FROM sources x JOIN sessions s ON s.id = x.session_id" + where)
        return self.q(sql + " ORDER BY s.key, x.field, x.lo, x.flux_jy DESC", args)

    def source_checks(self, session_id: int | None = None) -> list[dict]:
        """Per image: how many sources, and the reference check (decoded) or None."""
        sql = ("SELECT s.key AS session, c.* FROM source_checks c JOIN sessions s ON s.id = c.session_id")
        rows = self.q(sql + (" WHERE c.session_id = ?" if session_id is not None else "") +
                      " ORDER BY s.key, c.field, c.lo", [session_id] if session_id is not None else [])
        for r in rows:
            r["reference"] = json.loads(r["reference"]) if r["reference"] else None
        return rows
