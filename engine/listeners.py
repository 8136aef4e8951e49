"""Scoring tracks for listener profiles: stored features in, predicted HAAQI out.

``engine build`` calls :func:`score_listeners` after writing its tracks, and ``engine
listener add`` calls it for the new profile, so every track gets a prediction for every
listener without being decoded again: the predictor (models.hearing) reads only columns
the build stored (quality measures, loudness, band levels). A prediction is redone when
the track was analysed again or the model's weights changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from index.listeners import list_listeners, tracks_to_score, write_scores
from index.store import Store

__all__ = ["ScoreSummary", "score_listeners"]

_CHUNK = 20_000  # tracks per read/predict/write round: bounds memory on large stores


@dataclass
class ScoreSummary:
    """What :func:`score_listeners` did: tracks scored per listener, and the wall time."""

    scored: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.scored.values())


def score_listeners(store: Store, names: list[str] | None = None, predictor=None) -> ScoreSummary:
    """Predict HAAQI for every (track, listener) pair that lacks a current prediction.

    Parameters
    ----------
    store : Store
        Opened for writing.
    names : list of str, optional
        Only these listeners (default: all).
    predictor : models.hearing.HaaqiPredictor, optional
        Default: the shipped one (loaded only when there is a listener).
    """
    t0 = time.perf_counter()
    summary = ScoreSummary()
    profiles = [p for p in list_listeners(store) if names is None or p.name in names]
    if not profiles:
        return summary
    from models.hearing import TRACK_COLUMNS, load_predictor, track_features

    predictor = predictor or load_predictor()
    cache: dict[int, np.ndarray] = {}  # track features, shared by the listeners
    for profile in profiles:
        ids, rows = tracks_to_score(store, profile.name, predictor.version, TRACK_COLUMNS)
        for start in range(0, len(ids), _CHUNK):
            chunk = list(zip(ids[start: start + _CHUNK], rows[start: start + _CHUNK]))
            for track_id, row in chunk:
                if track_id not in cache:
                    cache[track_id] = track_features(row)
            features = np.array([cache[i] for i, _ in chunk]).reshape(len(chunk), -1)
            scores = predictor.predict(features, [profile.audiogram])[:, 0]
            write_scores(store, profile.name, ids[start: start + _CHUNK], scores, predictor.version)
        summary.scored[profile.name] = len(ids)
    summary.seconds = time.perf_counter() - t0
    return summary
