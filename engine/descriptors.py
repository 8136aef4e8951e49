"""Signal-processing descriptors of one track: tempo, key, loudness, danceability.

Loudness lives in :mod:`engine.loudness` (re-exported here); the input checks every
DSP function shares are :mod:`engine.signals`.

Every function here is a pure function of numpy arrays (the decoder's output); none reads
files or touches the database, so they can run in worker processes and be tested on any
audio.

Conventions
-----------
* Mono input is float32-compatible, shape ``[n]`` (``[n, 1]`` is accepted too), sampled at
  44 100 Hz -- the decoder's ``mono``. Stereo input is ``[n, 2]`` (the decoder's ``stereo``).
* Empty input (zero samples), input of the wrong shape and input holding NaN or infinity
  raise ``ValueError``. Every other signal, however short, silent or band-limited, yields
  a result; a value that is undefined for that signal is ``NaN`` (floats) or ``None``
  (key names), as each function documents.
* Essentia algorithm objects are not thread-safe, so each call creates its own instances
  and nothing is shared between calls or threads (only constant filterbank matrices are
  cached, read-only).

Choices, with the measurements behind them (``bench/tempo_accuracy.py``)
-----------------------------------------------------------------------
* Tempo: the multi-feature beat tracker of ``RhythmExtractor2013(method='multifeature')``
  with its onset functions in numpy (:mod:`engine.beats`, ≈1/4 of the CPU). On the 26
  rendered clips plus the 4 Sectoid songs it is right within 4 % on 25/30 and within 4 %
  up to a factor of 2 or 3 on 30/30; 'degara' scores 21/30 and 27/30, TempoCNN 18/30 and
  25/30. The octave is decided later, with TempoCNN, by :mod:`engine.tempo` (held out
  27/30 and 30/30).
* Key: one HPCP pass shared by the three profiles, bit-identical to three
  ``KeyExtractor`` calls at about half the cost.
* Loudness (:mod:`engine.loudness`): ITU-R BS.1770 / EBU R 128 vectorised
  (:mod:`engine.ebur128`): 1/3 of ``LoudnessEBUR128``'s cost and exact at low
  frequencies, where Essentia's float32 filter reads up to 1 LU low; true peak by 4×
  oversampling with soxr, which agrees with Essentia's ``TruePeakDetector`` within
  0.07 dB and is ~30× faster.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# SAMPLE_RATE: the rate every mono function expects [Hz] (RhythmExtractor2013 only works
# at 44.1 kHz). KEY_PROFILES: the profiles :func:`keys` computes, in this order.
from engine.decode import SAMPLE_RATE
from engine.loudness import Loudness, loudness, true_peak_dbtp
from engine.signals import SILENCE_RMS_DBFS, as_channels, as_mono, is_silent
from index.schema import KEY_PROFILES

__all__ = [
    "SAMPLE_RATE",
    "KEY_PROFILES",
    "RHYTHM_CONFIDENCE_MAX",
    "SILENCE_RMS_DBFS",
    "Tempo",
    "Key",
    "Loudness",
    "DspDescriptors",
    "tempo",
    "keys",
    "mean_hpcp",
    "loudness",
    "true_peak_dbtp",
    "danceability",
    "dsp_descriptors",
]


#: Upper end of RhythmExtractor2013's multifeature confidence (Essentia documents 0–5.32);
#: :attr:`Tempo.confidence` is the raw value divided by this.
RHYTHM_CONFIDENCE_MAX = 5.32

# RhythmExtractor2013's default tempo search range [BPM]; an estimate outside it (0 for
# signals too short to track, ≈738 for silence) is not a tempo.
_MIN_BPM = 40
_MAX_BPM = 208

# KeyExtractor's defaults (Essentia 2.1b6: src/algorithms/tonal/keyextractor.cpp and the
# streaming Key's averaging). Reproduced rather than imported so that one HPCP pass can
# feed all profiles; tests check the results equal KeyExtractor's.
_KEY_FRAME_SIZE = 4096  # and the hop: frames do not overlap (key_frames)
_KEY_MIN_HZ = 25.0
_KEY_MAX_HZ = 3500.0
_KEY_MAX_PEAKS = 60
_KEY_PEAK_THRESHOLD = 1e-4
_KEY_HPCP_SIZE = 12
_KEY_PCP_THRESHOLD = 0.2

# Danceability's DFA slope needs enough of its segment lengths (310 ms .. 8.8 s); below
# 2 s the value swings wildly (a 0.4 s excerpt of a fiddle tune reads 24, 0.8 s reads 0).
_MIN_DANCEABILITY_S = 2.0



# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Tempo:
    """Global tempo of a track.

    Attributes
    ----------
    bpm : float
        Tempo in beats per minute, within [40, 208]; ``NaN`` when no tempo could be
        tracked (signal shorter than about 2 s, silence, no beat found).
    confidence : float
        RhythmExtractor2013's multifeature beat-tracking confidence divided by 5.32 and
        clipped, so 0 (none) .. 1 (maximal). Essentia's guide for the raw value: below
        1.0 (here < 0.19) very low, 1.0–1.5 low, 1.5–3.5 good, above 3.5 (> 0.66)
        excellent. 0.0 when ``bpm`` is NaN. Confident does not mean octave-right: the
        tracker's misses on our corpus are all doubled tempi.
    method : str
        The estimator that produced it: ``'multifeature'`` (RhythmExtractor2013).
    """

    bpm: float
    confidence: float
    method: str


@dataclass(frozen=True)
class Key:
    """Key estimate for one profile.

    Attributes
    ----------
    key : str or None
        Tonic as Essentia names it: ``A, Bb, B, C, C#, D, Eb, E, F, F#, G, Ab``. ``None``
        when the signal has no tonal content (all-zero HPCP, e.g. silence).
    scale : str or None
        ``'major'`` or ``'minor'``; ``None`` together with ``key``.
    strength : float
        Correlation of the averaged HPCP with the winning key profile, in [-1, 1]
        (practically 0.3–0.9 for music); ``NaN`` when ``key`` is None.
    """

    key: str | None
    scale: str | None
    strength: float


@dataclass(frozen=True)
class DspDescriptors:
    """All signal-processing descriptors of one track, as :func:`dsp_descriptors` returns.

    Attributes
    ----------
    tempo : Tempo
    keys : dict of str to Key
        One entry per name in :data:`KEY_PROFILES`. Treat as read-only.
    loudness : Loudness
    danceability : float
        See :func:`danceability`.
    timings : dict of str to float
        CPU-seconds of the calling process per stage: ``'tempo'``, ``'key'``,
        ``'loudness'``, ``'danceability'``.
    """

    tempo: Tempo
    keys: dict[str, Key]
    loudness: Loudness
    danceability: float
    timings: dict[str, float] = field(default_factory=dict)

    def columns(self) -> dict[str, Any]:
        """The ``tracks`` columns it fills (names declared in :mod:`index.schema`).

        Undefined values stay NaN (or -inf): :func:`engine.records.file_columns` stores
        them as NULL and says why in ``notes``. ``bpm`` is the tracker's tempo; the build
        replaces it with the octave decided with TempoCNN (:func:`engine.tempo.decide`).
        """
        cols: dict[str, Any] = dict(bpm=self.tempo.bpm, bpm_confidence=self.tempo.confidence,
                                    danceability=self.danceability)
        for profile, key in self.keys.items():
            cols[f"key_{profile}"] = key.key
            cols[f"scale_{profile}"] = key.scale
            cols[f"key_strength_{profile}"] = key.strength
        cols.update(loudness_lufs=self.loudness.integrated_lufs, loudness_range_lu=self.loudness.range_lu,
                    true_peak_dbtp=self.loudness.true_peak_dbtp)
        return cols


# --------------------------------------------------------------------------- helpers


def _es():
    """essentia.standard, imported only when an algorithm runs (engine.essentia_lazy):
    code that imports this module for its dataclasses does not pay for it."""
    from engine.essentia_lazy import standard

    return standard()


# --------------------------------------------------------------------------- tempo

def tempo(mono_44k: np.ndarray) -> Tempo:
    """Track the beat with the multi-feature tracker and return its tempo.

    The tracker is Essentia's ``RhythmExtractor2013(method='multifeature')`` with its onset
    functions computed in numpy (:mod:`engine.beats`): the same beats and tempo at ≈1/4
    of the CPU. This is the tracker's level; :func:`engine.tempo.decide` then picks the
    metrical level (×½, ×⅔, ×1, ×3/2, ×2) with TempoCNN's evidence, once the model stage
    has run.

    Parameters
    ----------
    mono_44k : numpy.ndarray
        Mono signal, shape [n], 44 100 Hz, amplitude in [-1, 1].

    Returns
    -------
    Tempo
        ``bpm`` in [40, 208] or NaN, ``confidence`` in [0, 1] (the tracker's agreement
        confidence / 5.32), ``method='multifeature'``. Typical errors are octave errors
        (×2 / ×½): on the project's 30 clips with exact tempo the estimate is within 4 %
        of the truth for 83 % of them and within 4 % of 1, 2, ½, 3 or ⅓ times it for all.

    Raises
    ------
    ValueError
        If the signal is empty, not 1-D, or holds non-finite samples.

    Notes
    -----
    Cost ≈0.1 s CPU per 30 s of audio (Essentia's own: ≈0.42 s).
    """
    from engine import beats

    x = as_mono(mono_44k)
    undefined = Tempo(bpm=math.nan, confidence=0.0, method="multifeature")
    if is_silent(x):
        return undefined
    found = beats.track(x)
    bpm = found.bpm
    # The tracker returns 0 when it found too few beats and out-of-range values on
    # degenerate input; neither is a tempo.
    if not (math.isfinite(bpm) and _MIN_BPM <= bpm <= _MAX_BPM):
        return undefined
    conf = found.confidence / RHYTHM_CONFIDENCE_MAX
    conf = min(max(conf, 0.0), 1.0) if math.isfinite(conf) else 0.0
    return Tempo(bpm=bpm, confidence=conf, method="multifeature")


# --------------------------------------------------------------------------- key


def key_frames(x: np.ndarray) -> np.ndarray:
    """The key's frames as Essentia's ``FrameCutter`` cuts them ([frames, 4096] float32).

    Hop = frame size; the first frame is centred on sample 0 (half a frame of zeros
    before it), and frames follow while they start before the end, the last one
    zero-padded: ``ceil((n + 2048) / 4096)`` frames, at least one.
    """
    size = _KEY_FRAME_SIZE
    count = -(-(x.size + size // 2) // size)
    padded = np.zeros(count * size, dtype=np.float32)
    take = min(x.size, count * size - size // 2)
    padded[size // 2 : size // 2 + take] = x[:take]
    return padded.reshape(count, size)


def mean_hpcp(mono_44k: np.ndarray) -> np.ndarray:
    """Average 12-bin HPCP exactly as ``KeyExtractor`` computes it before ``Key``.

    Frames of 4096 samples, hop 4096 (first frame centred on sample 0), Hann window,
    magnitude spectrum, the 60 strongest spectral peaks in 25–3500 Hz above 1e-4, spectral
    whitening, HPCP (12 bins, 4 harmonics, cosine weighting, window 1 semitone, reference
    440 Hz, unnormalised), mean over frames, then -- as Essentia's streaming ``Key`` does --
    scaled so its maximum is 1 and bins below 0.2 set to 0. (The streaming ``Key``'s
    detuning correction is a no-op at 12 bins.)

    Parameters
    ----------
    mono_44k : numpy.ndarray
        Mono signal, shape [n], 44 100 Hz.

    Returns
    -------
    numpy.ndarray
        float32 [12], bin 0 = A, in [0, 1]; all zeros when no spectral peak was found.

    Raises
    ------
    ValueError
        If the signal is empty, not 1-D, or holds non-finite samples.
    """
    x = as_mono(mono_44k)
    es = _es()
    # The algorithms' native compute, without essentia.standard's per-call argument
    # checks and conversions (the arguments are already contiguous float32): those
    # cost 9 of 31 ms per 45 s, five calls per frame.
    window = es.Windowing(size=_KEY_FRAME_SIZE, type="hann").__compute__
    spectrum = es.Spectrum(size=_KEY_FRAME_SIZE).__compute__
    peaks = es.SpectralPeaks(
        orderBy="magnitude",
        magnitudeThreshold=_KEY_PEAK_THRESHOLD,
        minFrequency=_KEY_MIN_HZ,
        maxFrequency=_KEY_MAX_HZ,
        maxPeaks=_KEY_MAX_PEAKS,
        sampleRate=SAMPLE_RATE,
    ).__compute__
    whitening = es.SpectralWhitening(maxFrequency=_KEY_MAX_HZ, sampleRate=SAMPLE_RATE).__compute__
    hpcp = es.HPCP(
        bandPreset=False,
        harmonics=4,
        maxFrequency=_KEY_MAX_HZ,
        minFrequency=_KEY_MIN_HZ,
        nonLinear=False,
        normalized="none",
        referenceFrequency=440.0,
        sampleRate=SAMPLE_RATE,
        size=_KEY_HPCP_SIZE,
        weightType="cosine",
        windowSize=1.0,
        maxShifted=False,
    ).__compute__
    frames = key_frames(x)
    per_frame = np.empty((len(frames), _KEY_HPCP_SIZE), dtype=np.float32)
    for i, frame in enumerate(frames):
        spec = spectrum(window(frame))
        freqs, mags = peaks(spec)
        per_frame[i] = hpcp(freqs, whitening(spec, freqs, mags))
    # float32 accumulation in frame order (cumsum is sequential; sum is pairwise), like
    # Essentia's meanFrames, so the result is bit-identical to KeyExtractor's.
    total = np.cumsum(per_frame, axis=0, dtype=np.float32)[-1]
    avg = (total / np.float32(len(frames))).astype(np.float32)
    peak = float(avg.max())
    if peak > 0.0:
        avg /= np.float32(peak)
        avg[avg < _KEY_PCP_THRESHOLD] = 0.0
    return avg


def keys(mono_44k: np.ndarray, profiles: tuple[str, ...] = KEY_PROFILES) -> dict[str, Key]:
    """Estimate the key with several key profiles from one HPCP pass.

    Equal to ``essentia.standard.KeyExtractor(profileType=p)(mono_44k)`` for each profile
    ``p`` (same key and scale, same strength), at about half the cost of three calls.

    Parameters
    ----------
    mono_44k : numpy.ndarray
        Mono signal, shape [n], 44 100 Hz.
    profiles : tuple of str, optional
        Essentia ``Key`` profile types; default ``('temperley', 'krumhansl', 'edma')``.

    Returns
    -------
    dict of str to Key
        ``{profile: Key(key, scale, strength)}`` in the order of ``profiles``. For a
        signal without tonal content (all-zero HPCP: silence, sub-threshold noise) every
        entry is ``Key(None, None, nan)``; Essentia would report "A minor", strength 0.

    Raises
    ------
    ValueError
        If the signal is empty, not 1-D, or holds non-finite samples, or a profile name
        is unknown to Essentia.

    Notes
    -----
    Cost ≈25 ms per 30 s of audio for all three profiles.
    """
    pcp = mean_hpcp(mono_44k)
    if not pcp.any():
        return {p: Key(key=None, scale=None, strength=math.nan) for p in profiles}
    es = _es()
    out: dict[str, Key] = {}
    for profile in profiles:
        # KeyExtractor's configuration of its inner Key.
        estimator = es.Key(
            usePolyphony=False,
            useThreeChords=False,
            numHarmonics=4,
            slope=0.6,
            profileType=profile,
            pcpSize=_KEY_HPCP_SIZE,
        )
        key, scale, strength, _first_to_second = estimator(pcp)
        out[profile] = Key(key=str(key), scale=str(scale), strength=float(strength))
    return out


# --------------------------------------------------------------------------- danceability


def danceability(mono_44k: np.ndarray) -> float:
    """Danceability by detrended fluctuation analysis (Essentia ``Danceability``).

    Parameters
    ----------
    mono_44k : numpy.ndarray
        Mono signal, shape [n], 44 100 Hz.

    Returns
    -------
    float
        Nominally 0 (not danceable) .. 3 (very danceable); values slightly above 3
        occur for noise-like signals. On our corpus Bach chorales score ≈1.0–1.5, fiddle
        tunes with drums ≈1.6–1.9. ``NaN`` for silence (RMS below
        :data:`SILENCE_RMS_DBFS`) and for signals shorter than 2 s, whose DFA covers too
        few segment lengths for a stable value.

    Raises
    ------
    ValueError
        If the signal is empty, not 1-D, or holds non-finite samples.

    Notes
    -----
    Cost ≈30 ms per 30 s of audio.
    """
    x = as_mono(mono_44k)
    if x.size < _MIN_DANCEABILITY_S * SAMPLE_RATE or is_silent(x):
        return math.nan
    es = _es()
    value, dfa = es.Danceability(sampleRate=SAMPLE_RATE)(x)
    value = float(value)
    if not np.any(np.asarray(dfa)) or not math.isfinite(value):
        return math.nan
    return value


# --------------------------------------------------------------------------- bundle


def dsp_descriptors(mono_44k: np.ndarray, stereo_44k: np.ndarray | None) -> DspDescriptors:
    """Compute every descriptor of this module for one track, timing each stage.

    Parameters
    ----------
    mono_44k : numpy.ndarray
        Mono signal, shape [n], 44 100 Hz (tempo, key, danceability).
    stereo_44k : numpy.ndarray or None
        Two-channel signal [n, 2] at 44 100 Hz for loudness. Pass ``None`` for a
        single-channel source: loudness is then measured on ``mono_44k`` as one channel
        (see :func:`loudness`).

    Returns
    -------
    DspDescriptors
        The results and ``timings`` (CPU-seconds per stage: ``'tempo'``, ``'key'``,
        ``'loudness'``, ``'danceability'``).

    Raises
    ------
    ValueError
        If either signal is empty or malformed.

    Notes
    -----
    Total ≈0.75 s CPU per 30 s of audio, dominated by the beat tracker (≈0.5 s).
    """
    mono = as_mono(mono_44k)
    loud_input = mono if stereo_44k is None else as_channels(stereo_44k)
    timings: dict[str, float] = {}

    t0 = time.process_time()
    tempo_result = tempo(mono)
    t1 = time.process_time()
    timings["tempo"] = t1 - t0
    key_results = keys(mono)
    t2 = time.process_time()
    timings["key"] = t2 - t1
    loud_result = loudness(loud_input, SAMPLE_RATE)
    t3 = time.process_time()
    timings["loudness"] = t3 - t2
    dance = danceability(mono)
    timings["danceability"] = time.process_time() - t3

    return DspDescriptors(
        tempo=tempo_result,
        keys=key_results,
        loudness=loud_result,
        danceability=dance,
        timings=timings,
    )
