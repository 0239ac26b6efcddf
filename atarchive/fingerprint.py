"""Fingerprints: what a step run depends on, as a digest, and the reason two of them differ.

A fingerprint digests (step name, step version, params, input fingerprints, software versions).
Inputs are themselves fingerprints (of upstream units, or of source files' path/size/mtime), so a
change anywhere upstream changes every fingerprint downstream. Nothing here hashes MS contents.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import metadata

SOFTWARE = {
    "convert": ("pyuvdata", "python-casacore", "numpy"),
    "casa": ("casatools", "casatasks"),
    "report": ("casatools", "matplotlib", "astropy"),
    "bdsf": ("bdsf", "astropy"),
    "none": (),
}


@lru_cache(maxsize=None)
def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def software_versions(kind: str) -> dict[str, str]:
    return {name: package_version(name) for name in SOFTWARE[kind]}


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(*, step: str, version: int, params: dict, inputs: dict, versions: dict) -> str:
    payload = _canon({"step": step, "version": version, "params": params, "inputs": inputs, "versions": versions})
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def files_digest(files: list[dict]) -> str:
    """Fingerprint of source files from what the catalogue recorded (path, size, mtime)."""
    items = sorted((f["path"], f["size"], f["mtime"]) for f in files)
    return hashlib.sha256(_canon(items).encode()).hexdigest()[:20]


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def _short(v) -> str:
    s = v if isinstance(v, str) else _canon(v)
    return s if len(s) <= 40 else s[:37] + "..."


def explain_difference(step: str, old: dict, new: dict) -> str:
    """Human reason why a run with fingerprint parts ``old`` is out of date against ``new``.

    Both are dicts with keys version, params, inputs, versions (as stored in step_runs).
    """
    reasons = []
    if old["version"] != new["version"]:
        reasons.append(f"step version {old['version']}→{new['version']}")
    po, pn = _flatten(old["params"]), _flatten(new["params"])
    changed = [k for k in sorted(set(po) | set(pn)) if po.get(k, "∅") != pn.get(k, "∅")]
    if changed:
        reasons.append("params changed: " + ", ".join(
            f"{step}.{k} {_short(po.get(k, '∅'))}→{_short(pn.get(k, '∅'))}" for k in changed[:4]
        ) + (f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""))
    io, inn = old["inputs"], new["inputs"]
    names = sorted(set(io) | set(inn))
    diff_inputs = [n for n in names if io.get(n) != inn.get(n)]
    if diff_inputs:
        kinds = sorted({n.split(":", 1)[0] for n in diff_inputs})
        added = [n for n in diff_inputs if n not in io]
        removed = [n for n in diff_inputs if n not in inn]
        detail = []
        if added:
            detail.append(f"{len(added)} new")
        if removed:
            detail.append(f"{len(removed)} gone")
        reasons.append("input changed: " + ", ".join(kinds) + (f" ({', '.join(detail)})" if detail else ""))
    vo, vn = old["versions"], new["versions"]
    sw = [k for k in sorted(set(vo) | set(vn)) if vo.get(k) != vn.get(k)]
    if sw:
        reasons.append("software changed: " + ", ".join(f"{k} {vo.get(k, '∅')}→{vn.get(k, '∅')}" for k in sw))
    return "; ".join(reasons) or "fingerprint changed"
