"""copy + compress (two steps: full-resolution MS, AOFlagger, mstransform) against one pass (uvh5 →
averaged MS, ``atarchive.casa.onepass``) on every scan-LO of a preset, serially, and peak memory.

Each mode runs in fresh processes the way the reconciler runs the units of one worker: copy's
conversions in one process (python-casacore), compress's in another (casatools), the one pass in
one. ``work_s`` is the time inside the calls (imports excluded), ``wall_s`` includes starting the
processes and their imports; ``peak_rss_mb`` is the largest VmHWM. Then the one pass alone on one
short and one 4× longer scan-LO with ``--chunk`` integrations per chunk: peak memory flat with scan
length. ``flag_s`` is the time inside ``aoflag.flag_baseline``, the same flagging in both paths: the
two steps' time over it is the most the one pass could gain without faster flagging.
Usage: python bench/onepass.py [--preset medium] [--chunk 6] [--before /path/to/main/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import line, one_scan_lo, save  # noqa: E402

GOAL = 2.0  # issue 15: one pass ≥ 2× faster than copy + compress


def _rss_mb() -> float:
    return next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:")) / 1024


def child(mode: str, jobs: list[dict], chunk: int) -> None:
    from atarchive.casa.child import cache_numba, offline_astropy

    offline_astropy()
    cache_numba()
    if mode == "compress":
        from atarchive.casa._casa import casa

        casa()
    from atarchive.casa import aoflag

    flag_s = [0.0]  # time inside aoflag.flag_baseline: the same flagging in both paths
    flag_baseline = aoflag.flag_baseline

    def timed(*a, **kw):
        t = time.perf_counter()
        try:
            return flag_baseline(*a, **kw)
        finally:
            flag_s[0] += time.perf_counter() - t

    aoflag.flag_baseline = timed  # both compress and the one pass call it through the module
    t0 = time.perf_counter()
    for j in jobs:
        if mode == "copy":
            from atarchive.casa.copy import uvh5_to_ms

            uvh5_to_ms(j["files"], j["full"], times_per_chunk=chunk or None)
        elif mode == "compress":
            from atarchive.casa.compress import compress

            compress(j["full"], j["two"], timebin_s=20.0, chanbin=4, flagger="auto")
            shutil.rmtree(j["full"])  # as compress's step does
        else:
            from atarchive.casa.onepass import uvh5_to_averaged_ms

            uvh5_to_averaged_ms(j["files"], j["one"], timebin_s=20.0, chanbin=4, flagger="auto",
                                times_per_chunk=chunk, scratch_ms=j["full"] + ".scratch")
    print(json.dumps({"work_s": time.perf_counter() - t0, "flag_s": flag_s[0], "peak_rss_mb": _rss_mb()}))


def _run(mode: str, jobs: list[dict], chunk: int, tmp: Path, src: str = "") -> dict:
    from atarchive.casa.site import child_env

    spec = tmp / f"{mode}.json"
    spec.write_text(json.dumps(jobs))
    env = child_env()
    if src:  # another atarchive source tree (e.g. main's checkout) for the two steps
        env["PYTHONPATH"] = src
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--child", mode, str(spec), "--chunk", str(chunk)],
                       capture_output=True, text=True, env=env, cwd=tmp)
    if r.returncode:
        raise SystemExit(f"{mode} failed:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t0
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--chunk", type=int, default=6, help="integrations per chunk (steps.copy.times_per_chunk)")
    ap.add_argument("--before", default="", help="atarchive source tree whose copy + compress are timed "
                                                 "(e.g. a checkout of main: today's two steps); default this one")
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], json.loads(Path(args.child[1]).read_text()), args.chunk)
        return 0
    from atarchive.simulate import preset, simulate

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        simulate(preset(args.preset), tmp / "storage")
        files = sorted(str(p) for p in (tmp / "storage").rglob("*.uvh5"))
        groups: dict[tuple[str, str], list[str]] = {}
        for f in files:
            p = Path(f)
            groups.setdefault((p.parent.parent.name, p.parent.name.split(".")[0]), []).append(f)
        (tmp / "ms").mkdir()
        jobs = [{"files": fs, "full": str(tmp / "ms" / f"{s}_{lo}.full.ms"), "two": str(tmp / "ms" / f"{s}_{lo}.two.ms"),
                 "one": str(tmp / "ms" / f"{s}_{lo}.one.ms")} for (s, lo), fs in sorted(groups.items())]
        nbytes = sum(os.path.getsize(f) for f in files)
        copy = _run("copy", jobs, 0, tmp, args.before)
        comp = _run("compress", jobs, 0, tmp, args.before)
        for j in jobs:
            shutil.rmtree(j["two"], ignore_errors=True)
        one = _run("onepass", jobs, 0, tmp)
        two_work, two_wall = copy["work_s"] + comp["work_s"], copy["wall_s"] + comp["wall_s"]
        # memory against scan length, chunked
        rss = {}
        for label, mult in (("short", 1), ("long_4x", 4)):
            fs = one_scan_lo(tmp / label, antennas=24, channels=512, seconds=60.0 * mult, project=f"op{label}")
            j = [{"files": fs, "full": str(tmp / f"{label}.full.ms"), "one": str(tmp / f"{label}.one.ms")}]
            rss[label] = _run("onepass", j, args.chunk, tmp)
    res = {"preset": args.preset, "two_steps_source": args.before or "this tree", "scan_los": len(jobs), "uvh5_mb": nbytes / 1e6, "copy": copy, "compress": comp,
           "one_pass": one, "two_steps_work_s": two_work, "two_steps_wall_s": two_wall,
           "speedup_work": two_work / one["work_s"], "speedup_wall": two_wall / one["wall_s"],
           "times_per_chunk": args.chunk, "rss_chunked": rss,
           "rss_ratio_long_to_short": rss["long_4x"]["peak_rss_mb"] / rss["short"]["peak_rss_mb"]}
    if one.get("flag_s"):  # Amdahl: the flagging both paths share bounds what the one pass can gain
        res["flag_share_of_one_pass"] = one["flag_s"] / one["work_s"]
        res["speedup_bound_flagging"] = two_work / one["flag_s"]
    save(f"onepass_{args.preset}", res)
    print(line(f"copy+compress, {args.preset} ({len(jobs)} scan-LOs)", f"{two_work:.1f}", "s", "-", True))
    print(line("one pass, same scan-LOs", f"{one['work_s']:.1f}", "s", "-", True))
    print(line("one pass speed-up (inside the calls)", f"{res['speedup_work']:.2f}", "x", f">= {GOAL}",
               res["speedup_work"] >= GOAL))
    print(line("one pass speed-up (with process start-up)", f"{res['speedup_wall']:.2f}", "x", f">= {GOAL}",
               res["speedup_wall"] >= GOAL))
    if one.get("flag_s"):
        print(line("  flagging (aoflag.flag_baseline), one pass / compress",
                   f"{one['flag_s']:.1f}/{comp.get('flag_s', 0):.1f}", "s", "-", True))
        print(line("  speed-up if all but flagging were free", f"{res['speedup_bound_flagging']:.2f}", "x", "-", True))
    print(line("peak RSS copy / compress / one pass", f"{copy['peak_rss_mb']:.0f}/{comp['peak_rss_mb']:.0f}/"
               f"{one['peak_rss_mb']:.0f}", "MB", "-", True))
    print(line(f"one pass peak RSS long/short, {args.chunk}-int chunks", f"{res['rss_ratio_long_to_short']:.2f}", "x",
               "<= 1.5", res["rss_ratio_long_to_short"] <= 1.5))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
