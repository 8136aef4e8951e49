"""Build speed: `engine build` against a reference pipeline, same files, same run.

Two references, one track at a time in this process (essentia-tensorflow):

* fair (:class:`FairReference`): what a careful user writes. Every model is loaded once;
  it computes what the engine stores where Essentia has it: MusiCNN embeddings and MSD
  tags from one MusiCNN pass, emoMusic, MIREX moods, TempoCNN, RhythmExtractor2013
  multifeature, KeyExtractor x3, LoudnessEBUR128 on a stereo reload, Danceability.
* old (:func:`reference_old`): the first reference, which builds every TensorFlow model
  anew for each track and runs MusiCNN twice (kept so the old ratio stays comparable).

`engine build` runs as a subprocess on the same files into a fresh store. Printed:
wall seconds and CPU-seconds per track for each (CPU of the engine = its process and all
its workers), the ratios, peak RSS of the engine's process tree, the engine's per-stage
CPU table (what a new model or feature must fit in), and parity with the fair reference
(MusiCNN cosine, keys, loudness; EBU test signals against their specified loudness).
Wall figures depend on other load on the machine: each phase prints the load average.

Usage::

    python bench/build_speed.py [--files N] [--workers W] [--threads T] [--no-old]
    python bench/build_speed.py --folder DIR --no-reference   # engine only, e.g. a MusAV-sized collection

Needs essentia-tensorflow (the test extra) for the references.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))
MODELS = SHARED / "models"
AUDIO_EXT = {".ogg", ".mp3", ".flac", ".m4a", ".wav", ".opus"}


def corpus_files(n: int) -> list[Path]:
    files = sorted(p for p in (SHARED / "corpus" / "library").rglob("*") if p.suffix in AUDIO_EXT)
    files += sorted(p for p in (SHARED / "corpus" / "rendered").rglob("*") if p.suffix in AUDIO_EXT)
    return files[:n]


class FairReference:
    """The reference a careful user writes: every model loaded once, one track at a time.

    Same outputs as the engine where the engine computes more: MusiCNN embeddings and
    MSD tags from one MusiCNN pass (the tag layer is fed the embeddings, exact to 0.0),
    emoMusic and MIREX moods heads, TempoCNN, RhythmExtractor2013 multifeature,
    KeyExtractor x3, LoudnessEBUR128 (integrated + range) on a stereo reload,
    Danceability. Not in it (the engine computes them on top, so the ratio is
    conservative): true peak, the quality measures and the MagnaTagATune MusiCNN (the
    engine converts the `musicnn` package's checkpoint; Essentia's wrappers cannot run it).
    """

    def __init__(self):
        import essentia.standard as es

        self.es = es
        g = lambda name: str(MODELS / name)  # noqa: E731
        self.musicnn = es.TensorflowPredictMusiCNN(
            graphFilename=g("msd-musicnn-1.pb"), output="model/dense/BiasAdd")
        self.msd_tags = es.TensorflowPredict2D(
            graphFilename=g("msd-musicnn-1.pb"), input="model/dense/BiasAdd",
            output="model/Sigmoid", isTrainingName="model/Placeholder_1", dimensions=200)
        self.emomusic = es.TensorflowPredict2D(
            graphFilename=g("emomusic-msd-musicnn-2.pb"), output="model/Identity")
        self.moods = es.TensorflowPredict2D(
            graphFilename=g("moods_mirex-msd-musicnn-1.pb"),
            input="serving_default_model_Placeholder", output="PartitionedCall")
        self.tempocnn = es.TempoCNN(graphFilename=g("deeptemp-k16-3.pb"))
        self.rhythm = es.RhythmExtractor2013(method="multifeature")
        self.keys = {p: es.KeyExtractor(profileType=p) for p in ("temperley", "krumhansl", "edma")}
        self.loudness: dict[float, object] = {}
        self.danceability = es.Danceability()
        self.to_11k = es.Resample(inputSampleRate=44100, outputSampleRate=11025, quality=4)

    def __call__(self, path: Path) -> dict:
        es = self.es
        audio16 = es.MonoLoader(filename=str(path), sampleRate=16000, resampleQuality=4)()
        emb = self.musicnn(audio16)
        if len(emb) == 0:  # shorter than one patch (3 s): no model outputs, as in the engine
            emb, tags = np.zeros((1, 200), np.float32), np.zeros((1, 50), np.float32)
            emo, moods = np.full((1, 2), np.nan), np.full((1, 5), np.nan)
        else:
            tags, emo, moods = self.msd_tags(emb), self.emomusic(emb), self.moods(emb)
        audio = es.MonoLoader(filename=str(path))()
        audio11 = self.to_11k(audio)
        bpm_cnn = float(self.tempocnn(audio11)[0]) if len(audio11) else 0.0
        bpm, _, confidence, _, _ = self.rhythm(audio)
        keys = {p: k(audio)[:2] for p, k in self.keys.items()}
        stereo, sr, _, _, _, _ = es.AudioLoader(filename=str(path))()
        if stereo.shape[1] == 1:
            stereo = np.repeat(stereo, 2, axis=1)
        if sr not in self.loudness:
            self.loudness[sr] = es.LoudnessEBUR128(sampleRate=sr)
        _, _, integrated, lra = self.loudness[sr](stereo)
        dance, _ = self.danceability(audio)
        return _ref_result(emb, tags, emo, moods, bpm, keys, integrated, dance, bpm_cnn)


def reference_old(path: Path) -> dict:
    """The first reference: every TensorFlow model built anew per track, MusiCNN run twice."""
    import essentia.standard as es

    audio16 = es.MonoLoader(filename=str(path), sampleRate=16000, resampleQuality=4)()
    emb = es.TensorflowPredictMusiCNN(
        graphFilename=str(MODELS / "msd-musicnn-1.pb"), output="model/dense/BiasAdd"
    )(audio16)
    tags = es.TensorflowPredictMusiCNN(graphFilename=str(MODELS / "msd-musicnn-1.pb"))(audio16)
    if len(emb) == 0:
        emb, tags = np.zeros((1, 200), np.float32), np.zeros((1, 50), np.float32)
        emo, moods = np.full((1, 2), np.nan), np.full((1, 5), np.nan)
    else:
        emo = es.TensorflowPredict2D(
            graphFilename=str(MODELS / "emomusic-msd-musicnn-2.pb"), output="model/Identity"
        )(emb)
        moods = es.TensorflowPredict2D(
            graphFilename=str(MODELS / "moods_mirex-msd-musicnn-1.pb"),
            input="serving_default_model_Placeholder",
            output="PartitionedCall",
        )(emb)
    audio = es.MonoLoader(filename=str(path))()
    bpm, _, confidence, _, _ = es.RhythmExtractor2013(method="multifeature")(audio)
    keys = {p: es.KeyExtractor(profileType=p)(audio)[:2] for p in ("temperley", "krumhansl", "edma")}
    stereo, sr, _, _, _, _ = es.AudioLoader(filename=str(path))()
    if stereo.shape[1] == 1:
        stereo = np.repeat(stereo, 2, axis=1)
    _, _, integrated, lra = es.LoudnessEBUR128(sampleRate=sr)(stereo)
    dance, _ = es.Danceability()(audio)
    return _ref_result(emb, tags, emo, moods, bpm, keys, integrated, dance, None)


def _ref_result(emb, tags, emo, moods, bpm, keys, integrated, dance, bpm_cnn) -> dict:
    return {
        "embedding": np.mean(emb, axis=0),
        "tags": np.mean(tags, axis=0),
        "valence": float(np.mean(emo, axis=0)[0]),
        "arousal": float(np.mean(emo, axis=0)[1]),
        "moods": np.mean(moods, axis=0),
        "bpm": float(bpm),
        "bpm_tempocnn": bpm_cnn,
        "keys": {p: (k, s) for p, (k, s) in keys.items()},
        "lufs": float(integrated),
        "danceability": float(dance),
    }


def time_reference(files: list[Path], fn) -> tuple[dict, float, float]:
    """Run ``fn`` over ``files``; returns (results by path, wall s, CPU s of this process)."""
    refs = {}
    c0, t0 = time.process_time(), time.perf_counter()
    for f in files:
        refs[str(f)] = fn(f)
    return refs, time.perf_counter() - t0, time.process_time() - c0


class TreeRss:
    """Samples the summed RSS of a process and all its descendants (Linux /proc)."""

    def __init__(self, pid: int, every: float = 0.1):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(self.pid))
            time.sleep(self.every)


def _tree_rss(pid: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid = int(fields[1])
            rss[int(d)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            children.setdefault(ppid, []).append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


@dataclass
class EngineRun:
    wall_s: float
    cpu_s: float  # the engine process and all its workers
    peak_rss: int
    stages: dict[str, float]  # CPU-seconds per stage, summed over workers


def run_engine(files: list[Path], store: Path, workers: int, threads: int) -> EngineRun:
    """Run `engine build` over a folder of links to ``files``."""
    music = store.parent / "music"
    music.mkdir()
    for i, f in enumerate(files):
        (music / f"{i:04d}{f.suffix}").symlink_to(f)
    env = dict(os.environ, ENGINE_MODELS=str(MODELS), ENGINE_OFFLINE="1")
    cmd = [sys.executable, "-m", "engine.cli", "build", str(music), "--store", str(store), "-q"]
    for flag, value in (("--workers", workers), ("--threads", threads)):
        if value:  # 0: the engine's own default (one per core)
            cmd += [flag, str(value)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    with TreeRss(proc.pid) as rss:
        _, err = proc.communicate()
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"engine build failed:\n{err}")
    if err.strip():
        print(err.strip())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stages = json.loads(subprocess.run(
        [sys.executable, "-c",
         "import duckdb,sys;c=duckdb.connect(sys.argv[1],read_only=True);"
         "print(c.execute(\"select value from meta where key='last_build_stages'\").fetchone()[0])",
         str(store / "engine.duckdb")], capture_output=True, text=True).stdout or "{}")
    return EngineRun(seconds, cpu, rss.peak, stages)


def compare(files: list[Path], refs: dict, store: Path) -> dict[str, bool]:
    """Agreement of the engine's store with the fair reference, track by track.

    Returns the issue's parity goals that this comparison can judge: MusiCNN cosine and
    keys (loudness is judged on the EBU signals, tempo by bench/tempo_accuracy.py).
    """
    import duckdb

    con = duckdb.connect(str(store / "engine.duckdb"), read_only=True)
    music = store.parent / "music"
    cos, key_same, key_total, bpm_ok, lufs_err, av_err = [], 0, 0, 0, [], []
    for i, f in enumerate(files):
        path = os.path.abspath(music / f"{i:04d}{f.suffix}")
        row = con.execute(
            "SELECT t.bpm, t.key_temperley, t.scale_temperley, t.key_krumhansl, t.scale_krumhansl, "
            "t.key_edma, t.scale_edma, t.loudness_lufs, t.arousal, t.valence, e.vector "
            "FROM tracks t LEFT JOIN embeddings e ON e.track_id = t.track_id AND e.space = 'musicnn' "
            "WHERE t.path = ?",
            [path],
        ).fetchone()
        if row is None:
            print(f"  missing from store: {f}")
            continue
        ref = refs[str(f)]
        if not np.any(ref["embedding"]) or row[10] is None:
            both = row[10] is None and not np.any(ref["embedding"])
            print(f"  {'(no MusiCNN embedding in either: shorter than one patch)' if both else 'MusiCNN embedding in one pipeline only:'} {f}")
            continue
        v = np.asarray(row[10])
        cos.append(float(v @ ref["embedding"] / np.linalg.norm(v) / np.linalg.norm(ref["embedding"])))
        for j, p in enumerate(("temperley", "krumhansl", "edma")):
            key_total += 1
            key_same += (row[1 + 2 * j], row[2 + 2 * j]) == ref["keys"][p]
        bpm_ok += row[0] is not None and abs(row[0] - ref["bpm"]) <= 0.04 * ref["bpm"]
        lufs_err.append(abs(row[7] - ref["lufs"]))
        av_err.append(max(abs(row[8] - ref["arousal"]), abs(row[9] - ref["valence"])))
    con.close()
    print(f"parity with the fair reference over {len(cos)} tracks:")
    print(f"  MusiCNN mean-embedding cosine: min {min(cos):.5f}, median {np.median(cos):.5f}"
          f"  (goal >= 0.999)")
    print(f"  keys identical: {key_same}/{key_total}  (goal: all)")
    print(f"  loudness |diff| LU: max {max(lufs_err):.3f}")
    print(f"  arousal/valence |diff|: max {max(av_err):.4f}")
    print(f"  BPM within 4 % of RhythmExtractor2013's: {bpm_ok}/{len(cos)}"
          "  (information only: tempo is judged by bench/tempo_accuracy.py)")
    return {"MusiCNN cosine >= 0.999": min(cos) >= 0.999, "keys identical": key_same == key_total}


def ebu_loudness_check() -> float:
    """Largest |engine - EBU expected| integrated loudness over the EBU test signals [LU]."""
    import csv

    from engine.decode import decode
    from engine.descriptors import loudness

    folder = SHARED / "corpus" / "loudness"
    worst = 0.0
    for row in csv.DictReader(open(folder / "expected_loudness.csv", newline="")):
        if not row["expected_integrated_lufs"]:
            continue  # a loudness-range-only signal
        audio = decode(folder / row["file"], max_seconds=None)
        got = loudness(audio.mono if audio.facts.channels == 1 else audio.stereo).integrated_lufs
        worst = max(worst, abs(got - float(row["expected_integrated_lufs"])))
    return worst


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--folder", type=Path, help="build this folder's audio files instead of the corpus sample")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-old", action="store_true", help="skip the old (models rebuilt per track) reference")
    ap.add_argument("--no-reference", action="store_true",
                    help="engine only (e.g. for a large --folder); prints the stage table")
    args = ap.parse_args()
    files = folder_files(args.folder) if args.folder else corpus_files(args.files)
    n = len(files)
    print(f"{n} files ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB); {load_average()}")
    refs: dict = {}
    timings: dict[str, tuple[float, float]] = {}
    if not args.no_reference:
        import essentia

        essentia.log.infoActive = False
        essentia.log.warningActive = False  # the reused RhythmExtractor2013 warns per frame
        c0, t0 = time.process_time(), time.perf_counter()
        fair = FairReference()
        load = (time.perf_counter() - t0, time.process_time() - c0)
        refs, wall, cpu = time_reference(files, fair)
        timings["reference (fair)"] = (wall + load[0], cpu + load[1])
        print(f"fair reference: {wall + load[0]:.1f} s incl. {load[0]:.1f} s model loading; {load_average()}")
        if not args.no_old:
            _, wall, cpu = time_reference(files, reference_old)
            timings["reference (old)"] = (wall, cpu)
            print(f"old reference: {wall:.1f} s; {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        eng = run_engine(files, store, args.workers, args.threads)
        timings["engine build"] = (eng.wall_s, eng.cpu_s)
        print(f"engine build: {eng.wall_s:.1f} s; {load_average()}\n")
        print(f"{'':18s} {'wall s/track':>13s} {'CPU-s/track':>12s}")
        for name, (wall, cpu) in timings.items():
            print(f"{name:18s} {wall / n:13.3f} {cpu / n:12.3f}")
        print("(the engine's figures include start-up and model loading; the fair reference's"
              " include its model loading)")
        for name in ("reference (fair)", "reference (old)"):
            if name in timings:
                print(f"speed-up vs {name}: {timings[name][0] / eng.wall_s:.2f}x wall,"
                      f" {timings[name][1] / eng.cpu_s:.2f}x CPU")
        print(f"peak RSS of the engine's process tree: {eng.peak_rss / 2**20:.0f} MiB (goal <= 1536)")
        print_stage_table(eng.stages, n)
        if eng.stages:
            # Start-up (imports in every worker, model sessions) and the main process's
            # bookkeeping: a fixed cost that a 40-file run spreads over few tracks.
            print(f"  {'outside stages':<14} {(eng.cpu_s - sum(eng.stages.values())) / n:6.3f}"
                  f"  ({eng.cpu_s - sum(eng.stages.values()):.1f} CPU-s in all: start-up, imports, scheduling)")
        if refs:
            goals = compare(files, refs, store)
            ebu = ebu_loudness_check()
            print(f"  EBU test signals, engine loudness: max |error| {ebu:.3f} LU (goal <= 0.1)")
            goals["EBU loudness within 0.1 LU"] = ebu <= 0.1
            goals["peak RSS <= 1.5 GB"] = eng.peak_rss <= 1536 * 2**20
            # The issue's own ratio is wall time on a quiet machine (2.32 vs 0.85 s per
            # track); under other load only the CPU ratio is comparable between runs, so
            # it is printed beside the goals, for comparing runs.
            goals["5x the fair reference (wall)"] = timings["reference (fair)"][0] / eng.wall_s >= 5.0
            print("goals: " + "; ".join(f"{k}: {'met' if ok else 'NOT met'}" for k, ok in goals.items()))
            print(f"(not a goal: CPU ratio {timings['reference (fair)'][1] / eng.cpu_s:.2f}x; the fair"
                  " reference keeps about 1.4 cores busy, the engine both)")


def print_stage_table(stages: dict[str, float], n: int) -> None:
    """Per-stage CPU-seconds per track, largest first (what a new model or feature must fit in)."""
    if not stages:
        return
    print("engine stage CPU-seconds per track (summed over workers):")
    total = sum(stages.values())
    for k, v in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<14} {v / n:6.3f}  {100 * v / total:4.1f} %")
    print(f"  {'total':<14} {total / n:6.3f}")


def folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXT)


if __name__ == "__main__":
    main()
