"""Defect profile: how much of a track dynamics limiting, a lossy codec, clicks and hum
have changed, for the listener predictor.

The quality measures (:mod:`engine.quality`) each answer "is this defect there?"; the
hearing-loss predictor (:mod:`models.hearing`) also needs to know how much of the signal
a defect has changed, which HAAQI weighs. A pure function of the mono signal and of the
frame spectra, cut-off and hum analysis :func:`engine.quality.quality` computes anyway:
no decoding, no second spectrum of the whole signal; about 40 ms per 30 s of audio
(docs/hearing.md). Stored per track as ``tracks.quality_profile``, the values named by
:data:`models.hearing.QUALITY_PROFILE_NAMES`, in this order:

Dynamics (a brick-wall limiter leaves every loud block at the same peak)
    ``ceiling_share``: share of the active 10 ms blocks (RMS at least -60 dBFS) whose peak
    is within 0.5 dB of the track's peak; ``pile_share``: share of the 2.5 ms blocks
    (peak at least -60 dBFS) within 0.25 dB of it; ``peak_gap_db``: the track's peak
    minus the 95th percentile of the active 10 ms blocks' peaks; ``crest_400ms_db``:
    median over active 400 ms windows of peak over RMS.
Codec (a lossy encoder cuts the top sharply and empties bins above a few kHz)
    Over the active 2048-sample frames: ``high_band_db`` and ``top_band_db``, the median
    level of 10-16 kHz and of 16-20 kHz relative to 1-4 kHz; ``high_band_var_db``, the
    standard deviation over frames of the 10-16 kHz one; ``holes_mid`` and
    ``holes_high``, the share of bins at 2-8 kHz and 8-16 kHz (below 0.9 x
    ``bandwidth_hz``) at least 30 dB below the mean of the 17 bins around them;
    ``flatness_high``, the median spectral flatness of 5-16 kHz; ``cutoff_edge_db``, the
    90th-percentile spectrum's level 0.5-1.5 kHz below the cut-off minus 0.2-1.2 kHz above
    it (NaN when the cut-off is within 1.2 kHz of 22.05 kHz).
Impulses (clicks, crackle)
    On the differentiated signal in 1 ms blocks and 100 ms windows: ``impulse_db``, the
    median over windows of the loudest block's energy over the window's median block;
    ``impulse_energy``, log10 of the share of all energy in blocks above 10 times their
    window's median (plus 1e-6).
Hum
    ``hum_level_db``: the mains lines' power above their surroundings over the whole
    signal's power (:func:`engine.quality` measures it with ``hum_db``).

NaN where a value is undefined (shorter than 0.4 s, silence, no active frame).
"""

from __future__ import annotations

import math

import numpy as np

from engine.decode import SAMPLE_RATE
from models.hearing import QUALITY_PROFILE_NAMES

__all__ = ["QUALITY_PROFILE_NAMES", "profile"]

_BLOCK = 441  # 10 ms
_FINE = 110  # 2.5 ms
_WINDOW_BLOCKS = 40  # 400 ms of 10 ms blocks
_ACTIVE_DB = -60.0
_CEILING_DB = 0.5
_PILE_DB = 0.25
_PEAK_PERCENTILE = 95.0
_FRAME = 2048  # engine.quality's frames
_HOLE_DB = 30.0
_HOLE_HALF = 8  # bins either side of a hole's neighbourhood (±172 Hz)
_TICK = 44  # 1 ms
_TICK_WINDOW = 100  # 1 ms blocks per 100 ms window
_TICK_OUTLIER = 10.0  # x the window's median block


def _db(v):
    return 10.0 * np.log10(np.maximum(v, 1e-20))


def profile(x: np.ndarray, power: np.ndarray, frame_db: np.ndarray, bandwidth_hz: float,
            hum_level_db: float = math.nan) -> np.ndarray:
    """The defect profile of mono ``x`` (44.1 kHz), float64 [len(QUALITY_PROFILE_NAMES)].

    ``power`` [frames, 1025] and ``frame_db`` [frames] are :func:`engine.quality.quality`'s
    Hann frames (one-sided power, level in dB), ``bandwidth_hz`` its cut-off (NaN:
    unknown) and ``hum_level_db`` its hum level.
    """
    out = dict.fromkeys(QUALITY_PROFILE_NAMES, math.nan)
    out["hum_level_db"] = hum_level_db
    out.update(_dynamics(x))
    out.update(_codec(power, frame_db, bandwidth_hz))
    out.update(_impulses(x))
    return np.array([out[n] for n in QUALITY_PROFILE_NAMES], dtype=np.float64)


def _dynamics(x: np.ndarray) -> dict[str, float]:
    n = x.size // _BLOCK
    if n < _WINDOW_BLOCKS:
        return {}
    ax = np.abs(x)
    peak = ax[: n * _BLOCK].reshape(n, _BLOCK).max(axis=1).astype(np.float64)
    blocks = x[: n * _BLOCK].reshape(n, _BLOCK)
    ms = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / _BLOCK
    top = float(peak.max())
    active = _db(ms) >= _ACTIVE_DB
    if top <= 0.0 or not active.any():
        return {}
    peak_db = 20.0 * np.log10(np.maximum(peak[active], 1e-10) / top)
    fine = ax[: x.size // _FINE * _FINE].reshape(-1, _FINE).max(axis=1)
    fine = fine[fine >= 10.0 ** (_ACTIVE_DB / 20.0)]
    w = n // _WINDOW_BLOCKS
    w_ms = ms[: w * _WINDOW_BLOCKS].reshape(w, _WINDOW_BLOCKS).mean(axis=1)
    w_peak = peak[: w * _WINDOW_BLOCKS].reshape(w, _WINDOW_BLOCKS).max(axis=1)
    w_on = _db(w_ms) >= _ACTIVE_DB
    return {
        "ceiling_share": float(np.mean(peak_db >= -_CEILING_DB)),
        "pile_share": float(np.mean(fine >= top * 10.0 ** (-_PILE_DB / 20.0))) if fine.size else math.nan,
        "peak_gap_db": float(-np.percentile(peak_db, _PEAK_PERCENTILE)),
        "crest_400ms_db": float(np.median(2.0 * _db(w_peak[w_on]) - _db(w_ms[w_on]))) if w_on.any() else math.nan,
    }


def _codec(power: np.ndarray, frame_db: np.ndarray, bandwidth_hz: float) -> dict[str, float]:
    act = power[frame_db >= _ACTIVE_DB]  # float32
    if not act.shape[0]:
        return {}
    bins = np.fft.rfftfreq(_FRAME, 1.0 / SAMPLE_RATE)

    def band(lo: float, hi: float) -> np.ndarray:
        return act[:, (bins >= lo) & (bins < hi)].mean(axis=1, dtype=np.float64)

    ref = band(1000.0, 4000.0) + 1e-20
    high = _db(band(10000.0, 16000.0) / ref)
    out = {"high_band_db": float(np.median(high)),
           "top_band_db": float(np.median(_db(band(16000.0, 20000.0) / ref))),
           "high_band_var_db": float(np.std(high))}
    top_hz = 0.9 * bandwidth_hz if math.isfinite(bandwidth_hz) else 16000.0
    lo_bin, hi_bin = int(2000 * _FRAME / SAMPLE_RATE), int(min(16000.0, top_hz) * _FRAME / SAMPLE_RATE)
    split = int(8000 * _FRAME / SAMPLE_RATE)
    if hi_bin > lo_bin:
        # A bin far below the mean of its neighbourhood (itself included): a hole.
        sub = act[:, max(lo_bin - _HOLE_HALF, 0): hi_bin + _HOLE_HALF + 1]
        width = 2 * _HOLE_HALF + 1
        cs = np.cumsum(np.pad(sub, ((0, 0), (1, 0))), axis=1, dtype=np.float64)
        local = (cs[:, width:] - cs[:, :-width]) / width
        hole = sub[:, _HOLE_HALF: _HOLE_HALF + local.shape[1]] < local * 10.0 ** (-_HOLE_DB / 10.0)
        first = max(lo_bin - _HOLE_HALF, 0) + _HOLE_HALF  # bin index of hole[:, 0]
        cut = min(max(split - first, 0), hole.shape[1])
        out["holes_mid"] = float(hole[:, :cut].mean()) if cut else math.nan
        out["holes_high"] = float(hole[:, cut:].mean()) if hole.shape[1] > cut else math.nan
    flat = act[:, (bins >= 5000.0) & (bins < 16000.0)] + np.float32(1e-20)
    geometric = np.exp(np.mean(np.log(flat), axis=1, dtype=np.float64))
    out["flatness_high"] = float(np.median(geometric / np.mean(flat, axis=1, dtype=np.float64)))
    if math.isfinite(bandwidth_hz):
        below = (bins >= bandwidth_hz - 1500.0) & (bins < bandwidth_hz - 500.0)
        above = (bins > bandwidth_hz + 200.0) & (bins <= bandwidth_hz + 1200.0)
        if below.any() and above.any():
            spec = _db(np.percentile(act[:, below | above].astype(np.float64), 90.0, axis=0))
            sel = np.flatnonzero(below | above)
            out["cutoff_edge_db"] = float(np.mean(spec[below[sel]]) - np.mean(spec[above[sel]]))
    return out


def _impulses(x: np.ndarray) -> dict[str, float]:
    d = np.diff(x)
    t = d.size // _TICK
    blocks = d[: t * _TICK].reshape(t, _TICK)
    e = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / _TICK
    w = t // _TICK_WINDOW
    if not w:
        return {}
    win = e[: w * _TICK_WINDOW].reshape(w, _TICK_WINDOW)
    med = np.median(win, axis=1)
    keep = med > 1e-12
    if not keep.any():
        return {}
    excess = np.maximum(win - _TICK_OUTLIER * med[:, None], 0.0).sum()
    return {"impulse_db": float(np.median(_db(win[keep].max(axis=1) / med[keep]))),
            "impulse_energy": math.log10(excess / max(float(win.sum()), 1e-30) + 1e-6)}
