"""Cost of listener profiles: what scoring 3 profiles adds to `engine build`, same run.

Builds N corpus files into a fresh store that already holds 3 listener profiles (normal,
mild sloping, severe), so the build scores every track for each of them after writing
it; prints the build's CPU time (this process and its workers), the scoring's CPU time
(measured again alone, on the same store, after dropping the predictions), the share it
adds, and the cost per track and listener. Goal: <= 2 % of the build. Then the CPU time
of the defect profile (engine.quality_profile, the predictor's newest inputs, computed
within the build's quality analysis) per track, timed again alone on the same decoded
signals, and its share of the build's CPU per track.

Usage: python bench/listener_speed.py [--files N]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(ROOT))
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))
AUDIO_EXT = {".ogg", ".mp3", ".flac", ".m4a", ".wav"}
PROFILES = {"normal": "0,0,0,5,5,10,10,15", "mum": "20,20,25,30,40,50,60,65",
            "grandad": "60,65,70,75,80,85,90,90"}


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=20)
    args = ap.parse_args()
    os.environ.setdefault("ENGINE_MODELS", str(SHARED / "models"))
    os.environ.setdefault("ENGINE_OFFLINE", "1")

    from models.audiogram import parse_audiogram
    from engine.build import BuildOptions, build
    from engine.listeners import score_listeners
    from index.listeners import add_listener
    from index.store import Store

    files = sorted(p for p in (SHARED / "corpus" / "library").rglob("*") if p.suffix in AUDIO_EXT)[: args.files]
    with tempfile.TemporaryDirectory() as tmp:
        music = Path(tmp) / "music"
        music.mkdir()
        for i, f in enumerate(files):
            (music / f"{i:03d}{f.suffix}").symlink_to(f)
        store_dir = Path(tmp) / "store"
        with Store.open(store_dir) as store:
            for name, text in PROFILES.items():
                add_listener(store, name, parse_audiogram(text))
        load = os.getloadavg()
        c0, w0 = _cpu(), time.perf_counter()
        summary = build(music, store_dir, BuildOptions(progress=False, fetch=False), echo=lambda s: None)
        build_cpu, build_wall = _cpu() - c0, time.perf_counter() - w0
        with Store.open(store_dir) as store:
            store._exec("DELETE FROM listener_quality")
            c0 = time.process_time()
            scored = score_listeners(store)
            score_cpu = time.process_time() - c0
    pairs = scored.total
    print(f"{summary.analysed} tracks, {len(PROFILES)} listeners ({pairs} predictions); load {load[0]:.1f}")
    print(f"build: {build_cpu:.1f} CPU-s ({build_cpu / max(summary.analysed, 1):.2f} per track), "
          f"{build_wall:.1f} s wall; its listener stage {summary.stage_seconds.get('listeners', 0.0) * 1000:.0f} ms wall")
    print(f"scoring alone: {score_cpu * 1000:.0f} CPU-ms ({score_cpu / max(pairs, 1) * 1e6:.0f} µs per "
          f"track and listener) = {100 * score_cpu / build_cpu:.3f} % of the build's CPU (goal <= 2 %)")
    profile_cpu = _profile_cpu(files)
    per_track = build_cpu / max(summary.analysed, 1)
    print(f"defect profile: {1000 * np.median(profile_cpu):.1f} CPU-ms per track (median; "
          f"{1000 * max(profile_cpu):.1f} at most) = {100 * np.median(profile_cpu) / per_track:.2f} % "
          "of the build's CPU per track")


def _profile_cpu(files: list[Path]) -> list[float]:
    """CPU-s of engine.quality_profile.profile per file, on the signal the build analyses."""
    from engine.decode import decode
    from engine.quality import _frames, _hum, _spectral
    from engine.quality_profile import profile

    out = []
    for f in files:
        x = decode(f).mono
        fr = _frames(x)
        bw = _spectral(fr)[0]
        hum_level = _hum(x)[2]
        c0 = time.process_time()
        for _ in range(3):
            profile(x, fr.power, fr.level_db, bw, hum_level)
        out.append((time.process_time() - c0) / 3)
    return out


if __name__ == "__main__":
    main()
