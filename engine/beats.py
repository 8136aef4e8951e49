"""Essentia's multi-feature beat tracker with its onset functions computed in numpy.

``RhythmExtractor2013(method='multifeature')`` (Zapata, Davies & Gómez 2014) tracks beats
in five onset detection functions (ODFs) with ``TempoTapDegara`` and keeps the candidate
beat sequence the others agree with most (``TempoTapMaxAgreement``). Essentia computes
those ODFs frame by frame over two spectrograms of the 44.1 kHz signal; that is ≈80 % of
its cost (≈0.42 CPU-s per 30 s, the largest item of a build). This module computes the
same five functions from ONE vectorised short-time Fourier transform and hands them to
the same Essentia trackers, so the beats and tempo are those of the multi-feature tracker
(``tests/test_beats.py`` checks the ODFs against Essentia's and the tempo against
``RhythmExtractor2013``'s on the corpus) at ≈1/5 of the cost.

The five ODFs (``beattrackermultifeature.cpp``, ``onsetdetection.cpp``,
``onsetdetectionglobal.cpp`` in MTG/essentia):

* ``complex``, ``rms``, ``melflux`` on 2048-sample frames, hop 1024 (43 Hz, doubled by the
  tracker's ``resample='x2'``);
* ``beat_emphasis`` (Davies, Plumbley & Eck 2009) and ``infogain`` (Hainsworth & Macleod
  2003) on 2048-sample frames, hop 512 (86 Hz).

Frames start at sample 0 (``startFromZero``) so the hop-1024 frames are every other
hop-512 frame: one STFT serves all five. The spectra are computed in float32 like
Essentia's; everything after the FFT follows Essentia's arithmetic step by step (including
its quirks, noted where they occur), because ``TempoTapMaxAgreement`` picks one of the
candidates, and a slightly different ODF can tip which one.

Not reproduced: Essentia's ``FrameCutter`` fills digitally silent frames with faint random
noise (``silentFrames='noise'``); here they stay silent. It only matters in stretches of
exact digital silence, where no beat is found either way.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from engine.decode import SAMPLE_RATE  # the onset functions' rate (Essentia's tracker assumes it)
from models.kernels import rfft  # scipy.fft.rfft without importing scipy.fft

__all__ = ["SAMPLE_RATE", "Beats", "onset_functions", "track"]


_FRAME = 2048
_HOP = 512  # beat_emphasis, infogain
_HOP_WIDE = 1024  # complex, rms, melflux (every other frame)
_BINS = _FRAME // 2 + 1
# Frames per block of the spectrogram (even, see onset_functions).
_BLOCK = 128

# OnsetDetection('melflux'): 40 mel bands 0-4000 Hz (Essentia MelBands defaults otherwise).
_MEL_BANDS = 40
_MEL_HIGH_HZ = 4000.0
# Essentia's amp2db: 20 log10(max(x, 1e-10)) (essentiamath.h, silenceCutoff).
_SILENCE_CUTOFF = 1e-10

# OnsetDetectionGlobal('infogain'): bins of 40-5000 Hz, +-5 frames histogrammed.
_INFOGAIN_SIDE = 5
_INFOGAIN_LO = int(round(40.0 * _FRAME / SAMPLE_RATE))
_INFOGAIN_HI = int(round(5000.0 * _FRAME / SAMPLE_RATE)) + 1

# OnsetDetectionGlobal('beat_emphasis'): 40 ERB bands 80 Hz - Nyquist, moving average of
# 2*8+1 ODF samples, periods up to 512 ODF samples (5.94 s), 4 combs, Rayleigh weighting
# peaking at 43 ODF samples, and only the bands weighted at least as band 24 kept.
_ERB_BANDS = 40
_ERB_LOW_HZ = 80.0
_SMOOTH_HALF = 8
_MAX_PERIOD = int(round(5.944308390022676 * SAMPLE_RATE / _HOP))
_COMBS = 4
_RAYLEIGH = round(43 * 512.0 / _MAX_PERIOD) ** 2

#: The tracker's tempo range [BPM] (RhythmExtractor2013's defaults).
MIN_BPM = 40
MAX_BPM = 208

_ODF_NAMES = ("complex", "rms", "melflux", "beat_emphasis", "infogain")


@dataclass(frozen=True)
class Beats:
    """What the multi-feature tracker found in one signal.

    Attributes
    ----------
    ticks : numpy.ndarray
        float32 [n], beat times [s] of the agreed candidate.
    confidence : float
        ``TempoTapMaxAgreement``'s confidence, 0 .. 5.32 (Essentia's guide: < 1 very low,
        1-1.5 low, 1.5-3.5 good, > 3.5 excellent).
    bpm : float
        ``RhythmExtractor2013``'s tempo from the ticks (mean of the inter-beat tempi near
        the most common one); 0.0 with fewer than two ticks.
    candidates : dict of str to numpy.ndarray
        Each ODF's own beat times [s] (keys: ``complex``, ``rms``, ``melflux``,
        ``beat_emphasis``, ``infogain``).
    """

    ticks: np.ndarray
    confidence: float
    bpm: float
    candidates: dict


# --------------------------------------------------------------------------- framing


def n_frames(n_samples: int, frame_size: int, hop_size: int) -> int:
    """Frames Essentia's ``FrameCutter(startFromZero=True)`` cuts from ``n_samples``.

    One frame for anything up to ``frame_size`` samples, then one more for each hop,
    or part of a hop, beyond (measured against ``FrameGenerator`` for every length up to
    6000 samples: tests/test_beats.py).
    """
    if n_samples <= 0:
        return 0
    return 1 + max(0, -(-(n_samples - frame_size) // hop_size))


@functools.lru_cache(maxsize=4)
def _window(size: int) -> np.ndarray:
    # Essentia's Windowing(type='hann'): symmetric Hann scaled to sum 2 (normalized=True).
    # Its zero-phase rotation multiplies bin k by (-1)^k, which every ODF here cancels
    # except through the first two frames' phase history: applied for exactness.
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / (size - 1))
    w = (w * (2.0 / w.sum())).astype(np.float32)
    w.flags.writeable = False
    return w


# --------------------------------------------------------------------------- filterbanks


@functools.lru_cache(maxsize=1)
def _mel_weights() -> np.ndarray:
    """Essentia ``MelBands`` (40 bands, 0-4000 Hz, htkMel, unit_sum) as [1025, 40] on power."""
    from engine.essentia_lazy import standard

    es = standard()

    bands = es.MelBands(sampleRate=SAMPLE_RATE, numberBands=_MEL_BANDS, lowFrequencyBound=0.0,
                        highFrequencyBound=_MEL_HIGH_HZ, inputSize=_BINS)
    return _probe(bands)


@functools.lru_cache(maxsize=1)
def _erb_weights() -> np.ndarray:
    """Essentia ``ERBBands`` (40 bands, 80 Hz - Nyquist, type magnitude) as [1025, 40]."""
    from engine.essentia_lazy import standard

    es = standard()

    bands = es.ERBBands(inputSize=_BINS, numberBands=_ERB_BANDS, lowFrequencyBound=_ERB_LOW_HZ,
                        highFrequencyBound=SAMPLE_RATE / 2, type="magnitude")
    return _probe(bands)


def _probe(bands) -> np.ndarray:
    """The weight matrix of a filterbank that is linear in its input, one bin at a time."""
    eye = np.eye(_BINS, dtype=np.float32)
    w = np.stack([np.asarray(bands(eye[k]), dtype=np.float32) for k in range(_BINS)])
    w.flags.writeable = False
    return w


# --------------------------------------------------------------------------- onset functions


def onset_functions(mono_44k: np.ndarray) -> dict[str, np.ndarray]:
    """The multi-feature tracker's five onset detection functions.

    Parameters
    ----------
    mono_44k : numpy.ndarray
        Mono signal, shape [n], 44 100 Hz, non-empty and finite.

    Returns
    -------
    dict of str to numpy.ndarray
        float32 arrays: ``complex``, ``rms``, ``melflux`` at 43.07 Hz (one value per
        1024 samples) and ``beat_emphasis``, ``infogain`` at 86.13 Hz (per 512 samples),
        each >= 0.

    Notes
    -----
    The spectrogram is processed in blocks of :data:`_BLOCK` frames, keeping the two
    previous frames' phases for the phase predictions: whole-signal arrays of complex
    spectra (20 MB per 30 s each) made the cost swing two-fold with memory traffic on a
    loaded machine; blocks of 1 MB stay in cache.
    """
    x = np.ascontiguousarray(mono_44k, dtype=np.float32)
    n_fine = n_frames(len(x), _FRAME, _HOP)
    n_wide = n_frames(len(x), _FRAME, _HOP_WIDE)
    # The hop-1024 frames are the even hop-512 frames; the last one can lie one hop-512
    # frame past the hop-512 cutter's end.
    n_all = max(n_fine, 2 * n_wide - 1)
    padded = np.zeros((n_all - 1) * _HOP + _FRAME, dtype=np.float32)
    padded[: min(len(x), len(padded))] = x[: len(padded)]
    frames = np.lib.stride_tricks.sliding_window_view(padded, _FRAME)[::_HOP]
    window = _window(_FRAME)
    sign = np.ones(_BINS, dtype=np.float32)
    sign[1::2] = -1.0  # Essentia's zero-phase rotation by half a frame: bin k times (-1)^k

    erb_bins = np.empty((n_fine, _ERB_BANDS), dtype=np.float32)
    info_bins = np.empty((n_fine, _INFOGAIN_HI - _INFOGAIN_LO), dtype=np.float32)
    complex_odf = np.empty(n_wide, dtype=np.float32)
    rms = np.empty(n_wide, dtype=np.float64)
    mel = np.empty((n_wide, _MEL_BANDS), dtype=np.float32)
    fine = _History(_BINS)  # the two previous hop-512 frames
    wide = _History(_BINS)  # the two previous hop-1024 frames
    for start in range(0, n_all, _BLOCK):  # _BLOCK is even: wide frames are even offsets
        # scipy's float32 FFT: 4x faster than numpy's on these frames, same precision.
        spec = rfft(frames[start : start + _BLOCK] * window, axis=1)
        spec *= sign
        mag = np.abs(spec)
        unit = _unit_phasors(spec, mag)
        stop = min(start + len(spec), n_fine)
        if stop > start:
            k = stop - start
            # beat_emphasis: Essentia predicts the phase as 2 phi[t-1] + phi[t-2] (a plus
            # sign) and takes the squared norm.
            dev = fine.deviation(spec[:k], mag[:k], unit[:k], +1)
            erb_bins[start:stop] = (dev.real**2 + dev.imag**2) @ _erb_weights()
            info_bins[start:stop] = mag[:k, _INFOGAIN_LO:_INFOGAIN_HI]
        w0, w1 = start // 2, min((start + len(spec) + 1) // 2, n_wide)
        if w1 > w0:
            k = w1 - w0
            wspec, wmag, wunit = spec[::2][:k], mag[::2][:k], unit[::2][:k]
            # complex: |S[t-1] - S[t] e^(i(phi - (2 phi[t-1] - phi[t-2])))| summed over bins.
            complex_odf[w0:w1] = np.abs(wide.deviation(wspec, wmag, wunit, -1)).sum(axis=1)
            power = wmag.astype(np.float64) ** 2
            rms[w0:w1] = np.sqrt(power.sum(axis=1)) / _BINS
            mel[w0:w1] = (wmag * wmag) @ _mel_weights()
        fine.push(mag, unit)
        wide.push(mag[::2], unit[::2])
    return {
        "complex": complex_odf,
        "rms": _rms_odf(rms),
        "melflux": _melflux_odf(mel),
        "beat_emphasis": _beat_emphasis_odf(erb_bins),
        "infogain": _infogain_odf(info_bins),
    }


class _History:
    """The two previous frames' magnitudes and unit phasors, zero magnitude and zero phase
    before the first frame (as Essentia initialises its onset detectors)."""

    def __init__(self, bins: int):
        self.mag = np.zeros((1, bins), dtype=np.float32)
        self.unit = np.ones((2, bins), dtype=np.complex64)

    def deviation(self, spec, mag, unit, sign: int) -> np.ndarray:
        """``S[t-1] - S[t] e^(i(phi[t] - (2 phi[t-1] + sign phi[t-2])))`` per frame and bin,
        with unit phasors instead of angles (no atan2 and no exp: ≈10x faster)."""
        units = np.concatenate([self.unit, unit])
        prev1, prev2 = units[1:-1], units[:-2]
        rotation = np.conj(prev1) ** 2 * (np.conj(prev2) if sign > 0 else prev2)
        prev_mag = np.concatenate([self.mag, mag[:-1]])
        return prev_mag - spec * rotation

    def push(self, mag: np.ndarray, unit: np.ndarray) -> None:
        self.mag = mag[-1:].astype(np.float32)
        self.unit = np.concatenate([self.unit, unit])[-2:].astype(np.complex64)


def _unit_phasors(spec: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """``e^(i phi)`` of each bin (1 where the magnitude is 0, as atan2(0, 0) = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = spec / mag
    unit[mag == 0] = 1.0
    return unit


def _rms_odf(rms: np.ndarray) -> np.ndarray:
    # OnsetDetection('rms'): half-rectified rise of sqrt(sum S^2) / bins; 0 on frame 0.
    return np.maximum(np.diff(rms, prepend=rms[:1]), 0.0).astype(np.float32)


def _melflux_odf(mel: np.ndarray) -> np.ndarray:
    # OnsetDetection('melflux'): dB of 40 mel bands (power), half-rectified L1 flux; the
    # Flux algorithm starts from a zero vector, and Essentia zeroes frame 0's value.
    db = 20.0 * np.log10(np.maximum(mel, _SILENCE_CUTOFF))
    flux = np.maximum(np.diff(db, axis=0), 0.0).sum(axis=1)
    return np.concatenate([[0.0], flux]).astype(np.float32)


def _infogain_odf(band: np.ndarray) -> np.ndarray:
    # OnsetDetectionGlobal('infogain'): for the frame entering an 11-frame buffer, the
    # information gain between the triangle-weighted sums of the buffer's first five and
    # last five frames (bins 40-5000 Hz). Essentia does not re-centre the output, so it
    # lags the spectrum by 5 frames; the buffer starts as zeros.
    side = _INFOGAIN_SIDE
    weights = np.array([1.0 - i * 0.9 / side for i in range(side)], dtype=np.float32)
    padded = np.vstack([np.zeros((2 * side, band.shape[1]), np.float32), band])
    n = len(band)
    old = np.zeros_like(band)
    new = np.zeros_like(band)
    for i in range(side):
        # buffer[i] (oldest first) is frame t - 10 + i; old weights reversed (0.28 .. 1),
        # new frames buffer[6 + i] weighted 1 .. 0.28.
        old += padded[i : i + n] * weights[side - 1 - i]
        new += padded[side + 1 + i : side + 1 + i + n] * weights[i]
    old[old == 0] = 1.0
    new[new == 0] = np.finfo(np.float32).eps
    gain = np.maximum(np.log2(new / old), 0.0)
    return gain.sum(axis=1).astype(np.float32)


def _beat_emphasis_odf(erb_bins: np.ndarray) -> np.ndarray:
    # OnsetDetectionGlobal('beat_emphasis'): the per-bin complex differences grouped into
    # ERB bands (erb_bins [frames, 40]), each band scaled to unit variance; each band is
    # weighted by the strongest tempo-weighted comb over its autocorrelation, and the ODF
    # is the weighted sum of the bands weighted at least as much as band 24 (see below).
    bands = erb_bins.T.astype(np.float64)  # [40, frames]
    n = bands.shape[1]
    std = bands.std(axis=1, keepdims=True)
    bands = np.where(std > 0, bands / np.where(std > 0, std, 1.0), bands)

    # Adaptive threshold: moving average of 17 over the band followed by 16 copies of
    # its last value. Essentia's MovingAverage is causal (zero initial state) and it
    # drops the first 16 outputs, so frame i's threshold is the mean of frames i..i+16.
    size = 2 * _SMOOTH_HALF + 1
    padded = np.concatenate([bands, np.repeat(bands[:, -1:], 2 * _SMOOTH_HALF, axis=1)], axis=1)
    csum = np.concatenate([np.zeros((len(bands), 1)), np.cumsum(padded, axis=1)], axis=1)
    smoothed = (csum[:, size : size + n] - csum[:, :n]) / size
    odf = np.maximum(bands - smoothed, 0.0)

    # Essentia computes the band weights on the padded vector: the thresholded frames
    # followed by the 16 padding copies of the band's last value, left unthresholded.
    weights = _band_weights(np.concatenate([odf, padded[:, n:]], axis=1))
    # Essentia means the 60th percentile of the weights, but copies them into a vector
    # it only reserved, sorts that empty vector and reads element 24 of the reserved
    # memory: the threshold is band 24's own weight. Reproduced, since it picks the bands.
    keep = weights >= weights[int(math.floor(_ERB_BANDS * 0.6))]
    return (weights[keep] @ odf[keep]).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _rayleigh() -> np.ndarray:
    tau = np.arange(1, _MAX_PERIOD + 1, dtype=np.float64)
    return tau / _RAYLEIGH * np.exp(-0.5 * tau * tau / _RAYLEIGH)


def _band_weights(odf: np.ndarray) -> np.ndarray:
    """Each band's periodicity salience, normalised to a maximum of 1 ([40])."""
    n = odf.shape[1]
    size = 1 << int(math.ceil(math.log2(2 * n)))
    spectrum = np.fft.rfft(odf, size, axis=1)
    acf = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, size, axis=1)[:, :n]
    acf /= n - np.arange(n)  # Essentia's AutoCorrelation(normalization='unbiased')
    if n < _MAX_PERIOD:
        acf = np.pad(acf, ((0, 0), (0, _MAX_PERIOD - n)))
    acf = acf[:, :_MAX_PERIOD]
    period_min = 3
    period_max = (_MAX_PERIOD - (_COMBS - 1)) // _COMBS - 1
    periods = np.arange(period_min, period_max)
    weighted = np.zeros((len(odf), _MAX_PERIOD))
    rayleigh = _rayleigh()[periods]
    for comb in range(1, _COMBS + 1):
        width = 2 * comb - 1
        for region in range(1 - comb, comb):
            weighted[:, periods] += rayleigh * acf[:, periods * comb + region] / width
    salience = weighted.max(axis=1)
    top = salience.max()
    return salience / top if top > 0 else salience


# --------------------------------------------------------------------------- tracking


def _trackers():
    from engine.essentia_lazy import standard

    es = standard()

    wide = dict(sampleRateODF=SAMPLE_RATE / _HOP_WIDE, resample="x2", minTempo=MIN_BPM, maxTempo=MAX_BPM)
    fine = dict(sampleRateODF=SAMPLE_RATE / _HOP, resample="none", minTempo=MIN_BPM, maxTempo=MAX_BPM)
    return {
        "complex": es.TempoTapDegara(**wide),
        "rms": es.TempoTapDegara(**wide),
        "melflux": es.TempoTapDegara(**wide),
        "beat_emphasis": es.TempoTapDegara(**fine),
        "infogain": es.TempoTapDegara(**fine),
    }, es.TempoTapMaxAgreement()


def bpm_from_ticks(ticks: np.ndarray) -> float:
    """``RhythmExtractor2013``'s tempo from beat times: the mean of the inter-beat tempi
    within 5 BPM of the most common 2-BPM bin; 0.0 with fewer than two ticks."""
    ticks = np.asarray(ticks, dtype=np.float64)
    if len(ticks) < 2:
        return 0.0
    tempi = 60.0 / np.diff(ticks).astype(np.float32).astype(np.float64)
    # Essentia's bincount rounds to the nearest bin (measured: truncating moves 1 in 5
    # corpus tempi by up to 0.4 BPM).
    closest = float(np.argmax(np.bincount(np.floor(tempi / 2.0 + 0.5).astype(int))) * 2)
    near = tempi[np.abs(closest - tempi) < 5.0]
    return float(near.mean()) if len(near) else closest


def track(mono_44k: np.ndarray) -> Beats:
    """Beats and tempo by the multi-feature tracker (see the module docstring).

    Parameters
    ----------
    mono_44k : numpy.ndarray
        Mono signal, shape [n], 44 100 Hz, non-empty and finite.

    Returns
    -------
    Beats
    """
    odfs = onset_functions(mono_44k)
    # Fresh instances per call: these standard-mode algorithms keep state between calls.
    trackers, agreement = _trackers()
    candidates = {
        name: np.asarray(trackers[name](odfs[name]), dtype=np.float32) for name in _ODF_NAMES
    }
    ticks, confidence = agreement([candidates[name] for name in _ODF_NAMES])
    ticks = np.asarray(ticks, dtype=np.float32)
    return Beats(ticks=ticks, confidence=float(confidence), bpm=bpm_from_ticks(ticks),
                 candidates=candidates)
