"""The tempo octave: which metrical level of the beat tracker's tempo is the track's tempo.

The multi-feature beat tracker (:mod:`engine.beats`) finds the beat reliably but not always
at the right level: on the project's material every miss is a slow piece (61-72 BPM) read
at double tempo, or a 3/4 or 6/8 piece read at 2/3 or 3/2 of it. This module decides the
level from three pieces of evidence, once the batched model stage has run TempoCNN:

* TempoCNN's opinion: its softmax over 30-285 BPM, per 12 s patch; the evidence for a
  candidate is the activation mass within 4 % of it, averaged over patches;
* a tempo prior: a log-normal preference over tempi, learned as a quadratic in log2(BPM);
* what the tracker said: a bias per multiplier, so leaving the tracker's tempo alone has
  to be out-voted.

The candidates are the tracker's tempo times 1/2, 2/3, 1, 3/2 and 2; each gets the score
``w . features`` and the decision is a softmax over candidates (a conditional logit with 6
weights). Without TempoCNN the tracker's level is kept. The weights are fitted by ``bench/tempo_accuracy.py --fit``
on 30 pieces with exact tempi (26 rendered scores, 4 charted songs), each also resampled
to 0.8, 0.9, 1.12 and 1.25 times its speed (150 examples, tempi 49-188 BPM); the
benchmark reports only held-out figures (leave-one-piece-out: all five speeds of a piece
are held out together). See ``docs/tempo.md``.

``bpm_confidence`` is the decision's probability for the chosen level times the tracker's
beat confidence: low when the tracker is unsure of the beat, and low when the octave is a
close call.
"""

from __future__ import annotations

import math
import numpy as np

from engine.descriptors import Tempo

__all__ = [
    "MULTIPLIERS",
    "MIN_BPM",
    "MAX_BPM",
    "FEATURES",
    "OCTAVE_WEIGHTS",
    "candidate_features",
    "candidates",
    "decide",
]

#: Metrical levels considered, as multiples of the tracker's tempo.
MULTIPLIERS = (0.5, 2.0 / 3.0, 1.0, 1.5, 2.0)
#: Range of a decided tempo [BPM] (a candidate outside it is not considered).
MIN_BPM = 30.0
MAX_BPM = 250.0
#: TempoCNN's classes: class i is ``TEMPOCNN_MIN_BPM + i`` BPM.
TEMPOCNN_MIN_BPM = 30
#: Width of "the same tempo" [fraction]: the usual 4 % of tempo evaluations.
TOLERANCE = 0.04
# Floor under the TempoCNN mass before the log, so a candidate TempoCNN gives nothing
# costs a bounded amount (measured: 0.01 and 0.001 give the same decisions).
_MASS_FLOOR = 0.01
# Centre of the log-tempo features [BPM]; the fitted quadratic moves the prior's peak.
_PRIOR_CENTRE = 100.0

#: Feature names, in the order of :func:`candidate_features`' columns.
FEATURES = ("tempocnn", "log_tempo", "log_tempo_sq", "halved", "doubled", "three_two")


#: Weights of the conditional logit, one per name in :data:`FEATURES`: fitted on all 150
#: examples by ``python bench/tempo_accuracy.py --fit`` (ridge 0.1). A positive
#: ``tempocnn`` weight follows TempoCNN; the prior's quadratic in log2(BPM / 100) peaks
#: near 92 BPM; the level biases make halving cheap and doubling or 3:2 expensive.
OCTAVE_WEIGHTS = (1.21, -0.16, -0.63, 1.51, -3.57, -1.85)


def candidates(bpm: float) -> list[tuple[float, float]]:
    """``(multiplier, tempo)`` for each level of :data:`MULTIPLIERS` inside the range."""
    return [(m, bpm * m) for m in MULTIPLIERS if MIN_BPM <= bpm * m <= MAX_BPM]


def tempocnn_mass(probs: np.ndarray, bpm: float) -> float:
    """TempoCNN's probability within 4 % of ``bpm``, averaged over patches.

    Parameters
    ----------
    probs : numpy.ndarray
        Softmax outputs, shape [n_patches, 256] (class i = 30 + i BPM), n_patches >= 1.
    bpm : float
        Candidate tempo.
    """
    classes = np.arange(TEMPOCNN_MIN_BPM, TEMPOCNN_MIN_BPM + probs.shape[1])
    near = (classes >= bpm * (1 - TOLERANCE)) & (classes <= bpm * (1 + TOLERANCE))
    return float(probs[:, near].sum(axis=1).mean())


def candidate_features(bpm: float, tempocnn_probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Candidate tempi of a tracker estimate and their features.

    Parameters
    ----------
    bpm : float
        The beat tracker's tempo (finite, > 0).
    tempocnn_probs : numpy.ndarray or None
        TempoCNN's per-patch softmax [n_patches, 256]; None (or no rows) when it did not run.

    Returns
    -------
    tempi : numpy.ndarray
        [k] candidate tempi [BPM].
    features : numpy.ndarray
        [k, len(FEATURES)]; the ``tempocnn`` column is 0 without TempoCNN.
    """
    has_cnn = tempocnn_probs is not None and len(tempocnn_probs) > 0
    rows, tempi = [], []
    for m, c in candidates(bpm):
        z = math.log2(c / _PRIOR_CENTRE)
        cnn = math.log(_MASS_FLOOR + tempocnn_mass(tempocnn_probs, c)) if has_cnn else 0.0
        rows.append((cnn, z, z * z, float(m == 0.5), float(m == 2.0), float(m in (2.0 / 3.0, 1.5))))
        tempi.append(c)
    return np.asarray(tempi), np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURES))


def decide(tracked: Tempo, tempocnn_probs: np.ndarray | None,
           weights: tuple[float, ...] = OCTAVE_WEIGHTS) -> Tempo:
    """The track's tempo: the tracker's estimate moved to the most probable metrical level.

    Parameters
    ----------
    tracked : Tempo
        :func:`engine.descriptors.tempo`'s result (``bpm`` NaN when no beat was found).
    tempocnn_probs : numpy.ndarray or None
        TempoCNN's per-patch softmax [n_patches, 256], or None when it did not run (model
        not installed, or a signal shorter than one 12 s patch).
    weights : tuple of float
        One per :data:`FEATURES` (default: the fitted :data:`OCTAVE_WEIGHTS`).

    Returns
    -------
    Tempo
        With TempoCNN: ``bpm`` in [30, 250], ``confidence`` = probability of the chosen
        level x the tracker's confidence, in [0, 1], ``method`` ``'multifeature+octave'``.
        Without TempoCNN, or when the tracker found no tempo (NaN): ``tracked`` unchanged.
        (Deciding on the prior alone was measured: held out it fixes no example and breaks
        5 of 150, so the tracker's level is kept.)
    """
    if tempocnn_probs is None or len(tempocnn_probs) == 0:
        return tracked
    if not math.isfinite(tracked.bpm) or tracked.bpm <= 0:
        return tracked
    tempi, feats = candidate_features(tracked.bpm, tempocnn_probs)
    if len(tempi) == 0:
        return tracked
    scores = feats @ np.asarray(weights)
    p = np.exp(scores - scores.max())
    p /= p.sum()
    best = int(np.argmax(p))
    return Tempo(
        bpm=float(tempi[best]),
        confidence=float(p[best]) * tracked.confidence,
        method="multifeature+octave",
    )
