"""The daemon's heartbeat row (one per catalogue)."""

from __future__ import annotations

import time

from .db import Database


class HealthRows(Database):
    def daemon_row(self) -> dict | None:
        return self.one("SELECT * FROM daemon WHERE id = 1")

    def beat(self, *, pid: int, host: str, activity: str, stopped: bool = False) -> None:
        """Record that the daemon (pid, host) is alive now, doing ``activity``."""
        now = time.time()
        self.conn.execute(
            "INSERT INTO daemon(id, pid, host, started, heartbeat, activity, stopped) VALUES (1, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET pid = excluded.pid, host = excluded.host, heartbeat = excluded.heartbeat, "
            "activity = excluded.activity, stopped = excluded.stopped, "
            "started = CASE WHEN daemon.pid = excluded.pid THEN daemon.started ELSE excluded.started END",
            [pid, host, now, now, activity, now if stopped else None],
        )
