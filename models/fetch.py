"""Download model files: resumable, checksummed, moved into place atomically.

Longer than 500 lines: one job, getting verified files, whose resume, retry, mirror
and offline paths each need their own handling and message.

Files come from Essentia's official site (``registry.OFFICIAL_BASE_URL``) unless a
mirror is named, by the ``base_url`` argument or the ``ENGINE_MODELS_URL``
environment variable; the mirror replaces the official base and keeps the rest of
the path (``<base>/classification-heads/emomusic/emomusic-msd-musicnn-2.pb``).

A download goes to ``<name>.part`` next to its destination. A dropped connection
keeps the ``.part`` and the next attempt asks for the rest with an HTTP ``Range``
request (a server that answers ``200`` instead of ``206`` is read from the start
again). Only a complete file whose SHA-256 matches the registry is renamed into
place, so a file under its final name is always a verified one.

Whether a model is in place is asked of :mod:`models.paths` (existence only, no hashing);
:func:`fetch_file` does hash a file it finds already in place before deciding not to
download it again.

Only the standard library's ``urllib`` is used, so proxies set through
``http_proxy``/``https_proxy`` apply as for any Python program.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import errno
import re
import socket
import stat
import urllib.parse
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from models import registry
from models.errors import ChecksumError, DownloadError, HostUnreachableError
from models.paths import missing_files, models_dir
from models.registry import ModelFile, ModelSpec

log = logging.getLogger(__name__)

BASE_URL_ENV = "ENGINE_MODELS_URL"
PART_SUFFIX = ".part"

_CHUNK = 1 << 16
_USER_AGENT = "music-engine/0.1 (python-urllib)"


class _TransferError(Exception):
    """A response ended early or did not fit the request; worth another attempt."""


# Failures a later attempt can get past. HTTPError is a URLError but is handled
# before these, since most HTTP statuses (404, 403) will not change on retry.
_NETWORK_ERRORS = (
    urllib.error.URLError,  # connection refused, DNS failure, TLS errors
    http.client.HTTPException,  # IncompleteRead, RemoteDisconnected, bad status line
    ConnectionError,  # reset / aborted mid-body
    TimeoutError,  # socket.timeout is an alias of it since Python 3.10
    _TransferError,
)


@dataclass
class FetchReport:
    """What :func:`fetch_models` did, file by file.

    Attributes
    ----------
    dest_dir : Path
        The folder the files were fetched into.
    fetched : list of Path
        Files downloaded and verified in this run.
    already_present : list of Path
        Files that were in place with the right SHA-256, so not downloaded.
    failed : list of (str, str)
        ``(file name, reason)`` for each file that could not be fetched; the reason
        is the one-line message of the :class:`~models.errors.DownloadError` or
        :class:`~models.errors.ChecksumError`.
    """

    dest_dir: Path
    fetched: list[Path] = field(default_factory=list)
    already_present: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def failure_lines(self) -> list[str]:
        """One line per model family and reason, not per file.

        Offline, every file fails for the same reason; 36 lines saying so would bury
        the way out.
        """
        groups: dict[tuple[str, str], list[str]] = {}
        for filename, reason in self.failed:
            spec = registry.get(filename)
            family = spec.backbone or spec.name
            names = groups.setdefault((family, reason), [])
            if spec.name not in names:
                names.append(spec.name)
        lines = []
        for (family, reason), names in groups.items():
            heads = [n for n in names if n != family]
            if family in names:
                who = family + (f" and {len(heads)} of its heads" if heads else "")
            else:
                who = ", ".join(heads)
            lines.append(f"{who}: {reason}")
        return lines

    def summary(self) -> str:
        """A few lines for the CLI: counts, then one line per failure."""
        lines = [
            f"{len(self.fetched)} downloaded, {len(self.already_present)} already present, "
            f"{len(self.failed)} failed (in {self.dest_dir})"
        ]
        lines += [f"  {name}: {reason}" for name, reason in self.failed]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# URLs and checksums


def resolve_url(model_file: ModelFile, base_url: str | None = None) -> str:
    """The URL to download ``model_file`` from.

    Parameters
    ----------
    model_file : ModelFile
        The file as the registry describes it.
    base_url : str, optional
        A mirror replacing ``registry.OFFICIAL_BASE_URL``; when not given,
        ``$ENGINE_MODELS_URL`` is used if set, else the official URL.

    Returns
    -------
    str
        The mirror's base plus the file's path below the official base (its
        category folders included), or the official URL unchanged.
    """
    base = base_url or os.environ.get(BASE_URL_ENV) or None
    if not base:
        return model_file.url
    base = base.rstrip("/")
    official = registry.OFFICIAL_BASE_URL.rstrip("/")
    if model_file.url.startswith(official + "/"):
        return base + model_file.url[len(official) :]
    # A URL outside the official tree has no relative path to keep.
    return f"{base}/{model_file.filename}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# (path, size, mtime_ns, inode) -> digest. Per process only: a sidecar file would
# have to be written into the models folder, which may be read-only
# ($ENGINE_MODELS pointing at a shared copy), and hashing even the 18 MB EffNet
# takes a few tens of milliseconds, so remembering it across runs gains little.
_digests: dict[tuple[str, int, int, int], str] = {}


def _digest(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    digest = _digests.get(key)
    if digest is None:
        digest = _digests[key] = _sha256(path)
    return digest


def _is_verified(path: Path, model_file: ModelFile) -> bool:
    """True when ``path`` holds exactly the registry's file."""
    try:
        st = path.stat()
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    if model_file.size is not None and st.st_size != model_file.size:
        log.warning(
            "%s has %d bytes, expected %d; downloading it again", path, st.st_size, model_file.size
        )
        return False
    if _digest(path) != model_file.sha256.lower():
        log.warning("%s does not match its SHA-256; downloading it again", path)
        return False
    return True


def _one_line(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    if isinstance(error, urllib.error.HTTPError):
        text = f"HTTP {error.code} {error.reason}"
    elif isinstance(error, urllib.error.URLError):
        text = str(error.reason)
    elif isinstance(error, _TransferError):
        text = str(error)  # already written as a sentence here
    else:
        # Many socket errors have an empty str(); the type name is then the message.
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return " ".join(text.split())  # the CLI prints errors on one line


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` of a ``Content-Range`` header; None where absent."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


# ---------------------------------------------------------------------------
# Downloading


def _progress_bar(model_file: ModelFile, total: int | None, initial: int, progress: bool):
    # Imported here so that presence checks, which the CLI runs on every start,
    # do not pay for tqdm's import.
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=model_file.filename,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        # None lets tqdm switch itself off when stderr is not a terminal (logs, CI).
        disable=None if progress else True,
    )


def _download_once(
    url: str, part: Path, model_file: ModelFile, *, timeout: float, progress: bool
) -> None:
    """One request: append to ``part`` (or rewrite it) until the body ends.

    Raises one of ``_NETWORK_ERRORS`` (or ``HTTPError``) when the transfer is cut
    short; whatever arrived stays in ``part`` for the next attempt to resume.
    """
    offset = part.stat().st_size if part.exists() else 0
    if model_file.size is not None:
        if offset > model_file.size:
            part.unlink()  # longer than the real file: not a prefix of it
            offset = 0
        elif offset == model_file.size:
            return  # complete from an earlier run; the checksum decides if it is good

    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = getattr(response, "status", None)
        if status == 206:
            start, _ = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                # Some other slice than the one asked for: the part is of no use.
                part.unlink(missing_ok=True)
                raise _TransferError(
                    f"server answered a range request with bytes from {start}, not {offset}"
                )
        else:
            # 200 (or a file:// URL): the whole body follows, whatever was asked.
            if offset:
                log.info("%s: server ignored the range request; restarting", url)
            offset = 0

        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.strip().isdigit() else None
        total = offset + expected if expected is not None else model_file.size
        received = 0
        # read1 returns whatever has arrived; read(n) waits for n bytes, and when a
        # stalled connection times out the bytes it had buffered never reach the
        # .part, so the resume would start from further back than it needs to.
        read = getattr(response, "read1", response.read)
        with open(part, "ab" if offset else "wb") as out, _progress_bar(
            model_file, total, offset, progress
        ) as bar:
            while True:
                chunk = read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            out.flush()
            # The rename that follows must not publish a file whose bytes are
            # still only in the page cache.
            os.fsync(out.fileno())

    # http.client returns b"" rather than raising when the peer closes before
    # Content-Length bytes, so a short body has to be caught here.
    have = offset + received
    if expected is not None and received < expected:
        raise _TransferError(f"connection closed after {have} of {offset + expected} bytes")
    if expected is None and model_file.size is not None and have < model_file.size:
        raise _TransferError(f"connection closed after {have} of {model_file.size} bytes")


def _unreachable(error: BaseException) -> bool:
    """Whether the host cannot be reached at all, so that no retry can help.

    A name that does not resolve (offline, no DNS) or a refused connection fail the
    same way for every file on that host, at once; a timeout or a reset might not.
    """
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return isinstance(reason, (socket.gaierror, ConnectionRefusedError)) or (
        isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH))


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _retryable_status(code: int) -> bool:
    return code >= 500 or code in (408, 425, 429)


def _download(
    url: str,
    part: Path,
    model_file: ModelFile,
    *,
    timeout: float,
    retries: int,
    backoff: float,
    progress: bool,
) -> None:
    attempts = max(0, retries) + 1
    last: BaseException | None = None
    restarted = False
    attempt = 0
    while attempt < attempts:
        if attempt and backoff > 0:
            time.sleep(backoff * 2 ** (attempt - 1))
        attempt += 1
        try:
            _download_once(url, part, model_file, timeout=timeout, progress=progress)
            return
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416:
                _, total = _content_range(e.headers.get("Content-Range"))
                if total is not None and part.exists() and part.stat().st_size == total:
                    return  # the part already holds the whole file
                # The part is not a prefix the server knows (the file changed
                # upstream): start over, once, without spending an attempt on it.
                part.unlink(missing_ok=True)
                if not restarted:
                    restarted = True
                    attempt -= 1
                    continue
            elif not _retryable_status(e.code):
                raise DownloadError(f"cannot download {url}: {_one_line(e)}") from None
            last = e
        except _NETWORK_ERRORS as e:
            if _unreachable(e):
                raise HostUnreachableError(f"cannot reach {_host(url)} ({_one_line(e)})") from None
            last = e
        except OSError as e:
            # Not the network: the disk (full, read-only, permissions).
            raise DownloadError(f"cannot write {part}: {e.strerror or e}") from None
        log.info("%s: attempt %d of %d failed: %s", url, attempt, attempts, _one_line(last))
    raise DownloadError(
        f"cannot download {url} ({attempts} attempt{'s' if attempts > 1 else ''}): "
        f"{_one_line(last)}"
    )


def _fetch(
    model_file: ModelFile,
    dest_dir: Path,
    *,
    base_url: str | None,
    progress: bool,
    timeout: float,
    retries: int,
    backoff: float,
) -> tuple[Path, bool]:
    """:func:`fetch_file`, also saying whether a download happened."""
    dest_dir = Path(dest_dir).expanduser()
    final = dest_dir / model_file.filename
    if _is_verified(final, model_file):
        return final, False

    url = resolve_url(model_file, base_url)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {dest_dir}: {e.strerror or e}") from None
    part = final.with_name(final.name + PART_SUFFIX)
    _download(
        url,
        part,
        model_file,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        progress=progress,
    )

    expected = model_file.sha256.lower()
    actual = _sha256(part)
    if actual != expected:
        # A bad .part must not be resumed from next time; drop it entirely.
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{model_file.filename}: SHA-256 mismatch (expected {expected}, got {actual}) "
            f"for the file from {url}; the download was discarded"
        )
    os.replace(part, final)
    _digest(final)  # remember the verification for this process
    return final, True


def fetch_file(
    model_file: ModelFile,
    dest_dir: Path,
    *,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 30,
    retries: int = 3,
    backoff: float = 1.0,
) -> Path:
    """Download one model file into ``dest_dir`` unless it is already there.

    A file already in place is hashed; when its SHA-256 matches the registry nothing
    is downloaded, otherwise it is downloaded again (and replaced only once the new
    copy checks out).

    Parameters
    ----------
    model_file : ModelFile
        The file to fetch, with its official URL and SHA-256.
    dest_dir : Path
        Folder to put it in; created if needed.
    base_url : str, optional
        Mirror replacing ``registry.OFFICIAL_BASE_URL`` (see :func:`resolve_url`);
        defaults to ``$ENGINE_MODELS_URL``, then the official site.
    progress : bool
        Show a byte progress bar on stderr (only when stderr is a terminal).
    timeout : float
        Seconds to wait for the connection and for each read.
    retries : int
        Further attempts after a failed one (dropped connection, timeout, 5xx);
        each resumes from the ``.part`` file when the server supports ranges.
    backoff : float
        Seconds before the first retry, doubling for each later one; 0 for none.

    Returns
    -------
    Path
        The verified file, ``dest_dir / model_file.filename``.

    Raises
    ------
    DownloadError
        The file could not be downloaded (the one-line message names the URL) or
        written. A partial download is kept as ``<name>.part`` for the next call.
    ChecksumError
        The downloaded file's SHA-256 is not the registry's; the ``.part`` is deleted
        and no file is put in place.
    """
    path, _ = _fetch(
        model_file,
        dest_dir,
        base_url=base_url,
        progress=progress,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
    )
    return path


def _resolve(names: Iterable[str] | None) -> list[ModelSpec]:
    if names is None:
        return list(registry.MODELS.values())
    if isinstance(names, str):  # one name passed bare, not as a list
        names = [names]
    specs: list[ModelSpec] = []
    for name in names:
        spec = registry.get(name)  # raises UnknownModelError before any download
        if spec not in specs:
            specs.append(spec)
    return specs


def fetch_models(
    names: Iterable[str] | None = None,
    *,
    dest_dir: Path | None = None,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 30,
    retries: int = 3,
    backoff: float = 1.0,
) -> FetchReport:
    """Fetch the files of several models, carrying on past failures.

    For each model its :attr:`ModelSpec.files` are fetched: the official ONNX in
    place of the ``.pb`` when there is one (the EffNet backbone), plus the ``.json``.
    A head's backbone is *not* added automatically: ask for it by name too (e.g.
    ``["emomusic", "musicnn"]``), or pass ``names=None`` for every model.

    Parameters
    ----------
    names : iterable of str, optional
        Short names (``emomusic``) or file stems / file names, as
        :func:`registry.get` accepts. None means every model in the registry.
    dest_dir : Path, optional
        Folder to fetch into; defaults to :func:`models.paths.models_dir`.
    base_url, progress, timeout, retries, backoff
        As for :func:`fetch_file`.

    Returns
    -------
    FetchReport
        Files downloaded, already present, and failed with their reasons.

    Raises
    ------
    UnknownModelError
        A name is not in the registry (checked before anything is downloaded).
    """
    specs = _resolve(names)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else models_dir()
    report = FetchReport(dest_dir=dest)
    seen: set[str] = set()
    unreachable: dict[str, str] = {}  # host -> why: its other files are not even tried
    for spec in specs:
        for model_file in spec.files:
            if model_file.filename in seen:
                continue
            seen.add(model_file.filename)
            host = _host(resolve_url(model_file, base_url))
            if host in unreachable and not _is_verified(dest / model_file.filename, model_file):
                report.failed.append((model_file.filename, unreachable[host]))
                continue
            try:
                path, downloaded = _fetch(
                    model_file,
                    dest,
                    base_url=base_url,
                    progress=progress,
                    timeout=timeout,
                    retries=retries,
                    backoff=backoff,
                )
            except HostUnreachableError as e:
                unreachable[host] = str(e)
                report.failed.append((model_file.filename, str(e)))
                continue
            except (DownloadError, ChecksumError) as e:
                report.failed.append((model_file.filename, str(e)))
                continue
            (report.fetched if downloaded else report.already_present).append(path)
    return report


def offline_message(
    missing: Iterable[tuple[ModelSpec, ModelFile]], *, directory: Path | None = None
) -> str:
    """Plain-words instructions for files that are missing.

    Parameters
    ----------
    missing : iterable of (ModelSpec, ModelFile)
        As returned by :func:`missing_files`.
    directory : Path, optional
        The folder the files belong in; defaults to :func:`models.paths.models_dir`.

    Returns
    -------
    str
        Several lines: the missing files and their models, the folder, the
        ``engine models fetch NAME ...`` command, and the URLs to download them
        from by hand on a machine without network access. Empty when nothing is
        missing.
    """
    missing = list(missing)
    if not missing:
        return ""
    root = Path(directory).expanduser() if directory is not None else models_dir()
    names = list(dict.fromkeys(spec.name for spec, _ in missing))
    where = f"{root}"
    if directory is None and os.environ.get("ENGINE_MODELS"):
        where += " (the folder $ENGINE_MODELS names)"
    lines = [f"Model files missing from {where}:"]
    lines += [f"  {mf.filename}  (model '{spec.name}')" for spec, mf in missing]
    lines.append(f"To download them, run:  engine models fetch {' '.join(names)}")
    lines.append(f"Offline, copy them into {root}, or into any folder and pass --models DIR "
                 "(or set ENGINE_MODELS=DIR); they are at:")
    lines += [f"  {resolve_url(mf)}" for _, mf in missing]
    return "\n".join(lines)


def fetch_missing(*, progress: bool = True, timeout: float = 15) -> FetchReport | None:
    """Fetch every model whose files are missing, as a first build does by itself.

    The first missing file is tried once, without retries: when it cannot be
    reached (offline, firewalled) the rest is not attempted, so an offline build
    loses seconds, not minutes. Returns None when nothing was missing.
    """
    specs = []
    for spec, _ in missing_files(list(registry.MODELS.values())):
        if spec not in specs:
            specs.append(spec)
    if not specs:
        return None
    first = fetch_models([specs[0].name], progress=progress, timeout=timeout, retries=0)
    if first.failed or len(specs) == 1:
        return first
    rest = fetch_models([s.name for s in specs[1:]], progress=progress, timeout=timeout)
    rest.fetched = first.fetched + rest.fetched
    rest.already_present = first.already_present + rest.already_present
    return rest
