"""AOFlagger on one baseline's visibilities held in memory (its Python bindings and bundled generic
strategy), with the spectrum the strategy cannot model taken out first.

AOFlagger's generic strategy fits the time-frequency plane with a smoothing kernel ~30 channels wide
and thresholds what is left against the noise. A bright calibrator seen at high signal-to-noise
carries the bandpass ripple of its antennas (constant in time, a few tens of channels per period):
at the simulator's 0.02 Jy per visibility an 8 % ripple on 15 Jy is ~750 σ, and the strategy flagged
28–31 % of the clean cells. So each channel and polarisation is divided by its own median amplitude
over time before the strategy runs (what stays is what changes in time or from channel to channel
within that smooth part: RFI), and then by a straight line fitted in time to the median over channels
(gains drift slowly: at that signal-to-noise the strategy's smoothing, biased at the ends of a scan,
flagged up to 73 % of a scan's first and last integrations). A narrow-band signal that is steady for the whole chunk would be divided
out with the bandpass, so the medians themselves are tested: a channel whose median amplitude stands
far above its neighbours' (running median over ``_WINDOW`` channels; ``_CHANNEL_SIGMA`` robust σ of
those departures and at least ``_MIN_EXCESS`` of the neighbours' level, which a bandpass ripple does not
reach — on short scans of a bright calibrator the σ alone flagged ripple peaks and band edges) is
flagged whole. Pure numpy plus ``aoflagger``; no casatools.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

_WINDOW = 9  # channels in the running median the per-channel medians are compared with
_CHANNEL_SIGMA = 8.0  # a channel this many robust σ above its neighbours is flagged whole …
_MIN_EXCESS = 0.25  # … when it is also this fraction above their level
MIN_TIMES = 4  # fewer integrations give the strategy no time axis to fit: only the steady-channel test runs


@lru_cache(maxsize=1)
def _flagger():
    import aoflagger

    af = aoflagger.AOFlagger()
    return af, af.load_strategy_file(af.find_strategy_file(aoflagger.TelescopeId.Generic))


def available() -> bool:
    try:
        _flagger()
    except Exception:  # noqa: BLE001 - import or strategy-file failure: the caller says which flagger ran
        return False
    return True


def _nanmedian0(x: np.ndarray) -> np.ndarray:
    """``np.nanmedian(x, axis=0)``, the same values, by one sort (numpy takes a masked-array path for
    short axes that cost ~5 ms a call: most of a baseline's flagging time outside AOFlagger)."""
    s = np.sort(x, axis=0)  # NaNs last
    n = np.sum(~np.isnan(x), axis=0, keepdims=True)
    lo = np.take_along_axis(s, np.maximum((n - 1) // 2, 0), axis=0)
    hi = np.take_along_axis(s, np.minimum(n // 2, x.shape[0] - 1), axis=0)
    return ((lo + hi) / 2)[0]


def _running_median(x: np.ndarray, window: int) -> np.ndarray:
    """Median of ``x`` (channels × …) over ``window`` neighbouring channels, NaN-aware, edges shrunk."""
    n = x.shape[0]
    h = window // 2
    pad = np.concatenate([np.full((h,) + x.shape[1:], np.nan), x, np.full((h,) + x.shape[1:], np.nan)])
    win = np.lib.stride_tricks.sliding_window_view(pad, window, axis=0)[:n]
    return _nanmedian0(np.moveaxis(win, -1, 0))


def steady_channels(amp_median: np.ndarray) -> np.ndarray:
    """Channels (bool, nchan) whose median amplitude (``amp_median``: nchan × npol) stands out above
    the running median of its neighbours in any polarisation: steady narrow-band RFI."""
    nchan = amp_median.shape[0]
    if nchan < _WINDOW:
        return np.zeros(nchan, bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = _running_median(amp_median, _WINDOW)
        excess = amp_median - smooth
        mad = _nanmedian0(np.abs(excess - _nanmedian0(excess)))
        noise = 1.4826 * mad
        out = (excess > _CHANNEL_SIGMA * np.where(noise > 0, noise, np.inf)) & (excess > _MIN_EXCESS * smooth)
    return np.asarray(out.any(axis=1))


def _trend(norm_amp: np.ndarray) -> np.ndarray:
    """A straight line in time (ntime × npol) through the median over channels of ``norm_amp``
    (ntime × nchan × npol, NaN where flagged), fitted twice, the second time without the times more
    than 5 robust σ off the first line: a burst of RFI does not bend it, so it stays visible."""
    ntime, _, npol = norm_amp.shape
    # ntime × npol; by one sort along the channels (np.nanmedian's per-slice path cost ~3 ms a baseline)
    med = _nanmedian0(np.moveaxis(norm_amp, 1, 0))
    t = np.arange(ntime, dtype=float)
    out = np.ones((ntime, npol), np.float32)
    for p in range(npol):
        y = med[:, p]
        ok = np.isfinite(y)
        for _ in range(2):
            if ok.sum() < 3:
                break
            coef = np.polyfit(t[ok], y[ok], 1)
            fit = np.polyval(coef, t)
            res = y - fit
            sig = 1.4826 * np.nanmedian(np.abs(res[ok]))
            ok = np.isfinite(y) & (np.abs(res) <= 5 * sig if sig > 0 else np.isfinite(y))
        else:
            if np.all(fit > 0):
                out[:, p] = fit
    return out


def flag_baseline(vis: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """New flags (ntime × nchan, all polarisations alike) for one baseline: ``vis`` and ``flags``
    are ntime × nchan × npol (complex, bool). Cells flagged on input stay out of every estimate."""
    ntime, nchan, npol = vis.shape
    out = np.zeros((ntime, nchan), bool)
    if nchan < 2 or ntime < 2:
        return out
    af, strategy = _flagger()
    amp = np.abs(vis).astype(np.float32)
    amp[flags] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels
        med = _nanmedian0(amp)  # nchan × npol: the baseline's spectrum, steady part
    out[:, steady_channels(med)] = True
    if ntime < MIN_TIMES:
        return out
    scale = np.where(np.isfinite(med) & (med > 0), med, 1.0).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        trend = _trend(amp / scale[None, :, :])
    norm = vis / scale[None, :, :] / trend[:, None, :]
    img = af.make_image_set(ntime, nchan, 2 * npol)
    for p in range(npol):
        img.set_image_buffer(2 * p, np.ascontiguousarray(norm[:, :, p].real.T, dtype=np.float32))
        img.set_image_buffer(2 * p + 1, np.ascontiguousarray(norm[:, :, p].imag.T, dtype=np.float32))
    given = af.make_flag_mask(ntime, nchan, False)
    given.set_buffer(np.ascontiguousarray(flags.any(axis=2).T))
    mask = np.asarray(strategy.run(img, given).get_buffer(), bool)  # nchan × ntime
    return out | mask.T
