"""A process pool that survives its workers: crashes and hangs cost one file, not the run.

Essentia's algorithms are not thread-safe and native decoders can crash the whole
process (segfault, abort), so per-file work runs in worker processes. Unlike
``concurrent.futures.ProcessPoolExecutor``, which breaks for good when one worker
dies, this pool knows which task each worker holds: a worker that dies or
overruns its deadline is killed and replaced, and its task comes back as a
:class:`TaskFailed` with the reason, while the other tasks go on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class TaskFailed:
    """Why a task produced no result. ``stage`` says where (e.g. ``decode``, ``worker``)."""

    stage: str
    error: str


class StageError(Exception):
    """Raised by task functions to report a failure with the stage it happened in."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def _die_with_parent(parent_pid: int) -> None:
    """End this worker as soon as the process that started it dies (even by ``kill -9``).

    A worker busy with a file would otherwise live on until the file is done (≈8 s
    seen) and only then notice the closed pipe. On Linux the kernel sends SIGKILL when
    the parent exits (``PR_SET_PDEATHSIG``); a thread that polls the parent id covers
    other systems and a parent that died before the request was made.
    """
    import ctypes
    import threading

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_main(conn: Connection, func: Callable[[Any], Any], parent_pid: int) -> None:
    # The parent handles Ctrl-C; workers must not die half-way through a reply.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            reply = ("ok", func(task))
        except StageError as exc:
            reply = ("err", exc.stage, str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure is reported, never fatal
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" ({last[0].name})" if last else ""
            reply = ("err", "analysis", f"{type(exc).__name__}: {exc}{where}")
        conn.send(reply)


class _Worker:
    def __init__(self, ctx, func):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, func, os.getpid()), daemon=True)
        self.process.start()
        child.close()
        self.task: Any = None
        self.seq = -1  # the task's place in the input
        self.deadline: float | None = None

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class WorkerPool(Generic[T]):
    """Run ``func`` over tasks in ``processes`` worker processes.

    Parameters
    ----------
    func : callable
        A picklable top-level function of one task. It may raise :class:`StageError`.
    processes : int
        Worker count.
    timeout_s : float
        Wall-clock limit per task; an overrunning worker is killed and replaced.
    """

    def __init__(self, func: Callable[[T], Any], processes: int, *, timeout_s: float = 600.0):
        self.func = func
        self.processes = max(1, processes)
        self.timeout_s = timeout_s
        self._ctx = mp.get_context("spawn")  # no forked copies of ORT/DuckDB threads
        self._workers: list[_Worker] = []

    def __enter__(self) -> "WorkerPool[T]":
        self._workers = [_Worker(self._ctx, self.func) for _ in range(self.processes)]
        return self

    def __exit__(self, *exc) -> None:
        for w in self._workers:
            try:
                if w.task is None and w.process.is_alive():
                    w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._workers:
            w.process.join(2)
            w.kill()
        self._workers = []

    def map_unordered(self, tasks: Iterable[T]) -> Iterator[tuple[T, Any]]:
        """Yield ``(task, result)`` as tasks finish; result is a TaskFailed on failure.

        A task whose worker crashes is tried once more in a fresh worker before it counts
        as failed: native decoders can corrupt a worker's heap on one damaged file and
        crash it on the next, valid one (seen in the fuzz build: 'free(): invalid
        pointer', then SIGSEGV on a good Ogg file). A task that crashes twice is failed.
        """
        pending = enumerate(tasks)
        again: list[tuple[int, T]] = []  # (sequence number, task) that crashed once
        retried: set[int] = set()
        exhausted = False
        while True:
            for w in self._workers:
                if w.task is not None:
                    continue
                if again:
                    self._assign(w, *again.pop())
                    continue
                if exhausted:
                    break
                try:
                    seq, task = next(pending)
                except StopIteration:
                    exhausted = True
                    break
                self._assign(w, seq, task)
            busy = [w for w in self._workers if w.task is not None]
            if not busy:
                return
            now = time.monotonic()
            timeout = max(0.0, min(w.deadline for w in busy) - now)
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
            for i, w in enumerate(list(self._workers)):
                if w.task is None:
                    continue
                outcome = None
                if w.conn in ready:
                    try:
                        reply = w.conn.recv()
                        outcome = reply[1] if reply[0] == "ok" else TaskFailed(reply[1], reply[2])
                    except (EOFError, OSError):
                        outcome = self._death(w)
                elif w.process.sentinel in ready:
                    outcome = self._death(w)
                elif time.monotonic() >= w.deadline:
                    outcome = TaskFailed("worker", f"timed out after {self.timeout_s:.0f} s")
                    w.kill()
                if outcome is None:
                    continue
                task, w.task = w.task, None
                if not w.process.is_alive():
                    w.kill()
                    self._workers[i] = _Worker(self._ctx, self.func)
                if outcome.__class__ is TaskFailed and outcome.stage == "worker" \
                        and not outcome.error.startswith("timed out") and w.seq not in retried:
                    retried.add(w.seq)
                    again.append((w.seq, task))
                    continue
                yield task, outcome

    def _assign(self, w: _Worker, seq: int, task: T) -> None:
        w.task, w.seq = task, seq
        w.deadline = time.monotonic() + self.timeout_s
        w.conn.send(task)

    @staticmethod
    def _death(w: _Worker) -> TaskFailed:
        w.process.join(5)
        code = w.process.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            reason = f"worker crashed ({name})"
        else:
            reason = f"worker exited unexpectedly (status {code})"
        return TaskFailed("worker", reason)


def default_processes() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
