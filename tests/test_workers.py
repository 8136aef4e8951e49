"""The worker pool: crashes and hangs cost one task, never the run."""

from __future__ import annotations

import os
import signal
import time

from engine.workers import StageError, TaskFailed, WorkerPool


def _task(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGSEGV)  # a native crash, as a decoder might
    if x == 5:
        time.sleep(60)  # a hang
    if x == 7:
        raise StageError("decode", "file 7 is not audio")
    if x == 8:
        raise ValueError("bad value")
    if x == 9:
        os._exit(3)
    return x * x


def test_pool_survives_crashes_hangs_and_errors():
    with WorkerPool(_task, processes=2, timeout_s=3) as pool:
        results = dict(pool.map_unordered(range(12)))
    assert set(results) == set(range(12))
    for x in (0, 1, 2, 4, 6, 10, 11):
        assert results[x] == x * x
    assert results[3] == TaskFailed("worker", "worker crashed (SIGSEGV)")
    assert results[5] == TaskFailed("worker", "timed out after 3 s")
    assert results[7] == TaskFailed("decode", "file 7 is not audio")
    assert results[8].stage == "analysis" and "ValueError: bad value" in results[8].error
    assert results[9] == TaskFailed("worker", "worker exited unexpectedly (status 3)")


def test_pool_with_no_tasks():
    with WorkerPool(_task, processes=1) as pool:
        assert list(pool.map_unordered([])) == []


_poisoned = False


def _poison_then_crash(x: str) -> str:
    """'poison' leaves the worker damaged (as a decoder that corrupts its heap on a bad
    file); the next task in that worker crashes, whatever it is."""
    global _poisoned
    if _poisoned:
        os.kill(os.getpid(), signal.SIGSEGV)
    if x == "poison":
        _poisoned = True
    return x


def test_a_task_crashed_by_a_damaged_worker_is_retried_in_a_fresh_one():
    with WorkerPool(_poison_then_crash, processes=1, timeout_s=30) as pool:
        results = dict(pool.map_unordered(["poison", "good", "also good"]))
    # before: "good" was recorded as 'worker crashed (SIGSEGV)'
    assert results == {"poison": "poison", "good": "good", "also good": "also good"}
