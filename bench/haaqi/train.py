"""Train the HAAQI student (models/hearing.py) from labels.csv and report its accuracy.

Reads the labels (make_labels.py) and the build's features for them (features.py), trains
gradient-boosted trees (scikit-learn; the engine runs them in numpy) on the ``train``
sources, and measures on the held-out ``test`` sources (split by source file, never by
excerpt): Pearson (LCC) and Spearman (SRCC) correlation and mean squared error between
predicted and real HAAQI, overall, per degradation and per audiogram class, against two
baselines: the engine's 0-100 quality score alone (a straight line fitted on the
training rows), and the same model without the audiogram. The model measured is the one
it writes as the shipped weights (unless --no-write), so the figures describe it exactly.

Usage: python bench/haaqi/train.py [--no-write] [--markdown docs/hearing-accuracy.md] [--cv]
Needs bench/requirements-haaqi.txt (scikit-learn).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from features import load_features  # noqa: E402
from make_labels import ROOT, read_labels  # noqa: E402

if str(ROOT) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(ROOT))
from models.audiogram import parse_audiogram  # noqa: E402
from models.hearing import (  # noqa: E402
    PAIR_FEATURE_NAMES, QUALITY_PROFILE_NAMES, TRACK_FEATURE_NAMES, WEIGHTS_PATH, HaaqiPredictor, pair_features,
    track_features,
)

# Chosen by 5-fold CV grouped by source on the 519 training rows (LCC / SRCC): 400 trees
# at 0.05 on HAAQI 0.847 / 0.703; on log(1 - HAAQI + 0.02) 0.864 / 0.800; 200 trees at
# 0.1 on the log 0.870 / 0.801 (half the trees, same accuracy).
# Re-checked with the defect profile on the 931 training rows (`--cv`, LCC / SRCC):
# these settings 0.88 / 0.80; 400 trees at 0.05, 5 or 20 samples per leaf, L2 5, 7 or
# 31 leaves, log offset 0.005-0.05: all within 0.02 of it, none better by more than 0.01.
# (The log target gave way to ranks at the end: see fit.)
# Averaging BAG models, each choosing every split among a random half of the inputs
# (max_features), in the log domain: 0.886 / 0.810 against one model's 0.873 / 0.801
# (seeds 5-9 instead of 0-4: 0.887 / 0.809; 3 models: 0.883 / 0.810).
BAG = 5
# Re-checked on all 2028 planned labels (1560 training rows, `--cv`, LCC / SRCC / MSE):
# 15 leaves 0.902 / 0.852 / 0.0079; 31 leaves 0.914 / 0.857 / 0.0072 (taken); 63 leaves
# 0.912 / 0.854; 400 trees at 0.05 0.903 / 0.855; 20 samples per leaf 0.899 / 0.856;
# 31 leaves with 5 per leaf, 300 trees or max_features 0.7: within 0.003 of 31 leaves.
PARAMS = dict(max_iter=200, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=10,
              l2_regularization=1.0, early_stopping=False, max_features=0.5)
# Blended with the boosted models (same target), half and half: extremely randomised
# trees (scikit-learn's ExtraTreesRegressor), grown deep on all inputs. Boosting fits the
# large damage well, the averaged random splits rank the crowd near the ceiling better.
# Grouped CV on the 2040 training rows (LCC / SRCC / MSE): boosted alone 0.915 / 0.863 /
# 0.0070; with the forest 0.921 / 0.873 / 0.0071. Forest share 0.4 / 0.6: SRCC 0.872 /
# 0.874; 3 or 5 samples per leaf within 0.001; half the inputs per split 0.869; a random
# forest (bootstrap, best splits) instead 0.865; 300 trees no better than 100.
FOREST = dict(n_estimators=100, min_samples_leaf=3, max_features=1.0, random_state=0)
FOREST_SHARE = 0.5
RECIPE = 3  # raise with any change above, so that stores rescore (the labels alone may not change)


def dataset():
    """Rows with labels and features: inputs [N, features], HAAQI [N], and row info."""
    table = load_features()
    rows = [r for r in read_labels() if np.isfinite(r.haaqi) and r.row_id in table]
    tracks = np.array([track_features(table[r.row_id][0]) for r in rows])
    audiograms = [parse_audiogram(r.audiogram) for r in rows]
    x = np.stack([pair_features(t[None, :], [a])[0, 0] for t, a in zip(tracks, audiograms)])
    y = np.array([r.haaqi for r in rows])
    return rows, audiograms, x, y


def fit(x: np.ndarray, y: np.ndarray, names: tuple[str, ...] = PAIR_FEATURE_NAMES,
        version: str = "dev") -> HaaqiPredictor:
    """Regression trees (scikit-learn) on HAAQI's rank, exported for the engine's numpy evaluator.

    Chosen over an ensemble of small MLPs by 5-fold cross-validation grouped by source on
    the training rows (334 rows: LCC 0.84 against 0.64); missing inputs (NaN) are
    handled by the trees themselves. BAG boosted models with different seeds are averaged,
    then blended with a forest of extremely randomised trees (FOREST_SHARE).
    """
    from scipy.stats import rankdata
    from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor

    # The trees fit each training row's rank among the training rows' HAAQI (0..1, ties
    # averaged) instead of log(1 - HAAQI + 0.02); the exported model maps a predicted rank
    # back to HAAQI through the sorted training ranks and scores. Grouped CV on the 2040
    # training rows (LCC / SRCC / MSE), the blend: log 0.921 / 0.873 / 0.0071, rank 0.920 /
    # 0.883 / 0.0072 (with seeds +7: log 0.922 / 0.871, rank 0.918 / 0.882); logit of HAAQI
    # 0.925 / 0.874 / 0.0064. SRCC is the goal that was short; LCC has room.
    target = rankdata(y) / len(y)
    knots = (np.sort(target), np.sort(y))
    models = [HistGradientBoostingRegressor(**PARAMS, random_state=seed).fit(x, target) for seed in range(BAG)]
    forest = ExtraTreesRegressor(**FOREST, n_jobs=-1).fit(x, target)
    exported = HaaqiPredictor.from_sklearn(models, version, names, forest=forest,
                                           forest_share=FOREST_SHARE, knots=knots)
    raw = ((1.0 - FOREST_SHARE) * np.mean([m.predict(x[:200]) for m in models], axis=0)
           + FOREST_SHARE * forest.predict(x[:200]))
    check = np.clip(np.interp(raw, *knots), 0.0, 1.0)
    # 1e-6: the exported leaf values are float32 (models/hearing.py).
    assert np.allclose(exported.predict_inputs(x[:200]), check, atol=1e-6), "export differs from sklearn"
    return exported


def cross_validate(rows, x: np.ndarray, y: np.ndarray) -> None:
    """Out-of-fold LCC / SRCC on the training rows (5 folds grouped by source), overall and
    per degradation, for the model with and without the defect profile's inputs."""
    from sklearn.model_selection import GroupKFold

    train = np.array([r.split == "train" for r in rows])
    xt, yt = x[train], y[train]
    groups = np.array([r.source for r in rows])[train]
    kinds = np.array([r.kind for r in rows])[train]
    profile = [PAIR_FEATURE_NAMES.index(n) for n in QUALITY_PROFILE_NAMES]
    variants = {"student": list(range(x.shape[1])),
                "without the defect profile": [i for i in range(x.shape[1]) if i not in profile]}
    for name, cols in variants.items():
        pred = np.empty(len(yt))
        for fit_idx, held in GroupKFold(5).split(xt, yt, groups):
            model = fit(xt[fit_idx][:, cols], yt[fit_idx], names=tuple(PAIR_FEATURE_NAMES[i] for i in cols))
            pred[held] = model.predict_inputs(xt[held][:, cols])
        lcc, srcc, mse, n = metrics(pred, yt)
        per_kind = ", ".join(f"{k} {metrics(pred[kinds == k], yt[kinds == k])[0]:.2f}"
                             for k in sorted(set(kinds)) if k != "clean")
        print(f"{name}: {n} rows, LCC {lcc:.3f}, SRCC {srcc:.3f}, MSE {mse:.4f}; LCC per kind: {per_kind}")


def metrics(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float, int]:
    from scipy.stats import pearsonr, spearmanr

    if len(y) < 3 or np.std(pred) == 0 or np.std(y) == 0:
        return float("nan"), float("nan"), float(np.mean((pred - y) ** 2)) if len(y) else float("nan"), len(y)
    return (float(pearsonr(pred, y)[0]), float(spearmanr(pred, y)[0]),
            float(np.mean((pred - y) ** 2)), len(y))


def report(rows, audiograms, y, preds: dict[str, np.ndarray], test: np.ndarray) -> str:
    degraded = test & np.array([r.kind != "clean" for r in rows])
    groups: dict[str, dict[str, np.ndarray]] = {"all": {"all": test, "degraded": degraded}}
    kinds, classes = defaultdict(list), defaultdict(list)
    for i in np.flatnonzero(test):
        kinds[rows[i].kind].append(i)
        classes[audiograms[i].label].append(i)
    groups["degradation"] = {k: np.array(v) for k, v in sorted(kinds.items())}
    groups["audiogram class"] = {k: np.array(v) for k, v in sorted(classes.items())}
    names = list(preds)
    lines = ["| group | n | " + " | ".join(f"{n} LCC / SRCC / MSE" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for title, members in groups.items():
        for label, idx in members.items():
            cells = []
            n = 0
            for name in names:
                lcc, srcc, mse, n = metrics(preds[name][idx], y[idx])
                cells.append(f"{lcc:.3f} / {srcc:.3f} / {mse:.4f}")
            head = {"all": "**all test rows**", "degraded": "all but the clean excerpts"}.get(
                label, f"{title}: {label}") if title == "all" else f"{title}: {label}"
            lines.append(f"| {head} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--markdown", type=Path, help="also write the report table here")
    ap.add_argument("--cv", action="store_true",
                    help="only cross-validate on the training rows (5 folds grouped by source), "
                    "with and without the defect profile; no test row is used")
    args = ap.parse_args()

    rows, audiograms, x, y = dataset()
    if args.cv:
        cross_validate(rows, x, y)
        return
    test = np.array([r.split == "test" for r in rows])
    train = ~test
    print(f"{len(rows)} rows: {train.sum()} train ({len({r.source for r in rows if r.split == 'train'})} "
          f"sources), {test.sum()} test ({len({r.source for r in rows if r.split == 'test'})} sources)",
          file=sys.stderr)
    t0 = time.process_time()
    full = fit(x[train], y[train])
    n_track = len(TRACK_FEATURE_NAMES)
    deaf = fit(x[train][:, :n_track], y[train], names=TRACK_FEATURE_NAMES)
    q = x[:, PAIR_FEATURE_NAMES.index("quality")]
    ok = train & np.isfinite(q)
    slope, intercept = np.polyfit(q[ok], y[ok], 1)
    preds = {
        "student": full.predict_inputs(x),
        "without audiogram": deaf.predict_inputs(x[:, :n_track]),
        "quality score alone": np.clip(slope * np.nan_to_num(q, nan=np.nanmean(q)) + intercept, 0, 1),
    }
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(y[train]).tobytes()).hexdigest()[:8]
    # The version names the labels (their number and digest) and the model's recipe
    # (RECIPE): stores rescore every listener when it changes.
    version = f"haaqi-student-{RECIPE}-{int(train.sum())}-{digest}"
    table = report(rows, audiograms, y, preds, test)
    print(table)
    print(f"\ntrained in {time.process_time() - t0:.0f} CPU-s", file=sys.stderr)
    if args.markdown:
        n_sources = {split: len({r.source for r in rows if r.split == split}) for split in ("train", "test")}
        args.markdown.write_text(
            "# Hearing-loss quality predictor: accuracy on held-out sources\n\n"
            "Written by `python bench/haaqi/train.py --markdown docs/hearing-accuracy.md` (see "
            "[hearing.md](hearing.md)). Real HAAQI (`engine/haaqi.py`) against the prediction on the "
            f"test rows: {int(test.sum())} rows from {n_sources['test']} source files never seen in "
            f"training ({int(train.sum())} rows from {n_sources['train']} files). LCC: Pearson, SRCC: "
            "Spearman correlation, MSE: mean squared error (HAAQI 0-1). Baselines: the engine's "
            "0-100 quality score alone (a straight line fitted on the training rows), and the "
            "same model without the audiogram. Classes: WHO grade of the pure-tone average "
            "(500-4k Hz) and flat/sloping (models/audiogram.py).\n\n"
            f"Model version `{version}`.\n\n" + table + "\n")
    if not args.no_write:
        final = dataclasses.replace(full, version=version)
        final.save(WEIGHTS_PATH)
        print(f"wrote {WEIGHTS_PATH} (version {final.version}, trained on the {int(train.sum())} "
              "train rows)", file=sys.stderr)


if __name__ == "__main__":
    main()
