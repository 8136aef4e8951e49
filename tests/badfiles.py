"""A seeded folder of bad files and awkward names, for the fuzz test and bench/probe.py.

:func:`make_collection` writes, from a seed, a folder of what a careless disk, a broken
rip or a hostile user leaves in a music collection: truncated and bit-flipped audio,
random bytes named like audio, WAV files with 1 to 16 channels at rates from 1 Hz to
384 kHz, headers that lie about their length, chained Ogg files, names that are not
UTF-8 or hold control characters, FIFOs, unreadable files and folders, broken links,
symlink loops, and folders nested deep. Every entry says what a build must make of it:
a track, a recorded failure, or either (a damaged file may still decode).

Only short signals (≤ 2 s) are written, so a build of a few hundred entries takes
minutes, not hours.
"""

from __future__ import annotations

import io
import os
import random
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRACK, RECORDED, EITHER, NOTHING = "track", "recorded", "either", "nothing"


@dataclass(frozen=True)
class Entry:
    """One thing written under the collection's root.

    ``path`` is absolute (a ``str``, possibly with escaped bytes); ``expect`` says what
    a build must make of it: TRACK (analysed), RECORDED (in ``failures`` with a reason),
    EITHER, or NOTHING (a folder or link that holds no file of its own).
    """

    path: str
    kind: str
    expect: str


def _tone(seconds: float, rate: int, channels: int, rng: random.Random) -> np.ndarray:
    """[n, channels] int16 of a few sines and a little noise."""
    n = max(1, int(seconds * rate))
    t = np.arange(n) / rate
    f = rng.uniform(110, min(2000, rate / 3)) if rate > 6 else 0.0
    x = 0.3 * np.sin(2 * np.pi * f * t) + 0.02 * np.random.default_rng(rng.randrange(1 << 30)).standard_normal(n)
    return (np.repeat(x[:, None], channels, 1) * 32767).astype(np.int16)


def wav_bytes(seconds: float, rate: int = 44100, channels: int = 2, *, rng: random.Random) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(_tone(seconds, rate, channels, rng).tobytes())
    return buf.getvalue()


def encoded_bytes(codec: str, fmt: str, seconds: float, *, channels: int = 2, rate: int = 44100,
                  rng: random.Random) -> bytes:
    """A short tone encoded by FFmpeg (PyAV): e.g. ('flac', 'flac'), ('libmp3lame', 'mp3'),
    ('libopus', 'ogg'), ('vorbis', 'ogg'), ('aac', 'adts')."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono" if channels == 1 else "stereo")
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "-2"}
        pcm = (_tone(seconds, rate, channels, rng).T / 32768).astype(np.float32)
        step = 960
        for i in range(0, pcm.shape[1], step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i:i + step]), format="fltp",
                                               layout=stream.layout.name)
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _wav_header(seconds: float, rate: int = 44100, channels: int = 2) -> bytes:
    data = min(int(seconds * rate) * channels * 2, 0xFFFFFFFF)
    return (b"RIFF" + struct.pack("<I", min(data + 36, 0xFFFFFFFF)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
            + b"data" + struct.pack("<I", data))


# Name parts: plain, Unicode, spaces, playlist-hostile, control characters, not UTF-8.
_NAME_PARTS: tuple[bytes, ...] = (
    b"track", "Ünïcödé".encode(), "日本語".encode(), b"with space", b" lead", b"trail ",
    b"#hash", b"semi;colon", b"quote'd", b'dq"', b"back\\slash", b"tab\there", b"new\nline",
    b"cr\rhere", b"esc\x1b[31m", b"bell\x07", b"caf\xe9", b"\xff\xfe", b"half\xc3", b"x" * 120,
    b"-dash", b"..dots", b"%20pct", b"emoji\xf0\x9f\x8e\xb5", b"rtl\xe2\x80\xae",
)


def _name(rng: random.Random, ext: bytes) -> bytes:
    parts = rng.sample(_NAME_PARTS, rng.randint(1, 2))
    stem = b"_".join(parts)
    if stem.startswith(b"."):
        stem = b"_" + stem  # hidden entries are skipped on purpose
    return stem + ext


def make_collection(root: Path, n: int = 300, seed: int = 0) -> list[Entry]:
    """Write about ``n`` entries under ``root`` (made if missing); returns them.

    Deterministic for a seed. Unreadable entries (mode 000) only fail for a process
    without root's DAC override (tests drop it with setpriv).
    """
    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    broot = os.fsencode(str(root))
    entries: list[Entry] = []
    sources = {
        b".wav": wav_bytes(1.5, rng=rng),
        b".flac": encoded_bytes("flac", "flac", 1.5, rng=rng),
        b".mp3": encoded_bytes("libmp3lame", "mp3", 1.5, rng=rng),
        b".ogg": encoded_bytes("vorbis", "ogg", 1.5, rng=rng),
        b".opus": encoded_bytes("libopus", "ogg", 1.5, rate=48000, rng=rng),
        b".aac": encoded_bytes("aac", "adts", 1.5, rng=rng),
    }
    exts = list(sources)
    used: set[bytes] = set()

    def folder() -> bytes:
        depth = rng.choice([0, 0, 1, 2])
        parts = [b"dir " + _name(rng, b"") for _ in range(depth)]  # never a file's name
        d = os.path.join(broot, *parts) if parts else broot
        os.makedirs(d, exist_ok=True)
        return d

    def put(data: bytes | None, ext: bytes, kind: str, expect: str, *, name: bytes | None = None) -> bytes:
        while True:
            path = os.path.join(folder(), name or _name(rng, ext))
            if path not in used and not os.path.lexists(path):
                break
            name = None
        used.add(path)
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
        entries.append(Entry(os.fsdecode(path), kind, expect))
        return path

    makers = []

    def good():  # a valid file under an awkward name
        ext = rng.choice(exts)
        put(sources[ext], ext, "valid audio, awkward name", TRACK)

    def truncated():
        ext = rng.choice(exts)
        data = sources[ext]
        put(data[: rng.randint(0, len(data) - 1)], ext, "truncated", EITHER)

    def flipped():
        ext = rng.choice(exts)
        data = bytearray(sources[ext])
        for _ in range(rng.randint(1, 64)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        put(bytes(data), ext, "bytes flipped", EITHER)

    def random_bytes():
        ext = rng.choice(exts + [b".m4a", b".wma", b".aiff", b".ape"])
        size = rng.choice([1, 7, 100, 4096, 70_000])
        put(rng.randbytes(size), ext, "random bytes with an audio extension", RECORDED)

    def empty():
        put(b"", rng.choice(exts), "empty", RECORDED)

    def channels():
        ch = rng.choice([1, 3, 5, 6, 7, 8, 9, 12, 16])
        put(wav_bytes(0.5, rng.choice([8000, 44100, 48000]), ch, rng=rng), b".wav", f"{ch} channels", TRACK)

    def rates():
        rate = rng.choice([1, 100, 4000, 7999, 11025, 22050, 96000, 192000, 384000])
        put(wav_bytes(0.5 if rate >= 4000 else 2.0, rate, 2, rng=rng), b".wav", f"{rate} Hz", EITHER)

    def liar():
        claim = rng.choice([60.0, 3600.0, 1e6])
        put(_wav_header(claim) + wav_bytes(0.5, rng=rng)[44:], b".wav",
            "header declares more than the file holds", EITHER)

    def sparse():
        path = put(None, b".wav", "sparse file: the header declares hours", RECORDED)
        header = _wav_header(4 * 3600)
        with open(path, "wb") as f:
            f.write(header)
            f.truncate(len(header) + 4 * 3600 * 44100 * 4)

    def chained():
        a = encoded_bytes("libopus", "ogg", 0.5, channels=1, rate=48000, rng=rng)
        put(a + sources[b".opus"], b".ogg", "chained Ogg (mono, then stereo)", TRACK)

    def no_extension():
        if rng.random() < 0.5:
            put(sources[rng.choice([b".flac", b".wav", b".ogg"])], b"", "audio without extension", TRACK)
        else:
            put(b"just some text\n" * rng.randint(1, 50), b"", "text without extension", RECORDED)

    def fifo():
        path = put(None, rng.choice(exts + [b""]), "FIFO", RECORDED)
        os.mkfifo(path)

    def unreadable():
        path = put(sources[rng.choice(exts)], rng.choice(exts), "unreadable (mode 000)", RECORDED)
        os.chmod(path, 0)

    def unreadable_folder():
        d = put(None, b"", "unreadable folder", RECORDED)
        os.makedirs(d)
        with open(os.path.join(d, b"inside.wav"), "wb") as f:
            f.write(sources[b".wav"])
        os.chmod(d, 0)

    def broken_link():
        path = put(None, rng.choice(exts), "broken symlink", RECORDED)
        os.symlink(os.path.join(broot, b"does-not-exist.flac"), path)

    def loop():
        path = put(None, b"", "symlink loop to a parent folder", NOTHING)
        os.symlink(os.path.dirname(path), path)

    def non_audio_extension():
        put(rng.randbytes(200), rng.choice([b".jpg", b".txt", b".m3u", b".cue", b".nfo"]),
            "non-audio extension (left out on purpose)", NOTHING)

    makers = [(good, 30), (truncated, 40), (flipped, 30), (random_bytes, 30), (empty, 5),
              (channels, 20), (rates, 15), (liar, 8), (sparse, 3), (chained, 5), (no_extension, 15),
              (fifo, 8), (unreadable, 8), (unreadable_folder, 3), (broken_link, 6), (loop, 3),
              (non_audio_extension, 8)]
    weights = [w for _, w in makers]
    while len(entries) < n:
        rng.choices([m for m, _ in makers], weights)[0]()
    return entries


def restore_permissions(root: Path) -> None:
    """Make every entry under ``root`` readable again (so it can be deleted); top-down, so
    a folder is opened before the walk enters it."""
    for dirpath, dirnames, filenames in os.walk(os.fsencode(str(root)), followlinks=False):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                try:
                    os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
                except OSError:
                    pass


@dataclass(frozen=True)
class Outcome:
    entry: Entry
    got: str  # TRACK, RECORDED or "missing"
    reason: str | None  # the failure's reason when recorded
    ok: bool


def judge(entries: list[Entry], tracks: set[str], failures: dict[str, str]) -> list[Outcome]:
    """What a build made of each entry, and whether that is what it must make: every
    entry that is not NOTHING is a track or a failure with a one-line reason, as expected,
    and never both."""
    out = []
    for e in entries:
        got = TRACK if e.path in tracks else RECORDED if e.path in failures else "missing"
        reason = failures.get(e.path)
        ok = (got == e.expect or (e.expect == EITHER and got != "missing")
              or (e.expect == NOTHING and got == "missing"))
        if e.path in tracks and e.path in failures:
            ok = False
        if reason is not None and (not reason.strip() or "\n" in reason or "\r" in reason):
            ok = False
        out.append(Outcome(e, got, reason, ok))
    return out
