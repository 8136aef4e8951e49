"""engine.scan: which files are found, in what order, and the move-detection fingerprint."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from engine.errors import ScanError
from engine.scan import FoundFile, content_hash, scan
from index.audiofiles import sniff_audio


@pytest.fixture()
def tree(tmp_path: Path, corpus: Path) -> Path:
    """A small collection with nesting, hidden entries, a symlink loop and decoys."""
    edge = corpus / "edge"
    root = tmp_path / "music"
    (root / "Artist" / "Album").mkdir(parents=True)
    (root / "Artist" / "Album" / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    shutil.copy(edge / "t.flac", root / "Artist" / "Album" / "01 Song.flac")
    shutil.copy(edge / "t.mp3", root / "Artist" / "Album" / "02 Song.MP3")  # upper-case ext
    (root / "Artist" / "notes.txt").write_text("liner notes\n")
    shutil.copy(edge / "t.ogg", root / "a.ogg")
    shutil.copy(edge / "t.m4a", root / "no_extension")  # audio found by content
    shutil.copy(edge / "t.wma", root / "wrong.ext")  # audio found by content
    shutil.copy(edge / "bad_text.mp3", root / "text.mp3")  # found by name, fails at decode
    (root / "readme").write_text("not audio at all\n")  # no extension, not audio
    (root / ".hidden").mkdir()
    shutil.copy(edge / "t.ogg", root / ".hidden" / "secret.ogg")
    shutil.copy(edge / "t.ogg", root / ".dotfile.ogg")
    os.symlink(root, root / "Artist" / "loop")  # points back at the root
    return root


def test_scan_finds_audio_in_sorted_order(tree: Path):
    found = list(scan(tree))
    rel = [f.path.relative_to(tree).as_posix() for f in found]
    assert rel == [
        "Artist/Album/01 Song.flac",
        "Artist/Album/02 Song.MP3",
        "a.ogg",
        "no_extension",
        "text.mp3",
        "wrong.ext",
    ]
    for f in found:
        assert isinstance(f, FoundFile)
        assert f.path.is_absolute()
        st = f.path.stat()
        assert (f.size, f.mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_scan_is_deterministic_and_root_is_resolved(tree: Path, monkeypatch):
    monkeypatch.chdir(tree.parent)
    assert list(scan(Path(tree.name))) == list(scan(tree))
    os.symlink(tree, tree.parent / "alias")  # the same root under another name
    assert list(scan(tree.parent / "alias")) == list(scan(tree))


def test_symlinked_folder_is_followed_once(tmp_path: Path, corpus: Path):
    real = tmp_path / "real"
    real.mkdir()
    shutil.copy(corpus / "edge" / "t.ogg", real / "x.ogg")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(real, root / "link_a")
    os.symlink(real, root / "link_b")  # same folder again: listed once
    os.symlink(tmp_path / "missing.ogg", root / "broken.ogg")  # dangling: skipped
    assert [f.path.relative_to(root).as_posix() for f in scan(root)] == ["link_a/x.ogg"]
    # A link to a file already reachable is one file, named by the first path in walk
    # order (sorted: "file_link.ogg" comes before "link_a/").
    os.symlink(real / "x.ogg", root / "file_link.ogg")
    assert [f.path.relative_to(root).as_posix() for f in scan(root)] == ["file_link.ogg"]


def test_unreadable_folder_is_skipped_with_warning(tree: Path, monkeypatch, caplog):
    # Tests run as root here, where chmod 000 does not stop reading: fail scandir instead.
    real_scandir = os.scandir
    blocked = tree / "Artist"

    def scandir(path):
        if Path(path) == blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.WARNING, logger="engine.scan"):
        rel = [f.path.relative_to(tree).as_posix() for f in scan(tree)]
    assert rel == ["a.ogg", "no_extension", "text.mp3", "wrong.ext"]
    assert "unreadable folder" in caplog.text and "Artist" in caplog.text


def test_missing_root_raises(tmp_path: Path):
    with pytest.raises(ScanError, match="missing"):
        list(scan(tmp_path / "missing"))
    (tmp_path / "f.mp3").write_bytes(b"x")
    with pytest.raises(ScanError, match="not a folder"):
        list(scan(tmp_path / "f.mp3"))


def test_sniff_recognises_every_audio_file_in_the_corpus(corpus: Path):
    for p in sorted((corpus / "edge").rglob("*")):
        if p.is_file() and p.stat().st_size > 100:  # the tiny ones are the junk files
            assert sniff_audio(p.read_bytes()[:4096]), p.name
    for p in (corpus / "edge").glob("*"):
        if p.is_file() and p.stat().st_size <= 100:
            assert not sniff_audio(p.read_bytes()[:4096]), p.name


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\xff\xd8\xff\xe0\x00\x10JFIF",  # JPEG: starts with 0xFF but no MPEG sync
        b"\xff\xfb\x90\x00" + bytes(4092),  # a lone MPEG header with no second frame
        b"PK\x03\x04" + bytes(60),  # zip
        b"\x00\x00\x00\x18ftypisom" + bytes(60),  # generic MP4: usually video
        b"RIFF\x00\x00\x00\x00AVI LIST",  # RIFF but not WAVE
    ],
)
def test_sniff_rejects_non_audio(head: bytes):
    assert not sniff_audio(head)


def test_content_hash_identifies_same_content(tmp_path: Path, corpus: Path):
    src = corpus / "edge" / "t_pcm24.wav"  # 1.6 MB: exercises the three-window path
    a = tmp_path / "a.wav"
    b = tmp_path / "moved" / "b.wav"
    b.parent.mkdir()
    shutil.copy(src, a)
    shutil.copy(src, b)
    h = content_hash(a)
    assert len(h) == 32 and int(h, 16) >= 0
    assert content_hash(b) == h  # moved/renamed: same fingerprint

    data = bytearray(src.read_bytes())
    data[-1000] ^= 0xFF  # change within the last window
    (tmp_path / "c.wav").write_bytes(data)
    assert content_hash(tmp_path / "c.wav") != h
    (tmp_path / "d.wav").write_bytes(src.read_bytes() + b"\0")  # different size
    assert content_hash(tmp_path / "d.wav") != h

    small = tmp_path / "small.bin"  # whole-file path
    small.write_bytes(b"abc")
    assert content_hash(small) != content_hash(tmp_path / "d.wav")
    small2 = tmp_path / "small2.bin"
    small2.write_bytes(b"abd")
    assert content_hash(small) != content_hash(small2)
    (tmp_path / "empty").write_bytes(b"")
    assert len(content_hash(tmp_path / "empty")) == 32


def test_content_hash_of_missing_file_raises(tmp_path: Path):
    with pytest.raises(ScanError, match="cannot read"):
        content_hash(tmp_path / "nope.mp3")
