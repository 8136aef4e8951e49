"""The real HAAQI (Hearing-Aid Audio Quality Index, Kates & Arehart 2016), through pyclarity.

HAAQI compares a test signal with its clean reference through a model of the listener's
impaired ear and scores the music quality 0 (bad) .. 1 (as good as the reference). It
is intrusive (it needs the reference) and costly, so the engine uses it only as the
teacher of the non-intrusive predictor (:mod:`models.hearing`) and in
``engine quality --reference``. pyclarity is an optional, development-time dependency:
``pip install --no-deps pyclarity==0.9.0 numba scipy`` (its declared dependencies pull
torch; HAAQI needs only numpy, scipy and numba). See docs/hearing.md.

Settings (:func:`haaqi`), checked on known cases (15 s rock clip, 5 s excerpts)
--------------------------------------------------------------------------------
The listener wears a linear hearing aid fitted by NAL-R to the audiogram (the Clarity /
Cadenza challenges' convention): the same NAL-R filter (221 taps at the input rate, its
delay removed) is applied to the reference and to the test signal, and HAAQI is told the
reference is already equalised (pyclarity ``equalisation=2``). The level is calibrated
so that the reference plays at 65 dB SPL (``level1 = 65 - 20 log10(rms(reference))``,
Cadenza's setting); the test signal is first scaled to the reference's RMS
(``match_level``), so a level change alone costs nothing. Signals are mono (HAAQI
models one ear; stereo is averaged to mono first). The auditory model adds a little
Gaussian noise (pyclarity draws it from NumPy's global generator): ``seed`` fixes it,
so a score is reproducible.

Measured, identical signals score 0.999 for every audiogram; white noise at the music's
level 0.10-0.15. The pitfall to avoid: with ``equalisation=1`` pyclarity applies NAL-R to
the reference only, so an identical test signal scores 0.95 for normal hearing, 0.63
for a sloping loss (10-65 dB) and 0.30 for a flat 50 dB loss. A normal-hearing reference
(``equalisation=0``, as HASPI does) was also tried: any loss then dominates the score
(identical signals: 0.44 for a mild sloping loss, 0.18 for a severe one) and a
degradation moves it by only 0.01-0.05, so it cannot rank recordings for a listener.

Note what HAAQI measures: how much of the recording's damage the listener can hear,
relative to the clean recording through the same aid. A defect the listener cannot hear
costs nothing: white noise at 20 dB SNR scores 0.48 for normal hearing, 0.90 for a
sloping loss (10-65 dB) and 0.93 for a flat 50 dB loss.

Speed
-----
pyclarity's ``env_smooth`` and ``bm_covary`` loop over every 8 ms and 16 ms segment of
every auditory band in Python (80 000 and 40 000 small numpy calls per 5 s); they are
replaced here by vectorised equivalents (same results to 1e-9, tested), which makes
HAAQI about twice as fast. The rest (the ear model, numba-compiled) is pyclarity's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.errors import EngineError
from models.audiogram import AUDIOGRAM_HZ, Audiogram

__all__ = [
    "PYCLARITY_VERSION",
    "INSTALL_HINT",
    "REFERENCE_SPL",
    "HaaqiUnavailable",
    "HaaqiResult",
    "haaqi",
    "nalr",
    "available",
]

PYCLARITY_VERSION = "0.9.0"  #: the version whose internals :func:`haaqi` was checked against
INSTALL_HINT = (
    f"pip install --no-deps pyclarity=={PYCLARITY_VERSION} numba scipy "
    "(or: pip install -r bench/requirements-haaqi.txt in a source checkout)"
)
REFERENCE_SPL = 65.0  #: dB SPL at which the reference is presented
_NALR_TAPS = 220  # NAL-R FIR order at the input rate (Cadenza: 220 at 44.1 kHz)
_MIN_SECONDS = 0.5  # shorter signals leave HAAQI's 8 ms / 16 ms segment statistics empty


class HaaqiUnavailable(EngineError):
    """pyclarity (the reference HAAQI implementation) is not installed."""


@dataclass(frozen=True)
class HaaqiResult:
    """HAAQI of one test signal against its reference for one audiogram.

    Attributes
    ----------
    score : float
        Combined quality, 0 (bad) .. 1 (indistinguishable from the reference).
    nonlinear, linear : float
        HAAQI's nonlinear (envelope and fine-structure) and linear (spectral) parts, 0..1.
    """

    score: float
    nonlinear: float
    linear: float


def available() -> bool:
    """True when pyclarity's HAAQI can be imported."""
    try:
        require_clarity()
    except HaaqiUnavailable:
        return False
    return True


def require_clarity():
    try:
        from clarity.enhancer.nalr import NALR
        from clarity.evaluator.haspi import eb
        from clarity.utils.audiogram import Audiogram as ClarityAudiogram
    except ImportError as exc:
        raise HaaqiUnavailable(
            f"the real HAAQI needs pyclarity ({exc.name or exc} is missing): {INSTALL_HINT}"
        ) from None
    return eb, NALR, ClarityAudiogram


def _mono(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr.mean(axis=1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty signal [n] or [n, channels], got shape {np.shape(x)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: signal contains NaN or infinite samples")
    return arr


def nalr(x, audiogram: Audiogram, *, sample_rate: int = 44100) -> np.ndarray:
    """``x`` through a linear hearing aid fitted to ``audiogram`` by NAL-R, without delay.

    Parameters
    ----------
    x : ndarray, float, shape [n]
    audiogram : Audiogram
    sample_rate : int, Hz

    Returns
    -------
    ndarray, float64, shape [n]
        NAL-R gain is 0 dB for normal hearing and grows with the loss (+20..30 dB at 2-4 kHz
        for a 50 dB loss), so the result may exceed ±1; HAAQI works in SPL, not in dBFS.
    """
    _, NALR, ClarityAudiogram = require_clarity()
    enhancer = NALR(_NALR_TAPS, sample_rate)
    fir, _ = enhancer.build(ClarityAudiogram(levels=np.array(audiogram.thresholds),
                                             frequencies=np.array(AUDIOGRAM_HZ)))
    x = np.asarray(x, dtype=np.float64)
    delay = _NALR_TAPS // 2
    return enhancer.apply(fir, x)[delay: delay + len(x)]


def haaqi(reference, test, audiogram: Audiogram, *, sample_rate: int = 44100,
          seed: int = 0, match_level: bool = True) -> HaaqiResult:
    """HAAQI of ``test`` against ``reference`` for a listener with ``audiogram``.

    Parameters
    ----------
    reference, test : ndarray, float, shape [n] or [n, channels]
        Clean reference and the signal to score, same sample rate, nominally within ±1;
        stereo is averaged to mono. HAAQI aligns them (bulk delay) and uses the shorter
        length.
    audiogram : Audiogram
        The listener; HAAQI reads 250, 500, 1k, 2k, 4k, 6k Hz (3k and 8k are not used).
    sample_rate : int, Hz
    seed : int
        Seeds the auditory model's threshold noise (the global NumPy generator, restored
        afterwards).
    match_level : bool
        Scale ``test`` to the reference's RMS first (default), as listening tests compare
        at equal loudness: otherwise the gain before clipping or limiting, or a quieter
        transfer, is scored as a level difference the listener would simply turn the
        volume knob for.

    Returns
    -------
    HaaqiResult
        See the module docstring for the settings. Cost: about 1 CPU-second per second
        of audio (numba installed; 2.5 times more without).

    Raises
    ------
    HaaqiUnavailable
        When pyclarity is not installed (the message says how to install it).
    ValueError
        For an empty, non-finite or silent reference, or one shorter than 0.5 s.
    """
    eb, _, ClarityAudiogram = require_clarity()
    ref = _mono(reference, "reference")
    proc = _mono(test, "test")
    if min(len(ref), len(proc)) < _MIN_SECONDS * sample_rate:
        raise ValueError(f"HAAQI needs at least {_MIN_SECONDS} s of audio, got "
                         f"{min(len(ref), len(proc)) / sample_rate:.2f} s")
    rms = math.sqrt(float(np.mean(ref ** 2)))
    if rms == 0.0:
        raise ValueError("reference: the signal is silent, HAAQI has nothing to compare")
    level1 = REFERENCE_SPL - 20.0 * math.log10(rms)
    if match_level:
        test_rms = math.sqrt(float(np.mean(proc ** 2)))
        if test_rms > 0.0:
            proc = proc * (rms / test_rms)
    ref = nalr(ref, audiogram, sample_rate=sample_rate)
    proc = nalr(proc, audiogram, sample_rate=sample_rate)
    # HAAQI's own audiogram frequencies; 3k and 8k Hz are dropped, the others kept as given.
    levels = ClarityAudiogram(levels=np.array(audiogram.thresholds),
                              frequencies=np.array(AUDIOGRAM_HZ)).resample(
        np.array([250, 500, 1000, 2000, 4000, 6000])).levels
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return _haaqi_v1(eb, ref, proc, sample_rate, levels, level1)
    finally:
        np.random.set_state(state)


def _haaqi_v1(eb, reference: np.ndarray, processed: np.ndarray, sample_rate: int,
              levels: np.ndarray, level1: float) -> HaaqiResult:
    """pyclarity 0.9.0's ``haaqi_v1`` with ``equalisation=2`` and its default constants,
    step for step (MIT licence, Kates's MATLAB translated by G. Roa Dabike), with the two
    slow helpers replaced by :func:`_env_smooth` and :func:`_bm_covary`."""
    silence_threshold, add_noise, segment_covariance, segment_size = 2.5, 0.0, 16, 8
    ref_db, ref_bm, proc_db, proc_bm, ref_sl, proc_sl, fs = eb.ear_model(
        reference, sample_rate, processed, sample_rate, levels, 2, level1)
    ref_smooth = _env_smooth(ref_db, segment_size, fs)
    proc_smooth = _env_smooth(proc_db, segment_size, fs)
    _, _, mel_cepstral_high, _ = eb.melcor9(ref_smooth, proc_smooth, silence_threshold,
                                            add_noise, segment_size)
    dloud_stats, dnorm_stats, _ = eb.spectrum_diff(ref_sl, proc_sl)
    cross_cov, ref_ms, _ = _bm_covary(ref_bm, proc_bm, segment_covariance, fs)
    _, ihc_sync_cov = eb.ave_covary2(cross_cov, ref_ms, silence_threshold)
    bm_sync5 = ihc_sync_cov[4]
    d_loud = min(max(1.0 - dloud_stats[1] / 2.5, 0.0), 1.0)
    d_norm = min(max(1.0 - dnorm_stats[1] / 25.0, 0.0), 1.0)
    nonlinear = 0.754 * mel_cepstral_high ** 3 + 0.246 * bm_sync5
    linear = 0.329 * d_loud + 0.671 * d_norm
    combined = 0.336 * nonlinear + 0.001 * linear + 0.501 * nonlinear ** 2 + 0.161 * linear ** 2
    return HaaqiResult(float(combined), float(nonlinear), float(linear))


def _segments(n_samples: int, npts: int) -> tuple[int, int]:
    """(half window, number of 50 %-overlapping segments) as pyclarity counts them."""
    nseg = int(1 + np.floor(npts / n_samples) + np.floor((npts - n_samples / 2) / n_samples))
    return n_samples // 2, nseg


def _env_smooth(envelopes: np.ndarray, segment_size: int, sample_rate: float) -> np.ndarray:
    """``eb.env_smooth``: windowed averages of 50 %-overlapping segments, [nchan, nseg]."""
    n_samples = int(np.around(segment_size * (0.001 * sample_rate)))
    n_samples += n_samples % 2
    window = np.hanning(n_samples)
    nhalf, nseg = _segments(n_samples, envelopes.shape[1])
    half = window[nhalf:]
    smooth = np.zeros((envelopes.shape[0], nseg))
    smooth[:, 0] = envelopes[:, :nhalf] @ half / half.sum()
    if nseg > 2:
        frames = np.lib.stride_tricks.sliding_window_view(envelopes, n_samples, axis=1)
        smooth[:, 1:nseg - 1] = frames[:, nhalf: nhalf * (nseg - 1): nhalf] @ window / window.sum()
    start = (nseg - 1) * nhalf
    smooth[:, nseg - 1] = envelopes[:, start: start + nhalf] @ window[:nhalf] / half.sum()
    return smooth


def _bm_covary(ref_bm: np.ndarray, proc_bm: np.ndarray, segment_size: int,
               sample_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``eb.bm_covary``: per band and 16 ms segment, the largest normalised
    cross-covariance within ±1 ms and the mean squares, [nchan, nseg] each."""
    small = 1.0e-30
    maxlag = int(np.around(1.0 * (0.001 * sample_rate)))
    nwin = int(np.around(segment_size * (0.001 * sample_rate)))
    nwin += nwin % 2 == 1
    window = np.hanning(nwin)
    nhalf, nseg = _segments(nwin, ref_bm.shape[1])
    nchan = ref_bm.shape[0]

    def lag_norm(w: np.ndarray) -> np.ndarray:
        corr = np.correlate(w, w, "full")
        return 1.0 / corr[len(w) - 1 - maxlag: maxlag + len(w)]

    # Segments: the first and last use half windows, the rest full windows at hop nhalf.
    cov = np.zeros((nchan, nseg))
    ms_ref = np.zeros((nchan, nseg))
    ms_proc = np.zeros((nchan, nseg))
    pieces = [(slice(0, 1), ref_bm[:, None, :nhalf], proc_bm[:, None, :nhalf], window[nhalf:])]
    if nseg > 2:
        fr = np.lib.stride_tricks.sliding_window_view(ref_bm, nwin, axis=1)
        fp = np.lib.stride_tricks.sliding_window_view(proc_bm, nwin, axis=1)
        sel = slice(nhalf, nhalf * (nseg - 1), nhalf)
        pieces.append((slice(1, nseg - 1), fr[:, sel], fp[:, sel], window))
    last = (nseg - 1) * nhalf
    pieces.append((slice(nseg - 1, nseg), ref_bm[:, None, last:last + nhalf],
                   proc_bm[:, None, last:last + nhalf], window[:nhalf]))
    for where, xs, ys, w in pieces:
        norm = 1.0 / np.sum(w ** 2)
        size = 1 << int(math.ceil(math.log2(2 * len(w))))
        weights = lag_norm(w)
        for k in range(nchan):  # one band at a time: [nseg, size] spectra stay small
            x = xs[k] * w
            y = ys[k] * w
            x = x - x.mean(axis=-1, keepdims=True)
            y = y - y.mean(axis=-1, keepdims=True)
            rx = np.sum(x ** 2, axis=-1) * norm
            ry = np.sum(y ** 2, axis=-1) * norm
            # Cross-correlation at lags -maxlag..maxlag through the FFT (zero-padded, so
            # not circular): c[m] = sum_n x[n + m] y[n].
            c = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(y, size)), size)
            lags = np.concatenate((c[..., size - maxlag:], c[..., : maxlag + 1]), axis=-1)
            peak = np.max(np.abs(lags * weights), axis=-1)
            ok = (rx > small) & (ry > small)
            cov[k, where] = np.where(ok, peak / np.sqrt(np.where(ok, rx * ry, 1.0)), 0.0)
            ms_ref[k, where] = rx
            ms_proc[k, where] = ry
    return np.clip(cov, 0.0, 1.0), 2.0 * ms_ref, 2.0 * ms_proc
