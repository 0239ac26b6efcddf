"""Field roles, worked out from the data (pure functions, no CASA, no I/O).

* flux calibrator: position within tolerance of a Perley-Butler 2017 standard (names in the data can
  be anything: ``1331+305``, ``J1331+3030``, ``3c286``);
* phase calibrator: short scans revisited between other fields' scans, confirmed by the shipped
  calibrator list where the source is in it;
* target: everything else, paired with its nearest phase calibrator by angular distance and time.

A per-session override in the config wins over the automatic choice.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import median

from . import calibrators


@dataclass
class FieldRole:
    name: str
    role: str  # flux_cal | phase_cal | target
    reason: str
    matched: str | None = None
    separation_arcsec: float | None = None
    standard: str | None = None  # Perley-Butler 2017 name for flux calibrators
    phase_cal: str | None = None  # for targets
    visits: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Roles:
    fields: dict[str, FieldRole] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def names(self, role: str) -> list[str]:
        return sorted(n for n, r in self.fields.items() if r.role == role)

    def as_dict(self) -> dict:
        return {"fields": {n: r.as_dict() for n, r in sorted(self.fields.items())}, "warnings": self.warnings}


def angular_sep_deg(ra1, dec1, ra2, dec2) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    s = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(s))))


def visits(scans: list[dict]) -> list[tuple[str, float, float]]:
    """Collapse time-ordered scans into field visits: (field, start_mjd, end_mjd)."""
    out: list[list] = []
    for s in sorted(scans, key=lambda s: (s["start_mjd"] or 0, s["stem"])):
        f = s["field"]
        if f is None:
            continue
        if out and out[-1][0] == f:
            out[-1][2] = max(out[-1][2], s["end_mjd"] or out[-1][2])
        else:
            out.append([f, s["start_mjd"] or 0.0, s["end_mjd"] or s["start_mjd"] or 0.0])
    return [tuple(v) for v in out]


def identify(fields: list[dict], scans: list[dict], *, override=None, flux_tol_arcsec: float = 120.0,
             phase_tol_arcsec: float = 60.0) -> Roles:
    """Assign a role to every field. ``fields``: rows with name, ra_deg, dec_deg; ``scans``: rows with
    field, start_mjd, end_mjd, stem (already restricted to the scans in use)."""
    roles = Roles()
    pos = {f["name"]: (f["ra_deg"], f["dec_deg"]) for f in fields}
    vis = visits(scans)
    nvis: dict[str, int] = {}
    dur: dict[str, list[float]] = {}
    for name, t0, t1 in vis:
        nvis[name] = nvis.get(name, 0) + 1
        dur.setdefault(name, []).append((t1 - t0) * 86400.0)
    names = sorted(pos)
    ov = override
    # 1. flux calibrators by position
    for n in names:
        ra, dec = pos[n]
        if ov and ov.flux_cals is not None:
            if n in ov.flux_cals:
                std = calibrators.find_flux_calibrator(n)
                m = calibrators.match_flux_calibrator(ra, dec, tol_arcsec=flux_tol_arcsec) if ra is not None else None
                standard = (m[0].name if m else None) or (std.name if std else None)
                roles.fields[n] = FieldRole(n, "flux_cal", "set in config", standard, m[1] if m else None, standard,
                                            visits=nvis.get(n, 0))
            continue
        if ra is None:
            continue
        m = calibrators.match_flux_calibrator(ra, dec, tol_arcsec=flux_tol_arcsec)
        if m:
            cal, sep = m
            roles.fields[n] = FieldRole(n, "flux_cal", f"position matches {cal.name} (separation {sep:.1f}″)",
                                        cal.name, round(sep, 2), cal.name, visits=nvis.get(n, 0))
        else:
            byname = calibrators.find_flux_calibrator(n)
            if byname:
                roles.warnings.append(
                    f"field {n!r} is named like {byname.name} but is not at its position: not used as flux calibrator")
    # 2. phase calibrators
    rest = [n for n in names if n not in roles.fields]
    if ov and ov.phase_cals is not None:
        for n in rest:
            if n in ov.phase_cals:
                roles.fields[n] = FieldRole(n, "phase_cal", "set in config", visits=nvis.get(n, 0))
    else:
        for n in rest:
            ra, dec = pos[n]
            listed = calibrators.match_phase_calibrator(ra, dec, tol_arcsec=phase_tol_arcsec) if ra is not None else None
            pattern = _revisited_short(n, vis, dur, roles)
            if listed and (pattern or nvis.get(n, 0) >= 1):
                cal, sep = listed
                why = f"in calibrator list as {cal.name} (separation {sep:.1f}″)"
                if pattern:
                    why += f"; {pattern}"
                roles.fields[n] = FieldRole(n, "phase_cal", why, cal.name, round(sep, 2), visits=nvis.get(n, 0))
            elif pattern:
                roles.fields[n] = FieldRole(n, "phase_cal", f"{pattern} (not in calibrator list)",
                                            visits=nvis.get(n, 0))
    # 3. targets, paired with the nearest phase calibrator
    pcs = roles.names("phase_cal")
    for n in names:
        if n in roles.fields:
            continue
        if ov and ov.targets is not None and n not in ov.targets:
            roles.warnings.append(f"field {n!r} has no role in the config override: ignored")
            continue
        reason = "set in config" if ov and ov.targets is not None else "not a calibrator"
        fr = FieldRole(n, "target", reason, visits=nvis.get(n, 0))
        if pcs:
            fr.phase_cal = _nearest(n, pcs, pos, vis)
            if pos[n][0] is not None and pos[fr.phase_cal][0] is not None:
                fr.separation_arcsec = round(angular_sep_deg(*pos[n], *pos[fr.phase_cal]) * 3600.0, 1)
        else:
            roles.warnings.append(f"target {n!r} has no phase calibrator")
        roles.fields[n] = fr
    if not roles.names("flux_cal"):
        roles.warnings.append("no flux calibrator identified (no field within "
                              f"{flux_tol_arcsec:.0f}″ of a Perley-Butler 2017 standard)")
    return roles


def _revisited_short(n: str, vis, dur, roles: Roles) -> str | None:
    """Describe the scan pattern that makes ``n`` look like a phase calibrator, or None."""
    idx = [i for i, v in enumerate(vis) if v[0] == n]
    if len(idx) < 2:
        return None
    neighbours = set()
    for i in idx:
        for j in (i - 1, i + 1):
            if 0 <= j < len(vis) and vis[j][0] != n and vis[j][0] not in roles.fields:
                neighbours.add(vis[j][0])
    if not neighbours:
        return None
    between = any(vis[j][0] in neighbours for a, b in zip(idx, idx[1:]) for j in range(a + 1, b))
    if not between:
        return None
    mine = median(dur[n])
    theirs = median([d for m in neighbours for d in dur[m]])
    if mine < theirs:
        return f"revisited {len(idx)}× between scans of {', '.join(sorted(neighbours))} with shorter scans"
    return None


def _nearest(n: str, pcs: list[str], pos, vis) -> str:
    """Nearest phase calibrator by angle; ties (within 1°) broken by time between visits."""
    mid = [0.5 * (a + b) for f, a, b in vis if f == n]

    def time_gap(pc):
        pts = [0.5 * (a + b) for f, a, b in vis if f == pc]
        if not mid or not pts:
            return math.inf
        return median(min(abs(t - p) for p in pts) for t in mid)

    def sep(pc):
        if pos[n][0] is None or pos[pc][0] is None:
            return math.inf
        return angular_sep_deg(*pos[n], *pos[pc])

    return min(pcs, key=lambda pc: (round(sep(pc)), time_gap(pc), pc))
