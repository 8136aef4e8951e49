"""The defect profile (engine.quality_profile): each defect moves its own statistics the
way the predictor relies on, on a music-like test signal; undefined input gives NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import degrade as dg
from engine import quality as q
from models.hearing import QUALITY_PROFILE_NAMES
from tests.test_quality import _tones


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = _tones(8.0, seed=2)
    # Loudness that varies over the phrase, as music's does (a limiter flattens it).
    x = x * (0.35 + 0.65 * np.abs(np.sin(np.arange(x.size) / 44100.0 * 1.7)))
    return (x + rng.standard_normal(x.size) * 1e-3).astype(np.float32)


def _profile(mono: np.ndarray) -> dict[str, float]:
    res = q.quality(mono, np.stack([mono, mono], axis=1))
    return dict(zip(QUALITY_PROFILE_NAMES, res.profile))


def _version(x: np.ndarray, kind: str, severity: float) -> np.ndarray:
    stereo = np.stack([x, x], axis=1)
    return dg.degrade(stereo, kind, severity, seed=1).mean(axis=1).astype(np.float32)


def test_limiting_piles_blocks_at_the_peak(clean):
    base, limited = _profile(clean), _profile(_version(clean, "compression", 10.0))
    assert limited["ceiling_share"] > base["ceiling_share"] + 0.2
    assert limited["pile_share"] > base["pile_share"] + 0.1
    assert limited["peak_gap_db"] < base["peak_gap_db"] - 2.0
    assert limited["crest_400ms_db"] < base["crest_400ms_db"]


def test_a_codec_empties_and_cuts_the_top(clean):
    base, coded = _profile(clean), _profile(_version(clean, "mp3", 32.0))
    assert coded["high_band_db"] < base["high_band_db"] - 10.0
    assert coded["holes_mid"] > base["holes_mid"]
    assert coded["cutoff_edge_db"] > 20.0


def test_clicks_and_hum_raise_their_own_values(clean):
    base = _profile(clean)
    clicks = _profile(_version(clean, "clicks", 2000.0))
    hum = _profile(_version(clean, "hum", 10.0))
    assert clicks["impulse_energy"] > base["impulse_energy"] + 0.5
    assert clicks["impulse_db"] > base["impulse_db"]
    assert hum["hum_level_db"] > base["hum_level_db"] + 10.0
    assert hum["hum_level_db"] == pytest.approx(-10.0, abs=3.0)  # added 10 dB below the music


def test_silence_and_short_input_give_nan_and_columns_carry_none():
    silent = q.quality(np.zeros(44100 * 2, np.float32))
    assert np.isnan(silent.profile).all()
    assert silent.columns()["quality_profile"] == [None] * len(QUALITY_PROFILE_NAMES)
    short = q.quality(_tones(1.0)[:8820])  # 0.2 s
    assert len(short.profile) == len(QUALITY_PROFILE_NAMES)
    assert math.isnan(dict(zip(QUALITY_PROFILE_NAMES, short.profile))["ceiling_share"])
