"""Re-running `engine build` on an unchanged collection: how long does doing nothing take?

Makes N small audio files in nested folders and a store that already holds them
(rows written through index.store with the files' real size, mtime and content hash,
as a finished build leaves them), then times `engine build` on the folder as a
subprocess (interpreter start and imports included), with a baseline of
`engine --help` measured in the same run. Target: <= 2 s for 1,000 files.

Usage: python bench/incremental_speed.py [--files 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))


def make_collection(root: Path, n: int) -> None:
    sample = SHARED / "corpus" / "edge" / "tiny_0.2s.wav"
    for i in range(n):
        folder = root / f"artist{i % 37:02d}" / f"album{i % 11:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{i:05d}.wav"
        shutil.copy(sample, target)
        with open(target, "ab") as fh:  # distinct content, as real files have
            fh.write(i.to_bytes(4, "little"))


def fill_store(root: Path, store_dir: Path) -> None:
    from engine.scan import content_hash, scan
    from index.store import Store, TrackRecord

    records = [
        TrackRecord(
            path=str(f.path),
            columns={"file_size": f.size, "mtime_ns": f.mtime_ns,
                     "content_hash": content_hash(f.path), "has_musicnn": True},
        )
        for f in scan(root)
    ]
    with Store.open(store_dir) as store:
        for start in range(0, len(records), 500):
            store.write_tracks(records[start : start + 500])


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ, ENGINE_MODELS=str(SHARED / "models"), ENGINE_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        music, store = Path(tmp) / "music", Path(tmp) / "store"
        make_collection(music, args.files)
        fill_store(music, store)
        engine = [sys.executable, "-m", "engine.cli"]
        help_s = [timed(engine + ["--help"], env) for _ in range(args.repeats)]
        build_s = [timed(engine + ["build", str(music), "--store", str(store), "-q"], env)
                   for _ in range(args.repeats)]
        out = subprocess.run(engine + ["build", str(music), "--store", str(store), "-q"], env=env,
                             cwd=ROOT, capture_output=True, text=True).stderr.strip().splitlines()[-1]
    print(f"{args.files} unchanged files; median of {args.repeats} runs")
    print(f"  engine --help (start-up baseline): {statistics.median(help_s):.2f} s")
    print(f"  engine build (nothing to do):      {statistics.median(build_s):.2f} s")
    print(f"  last summary: {out}")


if __name__ == "__main__":
    main()
