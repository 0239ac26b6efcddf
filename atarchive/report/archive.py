"""The archive's site (``atarchive site``): static, offline HTML over every session — an index (state,
verdict, LOs, fields, a link to each QA page), calibrator flux density over time per calibrator and LO,
and per-antenna health across sessions (unflagged fraction after calibration, gain amplitude against
the array median, bandpass-outlier marks), so a failing antenna shows as a streak.

Drawn from plain data (:func:`atarchive.queries.site_data`); matplotlib's object API only.
"""

from __future__ import annotations

import os
import time
from html import escape
from pathlib import Path

import numpy as np

from .. import naming
from .page import CSS, _table, _when
from .plots import _fig, _save


def _mjd_label(mjd: float | None) -> str:
    if mjd is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime((mjd - 40587.0) * 86400.0))


def flux_over_time(series: dict[str, list[tuple[float, float, float | None]]], title: str, path: Path) -> Path:
    """One calibrator: flux density against session start, one line per LO ({LO: [(mjd, flux, err)]})."""
    fig, ax = _fig(7.0, 3.2)
    a = ax[0, 0]
    for lo, pts in sorted(series.items()):
        pts = sorted(pts)
        t = np.array([p[0] for p in pts])
        f = np.array([p[1] for p in pts])
        e = np.array([p[2] or 0.0 for p in pts])
        a.errorbar(t - (t.min() if t.size else 0), f, yerr=e, marker="o", ms=4, capsize=2, label=f"Lo{lo}")
    a.set_xlabel("days since first session")
    a.set_ylabel("flux density (Jy)")
    a.set_title(title)
    a.legend(fontsize=8)
    return _save(fig, path)


def health_heatmap(antennas: list[str], sessions: list[str], unflagged: np.ndarray, gain_rel: np.ndarray,
                   outlier: np.ndarray, path: Path) -> Path:
    """Antenna × session: unflagged fraction after calibration and gain amplitude / array median, with
    bandpass outliers marked ×. Arrays are (n_antennas, n_sessions), NaN where unknown."""
    h = max(3.0, 0.22 * len(antennas) + 1.8)
    fig, ax = _fig(max(7.0, 0.5 * len(sessions) * 2 + 3), h, 1, 2)
    panels = [(unflagged, "unflagged fraction after calibration", "viridis", (0.0, 1.0)),
              (gain_rel, "gain amplitude / array median", "coolwarm", (0.0, 2.0))]
    for a, (data, title, cmap, (lo, hi)) in zip(ax[0], panels):
        im = a.imshow(np.ma.masked_invalid(data), aspect="auto", cmap=cmap, vmin=lo, vmax=hi,
                      interpolation="nearest")
        a.set_title(title, fontsize=9)
        a.set_yticks(range(len(antennas)), antennas, fontsize=7)
        a.set_xticks(range(len(sessions)), [str(i + 1) for i in range(len(sessions))], fontsize=7)
        a.set_xlabel("session (index table)")
        ys, xs = np.nonzero(outlier)
        a.scatter(xs, ys, marker="x", c="red", s=30, linewidths=1.5)  # bandpass outliers (the caption says so)
        fig.colorbar(im, ax=a, shrink=0.8)
    ax[0, 0].set_ylabel("antenna")
    return _save(fig, path)


def write_site(data: dict, out: Path) -> dict:
    """Write ``out/index.html`` and its figures from :func:`atarchive.queries.site_data`; links to each
    session's QA page are relative, so the directory works from file:// and can be copied with the
    work root. Returns {path, figures, seconds}."""
    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    e = escape
    figures: list[tuple[str, str]] = []
    sessions = data["sessions"]
    # calibrator flux over time
    for name, series in sorted(data["calibrators"].items()):
        fname = f"flux_{naming.safe(name)}.png"
        flux_over_time(series, f"{name}", out / fname)
        figures.append((fname, f"{name}: flux density per session and LO"))
    # health heatmap
    h = data["health"]
    if h["antennas"] and h["sessions"]:
        idx = {k: i for i, k in enumerate(h["sessions"])}
        shape = (len(h["antennas"]), len(h["sessions"]))
        unfl, gain, bad = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape, bool)
        for i, ant in enumerate(h["antennas"]):
            for key, v in h["values"].get(ant, {}).items():
                j = idx[key]
                unfl[i, j] = np.nan if v.get("unflagged") is None else v["unflagged"]
                gain[i, j] = np.nan if v.get("gain_rel") is None else v["gain_rel"]
                bad[i, j] = bool(v.get("bandpass_outlier"))
        health_heatmap(h["antennas"], h["sessions"], unfl, gain, bad, out / "health.png")
        figures.append(("health.png", "Per-antenna health across sessions (columns: sessions in the index order; "
                                      "× bandpass outlier)"))
    rows = []
    for i, s in enumerate(sessions):
        link = (f"<a href='{e(os.path.relpath(s['report'], out))}'>QA page</a>" if s.get("report") else "")
        v = s.get("verdict") or ""
        rows.append([str(i + 1) if s["key"] in h["sessions"] else "", e(s["key"]), e(_mjd_label(s.get("start_mjd"))),
                     e(s["state"]), f"<span class='verdict-{e(v)}'>{e(v)}</span>" if v else "",
                     e("; ".join(s.get("verdict_reasons") or [])), e(", ".join(s["los"])), e(", ".join(s["fields"])),
                     link])
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>atarchive: the archive</title>",
             f"<style>{CSS} td .verdict-pass{{color:#2e9e44}} td .verdict-warn{{color:#c07000}} "
             f"td .verdict-fail{{color:#d03030}} .site figure{{margin:.5em 0}} .site img{{max-width:100%}}</style></head><body>",
             "<h1>The archive</h1>",
             f"<p class='muted'>{len(sessions)} session(s) · site made {e(_when(time.time()))}</p>",
             "<h2>Sessions</h2>",
             _table(["#", "session", "start (UTC)", "state", "verdict", "reasons", "LOs", "fields", "report"], rows)]
    if figures:
        parts.append("<h2>Calibrators and antennas</h2><div class='site'>")
        for f, cap in figures:
            parts.append(f"<figure><a href='{e(f)}'><img src='{e(f)}' alt='{e(cap)}'></a>"
                         f"<figcaption>{e(cap)}</figcaption></figure>")
        parts.append("</div>")
    else:
        parts.append("<p class='muted'>no calibrated session yet</p>")
    parts.append("</body></html>\n")
    (out / "index.html").write_text("\n".join(parts), encoding="utf-8")
    return {"path": str(out / "index.html"), "figures": [f for f, _ in figures], "sessions": len(sessions),
            "seconds": round(time.time() - t0, 3)}
