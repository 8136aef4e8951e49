"""Decode an audio file once, into every signal the analysis stages need.

Longer than 500 lines: one job (one decode, one result) whose container edge cases
(chained Ogg links, lying headers, truncation, the fallback) each need their own reason.

Every track is decoded exactly once, with PyAV (FFmpeg), not with Essentia's loaders:
those cannot decode Opus and the process can crash after failing on it, so a decoder
failure could take a whole build down. PyAV turns each failure into a Python exception,
which :func:`decode` reports as one :class:`~engine.errors.DecodeError` line naming the
file and the reason.

One exception: the FFmpeg 8 in the PyAV wheel refuses some valid Ogg Vorbis files at
open ("Header processing failed"; ``library/HyperRogue/hr-savino-*.ogg`` in the test
corpus) that Essentia's older bundled FFmpeg reads. When PyAV fails on a file that
sniffs as audio and that mutagen parses as a non-Opus format, :func:`decode` falls back
to Essentia's ``AudioLoader`` (whole file, so only up to 512 MB of decoded audio, e.g.
24 min at 44.1 kHz) and says so in ``warnings``. Opus and junk never reach Essentia.

Signals
-------
The file is decoded and converted by FFmpeg's resampler to 32-bit float planar
(``fltp``) at 44100 Hz (a no-op for the many codecs that already decode to fltp at
44.1 kHz), keeping its native channels; channels are then brought to stereo
here (see below) and written into one preallocated ``[n, 2]`` buffer (no list of frames
to concatenate, no second copy). From it:

* ``mono`` = (left + right) / 2 at 44100 Hz, for Essentia's DSP descriptors;
* ``mono_16k`` (MusiCNN / EffNet) and ``mono_11k`` at 11025 Hz (TempoCNN) are
  resampled from ``mono`` with Essentia's ``Resample`` at ``quality=4`` (libsamplerate's
  linear converter), the resampler of ``MonoLoader(resampleQuality=4)`` with which
  Essentia's model examples load audio. A higher-quality resampler (soxr HQ) keeps more
  of the band near 8 kHz and moves MusiCNN's track-mean embedding to cosine 0.98-0.999
  against Essentia's pipeline; this one gives 1.0 on 44.1 kHz sources (≥ 0.9994 on
  others, which are resampled twice) and costs ≈6 ms per 30 s.

Channels
--------
* Mono files are duplicated to both channels at full level, so ``mono`` is exactly the
  file's signal. FFmpeg's own mono-to-stereo conversion would attenuate by 3 dB, so it is
  not used.
* Stereo is kept as is.
* More than two channels are downmixed to stereo by :func:`engine.downmix.downmix_matrix`
  (ITU-R BS.775, scaled so it cannot exceed full scale: 5.1 reads 7.7 dB quieter on the
  front channels than a playback system would play it, so its loudness reads low).

Priming (MP4/M4A)
-----------------
AAC encoders put 1024 or 2112 "priming" samples before the music and MP4 files say so
in an edit list, which FFmpeg 8 applies (trimming them) and Essentia's bundled FFmpeg
does not. The decoder opens MP4/M4A with ``ignore_editlist`` so the samples are kept,
as in Essentia: the signal then starts 21 ms (at 48 kHz) earlier, which is nothing for
any descriptor, but the models' 3 s patches fall at different places, and that shift
alone moved MusiCNN's track-mean embedding to cosine 0.990-0.9996 against
essentia-tensorflow on the corpus's 48 kHz AAC files (1.0 with the samples kept; the
resampling path made no difference, measured). Durations of such files read 21-44 ms
longer than the gapless length.

Long files: what is analysed, and memory
----------------------------------------
Decoding stops after ``max_seconds`` of audio (default :data:`DEFAULT_MAX_SECONDS`,
450 s = 7.5 min); the analysis then covers the *first* 7.5 minutes of the file and
``truncated`` is set, while ``facts.duration`` still gives the whole file's length from
the container. The start is taken rather than a window further in because decoding is
sequential: the start is reached without seeking, which is inexact or slow for VBR MP3
without a seek table and for raw AAC streams, and which would make results depend on the
demuxer. 7.5 min covers most songs whole; for longer pieces (DJ mixes, whole-album
files, long classical movements) tempo, key and timbre of the first 7.5 min stand for
the file.

The cap bounds time and memory per file whatever the file's length. At 450 s the arrays
hold n = 450 x 44100 = 19,845,000 samples: ``stereo`` 158.8 MB (n x 2 x 4 bytes),
``mono`` 79.4 MB, ``mono_16k`` 28.8 MB, ``mono_11k`` 19.8 MB, 286.8 MB (273.5 MiB) in
all, i.e. 0.64 MB per second analysed. The decode itself adds only one frame at a time.
A one-hour file therefore costs the same as a 7.5-minute one: ``edge/one_hour_silence.flac``
decodes in 0.6-1.4 s (2-core EPYC, idle to loaded) with peak RSS 280 MiB above the
interpreter's. (The 600 s one might expect would need 382 MB.) ``max_seconds=None``
decodes the whole file, without bound (that file: 5-12 s, 2.2 GiB).

Damaged files
-------------
A packet that fails to decode is skipped and decoding goes on; if the demuxer itself
fails (a file cut short), decoding stops there. In both cases what decoded so far is
kept, with a line in ``warnings``, as long as it is more than zero samples. Empty files,
non-audio files, files without an audio stream and files that decode to nothing raise
:class:`~engine.errors.DecodeError`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from engine.containers import FileSlice, ogg_links, pcm_layout, read_head
from engine.downmix import downmix_matrix
from engine.errors import DecodeError
from models.registry import MEL, TEMPO_INPUT

#: Hz, of ``stereo`` and ``mono``: the rate of every DSP function in engine/ (the one place
#: it is defined; Essentia's RhythmExtractor2013 only works at 44.1 kHz).
SAMPLE_RATE = 44100
SAMPLE_RATE_16K = MEL.sample_rate  #: Hz, of ``mono_16k`` (MusiCNN, EffNet): 16000
SAMPLE_RATE_11K = TEMPO_INPUT.sample_rate  #: Hz, of ``mono_11k`` (TempoCNN): 11025
DEFAULT_MAX_SECONDS = 450.0  #: s of audio decoded at most per file; see the module docstring

_DEMUX_OPTIONS = {"ignore_editlist": "1"}
# Give up on a file after this many packets in a row fail to decode: a few bad packets
# are skipped, but a stream of garbage must not be ground through to the end.
_MAX_CONSECUTIVE_ERRORS = 32
# Initial buffer size when the container gives no duration; grown as needed.
_FALLBACK_CAPACITY_S = 60.0
# A WAV/AIFF declaring at least this much audio of which less than 1/_SPARSE_RATIO is
# stored on disk is a sparse file (holes read as silence): refused before decoding.
_SPARSE_MIN_BYTES = 64 << 20
_SPARSE_RATIO = 64


def _check_declared_size(path: Path, st: os.stat_result) -> str | None:
    """Compare what a WAV/AIFF header declares with the file; the one-line warning when it
    declares more than the file holds, None when they agree (or for other formats).

    Raises DecodeError for a sparse file, which would decode as hours of silence.
    """
    layout = pcm_layout(read_head(path)) if st.st_size else None
    if layout is None:
        return None
    available = max(0, st.st_size - layout.data_offset)
    declared = available if layout.declared_bytes < 0 else layout.declared_bytes
    in_file = min(declared, available)
    stored = getattr(st, "st_blocks", None)
    if stored is not None and in_file >= _SPARSE_MIN_BYTES and stored * 512 < in_file // _SPARSE_RATIO:
        raise DecodeError(
            f"cannot decode {path}: sparse file: the header declares "
            f"{_duration_text(layout.seconds(declared))} of audio but only "
            f"{stored * 512:,} of its {st.st_size:,} bytes are stored on disk (holes read as silence)")
    if declared > available + layout.bytes_per_second // 10:  # 0.1 s of slack
        return (f"the header declares {_duration_text(layout.seconds(declared))} of "
                f"audio but the file holds {_duration_text(layout.seconds(available))} "
                "(cut short, or a damaged header)")
    return None


def _duration_text(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _decode_links(path: Path, links: list[int], size: int, capacity: int,
                  max_samples: int | None) -> "_DecodeRun":
    """Decode a chained Ogg file link by link, each as an Ogg file of its own."""
    run = _DecodeRun(capacity, max_samples)
    for start, end in zip(links, links[1:] + [size]):
        try:
            with av.open(FileSlice(path, start, end), format="ogg", metadata_errors="replace") as c:
                if c.streams.audio:
                    run.decode(c, c.streams.audio[0])
        except (av.error.FFmpegError, OSError, ValueError) as e:
            run.warnings.append(f"link at byte {start} of the chained Ogg not decoded: {error_reason(e)}")
        run.end_stream()
        if run.truncated:
            break
    return run


@dataclass(frozen=True)
class FileFacts:
    """What the container and stream say about a file (not about the decoded signal).

    Attributes
    ----------
    duration : float
        Length of the whole file in seconds. When the file was decoded to the end, the
        decoded length (exact, and right even when a damaged file's header is wrong);
        when decoding stopped at ``max_seconds``, the container/stream duration (or, if
        the container has none, file size x 8 / bitrate, and failing that the decoded
        length, a lower bound).
    sample_rate : int
        Native sample rate in Hz (Opus always decodes at 48000).
    channels : int
        Native channel count.
    codec : str
        FFmpeg codec name, e.g. ``"mp3"``, ``"aac"``, ``"flac"``, ``"pcm_s24le"``.
    bitrate : int or None
        Bit rate in bit/s from the stream, else the container's average; None if unknown.
    container : str
        FFmpeg demuxer name, e.g. ``"ogg"``, ``"flac"``, ``"mov,mp4,m4a,3gp,3g2,mj2"``.
    """

    duration: float
    sample_rate: int
    channels: int
    codec: str
    bitrate: int | None
    container: str

    def columns(self) -> dict[str, Any]:
        """The ``tracks`` columns it fills (names declared in :mod:`index.schema`)."""
        return dict(duration=self.duration, sample_rate=self.sample_rate, channels=self.channels,
                    codec=self.codec, container=self.container, bitrate=self.bitrate)


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded track: the signals every later stage reads, and facts about the file.

    All arrays are float32, nominally within [-1, 1], and read-only (stages share them).

    Attributes
    ----------
    stereo : np.ndarray
        Shape ``[n, 2]``, C-contiguous, 44100 Hz. Mono files have equal channels; more
        than two channels are downmixed (see the module docstring).
    mono : np.ndarray
        Shape ``[n]``, 44100 Hz: ``(stereo[:, 0] + stereo[:, 1]) / 2``.
    mono_16k : np.ndarray
        Shape ``[round(n * 16000 / 44100)]`` (within one sample), 16000 Hz, from ``mono``.
    mono_11k : np.ndarray
        Shape ``[n // 4]`` (within one sample), 11025 Hz, from ``mono``.
    facts : FileFacts
        Container and stream facts, including the whole file's duration.
    analysed_seconds : float
        ``n / 44100``: the length of the decoded signal in seconds.
    truncated : bool
        True if decoding stopped at ``max_seconds`` before the end of the file.
    warnings : tuple of str
        Recoverable problems met while decoding (skipped corrupt packets, a file cut
        short), one line each; empty for a clean file.
    """

    stereo: np.ndarray
    mono: np.ndarray
    mono_16k: np.ndarray
    mono_11k: np.ndarray
    facts: FileFacts
    analysed_seconds: float
    truncated: bool
    warnings: tuple[str, ...] = field(default=())


def decode(path: Path, *, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> DecodedAudio:
    """Decode `path` once into stereo, mono, 16 kHz and 11.025 kHz float32 signals.

    Parameters
    ----------
    path : Path
        Audio file in any format FFmpeg reads.
    max_seconds : float or None, keyword-only
        Decode at most this many seconds from the start of the file (default 450 s,
        which bounds the arrays to 287 MB); None decodes the whole file.

    Returns
    -------
    DecodedAudio

    Raises
    ------
    DecodeError
        The file is missing or unreadable, empty, not audio, has no audio stream, or
        decodes to zero samples. The message is one line naming the file and the reason.
    ValueError
        If `max_seconds` is not positive.
    """
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds!r}")
    path = Path(path)
    try:
        st = os.stat(path)
        size_warning = _check_declared_size(path, st)
    except OSError as e:
        raise DecodeError(f"cannot decode {path}: {e.strerror or e}") from None
    size = st.st_size
    if size == 0:
        raise DecodeError(f"cannot decode {path}: empty file (0 bytes)")
    max_samples = None if max_seconds is None else int(round(max_seconds * SAMPLE_RATE))
    try:
        # metadata_errors="replace": undecodable tag bytes must not stop the decode.
        # ignore_editlist: keep MP4/M4A encoder priming, as Essentia's loaders do (see
        # "Priming" in the module docstring); other demuxers ignore the option.
        container = av.open(str(path), metadata_errors="replace", options=_DEMUX_OPTIONS)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        if size_warning:  # FFmpeg's own reason is misleading here ("Operation not permitted")
            raise DecodeError(f"cannot decode {path}: {size_warning}") from None
        return _fallback(path, max_samples, f"not a readable audio file ({error_reason(e)})")
    with container:
        if not container.streams.audio:
            return _fallback(path, max_samples, "no audio stream")
        stream = container.streams.best("audio") or container.streams.audio[0]
        header_s = _header_duration(container, stream)
        run = _DecodeRun(_initial_capacity(header_s, max_samples), max_samples)
        run.decode(container, stream)
        if run.stopped and not run.truncated and container.format.name == "ogg":
            links = ogg_links(path)
            if len(links) > 1:  # a chained Ogg whose links differ: decode them one by one
                run = _decode_links(path, links, size, run.buf.shape[0], max_samples)
        if size_warning:
            run.warnings.append(size_warning)
        if run.n == 0:
            why = f"; {run.warnings[0]}" if run.warnings else ""
            return _fallback(path, max_samples, f"no audio samples decoded{why}")
        cc = stream.codec_context
        bitrate = stream.bit_rate or container.bit_rate or None
        if run.truncated:
            duration = header_s or (size * 8 / bitrate if bitrate else 0.0)
            duration = max(duration, run.native_seconds)
        else:
            duration = run.native_seconds
        facts = FileFacts(
            duration=float(duration),
            sample_rate=int(cc.sample_rate or run.first_rate),
            channels=int(cc.channels or run.first_channels),
            codec=cc.codec.canonical_name,
            bitrate=int(bitrate) if bitrate else None,
            container=container.format.name,
        )
    return _finish(run.buf[: run.n], facts, run.truncated, run.warnings)


def model_resample(mono: np.ndarray, rate: int) -> np.ndarray:
    """44.1 kHz -> ``rate`` exactly as Essentia's model examples load audio (see module doc)."""
    from engine.essentia_lazy import standard

    es = standard()

    out = es.Resample(inputSampleRate=SAMPLE_RATE, outputSampleRate=rate, quality=4)(mono)
    return np.asarray(out, dtype=np.float32)


def _finish(stereo: np.ndarray, facts: FileFacts, truncated: bool, warnings) -> DecodedAudio:
    """Derive mono and the model-rate signals from ``[n, 2]`` 44.1 kHz stereo."""
    n = stereo.shape[0]
    mono = np.empty(n, dtype=np.float32)
    np.add(stereo[:, 0], stereo[:, 1], out=mono)  # no temporary: mono may be ~80 MB
    mono *= np.float32(0.5)
    mono_16k = model_resample(mono, SAMPLE_RATE_16K)
    mono_11k = model_resample(mono, SAMPLE_RATE_11K)
    for a in (stereo, mono, mono_16k, mono_11k):
        a.flags.writeable = False
    return DecodedAudio(
        stereo=stereo,
        mono=mono,
        mono_16k=mono_16k,
        mono_11k=mono_11k,
        facts=facts,
        analysed_seconds=n / SAMPLE_RATE,
        truncated=truncated,
        warnings=tuple(warnings),
    )


def _fallback(path: Path, max_samples: int | None, reason: str) -> DecodedAudio:
    """Essentia's loader after PyAV failed (:mod:`engine.decode_fallback`), or DecodeError(reason)."""
    from engine.decode_fallback import essentia_decode

    stereo, facts, truncated, warning = essentia_decode(path, max_samples, reason)
    return _finish(stereo, facts, truncated, [warning])


class _DecodeRun:
    """State of one decode: the growing stereo buffer, resampler, counters, warnings."""

    def __init__(self, capacity: int, limit: int | None):
        self.buf = np.empty((capacity, 2), dtype=np.float32)
        self.n = 0  # samples written to buf
        self.limit = limit  # max samples, None for no limit
        self.truncated = False
        self.stopped = False  # decoding ended on an error before the end of the file
        self._native: dict[int, int] = {}  # decoded native samples per sample rate
        self.first_rate = 0
        self.first_channels = 0
        self.warnings: list[str] = []
        self._resampler: av.AudioResampler | None = None
        self._resampler_key: tuple | None = None
        self._matrix: np.ndarray | None = None

    @property
    def native_seconds(self) -> float:
        """Decoded length in seconds, counted in native-rate samples (exact)."""
        return sum(n / rate for rate, n in self._native.items())

    def decode(self, container, stream) -> None:
        bad_packets = 0
        consecutive = 0
        first_bad = ""
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:
                    # A corrupt packet: skip it, keep the rest of the file.
                    bad_packets += 1
                    consecutive += 1
                    first_bad = first_bad or error_reason(e)
                    if consecutive >= _MAX_CONSECUTIVE_ERRORS:
                        self.warnings.append(
                            f"gave up after {consecutive} undecodable packets in a row at "
                            f"{self.n / SAMPLE_RATE:.1f} s ({first_bad})"
                        )
                        break
                    continue
                consecutive = 0
                for frame in frames:
                    if not self._add_frame(frame):
                        return  # reached the limit: the rest of the file is not decoded
            else:
                # End of file: drain the resampler's delay line.
                if self._resampler is not None:
                    for out in self._resampler.resample(None):
                        if not self._write(out):
                            return
        except (av.error.FFmpegError, ValueError) as e:
            # The demuxer failed (typically a file cut short), or PyAV rejected a frame it
            # cannot convert: keep what decoded, so one bad file never stops a build.
            self.warnings.append(f"decoding stopped at {self.n / SAMPLE_RATE:.1f} s: {error_reason(e)}")
            self.stopped = True
        finally:
            if bad_packets:
                self.warnings.insert(0, f"skipped {bad_packets} undecodable packet(s) ({first_bad})")

    def end_stream(self) -> None:
        """Forget the resampler (drained at the end of a stream): the next stream gets its own."""
        self._resampler = None
        self._resampler_key = None

    def _add_frame(self, frame: av.AudioFrame) -> bool:
        """Resample and store one decoded frame; False once the sample limit is reached."""
        if frame.samples == 0:
            return True
        if not self.first_rate:
            self.first_rate, self.first_channels = frame.sample_rate, frame.layout.nb_channels
        self._native[frame.sample_rate] = self._native.get(frame.sample_rate, 0) + frame.samples
        key = (frame.format.name, frame.layout.name, frame.layout.nb_channels, frame.sample_rate)
        if key != self._resampler_key:
            # First frame, or the stream changed format mid-way (chained Ogg, HE-AAC
            # switching to stereo): drain the old resampler and start a new one.
            if self._resampler is not None:
                for out in self._resampler.resample(None):
                    if not self._write(out):
                        return False
            # layout=None keeps the native channels: the stereo downmix is done here.
            self._resampler = av.AudioResampler(format="fltp", layout=None, rate=SAMPLE_RATE)
            self._resampler_key = key
            names = tuple(ch.name for ch in frame.layout.channels)
            self._matrix = downmix_matrix(names) if len(names) > 2 else None
        for out in self._resampler.resample(frame):
            if not self._write(out):
                return False
        return True

    def _write(self, frame: av.AudioFrame) -> bool:
        """Append one ``fltp`` 44.1 kHz frame as stereo; False once the limit is reached."""
        k = frame.samples
        if k == 0:
            return True
        if self.limit is not None and self.n + k > self.limit:
            # More audio than the cap: keep up to the cap and stop. (Hitting the cap
            # exactly is not truncation until a further sample shows up, here.)
            k = self.limit - self.n
            self.truncated = True
        self._reserve(self.n + k)
        # Views on the frame's planes (buffers may be padded past `samples`), which is
        # cheaper than frame.to_ndarray()'s vstack for thousands of small frames. Only
        # the first nb_channels: PyAV 18 lists more planes than channels from 8 channels
        # on (8 -> 9, 16 -> 39), and reading the extra ones crashed the process (SIGSEGV).
        planes = [np.frombuffer(p, dtype=np.float32, count=k)
                  for p in frame.planes[: frame.layout.nb_channels]]
        dst = self.buf[self.n : self.n + k]
        if len(planes) == 1:
            dst[:, 0] = planes[0]
            dst[:, 1] = planes[0]
        elif len(planes) == 2:
            dst[:, 0] = planes[0]
            dst[:, 1] = planes[1]
        else:
            dst[:] = (self._matrix @ np.stack(planes)).T
        self.n += k
        return not self.truncated

    def _reserve(self, needed: int) -> None:
        cap = self.buf.shape[0]
        if needed <= cap:
            return
        # The container's duration was wrong or missing: grow geometrically.
        new_cap = max(needed, cap * 2)
        if self.limit is not None:
            new_cap = min(new_cap, self.limit)
        grown = np.empty((new_cap, 2), dtype=np.float32)
        grown[: self.n] = self.buf[: self.n]
        self.buf = grown


def _initial_capacity(header_s: float | None, limit: int | None) -> int:
    # np.empty pages are only committed when written, so a generous estimate costs no
    # resident memory; the margin avoids a regrow-and-copy when the header is a bit short.
    seconds = header_s * 1.02 + 1.0 if header_s else _FALLBACK_CAPACITY_S
    cap = int(math.ceil(seconds * SAMPLE_RATE))
    return max(1, min(cap, limit) if limit is not None else cap)


def _header_duration(container, stream) -> float | None:
    """Duration in seconds that the stream or container declares, or None."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def error_reason(e: BaseException) -> str:
    """One-line reason from an FFmpeg/OS error, without the repeated file name."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())
