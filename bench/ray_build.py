"""`engine build` locally vs `--ray`, a simulated scale-out, the writer alone, and 1M tracks.

All in one run, on the same files, so the ratios hold under the shared machine's load
(printed with every figure):

1. local build (worker pool) vs ``--ray`` on a local runtime of the same CPUs: tracks/s
   and the ratio (Ray's overhead on one machine);
2. scale-out simulated on this machine: one runtime, analysis tasks reserving 1, 1/2,
   1/4 CPU, i.e. 2, 4, 8 concurrent Ray workers: how tracks/s moves with workers when
   the cores do not (a 2-core machine cannot show real growth; it shows the per-worker
   overhead that real nodes would add);
3. the driver's writer on its own: real analysed records, copied under new paths,
   committed through :class:`engine.build.BatchCommitter` (what the driver does per
   track), in tracks/s — the ceiling of any cluster;
4. the projection for 1M tracks on N nodes of C cores:
   ``min(N·C / cpu_s_per_track × ray_ratio, writer_tps)``.

Usage: nice -n 19 python bench/ray_build.py [--files 12] [--max-seconds 30] [--writer-tracks 2000]
Needs the `ray` extra (pip install ".[ray]").
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))
AUDIO_EXT = {".ogg", ".mp3", ".flac", ".m4a", ".wav"}


def load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def music(n: int, dest: Path) -> Path:
    files = sorted(p for p in (SHARED / "corpus" / "library").rglob("*") if p.suffix in AUDIO_EXT)[:n]
    for i, f in enumerate(files):
        shutil.copy(f, dest / f"{i:03d}{f.suffix}")
    return dest


def timed_build(folder: Path, store: Path, options) -> tuple[float, float, int]:
    """(wall s, CPU s of this process and its children, tracks) of one build into a fresh store."""
    from engine.build import build

    c0, s0, t0 = children_cpu(), self_cpu(), time.perf_counter()
    summary = build(folder, store, options, echo=lambda s: None)
    wall = time.perf_counter() - t0
    assert summary.failed == 0, summary.lines()
    return wall, children_cpu() - c0 + self_cpu() - s0, summary.analysed


def writer_throughput(folder: Path, tmp: Path, n_tracks: int, batch: int) -> tuple[float, float]:
    """Tracks/s and CPU-s per track of the driver's writer alone (models already run)."""
    from engine.analysis import AnalysisTask, analyse_file
    from engine.build import BatchCommitter, BuildOptions
    from engine.modelstage import ModelStage
    from engine.summary import BuildSummary
    from index import vectors
    from index.store import StoreWriter
    from models.inference import RuntimeOptions

    stage = ModelStage(RuntimeOptions(threads=1, device="cpu"))
    files = sorted(folder.iterdir())[:4]
    seeds = []
    for f in files:
        st = f.stat()
        a = analyse_file(AnalysisTask(str(f), st.st_size, st.st_mtime_ns, "0" * 16, max_seconds=30))
        seeds.append(a)
    outputs = stage.run(seeds)
    seeds = [dataclasses.replace(a, mel=None, tempocnn_input=None) for a in seeds]
    options = BuildOptions(batch=batch, progress=False)
    store_dir = tmp / f"writer-{batch}"
    with StoreWriter.acquire(store_dir) as writer:
        committer = BatchCommitter(writer, stage, options, BuildSummary())
        c0, t0 = self_cpu(), time.perf_counter()
        for i in range(n_tracks):
            a, m = seeds[i % len(seeds)], outputs[i % len(seeds)]
            task = dataclasses.replace(a.task, path=f"/virtual/{i:07d}{Path(a.task.path).suffix}",
                                       content_hash=f"{i:016x}")
            committer.add(task, dataclasses.replace(a, task=task), m)
        committer.flush()
        wall = time.perf_counter() - t0
        cpu = self_cpu() - c0
        t1 = time.perf_counter()
        with writer.session() as store:
            vectors.sync(store, spaces=stage.spaces)
        faiss_s = time.perf_counter() - t1
    return n_tracks / wall, cpu / n_tracks, faiss_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--max-seconds", type=float, default=30.0)
    ap.add_argument("--writer-tracks", type=int, default=2000)
    ap.add_argument("--node-cores", type=int, default=16, help="cores per node in the projection")
    ap.add_argument("--writer-only", action="store_true", help="only the writer figures")
    args = ap.parse_args()
    os.environ.setdefault("ENGINE_MODELS", str(SHARED / "models"))
    os.environ["ENGINE_OFFLINE"] = "1"

    import ray

    from engine.build import BuildOptions

    cpus = 2
    base = BuildOptions(workers=cpus, threads=1, batch=8, max_seconds=args.max_seconds, progress=False,
                        fetch=False)
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "music").mkdir()
        folder = music(args.files, (tmp / "music").resolve())
        print(f"{args.files} files, first {args.max_seconds:.0f} s of each, {cpus} CPUs; {load()}")
        if args.writer_only:
            for batch in (8, 64, 256):
                tps, cpu_per, _ = writer_throughput(folder, tmp, args.writer_tracks, batch)
                print(f"writer alone, batch {batch:3d}: {tps:7.1f} tracks/s, {cpu_per * 1e3:.2f} "
                      f"CPU-ms/track ({load()})")
            return
        # Warm-up: converts models once and fills the page cache, for every run alike.
        timed_build(folder, tmp / "warm", base)

        wall_l, cpu_l, n = timed_build(folder, tmp / "local", base)
        print(f"local pool        {n / wall_l:6.3f} tracks/s  ({wall_l:6.1f} s, {cpu_l / n:.2f} CPU-s/track; {load()})")

        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        init_s = time.perf_counter() - t0
        print(f"ray.init          {init_s:6.1f} s (once per build when --ray starts the runtime; {load()})")
        rows = []
        for task_cpus in (1.0, 0.5, 0.25):
            opts = dataclasses.replace(base, ray="local", ray_task_cpus=task_cpus)
            wall_r, _, n = timed_build(folder, tmp / f"ray-{task_cpus}", opts)
            rows.append((task_cpus, n / wall_r))
            # The model actor holds 1 CPU; the analysis tasks share the rest.
            print(f"ray, {int((cpus - 1) / task_cpus)} analysis workers ({task_cpus:g} CPU each)"
                  f" {n / wall_r:6.3f} tracks/s  ({wall_r:6.1f} s, ratio to local {wall_l / wall_r:.2f}; {load()})")
        ray.shutdown()
        ratio = rows[0][1] / (n / wall_l)

        for batch in (8, 64, 256):
            tps, cpu_per, faiss_s = writer_throughput(folder, tmp, args.writer_tracks, batch)
            print(f"writer alone, batch {batch:3d}: {tps:7.1f} tracks/s, {cpu_per * 1e3:.2f} CPU-ms/track; "
                  f"FAISS sync of {args.writer_tracks} tracks {faiss_s:.1f} s ({load()})")
        writer_tps = tps

    per_track = cpu_l / args.files / ratio  # CPU-s per track on Ray (its overhead included)
    print(f"\nprojection, 1M tracks ({args.max_seconds:.0f} s analysed each; cost grows with it), "
          f"{args.node_cores}-core nodes: {per_track:.2f} CPU-s/track on Ray, writer {writer_tps:.0f} tracks/s")
    for nodes in (1, 4, 16, 64, 256):
        cluster = nodes * args.node_cores / per_track
        tps = min(cluster, writer_tps)
        limit = "writer" if writer_tps < cluster else "CPUs"
        print(f"  {nodes:4d} nodes: {tps:8.1f} tracks/s -> {1e6 / tps / 3600:7.1f} h  (limit: {limit})")
    print(f"  the writer becomes the limit from {writer_tps * per_track / args.node_cores:.0f} nodes")


if __name__ == "__main__":
    sys.exit(main())
