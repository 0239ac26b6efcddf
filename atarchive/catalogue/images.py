"""Images and their quality figures (rms, peak, dynamic range, beam, self-calibration rounds)."""

from __future__ import annotations

import time

from .db import Database, session_field_where

IMAGE_COLUMNS = ("kind", "path", "residual_path", "rms_jy", "peak_jy", "dynamic_range", "beam_major_arcsec",
                 "beam_minor_arcsec", "beam_pa_deg", "selfcal_rounds", "mask", "note")


class ImageRows(Database):
    def replace_images(self, session_id: int, run_id: int, step: str, field: str, lo: str, rows: list[dict]) -> None:
        """The images ``step`` made of (session, field, LO) are now ``rows`` (keys of IMAGE_COLUMNS)."""
        now = time.time()
        with self.transaction():
            self.conn.execute("DELETE FROM images WHERE session_id = ? AND step = ? AND field = ? AND lo = ?",
                              [session_id, step, field, lo])
            for r in rows:
                self.db["images"].insert({"session_id": session_id, "run_id": run_id, "step": step, "field": field,
                                          "lo": lo, "created": now,
                                          **{k: (str(r[k]) if k.endswith("path") and r.get(k) else r.get(k))
                                             for k in IMAGE_COLUMNS}})

    def images(self, session_id: int | None = None, field: str | None = None) -> list[dict]:
        """Image rows with the session key, in session, field, LO, kind order."""
        where, args = session_field_where("i", session_id, field)
        sql = ("SELECT s.key AS session, i.* FROM images i JOIN sessions s ON s.id = i.session_id" + where
               + " ORDER BY s.key, i.field, i.lo, CASE i.kind WHEN '1gc' THEN 0 WHEN 'selfcal' THEN 1 ELSE 2 END, i.id")
        return self.q(sql, args)
