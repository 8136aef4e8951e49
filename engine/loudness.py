"""EBU R 128 loudness of a track: integrated loudness, loudness range and true peak.

:func:`loudness` is the descriptor the build stores (``loudness_lufs``,
``loudness_range_lu``, ``true_peak_dbtp``); the gated measurement itself is
:mod:`engine.ebur128` (vectorised, and why not Essentia's ``LoudnessEBUR128``). Same
conventions as :mod:`engine.descriptors`: numpy arrays in, ``ValueError`` for empty or
malformed input, NaN for a value the signal does not define.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.decode import SAMPLE_RATE
from engine.signals import as_channels

__all__ = ["Loudness", "loudness", "true_peak_dbtp"]

# Loudness: EBU R 128 gating blocks are 400 ms and loudness range uses 3 s short-term
# windows; shorter programmes have no defined value.
_GATING_BLOCK_S = 0.4
_SHORT_TERM_S = 3.0
# Input frames per block when oversampling for true peak.
_TRUE_PEAK_BLOCK = 1 << 16


@dataclass(frozen=True)
class Loudness:
    """EBU R 128 loudness of a track.

    Attributes
    ----------
    integrated_lufs : float
        Gated integrated loudness [LUFS], typically -30 .. -5 for music. ``NaN`` when
        undefined: the signal is shorter than one 400 ms gating block or no block is
        above the -70 LUFS absolute gate (silence).
    range_lu : float
        Loudness range (EBU Tech 3342) [LU], >= 0. ``NaN`` when the signal is shorter
        than one 3 s short-term window or ``integrated_lufs`` is NaN.
    true_peak_dbtp : float
        Maximum true-peak level over all channels [dBTP] (4× oversampled, ITU-R
        BS.1770-4 Annex 2); can exceed 0 for clipped or hot masters. ``-inf`` for digital
        silence.
    """

    integrated_lufs: float
    range_lu: float
    true_peak_dbtp: float



def true_peak_dbtp(signal: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Maximum true-peak level over all channels, by oversampling (ITU-R BS.1770-4 Annex 2).

    Parameters
    ----------
    signal : numpy.ndarray
        Shape [n] or [n, channels], amplitude in [-1, 1] full scale.
    sample_rate : int, optional
        Sample rate of ``signal`` [Hz], default 44 100.

    Returns
    -------
    float
        20·log10 of the largest absolute sample of the oversampled signal [dBTP];
        ``-inf`` for digital silence. Oversampling is 4× below 96 kHz, 2× below 192 kHz,
        none above (the factors BS.1770-4 asks for).

    Raises
    ------
    ValueError
        If the signal is empty or not of shape [n] / [n, channels]. (Samples are not
        checked for NaN here; :func:`loudness` does.)

    Notes
    -----
    soxr's HQ resampler serves as the interpolation filter. It reads within 0.07 dB of
    Essentia's ``TruePeakDetector`` (whose medium-quality sinc reads slightly lower; soxr
    VHQ agrees with HQ within 0.002 dB) -- far inside EBU Tech 3341's +0.2/-0.4 dB
    true-peak tolerance -- at ≈30 ms instead of ≈0.9 s per channel and 30 s.
    """
    import soxr

    arr = np.asarray(signal, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"true_peak_dbtp: expected a non-empty [n] or [n, channels] signal, "
                         f"got shape {np.shape(signal)}")
    arr = np.ascontiguousarray(arr)
    sample_peak = float(np.max(np.abs(arr)))
    if sample_peak == 0.0:
        return -math.inf
    factor = 4 if sample_rate < 96000 else 2 if sample_rate < 192000 else 1
    # Starting from the sample peak means filter ripple can never make the true peak
    # read below the sample peak.
    peak = sample_peak
    if factor > 1:
        # Streamed in blocks: oversampling 7.5 min of stereo at once would allocate
        # 635 MB; blocks keep it to ~2 MB, and are faster (cache-resident), same result.
        stream = soxr.ResampleStream(
            sample_rate, sample_rate * factor, arr.shape[1], dtype="float32", quality="HQ"
        )
        for start in range(0, arr.shape[0], _TRUE_PEAK_BLOCK):
            up = stream.resample_chunk(arr[start : start + _TRUE_PEAK_BLOCK], last=False)
            if up.size:
                peak = max(peak, float(np.max(np.abs(up))))
        up = stream.resample_chunk(arr[:0], last=True)  # flush the filter's tail
        if up.size:
            peak = max(peak, float(np.max(np.abs(up))))
    return 20.0 * math.log10(peak)


def loudness(stereo_44k: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Loudness:
    """EBU R 128 integrated loudness, loudness range and true peak.

    Parameters
    ----------
    stereo_44k : numpy.ndarray
        Shape [n, 2] for a two-channel source; shape [n] (or [n, 1]) for a single-channel
        source. See Notes on mono.
    sample_rate : int, optional
        Sample rate of the signal [Hz], default 44 100. (Loudness is defined at any rate;
        the EBU test signals are 48 kHz.)

    Returns
    -------
    Loudness
        ``integrated_lufs`` [LUFS], ``range_lu`` [LU], ``true_peak_dbtp`` [dBTP]; see
        :class:`Loudness` for when each is NaN.

    Raises
    ------
    ValueError
        If the signal is empty, has a shape other than [n], [n, 1], [n, 2], or holds
        non-finite samples.

    Notes
    -----
    Mono: ITU-R BS.1770 sums the power of the channels present, so a single-channel file
    is measured as one channel -- as ffmpeg's ebur128, libebur128 and pyloudnorm do by
    default. The same samples duplicated into two channels (what a decoder's stereo
    output of a mono file is) read +3.01 LU louder: callers should pass the mono array
    for single-channel sources. The EBU test signals are two-channel files (identical
    channels) and are measured as such.

    Accuracy: within 0.05 LU of the EBU Tech 3341 integrated values and of the Tech 3342
    loudness ranges, at 48 kHz and after resampling to 44.1 kHz; within 0.003 LU of a
    float64 evaluation of the K-filter down to 30 Hz (:mod:`engine.ebur128`, which says
    why Essentia's ``LoudnessEBUR128`` is not used).
    Cost ≈60 ms CPU per 30 s of stereo audio (true peak ≈35 ms of it).
    """
    from engine import ebur128

    audio = as_channels(stereo_44k)
    duration = audio.shape[0] / float(sample_rate)
    integrated, lra = ebur128.integrated_and_range(audio, float(sample_rate))
    if duration < _GATING_BLOCK_S:
        integrated = math.nan
    if duration < _SHORT_TERM_S or math.isnan(integrated):
        lra = math.nan
    return Loudness(
        integrated_lufs=integrated,
        range_lu=lra,
        true_peak_dbtp=true_peak_dbtp(audio, sample_rate),
    )
