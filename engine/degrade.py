"""Degradation simulator: graded, reproducible versions of real audio.

Used to evaluate :mod:`engine.quality` (does the score fall as a defect gets worse?) and
available to anyone who wants to test a quality measure on their own music. Every
function is a pure function of a signal: it never modifies its input, returns float32 of
the input's shape (``[n]`` mono or ``[n, channels]``), and, where randomness is involved,
is deterministic for a given ``seed``.

Degradations and their severity parameter (see :data:`SEVERITIES` for the graded levels
used in the evaluation, mildest first):

=============  =====================================================================
``hiss``       white Gaussian noise at ``snr_db`` below the signal's mean power
``clicks``     impulsive clicks (vinyl-like pops) at ``rate_per_min`` events per minute
``clipping``   gain of ``gain_db`` followed by hard clipping at full scale (±1)
``lowpass``    zero-phase low-pass with cut-off ``cutoff_hz`` (-6 dB point)
``mp3``        MP3 encode/decode round trip (LAME via PyAV) at ``bitrate_kbps``
``aac``        AAC encode/decode round trip (FFmpeg's encoder via PyAV) at ``bitrate_kbps``
``hum``        50 Hz mains hum with harmonics at ``snr_db`` below the signal's mean power
``compression`` brick-wall limiting ("loudness war"): ``drive_db`` above the peak, limited
=============  =====================================================================

Example
-------
>>> y = degrade(x, "hiss", 20.0, seed=1)      # x: float32 [n, 2] at 44.1 kHz
>>> levels = [degrade(x, "mp3", b) for b in SEVERITIES["mp3"]]
"""

from __future__ import annotations

import io
import math

import numpy as np

from engine.decode import SAMPLE_RATE  # Hz, the default rate of every function here

__all__ = [
    "SAMPLE_RATE",
    "SEVERITIES",
    "add_hiss",
    "add_clicks",
    "clip",
    "lowpass",
    "mp3_roundtrip",
    "aac_roundtrip",
    "add_hum",
    "compress",
    "degrade",
]


#: Graded severities per degradation, from mild to severe (the evaluation's levels):
#: hiss SNR [dB], click rate [per minute], clipping gain [dB], low-pass cut-off [Hz],
#: MP3 and AAC bit rate [kbit/s], hum SNR [dB], compression drive [dB].
SEVERITIES: dict[str, tuple[float, ...]] = {
    "hiss": (30.0, 20.0, 15.0, 10.0, 5.0),
    "clicks": (20.0, 60.0, 200.0, 600.0, 2000.0),
    "clipping": (3.0, 6.0, 10.0, 15.0, 20.0),
    "lowpass": (16000.0, 11000.0, 8000.0, 5500.0, 3500.0),
    "mp3": (192.0, 128.0, 96.0, 64.0, 32.0),
    "aac": (128.0, 96.0, 64.0, 40.0, 24.0),
    "hum": (40.0, 30.0, 20.0, 15.0, 10.0),
    "compression": (2.0, 4.0, 6.0, 8.0, 10.0),
}

# Click shape: a decaying impulse a few samples long (a needle hitting a scratch).
_CLICK_DECAY_SAMPLES = 1.5
_CLICK_LENGTH = 8


def _as_signal(x) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim not in (1, 2) or arr.shape[0] == 0:
        raise ValueError(f"expected a non-empty signal of shape [n] or [n, channels], "
                         f"got shape {np.shape(x)}")
    if not np.isfinite(arr).all():
        raise ValueError("signal contains NaN or infinite samples")
    return arr


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def add_hiss(x, snr_db: float, *, seed: int = 0) -> np.ndarray:
    """Add white Gaussian noise ``snr_db`` dB below the signal's mean power.

    Each channel gets independent noise; the SNR is relative to the mean power over all
    samples and channels. Digital silence stays silent (there is no power to relate to).
    """
    arr = _as_signal(x)
    p = _power(arr)
    if p == 0.0:
        return arr.copy()
    rng = np.random.default_rng(seed)
    sigma = math.sqrt(p / 10.0 ** (snr_db / 10.0))
    return (arr + rng.standard_normal(arr.shape).astype(np.float32) * np.float32(sigma))


def add_clicks(
    x,
    rate_per_min: float,
    *,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 0,
    level_db: tuple[float, float] = (-20.0, -6.0),
) -> np.ndarray:
    """Add clicks at ``rate_per_min`` per minute, at uniformly random times.

    Exactly ``round(rate_per_min * duration_minutes)`` clicks are placed (so the rate is
    exact, not a Poisson draw), each at least 20 ms from the next. A click is a one-sided
    exponentially decaying impulse (time constant 1.5 samples, 8 samples long) of random
    sign whose peak is drawn uniformly in dB within ``level_db`` relative to full scale;
    it is identical in all channels, as a scratch on a record is.
    """
    arr = _as_signal(x).copy()
    n = arr.shape[0]
    count = int(round(rate_per_min * n / sample_rate / 60.0))
    if count == 0:
        return arr
    rng = np.random.default_rng(seed)
    min_gap = int(0.02 * sample_rate)
    slots = max(1, (n - _CLICK_LENGTH) // min_gap)
    count = min(count, slots)
    positions = np.sort(rng.choice(slots, size=count, replace=False)) * min_gap
    positions += rng.integers(0, max(1, min_gap - _CLICK_LENGTH), size=count)
    positions = np.minimum(positions, n - _CLICK_LENGTH)
    peaks = 10.0 ** (rng.uniform(*level_db, size=count) / 20.0)
    signs = rng.choice([-1.0, 1.0], size=count)
    shape = np.exp(-np.arange(_CLICK_LENGTH) / _CLICK_DECAY_SAMPLES)
    idx = positions[:, None] + np.arange(_CLICK_LENGTH)[None, :]
    burst = ((peaks * signs)[:, None] * shape[None, :]).astype(np.float32)
    if arr.ndim == 1:
        arr[idx] += burst
    else:
        arr[idx] += burst[..., None]
    return arr


def clip(x, gain_db: float) -> np.ndarray:
    """Amplify by ``gain_db`` and clip hard at ±1 (what an overdriven converter does)."""
    arr = _as_signal(x)
    return np.clip(arr * np.float32(10.0 ** (gain_db / 20.0)), -1.0, 1.0).astype(np.float32)


def lowpass(x, cutoff_hz: float, *, sample_rate: int = SAMPLE_RATE,
            transition_hz: float | None = None) -> np.ndarray:
    """Zero-phase low-pass: the spectrum is multiplied by a raised-cosine edge.

    The gain is 1 below ``cutoff_hz - transition_hz/2``, 0 above
    ``cutoff_hz + transition_hz/2``, 0.5 (-6 dB) at ``cutoff_hz``; the default transition
    is 10 % of the cut-off, about as steep as an encoder's or a cheap resampler's filter.
    Whole-signal FFT, so the result has no delay.
    """
    arr = _as_signal(x)
    n = arr.shape[0]
    width = 0.1 * cutoff_hz if transition_hz is None else transition_hz
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    lo, hi = cutoff_hz - width / 2.0, cutoff_hz + width / 2.0
    gain = np.clip((hi - freqs) / max(hi - lo, 1e-9), 0.0, 1.0)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    spec = np.fft.rfft(arr, axis=0)
    spec *= gain if arr.ndim == 1 else gain[:, None]
    return np.fft.irfft(spec, n=n, axis=0).astype(np.float32)


def mp3_roundtrip(x, bitrate_kbps: float, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Encode to MP3 with LAME (PyAV's ``libmp3lame``) in memory and decode it again.

    LAME picks its own low-pass for the bit rate (e.g. ≈17 kHz at 128 kbit/s). The
    decoded signal is aligned to the input (the encoder delay recorded in the LAME
    header is removed by FFmpeg's decoder; what remains is trimmed or zero-padded) and
    has the input's length and channels. Deterministic: LAME has no random state.
    """
    return _codec_roundtrip(x, "libmp3lame", "mp3", bitrate_kbps, sample_rate, frame=1152, delay=0)


def aac_roundtrip(x, bitrate_kbps: float, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Encode to AAC-LC with FFmpeg's own encoder (PyAV's ``aac``) in memory, decode again.

    FFmpeg's encoder picks its low-pass from the bit rate (≈14 kHz at 64 kbit/s stereo,
    ≈7 kHz at 24 kbit/s). Its 1024 priming samples are removed, so the result is aligned
    to the input (checked by cross-correlation in the tests) and has its length and
    channels. Deterministic.
    """
    return _codec_roundtrip(x, "aac", "adts", bitrate_kbps, sample_rate, frame=1024, delay=1024)


def _codec_roundtrip(x, codec: str, fmt: str, bitrate_kbps: float, sample_rate: int, *,
                     frame: int, delay: int) -> np.ndarray:
    import av

    arr = _as_signal(x)
    mono = arr.ndim == 1
    chans = arr[:, None] if mono else arr
    n, channels = chans.shape
    if channels > 2:
        raise ValueError(f"{fmt} round trip: at most 2 channels, got {channels}")
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=sample_rate, layout=layout)
        stream.bit_rate = int(bitrate_kbps * 1000)
        planar = np.ascontiguousarray(np.clip(chans, -1.0, 1.0).T)
        step = frame * 8
        for start in range(0, n, step):
            chunk = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planar[:, start : start + step]), format="fltp", layout=layout
            )
            chunk.sample_rate = sample_rate
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    pieces = []
    with av.open(buf, "r", format=fmt) as src:
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
        for decoded_frame in src.decode(audio=0):
            for res in resampler.resample(decoded_frame):
                pieces.append(res.to_ndarray())
        for res in resampler.resample(None):
            pieces.append(res.to_ndarray())
    decoded = np.concatenate(pieces, axis=1).T[delay:] if pieces else np.zeros((0, channels), np.float32)
    result = np.zeros((n, channels), dtype=np.float32)
    m = min(n, decoded.shape[0])
    result[:m] = decoded[:m]
    return result[:, 0] if mono else result


# Mains hum: the fundamental and its first harmonics (a transformer's and a ground
# loop's hum is rich in them), relative amplitudes.
_HUM_HARMONICS = (1.0, 0.5, 0.3, 0.15)


def add_hum(x, snr_db: float, *, mains_hz: float = 50.0, sample_rate: int = SAMPLE_RATE,
            seed: int = 0) -> np.ndarray:
    """Add steady mains hum ``snr_db`` dB below the signal's mean power.

    The hum is ``mains_hz`` and its 2nd-4th harmonics (amplitudes 1, 0.5, 0.3, 0.15) with
    random phases (from ``seed``), identical in all channels. Digital silence stays silent.
    """
    arr = _as_signal(x)
    p = _power(arr)
    if p == 0.0:
        return arr.copy()
    rng = np.random.default_rng(seed)
    t = np.arange(arr.shape[0]) / sample_rate
    hum = np.zeros(arr.shape[0])
    for k, amp in enumerate(_HUM_HARMONICS, start=1):
        hum += amp * np.sin(2 * np.pi * k * mains_hz * t + rng.uniform(0, 2 * np.pi))
    hum *= math.sqrt(p / 10.0 ** (snr_db / 10.0) / float(np.mean(hum ** 2)))
    hum = hum.astype(np.float32)
    return arr + (hum if arr.ndim == 1 else hum[:, None])


# Limiter: gain computed per 2.5 ms block from the peak of the block and its neighbours
# (look-ahead), released over 50 ms; the output never exceeds the ceiling.
_LIMIT_BLOCK = 110
_LIMIT_RELEASE_DB = 0.5  # per block: 10 dB in 50 ms
_LIMIT_CEILING = 10.0 ** (-0.1 / 20.0)


def compress(x, drive_db: float) -> np.ndarray:
    """Brick-wall limiting as in "loudness war" mastering: the signal is normalised to a
    peak of 0 dBFS, amplified by ``drive_db`` and pulled back under a -0.1 dBFS ceiling
    by a look-ahead limiter (instant attack, 50 ms release at 44.1 kHz), so peaks are
    flattened without the hard-clipping distortion of :func:`clip`. The gain is set per
    2.5 ms block, so from about 10 dB of drive every loud block sits at the ceiling and
    more drive changes little (RMS of the corpus's rock clip: -12.8 dBFS clean, -10.0 at
    3 dB, -8.2 at 6 dB, -7.9 at 10 dB and at 20 dB)."""
    arr = _as_signal(x)
    peak = float(np.max(np.abs(arr)))
    if peak == 0.0:
        return arr.copy()
    y = arr.astype(np.float64) * (10.0 ** (drive_db / 20.0) / peak)
    n = y.shape[0]
    level = np.abs(y) if y.ndim == 1 else np.max(np.abs(y), axis=1)
    blocks = -(-n // _LIMIT_BLOCK)
    padded = np.zeros(blocks * _LIMIT_BLOCK)
    padded[:n] = level
    block_peak = padded.reshape(blocks, _LIMIT_BLOCK).max(axis=1)
    block_peak = np.maximum(block_peak, np.concatenate((block_peak[1:], [0.0])))  # look-ahead
    want = np.minimum(1.0, _LIMIT_CEILING / np.maximum(block_peak, 1e-12))
    gain = np.empty(blocks)
    g = 1.0
    step = 10.0 ** (_LIMIT_RELEASE_DB / 20.0)
    for i, w in enumerate(want):  # instant attack, linear-in-dB release
        g = w if w < g else min(w, g * step)
        gain[i] = g
    centres = (np.arange(blocks) + 0.5) * _LIMIT_BLOCK
    per_sample = np.interp(np.arange(n), centres, gain)
    y *= per_sample if y.ndim == 1 else per_sample[:, None]
    return np.clip(y, -_LIMIT_CEILING, _LIMIT_CEILING).astype(np.float32)


def degrade(x, kind: str, severity: float, *, seed: int = 0,
            sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Apply one degradation by name with its severity parameter (see the module table).

    Raises
    ------
    ValueError
        For an unknown ``kind`` (the message lists the known ones) or a malformed signal.
    """
    apply = {
        "hiss": lambda: add_hiss(x, severity, seed=seed),
        "clicks": lambda: add_clicks(x, severity, sample_rate=sample_rate, seed=seed),
        "clipping": lambda: clip(x, severity),
        "lowpass": lambda: lowpass(x, severity, sample_rate=sample_rate),
        "mp3": lambda: mp3_roundtrip(x, severity, sample_rate=sample_rate),
        "aac": lambda: aac_roundtrip(x, severity, sample_rate=sample_rate),
        "hum": lambda: add_hum(x, severity, sample_rate=sample_rate, seed=seed),
        "compression": lambda: compress(x, severity),
    }.get(kind)
    if apply is not None:
        return apply()
    raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(SEVERITIES)}")
