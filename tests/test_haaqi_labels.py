"""bench/haaqi/make_labels.py: the label plan, which labels.csv's row ids depend on."""

from __future__ import annotations

import sys
from dataclasses import astuple
from pathlib import Path

import pytest

HAAQI_BENCH = Path(__file__).resolve().parents[1] / "bench" / "haaqi"


@pytest.fixture()
def make_labels(monkeypatch, corpus):
    monkeypatch.syspath_prepend(str(HAAQI_BENCH))
    import make_labels as module

    # Two real sources are enough to check the plan's arithmetic; the whole corpus is
    # what the script plans over.
    two = [("rendered/chorale_00.ogg", "train"), ("rendered/chorale_02.ogg", "test")]
    monkeypatch.setattr(module, "sources", lambda: two)
    monkeypatch.setattr(module, "CORPUS", corpus)
    yield module
    sys.modules.pop("make_labels", None)


def test_more_versions_keep_every_row_of_the_first_plan(make_labels):
    """labels.csv was made with 13 versions per excerpt and extended to 17: the rows of
    the 13-version plan must come out of the 17-version plan with the same ids and values."""
    first = make_labels.plan(17, 2, 13, 6.0)
    more = make_labels.plan(17, 2, 17, 6.0)
    assert len(first) == 2 * 2 * 13 and len(more) == 2 * 2 * 17
    assert [astuple(r) for r in more[: len(first)]] == [astuple(r) for r in first]
    added = more[len(first):]
    assert {r.kind for r in added} <= set(make_labels.KINDS)  # degraded, never clean
    assert len({r.seed for r in more}) == len(more)  # every row its own randomness


@pytest.mark.slow
def test_committed_labels_are_the_default_plan(monkeypatch, corpus):
    """Every committed row is the default plan's row of that id (so a resumed or extended
    run re-makes nothing and changes nothing), and no planned row is missing."""
    monkeypatch.syspath_prepend(str(HAAQI_BENCH))
    import make_labels

    try:
        monkeypatch.setattr(make_labels, "CORPUS", corpus)
        planned = {r.row_id: r for r in make_labels.plan(17, 2, 17, 6.0)}
        fields = ("source", "split", "excerpt", "offset_s", "seconds", "kind", "severity", "seed",
                  "audiogram", "audiogram_name")
        rows = make_labels.read_labels()
        assert sorted(r.row_id for r in rows) == sorted(planned)
        for r in rows:
            assert tuple(getattr(r, f) for f in fields) == tuple(getattr(planned[r.row_id], f) for f in fields)
    finally:
        sys.modules.pop("make_labels", None)
