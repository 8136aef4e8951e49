"""``engine build --ray``: the build's analysis on Ray Data, written by the driver as today.

The same plan (engine.build.plan_build: only new or changed files) becomes a Ray
dataset of analysis tasks. Each file goes through

1. ``map_batches`` of :func:`analyse_batch`, CPU tasks that run
   :func:`engine.analysis.analyse_file` (decode + DSP + mel: the very function the
   local pool runs) inside a one-process :class:`engine.workers.WorkerPool` kept by
   each Ray worker. Ray retries a task whose worker process dies, but a native crash
   on a damaged file would crash it again on every retry and then fail the block;
   the guard process gives each file the local build's isolation, its timeout and its
   one-line reasons (a segfault costs one file, not a block of them).
2. ``map_batches`` of :class:`ModelActor`, an actor pool that loads every model once
   (:class:`engine.modelstage.ModelStage`, one onnxruntime session per model and
   actor) and runs it over batches of files: ``num_gpus=1`` per actor and the CUDA
   provider when the cluster has GPUs (:func:`plan_model_actors`), CPU otherwise.
3. ``iter_batches`` on the driver, which alone writes: the outcomes go to the same
   :class:`engine.build.BatchCommitter` as a local build's (one DuckDB transaction per
   batch), FAISS and text-search caches follow as in a local build.

A kill of the driver loses at most the batch it had not committed; the next build
(with or without ``--ray``) plans only what is missing. Files must be at the same path
on every node; :func:`check_shared_path` says which node cannot read what.

Ray is imported by this module only, and this module only by ``build --ray``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pickle
import socket
from dataclasses import dataclass
from typing import Callable, Mapping

from engine.analysis import AnalysisTask, FileAnalysis, analyse_file
from engine.errors import EngineError
from engine.workers import TaskFailed, WorkerPool

SHARED_PATH_HINT = "files must be at the same path on every node (docs/ray.md)"
# What a file gets in `failures` (stage 'cluster', tried again by the next build) when
# Ray gave up on its block (a node lost, say): the driver records it instead of losing it.
LOST_REASON = "lost on the Ray cluster: its task failed on every retry"
# Model-stage threads per CPU actor. Measured on the 2-core EPYC: MusiCNN takes 800 ms
# per clip on one onnxruntime thread, 440 ms on two (NOTES.md); more threads per actor
# gain less than more actors.
ACTOR_THREADS = 2
# The driver commits at most about once per COMMIT_INTERVAL_S (a full --batch at least,
# COMMIT_MAX_FILES at most): each commit opens, writes and checkpoints the DuckDB file,
# so its size sets the writer's ceiling. Writer alone (bench/ray_build.py, 2-core EPYC
# under load 14-29): 4.4-15 tracks/s committing every 8 files, 19-26 every 64, 19 every
# 256 (17-19 CPU-ms a track). A kill loses at most this much work.
COMMIT_INTERVAL_S = 2.0
COMMIT_MAX_FILES = 256
# Memory Ray reserves per model actor: peak RSS 1.4 GB running the models on a batch of
# 8 files of 45 s (MusiCNN + MTT + heads + TempoCNN loaded: 42 MB of it), measured.
MODEL_ACTOR_MEMORY = 2 * 1024**3


class RayUnavailableError(EngineError):
    """``--ray`` without the ``ray`` extra, or a cluster that cannot be reached."""


@dataclass(frozen=True)
class ActorPlan:
    """How the model stage runs on the cluster.

    ``concurrency`` (min, max) actors, each reserving ``num_cpus`` and ``num_gpus``;
    ``device`` is what each actor asks onnxruntime for (``auto``: CUDA when the actor's
    onnxruntime has the CUDA provider and a GPU answers, else CPU).
    """

    concurrency: tuple[int, int]
    num_cpus: float
    num_gpus: float
    device: str
    threads: int


def plan_model_actors(resources: Mapping[str, float], threads: int = 0) -> ActorPlan:
    """The actor pool for a cluster's ``resources`` (``ray.cluster_resources()``).

    One actor per GPU when there are GPUs (the models are small: one session per GPU
    keeps it busy); on CPUs, up to a quarter of the CPUs in actors of ``threads`` (default
    :data:`ACTOR_THREADS`) threads each, since the models cost about as much CPU as
    decode + DSP (≈0.8 of ≈1.5 CPU-s per clip) and Ray Data grows the pool as needed.
    """
    gpus = int(resources.get("GPU", 0))
    if gpus > 0:
        return ActorPlan((1, gpus), num_cpus=1, num_gpus=1, device="auto", threads=threads or 1)
    cpus = max(1, int(resources.get("CPU", 1)))
    threads = threads or min(ACTOR_THREADS, max(1, cpus // 2))
    return ActorPlan((1, max(1, cpus // (2 * threads))), num_cpus=min(threads, max(1, cpus // 2)),
                     num_gpus=0, device="cpu", threads=threads)


def node_name() -> str:
    """This process's node, for messages: ``host (ip)``."""
    host = socket.gethostname()
    try:
        import ray.util

        return f"{host} ({ray.util.get_node_ip_address()})"
    except Exception:  # noqa: BLE001 - the name alone still says where
        return host


# One guard process per Ray worker process and timeout, reused by its tasks.
_GUARDS: dict[float, WorkerPool] = {}


def _guard(timeout_s: float) -> WorkerPool:
    pool = _GUARDS.get(timeout_s)
    if pool is None:
        pool = _GUARDS[timeout_s] = WorkerPool(analyse_file, 1, timeout_s=timeout_s).__enter__()
    return pool


def close_guards() -> None:
    """End this process's guard processes (they also die with it)."""
    while _GUARDS:
        _GUARDS.popitem()[1].__exit__(None, None, None)


def unreadable(task: AnalysisTask) -> TaskFailed | None:
    """A ``read`` failure naming this node when it cannot read ``task.path``, else None."""
    if os.access(task.path, os.R_OK):
        return None
    why = "not found" if not os.path.exists(task.path) else "not readable"
    return TaskFailed("read", f"{why} on node {node_name()}: {SHARED_PATH_HINT}")


def analyse_batch(batch, *, timeout_s: float):
    """Ray Data CPU task: ``{"item": pickled AnalysisTask}`` rows in, pickled outcomes out.

    Each outcome is ``(task, FileAnalysis or TaskFailed)``, exactly what a local
    worker gives for the file.
    """
    import pyarrow as pa

    tasks = [pickle.loads(b) for b in batch["item"].to_pylist()]
    outcomes = {}
    runnable = []
    for i, task in enumerate(tasks):
        failed = unreadable(task)
        if failed is not None:
            outcomes[i] = failed
        else:
            runnable.append((i, task))
    if runnable:
        by_path = {task.path: i for i, task in runnable}
        for task, outcome in _guard(timeout_s).map_unordered([t for _, t in runnable]):
            outcomes[by_path[task.path]] = outcome
    items = [pickle.dumps((task, outcomes[i]), protocol=5) for i, task in enumerate(tasks)]
    return pa.table({"item": pa.array(items, type=pa.large_binary())})


class ModelActor:
    """Ray Data actor: loads the model stage once, runs it over batches of analysed files.

    Parameters
    ----------
    spaces : tuple of str
        The spaces the driver's stage has; an actor that cannot load them all (models
        missing on its node) refuses to start, naming the node.
    device, threads
        onnxruntime's device (``auto``/``cpu``/``cuda``) and threads per session.
    env : mapping
        The driver's ``ENGINE_*`` settings (model folder, cache), applied before loading.
    """

    def __init__(self, spaces: tuple[str, ...], device: str, threads: int, env: Mapping[str, str]):
        os.environ.update(env)
        from engine.modelstage import ModelStage
        from models.inference import RuntimeOptions

        self.stage = ModelStage(RuntimeOptions(threads=threads, device=device), spaces=spaces)
        if self.stage.spaces != tuple(spaces):
            lacking = sorted(set(spaces) - set(self.stage.spaces))
            raise EngineError(f"node {node_name()} cannot load the models of {', '.join(lacking)} "
                              f"from {env.get('ENGINE_MODELS', 'its model folder')}: {SHARED_PATH_HINT}")

    def __call__(self, batch):
        import pyarrow as pa

        items = [pickle.loads(b) for b in batch["item"].to_pylist()]
        done = [(t, o) for t, o in items if isinstance(o, FileAnalysis)]
        outputs = iter(self.stage.run([o for _, o in done]))
        out = []
        for task, outcome in items:
            if isinstance(outcome, FileAnalysis):
                # The model inputs stay here: the driver needs the descriptors and outputs.
                outcome = dataclasses.replace(outcome, mel=None, tempocnn_input=None)
                out.append((task, outcome, next(outputs)))
            else:
                out.append((task, outcome, None))
        return pa.table({"item": pa.array([pickle.dumps(o, protocol=5) for o in out],
                                          type=pa.large_binary())})


def connect(address: str, cpus: int) -> bool:
    """Join the cluster at ``address`` or start a local runtime (``local``) of ``cpus`` CPUs.

    Returns True when this call started Ray (the caller shuts it down). An already
    initialised Ray (a test module's runtime, a notebook) is used as it is.
    """
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--ray needs Ray: pip install 'music-engine[ray]'") from None
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, logging_level="WARNING", log_to_driver=False,
                  configure_logging=True)
    try:
        if address == "local":
            ray.init(address="local", num_cpus=cpus, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailableError(f"cannot join the Ray cluster at {address}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return True


def resolve_address(value: str | None) -> str:
    """``--ray`` with no address: ``$RAY_ADDRESS`` when set, else a local runtime."""
    return value or os.environ.get("RAY_ADDRESS") or "local"


def _can_read(paths: list[str]) -> tuple[str, str | None]:
    for p in paths:
        if not os.access(p, os.R_OK):
            return node_name(), p
    return node_name(), None


def check_shared_path(paths: list[str]) -> None:
    """Raise naming the first node and path that node cannot read (one task per alive node)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_can_read)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(paths) for n in ray.nodes() if n.get("Alive")]
    for node, path in ray.get(refs):
        if path is not None:
            raise EngineError(f"node {node} cannot read {path}: {SHARED_PATH_HINT}")


def files_per_block(n_tasks: int, cpus: float, batch: int) -> int:
    """Files per Ray block: at most ``batch``, and enough blocks to give every CPU ≈4 to take."""
    return max(1, min(batch, math.ceil(n_tasks / max(1.0, 4 * cpus))))


def run_on_ray(plan, writer, stage, options, summary, echo: Callable[[str], None]) -> None:
    """Analyse ``plan.tasks`` on Ray and commit them through the local build's writer path."""
    from engine.workers import default_processes

    address = resolve_address(options.ray)
    started = connect(address, options.workers or default_processes())
    try:
        _run(plan, writer, stage, options, summary, echo)
    finally:
        if started:
            import ray

            ray.shutdown()


def _run(plan, writer, stage, options, summary, echo) -> None:
    import ray

    from engine.build import BatchCommitter, progress_bar

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-run INFO lines
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver's own bar says tracks/s and ETA
    ctx.max_errored_blocks = -1  # a block Ray gave up on: its files are recorded below
    ctx.execution_options.preserve_order = False
    resources = ray.cluster_resources()
    check_shared_path([plan.tasks[0].path])
    actors = plan_model_actors(resources, options.threads)
    if actors.num_gpus:
        echo(f"model stage: {actors.concurrency[1]} GPU actor(s), CUDA when their onnxruntime has it")
    ds = pipeline(plan.tasks, stage.spaces, options, actors, resources.get("CPU", 1))
    committer = BatchCommitter(writer, stage, options, summary, plan.known,
                               min_interval_s=COMMIT_INTERVAL_S, max_pending=COMMIT_MAX_FILES)
    bar = progress_bar(len(plan.tasks), options)
    seen: set[str] = set()
    failed = 0
    complete = False
    try:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1):
            for blob in batch["item"].to_pylist():
                task, outcome, outputs = pickle.loads(blob)
                seen.add(task.path)
                committer.add(task, outcome, outputs)
                bar.update(1)
                if isinstance(outcome, TaskFailed):
                    failed += 1
                    bar.set_postfix(failed=failed, refresh=False)
        complete = True
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        if complete:
            for task in plan.tasks:
                if task.path not in seen:
                    committer.add(task, TaskFailed("cluster", LOST_REASON))
        committer.flush()


def pipeline(tasks: list[AnalysisTask], spaces: tuple[str, ...], options, actors: ActorPlan, cpus: float):
    """The Ray dataset of a build: analysis tasks, then the model actors; nothing runs yet."""
    import ray

    env = {k: v for k, v in os.environ.items() if k.startswith("ENGINE_")}
    per_block = files_per_block(len(tasks), cpus, options.batch)
    ds = ray.data.from_items([{"item": pickle.dumps(t, protocol=5)} for t in tasks],
                             override_num_blocks=math.ceil(len(tasks) / per_block))
    ds = ds.map_batches(analyse_batch, batch_format="pyarrow", batch_size=per_block,
                        fn_kwargs={"timeout_s": options.timeout_s}, num_cpus=options.ray_task_cpus)
    ds = ds.map_batches(ModelActor, batch_format="pyarrow", batch_size=options.batch,
                        fn_constructor_kwargs={"spaces": spaces, "device": actors.device,
                                               "threads": actors.threads, "env": env},
                        compute=ray.data.ActorPoolStrategy(min_size=actors.concurrency[0],
                                                           max_size=actors.concurrency[1]),
                        num_cpus=actors.num_cpus, num_gpus=actors.num_gpus,
                        # A memory reservation the analysis tasks lack also keeps Ray Data from
                        # fusing the analysis into the actors: fused, each actor analysed its
                        # files one at a time (one actor on 2 CPUs: half the local tracks/s).
                        memory=MODEL_ACTOR_MEMORY)
    return ds
