"""Who runs what: a run's owner is ``host:pid`` of the reconciler that started it. A run whose owner
is gone is interrupted; a child process it left behind on this host is killed."""

from __future__ import annotations

import os
import socket

import psutil

HOST = socket.gethostname()


def owner_id() -> str:
    return f"{HOST}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool:
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != HOST:
        return True  # cannot tell for another host: assume alive
    if int(pid) == os.getpid():
        return True
    return psutil.pid_exists(int(pid))


def kill_orphan(owner: str | None, pid: int) -> None:
    """Kill the process group of a dead reconciler's child (if it is still one of ours)."""
    host = (owner or "").rpartition(":")[0]
    if host != HOST or not psutil.pid_exists(pid):
        return
    try:
        if "atarchive.casa.child" in " ".join(psutil.Process(pid).cmdline()):
            os.killpg(pid, 9)
    except (psutil.Error, ProcessLookupError, PermissionError):
        pass
