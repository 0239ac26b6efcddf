"""A verdict on every session — pass, warn or fail, with the reasons — from documented rules whose limits
are the ``[qa]`` settings (docs/QA.md). Pure functions of plain facts (no CASA, no catalogue, no
plotting): the report step gathers the facts and stores the verdict with the QA page.

Each rule returns a list of findings ``{"rule", "level", "reason"}``; a rule with nothing to check
(no flux calibrator measured, no reference catalogue, no earlier session) finds nothing. The verdict
is the worst level found: ``fail`` for rules named in ``qa.fail_on``, ``warn`` for the others.
"""

from __future__ import annotations

import math
from statistics import median

RULES = ("flux_cal", "flagging", "rfi", "bandpass", "image_rms", "astrometry", "flux_scale", "phase_cal")
LEVELS = ("pass", "warn", "fail")


def _finding(rule: str, reason: str, fail_on) -> dict:
    return {"rule": rule, "level": "fail" if rule in fail_on else "warn", "reason": reason}


def flux_cal_rule(fluxes: list[dict], tolerance: float, fail_on=()) -> list[dict]:
    """Flux calibrator: measured / model within ``tolerance`` in every LO."""
    out = []
    for r in fluxes:
        if r.get("role") != "flux_cal" or not r.get("model_flux_jy") or r.get("flux_jy") is None:
            continue
        ratio = r["flux_jy"] / r["model_flux_jy"]
        if abs(ratio - 1.0) > tolerance:
            out.append(_finding("flux_cal", f"flux calibrator {r['field']} Lo{r['lo']}: measured/model {ratio:.3f} "
                                            f"(limit ±{tolerance:.0%})", fail_on))
    return out


def flagging_rule(scans: list[dict], limit: float, min_seconds: float = 0.0, fail_on=()) -> list[dict]:
    """Flagged fraction after calibration below ``limit`` in every scan at least ``min_seconds`` long
    (``scans``: {label, flagged, seconds}); shorter scans are not judged: flagging statistics on two or
    three averaged times flag their edges."""
    bad = [s for s in scans if s.get("flagged") is not None and s["flagged"] >= limit
           and (s.get("seconds") or 0.0) >= min_seconds]
    if not bad:
        return []
    worst = ", ".join(f"{s['label']} {s['flagged']:.0%}" for s in sorted(bad, key=lambda s: -s["flagged"])[:5])
    return [_finding("flagging", f"{len(bad)} scan(s) flagged ≥ {limit:.0%}: {worst}", fail_on)]


def _hot_channels(lo: str, chans: list[tuple[float, float]], excess: float, fail_on, where: str = "") -> dict | None:
    """The finding for LO ``lo`` when some of its channels are flagged ``excess`` above its median channel."""
    if not chans:
        return None
    med = median(f for _, f in chans)
    hot = [(hz, f) for hz, f in chans if f - med > excess]
    if not hot:
        return None
    lo_mhz, hi_mhz = min(h for h, _ in hot) / 1e6, max(h for h, _ in hot) / 1e6
    span = f"{lo_mhz:.1f} MHz" if hi_mhz - lo_mhz < 0.05 else f"{lo_mhz:.1f}–{hi_mhz:.1f} MHz"
    return _finding("rfi", f"RFI in Lo{lo}: {len(hot)} channel(s) at {span} flagged{where} up to "
                           f"{max(f for _, f in hot):.0%} (median channel {med:.0%})", fail_on)


def rfi_rule(channels: dict[str, list[tuple[float, float]]], excess: float, fail_on=(), *,
             fullres: dict[str, list[tuple[float, float]]] | None = None) -> list[dict]:
    """RFI: channels flagged more than ``excess`` above the LO's median channel (``channels``: LO →
    [(frequency Hz, flagged fraction)] after calibration and averaging), named by frequency range.
    ``fullres``: the same at full resolution, as the flagger left them before averaging (one flagged
    channel among those averaged together vanishes from the averaged data); an LO named there is not
    named again from the averaged channels."""
    found = {lo: f for lo, chans in sorted((fullres or {}).items())
             if (f := _hot_channels(lo, chans, excess, fail_on, " (full resolution)"))}
    for lo, chans in sorted(channels.items()):
        if lo not in found and (f := _hot_channels(lo, chans, excess, fail_on)):
            found[lo] = f
    return list(found.values())


def bandpass_rule(outliers: dict[str, dict[str, str]], max_outliers: int, fail_on=()) -> list[dict]:
    """At most ``max_outliers`` bandpass-outlier antennas (``outliers``: LO group → {antenna: why})."""
    ants: dict[str, str] = {}
    for g, bad in sorted(outliers.items()):
        for a, why in bad.items():
            ants.setdefault(a, f"{why}, group {g}")
    if len(ants) <= max_outliers:
        return []
    return [_finding("bandpass", f"bandpass-outlier antennas ({len(ants)} > {max_outliers}): "
                                 + "; ".join(f"{a} ({why})" for a, why in sorted(ants.items())), fail_on)]


def radiometer_rms_jy(*, sefd_jy: float, n_antennas: int, bandwidth_hz: float, seconds: float,
                      n_pol: int = 2, efficiency: float = 1.0) -> float | None:
    """Thermal noise of a naturally weighted Stokes I image: SEFD / (η √(n_pol N(N−1) Δν t))."""
    if n_antennas < 2 or bandwidth_hz <= 0 or seconds <= 0:
        return None
    return sefd_jy / (efficiency * math.sqrt(n_pol * n_antennas * (n_antennas - 1) * bandwidth_hz * seconds))


def image_rms_rule(images: list[dict], factor: float, fail_on=()) -> list[dict]:
    """Every target image's rms at most ``factor`` × its radiometer expectation
    (``images``: {field, lo, rms_jy, expected_rms_jy})."""
    out = []
    for im in images:
        rms, exp = im.get("rms_jy"), im.get("expected_rms_jy")
        if rms is None or not exp:
            continue
        if rms > factor * exp:
            out.append(_finding("image_rms", f"image {im['field']} Lo{im['lo']}: rms {rms * 1e3:.2f} mJy/beam = "
                                             f"{rms / exp:.1f} × the radiometer expectation (limit {factor:g}×)",
                                fail_on))
    return out


def reference_rules(checks: list[dict], max_offset_beams: float, flux_tolerance: float, fail_on=()) -> list[dict]:
    """Where a reference catalogue is set: median offset below ``max_offset_beams`` and median flux ratio
    within ``flux_tolerance`` of 1 in every image with matches (``checks``: {field, lo, reference})."""
    out = []
    for c in checks:
        ref = c.get("reference") or {}
        if not ref.get("matched"):
            continue
        where = f"{c['field']} Lo{c['lo']}"
        off = ref.get("median_offset_beams")
        if off is not None and off >= max_offset_beams:
            out.append(_finding("astrometry", f"{where}: median offset from the reference {off:.2f} beam "
                                              f"({ref['median_offset_arcsec']:.1f}″; limit {max_offset_beams:g} beam)",
                                fail_on))
        ratio = ref.get("median_flux_ratio")
        if ratio is not None and abs(ratio - 1.0) > flux_tolerance:
            out.append(_finding("flux_scale", f"{where}: median flux ratio to the reference {ratio:.3f} "
                                              f"(limit ±{flux_tolerance:.0%})", fail_on))
    return out


def phase_cal_rule(fluxes: list[dict], history: dict[str, list[float]], tolerance: float, fail_on=()) -> list[dict]:
    """Each phase calibrator's flux within ``tolerance`` of its median over earlier sessions
    (``history``: "field/LO" → earlier fluxes; none: nothing to compare)."""
    out = []
    for r in fluxes:
        if r.get("role") != "phase_cal" or r.get("flux_jy") is None:
            continue
        past = [v for v in history.get(f"{r['field']}/{r['lo']}", []) if v]
        if not past:
            continue
        med = median(past)
        if abs(r["flux_jy"] / med - 1.0) > tolerance:
            out.append(_finding("phase_cal", f"phase calibrator {r['field']} Lo{r['lo']}: {r['flux_jy']:.3f} Jy vs "
                                             f"median {med:.3f} Jy over {len(past)} earlier session(s) "
                                             f"(limit ±{tolerance:.0%})", fail_on))
    return out


def decide(findings: list[dict]) -> str:
    """The worst level of the findings (``pass`` when there are none)."""
    return max((f["level"] for f in findings), key=LEVELS.index, default="pass")


def session_verdict(facts: dict, qa: dict) -> dict:
    """Every rule on a session's facts with the ``[qa]`` limits: {verdict, reasons, findings}.

    facts: fluxes (flux rows), scans ([{label, flagged, seconds}]), channels and channels_fullres ({LO: [(Hz,
    flagged)]}), bandpass_outliers ({group: {ant: why}}),
    images ([{field, lo, rms_jy, expected_rms_jy}]), checks (source checks), phase_cal_history."""
    fo = tuple(qa.get("fail_on") or ())
    findings = (flux_cal_rule(facts.get("fluxes", []), qa["flux_cal_tolerance"], fo)
                + flagging_rule(facts.get("scans", []), qa["max_flagged_fraction"], qa["min_scan_seconds"], fo)
                + rfi_rule(facts.get("channels", {}), qa["rfi_channel_excess"], fo,
                           fullres=facts.get("channels_fullres"))
                + bandpass_rule(facts.get("bandpass_outliers", {}), qa["max_bandpass_outliers"], fo)
                + image_rms_rule(facts.get("images", []), qa["max_rms_factor"], fo)
                + reference_rules(facts.get("checks", []), qa["max_offset_beams"], qa["reference_flux_tolerance"], fo)
                + phase_cal_rule(facts.get("fluxes", []), facts.get("phase_cal_history", {}),
                                 qa["phase_cal_tolerance"], fo))
    return {"verdict": decide(findings), "reasons": [f["reason"] for f in findings], "findings": findings}
