"""Why a calibrator cannot be calibrated, measured on its visibilities (issue #13).

When gaincal/bandpass give no solutions the cause is measured on the flux calibrator's unflagged
cross-correlations (parallel hands, DATA column) instead of guessed:

* how much is unflagged, and how much of that is exactly 0 or purely imaginary (corrupt values);
* closure phases: a point-like calibrator gives closure phases near 0 whatever the antenna gains
  and delays are; random closure phases (median |closure| near 90°) mean the visibilities carry no
  coherent signal (corrupt data, or a source far too weak) — no calibration can fix that;
* residual delays per antenna (peak of each baseline's lag spectrum, solved per antenna by least
  squares) and how much they decorrelate one channel: |sinc(τ Δν)|;
* the phase scatter across channels before and after removing those delays.

:func:`measure` is plain numpy (tested without CASA); :func:`read_calibrator` reads the rows from an
MS inside a CASA child; :func:`cause` turns the figures into one line.
"""

from __future__ import annotations

import itertools
import os

import numpy as np

PARALLEL_HANDS = {5, 8, 9, 12}  # RR LL XX YY (CASA Stokes codes)
MAX_TIMES = 12  # time samples per spectral window used for closure phases and delays
MAX_TRIANGLES = 2000
RANDOM_CLOSURE_DEG = 60.0  # median |closure phase| above this: no coherent signal (random: 90°)
DECORRELATION_LIMIT = 0.8  # a baseline keeping less than this of its amplitude in one channel


def _circ_std_deg(ph: np.ndarray, axis: int) -> np.ndarray:
    r = np.abs(np.mean(np.exp(1j * ph), axis=axis))
    return np.degrees(np.sqrt(-2.0 * np.log(np.clip(r, 1e-12, 1.0))))


def _lag_delay(spec: np.ndarray, width_hz: float, pad: int = 64) -> float:
    """Delay (s) at the peak of the lag spectrum of one baseline's channels (unit phasors)."""
    n = max(1024, pad * spec.size)
    lag = np.abs(np.fft.fft(spec, n))
    return float(np.fft.fftfreq(n, d=width_hz)[int(np.argmax(lag))])


def measure(*, data: np.ndarray, flag: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, time: np.ndarray,
            spw: np.ndarray, chan_width_hz: dict[int, float], names: list[str]) -> dict:
    """Figures on a calibrator's visibilities.

    ``data``/``flag``: (nrow, npol, nchan) parallel hands of cross-correlation rows; ``spw`` per row
    (all rows of one spw share nchan); ``chan_width_hz``: spw → channel width.
    """
    names = dict(names) if isinstance(names, dict) else dict(enumerate(names))
    data = np.asarray(data, dtype=np.complex128)
    flag = np.asarray(flag, dtype=bool)
    good = ~flag & np.isfinite(data)
    n_all = int(good.size)
    vals = data[good]
    out: dict = {"n_values": n_all, "unflagged_frac": float(good.mean()) if n_all else 0.0}
    nz = vals != 0
    out["zero_frac"] = float((~nz).mean()) if vals.size else 0.0
    out["imag_only_frac"] = float(((vals.real == 0) & (vals.imag != 0)).mean()) if vals.size else 0.0
    usable = good & (data != 0) & (np.abs(data) < 1e15)  # 1e29-like values: bit garbage
    closures: list[np.ndarray] = []
    bl_delay: dict[tuple[int, int], list[float]] = {}
    scatter_before: list[float] = []
    widths: list[float] = []
    for s in np.unique(spw):
        rows = np.where(spw == s)[0]
        width = float(chan_width_hz[int(s)])
        nchan = data.shape[2]
        times = np.unique(time[rows])
        if times.size > MAX_TIMES:
            times = times[np.linspace(0, times.size - 1, MAX_TIMES).astype(int)]
        for t in times:
            sel = rows[time[rows] == t]
            vis: dict[tuple[int, int], np.ndarray] = {}
            ok: dict[tuple[int, int], np.ndarray] = {}
            for r in sel:
                a, b = int(ant1[r]), int(ant2[r])
                if a == b:
                    continue
                v, m = data[r], usable[r]
                if a > b:
                    a, b, v = b, a, np.conj(v)
                vis[(a, b)], ok[(a, b)] = v, m
                for p in range(v.shape[0]):
                    u = v[p][m[p]]
                    if u.size >= 4:
                        u = u / np.abs(u)
                        scatter_before.append(float(_circ_std_deg(np.angle(u), 0)))
                        if nchan >= 4 and m[p].all():
                            bl_delay.setdefault((a, b), []).append(_lag_delay(u, width))
                            widths.append(width)
            ants = sorted({a for bl in vis for a in bl})
            tri = list(itertools.combinations(ants, 3))
            if len(tri) > MAX_TRIANGLES:
                tri = [tri[i] for i in np.linspace(0, len(tri) - 1, MAX_TRIANGLES).astype(int)]
            for a, b, c in tri:
                if (a, b) in vis and (b, c) in vis and (a, c) in vis:
                    m = ok[(a, b)] & ok[(b, c)] & ok[(a, c)]
                    if m.any():
                        cl = vis[(a, b)] * vis[(b, c)] * np.conj(vis[(a, c)])
                        closures.append(np.angle(cl[m]))
    if closures:
        cl = np.abs(np.degrees(np.concatenate(closures)))
        out["closure_median_deg"] = float(np.median(cl))
        out["closure_within_30_frac"] = float((cl < 30).mean())
        out["n_closures"] = int(cl.size)
    out["phase_scatter_deg"] = float(np.median(scatter_before)) if scatter_before else None
    out.update(_antenna_delays(bl_delay, names, widths))
    return out


def decorrelation(m: dict, width_hz: float) -> dict:
    """The figures of ``m`` re-judged for channels ``width_hz`` wide (e.g. after averaging)."""
    taus = m.get("baseline_delays_s")
    if not taus:
        return m
    keep = np.abs(np.sinc(np.asarray(taus) * width_hz))
    return {**m, "channel_width_hz": width_hz, "baseline_keep_min": float(keep.min()),
            "baselines_decorrelated": int((keep < DECORRELATION_LIMIT).sum())}


def _antenna_delays(bl_delay: dict[tuple[int, int], list[float]], names: dict, widths: list[float]) -> dict:
    if len(bl_delay) < 3 or not widths:
        return {}
    bls = sorted(bl_delay)
    tau = np.array([np.median(bl_delay[bl]) for bl in bls])
    ants = sorted({a for bl in bls for a in bl})
    idx = {a: i for i, a in enumerate(ants)}
    A = np.zeros((len(bls), len(ants)))
    for k, (a, b) in enumerate(bls):
        A[k, idx[a]], A[k, idx[b]] = -1.0, 1.0
    sol, *_ = np.linalg.lstsq(A, tau, rcond=None)  # minimum-norm: mean delay 0
    sol -= np.median(sol)
    resid = tau - A @ sol
    width = float(np.median(widths))
    keep = np.abs(np.sinc(tau * width))  # np.sinc(x) = sin(pi x)/(pi x)
    return {
        "delays_ns": {names.get(a, str(a)): round(float(sol[idx[a]]) * 1e9, 1) for a in ants},
        "baseline_delays_s": [float(x) for x in tau],
        "delay_fit_rms_ns": float(np.sqrt(np.mean(resid ** 2)) * 1e9),
        "channel_width_hz": width,
        "baseline_keep_min": float(keep.min()),
        "baselines_decorrelated": int((keep < DECORRELATION_LIMIT).sum()),
        "n_baselines": len(bls),
    }


def read_calibrator(vis: str, field_ids: list[int], spw_ids: list[int], max_rows: int = 200_000) -> dict:
    """The flux calibrator's cross-correlation rows (parallel hands, DATA) of ``spw_ids``, for :func:`measure`."""
    from ._casa import table

    dd = table(os.path.join(vis, "DATA_DESCRIPTION"))
    try:
        dd_spw = list(dd.getcol("SPECTRAL_WINDOW_ID"))
        dd_pol = list(dd.getcol("POLARIZATION_ID"))
    finally:
        dd.close()
    pt = table(os.path.join(vis, "POLARIZATION"))
    try:
        corr = [list(pt.getcell("CORR_TYPE", i)) for i in range(pt.nrows())]
    finally:
        pt.close()
    sw = table(os.path.join(vis, "SPECTRAL_WINDOW"))
    try:
        widths = {i: float(np.median(np.abs(sw.getcell("CHAN_WIDTH", i)))) for i in range(sw.nrows())}
    finally:
        sw.close()
    at = table(os.path.join(vis, "ANTENNA"))
    try:
        names = [str(n) for n in at.getcol("NAME")]
    finally:
        at.close()
    parts = {k: [] for k in ("data", "flag", "ant1", "ant2", "time", "spw")}
    tb = table(vis)
    try:
        for d, (s, p) in enumerate(zip(dd_spw, dd_pol)):
            if s not in spw_ids:
                continue
            q = tb.query(f"FIELD_ID IN [{','.join(map(str, field_ids))}] AND DATA_DESC_ID == {d} "
                         "AND ANTENNA1 != ANTENNA2")
            try:
                n = min(q.nrows(), max_rows)
                if n == 0:
                    continue
                hands = [i for i, c in enumerate(corr[p]) if c in PARALLEL_HANDS]
                data = q.getcol("DATA", 0, n)[hands]  # (npol, nchan, nrow)
                flag = q.getcol("FLAG", 0, n)[hands]
                parts["data"].append(np.transpose(data, (2, 0, 1)))
                parts["flag"].append(np.transpose(flag, (2, 0, 1)))
                parts["ant1"].append(q.getcol("ANTENNA1", 0, n))
                parts["ant2"].append(q.getcol("ANTENNA2", 0, n))
                parts["time"].append(q.getcol("TIME", 0, n))
                parts["spw"].append(np.full(n, s))
            finally:
                q.close()
    finally:
        tb.close()
    if not parts["data"]:
        return {}
    shapes = {a.shape[1:] for a in parts["data"]}
    if len(shapes) > 1:  # spws of different shapes: measure the first shape only
        keep = [i for i, a in enumerate(parts["data"]) if a.shape[1:] == parts["data"][0].shape[1:]]
        parts = {k: [v[i] for i in keep] for k, v in parts.items()}
    return {"data": np.concatenate(parts["data"]), "flag": np.concatenate(parts["flag"]),
            "ant1": np.concatenate(parts["ant1"]), "ant2": np.concatenate(parts["ant2"]),
            "time": np.concatenate(parts["time"]), "spw": np.concatenate(parts["spw"]),
            "chan_width_hz": widths, "names": names}


UVH5_PARALLEL = {-1, -2, -5, -6}  # rr ll xx yy (AIPS codes in uvh5)


def _rows(ds, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (sorted) of a dataset: one slice when they are close together, else row by row
    (baseline-major files: the first integrations are spread over the whole file)."""
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    if hi - lo <= 4 * rows.size:
        return ds[lo:hi][rows - lo]
    return np.stack([ds[int(r)] for r in rows])


def read_uvh5(paths: list[str], max_times: int = MAX_TIMES) -> dict:
    """The same rows from raw uvh5 files (one spw per file), at their native channel width: the
    first ``max_times`` integrations, cross-correlations, parallel hands. h5py only."""
    import h5py

    parts = {k: [] for k in ("data", "flag", "ant1", "ant2", "time", "spw")}
    widths: dict[int, float] = {}
    names: dict[int, str] = {}
    for i, path in enumerate(paths):
        with h5py.File(path, "r") as f:
            h = f["Header"]
            t = h["time_array"][()]
            a1, a2 = h["ant_1_array"][()], h["ant_2_array"][()]
            times = np.unique(t)[:max_times]
            rows = np.where(np.isin(t, times) & (a1 != a2))[0]
            if rows.size == 0:
                continue
            pols = [int(p) for p in np.ravel(h["polarization_array"][()])]
            hands = [k for k, p in enumerate(pols) if p in UVH5_PARALLEL]
            data, flag = (_rows(f["Data/" + k], rows) for k in ("visdata", "flags"))
            if data.ndim == 4:  # old uvh5: (Nblts, 1, Nfreqs, Npols)
                data, flag = data[:, 0], flag[:, 0]
            parts["data"].append(np.transpose(data[:, :, hands], (0, 2, 1)))
            parts["flag"].append(np.transpose(flag[:, :, hands], (0, 2, 1)))
            parts["ant1"].append(a1[rows])
            parts["ant2"].append(a2[rows])
            parts["time"].append(t[rows])
            parts["spw"].append(np.full(rows.size, i))
            widths[i] = float(np.median(np.abs(np.ravel(h["channel_width"][()]))))
            if "antenna_names" in h and "antenna_numbers" in h:
                for n, name in zip(h["antenna_numbers"][()], h["antenna_names"][()]):
                    names[int(n)] = name.decode() if isinstance(name, bytes) else str(name)
    if not parts["data"] or len({a.shape[1:] for a in parts["data"]}) > 1:
        return {}
    return {"data": np.concatenate(parts["data"]), "flag": np.concatenate(parts["flag"]),
            "ant1": np.concatenate(parts["ant1"]), "ant2": np.concatenate(parts["ant2"]),
            "time": np.concatenate(parts["time"]), "spw": np.concatenate(parts["spw"]),
            "chan_width_hz": widths, "names": names}


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def cause(m: dict, field: str) -> str:
    """One line (≤ 170 characters, so the session's error line with its step and log path fits in
    300) naming the measured reason a calibrator gave no solutions; every figure is in the step log."""
    if not m or not m.get("n_values"):
        return f"no unflagged cross-correlation data on the calibrator {field}"
    if m["unflagged_frac"] < 0.05:
        return f"too little unflagged data on the calibrator {field}: {_pct(m['unflagged_frac'])} of its " \
               "cross-correlations unflagged"
    corrupt = []
    if m.get("zero_frac", 0) >= 0.05:
        corrupt.append(f"{_pct(m['zero_frac'])} exactly 0")
    if m.get("imag_only_frac", 0) >= 0.05:
        corrupt.append(f"{_pct(m['imag_only_frac'])} purely imaginary")
    corrupt_s = f"; {', '.join(corrupt)}" if corrupt else ""
    cl = m.get("closure_median_deg")
    if cl is not None and cl > RANDOM_CLOSURE_DEG:
        return (f"no coherent signal on {field}: closure phases random (median {cl:.0f}°){corrupt_s}: corrupt "
                "data, not delays or the reference antenna")
    if m.get("baselines_decorrelated"):
        delays = m["delays_ns"]
        worst = sorted(delays, key=lambda a: -abs(delays[a]))
        big = [a for a in worst if abs(delays[a]) * 1e-9 * m["channel_width_hz"] > 0.2][:4] or worst[:3]
        peak = max(abs(delays[a]) for a in big)
        return (f"residual delays up to {peak:.0f} ns on {', '.join(big)} decorrelate "
                f"{m['channel_width_hz'] / 1e6:g} MHz channels ({m['baselines_decorrelated']}/{m['n_baselines']} "
                f"baselines < {_pct(DECORRELATION_LIMIT)}): "
                + (f"set steps.compress.chanbin = {m['suggest_chanbin']}" if m.get("suggest_chanbin")
                   else "average fewer channels (steps.compress.chanbin)"))
    figs = [f"{_pct(m['unflagged_frac'])} unflagged"]
    if cl is not None:
        figs.append(f"median |closure phase| {cl:.0f}°")
    if m.get("delays_ns"):
        figs.append(f"delays within ±{max(abs(v) for v in m['delays_ns'].values()):.0f} ns")
    return f"no cause found in {field}'s data ({', '.join(figs)}{corrupt_s})"


def figures_line(m: dict) -> str:
    """The measured figures in one line, for the step log."""
    keys = ("unflagged_frac", "zero_frac", "imag_only_frac", "closure_median_deg", "closure_within_30_frac",
            "phase_scatter_deg", "delay_fit_rms_ns", "baseline_keep_min", "baselines_decorrelated")
    parts = [f"{k}={m[k]:.3g}" if isinstance(m.get(k), float) else f"{k}={m.get(k)}" for k in keys if k in m]
    parts.append(f"measured_on={m.get('measured_on')}")
    if m.get("delays_ns"):
        parts.append("delays_ns=" + " ".join(f"{a}:{v:+.0f}" for a, v in m["delays_ns"].items()))
    return "calibrator diagnosis: " + ", ".join(parts)


def diagnose(vis: str, field_ids: list[int], spw_ids: list[int], field: str, *, raw: list[str] = (),
             chanbin: int = 1) -> tuple[str, dict]:
    """(one-line cause, figures) for a calibrator that gave no solutions.

    With ``raw`` (the calibrator scan's uvh5 files) the data are measured at their native channel
    width, before the averaging by ``chanbin`` that large delays decorrelate, and the decorrelation
    is judged for the averaged channels; else on the MS being calibrated."""
    m: dict = {}
    if raw:
        try:
            rows = read_uvh5(list(raw))
        except (OSError, KeyError, ValueError) as err:
            print(f"calibrator diagnosis: cannot read the raw files ({err}); measuring the MS", flush=True)
            rows = {}
        if rows:
            m = measure(**rows)
            native = m.get("channel_width_hz")
            if native:
                m = decorrelation(m, native * max(1, int(chanbin)))
                ok = [k for k in range(1, max(1, int(chanbin))) if not decorrelation(m, native * k)["baselines_decorrelated"]]
                if m["baselines_decorrelated"] and int(chanbin) > 1:  # the widest averaging that keeps them
                    m["suggest_chanbin"] = max(ok) if ok else 1
            m["measured_on"] = f"raw uvh5 ({len(raw)} file(s))"
    if not m:
        rows = read_calibrator(vis, field_ids, spw_ids)
        m = measure(**rows) if rows else {}
        m["measured_on"] = vis
    return cause(m, field), m
