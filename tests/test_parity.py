"""ONNX inference against essentia-tensorflow on real tracks.

Essentia's wrappers (TensorflowPredictMusiCNN, TensorflowPredict2D, TempoCNN) are
the reference; ours runs the numpy front-end, Essentia's patching and the converted
ONNX graphs. Targets: per-patch embedding cosine >= 0.9999, head outputs within 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest

from models import frontend, registry
from models.inference import EmbeddingPipeline, RuntimeOptions, load

es = pytest.importorskip("essentia.standard")
if not hasattr(es, "TensorflowPredictMusiCNN"):
    pytest.skip("needs essentia-tensorflow (see the README's install command)", allow_module_level=True)

OPTIONS = RuntimeOptions(threads=2)


def _tracks(corpus, n):
    files = sorted((corpus / "library").rglob("*.ogg")) + sorted((corpus / "library").rglob("*.mp3"))
    files += sorted((corpus / "library").rglob("*.m4a")) + sorted((corpus / "rendered").glob("*.ogg"))
    # Spread over artists and formats rather than taking one album.
    step = max(1, len(files) // n)
    return files[::step][:n]


def _load16k(path, seconds=30.0):
    audio = es.MonoLoader(filename=str(path), sampleRate=16000, resampleQuality=4)()
    return audio[: int(seconds * 16000)]


@pytest.fixture(scope="module")
def musicnn_pipeline():
    return EmbeddingPipeline(
        load(registry.get("musicnn"), OPTIONS),
        [load(registry.get("emomusic"), OPTIONS), load(registry.get("moods_mirex"), OPTIONS)],
    )


def _model_path(name):
    from models import paths

    spec = registry.get(name)
    return str(paths.models_dir() / spec.graph.filename)


def _check_musicnn_track(path, pipeline):
    audio = _load16k(path)
    ref_emb = es.TensorflowPredictMusiCNN(graphFilename=_model_path("musicnn"), output="model/dense/BiasAdd")(audio)
    ref_tags = es.TensorflowPredictMusiCNN(graphFilename=_model_path("musicnn"))(audio)
    ref_emo = es.TensorflowPredict2D(graphFilename=_model_path("emomusic"), output="model/Identity")(ref_emb)
    ref_moods = es.TensorflowPredict2D(
        graphFilename=_model_path("moods_mirex"),
        input="serving_default_model_Placeholder",
        output="PartitionedCall",
    )(ref_emb)

    per_patch = pipeline.patch_outputs(frontend.model_patches("musicnn", frontend.mel_bands(audio)))
    emb = per_patch["embeddings"]
    assert emb.shape == ref_emb.shape, path
    cos = np.sum(emb * ref_emb, axis=1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref_emb, axis=1)
    assert cos.min() >= 0.9999, (path, cos.min())
    np.testing.assert_allclose(per_patch["musicnn"], ref_tags, atol=1e-3, err_msg=str(path))
    np.testing.assert_allclose(per_patch["emomusic"], ref_emo, atol=1e-3, err_msg=str(path))
    np.testing.assert_allclose(per_patch["moods_mirex"], ref_moods, atol=1e-3, err_msg=str(path))
    return cos.min()


def test_musicnn_and_heads_match_essentia_on_one_track(corpus, musicnn_pipeline):
    _check_musicnn_track(_tracks(corpus, 1)[0], musicnn_pipeline)


@pytest.mark.slow
def test_musicnn_and_heads_match_essentia_on_ten_tracks(corpus, musicnn_pipeline):
    tracks = _tracks(corpus, 10)
    assert len(tracks) == 10
    worst = min(_check_musicnn_track(t, musicnn_pipeline) for t in tracks)
    assert worst >= 0.9999


@pytest.mark.slow
def test_tempocnn_matches_essentia(corpus):
    model = load(registry.get("tempocnn"), OPTIONS)
    for path in _tracks(corpus, 10)[:5]:
        audio = es.MonoLoader(filename=str(path), sampleRate=11025, resampleQuality=4)()[: 30 * 11025]
        # Essentia returns each patch's BPM and the probability of that BPM.
        ref_bpm, ref_local, ref_local_probs = es.TempoCNN(graphFilename=_model_path("tempocnn"))(audio)
        probs = model.run(frontend.tempocnn_patches(audio))["predictions"]
        np.testing.assert_array_equal(probs.argmax(axis=1) + 30, ref_local, err_msg=str(path))
        np.testing.assert_allclose(probs.max(axis=1), ref_local_probs, atol=1e-3, err_msg=str(path))
        assert frontend.tempo_from_activations(probs)[0] == pytest.approx(ref_bpm), path


def test_batching_across_tracks_equals_one_by_one(corpus, musicnn_pipeline):
    audio = _load16k(_tracks(corpus, 1)[0])
    mels = [frontend.mel_bands(audio[: s * 16000]) for s in (30, 9, 2)]
    patches = [frontend.model_patches("musicnn", m) for m in mels]
    assert [len(p) for p in patches] == [19, 5, 0]  # 2 s is shorter than one patch
    together = musicnn_pipeline.predict(patches)
    for p, t in zip(patches, together):
        alone = musicnn_pipeline.predict([p])[0]
        if len(p) == 0:
            assert t.embedding is None and alone.embedding is None
            continue
        np.testing.assert_allclose(t.embedding, alone.embedding, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(t.predictions["emomusic"], alone.predictions["emomusic"], atol=1e-5)
        # The track summary is the mean over its patches.
        per_patch = musicnn_pipeline.patch_outputs(p)
        np.testing.assert_allclose(t.embedding, per_patch["embeddings"].mean(axis=0), rtol=1e-4, atol=1e-5)


def test_effnet_chain_with_standin_backbone_and_real_heads(corpus, tmp_path, monkeypatch, shared_models):
    """Patching, batching, the real heads and averaging, behind a generated backbone."""
    from tests.standin import write_standin_effnet

    spec = registry.get("effnet")
    write_standin_effnet(tmp_path / spec.official_onnx.filename)
    for head in registry.heads_of("effnet"):
        for f in (head.graph, head.metadata):
            (tmp_path / f.filename).symlink_to(shared_models / f.filename)
    monkeypatch.setenv("ENGINE_MODELS", str(tmp_path))

    backbone = load(spec, OPTIONS)
    heads = [load(h, OPTIONS) for h in registry.heads_of("effnet")]
    pipeline = EmbeddingPipeline(backbone, heads)
    audio = _load16k(_tracks(corpus, 1)[0])
    patches = frontend.model_patches("effnet", frontend.mel_bands(audio))
    assert patches.shape == (29, 128, 96)  # Essentia's EffNet wrapper on 30 s
    per_patch = pipeline.patch_outputs(patches)
    emb = per_patch["embeddings"]
    assert emb.shape == (29, 1280) and per_patch["effnet"].shape == (29, 400)

    # Each real head, run by Essentia on the same per-patch embeddings, agrees.
    for head in registry.heads_of("effnet"):
        ref = es.TensorflowPredict2D(
            graphFilename=str(shared_models / head.graph.filename),
            input=head.input.removesuffix(":0"),
            output=head.outputs["predictions"].removesuffix(":0"),
        )(emb)
        assert per_patch[head.name].shape == ref.shape == (29, head.n_outputs), head.name
        np.testing.assert_allclose(per_patch[head.name], ref, atol=1e-3, err_msg=head.name)

    track = pipeline.predict([patches, patches[:3]])
    np.testing.assert_allclose(track[0].embedding, emb.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(track[1].predictions["voice_instrumental"],
                               per_patch["voice_instrumental"][:3].mean(axis=0), atol=1e-6)
