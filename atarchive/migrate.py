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


def apply(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name, sql in migration_files():
        if name in done:
            continue
        # executescript commits first; wrap the script and its record in one transaction.
        conn.executescript(
            "BEGIN;\n" + sql + f"\nINSERT INTO _migrations(name, applied) VALUES ('{name}', {time.time()});\nCOMMIT;"
        )
        applied.append(name)
    return applied


def pending(conn: sqlite3.Connection) -> list[str]:
    try:
        done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
    except sqlite3.OperationalError:
        done = set()
    return [n for n, _ in migration_files() if n not in done]


def migrations_dir() -> Path:
    return Path(str(resources.files("atarchive") / "migrations"))
