"""Predicted HAAQI for a listener with hearing loss: a non-intrusive student of the real one.

HAAQI (:mod:`engine.haaqi`) needs the clean reference, which a collection never has.
This model predicts it from what the build stores for every track — the quality measures
(:mod:`engine.quality`), loudness, and the band levels around each audiometric frequency
(:mod:`engine.bands`) — and the listener's 8 audiogram thresholds, in numpy: no decoding,
no model runtime, ≈1 µs per track and listener. It was trained on labels made by the
real HAAQI (``bench/haaqi``: ``make_labels.py`` then ``train.py``, which writes the
weights file shipped here); docs/hearing.md gives the data, the settings and the
accuracy on held-out source tracks.

Inputs, per (track, listener) pair (:func:`pair_features`):

- track: quality score, log click rate, log clipping share, hum prominence, SNR, noise
  floor, bandwidth (kHz), integrated loudness, loudness range, crest (true peak minus
  loudness), and from the band levels: each region's typical level relative to the
  track's loudest region, and its background (p10) and peak (p90) depth about that level;
- listener: the 8 thresholds (dB HL / 100);
- both: per audiometric region, typical and background level minus the threshold
  (what the listener's ear gets of the music and of its background).

Missing values (a measure that was undefined, NULL in the store) take the training
mean. The model is a small ensemble of multilayer perceptrons (ReLU), output clipped to
0..1; the weights file records its version, the input names and the normalisation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from engine.audiogram import AUDIOGRAM_HZ, Audiogram
from engine.bands import BAND_LEVEL_NAMES, STATISTICS

__all__ = [
    "WEIGHTS_PATH",
    "TRACK_COLUMNS",
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
)

_N_REGIONS = len(BAND_LEVEL_NAMES) // len(STATISTICS)  # 'low' + one per audiogram frequency
_REGIONS = tuple(name.rsplit("_", 1)[0] for name in BAND_LEVEL_NAMES[:: len(STATISTICS)])

#: Names of :func:`track_features`' values.
TRACK_FEATURE_NAMES: tuple[str, ...] = (
    "quality", "log_clicks", "log_clipping", "hum_db", "snr_db", "noise_floor_dbfs",
    "bandwidth_khz", "loudness_lufs", "loudness_range_lu", "crest_db",
) + tuple(f"{r}_level" for r in _REGIONS) + tuple(f"{r}_background" for r in _REGIONS) \
    + tuple(f"{r}_peaks" for r in _REGIONS)

#: Names of :func:`pair_features`' values (track, audiogram, then both).
PAIR_FEATURE_NAMES: tuple[str, ...] = TRACK_FEATURE_NAMES + tuple(
    f"threshold_{f}" for f in AUDIOGRAM_HZ) + tuple(
    f"{r}_level_above_threshold" for r in _REGIONS[1:]) + tuple(
    f"{r}_background_above_threshold" for r in _REGIONS[1:])

_SNR_CAP_DB = 80.0  # engine.quality caps SNR at 100; above 80 dB nothing is audible


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
    c = {k: _num(columns.get(k)) for k in TRACK_COLUMNS if k != "band_levels"}
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
    return np.concatenate([scalars, p50 - top, p10 - p50, p90 - p50]).astype(np.float64)


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
    """The student model: standardised inputs -> ensemble of ReLU MLPs -> HAAQI 0..1.

    Attributes
    ----------
    version : str
        Identifies the weights; stored with every prediction (a new version rescores).
    feature_names : tuple of str
        Input names, in order (:data:`PAIR_FEATURE_NAMES`, or its first part for a model
        trained without the audiogram).
    mean, scale : ndarray, shape [features]
        Standardisation; ``mean`` also fills missing inputs.
    layers : tuple of tuple of (W, b) per ensemble member
    """

    version: str
    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...]

    def predict_inputs(self, x: np.ndarray) -> np.ndarray:
        """HAAQI for raw inputs ``x`` [..., features] (NaN = missing) -> [...] in 0..1."""
        x = np.asarray(x, dtype=np.float64)
        shape = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        x = np.where(np.isfinite(x), x, self.mean)
        z = (x - self.mean) / self.scale
        total = np.zeros(z.shape[0])
        for member in self.layers:
            h = z
            for i, (w, b) in enumerate(member):
                h = h @ w + b
                if i < len(member) - 1:
                    np.maximum(h, 0.0, out=h)
            total += h[:, 0]
        return np.clip(total / len(self.layers), 0.0, 1.0).reshape(shape)

    def predict(self, tracks: np.ndarray, audiograms: Sequence[Audiogram]) -> np.ndarray:
        """Predicted HAAQI, shape [n tracks, m audiograms], from :func:`track_features` rows."""
        x = pair_features(tracks, audiograms)
        return self.predict_inputs(x[..., : len(self.feature_names)])

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "version": np.array(self.version),
            "feature_names": np.array(self.feature_names),
            "mean": self.mean,
            "scale": self.scale,
            "members": np.array(len(self.layers)),
        }
        for k, member in enumerate(self.layers):
            arrays[f"m{k}_depth"] = np.array(len(member))
            for i, (w, b) in enumerate(member):
                arrays[f"m{k}_w{i}"] = w.astype(np.float32)
                arrays[f"m{k}_b{i}"] = b.astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path = WEIGHTS_PATH) -> "HaaqiPredictor":
        from models.errors import ModelError

        try:
            data = np.load(path, allow_pickle=False)
        except OSError as exc:
            raise ModelError(f"cannot read the hearing model's weights {path}: {exc}") from None
        names = tuple(str(n) for n in data["feature_names"])
        if names != PAIR_FEATURE_NAMES[: len(names)]:
            raise ModelError(f"{path}: its inputs do not match this engine's; retrain it "
                             "with bench/haaqi/train.py")
        layers = []
        for k in range(int(data["members"])):
            depth = int(data[f"m{k}_depth"])
            layers.append(tuple((data[f"m{k}_w{i}"].astype(np.float64), data[f"m{k}_b{i}"].astype(np.float64))
                                for i in range(depth)))
        return cls(str(data["version"]), names, data["mean"].astype(np.float64),
                   data["scale"].astype(np.float64), tuple(layers))


@functools.lru_cache(maxsize=1)
def load_predictor() -> HaaqiPredictor:
    """The shipped predictor, loaded once."""
    return HaaqiPredictor.load(WEIGHTS_PATH)
