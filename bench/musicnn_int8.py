"""Static int8 quantisation of MusiCNN's convs: the variants ``bench.quantize_musicnn`` measures.

Not used by the engine: :mod:`models.quantize` says why (outputs drift, track-mean
cosine 0.9997 and arousal/valence by 0.04, and differ from one CPU to the next) and
holds the measured table.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np


class _PatchReader:
    """onnxruntime CalibrationDataReader over fixed patches, 19 at a time (one 30 s clip)."""

    def __init__(self, input_name: str, patches: np.ndarray, batch: int = 19):
        self.input_name, self.patches, self.batch, self.i = input_name, patches, batch, 0

    def get_next(self):
        if self.i >= len(self.patches):
            return None
        x = self.patches[self.i : self.i + self.batch]
        self.i += self.batch
        return {self.input_name: x}

    def rewind(self):
        self.i = 0


def int8_convs(
    model_onnx: Path,
    out: Path,
    calibration_patches: np.ndarray,
    *,
    nodes: Sequence[str] | None = None,
    reduce_range: bool = False,
    per_channel: bool = True,
) -> Path:
    """Static int8 (QDQ, per-channel S8 weights, U8 activations, MinMax) of some convs.

    ``nodes`` defaults to the convs whose kernel spans more than one frequency band
    (MusiCNN's timbral convs, in the original or the pruned graph): the only ones
    int8 makes faster. ``reduce_range=True`` (7-bit weights) is what AVX2 CPUs
    without VNNI need to avoid int16 saturation in MLAS's U8S8 kernel.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    m = onnx.load(str(model_onnx))
    inits = {i.name: i for i in m.graph.initializer}
    for i, n in enumerate(m.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"
    if nodes is None:
        # convs that read the (batch-normalised) mel patch and span several bands
        n_bands = m.graph.input[0].type.tensor_type.shape.dim[-1].dim_value
        readers: dict[str, int] = {}
        for n in m.graph.node:
            if n.op_type == "Conv":
                readers[n.input[0]] = readers.get(n.input[0], 0) + 1
        nodes = []
        for n in m.graph.node:
            w = inits.get(n.input[1]) if n.op_type == "Conv" else None
            if w is not None and len(w.dims) == 4 and w.dims[1] == 1 and 1 < w.dims[3] < n_bands and readers[n.input[0]] > 1:
                nodes.append(n.name)

    class Reader(_PatchReader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / "named.onnx"
        onnx.save(m, str(named))
        quantize_static(
            str(named),
            str(out),
            Reader(m.graph.input[0].name, np.ascontiguousarray(calibration_patches, dtype=np.float32)),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            nodes_to_quantize=list(nodes),
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"CalibMaxIntermediateOutputs": 2},
        )
    return Path(out)
