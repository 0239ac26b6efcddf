"""Helpers shared by the benchmarks: where results go and how they are printed."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
# real ATA example files (headers usable), kept in the repository's test data
REAL = REPO / "tests" / "data" / "ata-real"


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.node(),
            "cpus": __import__("os").cpu_count(), **data}
    p = RESULTS / f"{name}.json"
    p.write_text(json.dumps(data, indent=2))
    return p


def step_times(db: Path) -> tuple[dict, int]:
    """Per step of a finished run's catalogue: units done, wall (first start to last end) and summed
    unit seconds; and how many runs did not finish done."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        steps = {}
        for step, n, first, last, busy in conn.execute(
                "SELECT step, COUNT(*), MIN(started), MAX(finished), SUM(finished - started) FROM step_runs "
                "WHERE status = 'done' GROUP BY step ORDER BY MIN(started)"):
            steps[step] = {"units": n, "wall_s": round(last - first, 1), "unit_seconds": round(busy, 1)}
        failed = conn.execute("SELECT COUNT(*) FROM step_runs WHERE status != 'done'").fetchone()[0]
    finally:
        conn.close()
    return steps, failed


def line(label: str, value, unit: str, goal: str, ok: bool) -> str:
    return f"{label:<44} {value:>10} {unit:<8} goal {goal:<10} {'OK' if ok else 'MISSED'}"


def one_scan_lo(out: Path, *, antennas: int, channels: int, seconds: float, project: str) -> list[str]:
    """Simulate a single scan of one LO (4 subband files) in the ATA layout under ``out``; its files."""
    from atarchive.simulate import preset, simulate

    spec = preset("tiny").model_copy(deep=True)
    spec.n_antennas = antennas
    spec.los = spec.los[:1]
    spec.los[0].subbands = 4
    spec.los[0].channels_per_subband = channels // 4
    spec.scans = [spec.scans[0].model_copy(update={"duration_s": seconds})]
    spec.project = project
    return [str(f) for f in simulate(spec, out).files]
