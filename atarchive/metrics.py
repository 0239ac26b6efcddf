"""Prometheus metrics of a running daemon (`daemon --metrics-port N`, config ``daemon.metrics_port``):
sessions by state, units run and failed by step, step durations, the last scan, the heartbeat's
age and the free space on the work root, served at ``/metrics`` for Prometheus / Grafana."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from .config import Config
from .contracts import SessionState
from .errors import AtarchiveError

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, float("inf"))


class _Sessions:
    """Sessions by state, planned at scrape time on a connection of its own (up-to-date sessions are
    not planned again: the plan's watermark)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def describe(self):
        return [GaugeMetricFamily("atarchive_sessions", "Sessions by state", labels=["state"])]

    def collect(self):
        from .catalogue import Catalogue
        from .plan import plan_all

        counts = {str(s): 0 for s in SessionState}
        with Catalogue(self.cfg.catalogue) as cat:
            for p in plan_all(cat, self.cfg):
                counts[str(p.state)] = counts.get(str(p.state), 0) + 1
        g = GaugeMetricFamily("atarchive_sessions", "Sessions by state", labels=["state"])
        for state, n in sorted(counts.items()):
            g.add_metric([state], n)
        yield g


class Metrics:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.registry = r = CollectorRegistry()
        self.units_run = Counter("atarchive_units_run", "Units finished (any outcome), by step", ["step"],
                                 registry=r)
        self.units_failed = Counter("atarchive_units_failed", "Units failed, by step", ["step"], registry=r)
        self.duration = Histogram("atarchive_step_duration_seconds", "Time a unit took, by step", ["step"],
                                  buckets=DURATION_BUCKETS, registry=r)
        self.last_scan = Gauge("atarchive_last_scan_timestamp_seconds", "When the last scan of storage ended "
                               "(Unix time)", registry=r)
        self.scan_seconds = Gauge("atarchive_last_scan_duration_seconds", "How long the last scan took",
                                  registry=r)
        self._beat = time.time()
        Gauge("atarchive_heartbeat_age_seconds", "Seconds since the daemon's last heartbeat",
              registry=r).set_function(lambda: time.time() - self._beat)
        Gauge("atarchive_work_root_free_bytes", "Free space on the work root's file system",
              registry=r).set_function(self._free)
        r.register(_Sessions(cfg))
        self.server = None

    def _free(self) -> float:
        root = Path(self.cfg.work_root)
        probe = next((p for p in (root, *root.parents) if p.exists()), root)
        return float(shutil.disk_usage(probe).free)

    # -- updates from the daemon ---------------------------------------------------------------
    def unit_finished(self, info: dict) -> None:
        step = str(info.get("step"))
        self.units_run.labels(step).inc()
        if info.get("status") == "failed":
            self.units_failed.labels(step).inc()
        if info.get("duration_s") is not None:
            self.duration.labels(step).observe(float(info["duration_s"]))

    def scanned(self, ended: float, seconds: float) -> None:
        self.last_scan.set(ended)
        self.scan_seconds.set(seconds)

    def beat(self) -> None:
        self._beat = time.time()

    # -- serving -------------------------------------------------------------------------------
    def serve(self, port: int, address: str) -> int:
        """Listen on ``address:port`` (port 0: any free port); returns the port."""
        try:
            self.server, _thread = start_http_server(port, addr=address, registry=self.registry)
        except OSError as err:
            raise AtarchiveError(f"daemon.metrics_port: cannot listen on {address}:{port}: "
                                 f"{err.strerror or err}") from None
        return self.server.server_port

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
