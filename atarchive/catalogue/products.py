"""Products of step runs (paths with their fingerprint and metadata) and flux measurements."""

from __future__ import annotations

import json
import time

from .db import Database

FLUX_COLUMNS = ("field", "role", "lo", "freq_hz", "flux_jy", "flux_err_jy", "peak_jy", "rms_jy", "model_flux_jy",
                "ra_deg", "dec_deg", "method")


class ProductRows(Database):
    def replace_products(self, session_id: int, step: str, unit: str, run_id: int, products: list[dict]) -> None:
        """The products of (session, step, unit) are now these: {kind, path, fingerprint, meta}."""
        now = time.time()
        with self.transaction():
            self.conn.execute("DELETE FROM products WHERE session_id = ? AND step = ? AND unit = ?",
                              [session_id, step, unit])
            for p in products:
                self.db["products"].insert({
                    "session_id": session_id, "run_id": run_id, "step": step, "unit": unit, "kind": p["kind"],
                    "path": str(p["path"]), "fingerprint": p["fingerprint"],
                    "meta": json.dumps(p.get("meta") or {}, default=str), "created": now,
                })

    def products(self, session_id: int, step: str | None = None) -> list[dict]:
        if step:
            return self.q("SELECT * FROM products WHERE session_id = ? AND step = ? ORDER BY id", [session_id, step])
        return self.q("SELECT * FROM products WHERE session_id = ? ORDER BY id", [session_id])

    def products_by_step(self, session_id: int) -> dict[str, list[dict]]:
        """step → its products, ``meta`` decoded."""
        out: dict[str, list[dict]] = {}
        for p in self.products(session_id):
            p = dict(p)
            p["meta"] = json.loads(p["meta"] or "{}")
            out.setdefault(p["step"], []).append(p)
        return out

    def products_of_step(self, step: str) -> dict[int, list[dict]]:
        """session id → the products of ``step`` in every session, ``meta`` decoded."""
        out: dict[int, list[dict]] = {}
        for p in self.q("SELECT * FROM products WHERE step = ? ORDER BY session_id, id", [step]):
            p = dict(p)
            p["meta"] = json.loads(p["meta"] or "{}")
            out.setdefault(p["session_id"], []).append(p)
        return out

    def replace_flux(self, session_id: int, run_id: int, row: dict) -> None:
        """The flux measurement of (session, field, LO) is now ``row`` (keys of FLUX_COLUMNS)."""
        with self.transaction():
            self.conn.execute("DELETE FROM flux_measurements WHERE session_id = ? AND field = ? AND lo = ?",
                              [session_id, row.get("field"), row.get("lo")])
            self.db["flux_measurements"].insert({"session_id": session_id, "run_id": run_id, "created": time.time(),
                                                 **{k: row.get(k) for k in FLUX_COLUMNS}})

    def flux_measurements(self, session_id: int | None = None) -> list[dict]:
        if session_id is None:
            return self.q(
                "SELECT s.key AS session, f.* FROM flux_measurements f JOIN sessions s ON s.id = f.session_id "
                "ORDER BY s.key, f.field, f.freq_hz"
            )
        return self.q(
            "SELECT s.key AS session, f.* FROM flux_measurements f JOIN sessions s ON s.id = f.session_id "
            "WHERE f.session_id = ? ORDER BY f.field, f.freq_hz",
            [session_id],
        )
