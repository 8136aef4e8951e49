"""The decoder's fallback: Essentia's AudioLoader, for the few files FFmpeg 8 refuses.

Imported by :func:`engine.decode.decode` only when PyAV has failed on a file, so
mutagen, soxr and Essentia load only then.
"""

from __future__ import annotations

import math
from pathlib import Path

import mutagen
import numpy as np
import soxr

from engine.decode import SAMPLE_RATE, FileFacts, error_reason
from engine.errors import DecodeError
from index.audiofiles import sniff_audio

_SOXR_QUALITY = "HQ"  # resampling a fallback-decoded file to 44.1 kHz
# The fallback loads the whole file at its native rate before capping, so it is only
# tried when that stays below this many bytes ([n, 2] float32): 512 MB, e.g. 24 min at
# 44.1 kHz.
_FALLBACK_MAX_BYTES = 512_000_000
_MUTAGEN_CONTAINERS = {
    "OggVorbis": "ogg", "OggFLAC": "ogg", "OggSpeex": "ogg", "OggTheora": "ogg",
    "FLAC": "flac", "MP3": "mp3", "EasyMP3": "mp3", "MP4": "mov,mp4,m4a,3gp,3g2,mj2",
    "EasyMP4": "mov,mp4,m4a,3gp,3g2,mj2", "WAVE": "wav", "AIFF": "aiff", "ASF": "asf",
}


def essentia_decode(path: Path, max_samples: int | None, reason: str) -> tuple[np.ndarray, FileFacts, bool, str]:
    """Decode with Essentia's AudioLoader after PyAV failed, or raise DecodeError(reason).

    Returns ``(stereo, facts, truncated, warning)``: ``[n, 2]`` float32 at 44.1 kHz (at
    most ``max_samples``), the file's facts, whether it was cut at ``max_samples``, and
    the one-line warning saying the fallback was used.

    FFmpeg 8 (in the PyAV wheel) refuses some valid Ogg Vorbis files ("Header processing
    failed"; two of the corpus's library files) that Essentia's older bundled FFmpeg reads.
    Essentia's loaders can kill the process after failing on Opus, and may misbehave on
    junk, so the fallback is only tried on files that sniff as audio, that mutagen parses
    as a non-Opus format, and that fit :data:`_FALLBACK_MAX_BYTES`; anything else raises
    the original reason. Essentia (and TensorFlow with it) is imported only here.
    """
    why = f"cannot decode {path}: {reason}"
    info = _candidate(path)
    if info is None:
        raise DecodeError(why)
    kind, length, rate = info
    if length * rate * 2 * 4 > _FALLBACK_MAX_BYTES:
        raise DecodeError(f"{why}; too long ({length:.0f} s) for the fallback decoder")
    try:
        import essentia

        from engine.essentia_lazy import standard

        es = standard()
        essentia.log.infoActive = False
        audio, sr, channels, _md5, bitrate, codec = es.AudioLoader(filename=str(path))()
    except RuntimeError as e:  # Essentia's exceptions surface as RuntimeError
        raise DecodeError(f"{why}; Essentia's loader failed too ({error_reason(e)})") from None
    sr, channels = int(sr), int(channels)
    if audio.shape[0] == 0 or sr <= 0:
        raise DecodeError(f"{why}; Essentia's loader decoded no samples")
    if channels == 1:
        audio[:, 1] = audio[:, 0]  # AudioLoader leaves the second channel of mono at zero
    native_n = audio.shape[0]
    truncated = False
    if max_samples is not None:
        keep = math.ceil(max_samples * sr / SAMPLE_RATE)
        if native_n > keep:
            audio, truncated = audio[:keep], True
    if sr != SAMPLE_RATE:
        audio = soxr.resample(audio, sr, SAMPLE_RATE, quality=_SOXR_QUALITY)
    if max_samples is not None and audio.shape[0] > max_samples:
        audio = audio[:max_samples]
    facts = FileFacts(
        duration=float(max(length, native_n / sr) if truncated else native_n / sr),
        sample_rate=sr,
        channels=channels,
        codec=str(codec),
        bitrate=int(bitrate) if bitrate else None,
        container=_MUTAGEN_CONTAINERS.get(kind, kind.lower()),
    )
    warning = f"decoded with Essentia's AudioLoader: PyAV failed ({reason})"
    return np.ascontiguousarray(audio, dtype=np.float32), facts, truncated, warning


def _candidate(path: Path) -> tuple[str, float, int] | None:
    """(mutagen type name, length s, sample rate Hz) if `path` may go to Essentia, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
        if not sniff_audio(head[:4096]) or b"OpusHead" in head:
            return None
        m = mutagen.File(path)
    except Exception:  # mutagen raises many types on junk; any of them means "no"
        return None
    if m is None or "opus" in type(m).__name__.lower():
        return None
    info = m.info
    if "opus" in str(getattr(info, "codec", "")).lower() or not getattr(info, "length", 0):
        return None
    return type(m).__name__, float(info.length), int(getattr(info, "sample_rate", 0) or 48000)
