"""Step runs (every attempt, its fingerprint, reason and outcome) and forced reprocessing."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from .db import Database, id_list


class RunRows(Database):
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

    def latest_runs_of(self, ids: list[int], *, done_only: bool) -> list[dict]:
        """Newest run (or newest done run) of every (step, unit) of the sessions ``ids``."""
        cond = "AND status = 'done'" if done_only else ""
        return self.q(
            f"""SELECT r.* FROM step_runs r JOIN (
                    SELECT MAX(id) AS id FROM step_runs WHERE session_id IN ({id_list(ids)}) {cond}
                    GROUP BY session_id, step, unit
                ) m ON r.id = m.id"""
        )

    def newest_ids(self) -> dict[int, tuple[int, int]]:
        """session id → (id of its newest run of any status, id of its newest force; 0 when none).

        One index seek per session and table (step_runs_session and forces_session end in the row
        id), never a scan of every run: the no-op plan reads this on every pass of the daemon."""
        return {sid: (run or 0, force or 0) for sid, run, force in self.conn.execute(
            "SELECT s.id, (SELECT MAX(r.id) FROM step_runs r WHERE r.session_id = s.id), "
            "(SELECT MAX(f.id) FROM forces f WHERE f.session_id = s.id) FROM sessions s")}

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

    def set_worker_pid(self, run_ids: list[int], pid: int, started: float) -> None:
        """The child process of these runs started now (a crash can then be cleaned up)."""
        self.conn.executemany("UPDATE step_runs SET worker_pid = ?, started = ? WHERE id = ?",
                              [[pid, started, r] for r in run_ids])

    def mark_interrupted(self, *, alive: Callable, kill_orphan: Callable | None = None) -> int:
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

    def running_runs(self) -> list[dict]:
        """Runs recorded as running, with their session key (who holds which session)."""
        return self.q("SELECT r.*, s.key AS session FROM step_runs r JOIN sessions s ON s.id = r.session_id "
                      "WHERE r.status = 'running' ORDER BY r.id")

    def forces(self, session_id: int | None = None) -> list[dict]:
        if session_id is None:
            return self.q("SELECT * FROM forces ORDER BY id")
        return self.q("SELECT * FROM forces WHERE session_id = ? ORDER BY id", [session_id])

    def add_force(self, session_id: int, from_step: str, note: str = "") -> None:
        self.db["forces"].insert({"session_id": session_id, "from_step": from_step, "created": time.time(), "note": note})
