"""Band levels: how loud a track is, and how steady, around each audiometric frequency.

A pure function of the 16 kHz mel spectrogram the build computes anyway for MusiCNN and
EffNet (:func:`models.frontend.mel_bands`), so it costs no decoding and about 1 ms per
30 s clip. It feeds the hearing-loss quality predictor (:mod:`models.hearing`), which
needs to know where a track's energy and its background sit relative to a listener's
thresholds; the store keeps it per track (``tracks.band_levels``), so a listener added
later is scored without decoding anything again. It lives in ``models``, beside the
predictor and the mel front end it reads; the build (``engine.analysis``) calls it.

Regions: below 177 Hz, then one region around each of the 8 audiogram frequencies
(:data:`models.audiogram.AUDIOGRAM_HZ`), bounded at the geometric midpoints between
neighbours (177, 354, 707, 1414, 2449, 3464, 4899, 6928 Hz) and at 8 kHz, the mel
spectrogram's top. A mel band belongs to the region holding its centre.

Per region, over the track's active frames (broadband level within 60 dB of the loudest
frame; 16 ms frames at 62.5 frames per second), three statistics of the region's level
in dB (10·log10 of its mean mel band power, the mel spectrogram's own scale, where a
full-scale sine reads about +20 dB): the 10th, 50th and 90th percentiles: background,
typical level, peaks.
"""

from __future__ import annotations

import numpy as np

from models.audiogram import AUDIOGRAM_HZ

__all__ = ["REGION_EDGES_HZ", "STATISTICS", "BAND_LEVEL_NAMES", "band_levels"]

_MIDPOINTS = tuple(float(np.sqrt(lo * hi)) for lo, hi in zip((125,) + AUDIOGRAM_HZ[:-1], AUDIOGRAM_HZ))
#: Hz, region boundaries: [0, 177), [177, 354) around 250 Hz, ..., [6928, 8000] around 8 kHz.
REGION_EDGES_HZ: tuple[float, ...] = (0.0,) + _MIDPOINTS + (8000.0,)
STATISTICS: tuple[tuple[str, float], ...] = (("p10", 10.0), ("p50", 50.0), ("p90", 90.0))
_REGION_NAMES = ("low",) + tuple(f"{f // 1000}k" if f >= 1000 else str(f) for f in AUDIOGRAM_HZ)
#: Names of the values :func:`band_levels` returns, in order ('low_p10', ..., '8k_p90').
BAND_LEVEL_NAMES: tuple[str, ...] = tuple(f"{r}_{s}" for r in _REGION_NAMES for s, _ in STATISTICS)

_ACTIVE_RANGE_DB = 60.0
_FLOOR_DB = -120.0  # digital silence
# models.frontend.mel_bands compresses band power p as log10(1 + 10000 p).
_LOG_SCALE = 10_000.0


def _region_of_bands(n_mels: int, f_max: float) -> np.ndarray:
    """Region index (0..8) of each of ``n_mels`` slaney-mel bands from 0 to ``f_max`` Hz."""
    from models.frontend import hz_to_mel, mel_to_hz

    mels = np.linspace(0.0, float(hz_to_mel(np.array(f_max))), n_mels + 2)
    centres = mel_to_hz(mels[1:-1]).astype(np.float64)
    return np.searchsorted(np.array(REGION_EDGES_HZ[1:-1]), centres, side="right")


def band_levels(mel: np.ndarray, *, f_max: float = 8000.0) -> np.ndarray:
    """Level statistics per region of a track's mel spectrogram.

    Parameters
    ----------
    mel : ndarray, float32, shape [frames, n_mels]
        :func:`models.frontend.mel_bands` output (values ``log10(1 + 10000 p) >= 0``),
        bands spanning 0 .. ``f_max`` Hz.
    f_max : float
        Top of the mel bands, Hz (8000 for the MusiCNN / EffNet front-end).

    Returns
    -------
    ndarray, float32, shape [27]
        dB values named by :data:`BAND_LEVEL_NAMES` (9 regions x p10, p50, p90), about
        -120 (silence) .. +25. All NaN when there is no frame (an empty signal) or the
        signal is digitally silent.
    """
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2:
        raise ValueError(f"band_levels: expected a mel spectrogram [frames, bands], got shape {mel.shape}")
    out = np.full(len(BAND_LEVEL_NAMES), np.nan, dtype=np.float32)
    if mel.shape[0] == 0 or not np.any(mel > 0):
        return out
    power = (np.power(10.0, mel.astype(np.float64)) - 1.0) / _LOG_SCALE
    regions = _region_of_bands(mel.shape[1], f_max)
    n_regions = len(_REGION_NAMES)
    onehot = np.zeros((mel.shape[1], n_regions))
    onehot[np.arange(mel.shape[1]), regions] = 1.0
    counts = onehot.sum(axis=0)
    levels = 10.0 * np.log10(np.maximum(power @ onehot / np.maximum(counts, 1), 1e-12))
    broadband = 10.0 * np.log10(np.maximum(power.mean(axis=1), 1e-12))
    active = broadband >= broadband.max() - _ACTIVE_RANGE_DB
    stats = np.percentile(levels[active], [p for _, p in STATISTICS], axis=0)  # [3, regions]
    stats = np.maximum(stats, _FLOOR_DB)
    stats[:, counts == 0] = np.nan
    return stats.T.reshape(-1).astype(np.float32)
