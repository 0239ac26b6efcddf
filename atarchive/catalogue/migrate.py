"""Versioned SQL migrations, applied automatically when a catalogue is opened.

The ``migrations/`` directory at the top of the repository holds ``NNNN_name.sql`` files; the wheel
ships them as ``atarchive/migrations``. Applied names are recorded in ``_migrations``.
"""

from __future__ import annotations

import sqlite3
import time
from importlib import resources
from pathlib import Path


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in order."""
    root = resources.files("atarchive") / "migrations"
    out = []
    for entry in root.iterdir():
        if entry.name.endswith(".sql"):
            out.append((entry.name, entry.read_text()))
    if not out:  # pragma: no cover - broken install
        raise RuntimeError(f"no migrations found in {root}")
    return sorted(out)


def _statements(sql: str) -> list[str]:
    """The statements of a migration script, in order."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return [st for st in out if st.strip(" ;\n")]


def apply(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations; return the names applied now. Two processes opening a new
    catalogue at once (the daemon starting while `status` runs) must not both migrate it: the
    write lock is taken first and what is applied is read under it."""
    files = migration_files()
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
    if not {n for n, _ in files} - {r[0] for r in conn.execute("SELECT name FROM _migrations")}:
        return []
    applied = []
    conn.execute("BEGIN IMMEDIATE")  # the other process waits here (busy timeout), then finds them done
    try:
        done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
        for name, sql in files:
            if name in done:
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO _migrations(name, applied) VALUES (?, ?)", (name, time.time()))
            applied.append(name)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied


def pending(conn: sqlite3.Connection) -> list[str]:
    try:
        done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
    except sqlite3.OperationalError:
        done = set()
    return [n for n, _ in migration_files() if n not in done]


def migrations_dir() -> Path:
    return Path(str(resources.files("atarchive") / "migrations"))
