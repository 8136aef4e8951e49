"""``engine quality --reference``: the real HAAQI of one file against its clean reference,
beside what the non-intrusive predictor says from the test file alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError
from engine.haaqi import HaaqiResult
from models.audiogram import Audiogram

__all__ = ["Comparison", "compare_files", "predicted_haaqi"]


@dataclass(frozen=True)
class Comparison:
    """HAAQI of ``test`` against ``reference`` over ``seconds``, and the prediction."""

    reference: Path
    test: Path
    audiogram: Audiogram
    seconds: float
    haaqi: HaaqiResult
    predicted: float | None  # None when the test file has nothing the predictor can read


def predicted_haaqi(path: Path, audiogram: Audiogram, *, max_seconds: float | None = None) -> float | None:
    """The predictor's HAAQI for one file, from the build's own per-file analysis."""
    import numpy as np

    from engine.analysis import AnalysisTask, analyse_file
    from engine.modelstage import ModelOutputs
    from engine.records import build_record
    from engine.workers import StageError
    from models.hearing import load_predictor, track_features

    task = AnalysisTask(str(path), path.stat().st_size, 0, "", tempocnn=False, max_seconds=max_seconds)
    try:
        analysis = analyse_file(task)
    except StageError as exc:
        raise EngineError(f"cannot analyse {path}: {exc}") from None
    columns = build_record(analysis, ModelOutputs(), {}).columns
    if columns.get("band_levels") is None or not np.isfinite(columns["band_levels"]).any():
        return None
    return float(load_predictor().predict(track_features(columns)[None, :], [audiogram])[0, 0])


def compare_files(reference: Path, test: Path, audiogram: Audiogram, *, seconds: float = 30.0) -> Comparison:
    """Decode the first ``seconds`` of both files and run the real HAAQI (needs pyclarity).

    Raises
    ------
    engine.haaqi.HaaqiUnavailable
        pyclarity is not installed (the message gives the install command).
    EngineError
        A file cannot be decoded, or HAAQI cannot compare them (e.g. a silent reference).
    """
    from engine.analysis import quiet_native_logs
    from engine.decode import decode
    from engine.haaqi import require_clarity, haaqi

    require_clarity()  # fail early, before decoding, when pyclarity is missing
    quiet_native_logs()
    ref = decode(reference, max_seconds=seconds)
    tst = decode(test, max_seconds=seconds)
    try:
        result = haaqi(ref.stereo, tst.stereo, audiogram)
    except ValueError as exc:
        raise EngineError(f"cannot compare {test} with {reference}: {exc}") from None
    predicted = predicted_haaqi(test, audiogram, max_seconds=seconds)
    return Comparison(reference, test, audiogram, min(ref.analysed_seconds, tst.analysed_seconds),
                      result, predicted)
