"""The daemon: watch storage (watchdog events where they arrive, plus a periodic full rescan because
network storage sends none), index, and reconcile sessions that are ready and idle.

One daemon per catalogue (a file lock beside it); a second one exits at once naming the holder.
SIGTERM/SIGINT: no new work, running steps get ``daemon.grace_seconds`` to finish, then their
children are killed and recorded as interrupted; exit 0. After ``kill -9`` the next start marks
the dead runs interrupted and cleans their temporary products before running them again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from filelock import FileLock, Timeout

from . import naming
from .catalogue import Catalogue
from .config import Config
from .errors import AtarchiveError
from .reconciler import Reconciler
from .scanner.discover import Indexer, projects_dir


class DaemonRunning(AtarchiveError):
    pass


def lock_info_path(cfg: Config) -> Path:
    return naming.daemon_lock(cfg.catalogue).with_suffix(".json")


def acquire_lock(cfg: Config) -> FileLock:
    lock = FileLock(str(naming.daemon_lock(cfg.catalogue)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = "unknown"
        for _ in range(20):  # the holder writes who it is just after taking the lock
            try:
                info = json.loads(lock_info_path(cfg).read_text())
                if info["host"] == socket.gethostname():
                    os.kill(int(info["pid"]), 0)  # left by a daemon that was killed: not the holder
                holder = f"PID {info['pid']} on host {info['host']} (since {time.ctime(info['started'])})"
                break
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        raise DaemonRunning(f"another atarchive daemon already runs on catalogue {cfg.catalogue}: {holder}") from None
    info = lock_info_path(cfg)
    tmp = info.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
    tmp.replace(info)  # whole or not at all for a reader
    return lock


def daemon_status(cat: Catalogue) -> dict | None:
    row = cat.daemon_row()
    if row is None:
        return None
    from .execution.ownership import owner_alive

    fresh = row["stopped"] is None and time.time() - row["heartbeat"] < 60
    alive = fresh and owner_alive(f"{row['host']}:{row['pid']}")
    return {"alive": bool(alive), "pid": row["pid"], "host": row["host"], "started": row["started"],
            "heartbeat": row["heartbeat"], "activity": row["activity"], "stopped": row["stopped"]}


class _Events:
    """watchdog observer that only sets an event (storage on NFS may never deliver any)."""

    def __init__(self, roots: list[Path], wake: threading.Event):
        self.observer = None
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover
            return

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if not event.is_directory or event.event_type in ("created", "moved"):
                    wake.set()

        self.observer = Observer()
        for r in roots:
            d = projects_dir(Path(r))
            if d.is_dir():
                self.observer.schedule(Handler(), str(d), recursive=True)
        self.observer.daemon = True
        self.observer.start()

    def stop(self):
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)


class Daemon:
    def __init__(self, cfg: Config, *, log: Callable[[str], None] = print, max_seconds: float | None = None,
                 event: Callable[[str, dict], None] | None = None, metrics_port: int | None = None,
                 site: Callable[[Catalogue, Config], dict] | None = None):
        self.cfg = cfg
        self.site = site  # writes the archive's site (the CLI gives `atarchive site`'s writer)
        self.log = log
        self.event = event  # a unit started / finished (the CLI's text or JSON log line)
        self.metrics_port = cfg.daemon.metrics_port if metrics_port is None else metrics_port
        self.metrics = None
        self.stop = threading.Event()
        self.scan_now = threading.Event()
        self.work_now = threading.Event()
        self.max_seconds = max_seconds
        self.activity = "starting"

    # -- health ------------------------------------------------------------------------------
    def _beat(self, cat: Catalogue, *, stopped: bool = False) -> None:
        if self.metrics is not None:
            self.metrics.beat()
        cat.beat(pid=os.getpid(), host=socket.gethostname(), activity=self.activity, stopped=stopped)

    def _eligible(self, cat_forces: Callable[[], set[int]]) -> Callable[[dict], bool]:
        idle = self.cfg.scan.session_idle_seconds

        def ok(s: dict) -> bool:
            if s["ingest_state"] != "ready":
                return False
            return time.time() - s["last_change"] >= idle or s["id"] in cat_forces()

        return ok

    def _low_disk(self) -> str | None:
        root = self.cfg.work_root
        probe = next((p for p in (root, *root.parents) if p.exists()), root)  # work root may not exist yet
        free_gb = shutil.disk_usage(probe).free / 1e9
        if free_gb < self.cfg.daemon.min_free_gb:
            self.activity = f"paused: {free_gb:.1f} GB free < {self.cfg.daemon.min_free_gb} GB"
            return self.activity
        return None

    # -- main --------------------------------------------------------------------------------
    def install_signals(self) -> None:
        def handler(signum, _frame):
            self.log(f"received {signal.Signals(signum).name}: finishing running steps, starting no new ones")
            self.activity = "stopping"
            self.stop.set()
            self.work_now.set()
            self.scan_now.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        lock = acquire_lock(self.cfg)
        try:
            if self.metrics_port is not None:
                from .metrics import Metrics

                self.metrics = Metrics(self.cfg)
                port = self.metrics.serve(self.metrics_port, self.cfg.daemon.metrics_address)
                self.log(f"metrics: http://{self.cfg.daemon.metrics_address}:{port}/metrics")
            return self._run()
        finally:
            try:
                lock_info_path(self.cfg).unlink(missing_ok=True)
                if self.metrics is not None:
                    self.metrics.close()
            finally:
                lock.release()

    def _refresh_site(self, cat: Catalogue) -> None:
        """Write the archive's site (``atarchive site``) into the work root's ``site/``."""
        if self.site is None:
            return
        try:
            res = self.site(cat, self.cfg)
            self.log(f"site: {res['path']} ({res['sessions']} sessions, {res['seconds']:.1f} s)")
        except Exception as e:  # noqa: BLE001 - the site is a view; it must not stop the daemon
            self.log(f"site: could not be written: {type(e).__name__}: {e}")

    def _run(self) -> int:
        cfg = self.cfg
        cat = Catalogue(cfg.catalogue)
        self._beat(cat)
        events = _Events(cfg.storage_roots, self.scan_now)
        t_start = time.time()
        forced: set[int] = set()

        def forces() -> set[int]:
            return forced

        site_stale = threading.Event()

        rec_cat = Catalogue(cfg.catalogue)
        rec = Reconciler(cfg, rec_cat, log=self.log, stop=self.stop)

        def on_event(kind, info):
            if kind == "start":
                self.activity = f"running {info['step']} {info['unit']} of {info['session']}".strip()
            else:
                self.activity = "idle"
                if self.metrics is not None:
                    self.metrics.unit_finished(info)
                if info.get("step") == "report" and info.get("status") == "done":
                    site_stale.set()  # a session's QA page changed: refresh the archive's site
            if self.event is not None:
                self.event(kind, info)
            elif kind != "start":
                self.log(f"{info['status']}: {info['session']} {info['step']} {info['unit']}".strip()
                         + (f": {info.get('error')}" if info.get("error") else ""))

        worker = threading.Thread(
            target=rec.run, name="reconciler",
            kwargs={"keep_running": True, "wake": self.work_now, "session_filter": self._eligible(forces),
                    "pause": self._low_disk, "on_event": on_event, "grace_seconds": cfg.daemon.grace_seconds},
            daemon=True,
        )
        worker.start()
        self.log(f"daemon started: pid {os.getpid()}, catalogue {cfg.catalogue}, roots "
                 + ", ".join(str(r) for r in cfg.storage_roots))
        next_poll = 0.0
        try:
            while not self.stop.is_set():
                now = time.time()
                if self.max_seconds is not None and now - t_start >= self.max_seconds:
                    self.log("max run time reached: stopping")
                    self.stop.set()
                    self.work_now.set()
                    break
                if now >= next_poll or self.scan_now.is_set():
                    self.scan_now.clear()
                    if self.activity in ("starting", "idle") or self.activity.startswith("paused"):
                        self.activity = "scanning"
                    rep = Indexer(cat, cfg).scan()
                    if self.metrics is not None:
                        self.metrics.scanned(time.time(), rep.elapsed_s)
                    if rep.sessions_touched or rep.errors and rep.new_files:
                        self.log(f"scan: {rep.new_files} new, {rep.changed_files} changed files; sessions "
                                 f"touched: {', '.join(sorted(rep.sessions_touched)) or '-'}")
                    if self.activity == "scanning":
                        self.activity = "idle"
                    forced.clear()
                    forced.update(f["session_id"] for f in cat.forces()
                                  if f["created"] > now - 3600)
                    self.work_now.set()
                    next_poll = now + cfg.scan.poll_seconds
                    if rep.growing_files:  # look again as soon as they can have become stable
                        next_poll = min(next_poll, now + cfg.scan.stable_seconds + 0.5)
                if site_stale.is_set():
                    site_stale.clear()
                    self._refresh_site(cat)
                self._beat(cat)
                # Sessions become idle-eligible with time even without file events.
                self.work_now.set()
                self.scan_now.wait(min(cfg.daemon.heartbeat_seconds, max(0.1, next_poll - time.time())))
        finally:
            self.stop.set()
            self.work_now.set()
            events.stop()
            worker.join()
            self.activity = "stopped"
            self._beat(cat, stopped=True)
            self.log("daemon stopped")
            rec_cat.close()
            cat.close()
        return 0
