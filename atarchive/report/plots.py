"""The report's figures. Each function draws one PNG from plain arrays (no CASA, no catalogue).

Matplotlib's object API only (no pyplot state), so figures can be drawn from reconciler threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

C = 299792458.0
DPI = 90


def _fig(w: float = 7.0, h: float = 4.0, rows: int = 1, cols: int = 1, **kw):
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    return fig, axes


def _save(fig, path: Path, tight: bool = False) -> Path:
    path = Path(path)
    fig.savefig(path, format="png", **({"bbox_inches": "tight", "pad_inches": 0.05} if tight else {}))
    return path


def uv_coverage(uv_by_lo: dict[str, tuple[np.ndarray, float]], path: Path) -> Path:
    """u,v (kλ at the LO centre) per LO, both halves of the plane."""
    fig, axes = _fig(3.6 * max(1, len(uv_by_lo)), 3.8, 1, max(1, len(uv_by_lo)))
    for ax, (lo, (uv, freq)) in zip(axes[0], sorted(uv_by_lo.items())):
        k = np.asarray(uv, dtype=float) * freq / C / 1e3
        ax.plot(k[:, 0], k[:, 1], ",", color="tab:blue", alpha=0.6)
        ax.plot(-k[:, 0], -k[:, 1], ",", color="tab:orange", alpha=0.6)
        lim = float(np.abs(k).max()) * 1.05 if k.size else 1.0
        ax.set(xlim=(lim, -lim), ylim=(-lim, lim), aspect="equal", xlabel="u (kλ)", ylabel="v (kλ)",
               title=f"Lo{lo} at {freq / 1e6:.0f} MHz")
    return _save(fig, path)


def elevations(tracks: list[dict], spans: list[dict], path: Path) -> Path:
    """Elevation and parallactic angle against time per field; observed scans drawn thick.
    ``tracks``: {field, hours, el, pa}; ``spans``: {field, hours, el, pa} for the scans."""
    fig, axes = _fig(7.5, 5.0, 2, 1, sharex=True)
    colors = {}
    for tr in tracks:
        (line,) = axes[0][0].plot(tr["hours"], tr["el"], lw=0.8, alpha=0.5)
        colors[tr["field"]] = line.get_color()
        axes[1][0].plot(tr["hours"], tr["pa"], lw=0.8, alpha=0.5, color=line.get_color())
    labelled = set()
    for sp in spans:
        c = colors.get(sp["field"])
        lab = None if sp["field"] in labelled else sp["field"]
        labelled.add(sp["field"])
        axes[0][0].plot(sp["hours"], sp["el"], lw=3, color=c, label=lab)
        axes[1][0].plot(sp["hours"], sp["pa"], lw=3, color=c)
    axes[0][0].set(ylabel="elevation (deg)", ylim=(0, 90))
    axes[0][0].axhline(16.5, color="grey", ls=":", lw=0.8)  # ATA elevation limit
    axes[1][0].set(ylabel="parallactic angle (deg)", xlabel="hours since session start (UTC)", ylim=(-180, 180))
    if labelled:
        axes[0][0].legend(fontsize=7, loc="best")
    return _save(fig, path)


def timeline(scans: list[dict], path: Path) -> Path:
    """One bar per scan: field on the y axis, time on x, colour = flagged fraction."""
    import matplotlib as mpl

    fields = list(dict.fromkeys(s["field"] for s in scans))
    fig, axes = _fig(7.5, 0.9 + 0.35 * max(1, len(fields)))
    ax = axes[0][0]
    cmap = mpl.colormaps["RdYlGn_r"]
    for s in scans:
        y = fields.index(s["field"])
        f = s.get("flagged")
        ax.barh(y, s["end_h"] - s["start_h"], left=s["start_h"], height=0.6,
                color=cmap(f) if f is not None else "lightgrey", edgecolor="black", lw=0.5)
        ax.text(s["start_h"], y + 0.38, f"{s['scan']}" + (f" {f:.0%}" if f is not None else ""), fontsize=6)
    ax.set_yticks(range(len(fields)), fields, fontsize=8)
    ax.set(xlabel="hours since session start (UTC)", ylim=(-0.6, len(fields) - 0.2))
    sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=cmap)
    fig.colorbar(sm, ax=ax, label="flagged fraction", fraction=0.04)
    return _save(fig, path)


def bandpass(freqs_mhz: np.ndarray, amp: np.ndarray, phase: np.ndarray, names: list[str],
             outliers: dict[int, str], path: Path, title: str) -> Path:
    """Bandpass amplitude and phase per antenna (rows of amp/phase); outliers thick and named."""
    fig, axes = _fig(7.5, 5.0, 2, 1, sharex=True)
    for i, name in enumerate(names):
        bad = i in outliers
        kw = dict(lw=2.0 if bad else 0.7, alpha=1.0 if bad else 0.6, color="red" if bad else None,
                  label=f"{name}: {outliers[i]}" if bad else None)
        axes[0][0].plot(freqs_mhz, amp[i], **kw)
        kw.pop("label")
        axes[1][0].plot(freqs_mhz, phase[i], ".", ms=2 if not bad else 4, **{k: v for k, v in kw.items() if k != "lw"})
    axes[0][0].set(ylabel="amplitude", title=title)
    lim = float(np.nanmax(np.abs(phase))) if np.isfinite(phase).any() else 0.0
    lim = min(180.0, max(10.0, 1.2 * lim))  # small residual phases stay visible
    axes[1][0].set(ylabel="phase (deg)", xlabel="frequency (MHz)", ylim=(-lim, lim))
    if outliers:
        axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def gains(hours: np.ndarray, amp: np.ndarray, phase: np.ndarray, names: list[str], path: Path, title: str) -> Path:
    """Gain amplitude and phase against time, one line per antenna (columns of amp/phase)."""
    fig, axes = _fig(7.5, 5.0, 2, 1, sharex=True)
    for i, name in enumerate(names):
        (ln,) = axes[0][0].plot(hours, amp[:, i], "o-", ms=3, lw=0.7, label=name)
        axes[1][0].plot(hours, phase[:, i], "o-", ms=3, lw=0.7, color=ln.get_color())
    axes[0][0].set(ylabel="amplitude", title=title)
    axes[1][0].set(ylabel="phase (deg)", xlabel="hours since session start (UTC)", ylim=(-180, 180))
    axes[0][0].legend(fontsize=6, ncol=min(6, max(1, len(names))), loc="best")
    return _save(fig, path)


def flux_vs_model(points: list[dict], models: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """Measured calibrator flux densities (points: field, freq_hz, flux_jy, err) and model curves."""
    fig, axes = _fig(6.5, 4.0)
    ax = axes[0][0]
    for name, (f, s) in models.items():
        ax.plot(f / 1e6, s, "-", lw=1, label=f"{name} Perley-Butler 2017")
    for name in dict.fromkeys(p["field"] for p in points):
        pts = [p for p in points if p["field"] == name]
        ax.errorbar([p["freq_hz"] / 1e6 for p in pts], [p["flux_jy"] for p in pts],
                    yerr=[p.get("flux_err_jy") or 0 for p in pts], fmt="o", ms=5, label=f"{name} measured")
    ax.set(xlabel="frequency (MHz)", ylabel="flux density (Jy)", xscale="log", yscale="log")
    plain_log_axes(ax)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plain_log_axes(ax, which: str = "xy") -> None:
    """Log axes labelled in plain numbers (15, 20, 1400), not 1.5×10¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    def fmt(v, _pos):
        return f"{v:g}"

    for name in which:
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_major_formatter(FuncFormatter(fmt))
        axis.set_minor_locator(LogLocator(subs=(2.0, 3.0, 5.0)))
        axis.set_minor_formatter(FuncFormatter(fmt))


def image_norm(rms: float, peak: float):
    """An asinh stretch from -5 rms to the peak: the noise and the artefacts around the rms are visible
    while the brightest source is not saturated."""
    from astropy.visualization import AsinhStretch, ImageNormalize

    rms = abs(float(rms)) or 1e-6
    vmin, vmax = -5.0 * rms, max(float(peak), 10.0 * rms)
    a = min(1.0, max(1e-4, 10.0 * rms / (vmax - vmin)))
    return ImageNormalize(vmin=vmin * 1e3, vmax=vmax * 1e3, stretch=AsinhStretch(a=a))


def sky_panels(panels: list[dict], path: Path, norm, title: str = "") -> Path:
    """Images on the sky side by side, one colour scale (``norm``, in mJy/beam) and colourbar.
    Each panel: ``data`` (Jy/beam, 2-D), ``wcs`` (celestial), ``title``, ``beam`` (major, minor in pixels,
    PA in degrees) drawn bottom left, optional ``box`` (x0, x1, y0, y1) pixels to zoom on."""
    from matplotlib.patches import Ellipse

    n = len(panels)
    fig = Figure(figsize=(3.1 * n + 1.0, 3.4), dpi=DPI, layout="compressed")
    FigureCanvasAgg(fig)
    im = None
    for i, p in enumerate(panels):
        ax = fig.add_subplot(1, n, i + 1, projection=p["wcs"])
        d = np.asarray(p["data"], dtype=float) * 1e3
        im = ax.imshow(d, origin="lower", cmap="inferno", norm=norm, interpolation="nearest")
        x0, x1, y0, y1 = p.get("box") or (0, d.shape[1] - 1, 0, d.shape[0] - 1)
        ax.set_xlim(x0 - 0.5, x1 + 0.5)
        ax.set_ylim(y0 - 0.5, y1 + 0.5)
        if p.get("beam"):
            bmaj, bmin, pa = p["beam"]
            span = max(x1 - x0, y1 - y0)
            off = 0.08 * span + bmaj / 2
            ax.add_patch(Ellipse((x0 + off, y0 + off), bmin, bmaj, angle=pa, fill=False, color="cyan", lw=1.2))
        ax.set_title(p.get("title", ""), fontsize=8)
        ra, dec = ax.coords[0], ax.coords[1]
        ra.set_axislabel("RA (J2000)", fontsize=7)
        dec.set_axislabel("Dec (J2000)" if i == 0 else " ", fontsize=7)
        ra.set_ticklabel(size=6)
        dec.set_ticklabel(size=6)
        ra.set_major_formatter("hh:mm")
        dec.set_major_formatter("dd:mm")
    fig.colorbar(im, ax=fig.axes, label="mJy/beam", shrink=0.85)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path, tight=True)  # square sky panels: no empty band under them


def flux_trend(series: dict[str, list[tuple[float, float, float]]], path: Path, title: str) -> Path:
    """Measured/model flux ratio against time (MJD) per LO: (mjd, ratio, err)."""
    fig, axes = _fig(7.0, 3.8)
    ax = axes[0][0]
    for lo, pts in sorted(series.items()):
        pts = sorted(pts)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], fmt="o-", ms=4, label=f"Lo{lo}")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xlabel="session start (MJD)", ylabel="measured / model", title=title)
    ax.legend(fontsize=7)
    return _save(fig, path)
