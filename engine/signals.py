"""The checks every DSP function makes on its input signal: shape, dtype, finiteness, silence.

Shared by :mod:`engine.descriptors` and :mod:`engine.quality`, so that both read the same
signal the same way and call the same signal silent.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SILENCE_RMS_DBFS", "as_mono", "as_channels", "is_silent"]

#: A signal whose RMS over its whole length is below this level [dBFS] is treated as
#: silence by :func:`engine.descriptors.tempo`, :func:`engine.descriptors.danceability`
#: and the quality score (:mod:`engine.quality`). It matches the EBU R 128 absolute
#: gate (-70 LUFS): nothing quieter counts as programme there either. Without it the beat
#: tracker reports ≈738 BPM for digital silence, and danceability reads noise floor as
#: highly danceable (white noise scores ≈3.2).
SILENCE_RMS_DBFS = -70.0


def as_mono(signal, name: str = "mono_44k") -> np.ndarray:
    """Validate a mono signal and return it as contiguous float32 of shape [n]."""
    arr = np.asarray(signal)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a mono signal of shape [n], got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty signal (0 samples); nothing to analyse")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: signal contains NaN or infinite samples")
    return arr


def as_channels(signal, name: str = "stereo_44k") -> np.ndarray:
    """Validate a mono [n] / [n,1] or stereo [n,2] signal; return float32 [n, channels]."""
    arr = np.asarray(signal)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] not in (1, 2):
        raise ValueError(
            f"{name}: expected shape [n, 2] (stereo) or [n] (mono), got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: empty signal (0 samples); nothing to analyse")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: signal contains NaN or infinite samples")
    return arr


def is_silent(x: np.ndarray) -> bool:
    """True when the RMS of ``x`` is below :data:`SILENCE_RMS_DBFS`."""
    # Sum in float64 (a float32 sum over minutes of samples loses precision), one block
    # at a time so that no float64 copy of the whole signal is made.
    total = 0.0
    for start in range(0, x.size, 1 << 18):
        block = x[start : start + (1 << 18)].astype(np.float64)
        total += float(np.dot(block, block))
    return total / x.size < 10.0 ** (SILENCE_RMS_DBFS / 10.0)
