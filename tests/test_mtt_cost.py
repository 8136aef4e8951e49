"""bench/mtt_cost.py's options: a bad hop is refused in one line before any model work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_hop_between_whole_patches_is_refused():
    run = subprocess.run([sys.executable, "-m", "bench.mtt_cost", "--hops", "300", "--tols", ""],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.endswith("--hops: a hop above 187 frames must be a multiple of it, got 300")
