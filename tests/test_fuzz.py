"""A seeded fuzz build: a few hundred bad files and awkward names (tests/badfiles.py).

The build must exit 0, within a deadline (never hang), leave every file it does not
analyse in ``failures`` with a one-line reason, analyse what is valid whatever its name,
channel count or rate, and find on a second run nothing to redo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from index.pathnames import from_db
from tests.badfiles import EITHER, make_collection, judge, restore_permissions

from .conftest import ROOT
from .test_build import _rows

SEED = 20240612
FILES = 250
ARGS = ("--max-seconds", "5", "--timeout", "60", "--workers", "2", "--threads", "1", "-q", "--no-fetch")
DEADLINE_S = 1500  # ≈50 s on the 2-core reference machine under load; a hang fails here


def _build(music, store) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "engine.cli", "build", str(music), "--store", str(store), *ARGS]
    if os.geteuid() == 0:  # permissions apply as for a user: the unreadable files stay unreadable
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=DEADLINE_S)


@pytest.mark.slow
def test_fuzz_build_records_every_file_it_does_not_analyse(tmp_path):
    if os.geteuid() == 0 and subprocess.run(["setpriv", "--help"], capture_output=True).returncode:
        pytest.skip("needs setpriv to drop root's DAC override")
    music, store = tmp_path / "music", tmp_path / "store"
    entries = make_collection(music, FILES, seed=SEED)
    try:
        first = _build(music, store)
        assert first.returncode == 0, first.stderr.decode(errors="replace")[-3000:]
        tracks = {from_db(p, b) for p, b in _rows(store, "SELECT path, path_bytes FROM tracks")}
        failures = {from_db(p, b): e for p, e, b in _rows(store, "SELECT path, error, path_bytes FROM failures")}
        outcomes = judge(entries, tracks, failures)
        wrong = [(o.entry.kind, o.entry.expect, o.got, o.entry.path, o.reason) for o in outcomes if not o.ok]
        assert not wrong, wrong[:10]
        assert set(failures) <= {e.path for e in entries}  # nothing recorded that was not there
        # Damaged files end both ways in this seed: the test exercises both paths.
        assert {o.got for o in outcomes if o.entry.expect == EITHER} == {"track", "recorded"}
        assert Counter(o.got for o in outcomes)["track"] >= 100

        second = _build(music, store)
        assert second.returncode == 0
        assert b"analysed 0, updated 0" in second.stderr, second.stderr[-2000:]
        assert {from_db(p, b) for p, b in _rows(store, "SELECT path, path_bytes FROM tracks")} == tracks
        assert {from_db(p, b) for p, b in _rows(store, "SELECT path, path_bytes FROM failures")} == set(failures)
    finally:
        restore_permissions(music)
