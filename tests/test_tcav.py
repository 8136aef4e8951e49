"""Concept explanations (index.tcav, `engine explain`)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import cli
from index import tcav
from index.store import Store
from tests.listdata import make_list_store


def test_a_concept_along_the_heads_gradient_is_significant_and_an_orthogonal_one_is_not(tmp_path):
    """A non-linear head over the synthetic store's vectors: class 1 rises along ``a``.
    The concept learned from tracks far along ``a`` pushes it up for every class track;
    one learned from tracks far along a direction orthogonal to ``a`` is not significant."""
    data = make_list_store(tmp_path / "store")
    x = data["x"].astype(np.float32)
    rng = np.random.default_rng(0)
    a = rng.standard_normal(x.shape[1]).astype(np.float32)
    a /= np.linalg.norm(a)
    b = rng.standard_normal(x.shape[1]).astype(np.float32)
    b -= (b @ a) * a
    b /= np.linalg.norm(b)

    def predict(v):
        p = 1 / (1 + np.exp(-np.tanh(v @ a) * 3 - 0.1 * (v @ b) ** 2))
        return np.stack([1 - p, p], 1)

    head = tcav.Head("toy", "musicnn", ("no", "yes"), predict)
    ids = np.arange(1, len(x) + 1)
    along = tcav.ConceptVector("along", tcav._cav(x, ids, ids[x @ a > np.quantile(x @ a, 0.8)], rng), 72)
    across = tcav.ConceptVector("across", tcav._cav(x, ids, ids[x @ b > np.quantile(x @ b, 0.8)], rng), 72)
    with Store.open_read_only(tmp_path / "store") as store:
        top = int(ids[np.argmax(x @ a)])
        result = tcav.explain_track(store, top, head, concepts=[along, across])
    effects = {e.concept: e for e in result.effects}
    assert result.label == "yes"
    assert effects["along"].tcav > 0.9 and effects["along"].significant and effects["along"].at_track > 0
    assert not effects["across"].significant
    assert result.text().startswith("yes (") and "along ↑" in result.text() and "across" not in result.text()


def test_p_values_are_empirical_and_two_sided():
    random_effects = np.array([-0.1, 0.0, 0.1, -0.05, 0.05])
    p = tcav.p_values(np.array([0.5, -0.5, 0.0]), random_effects)
    assert p[0] == p[1] == pytest.approx(1 / 6) and p[2] == 1.0


@pytest.mark.slow
def test_explain_command_on_real_audio(corpus_store):
    """Real audio: the MIREX mood head on the corpus; every concept has a score in 0-1 and
    a p-value; an unknown class is named with the classes there are."""
    import json

    r = CliRunner().invoke(cli, ["explain", "-t", "chorale_00", "--head", "moods_mirex", "--format", "json",
                                 "--store", str(corpus_store)])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert len(rows) > 10 and all(0 <= e["tcav"] <= 1 and 0 < e["p_value"] <= 1 for e in rows)
    assert any(e["concept"] in ("fast", "slow", "loud", "quiet") for e in rows)
    r = CliRunner().invoke(cli, ["explain", "-t", "chorale_00", "--head", "emomusic", "--class", "xx",
                                 "--store", str(corpus_store)])
    assert r.exit_code == 1 and "emomusic has no class 'xx'; classes: valence, arousal" in r.output
