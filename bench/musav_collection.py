"""Make a MusAV-sized test collection: 2,092 clips of 30 s in ogg, mp3, m4a and opus.

MusAV (the arousal/valence annotation set the seed's reference figure was measured on:
75 min on one i5 thread) is 2,092 excerpts of 30 s. This script cuts as many 30 s
excerpts from the shared corpus's recordings, at different offsets, and encodes them in
turn as Ogg Vorbis, MP3, AAC in M4A and Opus (PyAV's FFmpeg), so a build sees the codec
mix and the file count of such a collection. Excerpts of one recording overlap; the
build's cost depends on duration and codec, not on the music being new.

Usage::

    python bench/musav_collection.py DEST [--clips 2092]   # resumable: existing clips are kept
    python bench/build_speed.py --folder DEST --no-reference

Recordings of at least 30 s are used: the library (game soundtracks, Sectoid songs,
librosa examples) and the rendered clips (exactly 30 s, so offset 0). About 0.4-1 s of
CPU per clip to encode, in ``--jobs`` processes (default: one per core; run it under
``nice``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(ROOT))
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))
CLIP_S = 30.0
MUSAV_CLIPS = 2092
AUDIO_EXT = {".ogg", ".mp3", ".flac", ".m4a", ".wav"}
# (extension, codec, bit rate): the formats MusAV-like collections arrive in.
FORMATS = (
    ("ogg", "vorbis", 128_000),
    ("mp3", "libmp3lame", 192_000),
    ("m4a", "aac", 160_000),
    ("opus", "libopus", 96_000),
)


def sources(corpus: Path) -> list[Path]:
    """Recordings in the corpus long enough for one 30 s clip, in a stable order."""
    from engine.decode import decode  # noqa: F401 - fail early without the project

    found = []
    for folder in ("library", "rendered"):
        found += sorted(p for p in (corpus / folder).rglob("*") if p.suffix.lower() in AUDIO_EXT)
    return found


def plan(recordings: list[tuple[Path, float]], clips: int) -> list[tuple[Path, float, int]]:
    """(recording, offset s, format index) for each clip: round robin over recordings,
    offsets spread evenly over each recording's usable span."""
    usable = [(p, d) for p, d in recordings if d >= CLIP_S]
    per = -(-clips // len(usable))
    out = []
    for k in range(per):
        for p, d in usable:
            span = d - CLIP_S
            offset = 0.0 if span < 0.5 else round(span * ((k * 0.618034) % 1.0), 2)
            out.append((p, offset, len(out) % len(FORMATS)))
    return out[:clips]


def encode(audio: np.ndarray, rate: int, dest: Path, fmt: int) -> None:
    """Write ``audio`` ([n, channels] float32) to ``dest`` in FORMATS[fmt]."""
    import av

    ext, codec, bitrate = FORMATS[fmt]
    out_rate = 48000 if codec == "libopus" else rate
    layout = "stereo" if audio.shape[1] == 2 else "mono"
    tmp = dest.with_name(dest.name + ".part")
    with av.open(str(tmp), "w", format={"m4a": "mp4", "opus": "ogg"}.get(ext, ext)) as out:
        stream = out.add_stream(codec, rate=out_rate, layout=layout)
        stream.bit_rate = bitrate
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        elif codec == "libmp3lame":
            # LAME's fastest search (quality 9): a third of the default's encoding time;
            # the build decodes it the same way.
            stream.codec_context.options = {"compression_level": "9"}
        resampler = av.AudioResampler(format=stream.codec_context.format, layout=layout, rate=out_rate)
        block = 4096
        for start in range(0, audio.shape[0], block):
            chunk = np.ascontiguousarray(audio[start : start + block].T)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            for f in resampler.resample(frame):
                out.mux(stream.encode(f))
        for f in resampler.resample(None):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))
    tmp.replace(dest)


def make_clips(job: tuple[Path, list[tuple[int, float, int]], Path]) -> int:
    """Encode one recording's clips (a worker's job); returns how many were made."""
    from engine.decode import decode

    recording, clips, dest_dir = job
    todo = [(i, off, fmt) for i, off, fmt in clips if not _clip_path(dest_dir, i, recording, fmt).exists()]
    if not todo:
        return 0
    a = decode(recording)
    for i, offset, fmt in todo:
        start = int(offset * 44100)
        audio = a.stereo[start : start + int(CLIP_S * 44100)]
        if a.facts.channels == 1:
            audio = audio[:, :1]
        encode(audio, 44100, _clip_path(dest_dir, i, recording, fmt), fmt)
    return len(todo)


def _clip_path(dest_dir: Path, i: int, recording: Path, fmt: int) -> Path:
    return dest_dir / f"{i:04d}-{recording.stem[:40]}.{FORMATS[fmt][0]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", type=Path, help="folder to fill (created; existing clips are kept)")
    ap.add_argument("--clips", type=int, default=MUSAV_CLIPS)
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="encoding processes")
    args = ap.parse_args(argv)

    from concurrent.futures import ProcessPoolExecutor

    from engine.decode import decode

    args.dest.mkdir(parents=True, exist_ok=True)
    recordings = []
    for p in sources(args.corpus):
        try:
            recordings.append((p, decode(p).analysed_seconds))
        except Exception as exc:  # noqa: BLE001 - a source the decoder refuses is skipped
            print(f"skipped {p}: {exc}", file=sys.stderr)
    by_recording: dict[Path, list] = {}
    for i, (p, offset, fmt) in enumerate(plan(recordings, args.clips)):
        by_recording.setdefault(p, []).append((i, offset, fmt))
    jobs = [(p, clips, args.dest) for p, clips in by_recording.items()]
    made = 0
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for n in pool.map(make_clips, jobs):
            made += n
    print(f"{args.dest}: {made} clips made, {args.clips - made} already there, "
          f"{len(recordings)} source recordings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
