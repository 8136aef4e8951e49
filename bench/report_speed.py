"""Report speed: `engine report` on a synthetic store of 100k tracks (40M style rows).

The store is made with index.store.Store (so it has the real schema), then filled in
bulk: the tracks table from numpy arrays registered with DuckDB, the 400 style
activations per track with one INSERT … SELECT over range() inside DuckDB, and
top_style/genre derived from those activations the way the engine does (arg max).
Values are plausible, not real: tempo clusters around common genres' tempi, the three
key profiles mostly agree, loudness centres on -10 LUFS, a few styles dominate.

Then `engine report` runs as a subprocess (what a user waits for, imports included),
and the report's two halves are timed in-process: computing (SQL) and rendering
(matplotlib, HTML, TSV). The target is under 30 s at 100k tracks.

Usage: python bench/report_speed.py [--tracks N] [--store DIR] [--out DIR]
(an existing --store with the right number of tracks is reused).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(ROOT))
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))

TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
CODECS = (("mp3", "mp3", 0.5, 256_000), ("flac", "flac", 0.25, 900_000), ("aac", "mp4", 0.12, 256_000),
          ("vorbis", "ogg", 0.08, 192_000), ("opus", "ogg", 0.05, 128_000))


def style_labels() -> list[tuple[str, str]]:
    """(genre, style) of the 400 Discogs styles, from the genre_discogs400 metadata when at hand."""
    for folder in (os.environ.get("ENGINE_MODELS"), SHARED / "models"):
        meta = Path(folder or "/nonexistent") / "genre_discogs400-discogs-effnet-1.json"
        if meta.is_file():
            classes = json.loads(meta.read_text())["classes"]
            return [tuple(c.split("---", 1)) for c in classes]  # type: ignore[misc]
    return [(f"Genre {g}", f"Style {g}.{s}") for g in range(16) for s in range(25)]


def make_store(directory: Path, n: int, *, seed: int = 0, failures: int = 40) -> Path:
    """A synthetic store of ``n`` tracks with every tracks column, 400 styles each, and failures."""
    from index.store import Store

    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1, dtype=np.int64)
    artist = rng.zipf(1.6, n) % max(1, n // 8)
    codec_i = rng.choice(len(CODECS), n, p=[c[2] for c in CODECS])
    centre = rng.choice([124.0, 92.0, 140.0, 172.0, 105.0], n, p=[0.35, 0.25, 0.15, 0.1, 0.15])
    tonic = rng.integers(0, 12, n)
    scale = rng.random(n) < 0.45
    def other_key(p_same: float) -> tuple[np.ndarray, np.ndarray]:
        same = rng.random(n) < p_same
        return (np.where(same, tonic, rng.integers(0, 12, n)), np.where(same, scale, rng.random(n) < 0.45))
    kk, sk = other_key(0.7)
    ke, se = other_key(0.55)
    names = np.array(TONICS, dtype=object)
    scales = np.array(["major", "minor"], dtype=object)
    duration = np.clip(rng.normal(245, 70, n), 20, 1800)
    cols = {
        "track_id": ids,
        "path": np.array([f"/music/artist {a}/album {a % 7}/track {i}.{CODECS[c][1]}"
                          for i, a, c in zip(ids, artist, codec_i)], dtype=object),
        "file_size": (duration * 40_000).astype(np.int64),
        "mtime_ns": np.full(n, 1_700_000_000_000_000_000, dtype=np.int64),
        "content_hash": np.array([f"{i:016x}" for i in ids], dtype=object),
        "duration": duration,
        "analysed_seconds": np.minimum(duration, 450.0),
        "truncated": duration > 450,
        "sample_rate": rng.choice([44100, 48000, 96000], n, p=[0.8, 0.17, 0.03]).astype(np.int32),
        "channels": np.where(rng.random(n) < 0.03, 1, 2).astype(np.int32),
        "codec": np.array([CODECS[c][0] for c in codec_i], dtype=object),
        "container": np.array([CODECS[c][1] for c in codec_i], dtype=object),
        "bitrate": np.array([CODECS[c][3] for c in codec_i], dtype=np.int32),
        "artist": np.array([f"Artist {a}" for a in artist], dtype=object),
        "title": np.array([f"Title {i}" for i in ids], dtype=object),
        "album": np.array([f"Album {a % 7}" for a in artist], dtype=object),
        "year": rng.integers(1960, 2025, n).astype(np.int32),
        "bpm": np.clip(rng.normal(centre, 4.0), 40, 208),
        "bpm_confidence": rng.random(n),
        "bpm_tempocnn": np.clip(rng.normal(centre, 6.0), 30, 285),
        "key_temperley": names[tonic], "scale_temperley": scales[scale.astype(int)],
        "key_strength_temperley": rng.beta(5, 3, n),
        "key_krumhansl": names[kk], "scale_krumhansl": scales[sk.astype(int)],
        "key_strength_krumhansl": rng.beta(5, 3, n),
        "key_edma": names[ke], "scale_edma": scales[se.astype(int)],
        "key_strength_edma": rng.beta(5, 3, n),
        "loudness_lufs": np.clip(rng.normal(-10.5, 3.2, n), -45, -2),
        "loudness_range_lu": np.clip(rng.gamma(3, 2.2, n), 0, 40),
        "true_peak_dbtp": np.clip(rng.normal(-0.8, 1.5, n), -20, 3),
        "danceability": np.clip(rng.normal(1.25, 0.35, n), 0, 3),
        "arousal": np.clip(rng.normal(5.0, 0.9, n), 1, 9),
        "valence": np.clip(rng.normal(5.2, 0.8, n), 1, 9),
        "danceable": rng.beta(2, 1.5, n), "voice": rng.beta(0.7, 0.6, n),
        "mood_happy": rng.beta(1, 3, n), "mood_sad": rng.beta(1, 3, n),
        "mood_relaxed": rng.beta(1.5, 2, n), "mood_aggressive": rng.beta(1, 4, n),
        "has_musicnn": np.ones(n, bool), "has_effnet": np.ones(n, bool),
        "fav": rng.zipf(1.3, n) % 400,  # each track's most likely style (a few dominate)
    }
    cols["fav"] = rng.permutation(400)[cols["fav"]].astype(np.int32)
    lossless = np.isin(cols["codec"], ["flac"])
    quality = {  # audio-quality measures (engine.quality), where the schema has them
        "quality": np.round(100 * (1 - 0.7 * rng.beta(0.4, 6, n)), 1),
        "clicks_per_min": rng.lognormal(1.5, 1.2, n), "clipping_share": rng.lognormal(-7, 1.5, n),
        "hum_db": rng.gamma(2, 2.5, n), "dropouts": (rng.random(n) < 0.01).astype(np.int32),
        "snr_db": np.clip(rng.normal(50, 12, n), 5, 100), "noise_floor_dbfs": rng.normal(-90, 8, n),
        "bandwidth_hz": np.where(lossless & (rng.random(n) > 0.07), 21500.0, rng.normal(17000, 900, n)),
        "dc_offset": rng.exponential(0.002, n), "silence_start_s": rng.exponential(0.3, n),
        "silence_end_s": rng.exponential(1.0, n),
    }
    labels = style_labels()
    directory.mkdir(parents=True, exist_ok=True)
    store = Store.open(directory)
    try:
        con = store.con
        have = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'tracks'").fetchall()}
        cols.update({k: v for k, v in quality.items() if k in have})
        con.register("synthetic_tracks", cols)
        con.register("synthetic_labels", {
            "i": np.arange(len(labels), dtype=np.int32),
            "genre": np.array([g for g, _ in labels], dtype=object),
            "style": np.array([s for _, s in labels], dtype=object)})
        names_ = [c for c in cols if c != "fav"]
        con.execute(f"INSERT INTO tracks ({', '.join(names_)}, analysed_at) "
                    f"SELECT {', '.join(names_)}, now()::TIMESTAMP FROM synthetic_tracks")
        # 400 rows per track: the favourite style high, the rest mostly far below 0.1.
        con.execute("""
            INSERT INTO styles
            SELECT t.track_id, l.genre, l.style,
                   (CASE WHEN l.i = t.fav THEN 0.35 + 0.6 * random()
                         ELSE 0.6 * pow(random(), 120) END)::FLOAT
            FROM (SELECT track_id, fav FROM synthetic_tracks) t CROSS JOIN synthetic_labels l
            ORDER BY t.track_id""")
        con.execute("""
            UPDATE tracks SET top_style = b.style, top_style_activation = b.act, genre = b.genre
            FROM (SELECT track_id, arg_max(style, activation) AS style, max(activation) AS act,
                         arg_max(genre, activation) AS genre FROM styles GROUP BY track_id) b
            WHERE tracks.track_id = b.track_id""")
        reasons = ["cannot decode {p}: Invalid data found when processing input",
                   "cannot decode {p}: empty file (0 bytes)", "timed out after 600 s"]
        for i in range(failures):
            p = f"/music/broken/file {i}.mp3"
            con.execute("INSERT INTO failures (path, stage, error, \"at\", file_size, mtime_ns) VALUES (?, ?, ?, now()::TIMESTAMP, 0, 0)",
                        [p, "decode" if i % 3 < 2 else "worker", reasons[i % 3].format(p=p)])
        con.execute("CHECKPOINT")
    finally:
        store.close()
    return directory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--store", type=Path, help="store folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, help="report folder (default: a temporary one)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="report-bench-"))
    store_dir = args.store or tmp / "store"
    out = args.out or tmp / "report"

    from index.store import Store

    reuse = (store_dir / "engine.duckdb").is_file()
    if reuse:
        with Store.open_read_only(store_dir) as s:
            reuse = s.count() == args.tracks
        if not reuse:
            sys.exit(f"{store_dir} holds a store of another size; pick another --store")
    if not reuse:
        t = time.perf_counter()
        make_store(store_dir, args.tracks)
        print(f"synthetic store: {args.tracks:,} tracks, {400 * args.tracks:,} style rows "
              f"in {time.perf_counter() - t:.1f} s, "
              f"{(store_dir / 'engine.duckdb').stat().st_size / 1e6:.0f} MB")

    t = time.perf_counter()
    proc = subprocess.run(["engine", "report", "--store", str(store_dir), "--out", str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"engine report failed:\n{proc.stderr}")
    print(f"engine report (subprocess, imports included): {wall:.1f} s   <- target < 30 s")

    from index.report import compute_report
    from index.report_render import write_report

    t = time.perf_counter()
    with Store.open_read_only(store_dir) as s:
        rep = compute_report(s)
    compute = time.perf_counter() - t
    t = time.perf_counter()
    written = write_report(rep, out)
    render = time.perf_counter() - t
    size = written.html.stat().st_size / 1e6
    print(f"  compute (SQL): {compute:.1f} s   render (figures, HTML, TSV): {render:.1f} s")
    print(f"  report.html {size:.1f} MB, {len(written.figures)} figures, {len(written.tables)} tables in {out}")


if __name__ == "__main__":
    main()
