"""models.fetch against a real HTTP server on 127.0.0.1 serving the real model files.

The server maps any request path to its basename in the shared model folder, since
the registry's URLs keep the official category folders
(``/classification-heads/emomusic/...``) while the shared copy is flat. Per-test
switches make it corrupt a file, drop the first connection half-way, or ignore
``Range``, so resume and verification are exercised over real sockets.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shutil
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from models import fetch, registry
from models.errors import ChecksumError, DownloadError, HostUnreachableError, UnknownModelError
from models.paths import missing_files, present

EMOMUSIC = registry.get("emomusic")
PB = EMOMUSIC.graph
JSON = EMOMUSIC.metadata


class _Handler(BaseHTTPRequestHandler):
    server: _ModelServer

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        name = posixpath.basename(urllib.parse.urlsplit(self.path).path)
        rng = self.headers.get("Range")
        with srv.lock:
            srv.requests.append((self.path, rng))
            first = len(srv.requests) == 1
        path = srv.root / name
        if not name or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        if name in srv.corrupt:
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]

        if srv.drop_first and first:
            # Promise the whole file, deliver half, hang up.
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if srv.stall_first and first:
            # Send a quarter, then go quiet for longer than the client's timeout.
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 4])
            self.wfile.flush()
            srv.release.wait(2)
            self.close_connection = True
            return

        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and srv.honour_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []
        self.corrupt: set[str] = set()
        self.drop_first = False
        self.stall_first = False
        self.release = threading.Event()
        self.honour_range = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up (timeouts) is expected here

    @property
    def url(self) -> str:
        # An extra path prefix, as a real mirror would have.
        return f"http://127.0.0.1:{self.server_address[1]}/mirror/models"


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch):
    monkeypatch.delenv(fetch.BASE_URL_ENV, raising=False)
    # A proxy from the environment must not intercept requests to 127.0.0.1.
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def server(shared_models):
    srv = _ModelServer(shared_models)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fast(**kw):
    return {"progress": False, "timeout": 5, "backoff": 0, **kw}


def test_fetch_real_model_byte_identical(server, shared_models, tmp_path):
    report = fetch.fetch_models(["emomusic"], dest_dir=tmp_path, base_url=server.url, **_fast())

    assert report.ok and not report.already_present
    assert sorted(p.name for p in report.fetched) == sorted([PB.filename, JSON.filename])
    for mf in (PB, JSON):
        got = tmp_path / mf.filename
        assert got.read_bytes() == (shared_models / mf.filename).read_bytes()
        assert _sha(got) == mf.sha256
    assert list(tmp_path.glob("*.part")) == []
    # The mirror keeps the official category folders below its own base.
    paths = {p for p, _ in server.requests}
    assert f"/mirror/models/classification-heads/emomusic/{PB.filename}" in paths


def test_corrupted_file_raises_checksum_error_and_leaves_nothing(server, tmp_path):
    server.corrupt.add(PB.filename)

    with pytest.raises(ChecksumError) as info:
        fetch.fetch_file(PB, tmp_path, base_url=server.url, **_fast())

    msg = str(info.value)
    assert PB.filename in msg and PB.sha256 in msg and "\n" not in msg
    assert re.search(r"got [0-9a-f]{64}", msg)
    assert not (tmp_path / PB.filename).exists()
    assert not (tmp_path / (PB.filename + ".part")).exists()


def test_dropped_connection_resumes_with_range(server, shared_models, tmp_path):
    server.drop_first = True

    path = fetch.fetch_file(PB, tmp_path, base_url=server.url, retries=2, **_fast())

    assert len(server.requests) == 2
    assert server.requests[0][1] is None
    assert server.requests[1][1] == f"bytes={PB.size // 2}-"
    assert path.read_bytes() == (shared_models / PB.filename).read_bytes()
    assert not (tmp_path / (PB.filename + ".part")).exists()


def test_stalled_connection_times_out_and_resumes(server, shared_models, tmp_path):
    server.stall_first = True

    path = fetch.fetch_file(PB, tmp_path, base_url=server.url, **_fast(timeout=0.3))

    assert server.requests[1][1] == f"bytes={PB.size // 4}-"
    assert path.read_bytes() == (shared_models / PB.filename).read_bytes()


def test_complete_part_of_unsized_file_is_kept(server, shared_models, tmp_path):
    # The .json has no size in the registry, so only the server's 416 can say
    # that the .part is already whole.
    part = tmp_path / (JSON.filename + ".part")
    shutil.copy(shared_models / JSON.filename, part)
    size = part.stat().st_size

    path = fetch.fetch_file(JSON, tmp_path, base_url=server.url, retries=0, **_fast())

    assert [rng for _, rng in server.requests] == [f"bytes={size}-"]
    assert _sha(path) == JSON.sha256 and not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, shared_models, tmp_path):
    server.honour_range = False
    # A stale partial download, which a Range request would try to resume.
    part = tmp_path / (PB.filename + ".part")
    part.write_bytes((shared_models / PB.filename).read_bytes()[:1000])

    path = fetch.fetch_file(PB, tmp_path, base_url=server.url, **_fast())

    assert server.requests[0][1] == "bytes=1000-"  # asked, and got a 200 instead
    assert _sha(path) == PB.sha256
    assert not part.exists()


def test_present_files_are_not_downloaded_again(server, tmp_path):
    first = fetch.fetch_models(["emomusic"], dest_dir=tmp_path, base_url=server.url, **_fast())
    assert len(first.fetched) == 2
    n = len(server.requests)

    again = fetch.fetch_models(["emomusic"], dest_dir=tmp_path, base_url=server.url, **_fast())

    assert len(server.requests) == n
    assert again.fetched == [] and len(again.already_present) == 2 and again.ok


def test_wrong_present_file_is_replaced(server, tmp_path):
    (tmp_path / PB.filename).write_bytes(b"\0" * PB.size)  # right size, wrong bytes

    path = fetch.fetch_file(PB, tmp_path, base_url=server.url, **_fast())

    assert len(server.requests) == 1 and _sha(path) == PB.sha256


def _refused_base() -> tuple[str, str]:
    """A mirror URL on a port nobody listens on, and its host:port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/models", f"127.0.0.1:{port}"


@pytest.fixture
def attempts(monkeypatch) -> list[str]:
    """URLs of every download attempt (the real attempts go on as before)."""
    seen: list[str] = []
    real = fetch._download_once

    def counting(url, *args, **kw):
        seen.append(url)
        return real(url, *args, **kw)

    monkeypatch.setattr(fetch, "_download_once", counting)
    return seen


def test_connection_refused_is_one_line_error_without_retries(tmp_path, attempts):
    base, host = _refused_base()

    with pytest.raises(HostUnreachableError) as info:
        fetch.fetch_file(PB, tmp_path, base_url=base, retries=3, **_fast())

    msg = str(info.value)
    assert "\n" not in msg
    assert f"cannot reach {host}" in msg and "refused" in msg
    assert len(attempts) == 1  # refused stays refused: no retry
    assert not (tmp_path / PB.filename).exists()


def _families() -> list[str]:
    """Model families in registry order: a backbone with its heads, or a model alone."""
    return list(dict.fromkeys(spec.backbone or spec.name for spec in registry.MODELS.values()))


@pytest.mark.parametrize("kind", ["refused", "no DNS"])
def test_unreachable_host_fails_fast_with_one_line_per_family(tmp_path, attempts, kind):
    # Offline, every file fails the same way: one attempt in all, and one line per
    # model family (musicnn + heads, effnet + heads, tempocnn, ...), not one per file.
    if kind == "refused":
        base, host = _refused_base()
    else:  # .invalid never resolves (RFC 2606), online or not
        base, host = "http://models.example.invalid/models", "models.example.invalid"
    report = fetch.fetch_models(None, dest_dir=tmp_path, base_url=base, retries=3, **_fast())

    assert len(attempts) == 1
    files = {f.filename for spec in registry.MODELS.values() for f in spec.files}
    assert {name for name, _ in report.failed} == files and not report.fetched
    lines = report.failure_lines()
    assert [line.split(":")[0].split()[0] for line in lines] == _families()
    assert all(f": cannot reach {host}" in line for line in lines)
    assert lines[0].startswith("musicnn and 2 of its heads: ")
    assert lines[1].startswith("effnet and 13 of its heads: ")


def test_models_fetch_offline_says_both_ways_out(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from engine.cli import cli

    base, host = _refused_base()
    monkeypatch.setenv("ENGINE_MODELS", str(tmp_path / "unused"))  # restored after the test
    result = CliRunner().invoke(cli, ["models", "fetch", "--models", str(tmp_path / "models")],
                                env={fetch.BASE_URL_ENV: base})
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    families = _families()
    assert len(lines) == len(families) + 1  # one per family, then the way out
    assert [line.split()[1].rstrip(":") for line in lines[:-1]] == families
    assert all(line.startswith("failed   ") and f"cannot reach {host}" in line for line in lines[:-1])
    assert f"into {tmp_path / 'models'}" in lines[-1]
    assert "engine models fetch" in lines[-1] and "--models DIR" in lines[-1] and "ENGINE_MODELS=DIR" in lines[-1]


def test_http_404_is_not_retried(server, tmp_path):
    url = f"{registry.OFFICIAL_BASE_URL}/x/no-such-model.pb"
    ghost = registry.ModelFile("no-such-model.pb", url, "0" * 64)

    with pytest.raises(DownloadError, match="404"):
        fetch.fetch_file(ghost, tmp_path, base_url=server.url, retries=3, **_fast())
    assert len(server.requests) == 1


def test_env_var_names_the_mirror(server, tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.BASE_URL_ENV, server.url)

    path = fetch.fetch_file(JSON, tmp_path, **_fast())

    assert _sha(path) == JSON.sha256 and len(server.requests) == 1


def test_failures_are_reported_not_raised(server, tmp_path):
    server.corrupt.add(JSON.filename)

    report = fetch.fetch_models(["emomusic"], dest_dir=tmp_path, base_url=server.url, **_fast())

    assert [p.name for p in report.fetched] == [PB.filename]
    assert [name for name, _ in report.failed] == [JSON.filename]
    assert "SHA-256" in report.failed[0][1] and not report.ok


def test_unknown_name_fails_before_downloading(server, tmp_path):
    with pytest.raises(UnknownModelError):
        fetch.fetch_models(["emomusic", "nope"], dest_dir=tmp_path, base_url=server.url)
    assert server.requests == []


def test_presence_checks_existence_not_hash(shared_models, tmp_path):
    assert not present(EMOMUSIC, directory=tmp_path)
    for mf in EMOMUSIC.files:
        shutil.copy(shared_models / mf.filename, tmp_path)
    assert present(EMOMUSIC, directory=tmp_path)

    (tmp_path / JSON.filename).unlink()
    assert missing_files([EMOMUSIC], directory=tmp_path) == [(EMOMUSIC, JSON)]

    # EffNet: the .pb stands in for the official ONNX; any non-empty file counts
    # (a damaged one fails when loaded), an empty one does not. The ONNX is what is
    # reported missing.
    effnet = registry.get("effnet")
    shutil.copy(shared_models / effnet.metadata.filename, tmp_path)
    with open(tmp_path / effnet.graph.filename, "wb") as fh:
        fh.truncate(effnet.graph.size)
    assert present(effnet, directory=tmp_path)
    with open(tmp_path / effnet.graph.filename, "wb") as fh:
        fh.truncate(0)
    assert missing_files(effnet, directory=tmp_path) == [(effnet, effnet.official_onnx)]


def test_offline_message_names_files_folder_and_command(tmp_path):
    missing = missing_files(
        [registry.get("emomusic"), registry.get("musicnn")], directory=tmp_path
    )
    msg = fetch.offline_message(missing, directory=tmp_path)

    assert "engine models fetch emomusic musicnn" in msg
    assert str(tmp_path) in msg
    for _, mf in missing:
        assert mf.filename in msg and mf.url in msg
    assert fetch.offline_message([]) == ""


def test_presence_checks_do_not_load_the_downloader():
    # Every CLI start asks whether models are present: that must not import the
    # downloader (models.fetch, urllib, http.client).
    from tests.freshimport import loaded_by

    assert loaded_by("models.paths", ("models.fetch", "urllib.request", "http.client")) == []
