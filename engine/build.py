"""``engine build``: analyse a folder into the store, incrementally and crash-safely.

Flow: scan the folder and compare with the store (new / changed / moved / deleted /
unchanged / needs-only-new-models), analyse the files that need it in worker
processes (decode + DSP + mel, :func:`engine.analysis.analyse_file`), run the models
batched across files in a thread of the main process while the workers go on, and
write each batch of finished tracks in one DuckDB transaction. A kill at any moment
loses at most the batch in flight; the next run picks up exactly what is missing.
FAISS indexes are rebuilt from DuckDB whenever they are stale.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from engine.analysis import AnalysisTask, FileAnalysis, analyse_file
from engine.decode import DEFAULT_MAX_SECONDS
from engine.diagnose import BUILD_ADDRESS_SPACE, check_address_space
from engine.errors import EngineError, ScanError
from engine.summary import BuildSummary
from index.pathnames import to_db
from engine.workers import TaskFailed, WorkerPool, default_processes
from index.store import (
    FailedFile, KnownFile, Store, StoreDamagedError, StoreWriter, damaged_error,
)
from models.registry import SPACES

if TYPE_CHECKING:
    from engine.modelstage import ModelOutputs

log = logging.getLogger(__name__)

_DONE = object()
# Failure stages tried again on every build, not only with --retry-failed: they are
# cheap to check and change without touching the file's mtime (chmod, a fixed folder);
# 'cluster' (engine.raybuild: Ray gave up on the file's block, e.g. a node was lost) is
# no fault of the file.
RETRIED_STAGES = frozenset({"skipped", "read", "cluster"})


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of a build; the defaults suit a desktop machine.

    ``workers`` decode/DSP processes; ``threads`` onnxruntime threads of the model
    stage; ``batch`` files per DuckDB transaction (and per model run on Ray); ``max_seconds``
    audio analysed per file (longer files: the first ``max_seconds``); ``timeout_s``
    wall-clock limit per file before its worker is killed.
    """

    workers: int = 0  # 0: one per core
    threads: int = 0  # 0: one per two cores (model_threads)
    batch: int = 8
    max_seconds: float = DEFAULT_MAX_SECONDS
    timeout_s: float = 600.0
    retry_failed: bool = False
    progress: bool = True
    spaces: tuple[str, ...] = SPACES
    fetch: bool = True  # download missing models first (ENGINE_OFFLINE=1 turns it off)
    rebuild_store: bool = False  # a damaged database is set aside and the store made anew
    # None: this machine's worker pool. "local": a Ray runtime started here; otherwise the
    # address of a running Ray cluster (engine.raybuild; needs the `ray` extra).
    ray: str | None = None
    ray_task_cpus: float = 1.0  # CPUs Ray reserves per analysis task (fractions oversubscribe)


@dataclass
class Plan:
    tasks: list[AnalysisTask] = field(default_factory=list)
    known: set[str] = field(default_factory=set)  # task paths already stored: "updated", not "analysed"
    unchanged: int = 0
    moved: list[tuple[KnownFile, str, int, int]] = field(default_factory=list)
    touched: list[tuple[KnownFile, int, int]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped_failures: int = 0
    # Found but not analysable: 'skipped' by the scan, or unreadable ('read'); recorded.
    not_analysable: list[FailedFile] = field(default_factory=list)
    # Failure records of files no longer found (or no longer skipped): forgotten.
    stale_failures: list[str] = field(default_factory=list)

    @property
    def updates(self) -> int:
        return sum(1 for t in self.tasks if not t.dsp)


def plan_build(
    store: Store,
    root: Path,
    available_spaces: Sequence[str],
    options: BuildOptions,
) -> tuple[Plan, int]:
    """Compare the folder with the store. Returns the plan and the number of files found."""
    from engine.scan import content_hash, scan

    known = store.known_files()
    failed = store.failed_files()
    plan = Plan()
    found_paths: set[str] = set()
    new_files = []
    n = 0
    unlisted: list[str] = []  # folders that could not be listed: their tracks are kept

    def skipped(entry) -> None:
        path = str(entry.path)
        found_paths.add(path)
        plan.not_analysable.append(FailedFile(path, None, None, "skipped", entry.reason))
        if entry.folder:
            unlisted.append(path.rstrip(os.sep) + os.sep)

    shown: dict[str, str] = {}  # stored text of a name -> the name (index.pathnames)
    for f in scan(root, on_skip=skipped):
        n += 1
        path = str(f.path)
        found_paths.add(path)
        text = to_db(path)[0]
        if shown.setdefault(text, path) != path:
            # A name that is not UTF-8, shown as \xNN, equals another file's real name.
            plan.not_analysable.append(FailedFile(
                path, f.size, f.mtime_ns, "skipped",
                f"its name is stored as {text!r}, which is also another file's name: rename one"))
            continue
        k = known.get(path)
        if k is not None and (k.file_size, k.mtime_ns) == (f.size, f.mtime_ns):
            # None: not computed yet; False: the model ran and cannot give this track
            # an output (too short), so asking again would never help.
            missing = [s for s in available_spaces if getattr(k, f"has_{s}") is None]
            if not k.has_quality:
                # Analysed by an engine without the quality measures: redo the file.
                plan.tasks.append(_task(f, k.content_hash, options, dsp=True))
                plan.known.add(path)
            elif missing:
                plan.tasks.append(_task(f, k.content_hash, options, dsp=False))
                plan.known.add(path)
            else:
                plan.unchanged += 1
            continue
        fail = failed.get(path)
        if (
            k is None
            and fail is not None
            and fail.stage not in RETRIED_STAGES
            and not options.retry_failed
            and (fail.file_size, fail.mtime_ns) == (f.size, f.mtime_ns)
        ):
            plan.skipped_failures += 1
            continue
        new_files.append((f, k))

    root_prefix = str(root.resolve()).rstrip(os.sep) + os.sep

    def missing(p: str) -> bool:
        return (p.startswith(root_prefix) and p not in found_paths
                and not any(p.startswith(u) for u in unlisted))

    gone = {p: k for p, k in known.items() if missing(p)}
    gone_by_hash = {k.content_hash: k for k in gone.values()}
    plan.stale_failures = sorted(p for p in failed if missing(p))
    for f, k in new_files:
        try:
            digest = content_hash(f.path)
        except ScanError as exc:  # unreadable (permissions, I/O error): recorded, not fatal
            plan.not_analysable.append(FailedFile(str(f.path), f.size, f.mtime_ns, "read", str(exc)))
            continue
        if k is not None and digest == k.content_hash:
            plan.touched.append((k, f.size, f.mtime_ns))
            continue
        if k is None and digest in gone_by_hash:
            moved = gone_by_hash.pop(digest)
            plan.moved.append((moved, str(f.path), f.size, f.mtime_ns))
            gone.pop(moved.path, None)
            continue
        plan.tasks.append(_task(f, digest, options, dsp=True))
        if k is not None:
            plan.known.add(str(f.path))  # the file changed: its track is updated
    plan.deleted = sorted(gone)
    return plan, n


def _task(f, digest: str, options: BuildOptions, *, dsp: bool) -> AnalysisTask:
    return AnalysisTask(
        path=str(f.path),
        file_size=f.size,
        mtime_ns=f.mtime_ns,
        content_hash=digest,
        dsp=dsp,
        mel=True,
        tempocnn=dsp,
        max_seconds=options.max_seconds,
    )


def build(
    root: Path,
    store_dir: Path | None = None,
    options: BuildOptions = BuildOptions(),
    *,
    echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> BuildSummary:
    """Analyse every audio file under ``root`` into the store (see module doc)."""
    from engine.modelstage import ModelStage, missing_models_note, present_models
    from models.inference import RuntimeOptions

    t_start = time.perf_counter()
    root = Path(root).expanduser()
    if not root.is_dir():
        raise EngineError(f"not a folder: {root}")
    root = root.resolve()
    check_address_space(BUILD_ADDRESS_SPACE, "a build")
    # FAISS is loaded now, while the address space is free: loaded after the models (under
    # `ulimit -v`, say) its libraries failed to map, or crashed, after the whole analysis.
    import faiss  # noqa: F401

    cores = default_processes()
    workers = options.workers or cores
    threads = options.threads or model_threads(cores)
    summary = BuildSummary()
    _check_has_audio(root)
    if options.fetch and os.environ.get("ENGINE_OFFLINE", "") in ("", "0"):
        _fetch_missing_models(options, echo)
    present = present_models(options.spaces)  # asked once: planning, the note and the stage share it
    note = missing_models_note(options.spaces, present)
    if note:
        echo(note)
        summary.notes.append(note)
    # The store's file is opened read-write only for each step below (planning, every
    # batch's commit, the indexes), so `engine sql`, `knn` and the TUI read in between.
    with StoreWriter.acquire(store_dir, on_wait=echo) as writer:
        stages: list = []  # the model stage, made once (a retry reuses it)

        def models() -> "ModelStage":
            if not stages:
                stages.append(ModelStage(RuntimeOptions.from_env(threads=threads), spaces=options.spaces,
                                         echo=echo, present=present))
                for extra in stages[0].notes:  # models present but not loadable
                    echo(extra)
                    summary.notes.append(extra)
            return stages[0]

        try:
            _build_into(writer, root, options, summary, models, present, workers, echo)
        except StoreDamagedError as exc:  # found while planning, writing a batch or indexing
            if not options.rebuild_store:
                raise damaged_error(writer.directory, exc.reason, music=root) from None
            aside = writer.set_aside()
            echo(f"set the damaged store aside as {aside}; analysing the music again")
            summary = BuildSummary(notes=summary.notes)
            _build_into(writer, root, options, summary, models, present, workers, echo)
    summary.seconds = time.perf_counter() - t_start
    return summary


def _build_into(writer: StoreWriter, root: Path, options: BuildOptions, summary: BuildSummary,
                models, present: frozenset[str], workers: int, echo: Callable[[str], None]) -> None:
    """Plan, analyse what needs it (``models()`` gives the model stage) and index.

    ``present`` names the models in place (:func:`engine.modelstage.present_models`).
    """
    from engine.modelstage import available_spaces
    from index import vectors
    from index.search import train_for_build

    # Planning needs only which backbones are present; sessions are opened (and models
    # converted) only when there is something to analyse.
    spaces = available_spaces(options.spaces, present)
    plan = _plan_and_apply(writer, root, spaces, options, summary)
    if plan.tasks and options.ray is not None:
        from engine.raybuild import run_on_ray  # Ray is imported only here

        stage = models()
        spaces = stage.spaces
        run_on_ray(plan, writer, stage, options, summary, echo)
    elif plan.tasks:
        # The workers start first: they import their libraries (≈0.3 CPU-s each) while
        # this process loads the models, instead of after it.
        with WorkerPool(analyse_file, workers, timeout_s=options.timeout_s) as pool:
            stage = models()
            spaces = stage.spaces
            _run(plan, writer, stage, pool, options, summary)
    with writer.session() as store:
        # Listener profiles: predicted quality for new or re-analysed tracks, from the
        # stored columns (no decoding); also rescores everything after a model update.
        from engine.listeners import score_listeners

        scored = score_listeners(store)
        if scored.total:
            summary.stage_seconds["listeners"] = scored.seconds
        if plan.tasks:  # kept for the benchmark's per-stage breakdown
            store.set_meta("last_build_stages", json.dumps(summary.stage_seconds))
        vectors.sync(store, spaces=spaces or options.spaces)
        # The user's own tags: tracks new or re-analysed in this build are scored.
        from index.usertags import score_missing

        tag_notes = score_missing(store)
    for tag_note in tag_notes:
        echo(tag_note)
        summary.notes.append(tag_note)
    # Text search's caches (concept values, learned text space), ready for the first search;
    # they are files beside the database, so readers keep their turns meanwhile.
    with Store.open_read_only(writer.directory) as store:
        text_note = train_for_build(store)
    if text_note and plan.tasks:
        echo(text_note)
        summary.notes.append(text_note)


def _plan_and_apply(writer: StoreWriter, root: Path, spaces, options: BuildOptions,
                    summary: BuildSummary) -> Plan:
    """Plan the build and apply what needs no analysis (moves, deletions, failures)."""
    with writer.session() as store:
        plan, summary.found = plan_build(store, root, spaces, options)
        summary.unchanged = plan.unchanged
        summary.skipped_failures = plan.skipped_failures
        for k, size, mtime in plan.touched:
            store.touch(k.track_id, size, mtime)
        summary.unchanged += len(plan.touched)
        for k, new_path, size, mtime in plan.moved:
            store.move(k.track_id, new_path, size, mtime)
        summary.moved = len(plan.moved)
        summary.deleted = store.delete(plan.deleted)
        store.forget_failures(plan.stale_failures)
        store.write_tracks([], plan.not_analysable)
        summary.skipped = sum(1 for f in plan.not_analysable if f.stage == "skipped")
        summary.failed = len(plan.not_analysable) - summary.skipped
    return plan


def model_threads(cores: int) -> int:
    """Default onnxruntime threads of a local build's model stage: one per two cores.

    The stage runs beside one analysis worker per core and needs ≈30 % of the build's CPU
    (bench/build_speed.py's stage table). On the 2-core machine one thread costs 7 % less
    model CPU than two (0.240 vs 0.259 CPU-s per track, the same 40 files) and the build
    is as fast; one thread per core on a large machine would oversubscribe it twice over.
    """
    return max(1, cores // 2)


def _check_has_audio(root: Path) -> None:
    """Refuse a folder without audio before fetching models or touching the store.

    An empty folder is also what an unmounted drive looks like: going on would
    forget every track stored from it.
    """
    from engine.scan import scan

    if next(iter(scan(root)), None) is None:
        raise EngineError(f"no audio files found under {root} (nothing was changed)")


def _fetch_missing_models(options: BuildOptions, echo: Callable[[str], None]) -> None:
    from models.fetch import fetch_missing

    report = fetch_missing(progress=options.progress)
    if report is not None and report.failed:
        _, reason = report.failed[0]
        echo(f"could not download models: {reason}; going on with the models present")


def progress_bar(total: int, options: BuildOptions):
    """The build's progress bar on stderr: tracks, tracks/s and ETA (off with --quiet)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="track", desc="analysing", disable=not options.progress,
                file=sys.stderr, dynamic_ncols=True)


def _run(plan: Plan, writer: StoreWriter, stage, pool: WorkerPool, options: BuildOptions,
         summary: BuildSummary) -> None:
    results: queue.Queue = queue.Queue(maxsize=max(2, 2 * options.batch))
    errors: list[BaseException] = []
    committer = BatchCommitter(writer, stage, options, summary, plan.known)
    thread = threading.Thread(target=_write_loop, args=(results, committer, errors), daemon=True)
    thread.start()
    bar = progress_bar(len(plan.tasks), options)

    def hand_over(item) -> bool:
        # Never block on a full queue whose consumer has died.
        while thread.is_alive():
            try:
                results.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    failed = 0
    try:
        for task, outcome in pool.map_unordered(plan.tasks):
            if not hand_over((task, outcome)):
                break
            bar.update(1)
            if isinstance(outcome, TaskFailed):
                failed += 1
                bar.set_postfix(failed=failed, refresh=False)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        hand_over(_DONE)
        thread.join()
    if errors:
        raise errors[0]


def _write_loop(results: queue.Queue, committer: "BatchCommitter", errors: list) -> None:
    """Model-stage thread: run the models on each finished analysis, write transactions."""
    try:
        while True:
            item = results.get()
            if item is _DONE:
                break
            task, outcome = item
            # Each file's models run as it arrives, beside the workers (not per batch at
            # commit time): when the workers finish, only the last file's models remain
            # instead of up to a batch's worth, run while the other cores idle.
            committer.add(task, outcome, committer.run_models(outcome))
        committer.flush()
    except BaseException as exc:  # surfaced in the main thread
        errors.append(exc)


class BatchCommitter:
    """Finished files in, one DuckDB transaction per ``options.batch`` of them out.

    The one writer path of every build: the local pool's thread and Ray's driver
    (engine.raybuild) both hand it each file's outcome. Outputs of the model stage
    come with the outcome when the models ran elsewhere (Ray's actors); otherwise
    ``stage.run`` computes them here, batched.

    Parameters
    ----------
    writer : StoreWriter
        Opens the store for each commit only.
    stage : ModelStage
        Its ``labels`` and ``spaces`` make the records; its ``run`` fills missing outputs.
    known : set of str
        Paths already stored: counted as updated, not analysed.
    """

    def __init__(self, writer: StoreWriter, stage, options: BuildOptions, summary: BuildSummary,
                 known: set[str] = frozenset(), *, min_interval_s: float = 0.0, max_pending: int = 0):
        self.writer, self.stage, self.options = writer, stage, options
        self.summary, self.known = summary, known
        self.batch: list[tuple[FileAnalysis, object]] = []  # (analysis, ModelOutputs or None)
        self.failures: list[FailedFile] = []
        # A full batch waits for the next one while the last commit is younger than
        # min_interval_s (up to max_pending files): fewer, larger commits when files
        # arrive faster than one commit a second (a cluster's driver; 0 = every batch).
        self.min_interval_s, self.max_pending = min_interval_s, max_pending
        self._last_commit = time.monotonic()

    def add(self, task: AnalysisTask, outcome, outputs=None) -> None:
        """One file's outcome: a FileAnalysis (with its ModelOutputs, if run) or a TaskFailed."""
        if isinstance(outcome, TaskFailed):
            self.failures.append(FailedFile(task.path, task.file_size, task.mtime_ns, outcome.stage,
                                            failure_reason(outcome.error, task.path)))
            self.summary.failed += 1
        else:
            self.batch.append((outcome, outputs))
        if len(self.batch) >= self.options.batch or len(self.failures) >= self.options.batch:
            pending = len(self.batch) + len(self.failures)
            if (time.monotonic() - self._last_commit >= self.min_interval_s
                    or pending >= self.max_pending):
                self.flush()

    def run_models(self, outcome) -> ModelOutputs | None:
        """The model outputs of one analysed file (None for a failure), timed as `models`."""
        if isinstance(outcome, TaskFailed):
            return None
        return _run_models(self.stage, [outcome], self.summary)[0]

    def flush(self) -> None:
        if self.batch or self.failures:
            _write_batch(self.batch, self.failures, self.writer, self.stage, self.summary, self.known)
            self._last_commit = time.monotonic()
        self.batch.clear()
        self.failures.clear()


def _run_models(stage, analyses: list[FileAnalysis], summary: BuildSummary) -> list:
    # CPU-seconds, like the workers' stages: this process's CPU while the models run
    # (onnxruntime's threads included).
    t0 = time.process_time()
    outputs = stage.run(analyses)
    summary.stage_seconds["models"] = summary.stage_seconds.get("models", 0.0) + time.process_time() - t0
    return outputs


def failure_reason(error: str, path: str) -> str:
    """``error`` without the file's path: the failures table has the path in its own column.

    Decoders name the file in their messages ("cannot decode /music/x.mp3: empty
    file"); repeated in the reason it pushed the reason itself out of a table's view.
    """
    for named in (repr(path), f'"{path}"', path):
        error = error.replace(named, "")
    error = re.sub(r"\s+([:;,)])", r"\1", error)
    return " ".join(error.split()) or "unknown error"


def _write_batch(batch: list[tuple[FileAnalysis, object]], failures: list[FailedFile],
                 writer: StoreWriter, stage, summary: BuildSummary, known: set[str] = frozenset()) -> None:
    from engine.records import build_record

    todo = [a for a, m in batch if m is None]
    if todo:
        ran = iter(_run_models(stage, todo, summary))
        batch = [(a, next(ran) if m is None else m) for a, m in batch]
    records = []
    for a, m in batch:
        records.append(build_record(a, m, stage.labels, with_file_columns=a.task.dsp,
                                    ran=stage.spaces))
        for k, v in a.timings.items():
            summary.stage_seconds[k] = summary.stage_seconds.get(k, 0.0) + v
        if a.task.path in known:
            summary.updated += 1
        else:
            summary.analysed += 1
    t0 = time.process_time()
    with writer.session() as store:  # open, one transaction, close: readers go in between
        store.write_tracks(records, failures)
    summary.stage_seconds["store"] = summary.stage_seconds.get("store", 0.0) + time.process_time() - t0
