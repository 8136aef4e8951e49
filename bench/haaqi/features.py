"""The student's inputs for every labelled row, computed the way ``engine build`` does.

Each row's degraded excerpt (re-made from ``labels.csv``, see make_labels.py) is written
to a temporary float WAV and analysed by the build's own per-file analysis
(:func:`engine.analysis.analyse_file`: quality measures, loudness, band levels) and its
MusiCNN model stage, then turned into a store record (:func:`engine.records.build_record`)
— so training sees exactly the columns a collection's tracks get. The result is cached
in ``features.pkl`` beside this script (not committed; re-made in ≈0.5 CPU-s per row),
and the run is resumable.

Usage: python bench/haaqi/features.py   (needs the MusiCNN model: ENGINE_MODELS, or
../shared/models by default)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_labels import ROOT, Row, excerpt_signals, read_labels  # noqa: E402

FEATURES = HERE / "features.pkl"
os.environ.setdefault("ENGINE_MODELS", str(ROOT.parent / "shared" / "models"))
os.environ.setdefault("ENGINE_OFFLINE", "1")


def write_wav(path: Path, stereo: np.ndarray, sample_rate: int = 44100) -> None:
    """Float32 stereo WAV through PyAV (the build decodes it back bit-exactly)."""
    import av

    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_f32le", rate=sample_rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo.T, dtype=np.float32),
                                           format="fltp", layout="stereo")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def analyse_rows(rows: list[Row], stage, folder: Path) -> list[tuple[dict, np.ndarray | None]]:
    """(tracks columns, MusiCNN mean embedding or None) per row, as a build stores them."""
    from engine.analysis import AnalysisTask, analyse_file
    from engine.records import build_record

    analyses = []
    for row in rows:
        _, degraded = excerpt_signals(row)
        path = folder / f"row{row.row_id}.wav"
        write_wav(path, degraded)
        task = AnalysisTask(str(path), path.stat().st_size, 0, f"row{row.row_id}", tempocnn=False)
        analyses.append(analyse_file(task))
        path.unlink()
    out = []
    for a, m in zip(analyses, stage.run(analyses)):
        rec = build_record(a, m, stage.labels)
        out.append((rec.columns, rec.embeddings.get("musicnn")))
    return out


def load_features(path: Path = FEATURES) -> dict[int, tuple[dict, np.ndarray | None]]:
    import pickle

    if not path.is_file():
        return {}
    with path.open("rb") as f:
        return pickle.load(f)


def _save(table: dict, path: Path = FEATURES) -> None:
    import pickle

    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(table, f)
    tmp.replace(path)


def main() -> None:
    from engine.modelstage import ModelStage
    from models.inference import RuntimeOptions

    rows = [r for r in read_labels() if np.isfinite(r.haaqi)]
    table = load_features()
    todo = [r for r in rows if r.row_id not in table]
    print(f"{len(rows)} labelled rows, {len(table)} with features, {len(todo)} to do", file=sys.stderr)
    if not todo:
        return
    stage = ModelStage(RuntimeOptions.from_env(threads=1), spaces=("musicnn",))
    if "musicnn" not in stage.spaces:
        sys.exit("the MusiCNN model is missing: set ENGINE_MODELS to a folder holding msd-musicnn-1.pb")
    t0 = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        for start in range(0, len(todo), 16):
            batch = todo[start: start + 16]
            for row, value in zip(batch, analyse_rows(batch, stage, Path(tmp))):
                table[row.row_id] = value
            _save(table)
            print(f"{start + len(batch)}/{len(todo)} rows, {time.process_time() - t0:.0f} CPU-s",
                  file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
