"""The connection: a SQLite file on local disk (WAL, short transactions), read through sqlite-utils."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

import sqlite_utils

from . import migrate


def connect(path: Path) -> sqlite3.Connection:
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


class Transaction:
    """``with cat.transaction():`` — one write transaction (BEGIN IMMEDIATE … COMMIT/ROLLBACK)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, *exc):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class Database:
    """Plumbing shared by the table groups: open + migrate, queries, transactions."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.conn = connect(self.path)
        migrate.apply(self.conn)
        self.db = sqlite_utils.Database(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def q(self, sql: str, params: Iterable[Any] | dict = ()) -> list[dict]:
        """Rows of a read query (tests and benches read through this too)."""
        return list(self.db.query(sql, params))

    def one(self, sql: str, params: Iterable[Any] | dict = ()) -> dict | None:
        rows = self.q(sql, params)
        return rows[0] if rows else None

    def transaction(self) -> Transaction:
        return Transaction(self.conn)


def id_list(ids: Iterable[int]) -> str:
    """``1,2,3`` for an ``IN (…)`` clause (integers only, so nothing else reaches the SQL)."""
    return ",".join(str(int(i)) for i in ids)


def session_field_where(alias: str, session_id: int | None, field: str | None, *,
                        nocase: bool = False) -> tuple[str, list]:
    """`` WHERE …`` (or "") selecting rows of table ``alias`` by session id and field name, and its
    arguments; ``nocase``: the field compared case-insensitively."""
    where, args = [], []
    if session_id is not None:
        where.append(f"{alias}.session_id = ?")
        args.append(session_id)
    if field is not None:
        where.append(f"lower({alias}.field) = lower(?)" if nocase else f"{alias}.field = ?")
        args.append(field)
    return (" WHERE " + " AND ".join(where) if where else ""), args
