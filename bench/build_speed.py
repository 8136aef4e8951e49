"""Build speed: `engine build` against a straightforward reference pipeline, same files, same run.

The reference is the pipeline the seed assignment describes, written the obvious
way: one process, one track at a time, essentia-tensorflow for MusiCNN and its
heads, RhythmExtractor2013, three KeyExtractor runs, LoudnessEBUR128 on a stereo
reload, Danceability. `engine build` runs as a subprocess on the same files into a
fresh store. Printed: seconds per track for both, the ratio, the engine's per-stage
breakdown (CPU-seconds summed over workers), peak RSS of the engine's whole process
tree, and the output agreement (mean-embedding cosine, keys, BPM).

Usage: python bench/build_speed.py [--files N] [--workers W] [--threads T]
Needs essentia-tensorflow (the README's install command puts it in place).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))
MODELS = SHARED / "models"
AUDIO_EXT = {".ogg", ".mp3", ".flac", ".m4a", ".wav"}


def corpus_files(n: int) -> list[Path]:
    files = sorted(p for p in (SHARED / "corpus" / "library").rglob("*") if p.suffix in AUDIO_EXT)
    files += sorted(p for p in (SHARED / "corpus" / "rendered").rglob("*") if p.suffix in AUDIO_EXT)
    return files[:n]


def reference(path: Path) -> dict:
    """The straightforward pipeline, one track."""
    import essentia.standard as es

    audio16 = es.MonoLoader(filename=str(path), sampleRate=16000, resampleQuality=4)()
    emb = es.TensorflowPredictMusiCNN(
        graphFilename=str(MODELS / "msd-musicnn-1.pb"), output="model/dense/BiasAdd"
    )(audio16)
    tags = es.TensorflowPredictMusiCNN(graphFilename=str(MODELS / "msd-musicnn-1.pb"))(audio16)
    if len(emb) == 0:  # shorter than one patch (3 s): no model outputs, as in the engine
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
    return {
        "embedding": np.mean(emb, axis=0),
        "tags": np.mean(tags, axis=0),
        "valence": float(np.mean(emo, axis=0)[0]),
        "arousal": float(np.mean(emo, axis=0)[1]),
        "moods": np.mean(moods, axis=0),
        "bpm": float(bpm),
        "keys": {p: (k, s) for p, (k, s) in keys.items()},
        "lufs": float(integrated),
        "danceability": float(dance),
    }


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


def run_engine(files: list[Path], store: Path, workers: int, threads: int) -> tuple[float, int]:
    """Run `engine build` over a folder of links to ``files``; returns (seconds, peak RSS)."""
    music = store.parent / "music"
    music.mkdir()
    for i, f in enumerate(files):
        (music / f"{i:03d}{f.suffix}").symlink_to(f)
    env = dict(os.environ, ENGINE_MODELS=str(MODELS), ENGINE_OFFLINE="1")
    cmd = [sys.executable, "-m", "engine.cli", "build", str(music), "--store", str(store), "-q",
           "--workers", str(workers), "--threads", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    with TreeRss(proc.pid) as rss:
        _, err = proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"engine build failed:\n{err}")
    print(err.strip())
    return seconds, rss.peak


def compare(files: list[Path], refs: dict, store: Path) -> None:
    import duckdb

    con = duckdb.connect(str(store / "engine.duckdb"), read_only=True)
    music = store.parent / "music"
    cos, key_same, key_total, bpm_ok, lufs_err, av_err = [], 0, 0, 0, [], []
    for i, f in enumerate(files):
        path = os.path.abspath(music / f"{i:03d}{f.suffix}")
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
        bpm_ok += abs(row[0] - ref["bpm"]) <= 0.01 * ref["bpm"]
        lufs_err.append(abs(row[7] - ref["lufs"]))
        av_err.append(max(abs(row[8] - ref["arousal"]), abs(row[9] - ref["valence"])))
    print(f"agreement with the reference over {len(cos)} tracks:")
    print(f"  MusiCNN mean-embedding cosine: min {min(cos):.5f}, median {np.median(cos):.5f}")
    print(f"  keys identical: {key_same}/{key_total}")
    print(f"  BPM within 1 %: {bpm_ok}/{len(cos)}")
    print(f"  loudness |diff| LU: max {max(lufs_err):.3f}")
    print(f"  arousal/valence |diff|: max {max(av_err):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    files = corpus_files(args.files)
    refs = {}
    t0 = time.perf_counter()
    for f in files:
        refs[str(f)] = reference(f)
    ref_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        eng_s, peak = run_engine(files, store, args.workers, args.threads)
        stages = json.loads(subprocess.run(
            [sys.executable, "-c",
             "import duckdb,sys;c=duckdb.connect(sys.argv[1],read_only=True);"
             "print(c.execute(\"select value from meta where key='last_build_stages'\").fetchone()[0])",
             str(store / "engine.duckdb")], capture_output=True, text=True).stdout or "{}")
        n = len(files)
        print(f"\n{n} files ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB)")
        print(f"reference : {ref_s / n:.3f} s/track  ({ref_s:.1f} s)")
        print(f"engine    : {eng_s / n:.3f} s/track  ({eng_s:.1f} s, incl. start-up and model loading)")
        print(f"speed-up  : {ref_s / eng_s:.2f}x")
        print(f"peak RSS of the engine's process tree: {peak / 2**20:.0f} MiB")
        if stages:
            print("engine stage CPU-seconds per track (summed over workers):")
            for k, v in sorted(stages.items(), key=lambda kv: -kv[1]):
                print(f"  {k:<12} {v / n:.3f}")
        compare(files, refs, store)


if __name__ == "__main__":
    main()
