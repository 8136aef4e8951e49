"""Reference-free audio quality: defect measures and one 0-100 quality score per track.

Longer than 500 lines: one job (the measures and the score they feed) read together;
the measures share one frame analysis and the short-signal rule, and ≈140 lines are this
docstring's thresholds with the measurements behind them.

Every function here is a pure function of numpy arrays (the decoder's output), like
:mod:`engine.descriptors`: no files, no database, safe in worker processes. No measure
needs a clean reference; each looks for the fingerprint one defect leaves on a signal.

Input conventions are those of :mod:`engine.descriptors`: mono float32 ``[n]`` and stereo
``[n, 2]`` at 44 100 Hz, nominally within [-1, 1] (decoded lossy files may overshoot).
Empty or non-finite input raises ``ValueError``; every other signal, however short or
silent, yields a result, with ``NaN`` (``None`` for ``hum_hz``) where a measure is
undefined; the store keeps those as NULL.

Measures
--------
"Frames" are 2048 samples (46 ms), Hann window, no overlap, each frame's mean removed;
"active" frames have an RMS of at least -60 dBFS. Levels in dB are 10·log10 of a mean
square relative to full scale (a full-scale square wave is 0 dB, a full-scale sine -3 dB).
Clicks, clipping, SNR and bandwidth are NaN below :data:`MIN_SECONDS` (1 s) of audio,
hum below 4 s.

``clicks_per_min`` (>= 0, per minute of audio)
    Isolated impulses: clicks, pops, crackle, digital ticks. Each frame is whitened by
    its own order-16 linear predictor (autocorrelation method, from the frame's power
    spectrum). A click is a residual peak above 10 times the frame's robust residual
    scale (1.4826 x median absolute residual, at least 1e-5) that is also at least 3
    times every other residual sample within 20 ms of it, outside +-0.39 ms (the
    whitening filter's length, over which an impulse's residual spreads). The isolation
    test is what tells clicks from music: drum attacks, plucks and the pitch pulses of
    voices, brass and buzzy synthesizer basses (down to 50 Hz) leave bursts or trains
    of residual peaks, not lone ones. Clean music reads 0-35; vinyl crackle hundreds;
    the corpus's 24 kbit/s AAC clip 450 (its coding artefacts are click-like). A click
    within 20 ms of a comparable one is not counted, so densities above about 1000 per
    minute read low (2000/min inserted reads 400-800), and loud music masks weak clicks:
    of clicks inserted at -20..-6 dBFS, about half are found in rock and 85-100 % in
    quieter music.
``clipping_share`` (0-1)
    Share of samples (all channels) piled up near the peak. Per channel with a peak
    above -40 dBFS: a histogram of abs(x) in 100 bins over [0, peak] (bins of whole
    quantisation steps for a signal on a grid of at most 12 bits); from 25 % of the
    peak upwards, a bin's count in excess of the lowest count of any bin below it
    (down to 25 %) is piled up. Music's amplitude distribution falls towards its peak,
    so it has next to no excess (0-0.005, counting noise; an 8-bit recording resampled
    to 44.1 kHz 0.006); hard clipping and brick-wall limiting ("loudness war"
    over-compression) pile samples up at the ceiling (0.01-0.7), whether or not the
    track was turned down afterwards. A lossy encoder's ringing spreads the pile over
    neighbouring bins and over-shoots the ceiling, but the pile stays in the excess:
    hard clipping by 10 dB reads 0.21 on PCM and 0.09 after MP3 at 128 kbit/s, where a
    count of samples at the peak reads 0. A steady pure tone reads high too: its
    samples dwell near its peak (arcsine distribution).
``hum_db`` (dB, >= 0) and ``hum_hz`` (50, 60 or NULL)
    Mains hum: a spectral line at 50, 100 or 150 Hz (60, 120, 180 Hz) that is there all
    the time. The signal is decimated to 2205 Hz and cut into 4 s frames (0.25 Hz bins,
    hop 2 s). Per frame and line, the prominence is the largest power within +-0.25 Hz
    of the line over the median power 1.5-5 Hz either side, in dB; ``hum_db`` is the
    largest, over the six lines, of the 10th percentile of that prominence over frames
    (a line present in 90 % of the frames, as hum is and a bass note rarely is; in
    equal temperament at A = 440 Hz no note falls within 0.9 Hz of these lines).
    ``hum_hz`` is the mains frequency of that line when ``hum_db`` >= 12
    (:data:`HUM_DETECT_DB`), else None. Music alone reads 0-12.5 dB; a 50 Hz hum at
    -50 dBFS under the corpus's clean rock clip reads 7 dB, at -40 dBFS 13 dB, at
    -30 dBFS 22 dB.
``dropouts`` (count)
    Gaps inside the programme: runs of 2.5 ms blocks, together 5 ms to 2 s long, whose
    peak stays below -70 dBFS, entered and left abruptly (the blocks just before and
    just after the run have an RMS above -40 dBFS) with programme around them (the
    20 ms on each side have an RMS above -40 dBFS). Leading and trailing silence, fades,
    and notes that decay into a rest do not count.
``snr_db`` (dB) and ``noise_floor_dbfs`` (dB)
    Broadband noise (hiss), taken as white. Its density is the lowest, over 1/3-octave
    bands from 1 kHz to 0.9 x ``bandwidth_hz`` (at most 16 kHz), of the 10th percentile
    over active frames of the band's mean power per bin, divided by the fraction of its
    mean that percentile is for noise (0.57-0.91 by band width): the level a band never
    stays below, which is the hiss when there is hiss and the gaps between notes when
    there is none. Bands a lossy encoder emptied now and then (10th percentile more
    than 60 dB below the median) are skipped. ``noise_floor_dbfs`` is that density over
    0 .. ``bandwidth_hz``; ``snr_db`` is the mean level of the active frames minus it,
    at most 100. White noise added to music reads within about 1 dB of its true SNR
    once it is above the music's own floor; clean music reads 25-75 dB (dense cymbals
    and chiptune noise channels are the low end), so only values below about 30 dB
    point to hiss. Pink or band-limited noise reads as a higher SNR than it has. NaN
    when no frame is active.
``bandwidth_hz`` (Hz)
    The spectral cut-off: the highest frequency at which the 90th percentile over frames
    of the power spectrum, smoothed over 11 bins (237 Hz), is within 70 dB of its
    maximum above 20 Hz. Lossy encoders cut at a bit-rate dependent frequency (MP3,
    Vorbis, AAC at 128 kbit/s: 16-17.5 kHz; MP3 64 kbit/s: about 11 kHz), so a lossless
    file cut near 16 kHz was most likely made from a lossy one ("fake lossless"; query
    ``codec in ('flac', 'alac', 'wavpack') or codec like 'pcm%'`` with
    ``bandwidth_hz < 19000``). A native sample rate below 44.1 kHz caps it at half that
    rate. Noise counts as content: hiss fills the spectrum to 22 kHz (``snr_db`` shows
    it); dark recordings (a solo voice, an old 78) read low without any transcoding.
``dc_offset`` (0-1, fraction of full scale)
    Largest absolute channel mean. Above 0.02 points to a faulty converter (or to
    strongly asymmetric synthetic waveforms).
``silence_start_s``, ``silence_end_s`` (s)
    Leading and trailing silence: the time before the first and after the last 10 ms
    block whose RMS reaches -60 dBFS (the threshold of Essentia's ``StartStopSilence``).
    Both equal the analysed duration for a silent signal.

Score
-----
``score`` in [0, 100], 100 = no defect found. Each defect ``i`` has a penalty ``p_i`` in
[0, 1] that rises linearly, on the scale shown, from 0 at a level that is normal for
music to 1 at a level that ruins the track; it costs at most the fraction ``w_i`` of
the score, and the costs multiply: ``score = 100 x prod_i (1 - w_i p_i)``, rounded to
0.1 (:data:`index.schema.SCORE_TERMS`).

================  ===================  ==========  ===========  ====
measure           scale                p = 0 at    p = 1 at     w
================  ===================  ==========  ===========  ====
bandwidth_hz      log(frequency)       >= 18 kHz   <= 3 kHz     0.7
snr_db            dB                   >= 30 dB    <= 0 dB      0.7
clicks_per_min    log(rate)            <= 30       >= 1000      0.6
clipping_share    log(share)           <= 0.005    >= 0.1       0.6
hum_db            dB                   <= 12 dB    >= 30 dB     0.6
dropouts          p = 1 - 0.5^count    0           many         0.6
dc_offset         linear               <= 0.02     >= 0.2       0.2
================  ===================  ==========  ===========  ====

A signal whose RMS is below -70 dBFS (:data:`engine.signals.SILENCE_RMS_DBFS`)
scores 0: a silent file is a broken file. A NaN measure costs nothing. Leading and
trailing silence and the bit rate are reported, not scored. Reading the score: one
defect at its worst leaves 30-40 (bandwidth or SNR alone 30, clicks, clipping, hum 40),
one dropout 70, hiss at 20 dB SNR about 77, a 128 kbit/s MP3 cut at 16.5 kHz about 97.

Choices, with measurements (15-30 s clips, CPU time)
----------------------------------------------------
Essentia's audio-problem algorithms were tried first. ``ClickDetector`` costs 0.22 s
per 30 s; at its default 30 dB threshold it finds none of the clicks in the corpus's
vinyl clip, at 20 dB it separates vinyl (690/min) from clean music (0) about as well as
the detector here (430/min against 8), which costs 35 ms. ``HumDetector`` (0.14 s per
30 s) also reports stationary bass notes (98 Hz in the clean clip, salience 0.38
against 0.83 for the 50 Hz hum). ``GapsDetector`` finds the dropout but costs 0.1 s
against 1 ms here. ``SaturationDetector`` (40 ms) finds a tenth of the clipped regions
once the clipped signal went through MP3. ``NoiseBurstDetector`` flags hundreds of bursts in clean rock;
``SNR`` needs noise alone at the start of the signal. So every measure is numpy, sharing
one frame analysis; all of them cost about 80 ms per 30 s clip (``timings``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.decode import SAMPLE_RATE  # Hz, of every signal here
from engine.quality_profile import QUALITY_PROFILE_NAMES, profile
from engine.signals import as_channels, as_mono, is_silent
from index.schema import SCORE_TERMS  # the terms of the quality column, read by index.report too
from models.kernels import rfft  # scipy.fft.rfft without importing scipy.fft

__all__ = [
    "SAMPLE_RATE",
    "MIN_SECONDS",
    "HUM_DETECT_DB",
    "SCORE_TERMS",
    "QUALITY_COLUMNS",
    "Quality",
    "quality",
    "click_rate",
    "clipping_share",
    "hum",
    "dropouts",
    "noise",
    "bandwidth",
    "dc_offset",
    "silences",
    "score",
]


#: Shortest signal [s] on which the statistics (clicks, clipping, SNR, bandwidth) are
#: computed; they are NaN for shorter ones.
MIN_SECONDS = 1.0

# Shared frame analysis.
_FRAME = 2048
_ACTIVE_DBFS = -60.0  # frames quieter than this are ignored by the noise estimate

# Clicks.
_LPC_ORDER = 16
_CLICK_BLOCK = 32  # frames per block of the residual filter (see _click_events)
_CLICK_THRESHOLD = 10.0  # x robust residual scale
_CLICK_ISOLATION = 3.0  # x largest other residual within the window
_CLICK_WINDOW = 882  # samples either side (20 ms)
_CLICK_GUARD = _LPC_ORDER + 1  # samples either side that belong to the click (0.39 ms):
# the residual of an impulse is the whitening filter's own impulse response
_CLICK_MIN_SCALE = 1e-5

# Clipping.
_CLIP_BINS = 100  # amplitude histogram bins over [0, channel peak]
_CLIP_MAX_GRID_BITS = 12  # coarser sample grids get bins of whole quantisation steps
_CLIP_START = 0.25  # the pile-up is sought above this fraction of the peak
_CLIP_MIN_PEAK_DBFS = -40.0

# Hum.
_HUM_RATE = 2205  # Hz, decimated rate (44100 / 20)
_HUM_FRAME_S = 4.0
_HUM_HOP_S = 2.0
_HUM_PERCENTILE = 10.0  # of per-frame prominence: there 90 % of the time
_HUM_MAINS = (50.0, 60.0)
_HUM_HARMONICS = (1, 2, 3)
_HUM_LINE_HZ = 0.25
_HUM_REF_HZ = (1.5, 5.0)
HUM_DETECT_DB = 12.0  #: hum_db from which hum_hz is reported

# Dropouts.
_GAP_BLOCK = 110  # samples (2.5 ms)
_GAP_SILENT = 10.0 ** (-70.0 / 20.0)  # block peak below this is a gap
_GAP_MIN_BLOCKS = 2  # 5 ms
_GAP_MAX_S = 2.0
_GAP_CONTEXT_BLOCKS = 8  # 20 ms
_GAP_CONTEXT_DBFS = -40.0

# Noise.
_NOISE_PERCENTILE = 10.0
_Z_NOISE_PERCENTILE = 1.2816  # standard normal quantile of that percentile
_NOISE_LOW_HZ = 1000.0
_NOISE_HIGH_HZ = 16000.0
_SNR_CAP_DB = 100.0
_NOISE_MAX_SPREAD_DB = 60.0

# Bandwidth.
_BW_PERCENTILE = 90.0
_BW_SMOOTH_BINS = 11
_BW_DROP_DB = 70.0
_BW_MIN_HZ = 20.0

# Silence.
_SILENCE_BLOCK = 441  # 10 ms
_SILENCE_DBFS = -60.0


#: tracks column -> Quality attribute, in schema order.
QUALITY_COLUMNS: dict[str, str] = {
    "quality": "score",
    "clicks_per_min": "clicks_per_min",
    "clipping_share": "clipping_share",
    "hum_db": "hum_db",
    "hum_hz": "hum_hz",
    "dropouts": "dropouts",
    "snr_db": "snr_db",
    "noise_floor_dbfs": "noise_floor_dbfs",
    "bandwidth_hz": "bandwidth_hz",
    "dc_offset": "dc_offset",
    "silence_start_s": "silence_start_s",
    "silence_end_s": "silence_end_s",
    "quality_profile": "profile",  # engine.quality_profile: a list of floats (None: undefined)
}


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class Quality:
    """Defect measures and quality score of one track (see the module docstring).

    Attributes
    ----------
    score : float
        0 (broken) .. 100 (no defect found).
    clicks_per_min, clipping_share, hum_db, hum_hz, dropouts, snr_db, noise_floor_dbfs,
    bandwidth_hz, dc_offset, silence_start_s, silence_end_s
        The measures; floats are NaN where undefined, ``hum_hz`` is None without hum.
    profile : ndarray or None
        The defect profile (:mod:`engine.quality_profile`), NaN where undefined.
    timings : dict of str to float
        Wall-clock seconds per part: ``'spectrum'``, ``'clicks'``, ``'hum'``,
        ``'levels'`` (clipping, dropouts, DC, silence), ``'profile'``, ``'score'``.
    """

    score: float
    clicks_per_min: float
    clipping_share: float
    hum_db: float
    hum_hz: float | None
    dropouts: int
    snr_db: float
    noise_floor_dbfs: float
    bandwidth_hz: float
    dc_offset: float
    silence_start_s: float
    silence_end_s: float
    profile: np.ndarray | None = field(default=None, compare=False)
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    def columns(self) -> dict[str, Any]:
        """The ``tracks`` columns (index.schema names) as plain Python values, NaN as None."""
        out: dict[str, Any] = {}
        for column, attr in QUALITY_COLUMNS.items():
            v = getattr(self, attr)
            if isinstance(v, (float, np.floating)):
                v = float(v)
                v = None if not math.isfinite(v) else v
            elif isinstance(v, (np.integer,)):
                v = int(v)
            elif isinstance(v, np.ndarray):
                v = [float(e) if math.isfinite(e) else None for e in v]
            out[column] = v
        return out


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Frames:
    """Power spectra of the signal's full frames (at least one, zero-padded if short)."""

    power: np.ndarray  # [frames, _FRAME // 2 + 1] float32, one-sided |X|^2
    level_db: np.ndarray  # [frames] mean-square level of each frame, dB
    n_samples: int  # samples covered by the frames (<= signal length unless padded)


def _frames(x: np.ndarray) -> _Frames:
    n = x.size
    count = max(1, n // _FRAME)
    if n < _FRAME:
        block = np.zeros((1, _FRAME), dtype=np.float32)
        block[0, :n] = x
    else:
        block = x[: count * _FRAME].reshape(count, _FRAME)
    block = block - block.mean(axis=1, keepdims=True)
    window = np.hanning(_FRAME).astype(np.float32)
    # scipy's float32 FFT: 4x faster than numpy's (bench/build_speed.py's quality stage).
    spec = rfft(block * window, axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    ms = np.mean(np.square(block, dtype=np.float32), axis=1, dtype=np.float64)
    level = 10.0 * np.log10(np.maximum(ms, 1e-30))
    return _Frames(power=power, level_db=level, n_samples=min(n, count * _FRAME))


def _power_to_ms(power_sum: np.ndarray | float) -> np.ndarray | float:
    """Sum of one-sided Hann-frame power over bins -> mean square of the signal."""
    w2 = float(np.sum(np.hanning(_FRAME) ** 2))
    return 2.0 * np.asarray(power_sum) / (_FRAME * w2)


def _db(v: float) -> float:
    return 10.0 * math.log10(v) if v > 0 else -math.inf


# --------------------------------------------------------------------------- bandwidth


def _spectral(fr: _Frames) -> tuple[float, float, float]:
    """``(bandwidth_hz, snr_db, noise_floor_dbfs)`` from the frames' power spectra."""
    freqs = np.fft.rfftfreq(_FRAME, 1.0 / SAMPLE_RATE)
    spec = np.percentile(fr.power, _BW_PERCENTILE, axis=0)
    smooth = np.convolve(spec, np.ones(_BW_SMOOTH_BINS) / _BW_SMOOTH_BINS, mode="same")
    usable = freqs >= _BW_MIN_HZ
    peak = float(smooth[usable].max())
    if not peak > 0.0:
        return math.nan, math.nan, math.nan
    threshold = peak * 10.0 ** (-_BW_DROP_DB / 10.0)
    # Noise counts as content here: hiss fills the spectrum up to the Nyquist
    # frequency (snr_db reports it). The noise floor is sought below the cut-off.
    bw = float(freqs[np.flatnonzero(usable & (smooth >= threshold))[-1]])
    density = _noise_density(fr, bw)
    if math.isnan(density):
        return bw, math.nan, math.nan
    n_bins = max(1, int(round(bw * _FRAME / SAMPLE_RATE)))
    noise_ms = float(_power_to_ms(density * n_bins))
    if noise_ms <= 0.0:
        return bw, _SNR_CAP_DB, -math.inf
    active = fr.power[fr.level_db >= _ACTIVE_DBFS]
    signal_ms = float(np.mean(_power_to_ms(active.sum(axis=1, dtype=np.float64))))
    floor_db = _db(noise_ms)
    return bw, min(_SNR_CAP_DB, _db(signal_ms) - floor_db), floor_db


def _noise_density(fr: _Frames, extent_hz: float) -> float:
    """White-equivalent noise floor: power per bin (see the module docstring); NaN when
    no frame is active, 0 when no band keeps a floor."""
    active = fr.level_db >= _ACTIVE_DBFS
    if not active.any():
        return math.nan
    power = fr.power[active]
    bin_hz = SAMPLE_RATE / _FRAME
    high = min(0.9 * extent_hz, _NOISE_HIGH_HZ)
    low = _NOISE_LOW_HZ if high >= _NOISE_LOW_HZ * 2 ** (1 / 3) else high / 4.0
    edges_hz = low * 2.0 ** (np.arange(0, 64) / 3.0)
    edges = np.unique(np.round(edges_hz[edges_hz <= high] / bin_hz).astype(int))
    edges = edges[edges >= 1]
    if edges.size < 2:
        edges = np.array([1, max(2, int(round(high / bin_hz)))])
    band_mean = np.add.reduceat(power, edges[:-1], axis=1)[:, : edges.size - 1]
    band_mean = band_mean / np.diff(edges)[None, :]
    low_q, mid_q = np.percentile(band_mean, [_NOISE_PERCENTILE, 50.0], axis=0)
    # A band whose low percentile is far below its median was emptied now and then by
    # a lossy encoder (no noise floor survives there): it says nothing about noise.
    kept = low_q >= mid_q * 10.0 ** (-_NOISE_MAX_SPREAD_DB / 10.0)
    if not kept.any():
        return 0.0
    # For noise, a band mean over k bins varies like chi-square with about k degrees of
    # freedom (Hann-windowed bins are correlated); its 10th percentile is this fraction
    # of the mean (Wilson-Hilferty; measured within 0.3 dB on white noise).
    k = np.diff(edges).astype(np.float64)
    c = 2.0 / (9.0 * k)
    expected = (1.0 - c - _Z_NOISE_PERCENTILE * np.sqrt(c)) ** 3
    return float((low_q / expected)[kept].min())


def bandwidth(mono_44k) -> float:
    """Effective bandwidth (spectral cut-off) [Hz], 0 .. 22050 (see the module docstring).

    NaN for silence and for signals shorter than :data:`MIN_SECONDS`.
    """
    x = as_mono(mono_44k)
    if x.size < MIN_SECONDS * SAMPLE_RATE or is_silent(x):
        return math.nan
    return _spectral(_frames(x))[0]


def noise(mono_44k) -> tuple[float, float]:
    """``(snr_db, noise_floor_dbfs)`` of the white-equivalent noise floor.

    See the module docstring. ``(NaN, NaN)`` for silence, for signals shorter than
    :data:`MIN_SECONDS` and when no frame reaches -60 dBFS. ``noise_floor_dbfs`` is
    ``-inf`` (and ``snr_db`` 100) for a signal without any floor (e.g. a pure tone).
    """
    x = as_mono(mono_44k)
    if x.size < MIN_SECONDS * SAMPLE_RATE or is_silent(x):
        return math.nan, math.nan
    return _spectral(_frames(x))[1:]


# --------------------------------------------------------------------------- clicks


def _lpc(r: np.ndarray) -> np.ndarray:
    """Levinson-Durbin on autocorrelations ``r`` [frames, order+1] -> A(z) coefficients."""
    frames, p1 = r.shape
    order = p1 - 1
    a = np.zeros((frames, p1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = r[:, i] + np.einsum("fj,fj->f", a[:, 1:i], r[:, i - 1 : 0 : -1])
        k = -acc / err
        prev = a[:, 1:i].copy()
        a[:, 1:i] = prev + k[:, None] * prev[:, ::-1]
        a[:, i] = k
        err = err * (1.0 - k * k)
    return a


def _click_events(x: np.ndarray, fr: _Frames) -> np.ndarray:
    """Sample indices of the isolated clicks in the full frames of ``x``."""
    frames = fr.power.shape[0]
    n = frames * _FRAME
    if x.size < n:  # one zero-padded frame
        x = np.concatenate([x, np.zeros(n - x.size, dtype=np.float32)])
    # Autocorrelation of each Hann-windowed frame from its power spectrum. It is the
    # circular autocorrelation, but the window is ~0 where lags up to 16 wrap around.
    lags = np.arange(_LPC_ORDER + 1)
    bins = np.arange(_FRAME // 2 + 1)
    weights = np.full(bins.size, 2.0)
    weights[0] = weights[-1] = 1.0
    cosines = (weights[:, None] * np.cos(2.0 * np.pi * bins[:, None] * lags[None, :] / _FRAME))
    r = fr.power.astype(np.float64) @ cosines  # [frames, order+1], up to a constant
    r[:, 0] = r[:, 0] * (1.0 + 1e-9) + 1e-20  # keeps the recursion stable on silence
    a = _lpc(r).astype(np.float32)
    # Residual e[t] = sum_k a_k x[t-k], frame by frame with each frame's own predictor.
    xp = np.concatenate([np.zeros(_LPC_ORDER, dtype=np.float32), x[:n] - np.float32(x.mean())])
    mag = np.empty((frames, _FRAME), dtype=np.float32)
    # In blocks of _CLICK_BLOCK frames (256 KB) so the 17 passes run in cache: over the
    # whole signal at once they are memory-bound (measured 2x slower on 45 s).
    for f0 in range(0, frames, _CLICK_BLOCK):
        f1 = min(f0 + _CLICK_BLOCK, frames)
        s0, s1 = f0 * _FRAME, f1 * _FRAME
        resid = a[f0:f1, :1] * xp[_LPC_ORDER + s0 : _LPC_ORDER + s1].reshape(f1 - f0, _FRAME)
        for k in range(1, _LPC_ORDER + 1):
            resid += a[f0:f1, k : k + 1] * xp[_LPC_ORDER - k + s0 : _LPC_ORDER - k + s1].reshape(f1 - f0, _FRAME)
        np.abs(resid, out=mag[f0:f1])
    # Robust scale per frame: median of every 4th sample (4x cheaper, same value to
    # within a few per cent on 2048 samples).
    scale = np.maximum(1.4826 * np.median(mag[:, ::4], axis=1), _CLICK_MIN_SCALE)
    cand = np.flatnonzero((mag > _CLICK_THRESHOLD * scale[:, None]).ravel())
    # The predictor has no history before the first sample: a signal that starts
    # abruptly would read as a click there.
    cand = cand[cand >= 2 * _CLICK_GUARD]
    if cand.size == 0:
        return cand
    mag = mag.ravel()
    # One event per cluster of candidates (gaps <= 0.39 ms); its peak is the cluster's
    # largest sample (the first one, on ties).
    starts = np.concatenate([[0], np.flatnonzero(np.diff(cand) > _CLICK_GUARD) + 1])
    values = mag[cand]
    cluster = np.repeat(np.arange(starts.size), np.diff(np.append(starts, cand.size)))
    is_max = values == np.maximum.reduceat(values, starts)[cluster]
    _, first = np.unique(cluster[is_max], return_index=True)
    peaks = cand[np.flatnonzero(is_max)[first]]
    offsets = np.concatenate([
        np.arange(-_CLICK_WINDOW, -_CLICK_GUARD), np.arange(_CLICK_GUARD + 1, _CLICK_WINDOW + 1)
    ])
    isolated = np.empty(peaks.size, dtype=bool)
    for i in range(0, peaks.size, 1024):  # bounded memory for very dense candidates
        chunk = peaks[i : i + 1024]
        neighbours = mag[np.clip(chunk[:, None] + offsets[None, :], 0, n - 1)].max(axis=1)
        isolated[i : i + 1024] = mag[chunk] >= _CLICK_ISOLATION * neighbours
    return peaks[isolated]


def click_rate(mono_44k) -> float:
    """Isolated clicks per minute of audio (see the module docstring)."""
    x = as_mono(mono_44k)
    if x.size < MIN_SECONDS * SAMPLE_RATE:
        return math.nan
    return _click_rate(x, _frames(x))


def _click_rate(x: np.ndarray, fr: _Frames) -> float:
    events = _click_events(x, fr)
    minutes = max(fr.n_samples, 1) / SAMPLE_RATE / 60.0
    return float(events.size / minutes)


# --------------------------------------------------------------------------- hum


def hum(mono_44k) -> tuple[float, float | None]:
    """``(hum_db, hum_hz)``: prominence [dB] of the most persistent mains line, 50/60 or None.

    See the module docstring. ``(NaN, None)`` for signals shorter than 4 s.
    """
    x = as_mono(mono_44k)
    if x.size < _HUM_FRAME_S * SAMPLE_RATE:
        return math.nan, None
    return _hum(x)[:2]


def _hum(x: np.ndarray) -> tuple[float, float | None, float]:
    """``(hum_db, hum_hz, hum_level_db)``; the last (for :mod:`engine.quality_profile`) is
    the power of the chosen mains' lines above their surroundings (median over frames,
    summed over the harmonics) over the whole signal's power, dB."""
    import soxr

    frame = int(_HUM_FRAME_S * _HUM_RATE)
    hop = int(_HUM_HOP_S * _HUM_RATE)
    y = soxr.resample(x, SAMPLE_RATE, _HUM_RATE, quality="MQ")
    count = max(1, 1 + (y.size - frame) // hop)
    if y.size < frame:
        y = np.concatenate([y, np.zeros(frame - y.size, dtype=y.dtype)])
    block = y[np.arange(frame)[None, :] + hop * np.arange(count)[:, None]]
    block = block - block.mean(axis=1, keepdims=True)
    spec = rfft(block * np.hanning(frame).astype(np.float32), axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float64)
    tiny = max(float(power.max()), 1e-30) * 1e-15
    freqs = np.fft.rfftfreq(frame, 1.0 / _HUM_RATE)
    best_db, best_hz = -math.inf, None
    total = float(np.median(power.sum(axis=1)))
    line_power = {}
    for mains in _HUM_MAINS:
        line_power[mains] = 0.0
        for h in _HUM_HARMONICS:
            dist = np.abs(freqs - mains * h)
            line = power[:, dist <= _HUM_LINE_HZ + 1e-9].max(axis=1)
            ring = (dist >= _HUM_REF_HZ[0]) & (dist <= _HUM_REF_HZ[1])
            ref = np.median(power[:, ring], axis=1)
            per_frame = 10.0 * np.log10((line + tiny) / (ref + tiny))
            line_power[mains] += float(np.median(np.maximum(line - ref, 0.0)))
            persistent = float(np.percentile(per_frame, _HUM_PERCENTILE))
            if persistent > best_db:
                best_db, best_hz = persistent, mains
    best_db = max(0.0, best_db)
    # The decimated frames hold the signal below 1.1 kHz only: scale to the whole band.
    below = float(np.mean(np.square(y, dtype=np.float64)))
    share = below / max(float(np.mean(np.square(x, dtype=np.float64))), 1e-30)
    lines = max(line_power[best_hz or _HUM_MAINS[0]], tiny)
    level = 10.0 * math.log10(lines / max(total, tiny) * max(share, 1e-12))
    return best_db, (best_hz if best_db >= HUM_DETECT_DB else None), level


# --------------------------------------------------------------------------- levels


def _planar(stereo_44k) -> np.ndarray:
    """Validated channels as a contiguous [channels, n] array: reductions over an
    interleaved [n, 2] array's first axis are 10-20x slower in numpy."""
    return np.ascontiguousarray(as_channels(stereo_44k).T)


def clipping_share(stereo_44k) -> float:
    """Share of samples piled up near their channel's peak (see the module docstring).

    NaN for signals shorter than :data:`MIN_SECONDS` (too few samples for a histogram).
    """
    planar = _planar(stereo_44k)
    if planar.shape[1] < MIN_SECONDS * SAMPLE_RATE:
        return math.nan
    return _clipping_share(planar)


def _clipping_share(planar: np.ndarray) -> float:
    piled = 0.0
    for channel in planar:
        mag = np.abs(channel)
        peak = float(mag.max())
        if peak < 10.0 ** (_CLIP_MIN_PEAK_DBFS / 20.0):
            continue
        width = peak / _CLIP_BINS
        step = _quantisation_step(channel)
        if step is not None:
            # Whole quantisation steps per bin: otherwise some bins hold one level more
            # than others, and that comb would read as piled-up samples.
            width = step * max(2, math.ceil(width / step))
        bins = int(peak / width) + 1
        first = int(_CLIP_START * bins)
        # Only bins from 25 % of the peak up are read: histogram just those samples
        # (the same bin arithmetic, on ~1/4 of the samples; 2x faster).
        pos = mag * np.float32(1.0 / width)
        pos += np.float32(1e-3)
        idx = pos[pos >= first].astype(np.int32)
        np.minimum(idx, bins - 1, out=idx)
        counts = np.bincount(idx, minlength=bins)[first:].astype(np.float64)
        piled += float(np.sum(counts - np.minimum.accumulate(counts)))
    return piled / float(planar.size)


def _quantisation_step(channel: np.ndarray) -> float | None:
    """The sample grid 2^-(b-1) of a signal quantised to b <= 12 bits, else None."""
    probe = channel[:: max(1, channel.size // 4096)].astype(np.float64)
    for bits in range(2, _CLIP_MAX_GRID_BITS + 1):
        levels = probe * 2.0 ** (bits - 1)
        if np.all(np.abs(levels - np.round(levels)) < 1e-4):
            return 2.0 ** -(bits - 1)
    return None


def dc_offset(stereo_44k) -> float:
    """Largest absolute channel mean, as a fraction of full scale."""
    return _dc_offset(_planar(stereo_44k))


def _dc_offset(planar: np.ndarray) -> float:
    return float(np.max(np.abs(planar.mean(axis=1, dtype=np.float64))))


def dropouts(mono_44k) -> int:
    """Number of abrupt digital gaps inside the programme (see the module docstring)."""
    x = as_mono(mono_44k)
    blocks = x.size // _GAP_BLOCK
    if blocks < 2 * _GAP_CONTEXT_BLOCKS + _GAP_MIN_BLOCKS:
        return 0
    b = x[: blocks * _GAP_BLOCK].reshape(blocks, _GAP_BLOCK)
    flat = np.abs(b).max(axis=1) < _GAP_SILENT
    if not flat.any():
        return 0
    ms = np.mean(np.square(b), axis=1, dtype=np.float64)
    edges = np.diff(np.concatenate([[0], flat.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive
    max_blocks = _GAP_MAX_S * SAMPLE_RATE / _GAP_BLOCK
    loud = 10.0 ** (_GAP_CONTEXT_DBFS / 10.0)
    count = 0
    for s, e in zip(starts, ends):
        if not _GAP_MIN_BLOCKS <= e - s <= max_blocks:
            continue
        if s < _GAP_CONTEXT_BLOCKS or e + _GAP_CONTEXT_BLOCKS > blocks:
            continue  # leading/trailing silence, or too close to the edge to judge
        # Abrupt on both sides (the blocks touching the gap are loud: no fade, no decay)
        # and inside the programme (the 20 ms either side are loud).
        if (ms[s - 1] >= loud and ms[e] >= loud
                and ms[s - _GAP_CONTEXT_BLOCKS : s].mean() >= loud
                and ms[e : e + _GAP_CONTEXT_BLOCKS].mean() >= loud):
            count += 1
    return count


def silences(mono_44k) -> tuple[float, float]:
    """``(silence_start_s, silence_end_s)``: leading and trailing silence [s]."""
    x = as_mono(mono_44k)
    duration = x.size / SAMPLE_RATE
    blocks = -(-x.size // _SILENCE_BLOCK)
    padded = np.zeros(blocks * _SILENCE_BLOCK, dtype=np.float32)
    padded[: x.size] = x
    ms = np.mean(np.square(padded.reshape(blocks, _SILENCE_BLOCK)), axis=1)
    loud = np.flatnonzero(ms >= 10.0 ** (_SILENCE_DBFS / 10.0))
    if loud.size == 0:
        return duration, duration
    start = loud[0] * _SILENCE_BLOCK / SAMPLE_RATE
    end = max(0.0, duration - (loud[-1] + 1) * _SILENCE_BLOCK / SAMPLE_RATE)
    return float(start), float(end)


# --------------------------------------------------------------------------- score


def _penalty(value, scale: str, good: float, bad: float) -> float:
    if value is None or math.isnan(float(value)):
        return 0.0
    value = float(value)
    if scale == "halving":
        return 1.0 - 0.5 ** max(0.0, value)
    if scale == "log":
        if value <= 0.0:
            return 0.0 if good < bad else 1.0
        value, good, bad = math.log(value), math.log(good), math.log(bad)
    return float(min(1.0, max(0.0, (value - good) / (bad - good))))


def score(measures: dict[str, float]) -> float:
    """The 0-100 quality score from a mapping of measure name -> value.

    Missing or NaN measures cost nothing. See the module docstring for the terms.
    """
    s = 1.0
    for name, scale, good, bad, weight in SCORE_TERMS:
        s *= 1.0 - weight * _penalty(measures.get(name, math.nan), scale, good, bad)
    return round(100.0 * s, 1)


# --------------------------------------------------------------------------- bundle


def quality(mono_44k, stereo_44k=None, facts=None) -> Quality:
    """Every quality measure of one track and its score, timing each part.

    Parameters
    ----------
    mono_44k : numpy.ndarray
        Mono signal [n] at 44 100 Hz (the decoder's ``mono``).
    stereo_44k : numpy.ndarray or None
        The channels [n, 2] (the decoder's ``stereo``) for clipping and DC offset, which
        are per-channel defects; None for a single-channel source (``mono_44k`` is used).
    facts : engine.decode.FileFacts or None
        Not needed by any measure today (codec and bit rate are stored from the facts
        directly); accepted so that codec-aware rules need no signature change.

    Returns
    -------
    Quality

    Raises
    ------
    ValueError
        If a signal is empty, malformed or holds non-finite samples.

    Notes
    -----
    About 0.1 CPU-s per 30 s of audio; see ``Quality.timings``.
    """
    del facts  # reserved, see above
    x = as_mono(mono_44k)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    planar = x[None, :] if stereo_44k is None else _planar(stereo_44k)
    silent = is_silent(x)
    enough = x.size >= MIN_SECONDS * SAMPLE_RATE and not silent
    fr = _frames(x)
    bw, snr, floor = _spectral(fr) if enough else (math.nan, math.nan, math.nan)
    t1 = time.perf_counter()
    timings["spectrum"] = t1 - t0
    clicks = _click_rate(x, fr) if enough else (0.0 if silent else math.nan)
    t2 = time.perf_counter()
    timings["clicks"] = t2 - t1
    long_enough = x.size >= _HUM_FRAME_S * SAMPLE_RATE and not silent
    hum_db, hum_hz, hum_level = _hum(x) if long_enough else (math.nan, None, math.nan)
    t3 = time.perf_counter()
    timings["hum"] = t3 - t2
    clip_share = _clipping_share(planar) if x.size >= MIN_SECONDS * SAMPLE_RATE else math.nan
    gaps = dropouts(x)
    dc = _dc_offset(planar)
    start, end = silences(x)
    t4 = time.perf_counter()
    timings["levels"] = t4 - t3
    if silent:
        prof = np.full(len(QUALITY_PROFILE_NAMES), np.nan)
    else:
        prof = profile(x, fr.power, fr.level_db, bw, hum_level)
    t5 = time.perf_counter()
    timings["profile"] = t5 - t4

    measures = dict(
        clicks_per_min=clicks,
        clipping_share=clip_share,
        hum_db=hum_db,
        dropouts=gaps,
        snr_db=snr,
        bandwidth_hz=bw,
        dc_offset=dc,
    )
    total = 0.0 if silent else score(measures)
    timings["score"] = time.perf_counter() - t5
    return Quality(
        score=total,
        clicks_per_min=clicks,
        clipping_share=clip_share,
        hum_db=hum_db,
        hum_hz=hum_hz,
        dropouts=gaps,
        snr_db=snr,
        noise_floor_dbfs=floor,
        bandwidth_hz=bw,
        dc_offset=dc,
        silence_start_s=start,
        silence_end_s=end,
        profile=prof,
        timings=timings,
    )
