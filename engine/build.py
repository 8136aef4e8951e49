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
from typing import Callable, Sequence

from engine.analysis import AnalysisTask, FileAnalysis, analyse_file
from engine.decode import DEFAULT_MAX_SECONDS
from engine.errors import EngineError
from engine.summary import BuildSummary
from engine.workers import TaskFailed, WorkerPool, default_processes
from index.store import FailedFile, KnownFile, Store

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of a build; the defaults suit a desktop machine.

    ``workers`` decode/DSP processes; ``threads`` onnxruntime threads of the model
    stage; ``batch`` files per model run and per DuckDB transaction; ``max_seconds``
    audio analysed per file (longer files: the first ``max_seconds``); ``timeout_s``
    wall-clock limit per file before its worker is killed.
    """

    workers: int = 0  # 0: one per core
    threads: int = 0  # 0: one per core
    batch: int = 8
    max_seconds: float = DEFAULT_MAX_SECONDS
    timeout_s: float = 600.0
    retry_failed: bool = False
    progress: bool = True
    spaces: tuple[str, ...] = ("musicnn", "effnet", "mtt")
    fetch: bool = True  # download missing models first (ENGINE_OFFLINE=1 turns it off)


@dataclass
class Plan:
    tasks: list[AnalysisTask] = field(default_factory=list)
    known: set[str] = field(default_factory=set)  # task paths already stored: "updated", not "analysed"
    unchanged: int = 0
    moved: list[tuple[KnownFile, str, int, int]] = field(default_factory=list)
    touched: list[tuple[KnownFile, int, int]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped_failures: int = 0

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
    for f in scan(root):
        n += 1
        path = str(f.path)
        found_paths.add(path)
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
            and not options.retry_failed
            and (fail.file_size, fail.mtime_ns) == (f.size, f.mtime_ns)
        ):
            plan.skipped_failures += 1
            continue
        new_files.append((f, k))

    root_prefix = str(root.resolve()).rstrip(os.sep) + os.sep
    gone = {p: k for p, k in known.items() if p.startswith(root_prefix) and p not in found_paths}
    gone_by_hash = {k.content_hash: k for k in gone.values()}
    for f, k in new_files:
        digest = content_hash(f.path)
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
    from engine.modelstage import ModelStage, available_spaces, missing_models_note
    from index import vectors
    from models.inference import RuntimeOptions

    t_start = time.perf_counter()
    root = Path(root).expanduser()
    if not root.is_dir():
        raise EngineError(f"not a folder: {root}")
    root = root.resolve()
    cores = default_processes()
    workers = options.workers or cores
    threads = options.threads or cores
    summary = BuildSummary()
    _check_has_audio(root)
    if options.fetch and os.environ.get("ENGINE_OFFLINE", "") in ("", "0"):
        _fetch_missing_models(options, echo)
    note = missing_models_note(options.spaces)
    if note:
        echo(note)
        summary.notes.append(note)
    with Store.open(store_dir) as store:
        # Planning needs only which backbones are present; sessions are opened (and
        # models converted) only when there is something to analyse.
        spaces = available_spaces(options.spaces)
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
        if plan.tasks:
            stage = ModelStage(RuntimeOptions.from_env(threads=threads), spaces=options.spaces, echo=echo)
            for extra in stage.notes:  # models present but not loadable
                echo(extra)
                summary.notes.append(extra)
            spaces = stage.spaces
            _run(plan, store, stage, workers, options, summary)
            # Kept for the benchmark's per-stage breakdown.
            store.set_meta("last_build_stages", json.dumps(summary.stage_seconds))
        vectors.sync(store, spaces=spaces or options.spaces)
        # The user's own tags: tracks new or re-analysed in this build are scored.
        from index.usertags import score_missing

        for tag_note in score_missing(store):
            echo(tag_note)
            summary.notes.append(tag_note)
        # Text search's caches (concept values, learned text space): ready for the first search.
        from index.search import train_for_build

        text_note = train_for_build(store)
        if text_note and plan.tasks:
            echo(text_note)
            summary.notes.append(text_note)
    summary.seconds = time.perf_counter() - t_start
    return summary


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


def _run(plan: Plan, store: Store, stage, workers: int, options: BuildOptions, summary: BuildSummary) -> None:
    from tqdm import tqdm

    results: queue.Queue = queue.Queue(maxsize=max(2, 2 * options.batch))
    errors: list[BaseException] = []
    writer = threading.Thread(
        target=_write_loop, args=(results, store, stage, options, summary, errors, plan.known),
        daemon=True,
    )
    writer.start()
    bar = tqdm(
        total=len(plan.tasks),
        unit="track",
        desc="analysing",
        disable=not options.progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    def hand_over(item) -> bool:
        # Never block on a full queue whose consumer has died.
        while writer.is_alive():
            try:
                results.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    failed = 0
    try:
        with WorkerPool(analyse_file, workers, timeout_s=options.timeout_s) as pool:
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
        writer.join()
    if errors:
        raise errors[0]


def _write_loop(results: queue.Queue, store: Store, stage, options: BuildOptions,
                summary: BuildSummary, errors: list, known: set[str] = frozenset()) -> None:
    """Model-stage thread: batch finished analyses, run the models, write transactions."""
    batch: list[FileAnalysis] = []
    failures: list[FailedFile] = []

    def flush() -> None:
        if batch or failures:
            _write_batch(batch, failures, store, stage, summary, known)
        batch.clear()
        failures.clear()

    try:
        while True:
            item = results.get()
            if item is _DONE:
                break
            task, outcome = item
            if isinstance(outcome, TaskFailed):
                failures.append(FailedFile(task.path, task.file_size, task.mtime_ns, outcome.stage,
                                           failure_reason(outcome.error, task.path)))
                summary.failed += 1
            else:
                batch.append(outcome)
            if len(batch) >= options.batch or len(failures) >= options.batch:
                flush()
        flush()
    except BaseException as exc:  # surfaced in the main thread
        errors.append(exc)


def failure_reason(error: str, path: str) -> str:
    """``error`` without the file's path: the failures table has the path in its own column.

    Decoders name the file in their messages ("cannot decode /music/x.mp3: empty
    file"); repeated in the reason it pushed the reason itself out of a table's view.
    """
    for named in (repr(path), f'"{path}"', path):
        error = error.replace(named, "")
    error = re.sub(r"\s+([:;,)])", r"\1", error)
    return " ".join(error.split()) or "unknown error"


def _write_batch(batch: list[FileAnalysis], failures: list[FailedFile], store: Store, stage,
                 summary: BuildSummary, known: set[str] = frozenset()) -> None:
    from engine.records import build_record

    t0 = time.perf_counter()
    outputs = stage.run(batch)
    summary.stage_seconds["models"] = summary.stage_seconds.get("models", 0.0) + time.perf_counter() - t0
    records = []
    for a, m in zip(batch, outputs):
        records.append(build_record(a, m, stage.labels, with_file_columns=a.task.dsp))
        for k, v in a.timings.items():
            summary.stage_seconds[k] = summary.stage_seconds.get(k, 0.0) + v
        if a.task.path in known:
            summary.updated += 1
        else:
            summary.analysed += 1
    t0 = time.perf_counter()
    store.write_tracks(records, failures)
    summary.stage_seconds["store"] = summary.stage_seconds.get("store", 0.0) + time.perf_counter() - t0
