"""engine.tags: tags from every tag system, cross-checked against FFmpeg's reading."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import mutagen
import pytest
from mutagen.asf import ASF
from mutagen.id3 import ID3, TALB, TCON, TDRC, TIT2, TPE1, TPE2, TRCK

from engine.tags import Tags, display_name, read_tags

FULL = {
    "artist": "Test Artist",
    "title": "Test Title",
    "album": "Test Album",
    "album_artist": "Various Artists",
    "year": 2004,
    "genre": "Rock",
    "track_number": 3,
}


def pyav_tags(path: Path) -> dict[str, str]:
    """The second opinion: FFmpeg's container and stream metadata, keys lower-cased."""
    with av.open(str(path)) as c:
        metas = [c.metadata] + [s.metadata for s in c.streams.audio]
    return {k.lower(): v for meta in metas for k, v in meta.items()}


def assert_agrees_with_pyav(tags: Tags, path: Path) -> None:
    ff = pyav_tags(path)
    assert tags.artist == ff.get("artist")
    assert tags.title == ff.get("title")
    assert tags.album == ff.get("album")


@pytest.fixture()
def edge(corpus: Path) -> Path:
    return corpus / "edge"


# --- real files in the corpus ---------------------------------------------------------


def test_vorbis_comments_with_year_key_and_iso_timestamp(corpus: Path):
    path = corpus / "library/librosa-examples/Karissa_Hobbs_-_Lets_Go_Fishin.ogg"
    tags = read_tags(path)
    # The file has YEAR=2016-03-18T12:24:48 (not DATE) and TRACKNUMBER=9.
    assert tags == Tags(
        artist="Karissa Hobbs",
        title="Let's Go Fishin'",
        album="Age of Flowers",
        year=2016,
        genre="Folk",
        track_number=9,
    )
    assert_agrees_with_pyav(tags, path)
    assert pyav_tags(path)["year"].startswith(str(tags.year))
    assert pyav_tags(path)["genre"] == tags.genre


def test_track_number_with_total(corpus: Path):
    path = corpus / "library/librosa-examples/Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg"
    tags = read_tags(path)
    assert (tags.artist, tags.title, tags.track_number) == (
        "The U.S. Army Strings",
        "Hungarian Dance No. 5",
        7,  # TRACKNUMBER=7/13
    )
    assert tags.album is None and tags.year is None
    assert pyav_tags(path)["track"] == "7/13"
    assert_agrees_with_pyav(tags, path)


def test_album_artist_and_date(corpus: Path):
    path = corpus / "library/librosa-examples/Kevin_MacLeod_-_Vibe_Ace.ogg"
    tags = read_tags(path)
    assert tags == Tags(
        artist="Kevin MacLeod",
        title="Vibe Ace",
        album="Jazz Sampler",
        album_artist="Kevin MacLeod",
        year=2011,  # DATE=2011-07-19
        genre="Jazz",
        track_number=None,
    )
    assert_agrees_with_pyav(tags, path)
    assert pyav_tags(path)["album_artist"] == tags.album_artist


def test_track_zero_means_unset(corpus: Path):
    path = corpus / "library/librosa-examples/Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg"
    assert pyav_tags(path)["track"] == "0"
    assert read_tags(path).track_number is None


def test_multiple_values(corpus: Path):
    # This file carries nine TITLE and eight TRACKNUMBER comments.
    path = corpus / "library/HyperRogue/hr3-mirror.ogg"
    tags = read_tags(path)
    assert tags.title.startswith("Living Caves; Crossroads; Desert")
    assert tags.title.count("; ") == 8
    assert tags.track_number == 2  # the first
    assert (tags.artist, tags.album, tags.year, tags.genre) == ("NeonCorridor", "HyperRogue", 2013, "Game")
    ff = pyav_tags(path)
    assert ff["title"].split(";") == tags.title.split("; ")  # FFmpeg joins with ";"


def test_file_ffmpeg_cannot_open_still_has_tags(corpus: Path):
    # FFmpeg 8 refuses this Ogg Vorbis file; mutagen reads its comments.
    path = corpus / "library/HyperRogue/hr-savino-caribbean.ogg"
    assert read_tags(path) == Tags(
        artist="Will Savino", title="Caribbean", album="HyperRogue", year=2018, track_number=21
    )


def test_untagged_files(edge: Path, corpus: Path):
    # t_tagged.ogg carries only an ENCODER comment despite its name (FFmpeg agrees).
    assert read_tags(edge / "t_tagged.ogg") == Tags()
    assert set(pyav_tags(edge / "t_tagged.ogg")) == {"encoder"}
    assert read_tags(edge / "t.mp3") == Tags()
    assert read_tags(corpus / "library/Hedgewars/Themes/01 Art.mp3") == Tags()


@pytest.mark.parametrize(
    "name", ["bad_text.mp3", "readme_not_audio.ogg", "bad_empty.wav", "zero_bytes.flac", "bad_truncated.mp3"]
)
def test_bad_files_give_empty_tags(edge: Path, name: str):
    assert read_tags(edge / name) == Tags()


def test_missing_file_and_folder_give_empty_tags(tmp_path: Path):
    assert read_tags(tmp_path / "missing.mp3") == Tags()
    assert read_tags(tmp_path) == Tags()


# --- each tag system, written into copies ---------------------------------------------


def write_easy(path: Path, **extra: str) -> None:
    m = mutagen.File(path, easy=True)
    if m.tags is None:
        m.add_tags()
    m["artist"] = FULL["artist"]
    m["title"] = FULL["title"]
    m["album"] = FULL["album"]
    m["albumartist"] = FULL["album_artist"]
    m["genre"] = FULL["genre"]
    m["date"] = "2004-05-01"
    m["tracknumber"] = "3/12"
    for k, v in extra.items():
        m[k] = v
    m.save()


@pytest.mark.parametrize("name", ["t.mp3", "t.m4a", "t_alac.m4a", "t.flac", "t.ogg", "t.opus"])
def test_easy_formats(tmp_path: Path, edge: Path, name: str):
    path = tmp_path / name
    shutil.copy(edge / name, path)
    write_easy(path)
    tags = read_tags(path)
    assert tags == Tags(**FULL)
    assert_agrees_with_pyav(tags, path)


def test_wma_native_keys(tmp_path: Path, edge: Path):
    path = tmp_path / "t.wma"
    shutil.copy(edge / "t.wma", path)
    m = ASF(path)
    m["Author"] = FULL["artist"]
    m["Title"] = FULL["title"]
    m["WM/AlbumTitle"] = FULL["album"]
    m["WM/AlbumArtist"] = FULL["album_artist"]
    m["WM/Year"] = "2004"
    m["WM/Genre"] = FULL["genre"]
    m["WM/TrackNumber"] = "3"
    m.save()
    tags = read_tags(path)
    assert tags == Tags(**FULL)
    assert_agrees_with_pyav(tags, path)  # FFmpeg maps Author/WM/AlbumTitle to artist/album
    assert pyav_tags(path)["track"] == "3"

    m = ASF(path)
    del m["WM/TrackNumber"]
    m["WM/Track"] = "2"  # the older, zero-based key
    m.save()
    assert read_tags(path).track_number == 3


@pytest.mark.parametrize("name", ["t.aiff", "t_pcm24.wav"])
def test_id3_frames_in_aiff_and_wav(tmp_path: Path, edge: Path, name: str):
    path = tmp_path / name
    shutil.copy(edge / name, path)
    m = mutagen.File(path)
    m.add_tags()
    m.tags.add(TPE1(encoding=3, text=[FULL["artist"]]))
    m.tags.add(TIT2(encoding=3, text=[FULL["title"]]))
    m.tags.add(TALB(encoding=3, text=[FULL["album"]]))
    m.tags.add(TPE2(encoding=3, text=[FULL["album_artist"]]))
    m.tags.add(TDRC(encoding=3, text=["2004-05-01"]))
    m.tags.add(TCON(encoding=3, text=["(17)"]))  # ID3v1 genre number 17 = Rock
    m.tags.add(TRCK(encoding=3, text=["3/12"]))
    m.save()
    assert isinstance(mutagen.File(path, easy=True).tags, ID3)  # no easy mode here
    tags = read_tags(path)
    assert tags == Tags(**FULL)
    assert_agrees_with_pyav(tags, path)


def test_matroska_via_ffmpeg(tmp_path: Path, edge: Path):
    # mutagen does not read Matroska: the tags come from FFmpeg.
    path = tmp_path / "t.mka"
    with av.open(str(edge / "t.ogg")) as src, av.open(str(path), "w") as out:
        out.metadata.update({"ARTIST": "Mka Artist", "TITLE": "Mka Title", "DATE": "1999-02-03"})
        stream = out.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    assert mutagen.File(path) is None
    tags = read_tags(path)
    assert (tags.artist, tags.title, tags.year) == ("Mka Artist", "Mka Title", 1999)


@pytest.mark.parametrize(
    "date, year",
    [("2004", 2004), ("2004-05-01", 2004), ("2016-03-18T12:24:48", 2016), ("05/01/2004", 2004), ("unknown", None)],
)
def test_year_parsing(tmp_path: Path, edge: Path, date: str, year):
    path = tmp_path / "t.flac"
    shutil.copy(edge / "t.flac", path)
    m = mutagen.File(path)
    m["date"] = date
    m.save()
    assert read_tags(path).year == year


@pytest.mark.parametrize("track, number", [("3/12", 3), ("07", 7), ("12", 12), ("A1", None), ("0/9", None)])
def test_track_parsing(tmp_path: Path, edge: Path, track: str, number):
    path = tmp_path / "t.flac"
    shutil.copy(edge / "t.flac", path)
    m = mutagen.File(path)
    m["tracknumber"] = track
    m.save()
    assert read_tags(path).track_number == number


# --- display_name -------------------------------------------------------------------------


def test_display_name():
    path = Path("/music/Ünïcödé/01 Ñame with spaces.ogg")
    assert display_name(Tags(artist="A", title="T"), path) == "A – T"
    assert display_name(Tags(title="T"), path) == "T"
    assert display_name(Tags(artist="A"), path) == "01 Ñame with spaces"
    assert display_name(Tags(), path) == "01 Ñame with spaces"
    assert display_name(Tags(artist="", title=""), "x/track.mp3") == "track"
