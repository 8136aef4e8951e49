"""bench/musav_collection.py: the MusAV-sized collection the build benchmark runs on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import musav_collection as mc
from engine.decode import decode


def test_plan_spreads_clips_over_recordings_formats_and_offsets():
    recordings = [(Path("a.ogg"), 95.0), (Path("b.mp3"), 30.0), (Path("short.ogg"), 12.0)]
    clips = mc.plan(recordings, mc.MUSAV_CLIPS)
    assert len(clips) == mc.MUSAV_CLIPS == 2092
    assert {p for p, _, _ in clips} == {Path("a.ogg"), Path("b.mp3")}  # < 30 s: never cut
    # every format in turn, so the build sees the codec mix
    assert [f for _, _, f in clips[:8]] == [0, 1, 2, 3, 0, 1, 2, 3]
    a_offsets = [o for p, o, _ in clips if p == Path("a.ogg")]
    assert all(0 <= o <= 95.0 - mc.CLIP_S for o in a_offsets)
    assert len(set(a_offsets)) > 50  # different excerpts, not one repeated
    assert {o for p, o, _ in clips if p == Path("b.mp3")} == {0.0}  # exactly 30 s: offset 0
    assert mc.plan(recordings, 10) == clips[:10]  # stable: a resumed run makes the same clips


@pytest.mark.parametrize("fmt", range(len(mc.FORMATS)))
def test_each_format_decodes_back_to_the_excerpt(corpus, tmp_path, fmt):
    source = decode(corpus / "rendered" / "folk_02.ogg")
    excerpt = source.stereo[44100 * 5 : 44100 * 9]  # 4 s of real music
    ext = mc.FORMATS[fmt][0]
    dest = tmp_path / f"clip.{ext}"
    mc.encode(excerpt, 44100, dest, fmt)
    back = decode(dest)
    assert back.facts.codec == {"ogg": "vorbis", "mp3": "mp3", "m4a": "aac", "opus": "opus"}[ext]
    assert back.analysed_seconds == pytest.approx(4.0, abs=0.1)
    rms = lambda x: np.sqrt(np.mean(np.square(x)))  # noqa: E731
    assert 20 * np.log10(rms(back.stereo) / rms(excerpt)) == pytest.approx(0.0, abs=1.0)
    assert not list(tmp_path.glob("*.part"))


def test_a_second_run_keeps_the_clips_it_made(corpus, tmp_path):
    recording = corpus / "rendered" / "folk_02.ogg"
    job = (recording, [(0, 0.0, 1)], tmp_path)  # one 30 s MP3 clip
    assert mc.make_clips(job) == 1
    (clip,) = tmp_path.iterdir()
    made = clip.stat().st_mtime_ns
    assert mc.make_clips(job) == 0 and clip.stat().st_mtime_ns == made
    assert decode(clip).analysed_seconds == pytest.approx(mc.CLIP_S, abs=0.1)
