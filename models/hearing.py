"""Predicted HAAQI for a listener with hearing loss: a non-intrusive student of the real one.

HAAQI (:mod:`engine.haaqi`) needs the clean reference, which a collection never has.
This model predicts it from what the build stores for every track — the quality measures
(:mod:`engine.quality`), loudness, the band levels around each audiometric frequency
(:mod:`models.bands`) and the defect profile (:mod:`engine.quality_profile`) — and the
listener's 8 audiogram thresholds, in numpy: no decoding, no model runtime, about
0.4 ms per track and listener. It was trained on labels made by the
real HAAQI (``bench/haaqi``: ``make_labels.py`` then ``train.py``, which writes the
weights file shipped here); docs/hearing.md gives the data, the settings and the
accuracy on held-out source tracks.

Inputs, per (track, listener) pair (:func:`pair_features`):

- track: quality score, log click rate, log clipping share, hum prominence, SNR, noise
  floor, bandwidth (kHz), integrated loudness, loudness range, crest (true peak minus
  loudness), and from the band levels: each region's typical level relative to the
  track's loudest region, and its background (p10) and peak (p90) depth about that level;
  the 14 values of the defect profile (:data:`QUALITY_PROFILE_NAMES`);
- listener: the 8 thresholds (dB HL / 100);
- both: per audiometric region, typical and background level minus the threshold
  (what the listener's ear gets of the music and of its background).

Missing values (a measure that was undefined, NULL in the store) go down the branch
training found best. The model is regression trees (evaluated here in numpy: all trees
at once, one level per step) predicting the rank of HAAQI among the training rows:
several gradient-boosted models and a forest of extremely randomised trees, blended
(their trees concatenated, leaf values weighted), turned back into HAAQI through the
training rows' ranks and scores and clipped to 0..1; the weights file records its
version, the input names, the nodes and those knots.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from models.audiogram import AUDIOGRAM_HZ, Audiogram
from models.bands import BAND_LEVEL_NAMES, STATISTICS

__all__ = [
    "WEIGHTS_PATH",
    "TRACK_COLUMNS",
    "QUALITY_PROFILE_NAMES",
    "TRACK_FEATURE_NAMES",
    "PAIR_FEATURE_NAMES",
    "HaaqiPredictor",
    "track_features",
    "pair_features",
    "load_predictor",
]

#: The weights shipped with the package (``bench/haaqi/train.py`` writes them).
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "haaqi_student.npz"

#: tracks columns the predictor reads (index.schema names).
TRACK_COLUMNS: tuple[str, ...] = (
    "quality", "clicks_per_min", "clipping_share", "hum_db", "snr_db", "noise_floor_dbfs",
    "bandwidth_hz", "loudness_lufs", "loudness_range_lu", "true_peak_dbtp", "band_levels",
    "quality_profile",
)

#: Layout of ``tracks.quality_profile``, computed by :mod:`engine.quality_profile` (named
#: here, below the engine, because the predictor reads it); the values are explained there.
QUALITY_PROFILE_NAMES: tuple[str, ...] = (
    "ceiling_share", "pile_share", "peak_gap_db", "crest_400ms_db",  # dynamics
    "high_band_db", "top_band_db", "high_band_var_db", "holes_mid", "holes_high",  # codec
    "flatness_high", "cutoff_edge_db",
    "impulse_db", "impulse_energy", "hum_level_db",  # clicks, hum
)

_N_REGIONS = len(BAND_LEVEL_NAMES) // len(STATISTICS)  # 'low' + one per audiogram frequency
_REGIONS = tuple(name.rsplit("_", 1)[0] for name in BAND_LEVEL_NAMES[:: len(STATISTICS)])

#: Names of :func:`track_features`' values.
TRACK_FEATURE_NAMES: tuple[str, ...] = (
    "quality", "log_clicks", "log_clipping", "hum_db", "snr_db", "noise_floor_dbfs",
    "bandwidth_khz", "loudness_lufs", "loudness_range_lu", "crest_db",
) + tuple(f"{r}_level" for r in _REGIONS) + tuple(f"{r}_background" for r in _REGIONS) \
    + tuple(f"{r}_peaks" for r in _REGIONS) + QUALITY_PROFILE_NAMES

#: Names of :func:`pair_features`' values (track, audiogram, then both).
PAIR_FEATURE_NAMES: tuple[str, ...] = TRACK_FEATURE_NAMES + tuple(
    f"threshold_{f}" for f in AUDIOGRAM_HZ) + tuple(
    f"{r}_level_above_threshold" for r in _REGIONS[1:]) + tuple(
    f"{r}_background_above_threshold" for r in _REGIONS[1:])

# Node arrays in memory, and narrower where the weights file keeps them so.
_DTYPES = {"roots": np.int64, "feature": np.int64, "threshold": np.float64, "missing_left": bool,
           "left": np.int64, "right": np.int64, "is_leaf": bool, "value": np.float64}
_STORED_DTYPES = {"feature": np.int16, "left": np.int32, "right": np.int32, "value": np.float32}
_SNR_CAP_DB = 80.0  # engine.quality caps SNR at 100 dB; above 80 dB a difference is inaudible
_CHUNK = 4096  # samples per pass of the tree walk: its [chunk, trees] node indices stay ~10 MB


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def track_features(columns: Mapping[str, Any]) -> np.ndarray:
    """The track half of the model's input, from a track's stored columns.

    Parameters
    ----------
    columns : mapping
        tracks columns by name (:data:`TRACK_COLUMNS`; others are ignored); None or NaN
        where a value is missing, ``band_levels`` a sequence of 27 floats or None.

    Returns
    -------
    ndarray, float64, shape [len(TRACK_FEATURE_NAMES)]
        NaN where an input is missing (the predictor fills in the training mean).
    """
    c = {k: _num(columns.get(k)) for k in TRACK_COLUMNS if k not in ("band_levels", "quality_profile")}
    bands = columns.get("band_levels")
    levels = np.full(len(BAND_LEVEL_NAMES), np.nan)
    if bands is not None and len(bands) == len(BAND_LEVEL_NAMES):
        levels = np.array([_num(v) for v in bands])
    p10, p50, p90 = levels.reshape(_N_REGIONS, len(STATISTICS)).T
    top = np.nanmax(p50) if np.isfinite(p50).any() else math.nan
    scalars = [
        c["quality"] / 100.0,
        math.log10(1.0 + max(c["clicks_per_min"], 0.0)) if math.isfinite(c["clicks_per_min"]) else math.nan,
        math.log10(max(c["clipping_share"], 0.0) + 1e-4) if math.isfinite(c["clipping_share"]) else math.nan,
        c["hum_db"],
        min(c["snr_db"], _SNR_CAP_DB),
        c["noise_floor_dbfs"],
        c["bandwidth_hz"] / 1000.0,
        c["loudness_lufs"],
        c["loudness_range_lu"],
        c["true_peak_dbtp"] - c["loudness_lufs"],
    ]
    prof = columns.get("quality_profile")
    profile = np.full(len(QUALITY_PROFILE_NAMES), np.nan)
    if prof is not None and len(prof) == len(QUALITY_PROFILE_NAMES):
        profile = np.array([_num(v) for v in prof])
    return np.concatenate([scalars, p50 - top, p10 - p50, p90 - p50, profile]).astype(np.float64)


def pair_features(tracks: np.ndarray, audiograms: Sequence[Audiogram]) -> np.ndarray:
    """Model inputs for every (track, audiogram) pair.

    Parameters
    ----------
    tracks : ndarray, shape [n, len(TRACK_FEATURE_NAMES)]
        Rows of :func:`track_features`.
    audiograms : sequence of Audiogram, length m

    Returns
    -------
    ndarray, float64, shape [n, m, len(PAIR_FEATURE_NAMES)]
    """
    tracks = np.atleast_2d(np.asarray(tracks, dtype=np.float64))
    thresholds = np.array([a.thresholds for a in audiograms], dtype=np.float64).reshape(-1, len(AUDIOGRAM_HZ))
    n, m = tracks.shape[0], thresholds.shape[0]
    names = TRACK_FEATURE_NAMES
    level = tracks[:, [names.index(f"{r}_level") for r in _REGIONS[1:]]]
    background = level + tracks[:, [names.index(f"{r}_background") for r in _REGIONS[1:]]]
    out = np.empty((n, m, len(PAIR_FEATURE_NAMES)))
    t = len(names)
    out[:, :, :t] = tracks[:, None, :]
    out[:, :, t: t + 8] = thresholds[None, :, :] / 100.0
    # Levels are relative to the track's loudest region (0 dB); HAAQI plays the music at
    # 65 dB SPL, so what is above threshold is, up to a constant, level - threshold.
    out[:, :, t + 8: t + 16] = (level[:, None, :] - thresholds[None, :, :]) / 100.0
    out[:, :, t + 16: t + 24] = (background[:, None, :] - thresholds[None, :, :]) / 100.0
    return out


@dataclass(frozen=True)
class HaaqiPredictor:
    """The student model: regression trees -> HAAQI 0..1, in numpy.

    Trained with scikit-learn's ``HistGradientBoostingRegressor`` and ``ExtraTreesRegressor``
    (``bench/haaqi/train.py``) and exported as flat node arrays, all trees concatenated; the
    prediction is ``baseline + sum of the leaf values reached``, mapped through the knots
    below and clipped to 0..1. A node sends a sample
    left when its input is <= ``threshold``, and a missing input (NaN) the way training
    found best (``missing_left``).

    Attributes
    ----------
    version : str
        Identifies the weights; stored with every prediction (new weights rescore).
    feature_names : tuple of str
        Input names, in order (:data:`PAIR_FEATURE_NAMES`, or its first part for a model
        trained without the audiogram).
    baseline : float
    roots : ndarray, int64, shape [trees]
        Index of each tree's root in the node arrays.
    feature, threshold, missing_left, left, right, is_leaf, value : ndarray, shape [nodes]
        Node arrays; ``left`` and ``right`` are absolute node indices.
    rank_knots, haaqi_knots : ndarray, float64, shape [k]
        The trees predict a row's rank among the training rows' HAAQI (0..1, ties
        averaged); these knots, the training rows' ranks and HAAQI both sorted, turn a
        predicted rank back into HAAQI (piecewise linear). Empty: the trees predict HAAQI
        itself. Ranks spread the scores crowded near 1 (most rows: damage the listener
        barely hears) evenly, so the trees spend their splits on ordering them (grouped CV
        on the 2040 training rows, SRCC: log(1 - HAAQI + 0.02) 0.873, rank 0.883; at 519
        rows HAAQI itself 0.70 against the log's 0.80).
    """

    version: str
    feature_names: tuple[str, ...]
    baseline: float
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    rank_knots: np.ndarray = field(default_factory=lambda: np.zeros(0))
    haaqi_knots: np.ndarray = field(default_factory=lambda: np.zeros(0))

    _ARRAYS = ("roots", "feature", "threshold", "missing_left", "left", "right", "is_leaf", "value")
    _KNOTS = ("rank_knots", "haaqi_knots")

    def predict_inputs(self, x: np.ndarray) -> np.ndarray:
        """HAAQI for raw inputs ``x`` [..., features] (NaN = missing) -> [...] in 0..1.

        All trees step down together, one level per step: [samples, trees] node indices,
        as many steps as the deepest tree is deep (12 for the shipped weights).
        """
        x = np.asarray(x, dtype=np.float64)
        shape = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        out = np.empty(x.shape[0])
        for start in range(0, x.shape[0], _CHUNK):
            out[start: start + _CHUNK] = self._raw(x[start: start + _CHUNK])
        if len(self.rank_knots):
            out = np.interp(out, self.rank_knots, self.haaqi_knots)
        return np.clip(out, 0.0, 1.0).reshape(shape)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        # Leaves point to themselves, so a tree whose leaves are all reached takes no more
        # steps; trees are walked deepest first, and each step advances only the trees still
        # deeper than it (the boosted trees stop at 12, the forest's go on to ~30).
        roots, deeper, left, right = self._walk
        node = np.broadcast_to(roots, (x.shape[0], len(roots))).copy()
        rows = np.arange(x.shape[0])[:, None]
        for k in deeper:
            at = node[:, :k]
            values = x[rows, self.feature[at]]
            go_left = np.where(np.isnan(values), self.missing_left[at], values <= self.threshold[at])
            node[:, :k] = np.where(go_left, left[at], right[at])
        return self.baseline + self.value[node].sum(axis=1)

    @functools.cached_property
    def _walk(self) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray]:
        """Worked out once per model: the roots, deepest tree first; per step how many trees
        are deeper than it; and the children with leaves pointing to themselves."""
        depths = np.array([self._tree_depth(r) for r in self.roots])
        order = np.argsort(-depths, kind="stable")
        deeper = [int(np.sum(depths > step)) for step in range(int(depths.max(initial=0)))]
        nodes = np.arange(len(self.left))
        return (self.roots[order], deeper, np.where(self.is_leaf, nodes, self.left),
                np.where(self.is_leaf, nodes, self.right))

    def _tree_depth(self, root: int) -> int:
        depth, level = 0, np.array([root])
        while True:
            inner = level[~self.is_leaf[level]]
            if not len(inner):
                return depth
            level = np.concatenate((self.left[inner], self.right[inner]))
            depth += 1

    @property
    def depth(self) -> int:
        """Steps from the roots to the deepest leaf."""
        return len(self._walk[1])

    def predict(self, tracks: np.ndarray, audiograms: Sequence[Audiogram]) -> np.ndarray:
        """Predicted HAAQI, shape [n tracks, m audiograms], from :func:`track_features` rows."""
        x = pair_features(tracks, audiograms)
        return self.predict_inputs(x[..., : len(self.feature_names)])

    @classmethod
    def from_sklearn(cls, model, version: str, feature_names: Sequence[str], *,
                     forest=None, forest_share: float = 0.0,
                     knots: tuple[np.ndarray, np.ndarray] | None = None) -> "HaaqiPredictor":
        """Export fitted scikit-learn trees (numeric inputs only), trained on HAAQI or, with
        ``knots`` (ranks, HAAQI), on the rank those knots turn into HAAQI.

        ``model`` is a ``HistGradientBoostingRegressor`` or a list of them, averaged (their
        trees concatenated, leaf values and baselines divided by their number).
        ``forest``, a fitted ``ExtraTreesRegressor`` or ``RandomForestRegressor``, is
        blended in with weight ``forest_share`` (the boosted models get the rest): its
        trees are appended with their leaf means divided by its number of trees.
        """
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        boosted_share = (1.0 - forest_share) if forest is not None else 1.0
        trees = [_boosted_nodes(tree, boosted_share / len(models))
                 for m in models for (tree,) in m._predictors]
        if forest is not None:
            trees += [_forest_nodes(e.tree_, forest_share / len(forest.estimators_))
                      for e in forest.estimators_]
        parts = {k: [] for k in cls._ARRAYS if k != "roots"}
        roots, offset = [], 0
        for nodes in trees:
            roots.append(offset)
            for k, v in nodes.items():
                parts[k].append(v + offset if k in ("left", "right") else v)
            offset += len(nodes["value"])
        baseline = boosted_share * float(np.mean([np.ravel(m._baseline_prediction)[0] for m in models]))
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        # Leaf values to float32, as the weights file keeps them (half its size; the sum of
        # 1100 leaves moves by ~1e-7).
        arrays["value"] = arrays["value"].astype(np.float32).astype(np.float64)
        ranks, haaqi = knots if knots is not None else (np.zeros(0), np.zeros(0))
        return cls(version, tuple(feature_names), baseline, np.array(roots, dtype=np.int64), **arrays,
                   rank_knots=np.asarray(ranks, dtype=np.float64), haaqi_knots=np.asarray(haaqi, dtype=np.float64))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, version=np.array(self.version), feature_names=np.array(self.feature_names),
                            baseline=np.array(self.baseline),
                            **{k: getattr(self, k) for k in self._KNOTS},
                            **{k: getattr(self, k).astype(_STORED_DTYPES.get(k, getattr(self, k).dtype))
                               for k in self._ARRAYS})

    @classmethod
    def load(cls, path: Path = WEIGHTS_PATH) -> "HaaqiPredictor":
        from models.errors import ModelError

        try:
            data = np.load(path, allow_pickle=False)
            names = tuple(str(n) for n in data["feature_names"])
            arrays = {k: data[k].astype(_DTYPES[k]) for k in cls._ARRAYS}
            version, baseline = str(data["version"]), float(data["baseline"])
            knots = {k: data[k].astype(np.float64) for k in cls._KNOTS}
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"cannot read the hearing model's weights {path}: {exc}") from None
        if names != PAIR_FEATURE_NAMES[: len(names)]:
            raise ModelError(f"{path}: its inputs do not match this engine's; retrain it "
                             "with bench/haaqi/train.py")
        return cls(version, names, baseline, **arrays, **knots)


def _boosted_nodes(tree, scale: float) -> dict[str, np.ndarray]:
    """One ``HistGradientBoostingRegressor`` tree as node arrays (indices from 0)."""
    nodes = tree.nodes
    return {"feature": nodes["feature_idx"].astype(np.int64),
            "threshold": nodes["num_threshold"].astype(np.float64),
            "missing_left": nodes["missing_go_to_left"].astype(bool),
            "left": nodes["left"].astype(np.int64), "right": nodes["right"].astype(np.int64),
            "is_leaf": nodes["is_leaf"].astype(bool),
            "value": nodes["value"].astype(np.float64) * scale}


def _forest_nodes(tree, scale: float) -> dict[str, np.ndarray]:
    """One scikit-learn decision tree (``estimator.tree_``) as node arrays (indices from 0).

    Leaves have no children (-1) and no feature (-2): they get 0, never read, since a leaf
    points to itself in the walk. scikit-learn records where a missing input goes at each
    split (``missing_go_to_left``, scikit-learn >= 1.6 for extra trees).
    """
    leaf = tree.children_left < 0
    return {"feature": np.where(leaf, 0, tree.feature).astype(np.int64),
            "threshold": tree.threshold.astype(np.float64),
            "missing_left": np.asarray(tree.missing_go_to_left, dtype=bool),
            "left": np.where(leaf, 0, tree.children_left).astype(np.int64),
            "right": np.where(leaf, 0, tree.children_right).astype(np.int64),
            "is_leaf": leaf,
            "value": tree.value[:, 0, 0].astype(np.float64) * scale}


@functools.lru_cache(maxsize=1)
def load_predictor() -> HaaqiPredictor:
    """The shipped predictor, loaded once."""
    return HaaqiPredictor.load(WEIGHTS_PATH)
