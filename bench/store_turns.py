"""What taking turns on the store costs (index.turns): a build that reopens DuckDB for
every batch, against one that keeps it open; and what a reader pays to open it.

    python bench/store_turns.py                 # stores of 10k and 100k tracks
    python bench/store_turns.py --sizes 1000000 # a big one (minutes, ≈6 GB of disk)

For each size it makes a synthetic store (tracks with 50 tags and a 200-d embedding
each, like a MusiCNN-only build), then commits 20 batches of 8 new tracks:

* kept open: one read-write connection for all batches (the old build);
* per batch: ``StoreWriter.session()`` around each batch: open, one transaction,
  close (DuckDB checkpoints on close), as ``engine build`` does now.

It prints CPU and wall milliseconds per batch for both and their ratio, and what one
reader pays to open the store read-only, run a small query and close it. CPU time is
the measure (the machine is shared); the load is printed next to the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(Path(__file__).resolve().parents[1]))

from index.store import Store, StoreWriter, TrackRecord  # noqa: E402

BATCHES, BATCH = 20, 8


def make_store(directory: Path, n: int) -> None:
    with Store.open(directory) as s:
        s.con.execute(f"""INSERT INTO tracks (track_id, path, bpm, artist, title, has_musicnn)
            SELECT range + 1, '/m/' || range || '.ogg', 100 + range % 50, 'a' || range % 100,
                   't' || range, true FROM range({n})""")
        s.con.execute(f"""INSERT INTO embeddings SELECT range + 1, 'musicnn',
            list_transform(range(200), lambda x: random()::FLOAT) FROM range({n})""")
        s.con.execute(f"""INSERT INTO tags SELECT t.range + 1, 'musicnn', 'tag' || g.range, random()
            FROM range({n}) t, range(50) g""")
        s.con.execute("DROP SEQUENCE track_ids")
        s.con.execute(f"CREATE SEQUENCE track_ids START {n + 1}")
        s.con.execute("CHECKPOINT")


def records(rng: np.random.Generator, base: int) -> list[TrackRecord]:
    return [TrackRecord(f"/new/{base + i}.ogg", {"bpm": 120.0, "artist": "x", "has_musicnn": True},
                        tags=[("musicnn", f"tag{j}", 0.5) for j in range(50)],
                        embeddings={"musicnn": rng.random(200).astype(np.float32)})
            for i in range(BATCH)]


def timed(run) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    run()
    return (time.process_time() - c0) * 1000 / BATCHES, (time.perf_counter() - w0) * 1000 / BATCHES


def measure(n: int) -> dict[str, float]:
    import duckdb

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="turns-") as tmp:
        base = Path(tmp) / "base"
        make_store(base, n)
        kept_dir, per_dir = Path(tmp) / "kept", Path(tmp) / "per"
        shutil.copytree(base, kept_dir)
        shutil.copytree(base, per_dir)

        def kept() -> None:
            with Store.open(kept_dir) as s:
                for b in range(BATCHES):
                    s.write_tracks(records(rng, b * BATCH))

        def per_batch() -> None:
            with StoreWriter.acquire(per_dir) as writer:
                for b in range(BATCHES):
                    with writer.session() as s:
                        s.write_tracks(records(rng, b * BATCH))

        kept_cpu, kept_wall = timed(kept)
        per_cpu, per_wall = timed(per_batch)
        db = str(per_dir / "engine.duckdb")

        def readers() -> None:
            for _ in range(BATCHES):
                con = duckdb.connect(db, read_only=True)
                con.execute("SELECT count(*) FROM tracks WHERE bpm > 120").fetchall()
                con.close()

        read_cpu, read_wall = timed(readers)
        size_mb = os.path.getsize(db) / 1e6
    return dict(n=n, size_mb=size_mb, kept_cpu=kept_cpu, kept_wall=kept_wall, per_cpu=per_cpu,
                per_wall=per_wall, read_cpu=read_cpu, read_wall=read_wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {BATCHES} batches of {BATCH} tracks")
    print("| tracks | DB MB | kept open: CPU / wall ms per batch | reopened per batch: CPU / wall ms "
          "| CPU ratio | reader open+query+close: CPU / wall ms |")
    print("|---:|---:|---|---|---:|---|")
    for n in (int(x) for x in args.sizes.split(",")):
        r = measure(n)
        print(f"| {r['n']:,} | {r['size_mb']:.0f} | {r['kept_cpu']:.0f} / {r['kept_wall']:.0f} | "
              f"{r['per_cpu']:.0f} / {r['per_wall']:.0f} | {r['per_cpu'] / r['kept_cpu']:.2f} | "
              f"{r['read_cpu']:.0f} / {r['read_wall']:.0f} |", flush=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
