"""A faster MusiCNN with the same outputs: drop its dead channels (int8 measured, not used).

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
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "PruneInfo",
    "quantize_musicnn",
    "prune_musicnn",
    "int8_convs",
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
    int8: bool = False,
    block: int | None = None,
    min_cosine: float | None = None,
    max_check_patches: int = 57,
    tol: float = 1e-6,
) -> Path:
    """Write the fast MusiCNN for ``float_onnx`` (tf2onnx's msd-musicnn-1) to ``out``.

    The default recipe is :func:`prune_musicnn`: exact, float32, no calibration
    needed (see the module docstring for why not int8, and the measured figures).
    ``calibration_patches`` ([n, 187, 96] mel patches from tracks not used to
    evaluate the result) serve as a check: on the first ``max_check_patches`` of
    them every per-patch embedding must keep cosine ≥ ``min_cosine`` (default
    0.99999; the rebuild gives ≈1 - 2e-7) against ``float_onnx``, else
    ``ValueError``. ``tol`` is :func:`prune_musicnn`'s bound for dropping a filter. With ``int8=True`` the pruned model's two timbral convs are also
    statically quantised on all of them (:func:`int8_convs`): ≈25 % less time on an
    AVX-512 VNNI CPU, but track-mean cosine ≈0.9997, arousal/valence within ≈0.04,
    and CPU-dependent numbers (default ``min_cosine`` then 0.995).

    Tensor names are kept (``model/Placeholder:0`` in; ``model/dense/BiasAdd:0`` and
    ``model/Sigmoid:0`` out), so the result drops into
    :class:`models.inference.OnnxModel` unchanged. ``out`` is written atomically.
    """
    float_onnx, out = Path(float_onnx), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    patches = np.ascontiguousarray(calibration_patches, dtype=np.float32)
    if min_cosine is None:
        min_cosine = 0.995 if int8 else 0.99999
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pruned = Path(tmp) / "pruned.onnx"
        info = prune_musicnn(float_onnx, pruned, block=block, tol=tol)
        log.info("musicnn pruned: live filters %s of %s, %.0f MMAC/patch", info.live, info.total, info.macs_per_patch / 1e6)
        result = pruned
        if int8:
            if not len(patches):
                raise ValueError("int8 quantisation needs calibration patches")
            result = Path(tmp) / "int8.onnx"
            int8_convs(pruned, result, patches)
        check = patches[:max_check_patches]
        if len(check):
            stats = compare(float_onnx, result, check)
            if stats["patch_cos_min"] < min_cosine:
                raise ValueError(
                    f"optimised MusiCNN drifted from {float_onnx.name}: per-patch embedding "
                    f"cosine {stats['patch_cos_min']:.6f} < {min_cosine}"
                )
        os.replace(result, out)
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
    """
    import onnx
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    block = nchwc_block_size() if block is None else int(block)
    m = onnx.load(str(float_onnx))
    g = m.graph
    W_ = {i.name: nh.to_array(i).astype(np.float64) for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)

    def fail(msg: str):
        raise ValueError(f"{Path(float_onnx).name} is not the expected MusiCNN graph: {msg}")

    def attr(n, k, default=None):
        for a in n.attribute:
            if a.name == k:
                return helper.get_attribute_value(a)
        return default

    def bn_after(conv):
        relu = cons.get(conv.output[0], [None])[0]
        bn = cons.get(relu.output[0], [None])[0] if relu is not None else None
        if relu is None or relu.op_type != "Relu" or bn is None or bn.op_type != "BatchNormalization":
            fail(f"{conv.name} is not followed by Relu -> BatchNormalization")
        return bn

    def bn_params(bn):
        gam, bet, mu, var = (W_[x] for x in bn.input[1:])
        return gam, bet, mu, var, float(attr(bn, "epsilon", 1e-5))

    # ---- read the source graph
    if len(g.input) != 1 or len(g.output) != 2:
        fail("expected one input and two outputs (embeddings, tags)")
    in_name = g.input[0].name
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    if len(dims) != 3 or not dims[1] or not dims[2]:
        fail(f"input shape {dims} is not [batch, frames, bands]")
    T, n_bands = dims[1], dims[2]
    concat = next((n for n in g.node if n.op_type == "Concat"), None)
    if concat is None or len(concat.input) != 5:
        fail("no 5-way front-end concat")
    branches = []
    for t in concat.input:
        n = prod[t]
        while n.op_type != "Conv":
            if n.op_type not in ("Squeeze", "MaxPool", "BatchNormalization", "Relu"):
                fail(f"unexpected {n.op_type} in a front-end branch")
            n = prod[n.input[0]]
        branches.append(n)
    bn0 = prod[branches[0].input[0]]
    while bn0.op_type != "BatchNormalization":
        bn0 = prod[bn0.input[0]]
    emb_out = next((o.name for o in g.output if "dense/BiasAdd" in o.name), None)
    tag_out = next((o.name for o in g.output if o.name != emb_out), None)
    if emb_out is None:
        fail("no model/dense/BiasAdd output")

    fe = []
    const_feats = []
    offset = 0
    max_dropped, min_kept = 0.0, float("inf")
    for conv in branches:
        w, b = W_[conv.input[1]], W_[conv.input[2]]
        if w.shape[1] != 1 or attr(conv, "group", 1) != 1 or list(attr(conv, "strides", [1, 1])) != [1, 1]:
            fail(f"front-end conv {conv.name} is not a single-input-channel stride-1 conv")
        p = bn_params(bn_after(conv))
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
        pads = list(attr(conv, "pads", [0, 0, 0, 0]))
        if pads[1] or pads[3]:
            fail("front-end convs must not pad the frequency axis")
        fe.append(dict(w=w, b=b, bn=p, live=live, sign=np.where(scale < 0, -1.0, 1.0), pads=pads, off=offset))
        offset += w.shape[0]
    kF = np.concatenate(const_feats)
    nF = offset
    live_all = np.concatenate([f["off"] + f["live"] for f in fe])
    dead_feats = np.setdiff1d(np.arange(nF), live_all)

    def conv_with_kernel(prefix: str):
        name = f"{prefix}/kernel/read:0"
        n = next((n for n in g.node if n.op_type == "Conv" and n.input[1] == name), None)
        if n is None:
            fail(f"no conv with kernel {name}")
        return n

    mids = [conv_with_kernel(p) for p in _MID_CONVS]

    # ---- build the new graph
    inits, nodes = [], []

    def const(name, arr, dtype=np.float32):
        inits.append(nh.from_array(np.asarray(arr).astype(dtype), name))
        return name

    def node(op, ins, out_name, **kw):
        nodes.append(helper.make_node(op, ins, [out_name], name=out_name, **kw))
        return out_name

    x = node("Unsqueeze", [in_name, const("axis1", [1], np.int64)], "x_nchw")
    p0 = bn_params(bn0)
    x = node("BatchNormalization", [x] + [const(f"bn0_{k}", v) for k, v in zip("gbmv", p0[:4])], "x_bn", epsilon=p0[4])

    # front-end: pack live filters by frequency width, then by kernel length
    by_width: dict[int, list[tuple[int, int, int]]] = {}
    for bi, f in enumerate(fe):
        by_width.setdefault(f["w"].shape[3], []).extend((f["w"].shape[2], bi, int(c)) for c in f["live"])
    feat_map: list[int] = []
    signs: list[float] = []
    bnp: list[list[float]] = [[], [], [], []]
    eps = fe[0]["bn"][4]
    if any(abs(f["bn"][4] - eps) > 1e-12 for f in fe):
        fail("front-end batch norms use different epsilons")
    pooled = []
    built = []
    macs = 0
    for width in sorted(by_width, reverse=True):
        for run in _pack(by_width[width], block):
            top = max(fe[bi]["pads"][0] for _, bi, _ in run)
            bottom = max(fe[bi]["pads"][2] for _, bi, _ in run)
            k_rows = top + bottom + 1
            ws, bs = [], []
            for k, bi, c in run:
                f = fe[bi]
                if f["pads"][0] + f["pads"][2] + 1 != k:
                    fail("front-end conv padding is not 'same' along time")
                s = f["sign"][c]
                wk = np.zeros((1, k_rows, width))
                o = top - f["pads"][0]
                wk[:, o : o + k] = f["w"][c] * s
                ws.append(wk)
                bs.append(f["b"][c] * s)
                feat_map.append(f["off"] + c)
                signs.append(s)
                for q in range(4):
                    bnp[q].append(f["bn"][q][c])
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
            y = node(
                "Conv",
                [x, const(f"fe{i}_w", wt), const(f"fe{i}_b", bs)],
                f"fe{i}_conv",
                kernel_shape=[k_rows, width],
                pads=[top, 0, bottom, 0],
                strides=[1, 1],
            )
            f_out = n_bands - width + 1
            y = node("MaxPool", [y], f"fe{i}_pool", kernel_shape=[1, f_out], strides=[1, f_out])
            y = node("Squeeze", [y, const(f"fe{i}_axis", [3], np.int64)], f"fe{i}_squeeze")
            pooled.append(y)
            built.append((wt.shape[0], k_rows))
            macs += wt.shape[0] * k_rows * width * T * f_out
    feat_map_a = np.array(feat_map)
    valid = feat_map_a >= 0
    n_live = len(feat_map_a)
    F = node("Concat", pooled, "fe_concat", axis=1) if len(pooled) > 1 else pooled[0]
    F = node("Mul", [F, const("fe_sign", np.array(signs)[:, None])], "fe_signed")
    F = node("Relu", [F], "fe_relu")
    F = node("BatchNormalization", [F] + [const(f"fe_bn_{k}", v) for k, v in zip("gbmv", bnp)], "fe_out", epsilon=eps)

    # mid-end: first conv reads live features + a constant map for the dead ones
    c5 = mids[0]
    w5, b5 = W_[c5.input[1]], W_[c5.input[2]]
    pads5 = list(attr(c5, "pads"))
    kt = w5.shape[2]
    if w5.shape[1] != 1 or w5.shape[3] != nF or pads5[1] or pads5[3]:
        fail("first mid-end conv does not span the front-end features")
    padded = np.pad(np.repeat(kF[:, None], T, 1), ((0, 0), (pads5[0], pads5[2])))
    c5_map = np.repeat(b5[:, None], T, 1)
    for dt in range(kt):
        c5_map += w5[:, 0, dt, :] @ padded[:, dt : dt + T]
    w5r = np.zeros((w5.shape[0], n_live, kt))
    w5r[:, valid, :] = np.transpose(w5[:, 0][:, :, feat_map_a[valid]], (0, 2, 1))
    macs += w5.shape[0] * n_live * kt * T
    prev = F
    mids_out = []
    for j, c in enumerate(mids):
        w = W_[c.input[1]]
        pj = bn_params(bn_after(c))
        if j == 0:
            y = node("Conv", [F, const("mid0_w", w5r)], "mid0_conv", kernel_shape=[kt], pads=[pads5[0], pads5[2]])
            y = node("Add", [y, const("mid0_const", c5_map)], "mid0_add")
        else:
            pads_j = list(attr(c, "pads"))
            if w.shape[1] != 1 or w.shape[3] != prev_channels or pads_j[1] or pads_j[3]:
                fail(f"mid-end conv {c.name} has an unexpected shape")
            y = node(
                "Conv",
                [prev, const(f"mid{j}_w", np.transpose(w[:, 0], (0, 2, 1))), const(f"mid{j}_b", W_[c.input[2]])],
                f"mid{j}_conv",
                kernel_shape=[w.shape[2]],
                pads=[pads_j[0], pads_j[2]],
            )
            macs += w.shape[0] * w.shape[3] * w.shape[2] * T
        y = node("Relu", [y], f"mid{j}_relu")
        y = node("BatchNormalization", [y] + [const(f"mid{j}_bn_{k}", v) for k, v in zip("gbmv", pj[:4])], f"mid{j}_bn", epsilon=pj[4])
        if j > 0:
            y = node("Add", [y, prev], f"mid{j}_res")
        mids_out.append(y)
        prev = y
        prev_channels = w.shape[0]

    # back-end: max and mean over time, batch norm, dense (dead features folded in its bias)
    n_mid = w5.shape[0]
    mul9, sub9 = W_[_BN9 + "mul:0"], W_[_BN9 + "sub:0"]
    wd, bd = W_[f"{_DENSE}/kernel/read:0"], W_[f"{_DENSE}/bias/read:0"]
    n_feat = nF + 3 * n_mid
    if wd.shape[0] != 2 * n_feat or mul9.shape[0] != 2 * n_feat:
        fail("dense layer does not read [max, mean] of every feature")
    G = node("Concat", [F] + mids_out, "features", axis=1)
    mx = node("ReduceMax", [G], "feat_max", axes=[2], keepdims=0)
    mn = node("ReduceMean", [G], "feat_mean", axes=[2], keepdims=0)
    H = node("Concat", [mx, mn], "pooled", axis=1)
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
    H = node("Mul", [H, const("bn9_mul", m9)], "pooled_mul")
    H = node("Add", [H, const("bn9_add", s9)], "pooled_bn")
    e = node("MatMul", [H, const("dense_w", wd2)], "dense_matmul")
    e = node("Add", [e, const("dense_b", bd2)], emb_out)
    if tag_out is not None:
        w1 = W_[f"{_DENSE1}/kernel/read:0"]
        r = node("Relu", [e], "dense_relu")
        r = node("Mul", [r, const("bn10_mul", W_[_BN10 + "mul:0"])], "bn10_mul_out")
        r = node("Add", [r, const("bn10_add", W_[_BN10 + "sub:0"])], "bn10_out")
        lg = node("MatMul", [r, const("dense1_w", w1)], "dense1_matmul")
        lg = node("Add", [lg, const("dense1_b", W_[f"{_DENSE1}/bias/read:0"])], "logits")
        node("Sigmoid", [lg], tag_out)
    inputs = [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["batch", T, n_bands])]
    outputs = [helper.make_tensor_value_info(emb_out, TensorProto.FLOAT, ["batch", wd.shape[1]])]
    if tag_out is not None:
        outputs.append(helper.make_tensor_value_info(tag_out, TensorProto.FLOAT, ["batch", W_[f"{_DENSE1}/kernel/read:0"].shape[1]]))
    graph = helper.make_graph(nodes, "msd_musicnn_pruned", inputs, outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="music-engine models.quantize", ir_version=8
    )
    onnx.checker.check_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return PruneInfo(
        live=[len(f["live"]) for f in fe],
        total=[f["w"].shape[0] for f in fe],
        convs=built,
        block=block,
        max_dropped_bound=max_dropped,
        min_kept_bound=min_kept,
        macs_per_patch=int(macs),
    )


# --------------------------------------------------------------------------- int8 (measured option)


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
