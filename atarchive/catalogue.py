"""The catalogue: a SQLite file on local disk (WAL, short transactions), read through sqlite-utils.

No CASA here. Everything that reads or writes catalogue rows goes through this module so the SQL
lives in one place.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

import sqlite_utils

from . import migrate
from .errors import AtarchiveError


class SessionNotFound(AtarchiveError):
    pass


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    # Switching a new database to WAL needs it alone for a moment and does not wait on the busy
    # timeout: another process opening it at the same time gets "locked", so try again.
    for attempt in range(300):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == 299:
                raise
            time.sleep(0.1)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class Catalogue:
    """Open (creating and migrating if needed) the catalogue at ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.conn = _connect(self.path)
        migrate.apply(self.conn)
        self.db = sqlite_utils.Database(self.conn)

    # -- plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Catalogue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def q(self, sql: str, params: Iterable[Any] | dict = ()) -> list[dict]:
        return list(self.db.query(sql, params))

    def one(self, sql: str, params: Iterable[Any] | dict = ()) -> dict | None:
        rows = self.q(sql, params)
        return rows[0] if rows else None

    def transaction(self):
        return _Tx(self.conn)

    # -- sessions ---------------------------------------------------------------------------
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

    # -- runs -------------------------------------------------------------------------------
    def latest_runs(self, session_id: int | None = None) -> list[dict]:
        """Newest run of every (session, step, unit)."""
        where = "WHERE session_id = ?" if session_id is not None else ""
        params = [session_id] if session_id is not None else []
        return self.q(
            f"""SELECT r.* FROM step_runs r JOIN (
                    SELECT MAX(id) AS id FROM step_runs {where} GROUP BY session_id, step, unit
                ) m ON r.id = m.id""",
            params,
        )

    def latest_done_runs(self, session_id: int | None = None) -> list[dict]:
        where = "AND session_id = ?" if session_id is not None else ""
        params = [session_id] if session_id is not None else []
        return self.q(
            f"""SELECT r.* FROM step_runs r JOIN (
                    SELECT MAX(id) AS id FROM step_runs WHERE status = 'done' {where}
                    GROUP BY session_id, step, unit
                ) m ON r.id = m.id""",
            params,
        )

    def runs(self, session_id: int, step: str | None = None) -> list[dict]:
        if step:
            return self.q("SELECT * FROM step_runs WHERE session_id = ? AND step = ? ORDER BY id", [session_id, step])
        return self.q("SELECT * FROM step_runs WHERE session_id = ? ORDER BY id", [session_id])

    def start_run(self, **row: Any) -> int:
        row.setdefault("started", time.time())
        row.setdefault("status", "running")
        for k in ("params", "inputs", "versions"):
            if not isinstance(row.get(k), str):
                row[k] = json.dumps(row.get(k) or {}, sort_keys=True)
        return self.db["step_runs"].insert(row).last_pk

    def finish_run(self, run_id: int, **fields: Any) -> None:
        fields.setdefault("finished", time.time())
        if "result" in fields and not isinstance(fields["result"], str):
            fields["result"] = json.dumps(fields["result"], default=str)
        self.db["step_runs"].update(run_id, fields)

    def mark_interrupted(self, *, alive: callable, kill_orphan: callable | None = None) -> int:
        """Runs left 'running' by an owner that is gone become 'interrupted'. Returns how many."""
        n = 0
        for r in self.q("SELECT id, owner, worker_pid FROM step_runs WHERE status = 'running'"):
            if not alive(r["owner"]):
                if kill_orphan is not None and r["worker_pid"]:
                    kill_orphan(r["owner"], r["worker_pid"])
                self.db["step_runs"].update(
                    r["id"], {"status": "interrupted", "finished": time.time(), "error": "interrupted (owner died)"}
                )
                n += 1
        return n

    def forces(self, session_id: int | None = None) -> list[dict]:
        if session_id is None:
            return self.q("SELECT * FROM forces ORDER BY id")
        return self.q("SELECT * FROM forces WHERE session_id = ? ORDER BY id", [session_id])

    def add_force(self, session_id: int, from_step: str, note: str = "") -> None:
        self.db["forces"].insert({"session_id": session_id, "from_step": from_step, "created": time.time(), "note": note})

    # -- products ---------------------------------------------------------------------------
    def replace_products(self, session_id: int, step: str, unit: str, run_id: int, products: list[dict]) -> None:
        now = time.time()
        with self.transaction():
            self.conn.execute("DELETE FROM products WHERE session_id = ? AND step = ? AND unit = ?", [session_id, step, unit])
            for p in products:
                self.db["products"].insert(
                    {
                        "session_id": session_id,
                        "run_id": run_id,
                        "step": step,
                        "unit": unit,
                        "kind": p["kind"],
                        "path": str(p["path"]),
                        "fingerprint": p["fingerprint"],
                        "meta": json.dumps(p.get("meta") or {}, default=str),
                        "created": now,
                    }
                )

    def products(self, session_id: int, step: str | None = None) -> list[dict]:
        if step:
            return self.q("SELECT * FROM products WHERE session_id = ? AND step = ? ORDER BY id", [session_id, step])
        return self.q("SELECT * FROM products WHERE session_id = ? ORDER BY id", [session_id])

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


class _Tx:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, *exc):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
