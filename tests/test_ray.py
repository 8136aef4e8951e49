"""`engine build --ray`: the same store as a local build, kills survived, the CUDA path chosen.

One local Ray runtime (num_cpus=2) serves the whole module: each start costs seconds
(≈25 s seen under load). Tests that need no runtime call the Ray stages directly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.build import BuildOptions, build
from tests.conftest import OUTSIDE, engine_command
from tests.test_build import LIBRARY_SAMPLE, _library, _rows

FAST = BuildOptions(workers=2, threads=1, batch=2, max_seconds=15, progress=False, fetch=False)
RAY = replace(FAST, ray="local")


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture()
def guards():
    from engine import raybuild

    yield raybuild
    raybuild.close_guards()


def _task(path: Path, **kw):
    from engine.analysis import AnalysisTask

    st = path.stat() if path.exists() else None
    return AnalysisTask(str(path), st.st_size if st else 0, st.st_mtime_ns if st else 0, "x" * 16,
                        max_seconds=kw.pop("max_seconds", 10), **kw)


def _table(items):
    import pickle

    import pyarrow as pa

    return pa.table({"item": pa.array([pickle.dumps(i) for i in items], type=pa.large_binary())})


def _unpickled(table):
    import pickle

    return [pickle.loads(b) for b in table["item"].to_pylist()]


# --- no Ray runtime needed ---------------------------------------------------------------

def test_without_ray_a_build_never_imports_ray(corpus, tmp_path):
    music = _library(corpus, tmp_path / "music", LIBRARY_SAMPLE[:1])
    code = (
        "import sys\nfrom engine.build import BuildOptions, build\n"
        f"build({str(music)!r}, {str(tmp_path / 'store')!r}, BuildOptions(workers=1, threads=1, "
        "max_seconds=5, progress=False, fetch=False), echo=lambda s: None)\n"
        "import engine.cli\n"
        "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not loaded, loaded\nprint('no ray')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=OUTSIDE, env=dict(os.environ),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "no ray"
    assert _rows(tmp_path / "store", "SELECT count(*) FROM tracks")[0] == (1,)


def test_actor_plan_takes_the_gpus_when_the_cluster_has_some():
    from engine.raybuild import plan_model_actors

    gpu = plan_model_actors({"CPU": 64.0, "GPU": 4.0})
    assert (gpu.num_gpus, gpu.concurrency, gpu.device) == (1, (1, 4), "auto")
    cpu = plan_model_actors({"CPU": 64.0})
    assert (cpu.num_gpus, cpu.device, cpu.threads) == (0, "cpu", 2)
    assert cpu.concurrency == (1, 16) and cpu.num_cpus == 2
    small = plan_model_actors({"CPU": 2.0})  # this machine: one actor, one thread, one CPU
    assert (small.concurrency, small.num_cpus, small.threads) == ((1, 1), 1, 1)


def test_gpu_actor_falls_back_to_cpu_and_gives_the_local_stages_outputs(corpus, guards):
    """The GPU plan's actor on a machine without CUDA: CPU sessions, same outputs as local."""
    from engine.analysis import analyse_file
    from engine.modelstage import ModelStage
    from engine.raybuild import ModelActor, plan_model_actors
    from models.inference import RuntimeOptions

    plan = plan_model_actors({"CPU": 8.0, "GPU": 1.0})
    env = {k: v for k, v in os.environ.items() if k.startswith("ENGINE_")}
    actor = ModelActor(("musicnn",), plan.device, 1, env)
    pipeline = actor.stage.pipelines["musicnn"]
    providers = {p for m in [pipeline.backbone, *pipeline.heads] for p in m.providers}
    assert providers == {"CPUExecutionProvider"}

    good = _task(corpus / "library" / LIBRARY_SAMPLE[0])
    analysis = analyse_file(good)
    (task, got, outputs), = _unpickled(actor(_table([(good, analysis)])))
    assert task == good and got.mel is None  # model inputs stay on the actor
    want = ModelStage(RuntimeOptions(threads=1, device="cpu"), spaces=("musicnn",)).run([analysis])[0]
    np.testing.assert_allclose(outputs.spaces["musicnn"].embedding, want.spaces["musicnn"].embedding,
                               rtol=1e-6, atol=1e-6)


def test_an_actor_without_the_models_names_its_node(tmp_path, monkeypatch):
    from engine.errors import EngineError
    from engine.raybuild import ModelActor, node_name

    empty = tmp_path / "models"
    empty.mkdir()
    monkeypatch.setenv("ENGINE_MODELS", os.environ["ENGINE_MODELS"])  # the actor changes it: restored
    with pytest.raises(EngineError) as err:
        ModelActor(("musicnn",), "cpu", 1, {"ENGINE_MODELS": str(empty)})
    assert str(err.value).startswith(f"node {node_name()} cannot load the models of musicnn from {empty}: "
                                     "files must be at the same path on every node")


def test_analysis_task_gives_what_the_local_worker_gives(corpus, tmp_path, guards):
    """The Ray task runs analyse_file in its guard process; a file missing on the node is named."""
    from engine.analysis import FileAnalysis
    from engine.workers import TaskFailed

    good = _task(corpus / "library" / LIBRARY_SAMPLE[0])
    bad = _task(corpus / "edge" / "bad_text.mp3")
    gone = _task(tmp_path / "not-mounted-here.ogg")
    out = {t.path: o for t, o in _unpickled(guards.analyse_batch(_table([good, bad, gone]), timeout_s=120))}
    assert isinstance(out[good.path], FileAnalysis) and out[good.path].mel.shape[1] == 96
    assert out[bad.path] == TaskFailed("decode", out[bad.path].error) and "cannot decode" in out[bad.path].error
    assert out[gone.path] == TaskFailed(
        "read", f"not found on node {guards.node_name()}: files must be at the same path on every node "
                "(docs/ray.md)")


def test_a_hung_file_is_timed_out_in_the_ray_task(corpus, guards):
    from engine.workers import TaskFailed

    long = _task(corpus / "library" / LIBRARY_SAMPLE[0], max_seconds=None)  # the whole file
    (task, outcome), = _unpickled(guards.analyse_batch(_table([long]), timeout_s=1.0))
    assert task == long and outcome == TaskFailed("worker", "timed out after 1 s")


def test_ray_missing_says_which_extra_to_install(monkeypatch):
    from engine.raybuild import RayUnavailableError, connect

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(RayUnavailableError, match=r"^--ray needs Ray: pip install 'music-engine\[ray\]'$"):
        connect("local", 2)


def test_address_comes_from_the_flag_then_ray_address(monkeypatch):
    from engine.raybuild import resolve_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address("") == "local"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert resolve_address("") == "10.0.0.1:6379"
    assert resolve_address("auto") == "auto"


# --- on the module's local Ray runtime ----------------------------------------------------

def test_a_node_that_cannot_read_the_music_is_named(ray_runtime, tmp_path):
    from engine.errors import EngineError
    from engine.raybuild import check_shared_path

    check_shared_path([str(tmp_path)])
    missing = tmp_path / "only-on-the-driver" / "a.ogg"
    with pytest.raises(EngineError, match=r"^node \S+ \([0-9.]+\) cannot read .*a\.ogg: files must be at "
                                          r"the same path on every node"):
        check_shared_path([str(missing)])


def test_analysis_tasks_and_model_actors_stay_two_operators(ray_runtime, corpus, capsys):
    """Fused, each actor would analyse its own files one at a time (half the tracks/s)."""
    from engine.raybuild import pipeline, plan_model_actors

    tasks = [_task(corpus / "library" / rel) for rel in LIBRARY_SAMPLE]
    ds = pipeline(tasks, ("musicnn",), RAY, plan_model_actors({"CPU": 2.0}), 2.0)
    ds.explain()
    optimized = capsys.readouterr().out.split("Physical Plan (Optimized)")[-1]
    assert "TaskPoolMapOperator[MapBatches(analyse_batch)]" in optimized
    assert "ActorPoolMapOperator[MapBatches(ModelActor)]" in optimized


@pytest.mark.slow
def test_ray_build_equals_the_local_build(ray_runtime, corpus, tmp_path):
    music = tmp_path / "library"
    shutil.copytree(corpus / "library", music, ignore=shutil.ignore_patterns("*.txt", "COPYRIGHT"))
    local = build(music, tmp_path / "local", FAST, echo=lambda s: None)
    on_ray = build(music, tmp_path / "ray", RAY, echo=lambda s: None)
    assert (on_ray.analysed, on_ray.failed) == (local.analysed, local.failed)
    assert on_ray.lines()[0].split(" in ")[0] == local.lines()[0].split(" in ")[0]

    import duckdb

    tables = {}
    for name in ("local", "ray"):
        con = duckdb.connect(str(tmp_path / name / "engine.duckdb"), read_only=True)
        try:
            tables[name] = (
                con.execute("SELECT * EXCLUDE (track_id, analysed_at) FROM tracks ORDER BY path").fetchall(),
                con.execute("SELECT t.path, e.space, e.vector FROM embeddings e JOIN tracks t USING (track_id) "
                            "ORDER BY 1, 2").fetchall(),
                con.execute("SELECT path, stage, error FROM failures ORDER BY path").fetchall(),
                con.execute("SELECT t.path, g.* EXCLUDE (track_id) FROM tags g JOIN tracks t USING (track_id) "
                            "ORDER BY ALL").fetchall(),
            )
        finally:
            con.close()
    (lt, le, lf, lg), (rt, re_, rf, rg) = tables["local"], tables["ray"]
    assert len(lt) == local.analysed > 40
    # DSP descriptors identical; model outputs equal to float precision (batches differ).
    assert [_close(r) for r in rt] == [_close(r) for r in lt]
    assert rf == lf and [_close(r) for r in rg] == [_close(r) for r in lg]
    assert [r[:2] for r in re_] == [r[:2] for r in le]
    for (_, _, a), (_, _, b) in zip(le, re_):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) >= 0.99999


def _close(row):
    return tuple(pytest.approx(v, rel=1e-5, abs=1e-6) if isinstance(v, float) else v for v in row)


def _ray_workers(name: str) -> list:
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(name in part for part in p.info["cmdline"] or ()):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.slow
def test_killing_a_ray_worker_mid_build_loses_no_file(ray_runtime, corpus, tmp_path):
    music = _library(corpus, tmp_path / "music", LIBRARY_SAMPLE)
    shutil.copy(corpus / "edge" / "bad_text.mp3", music / "bad_text.mp3")
    store = tmp_path / "store"
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(s=build(music, store, RAY, echo=lambda s: None)))
    thread.start()
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        workers = _ray_workers("analyse_batch")  # Ray names a busy worker after its task
        if workers:
            killed = workers[0]
            killed.send_signal(signal.SIGKILL)
        time.sleep(0.2)
    thread.join(600)
    assert killed is not None, "no Ray worker was seen analysing"
    s = result["s"]
    assert (s.analysed, s.failed) == (5, 1)  # the killed worker's files were retried
    assert _rows(store, "SELECT count(*) FROM tracks")[0] == (5,)
    assert _rows(store, "SELECT path, stage FROM failures") == [(str(music / "bad_text.mp3"), "decode")]


@pytest.mark.slow
def test_killing_the_driver_then_building_again_resumes(ray_runtime, corpus, tmp_path):
    import psutil

    music = _library(corpus, tmp_path / "music", LIBRARY_SAMPLE)
    for i, clip in enumerate(sorted((corpus / "rendered").glob("*.ogg"))[:3]):
        shutil.copy(clip, music / f"r{i}.ogg")
    store = tmp_path / "store"
    proc = subprocess.Popen([*engine_command(), "build", str(music), "--store", str(store), "--ray",
                             "--max-seconds", "15", "--batch", "1", "--no-fetch"],
                            cwd=OUTSIDE, env=dict(os.environ, ENGINE_OFFLINE="1", RAY_ADDRESS=""),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Kill once the first batch is committed: its tracks must survive, the rest must follow.
    deadline = time.monotonic() + 400
    committed = 0
    while proc.poll() is None and time.monotonic() < deadline and not committed:
        time.sleep(1)
        try:
            committed = _rows(store, "SELECT count(*) FROM tracks")[0][0]
        except Exception:  # noqa: BLE001 - not created yet, or the writer holds it now
            continue
    assert proc.poll() is None, "the build ended before it could be killed"
    family = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    # The runtime it started dies with it: the raylet and workers at once; Ray's per-node
    # agents poll their raylet and went within ≈2 min (load 15 on 2 cores).
    gone, alive = psutil.wait_procs(family, timeout=240)
    assert not alive, [p.pid for p in alive]
    s = build(music, store, RAY, echo=lambda s: None)
    assert s.analysed == 8 - committed and s.failed == 0 and committed >= 1
    assert _rows(store, "SELECT count(*), count(DISTINCT path) FROM tracks")[0] == (8, 8)
