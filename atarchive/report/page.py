"""The report page: one static HTML file, inline CSS, no scripts and nothing fetched from elsewhere.
Every value from the catalogue is escaped (field names are user data)."""

from __future__ import annotations

import json
import os
import time
from html import escape
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3} .ok{color:#137333} .failed{color:#c5221f;font-weight:bold} .running{color:#b06000}
.mono{font-family:ui-monospace,monospace;font-size:.9em} .muted{color:#777}
figure{display:inline-block;margin:.5em;vertical-align:top} figcaption{font-size:.8em;max-width:680px}
.thumbs figure{width:900px;max-width:95vw} .thumbs img{width:100%} img{max-width:100%;border:1px solid #eee}
.verdict{padding:.5em .9em;margin:.6em 0;border-left:6px solid} .verdict ul{margin:.3em 0}
.verdict-pass{background:#e8f6ea;border-color:#2e9e44} .verdict-warn{background:#fff4e5;border-color:#f0a020}
.verdict-fail{background:#fde8e8;border-color:#d03030}
.note{background:#fff4e5;border-left:4px solid #f0a020;padding:.4em .8em;margin:.4em 0}
"""

SECTIONS = ("Observation", "Calibration", "Self-calibration", "Images")


def _rel(path: str | None, final_dir: Path) -> str | None:
    if not path:
        return None
    try:
        return os.path.relpath(path, final_dir)
    except ValueError:
        return None


def _link(path: str | None, final_dir: Path, text: str | None = None) -> str:
    rel = _rel(path, final_dir)
    if rel is None:
        return ""
    return f'<a href="{escape(rel)}">{escape(text or os.path.basename(str(path)) or str(path))}</a>'


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _selfcal_rounds(data: dict) -> str:
    """One table per target and LO: every self-calibration round with its figures and the guard's word."""
    e = escape
    out = []
    for p in data["products"]:
        if p["kind"] != "selfcal":
            continue
        meta = json.loads(p["meta"] or "{}")
        rows = [[str(r["round"]), e(str(r.get("calmode") or "1GC")), e(str(r.get("solint") or "")),
                 f"{r['rms_jy'] * 1e3:.2f}", f"{r['peak_jy']:.4f}", f"{r['dynamic_range']:.0f}" if r.get(
                     "dynamic_range") else "", f"{r.get('flagged_fraction', 0):.0%}",
                 "kept" if r.get("kept") else "<span class='failed'>not kept</span>", e(r.get("why") or "")]
                for r in meta.get("rounds", [])]
        out.append(f"<h3>{e(str(meta.get('field', p['unit'])))} Lo{e(str(meta.get('lo', '')))}</h3>"
                   f"<p>{e(str(meta.get('rounds_kept', 0)))} round(s) kept; mask: {e(str(meta.get('mask')))}; "
                   f"{e(str(meta.get('stop_reason', '')))}</p>"
                   + _table(["round", "mode", "solint", "rms (mJy/beam)", "peak (Jy/beam)", "DR",
                             "solutions flagged", "guard", "why"], rows))
    return "\n".join(out)
def verdict_block(verdict: dict | None) -> str:
    """The verdict at the top of the page: pass / warn / fail and every reason (atarchive.verdict)."""
    if not verdict:
        return ""
    v = verdict["verdict"]
    reasons = "".join(f"<li>{escape(r)}</li>" for r in verdict["reasons"])
    return (f"<div class='verdict verdict-{escape(v)}' id='verdict'><b>verdict: {escape(v)}</b>"
            + (f"<ul>{reasons}</ul>" if reasons else " — every QA rule passed") + "</div>")


def sources_section(data: dict) -> str:
    """The sources found in each target image (PyBDSF) and the reference-catalogue check."""
    e = escape
    checks = data.get("source_checks") or []
    if not checks:
        return ""
    parts = ["<h2>Sources</h2>"]
    crow = []
    for c in checks:
        r = c.get("reference") or {}
        crow.append([e(c["field"]), e(c["lo"]), str(c["n_sources"]), str(r.get("matched", "")),
                     f"{r['median_offset_arcsec']:.1f} ({r['median_offset_beams']:.2f} beam)"
                     if r.get("median_offset_arcsec") is not None else "",
                     f"{r['offset_scatter_arcsec']:.1f}" if r.get("offset_scatter_arcsec") is not None else "",
                     f"{r['median_flux_ratio']:.3f} ± {r['flux_ratio_scatter']:.3f}"
                     if r.get("median_flux_ratio") is not None else ""])
    parts.append(_table(["field", "LO", "sources", "matched to reference", "median offset (″)", "scatter (″)",
                         "flux ratio"], crow))
    rows = [[e(r["field"]), e(r["lo"]), f"{r['ra_deg']:.5f}", f"{r['dec_deg']:+.5f}",
             f"{r['flux_jy']:.4f} ± {r['flux_err_jy']:.4f}", f"{r['peak_jy']:.4f}",
             f"{r['major_arcsec']:.0f} × {r['minor_arcsec']:.0f}, {r['pa_deg']:.0f}°",
             f"{r['snr']:.0f}" if r.get("snr") else "", "pbcor" if r.get("pbcor") else "restored"]
            for r in (data.get("sources") or [])[:200]]
    parts.append("<div id='sources'>" + _table(["field", "LO", "RA (deg)", "Dec (deg)", "flux (Jy)", "peak (Jy/beam)",
                                                "shape (″ × ″, PA)", "S/N", "image"], rows) + "</div>")
    return "\n".join(parts)


def render(data: dict, figures: list[dict], *, notes: list[str], outliers: dict, final_dir: Path,
           created: float, verdict: dict | None = None) -> str:
    s = data["session"]
    e = escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>atarchive report: {e(s['key'])}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>{e(s['key'])}</h1>",
             f"<p class='muted'>storage: <span class='mono'>{e(s['path'])}</span> · layout {e(str(s['layout']))} · "
             f"report made {e(_when(created))}</p>", verdict_block(verdict)]
    if s.get("error"):
        parts.append(f"<p class='note'>session error: {e(s['error'])}</p>")
    for n in notes:
        parts.append(f"<p class='note'>{e(n)}</p>")

    # summary: LOs, fields and roles
    los = [[e(lo["name"]), f"{(lo['freq_start_hz'] or 0) / 1e6:.1f}–{(lo['freq_end_hz'] or 0) / 1e6:.1f}",
            str(lo["nchan"] or ""), str(lo["nsubbands"] or "")] for lo in data["los"]]
    parts.append("<h2>Summary</h2>" + _table(["LO", "frequency (MHz)", "channels", "subbands"], los))
    roles = (data["roles"] or {}).get("fields") or {}
    frows = []
    for f in data["fields"]:
        r = roles.get(f["name"], {})
        frows.append([e(f["name"]), f"{f['ra_deg']:.5f}" if f["ra_deg"] is not None else "",
                      f"{f['dec_deg']:.5f}" if f["dec_deg"] is not None else "", e(r.get("role") or ""),
                      e(r.get("reason") or ""), e(r.get("phase_cal") or "")])
    parts.append(_table(["field", "RA (deg)", "Dec (deg)", "role", "why", "phase calibrator"], frows))
    if (data["roles"] or {}).get("error"):
        parts.append(f"<p class='note'>roles: {e(data['roles']['error'])}</p>")
    cal = next((r for r in data["runs"] if r["step"] == "calibrate" and r["status"] == "done"), None)
    if cal and cal.get("result"):
        res = json.loads(cal["result"])
        parts.append(f"<p>reference antenna <b>{e(str(res.get('refant_name')))}</b> ({e(str(res.get('refant_reason')))})"
                     + (f"; excluded: {e(', '.join(res.get('excluded_antennas') or []))}"
                        if res.get("excluded_antennas") else "") + "</p>")

    for section in SECTIONS:
        figs = [f for f in figures if f["section"] == section]
        if not figs and section != "Images":
            continue
        parts.append(f"<h2>{section}</h2>")
        if section == "Calibration" and outliers:
            for g, bad in sorted(outliers.items()):
                if bad:
                    parts.append("<p class='note'>bandpass outliers, group " + e(g) + ": "
                                 + e("; ".join(f"{a} ({why})" for a, why in bad.items())) + "</p>")
                else:
                    parts.append(f"<p>bandpass, group {e(g)}: no antenna stands out</p>")
        if section == "Self-calibration":
            parts.append(_selfcal_rounds(data))
        if section == "Images":
            if not figs:
                parts.append("<p class='muted'>no images yet</p>")
            parts.append("<div class='thumbs'>")
        for f in figs:
            img = f"<img src='{e(f['file'])}' alt='{e(f['caption'])}'>"
            if f.get("link"):
                img = f"<a href='{e(f['link'])}'>{img}</a>"
            parts.append(f"<figure>{img}<figcaption>{e(f['caption'])}</figcaption></figure>")
        if section == "Images":
            parts.append("</div>")

    if data.get("images"):
        rows = [[e(r["field"]), e(r["lo"]), e(r["kind"]), f"{r['rms_jy'] * 1e3:.2f}" if r["rms_jy"] else "",
                 f"{r['peak_jy']:.4f}" if r["peak_jy"] is not None else "",
                 f"{r['dynamic_range']:.0f}" if r["dynamic_range"] else "",
                 f"{r['beam_major_arcsec']:.0f}″ × {r['beam_minor_arcsec']:.0f}″" if r["beam_major_arcsec"] else "",
                 str(r["selfcal_rounds"]), e(r["mask"] or ""), _link(r["path"], final_dir, "FITS")]
                for r in data["images"]]
        parts.append("<h2>Image metrics</h2>" + _table(
            ["field", "LO", "kind", "rms (mJy/beam)", "peak (Jy/beam)", "DR", "beam", "self-cal rounds", "mask",
             "file"], rows))

    if data["fluxes"]:
        rows = []
        for r in data["fluxes"]:
            ratio = r["flux_jy"] / r["model_flux_jy"] if r["model_flux_jy"] and r["flux_jy"] else None
            rows.append([e(r["field"]), e(r["role"] or ""), e(r["lo"] or ""), f"{(r['freq_hz'] or 0) / 1e6:.1f}",
                         f"{r['flux_jy']:.4f}" if r["flux_jy"] is not None else "",
                         f"{r['flux_err_jy']:.4f}" if r["flux_err_jy"] is not None else "",
                         f"{r['rms_jy'] * 1e3:.2f}" if r["rms_jy"] is not None else "",
                         f"{r['model_flux_jy']:.4f}" if r["model_flux_jy"] else "", f"{ratio:.3f}" if ratio else "",
                         f"{r['ra_deg']:.6f}, {r['dec_deg']:.6f}" if r["ra_deg"] is not None else ""])
        parts.append("<h2>Flux densities</h2>" + _table(
            ["field", "role", "LO", "freq (MHz)", "flux (Jy)", "± (Jy)", "rms (mJy/beam)", "model (Jy)",
             "ratio", "position (deg)"], rows))

    parts.append(sources_section(data))
    rows = []
    for r in data["runs"]:
        dur = f"{r['finished'] - r['started']:.1f} s" if r["finished"] and r["started"] else ""
        cls = {"done": "ok", "failed": "failed", "running": "running"}.get(r["status"], "")
        rows.append([e(r["step"]), e(r["unit"]), f"<span class='{cls}'>{e(r['status'])}</span>",
                     f"<span class='mono'>{e(r['fingerprint'][:12])}</span>", e(_when(r["started"])), dur,
                     e(r["reason"]), e((r["error"] or "")[:300]), _link(r["log_path"], final_dir, "log")])
    parts.append("<h2>Steps</h2><p class='muted'>newest run of every step and unit; the reason is why it ran</p>"
                 + _table(["step", "unit", "status", "fingerprint", "started", "duration", "reason", "error", "log"],
                          rows))
    # a product removed since (the full-resolution MS once compress has averaged it) is named, not linked
    prows = [[e(p["step"]), e(p["unit"]), e(p["kind"]),
              _link(p["path"], final_dir, p["path"]) if os.path.exists(p["path"])
              else f"{e(p['path'])} <span class='muted'>(removed)</span>"] for p in data["products"]]
    if prows:
        parts.append("<h2>Products</h2>" + _table(["step", "unit", "kind", "path"], prows))
    parts.append("</body></html>\n")
    return "\n".join(parts)
