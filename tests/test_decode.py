"""engine.decode: every edge-case file decodes to sane signals or raises a readable error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.decode import (
    DEFAULT_MAX_SECONDS,
    SAMPLE_RATE,
    DecodedAudio,
    decode,
)
from engine.downmix import downmix_matrix
from engine.errors import DecodeError, EngineError

from .conftest import CORPUS, OUTSIDE

EDGE = CORPUS / "edge"
ONE_HOUR = "one_hour_silence.flac"
# Every file under edge/ (new files are covered automatically), except the one-hour file,
# which has its own slow test.
EDGE_FILES = sorted(
    p.relative_to(EDGE).as_posix() for p in EDGE.rglob("*") if p.is_file() and p.name != ONE_HOUR
)
# Files that must fail, with a word their message must contain.
EXPECTED_ERRORS = {
    "bad_empty.wav": "empty file",
    "zero_bytes.flac": "empty file",
    "bad_text.mp3": "not a readable audio file",
    "readme_not_audio.ogg": "not a readable audio file",
}


def check_signals(d: DecodedAudio) -> None:
    n = d.mono.shape[0]
    assert n > 0
    assert d.stereo.shape == (n, 2) and d.stereo.flags["C_CONTIGUOUS"]
    for a in (d.stereo, d.mono, d.mono_16k, d.mono_11k):
        assert a.dtype == np.float32
        assert not a.flags.writeable
        assert np.isfinite(a).all()
        # Nominally within +-1, but band-limiting (resampling, lossy decoders) legitimately
        # overshoots full-scale content a little (the 4-channel test files reach 1.12 at
        # 16 kHz); 1.5 still catches integer scaling or an unnormalised downmix (2.2).
        assert np.abs(a).max() <= 1.5
    assert abs(len(d.mono_16k) - n * 16000 / SAMPLE_RATE) <= 1
    assert abs(len(d.mono_11k) - n * 11025 / SAMPLE_RATE) <= 1
    np.testing.assert_allclose(d.mono, d.stereo.mean(axis=1), atol=1e-6)
    assert d.analysed_seconds == pytest.approx(n / SAMPLE_RATE)
    f = d.facts
    assert f.sample_rate > 0 and f.channels > 0 and f.codec and f.container
    assert f.bitrate is None or f.bitrate > 0
    assert f.duration >= d.analysed_seconds - 0.05


@pytest.mark.parametrize("name", EDGE_FILES)
def test_edge_file_decodes_or_raises_readable_error(name: str):
    path = EDGE / name
    if name in EXPECTED_ERRORS:
        with pytest.raises(DecodeError) as info:
            decode(path)
        msg = str(info.value)
        assert isinstance(info.value, EngineError)
        assert "\n" not in msg and str(path) in msg and EXPECTED_ERRORS[name] in msg
        return
    try:
        d = decode(path)
    except DecodeError as e:  # a new edge file may fail, but only this way
        msg = str(e)
        assert "\n" not in msg and str(path) in msg
        return
    check_signals(d)
    assert not d.truncated


@pytest.mark.parametrize(
    "name, rate, channels, codec, seconds",
    [
        ("mono_8k.wav", 8000, 1, "pcm_s16le", 6.0),
        ("hires_96k.flac", 96000, 2, "flac", 6.0),
        ("surround_5.1.flac", 44100, 6, "flac", 6.0),
        ("multichannel/4channels.wav", 44100, 4, "pcm_s16le", 5.0),
        ("multichannel/4channels.aiff", 44100, 4, "pcm_s16be", 5.0),
        ("t_pcm24.wav", 44100, 2, "pcm_s24le", 6.0),
        ("t_float32.wav", 44100, 2, "pcm_f32le", 6.0),
        ("t_alac.m4a", 44100, 2, "alac", 6.04),
        ("t.wma", 44100, 2, "wmav2", 5.99),
        ("t.aiff", 44100, 2, "pcm_s16be", 6.01),
        ("t.opus", 48000, 2, "opus", 6.01),
        ("t_opus_in.ogg", 48000, 2, "opus", 6.01),
        ("t_mono22k.mp3", 22050, 1, "mp3", 6.01),
        ("tiny_0.2s.wav", 44100, 1, "pcm_s16le", 0.2),
    ],
)
@pytest.mark.corpus
def test_facts(name, rate, channels, codec, seconds):
    d = decode(EDGE / name)
    assert (d.facts.sample_rate, d.facts.channels, d.facts.codec) == (rate, channels, codec)
    assert d.facts.duration == pytest.approx(seconds, abs=0.02)
    assert d.analysed_seconds == pytest.approx(seconds, abs=0.02)


@pytest.mark.corpus
def test_container_and_bitrate():
    d = decode(EDGE / "t.mp3")
    assert (d.facts.container, d.facts.bitrate) == ("mp3", 192000)
    assert decode(EDGE / "t_alac.m4a").facts.container.startswith("mov,mp4,m4a")
    assert decode(EDGE / "t.opus").facts.container == "ogg"
    assert decode(EDGE / "hires_96k.flac").facts.bitrate > 1_000_000  # container average


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["mono_8k.wav", "t_mono22k.mp3", "tiny_0.2s.wav"])
def test_mono_file_gives_equal_channels_at_full_level(name):
    d = decode(EDGE / name)
    np.testing.assert_array_equal(d.stereo[:, 0], d.stereo[:, 1])
    np.testing.assert_array_equal(d.mono, d.stereo[:, 0])


@pytest.mark.corpus
def test_mono_level_is_not_attenuated():
    # tiny_0.2s.wav is 44.1 kHz 16-bit mono, so no resampling: samples come through exactly.
    raw = np.frombuffer((EDGE / "tiny_0.2s.wav").read_bytes()[-8820 * 2 :], dtype="<i2")
    d = decode(EDGE / "tiny_0.2s.wav")
    np.testing.assert_allclose(d.mono, raw / 32768.0, atol=1e-7)


@pytest.mark.corpus
def test_multichannel_downmix_stays_within_full_scale():
    # The 4-channel WAV has every channel at full scale, in phase: an unscaled downmix
    # would reach 1.707 (FFmpeg's float path: 2.2).
    d = decode(EDGE / "multichannel" / "4channels.wav")
    assert 0.9 < np.abs(d.stereo).max() <= 1.0 + 1e-6


def testdownmix_matrix():
    m = downmix_matrix(("FL", "FR", "FC", "LFE", "BL", "BR"))
    h = 1 / np.sqrt(2)
    expected = np.array([[1, 0, h, 0, h, 0], [0, 1, h, 0, 0, h]]) / (1 + 2 * h)
    np.testing.assert_allclose(m, expected, rtol=1e-6)
    # Unspecified positions fall back to FFmpeg's default order (4 channels: quad).
    np.testing.assert_allclose(
        downmix_matrix(("NONE",) * 4), downmix_matrix(("FL", "FR", "BL", "BR"))
    )
    assert (np.abs(downmix_matrix(("X1", "X2", "X3", "X9", "X10"))).sum(axis=1) <= 1 + 1e-6).all()


@pytest.mark.corpus
def test_max_seconds_caps_length_and_keeps_full_duration():
    d = decode(EDGE / "t_pcm24.wav", max_seconds=1.5)
    assert d.truncated
    assert len(d.mono) == round(1.5 * SAMPLE_RATE)
    assert d.analysed_seconds == pytest.approx(1.5)
    assert d.facts.duration == pytest.approx(6.0, abs=0.01)
    check_signals(d)
    full = decode(EDGE / "t_pcm24.wav")
    np.testing.assert_array_equal(d.stereo, full.stereo[: len(d.mono)])  # the start is kept


@pytest.mark.corpus
def test_max_seconds_resampled_source_and_exact_fit():
    d = decode(EDGE / "t.opus", max_seconds=2.0)  # 48 kHz: cap counts output samples
    assert d.truncated and len(d.mono) == 2 * SAMPLE_RATE
    assert d.facts.duration == pytest.approx(6.01, abs=0.02)
    whole = decode(EDGE / "tiny_0.2s.wav", max_seconds=0.2)  # cap == file length
    assert not whole.truncated and len(whole.mono) == 8820


@pytest.mark.corpus
def test_m4a_keeps_aac_priming_like_essentia():
    # An iTunes-style 48 kHz AAC file whose edit list trims 1024 priming samples: the
    # decoded signal must line up with Essentia's loader (which keeps them), else the
    # models' patches shift by 21 ms and MusiCNN's mean embedding drifts (cosine 0.990).
    import essentia.standard as es

    path = CORPUS / "library" / "Singularity" / "Music" / "04 Awakening.m4a"
    ours = decode(path)
    theirs = es.MonoLoader(filename=str(path), sampleRate=SAMPLE_RATE, resampleQuality=4)()
    assert ours.facts.sample_rate == 48000 and len(ours.mono) == len(theirs)
    assert np.corrcoef(ours.mono, theirs)[0, 1] > 0.999  # -0.13 with the priming trimmed


@pytest.mark.corpus
def test_max_seconds_none_and_invalid():
    assert not decode(EDGE / "tiny_0.2s.wav", max_seconds=None).truncated
    with pytest.raises(ValueError):
        decode(EDGE / "tiny_0.2s.wav", max_seconds=0)
    assert DEFAULT_MAX_SECONDS * SAMPLE_RATE * (2 + 1) * 4 + DEFAULT_MAX_SECONDS * (
        16000 + 11025
    ) * 4 <= 300e6  # the arrays of a capped file stay under 300 MB


@pytest.mark.corpus
def test_truncated_files_keep_what_decodes():
    flac = decode(EDGE / "bad_truncated.flac")
    assert 2.0 < flac.analysed_seconds < 20.0  # the header claims 20 s
    assert flac.facts.duration == pytest.approx(flac.analysed_seconds, abs=0.01)
    assert flac.warnings and "undecodable" in flac.warnings[0]
    mp3 = decode(EDGE / "bad_truncated.mp3")
    assert 2.0 < mp3.analysed_seconds < 20.0


@pytest.mark.corpus
def test_corrupt_packets_are_skipped(tmp_path: Path):
    # 4channels.flac has undecodable frames: the rest of the file still decodes.
    d = decode(EDGE / "multichannel" / "4channels.flac")
    assert 4.0 < d.analysed_seconds <= 5.0
    assert any("undecodable" in w for w in d.warnings)


def test_missing_and_non_audio(tmp_path: Path):
    with pytest.raises(DecodeError, match="cannot decode .*missing.mp3"):
        decode(tmp_path / "missing.mp3")
    junk = tmp_path / "junk.flac"
    junk.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(DecodeError, match="junk.flac"):
        decode(junk)


def test_file_without_audio_stream(tmp_path: Path):
    av = pytest.importorskip("av")
    path = tmp_path / "video_only.mkv"
    with av.open(str(path), "w") as c:  # a few frames of a video-only Matroska file
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with pytest.raises(DecodeError, match="no audio stream"):
        decode(path)


@pytest.mark.corpus
def test_wrong_extension_is_decoded_by_content(tmp_path: Path):
    path = tmp_path / "actually_flac.mp3"
    shutil.copy(EDGE / "t.flac", path)
    d = decode(path)
    assert d.facts.codec == "flac"
    check_signals(d)


@pytest.mark.slow
def test_vorbis_ffmpeg_refuses_uses_essentia_fallback(corpus: Path):
    # FFmpeg 8 rejects this valid Ogg Vorbis file at open; Essentia's loader reads it.
    # Slow only because the fallback imports Essentia and TensorFlow (~2 s).
    d = decode(corpus / "library" / "HyperRogue" / "hr-savino-caribbean.ogg")
    check_signals(d)
    assert d.facts.codec == "vorbis" and d.facts.container == "ogg"
    assert d.facts.duration == pytest.approx(62.3, abs=0.1)
    assert "Essentia" in d.warnings[0]
    capped = decode(corpus / "library" / "HyperRogue" / "hr-savino-caribbean.ogg", max_seconds=10)
    assert capped.truncated and len(capped.mono) == 10 * SAMPLE_RATE
    assert capped.facts.duration == pytest.approx(62.3, abs=0.1)


def test_the_fallback_decoder_loads_only_when_needed():
    # engine.decode_fallback (with mutagen, soxr and Essentia) is imported only when PyAV
    # has failed on a file; a clean decode never pays for it.
    from tests.freshimport import loaded_by

    assert loaded_by("engine.decode", ("engine.decode_fallback", "mutagen", "soxr", "essentia")) == []


@pytest.mark.corpus
@pytest.mark.slow
def test_one_hour_file_is_bounded():
    # In a fresh interpreter, so the peak RSS is this decode's and not an earlier test's.
    # VmHWM (peak RSS of this address space) rather than ru_maxrss, which Linux carries
    # over from the parent across exec.
    script = f"""
import json, re, time
import essentia.standard  # loaded by every analysis worker anyway; not this decode's cost
from engine.decode import decode
def hwm_kib():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\\s*(\\d+)", f.read()).group(1))
before = hwm_kib()
t0 = time.perf_counter()
d = decode({str(EDGE / ONE_HOUR)!r})
print(json.dumps(dict(
    wall=time.perf_counter() - t0,
    grown_mib=(hwm_kib() - before) / 1024,
    nbytes=sum(a.nbytes for a in (d.stereo, d.mono, d.mono_16k, d.mono_11k)),
    truncated=d.truncated, analysed=d.analysed_seconds, duration=d.facts.duration)))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=OUTSIDE, capture_output=True, text=True, check=True
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["truncated"]
    assert r["analysed"] == pytest.approx(DEFAULT_MAX_SECONDS)
    assert r["duration"] == pytest.approx(3600.0, abs=0.01)
    assert r["nbytes"] < 300e6
    assert r["grown_mib"] < 330  # the arrays are 273.5 MiB; decoding adds little on top
    assert r["wall"] < 30
    print(f"one-hour file: {r['wall']:.2f} s, peak RSS +{r['grown_mib']:.0f} MiB", file=sys.stderr)
