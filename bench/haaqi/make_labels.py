"""Make the HAAQI training labels: (clean excerpt, degraded version, audiogram) -> HAAQI.

Every row of ``labels.csv`` says how to re-make its two signals and its score: the source
file (relative to ``../shared/corpus``), the excerpt's offset and length, the degradation
(:mod:`engine.degrade`) and its severity, the audiogram (8 thresholds, dB HL), the seed
(of the degradation's randomness and of HAAQI's threshold noise) and the split (``train``
or ``test``, by source file: both excerpts of a file fall on the same side). The score is
:func:`engine.haaqi.haaqi` with its default settings (NAL-R aid on both signals, the test
scaled to the reference's RMS, the reference at 65 dB SPL, mono).

The plan is a pure function of ``--seed`` and the corpus listing, so the script is
resumable: it skips the row ids already in the CSV and appends the rest as they finish.
Rows go round-robin over excerpts (version 0 of every excerpt, then version 1, ...), so a
run stopped early still covers every source.

Budget (docs/hearing.md): 78 sources x 2 excerpts x 17 versions = 2652 rows of 6 s; HAAQI
costs ≈2.1 CPU-s per 6 s row on this machine with numba (3.5-5 under load), ≈1.5
CPU-hours in all. The first plan had 13 versions per excerpt; versions 14-17 draw from a
random stream of their own, so the 13-version rows kept their ids. Run it niced::

    nice -n 19 python bench/haaqi/make_labels.py --workers 2 > /tmp/haaqi.log 2>&1 &

Needs ``bench/requirements-haaqi.txt`` (pyclarity without its torch dependencies).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
import zlib
from dataclasses import asdict, dataclass, fields
from itertools import zip_longest
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared")) / "corpus"
LABELS = Path(__file__).resolve().parent / "labels.csv"
AUDIO_EXT = {".ogg", ".mp3", ".flac", ".m4a", ".wav"}
SOURCE_FOLDERS = ("library", "rendered", "degraded/clean.flac")
TEST_EVERY = 4  # every 4th source (in sorted order per folder) is held out for testing
KINDS = ("hiss", "clicks", "clipping", "lowpass", "mp3", "aac", "hum", "compression")
BASE_VERSIONS = 13  # rows per excerpt of the first plan (1 clean + 12 degraded)


@dataclass(frozen=True)
class Row:
    """One label: what to compute, and (once computed) the score."""

    row_id: int
    source: str  # relative to the corpus root
    split: str  # train | test
    excerpt: int
    offset_s: float
    seconds: float
    kind: str  # 'clean' or an engine.degrade kind
    severity: float
    seed: int
    audiogram: str  # 8 thresholds, dB HL, comma-separated
    audiogram_name: str  # a named audiogram (models.audiogram) or 'random'
    haaqi: float = math.nan
    nonlinear: float = math.nan
    linear: float = math.nan
    cpu_s: float = math.nan


COLUMNS = [f.name for f in fields(Row)]


def sources() -> list[tuple[str, str]]:
    """(relative path, split) of every source file, in a stable order."""
    out = []
    for folder in SOURCE_FOLDERS:
        base = CORPUS / folder
        files = [base] if base.is_file() else sorted(
            p for p in base.rglob("*") if p.suffix.lower() in AUDIO_EXT)
        for i, path in enumerate(files):
            split = "test" if i % TEST_EVERY == TEST_EVERY - 1 else "train"
            out.append((str(path.relative_to(CORPUS)), split))
    return out


def random_audiogram(rng: np.random.Generator) -> tuple[float, ...]:
    """Thresholds from a family spanning normal to severe, flat to steeply sloping.

    A base level (mostly 0-75 dB HL; 15 % near-normal), plus a rise of up to 60 dB above a
    knee frequency (0.5-3 kHz, linear in log-frequency up to 8 kHz), plus ±4 dB jitter,
    rounded to 5 dB steps as audiometers measure, within -10..110 dB HL.
    """
    from models.audiogram import AUDIOGRAM_HZ

    if rng.random() < 0.15:
        base, rise = rng.uniform(-5, 15), rng.uniform(0, 15)
    else:
        base = rng.uniform(0, 75)
        rise = rng.uniform(0, 15) if rng.random() < 0.4 else rng.uniform(15, 60)
    knee = rng.uniform(math.log2(500), math.log2(3000))
    logf = np.log2(np.array(AUDIOGRAM_HZ, dtype=float))
    shape = np.clip((logf - knee) / (math.log2(8000) - knee), 0.0, 1.0)
    values = base + rise * shape + rng.normal(0.0, 4.0, len(AUDIOGRAM_HZ))
    values = np.clip(np.round(values / 5.0) * 5.0, -10, 110)
    return tuple(float(v) for v in values)


def severity(kind: str, fraction: float) -> float:
    """Geometric interpolation between the mildest and the most severe graded level."""
    from engine.degrade import SEVERITIES

    lo, hi = SEVERITIES[kind][0], SEVERITIES[kind][-1]
    if lo > 0 and hi > 0:
        value = lo * (hi / lo) ** fraction
    else:
        value = lo + (hi - lo) * fraction
    return round(float(value), 2)


def plan(seed: int, excerpts: int, versions: int, seconds: float) -> list[Row]:
    """Every row, in the order they are computed (round-robin over excerpts)."""
    from models.audiogram import EXAMPLE_AUDIOGRAMS, STANDARD_AUDIOGRAMS
    from engine.decode import decode

    named = {**STANDARD_AUDIOGRAMS, **EXAMPLE_AUDIOGRAMS}
    names = sorted(named)
    per_excerpt: list[list[Row]] = []
    for source, split in sources():
        duration = decode(CORPUS / source, max_seconds=None).analysed_seconds
        room = max(0.0, duration - seconds)
        for e in range(excerpts):
            rng = np.random.default_rng([seed, zlib.crc32(source.encode()), e])
            # Excerpts start in the middle fifths of the room, away from intros and fades.
            offset = round(room * (e + 0.5 + rng.uniform(-0.3, 0.3)) / excerpts, 2)
            kinds = ["clean"] + [KINDS[(e + i) % len(KINDS)] for i in range(len(KINDS))]
            kinds += [str(k) for k in rng.choice(KINDS, size=max(0, min(versions, BASE_VERSIONS) - len(kinds)))]
            # Versions beyond the first BASE_VERSIONS draw from a stream of their own, so
            # that a plan with more versions keeps every row of the smaller one.
            extra = np.random.default_rng([seed, zlib.crc32(source.encode()), e, 1])
            kinds += [str(k) for k in extra.choice(KINDS, size=max(0, versions - BASE_VERSIONS))]
            rows = []
            for v, kind in enumerate(kinds[:versions]):
                if v == BASE_VERSIONS:
                    rng = extra
                if rng.random() < 0.25:
                    name = names[int(rng.integers(len(names)))]
                    audiogram = named[name].thresholds
                else:
                    name, audiogram = "random", random_audiogram(rng)
                rows.append(Row(
                    row_id=0, source=source, split=split, excerpt=e, offset_s=offset,
                    seconds=seconds, kind=kind,
                    severity=0.0 if kind == "clean" else severity(kind, float(rng.uniform())),
                    seed=int(rng.integers(2**31)), audiogram=",".join(f"{t:g}" for t in audiogram),
                    audiogram_name=name,
                ))
            per_excerpt.append(rows)
    ordered = [rows[v] for v in range(versions) for rows in per_excerpt if v < len(rows)]
    return [Row(**{**asdict(r), "row_id": i}) for i, r in enumerate(ordered)]


def excerpt_signals(row: Row) -> tuple[np.ndarray, np.ndarray]:
    """(clean, degraded) stereo float32 [n, 2] at 44.1 kHz for a row."""
    from engine.decode import decode
    from engine.degrade import degrade

    audio = decode(CORPUS / row.source, max_seconds=row.offset_s + row.seconds)
    start = int(round(row.offset_s * 44100))
    clean = np.ascontiguousarray(audio.stereo[start: start + int(round(row.seconds * 44100))])
    if row.kind == "clean":
        return clean, clean.copy()
    return clean, degrade(clean, row.kind, row.severity, seed=row.seed)


def label(row: Row) -> Row:
    from models.audiogram import parse_audiogram
    from engine.haaqi import haaqi

    t0 = time.process_time()
    clean, degraded = excerpt_signals(row)
    try:
        result = haaqi(clean, degraded, parse_audiogram(row.audiogram), seed=row.seed)
    except ValueError as exc:  # a silent excerpt: kept as done, with no score
        print(f"row {row.row_id} ({row.source} at {row.offset_s} s): {exc}", file=sys.stderr, flush=True)
        return Row(**{**asdict(row), "cpu_s": round(time.process_time() - t0, 2)})
    return Row(**{**asdict(row), "haaqi": round(result.score, 6),
                  "nonlinear": round(result.nonlinear, 6), "linear": round(result.linear, 6),
                  "cpu_s": round(time.process_time() - t0, 2)})


def read_labels(path: Path = LABELS) -> list[Row]:
    if not path.is_file():
        return []
    types = {f.name: f.type for f in fields(Row)}
    out = []
    with path.open(newline="") as f:
        for rec in csv.DictReader(f):
            out.append(Row(**{k: (int(v) if types[k] == "int" else float(v) if types[k] == "float" else v)
                              for k, v in rec.items()}))
    return out


def first_of_kinds(rows: list[Row], kinds: list[str]) -> list[Row]:
    """The rows of ``kinds`` only, taking one of each kind in turn (row ids unchanged, so a
    later full run skips them)."""
    unknown = sorted(set(kinds) - set(KINDS) - {"clean"})
    if unknown:
        sys.exit(f"--kinds: unknown {', '.join(unknown)} (known: clean, {', '.join(KINDS)})")
    per_kind = [[r for r in rows if r.kind == k] for k in kinds]
    return [r for turn in zip_longest(*per_kind) for r in turn if r is not None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--excerpts", type=int, default=2, help="excerpts per source file")
    ap.add_argument("--versions", type=int, default=17, help="rows per excerpt (1 clean + degraded)")
    ap.add_argument("--seconds", type=float, default=6.0, help="excerpt length")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="stop after this many new rows (0: all)")
    ap.add_argument("--kinds", help="only rows of these versions (comma-separated, e.g. aac,hum), "
                    "taking the kinds in turn: fills a gap in a partial run first")
    ap.add_argument("--out", type=Path, default=LABELS)
    args = ap.parse_args()

    rows = plan(args.seed, args.excerpts, args.versions, args.seconds)
    done = {r.row_id for r in read_labels(args.out)}
    todo = [r for r in rows if r.row_id not in done]
    if args.kinds:
        todo = first_of_kinds(todo, args.kinds.split(","))
    if args.limit:
        todo = todo[: args.limit]
    print(f"{len(rows)} rows planned, {len(done)} done, {len(todo)} to do", file=sys.stderr, flush=True)
    new_file = not args.out.is_file()
    t_start = time.time()
    with args.out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        if new_file:
            writer.writeheader()
        if args.workers > 1:
            from multiprocessing import get_context

            pool = get_context("spawn").Pool(args.workers)
            results = pool.imap_unordered(label, todo)
        else:
            pool, results = None, map(label, todo)
        for i, row in enumerate(results, 1):
            writer.writerow(asdict(row))
            f.flush()
            if i % 20 == 0 or i == len(todo):
                print(f"{i}/{len(todo)} rows, {time.time() - t_start:.0f} s wall, last {row.cpu_s} CPU-s",
                      file=sys.stderr, flush=True)
        if pool is not None:
            pool.close()
            pool.join()


if __name__ == "__main__":
    main()
