"""A faster MusiCNN with the same outputs: drop its dead channels (int8 measured, not used).

Longer than 500 lines: one recipe, its measured reasons (this docstring, ≈90 lines) and
its phases (one function each), which are read together. The int8 variants measured
below are built by ``bench/musicnn_int8.py``; the engine uses only the pruned rebuild.

Why not int8
------------
Most of MusiCNN's cost (≈1.40 GMAC per 187-frame patch, ≈26.6 GMAC per 30 s clip)
sits in five front-end convolutions that all read the single-channel mel patch:
two "timbral" ones (204 filters of 7×38 and 204 of 7×67, 81 % of the MACs) and
three "temporal" ones (51 filters each of 128×1, 64×1 and 32×1). onnxruntime's
static int8 quantisation (QDQ, per-channel S8 weights, U8 activations, MinMax
calibration on 361 patches of 19 tracks disjoint from the evaluation tracks):

* every Conv quantised: no faster (615 vs 635 ms per clip: the single-input-
  channel temporal convs get *slower* as QLinearConv) and the track-mean
  embedding falls to cosine 0.982, arousal/valence move by up to 0.16 (on 1-9);
* only the two timbral convs: 1.6× faster, track cosine ≥ 0.99975,
  arousal/valence within 0.040, MSD tags within 0.007;
* dynamic quantisation (ConvInteger): 1.06× faster, cosine 0.986: useless.

Int8 also changes the numbers from one CPU to the next: on AVX2 machines without
VNNI, MLAS's U8S8 kernel sums pairs of u8·s8 products in int16 (``vpmaddubsw``) and
can saturate unless the weights are quantised to 7 bits (``reduce_range``), so CI
on AVX2 would not reproduce what an AVX-512 VNNI machine computes.

The recipe: prune what the network does not use
-----------------------------------------------
The trained MusiCNN has mostly dead filters: their weights are 1e-10 to 1e-30 of
the live ones (L2 decay drove them to zero). Live filters per front-end conv:
23/204 (7×38), 14/204 (7×67), 3/51 (128×1), 7/51 (64×1), 17/51 (32×1); also 44 of
the 64 mid-end filters (left in: the mid-end is cheap). A dead filter's output is a constant, BN(ReLU(bias)), so
:func:`prune_musicnn` rebuilds the graph exactly:

1. Front-end convs keep only live filters. The rule is a worst-case bound, not a
   statistic: a filter is dropped when ``sum|w| * input_bound * |BN scale|``, the
   most its pooled, batch-normalised output can move for an input within
   ±``input_bound`` (10; the batch-normalised log-mel stays within about ±3), is
   ≤ ``tol`` (1e-6). Dropped filters have bounds ≤ 1.8e-8; the weakest kept one
   has 0.09, so the split is not a judgement call.
2. Each branch's ``Conv → ReLU → BatchNorm → MaxPool(over frequency)`` becomes
   ``Conv → MaxPool → ×sign → ReLU → BatchNorm``: max-pooling commutes with ReLU
   and with a per-channel affine map of positive slope; for the filters whose BN
   scale is negative (most of them) the conv is negated so the max-pool yields
   the minimum that the original picks. The elementwise work then runs on
   187 values per filter instead of 187×96.
3. Live filters of the temporal convs (same frequency width) are packed, sorted by
   kernel length, into convs whose filter count is a multiple of onnxruntime's
   NCHWc block (16 with AVX-512, 8 with AVX2), zero-padding shorter kernels
   around their centre; padding filters have zero weight everywhere downstream.
   With block 16 the max-pools then run in NCHWc too (no layout reorders).
4. The dead features' constant contribution to the first mid-end conv (including
   the edge frames where the zero time-padding cuts it short) becomes a constant
   [64, 187] map added to that conv; their contribution to the dense layer
   (mean and max over time of a constant) is folded into its bias.

Nothing is calibrated or approximated beyond the bound above; outputs stay within
float32 rounding of the original.

Measured (``python -m bench.quantize_musicnn``) on a 2-core AMD EPYC (Zen 4,
AVX-512 VNNI), onnxruntime 1.31.1, ORT_ENABLE_ALL, one session, a 30 s clip = 19
patches per ``run``, median of 9 runs, on an otherwise idle machine; parity on 20
evaluation tracks (14 from corpus/library, 6 from corpus/rendered, central 30 s;
380 patches) against essentia-tensorflow's ``TensorflowPredictMusiCNN`` and
``TensorflowPredict2D`` heads, which take 734 ms per clip on both cores:

========================  ======  ======  ==========  ==========  =======  =======
variant                   1 thr   2 thr   patch cos   track cos   emo Δ    tags Δ
                          ms      ms      min         min         max      max
========================  ======  ======  ==========  ==========  =======  =======
float, as converted        635     344    0.9999998   0.9999999   4.5e-6   6e-7
float, ENABLE_EXTENDED     670     364    (same)
dynamic int8               600     387    0.981       0.986       0.15     0.056
static int8, all convs     615    ≈350    0.978       0.982       0.16     0.049
static int8, timbral       400    ≈230    0.99898     0.99975     0.040    0.0071
**pruned (block 16)**       68      35    0.9999998   0.9999999   2.9e-6   3e-7
pruned (block 8)            81      42    (same)
pruned + int8 timbral       50      27    0.99898     0.99975     0.040    0.0071
same, reduce_range          51      26    0.99700     0.99846     0.071    0.027
========================  ======  ======  ==========  ==========  =======  =======

(2-thread figures of the int8 rows were taken with the other core partly busy.)
Batch size does not matter (pruned: 68 ms per clip at 1, 4, 19 or 64 patches per
run). So the recipe is 9.3× faster than the converted float model on one thread
(68 vs 635 ms), ≈21× less wall time than essentia-tensorflow (35 vs 734 ms on
two cores), and its outputs differ from the float model's only by float32
rounding. TempoCNN has no dead filters; this applies to MusiCNN only.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "PruneInfo",
    "quantize_musicnn",
    "prune_musicnn",
    "compare",
    "nchwc_block_size",
]

# Graph facts of Essentia's msd-musicnn-1 as converted by tf2onnx (models/export.py).
_MID_CONVS = ("conv2d_5", "conv2d_6", "conv2d_7")
_BN9 = "model/batch_normalization_9/batchnorm/"
_BN10 = "model/batch_normalization_10/batchnorm/"
_DENSE = "dense"
_DENSE1 = "dense_1"


@dataclass
class PruneInfo:
    """What :func:`prune_musicnn` kept."""

    live: list[int]  # live filters per front-end branch, in the original concat order
    total: list[int]  # filters per front-end branch
    convs: list[tuple[int, int]]  # (filters incl. padding, kernel rows) per front-end conv built
    block: int
    max_dropped_bound: float  # largest bound among dropped filters
    min_kept_bound: float  # smallest bound among kept filters
    macs_per_patch: int  # multiply-accumulates of the pruned graph's convs, padding included


def nchwc_block_size() -> int:
    """onnxruntime's NCHWc channel block on this CPU: 16 with AVX-512F, else 8."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as feats
        except ImportError:
            return 8
    return 16 if feats.get("AVX512F") else 8


def quantize_musicnn(
    float_onnx: Path,
    out: Path,
    calibration_patches: np.ndarray,
    *,
    block: int | None = None,
    min_cosine: float = 0.99999,
    max_check_patches: int = 57,
    tol: float = 1e-6,
) -> Path:
    """Write the fast MusiCNN for ``float_onnx`` (tf2onnx's msd-musicnn-1) to ``out``.

    The default recipe is :func:`prune_musicnn`: exact, float32, no calibration
    needed (see the module docstring for why not int8, and the measured figures).
    ``calibration_patches`` ([n, 187, 96] mel patches from tracks not used to
    evaluate the result) serve as a check: on the first ``max_check_patches`` of
    them every per-patch embedding must keep cosine ≥ ``min_cosine`` (the rebuild
    gives ≈1 - 2e-7) against ``float_onnx``, else
    ``ValueError``. ``tol`` is :func:`prune_musicnn`'s bound for dropping a filter.

    Tensor names are kept (``model/Placeholder:0`` in; ``model/dense/BiasAdd:0`` and
    ``model/Sigmoid:0`` out), so the result drops into
    :class:`models.inference.OnnxModel` unchanged. ``out`` is written atomically.
    """
    float_onnx, out = Path(float_onnx), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    patches = np.ascontiguousarray(calibration_patches, dtype=np.float32)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pruned = Path(tmp) / "pruned.onnx"
        info = prune_musicnn(float_onnx, pruned, block=block, tol=tol)
        log.info("musicnn pruned: live filters %s of %s, %.0f MMAC/patch", info.live, info.total, info.macs_per_patch / 1e6)
        check = patches[:max_check_patches]
        if len(check):
            stats = compare(float_onnx, pruned, check)
            if stats["patch_cos_min"] < min_cosine:
                raise ValueError(
                    f"optimised MusiCNN drifted from {float_onnx.name}: per-patch embedding "
                    f"cosine {stats['patch_cos_min']:.6f} < {min_cosine}"
                )
        os.replace(pruned, out)
    return out


# --------------------------------------------------------------------------- pruning


def _pack(channels: list[tuple[int, int, int]], block: int) -> list[list[tuple[int, int, int]]]:
    """Split (kernel_rows, branch, filter) items into convs with the fewest padded MACs.

    Items are sorted by kernel length (longest first) and cut into runs; a run costs
    ``ceil(n / block) * block * longest kernel``. Runs are contiguous in that order,
    so an exhaustive search over cut points is cheap (tens of items at most).
    """
    items = sorted(channels, key=lambda c: (-c[0], c[1], c[2]))
    n = len(items)
    if block <= 1:
        # no NCHWc padding: one conv per distinct kernel length
        return [list(g) for _, g in itertools.groupby(items, key=lambda c: c[0])]
    best: list[float] = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            cost = best[i] + -(-(j - i) // block) * block * items[i][0] + 1e-3  # fewer convs on ties
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs, j = [], n
    while j:
        runs.append(items[cut[j] : j])
        j = cut[j]
    return runs[::-1]


def prune_musicnn(
    float_onnx: Path,
    out: Path,
    *,
    block: int | None = None,
    tol: float = 1e-6,
    input_bound: float = 10.0,
) -> PruneInfo:
    """Rebuild MusiCNN without its dead filters (exact up to ``tol``); see the module doc.

    ``block``: the NCHWc block to pad filter counts to (default: this CPU's,
    :func:`nchwc_block_size`; 0 or 1 = no padding). A model built with 16 runs
    correctly anywhere, just with some padding waste where the block is 8.

    The phases, one function each: read the converted graph (:class:`_Source`,
    :func:`_layout`), find the live front-end filters (:func:`_live_filters`), then
    build the front end (:func:`_build_front_end`), the mid end (:func:`_build_mid_end`)
    and the back end (:func:`_build_back_end`) of the new graph, and save it.
    """
    block = nchwc_block_size() if block is None else int(block)
    src = _Source.load(Path(float_onnx))
    layout = _layout(src)
    fe = _live_filters(src, layout.branches, tol=tol, input_bound=input_bound)
    mids = [src.conv_with_kernel(p) for p in _MID_CONVS]

    nb = _Builder()
    x = nb.node("Unsqueeze", [layout.input, nb.const("axis1", [1], np.int64)], "x_nchw")
    p0 = src.bn_params(layout.input_bn)
    x = nb.node("BatchNormalization", [x] + [nb.const(f"bn0_{k}", v) for k, v in zip("gbmv", p0[:4])], "x_bn",
                epsilon=p0[4])
    front = _build_front_end(nb, src, x, fe.branches, block=block, frames=layout.frames, bands=layout.bands)
    mid_out, n_mid, mid_macs = _build_mid_end(nb, src, front, mids, fe, frames=layout.frames)
    _build_back_end(nb, src, layout, front, mid_out, n_mid, fe)
    _save(nb, src, layout, out)
    return PruneInfo(
        live=[len(f.live) for f in fe.branches],
        total=[f.w.shape[0] for f in fe.branches],
        convs=front.built,
        block=block,
        max_dropped_bound=fe.max_dropped,
        min_kept_bound=fe.min_kept,
        macs_per_patch=int(front.macs + mid_macs),
    )


class _Source:
    """The converted MusiCNN graph, indexed for reading: weights (float64), producers, consumers."""

    def __init__(self, name: str, model) -> None:
        from onnx import numpy_helper as nh

        self.name, self.model, self.graph = name, model, model.graph
        self.weights = {i.name: nh.to_array(i).astype(np.float64) for i in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    @classmethod
    def load(cls, path: Path) -> "_Source":
        import onnx

        return cls(path.name, onnx.load(str(path)))

    def fail(self, msg: str) -> NoReturn:
        raise ValueError(f"{self.name} is not the expected MusiCNN graph: {msg}")

    @staticmethod
    def attr(n, k, default=None):
        from onnx import helper

        for a in n.attribute:
            if a.name == k:
                return helper.get_attribute_value(a)
        return default

    def bn_after(self, conv):
        relu = self.consumers.get(conv.output[0], [None])[0]
        bn = self.consumers.get(relu.output[0], [None])[0] if relu is not None else None
        if relu is None or relu.op_type != "Relu" or bn is None or bn.op_type != "BatchNormalization":
            self.fail(f"{conv.name} is not followed by Relu -> BatchNormalization")
        return bn

    def bn_params(self, bn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """(gamma, beta, mean, var, epsilon) of a BatchNormalization node."""
        gam, bet, mu, var = (self.weights[x] for x in bn.input[1:])
        return gam, bet, mu, var, float(self.attr(bn, "epsilon", 1e-5))

    def conv_with_kernel(self, prefix: str):
        name = f"{prefix}/kernel/read:0"
        n = next((n for n in self.graph.node if n.op_type == "Conv" and n.input[1] == name), None)
        if n is None:
            self.fail(f"no conv with kernel {name}")
        return n


@dataclass
class _Layout:
    """Where things are in the converted graph."""

    input: str  # the mel patch, [batch, frames, bands]
    frames: int
    bands: int
    branches: list  # the five front-end Conv nodes, in concat order
    input_bn: object  # the BatchNormalization of the input patch
    embeddings: str  # output name, model/dense/BiasAdd
    tags: str | None  # output name of the tag sigmoid


def _layout(src: _Source) -> _Layout:
    """Find the input, the five front-end branches and the outputs; fail on any other graph."""
    g, prod = src.graph, src.producer
    if len(g.input) != 1 or len(g.output) != 2:
        src.fail("expected one input and two outputs (embeddings, tags)")
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    if len(dims) != 3 or not dims[1] or not dims[2]:
        src.fail(f"input shape {dims} is not [batch, frames, bands]")
    concat = next((n for n in g.node if n.op_type == "Concat"), None)
    if concat is None or len(concat.input) != 5:
        src.fail("no 5-way front-end concat")
    branches = []
    for t in concat.input:
        n = prod[t]
        while n.op_type != "Conv":
            if n.op_type not in ("Squeeze", "MaxPool", "BatchNormalization", "Relu"):
                src.fail(f"unexpected {n.op_type} in a front-end branch")
            n = prod[n.input[0]]
        branches.append(n)
    bn0 = prod[branches[0].input[0]]
    while bn0.op_type != "BatchNormalization":
        bn0 = prod[bn0.input[0]]
    emb_out = next((o.name for o in g.output if "dense/BiasAdd" in o.name), None)
    tag_out = next((o.name for o in g.output if o.name != emb_out), None)
    if emb_out is None:
        src.fail("no model/dense/BiasAdd output")
    return _Layout(g.input[0].name, dims[1], dims[2], branches, bn0, emb_out, tag_out)


@dataclass
class _Branch:
    """One front-end conv: weights, its batch norm, which filters live, where its features start."""

    w: np.ndarray  # [filters, 1, kernel rows, kernel width]
    b: np.ndarray  # [filters]
    bn: tuple  # (gamma, beta, mean, var, epsilon)
    live: np.ndarray  # indices of the live filters
    sign: np.ndarray  # -1 where the BN scale is negative (the conv is negated), else 1
    pads: list  # [top, left, bottom, right]
    off: int  # index of its first feature in the front-end concat


@dataclass
class _FrontEndFilters:
    branches: list[_Branch]
    const_feats: np.ndarray  # [n_feats] the constant output of each dead filter (0 for live ones)
    n_feats: int  # filters of all branches
    dead_feats: np.ndarray  # indices of the dead features in the concat
    max_dropped: float  # largest bound among dropped filters
    min_kept: float  # smallest bound among kept filters


def _live_filters(src: _Source, convs: list, *, tol: float, input_bound: float) -> _FrontEndFilters:
    """Which front-end filters live: the worst-case bound rule of the module docstring, step 1."""
    fe = []
    const_feats = []
    offset = 0
    max_dropped, min_kept = 0.0, float("inf")
    for conv in convs:
        w, b = src.weights[conv.input[1]], src.weights[conv.input[2]]
        if (w.shape[1] != 1 or src.attr(conv, "group", 1) != 1
                or list(src.attr(conv, "strides", [1, 1])) != [1, 1]):
            src.fail(f"front-end conv {conv.name} is not a single-input-channel stride-1 conv")
        p = src.bn_params(src.bn_after(conv))
        scale = p[0] / np.sqrt(p[3] + p[4])
        bound = np.abs(w).reshape(w.shape[0], -1).sum(1) * input_bound * np.abs(scale)
        live = np.nonzero(bound > tol)[0]
        dead = bound <= tol
        if dead.any():
            max_dropped = max(max_dropped, float(bound[dead].max()))
        if len(live):
            min_kept = min(min_kept, float(bound[live].min()))
        dead_value = p[0] * (np.maximum(b, 0.0) - p[2]) / np.sqrt(p[3] + p[4]) + p[1]  # BN(ReLU(b))
        const_feats.append(np.where(dead, dead_value, 0.0))
        pads = list(src.attr(conv, "pads", [0, 0, 0, 0]))
        if pads[1] or pads[3]:
            src.fail("front-end convs must not pad the frequency axis")
        fe.append(_Branch(w, b, p, live, np.where(scale < 0, -1.0, 1.0), pads, offset))
        offset += w.shape[0]
    live_all = np.concatenate([f.off + f.live for f in fe])
    return _FrontEndFilters(fe, np.concatenate(const_feats), offset, np.setdiff1d(np.arange(offset), live_all),
                            max_dropped, min_kept)


class _Builder:
    """The new graph's nodes and initializers, in the order they are made."""

    def __init__(self) -> None:
        self.inits: list = []
        self.nodes: list = []

    def const(self, name, arr, dtype=np.float32):
        from onnx import numpy_helper as nh

        self.inits.append(nh.from_array(np.asarray(arr).astype(dtype), name))
        return name

    def node(self, op, ins, out_name, **kw):
        from onnx import helper

        self.nodes.append(helper.make_node(op, ins, [out_name], name=out_name, **kw))
        return out_name


@dataclass
class _FrontEnd:
    out: str  # the front end's output, [batch, live filters incl. padding, frames]
    feat_map: np.ndarray  # original concat index of each output feature; -1 for padding
    built: list[tuple[int, int]]  # (filters incl. padding, kernel rows) per conv built
    macs: int


def _build_front_end(nb: _Builder, src: _Source, x: str, fe: list[_Branch], *, block: int, frames: int,
                     bands: int) -> _FrontEnd:
    """Live filters packed by frequency width, then kernel length; max-pool before the
    elementwise work (steps 2 and 3 of the module docstring)."""
    by_width: dict[int, list[tuple[int, int, int]]] = {}
    for bi, f in enumerate(fe):
        by_width.setdefault(f.w.shape[3], []).extend((f.w.shape[2], bi, int(c)) for c in f.live)
    feat_map: list[int] = []
    signs: list[float] = []
    bnp: list[list[float]] = [[], [], [], []]
    eps = fe[0].bn[4]
    if any(abs(f.bn[4] - eps) > 1e-12 for f in fe):
        src.fail("front-end batch norms use different epsilons")
    pooled = []
    built = []
    macs = 0
    for width in sorted(by_width, reverse=True):
        for run in _pack(by_width[width], block):
            top = max(fe[bi].pads[0] for _, bi, _ in run)
            bottom = max(fe[bi].pads[2] for _, bi, _ in run)
            k_rows = top + bottom + 1
            ws, bs = [], []
            for k, bi, c in run:
                f = fe[bi]
                if f.pads[0] + f.pads[2] + 1 != k:
                    src.fail("front-end conv padding is not 'same' along time")
                s = f.sign[c]
                wk = np.zeros((1, k_rows, width))
                o = top - f.pads[0]
                wk[:, o : o + k] = f.w[c] * s
                ws.append(wk)
                bs.append(f.b[c] * s)
                feat_map.append(f.off + c)
                signs.append(s)
                for q in range(4):
                    bnp[q].append(f.bn[q][c])
            n_pad = (-len(run)) % block if block > 1 else 0
            for _ in range(n_pad):
                ws.append(np.zeros((1, k_rows, width)))
                bs.append(0.0)
                feat_map.append(-1)
                signs.append(1.0)
                for q, v in enumerate((0.0, 0.0, 0.0, 1.0)):
                    bnp[q].append(v)
            wt = np.stack(ws)
            i = len(built)
            y = nb.node(
                "Conv",
                [x, nb.const(f"fe{i}_w", wt), nb.const(f"fe{i}_b", bs)],
                f"fe{i}_conv",
                kernel_shape=[k_rows, width],
                pads=[top, 0, bottom, 0],
                strides=[1, 1],
            )
            f_out = bands - width + 1
            y = nb.node("MaxPool", [y], f"fe{i}_pool", kernel_shape=[1, f_out], strides=[1, f_out])
            y = nb.node("Squeeze", [y, nb.const(f"fe{i}_axis", [3], np.int64)], f"fe{i}_squeeze")
            pooled.append(y)
            built.append((wt.shape[0], k_rows))
            macs += wt.shape[0] * k_rows * width * frames * f_out
    F = nb.node("Concat", pooled, "fe_concat", axis=1) if len(pooled) > 1 else pooled[0]
    F = nb.node("Mul", [F, nb.const("fe_sign", np.array(signs)[:, None])], "fe_signed")
    F = nb.node("Relu", [F], "fe_relu")
    F = nb.node("BatchNormalization", [F] + [nb.const(f"fe_bn_{k}", v) for k, v in zip("gbmv", bnp)], "fe_out",
                epsilon=eps)
    return _FrontEnd(F, np.array(feat_map), built, macs)


def _build_mid_end(nb: _Builder, src: _Source, front: _FrontEnd, mids: list, fe: _FrontEndFilters, *,
                   frames: int) -> tuple[list[str], int, int]:
    """The three mid-end convs; the first reads the live features plus a constant map
    for the dead ones (step 4 of the module docstring). Returns (outputs, filters, MACs)."""
    W_, T, F = src.weights, frames, front.out
    feat_map_a = front.feat_map
    valid = feat_map_a >= 0
    n_live = len(feat_map_a)
    c5 = mids[0]
    w5, b5 = W_[c5.input[1]], W_[c5.input[2]]
    pads5 = list(src.attr(c5, "pads"))
    kt = w5.shape[2]
    if w5.shape[1] != 1 or w5.shape[3] != fe.n_feats or pads5[1] or pads5[3]:
        src.fail("first mid-end conv does not span the front-end features")
    padded = np.pad(np.repeat(fe.const_feats[:, None], T, 1), ((0, 0), (pads5[0], pads5[2])))
    c5_map = np.repeat(b5[:, None], T, 1)
    for dt in range(kt):
        c5_map += w5[:, 0, dt, :] @ padded[:, dt : dt + T]
    w5r = np.zeros((w5.shape[0], n_live, kt))
    w5r[:, valid, :] = np.transpose(w5[:, 0][:, :, feat_map_a[valid]], (0, 2, 1))
    macs = w5.shape[0] * n_live * kt * T
    prev, prev_channels = F, n_live
    mids_out = []
    for j, c in enumerate(mids):
        w = W_[c.input[1]]
        pj = src.bn_params(src.bn_after(c))
        if j == 0:
            y = nb.node("Conv", [F, nb.const("mid0_w", w5r)], "mid0_conv", kernel_shape=[kt], pads=[pads5[0], pads5[2]])
            y = nb.node("Add", [y, nb.const("mid0_const", c5_map)], "mid0_add")
        else:
            pads_j = list(src.attr(c, "pads"))
            if w.shape[1] != 1 or w.shape[3] != prev_channels or pads_j[1] or pads_j[3]:
                src.fail(f"mid-end conv {c.name} has an unexpected shape")
            y = nb.node(
                "Conv",
                [prev, nb.const(f"mid{j}_w", np.transpose(w[:, 0], (0, 2, 1))), nb.const(f"mid{j}_b", W_[c.input[2]])],
                f"mid{j}_conv",
                kernel_shape=[w.shape[2]],
                pads=[pads_j[0], pads_j[2]],
            )
            macs += w.shape[0] * w.shape[3] * w.shape[2] * T
        y = nb.node("Relu", [y], f"mid{j}_relu")
        y = nb.node("BatchNormalization", [y] + [nb.const(f"mid{j}_bn_{k}", v) for k, v in zip("gbmv", pj[:4])],
                    f"mid{j}_bn", epsilon=pj[4])
        if j > 0:
            y = nb.node("Add", [y, prev], f"mid{j}_res")
        mids_out.append(y)
        prev = y
        prev_channels = w.shape[0]
    return mids_out, w5.shape[0], macs


def _build_back_end(nb: _Builder, src: _Source, layout: _Layout, front: _FrontEnd, mids_out: list[str], n_mid: int,
                    fe: _FrontEndFilters) -> None:
    """Max and mean over time, batch norm, dense (the dead features folded into its
    bias, step 4), and the tag layers when the graph has them."""
    W_ = src.weights
    nF, kF, dead_feats, feat_map_a = fe.n_feats, fe.const_feats, fe.dead_feats, front.feat_map
    mul9, sub9 = W_[_BN9 + "mul:0"], W_[_BN9 + "sub:0"]
    wd, bd = W_[f"{_DENSE}/kernel/read:0"], W_[f"{_DENSE}/bias/read:0"]
    n_feat = nF + 3 * n_mid
    if wd.shape[0] != 2 * n_feat or mul9.shape[0] != 2 * n_feat:
        src.fail("dense layer does not read [max, mean] of every feature")
    G = nb.node("Concat", [front.out] + mids_out, "features", axis=1)
    mx = nb.node("ReduceMax", [G], "feat_max", axes=[2], keepdims=0)
    mn = nb.node("ReduceMean", [G], "feat_mean", axes=[2], keepdims=0)
    H = nb.node("Concat", [mx, mn], "pooled", axis=1)
    fidx = np.concatenate([feat_map_a, nF + np.arange(3 * n_mid)])
    ok = np.concatenate([fidx >= 0] * 2)
    rows = np.concatenate([2 * fidx, 2 * fidx + 1])  # flatten order of [753, 2] is (feature, {max, mean})
    wd2 = np.zeros((len(rows), wd.shape[1]))
    wd2[ok] = wd[rows[ok]]
    m9 = np.where(ok, mul9[np.where(ok, rows, 0)], 0.0)
    s9 = np.where(ok, sub9[np.where(ok, rows, 0)], 0.0)
    dead_in = np.zeros(2 * n_feat)
    for r in (2 * dead_feats, 2 * dead_feats + 1):
        dead_in[r] = mul9[r] * kF[dead_feats] + sub9[r]
    bd2 = bd + dead_in @ wd
    H = nb.node("Mul", [H, nb.const("bn9_mul", m9)], "pooled_mul")
    H = nb.node("Add", [H, nb.const("bn9_add", s9)], "pooled_bn")
    e = nb.node("MatMul", [H, nb.const("dense_w", wd2)], "dense_matmul")
    e = nb.node("Add", [e, nb.const("dense_b", bd2)], layout.embeddings)
    if layout.tags is not None:
        w1 = W_[f"{_DENSE1}/kernel/read:0"]
        r = nb.node("Relu", [e], "dense_relu")
        r = nb.node("Mul", [r, nb.const("bn10_mul", W_[_BN10 + "mul:0"])], "bn10_mul_out")
        r = nb.node("Add", [r, nb.const("bn10_add", W_[_BN10 + "sub:0"])], "bn10_out")
        lg = nb.node("MatMul", [r, nb.const("dense1_w", w1)], "dense1_matmul")
        lg = nb.node("Add", [lg, nb.const("dense1_b", W_[f"{_DENSE1}/bias/read:0"])], "logits")
        nb.node("Sigmoid", [lg], layout.tags)


def _save(nb: _Builder, src: _Source, layout: _Layout, out: Path) -> None:
    """Check the new graph (same input and output names and shapes) and write it to ``out``."""
    import onnx
    from onnx import TensorProto, helper

    W_ = src.weights
    inputs = [helper.make_tensor_value_info(layout.input, TensorProto.FLOAT, ["batch", layout.frames, layout.bands])]
    outputs = [helper.make_tensor_value_info(layout.embeddings, TensorProto.FLOAT,
                                             ["batch", W_[f"{_DENSE}/kernel/read:0"].shape[1]])]
    if layout.tags is not None:
        outputs.append(helper.make_tensor_value_info(layout.tags, TensorProto.FLOAT,
                                                     ["batch", W_[f"{_DENSE1}/kernel/read:0"].shape[1]]))
    graph = helper.make_graph(nb.nodes, "msd_musicnn_pruned", inputs, outputs, nb.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="music-engine models.quantize", ir_version=8
    )
    onnx.checker.check_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))


# --------------------------------------------------------------------------- checking


def compare(reference_onnx: Path, candidate_onnx: Path, patches: np.ndarray, batch: int = 19) -> dict[str, float]:
    """Per-patch embedding cosine and tag difference of two MusiCNN ONNX files on ``patches``."""
    import onnxruntime as ort

    def session(path):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = 1
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    ref, cand = session(reference_onnx), session(candidate_onnx)
    names = [o.name for o in ref.get_outputs()]
    inp = ref.get_inputs()[0].name
    cos, dtag = [], 0.0
    for i in range(0, len(patches), batch):
        x = patches[i : i + batch]
        a = ref.run(names, {inp: x})
        b = cand.run(names, {inp: x})
        ea, eb = a[0], b[0]
        cos.append((ea * eb).sum(1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1)))
        if len(a) > 1:
            dtag = max(dtag, float(np.abs(a[1] - b[1]).max()))
    c = np.concatenate(cos) if cos else np.ones(1)
    return {"patch_cos_min": float(c.min()), "patch_cos_mean": float(c.mean()), "tags_max_abs": dtag}
