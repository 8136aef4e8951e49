"""engine.cli.output: the one formatter of query results for the terminal and for programs."""

from __future__ import annotations

import csv
import io
import json

from rich.cells import cell_len

from engine.cli.output import render


def test_table_aligns_wide_characters_and_shows_no_control_codes():
    rows = [["日本語のアーティスト", 120.0], ["a\x1b[2Jb", 99.5], ["Ünïcödé", None]]
    out = render(["artist", "bpm"], rows)
    lines = out.splitlines()
    assert "\x1b" not in out and "a [2Jb" in out
    # every line ends where the right-aligned bpm column ends (cells, not code points)
    assert len({cell_len(line) for line in lines[2:4]}) == 1
    assert lines[-1] == "(3 rows)"


def test_table_cuts_long_values_by_cells():
    out = render(["title"], [["長" * 50]])
    cell = out.splitlines()[2]
    assert cell.endswith("…") and cell_len(cell) <= 60


def test_json_and_csv_keep_values_as_stored():
    rows = [["a\x1bb", float("nan")]]
    assert json.loads(render(["t", "x"], rows, "json")) == [{"t": "a\x1bb", "x": None}]
    assert list(csv.reader(io.StringIO(render(["t", "x"], rows, "csv")))) == [["t", "x"], ["a\x1bb", ""]]  # NaN: empty, as NULL
