"""MusiCNN's timbral front end computed once per mel frame for overlapping patches.

MSD-MusiCNN reads patches of 187 mel frames every 93 frames, so every frame lies in two
patches and its timbral convolutions (7 frames tall, 38-67 bands wide: 58 % of the fast
graph's time) were computed twice. Those convolutions look only 3 frames either way, so a
patch's timbral features are, frame for frame, those of the whole track, except for the
3 frames at each end of the patch, where the patch's own zero padding takes the place of
the neighbouring frames. This module cuts the fast graph (:mod:`models.quantize`) in two:

* the *timbral* graph: the mel frames (any number) -> each timbral branch's features
  after pooling over bands, one column per frame;
* the *rest*: a patch and its timbral features -> the model's outputs (the temporal
  branches, the mid-end and the back-end, as before).

:class:`FrontSplitModel` runs the timbral graph over a track's frames once (in blocks of a
patch's length, with the context each side), over each patch's first and last frames
alone (for the padding), and the rest per patch. The outputs are the fast graph's bit for
bit (tests/test_frontsplit.py; 0.0 difference measured on 10 corpus tracks) at 2.34
instead of 3.12 CPU-ms per patch on one thread. The temporal branches (32-128 frames tall)
stay per patch: their padding reaches most of a patch's frames.

The two graphs are made with the fast graph (:func:`models.export.ensure_onnx`, which
needs the ``onnx`` package, as every conversion does) and recorded in its cache record;
at run time only onnxruntime is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.inference import OnnxModel, RuntimeOptions
from models.registry import ModelSpec

__all__ = ["FrontSplit", "FrontSplitModel", "split_front"]


@dataclass(frozen=True)
class FrontSplit:
    """The two graphs of one fast MusiCNN and how they join (stored in its cache record)."""

    timbral: str  # file name of the timbral graph, beside the fast graph
    rest: str  # file name of the rest
    features: tuple[str, ...]  # the timbral branches' outputs = the rest's extra inputs
    context: int  # frames each timbral convolution looks either way

    def to_record(self) -> dict:
        return {"timbral": self.timbral, "rest": self.rest, "features": list(self.features),
                "context": self.context}

    @classmethod
    def from_record(cls, record: dict | None) -> "FrontSplit | None":
        if not record:
            return None
        try:
            return cls(str(record["timbral"]), str(record["rest"]), tuple(map(str, record["features"])),
                       int(record["context"]))
        except (KeyError, TypeError, ValueError):
            return None


def split_front(fast_onnx: Path) -> FrontSplit:
    """Write the timbral graph and the rest beside ``fast_onnx``; return how they join.

    The timbral branches are the convolutions on the normalised mel patch whose kernels
    span more than one band, each followed by its pooling over bands and a squeeze; the
    graph's time axis is made free so that the timbral graph takes any number of frames.
    """
    import onnx
    from onnx import helper, utils

    model = onnx.load(str(fast_onnx))
    graph = model.graph
    source = graph.input[0].name
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {out: node for node in graph.node for out in node.output}
    mel_in = _follow(consumers, source, ("Unsqueeze", "BatchNormalization"))
    features, context = [], 0
    for conv in consumers.get(mel_in, []):
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        if conv.op_type != "Conv" or attrs["kernel_shape"][1] <= 1:
            continue  # a temporal branch (one band wide): stays in the rest
        out = _follow(consumers, conv.output[0], ("MaxPool", "Squeeze"))
        features.append(out)
        pads = attrs.get("pads", [0, 0, 0, 0])
        context = max(context, pads[0], pads[2], attrs["kernel_shape"][0] // 2)
    if not features or any(f not in producers for f in features):
        raise ValueError(f"{fast_onnx.name}: no timbral branch found")
    timbral = fast_onnx.with_name(fast_onnx.stem + ".timbral.onnx")
    rest = fast_onnx.with_name(fast_onnx.stem + ".rest.onnx")
    free = onnx.load(str(fast_onnx))
    free.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "frames"
    free_path = fast_onnx.with_name(fast_onnx.stem + ".free.onnx")
    onnx.save(free, str(free_path))
    try:
        utils.extract_model(str(free_path), str(timbral), [source], features)
    finally:
        free_path.unlink(missing_ok=True)
    outputs = [o.name for o in graph.output]
    utils.extract_model(str(fast_onnx), str(rest), [source, *features], outputs)
    return FrontSplit(timbral.name, rest.name, tuple(features), int(context))


def _follow(consumers: dict, name: str, ops: tuple[str, ...]) -> str:
    """The output reached from tensor ``name`` through single consumers of types ``ops``."""
    for op in ops:
        nodes = consumers.get(name, [])
        if len(nodes) != 1 or nodes[0].op_type != op:
            raise ValueError(f"expected one {op} after {name}")
        name = nodes[0].output[0]
    return name


class FrontSplitModel(OnnxModel):
    """A fast MusiCNN that also holds its split (:class:`FrontSplit`): :meth:`run` as
    before; :meth:`run_track` computes each frame's timbral features once."""

    shares_patches = True

    def __init__(self, spec: ModelSpec, onnx_file: Path, split: FrontSplit, options: RuntimeOptions):
        super().__init__(spec, onnx_file, options)
        folder = Path(onnx_file).parent
        self.split = split
        self._timbral = self._session(folder / split.timbral)
        self._rest = self._session(folder / split.rest)

    def run_track(self, patches: np.ndarray, hop: int) -> dict[str, np.ndarray]:
        """What :meth:`run` gives for one track's ``patches`` [n, frames, bands], cut every
        ``hop`` frames; plain :meth:`run` when they are not (checked) or do not overlap."""
        x = np.ascontiguousarray(patches, dtype=np.float32)
        n, length = x.shape[0], x.shape[1]
        edge = self.split.context
        if n < 2 or not 2 * edge < length - hop < length or not _cut_every(x, hop):
            return self.run(x)
        # The track's frames: the first patch, then what each next patch adds.
        mel = np.concatenate([x[0], x[1:, length - hop :].reshape(-1, x.shape[2])])
        whole = self._timbral_frames(mel, length)
        heads = self._timbral.run(self.split.features, {self.input_name: x[:, : 2 * edge]})
        tails = self._timbral.run(self.split.features, {self.input_name: x[:, length - 2 * edge :]})

        def patch_feeds(p: int) -> dict[str, np.ndarray]:
            feeds = {self.input_name: x[p : p + 1]}
            for name, frames, head, tail in zip(self.split.features, whole, heads, tails):
                f = frames[None, :, p * hop : p * hop + length].copy()
                f[..., :edge] = head[p, :, :edge]  # the patch's own zero padding at its ends
                f[..., length - edge :] = tail[p, :, edge:]
                feeds[name] = f
            return feeds

        return self._gather(self._rest.run(self._output_names, patch_feeds(p)) for p in range(n))

    def _timbral_frames(self, mel: np.ndarray, block: int) -> list[np.ndarray]:
        """Each timbral output [channels, frames] over all of ``mel``, run a block of
        frames at a time (activations stay in cache) with the context either side."""
        edge = self.split.context
        parts: list[list[np.ndarray]] = [[] for _ in self.split.features]
        total = mel.shape[0]
        for start in range(0, total, block):
            a, b = max(0, start - edge), min(total, start + block + edge)
            outs = self._timbral.run(self.split.features, {self.input_name: mel[None, a:b]})
            for acc, out in zip(parts, outs):
                acc.append(out[0, :, start - a : start - a + min(block, total - start)])
        return [np.concatenate(acc, axis=1) for acc in parts]


def _cut_every(x: np.ndarray, hop: int) -> bool:
    """Whether each patch continues the previous one ``hop`` frames later."""
    overlap = x.shape[1] - hop
    return bool(np.array_equal(x[1:, :overlap], x[:-1, hop:]))
