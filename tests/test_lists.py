"""List files: the VideoMAE format, and the builders from each dataset's official annotation files."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
from os_fakes import ffmpeg_out_of_memory, swap_listing, swap_stat, unenterable
from training import in_one_process
from videos import CORPUS, affine_video, cut_mid_gop, write_corpus_file, write_keyint_video, write_video

from mme.cli import main as cli_main
from mme.data import lists
from mme.data.lists import (
    LISTS_LOCK,
    VIDEO_EXTS,
    ListEntry,
    build_lists,
    check_labels,
    check_lists,
    from_class_folders,
    from_hmdb51,
    from_kinetics,
    from_ssv2,
    from_ucf101,
    make_lists,
    read_classes,
    read_list,
    real_path,
    resolve,
    split_name,
    write_classes,
    write_list,
)
from mme.errors import ConfigError, DataError, MMEError, OutOfMemory
from mme.utils import exclusive_lock


def test_read_labelled_unlabelled_and_spaces(tmp_path):
    f = tmp_path / "l.txt"
    # comments are '#' and a space (indented too); HMDB51 names files '#20_Rhythm_clap_...avi'; '²' is no class id
    f.write_text("a/x.mp4 3\n\n# comment\n  # indented\n#\nmy videos/b c.mp4 0\n#20_clap.avi 1\nd.mp4 ²\ne.mp4 --2\n")
    entries, bad = read_list(f, strict=False)
    assert entries == [ListEntry("a/x.mp4", 3), ListEntry("my videos/b c.mp4", 0), ListEntry("#20_clap.avi", 1)]
    assert [(b.line_no, b.reason) for b in bad] == [
        (8, "bad label '²' (expected a class id >= 0 at the end of the line)"),
        (9, "bad label '--2' (expected a class id >= 0 at the end of the line)")]
    f.write_text("a/x.mp4\nmy videos/b c.mp4\n")
    assert read_list(f)[0] == [ListEntry("a/x.mp4"), ListEntry("my videos/b c.mp4")]
    assert resolve(ListEntry("a/x.mp4"), "/data") == "/data/a/x.mp4"
    assert resolve(ListEntry("/abs/x.mp4"), "/data") == "/abs/x.mp4"


def test_bad_label_names_file_and_line(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("a.mp4 1\nb.mp4 cat\nc.mp4 -2\nd.mp4 0\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: bad label 'cat'"):
        read_list(f)
    entries, bad = read_list(f, strict=False)
    assert [e.path for e in entries] == ["a.mp4", "d.mp4"]
    assert [(b.line_no, b.reason) for b in bad] == [
        (2, "bad label 'cat' (expected a class id >= 0 at the end of the line)"), (3, "negative label -2")]
    with pytest.raises(DataError, match=r"nope\.txt: cannot be read \(No such file or directory\)$"):
        read_list(tmp_path / "nope.txt")
    f.write_text("a.mp4 1.0\nb.mp4 0.0\n")  # labels saved as floats: not paths 'a.mp4 1.0'
    with pytest.raises(DataError, match=r"bad\.txt:1: a label that is not a whole number"):
        read_list(f, strict=False)


def test_a_line_without_its_label_whose_path_holds_a_space_is_said_to_have_no_label(tmp_path):
    """A line of a labelled list left without its label, its path holding a space (every Kinetics class folder:
    'train/air drumming/x.mp4'), was said to have the bad label 'drumming/x.mp4', by mme check, a run's failures
    and mme probe; its last word ends a path (a folder separator, a video suffix), so it has no label. A class name
    or a number mistyped stays a bad label."""
    f = tmp_path / "test.txt"
    f.write_text("train/air drumming/a.mp4 0\ntrain/air drumming/b.mp4\nmy clips/clip 1.mp4\nwin\\air drumming\\c\n"
                 "d.mp4 3a\ne.mp4 1.5\nf.mp4 cat\nmy clips/clip 2.mp4 1\n")
    entries, bad = read_list(f, strict=False)
    assert entries == [ListEntry("train/air drumming/a.mp4", 0), ListEntry("my clips/clip 2.mp4", 1)]
    no_label = "no label (its last word {!r} is part of the path; other lines of this list have one)"
    assert [(b.line_no, b.reason) for b in bad] == [
        (2, no_label.format("drumming/b.mp4")), (3, no_label.format("1.mp4")),
        (4, no_label.format("drumming\\c")),
        (5, "bad label '3a' (expected a class id >= 0 at the end of the line)"),
        (6, "bad label '1.5' (expected a class id >= 0 at the end of the line)"),
        (7, "bad label 'cat' (expected a class id >= 0 at the end of the line)")]
    with pytest.raises(DataError) as refused:  # mme probe's and fine-tuning's tests refuse the list so
        check_labels(f, 2, "the test list")
    assert str(refused.value) == f"{f}:2: {no_label.format('drumming/b.mp4')}: 'train/air drumming/b.mp4'"


def test_write_read_round_trip(tmp_path):
    entries = [ListEntry("a b.mp4", 2), ListEntry("c.mp4", 0)]
    write_list(tmp_path / "o.txt", entries)
    assert (tmp_path / "o.txt").read_text() == "a b.mp4 2\nc.mp4 0\n"
    assert read_list(tmp_path / "o.txt")[0] == entries


def test_class_folders(tmp_path):
    for rel in ("walk/v1.avi", "walk/v2.mp4", "jump/sub/v3.mkv", "jump/readme.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "jump" / "._v4.avi").write_bytes(b"x")  # macOS's companion of a copied file: not a video
    (tmp_path / "splits").mkdir()  # e.g. HMDB51's split files unpacked beside the classes: not a class
    (tmp_path / "splits" / "walk_test_split1.txt").write_text("v1.avi 1\n")
    splits, classes = from_class_folders(tmp_path)
    assert classes == ["jump", "walk"]
    assert splits["all"] == [ListEntry("jump/sub/v3.mkv", 0), ListEntry("walk/v1.avi", 1),
                             ListEntry("walk/v2.mp4", 1)]
    # classes sorted without regard to case, as UCF101's classInd.txt (35 Hammering, 36 HammerThrow)
    for name in ("HammerThrow", "Hammering", "JumpRope", "JumpingJack"):
        (tmp_path / "ucf" / name).mkdir(parents=True)
        (tmp_path / "ucf" / name / "v.avi").write_bytes(b"x")
    assert from_class_folders(tmp_path / "ucf")[1] == ["Hammering", "HammerThrow", "JumpingJack", "JumpRope"]
    for name in ("festival", "protest"):  # classes whose names hold 'val' or 'test'
        (tmp_path / "events" / name).mkdir(parents=True)
        (tmp_path / "events" / name / "a.mp4").write_bytes(b"x")
    assert from_class_folders(tmp_path / "events")[1] == ["festival", "protest"]


def test_videos_of_every_common_suffix_are_listed_and_other_files_are_said(tmp_path, caplog):
    """`mme lists folder` left out, without a word, videos whose suffix it did not know (.divx, .dv, .ogg, .m2v,
    .asf: FFmpeg reads each). They are listed now, and the other files in class folders are said: how many, by
    suffix, and one of them (a video under an unknown suffix would be among them)."""
    video = write_video(tmp_path / "v.mkv", affine_video(4, 32, 32)[0])
    names = ["a/one.divx", "a/two.dv", "a/three.MP4", "b/four.avi", "b/five.ogg", "b/six.m2v", "b/seven.asf",
             "b/sub/eight.mxf"]
    for rel in names:
        (tmp_path / "ds" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(video, tmp_path / "ds" / rel)
    for rel in ("a/notes.txt", "b/nine.xyz", "b/.hidden.xyz", "b/ten.txt"):
        (tmp_path / "ds" / rel).write_bytes(b"x")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        splits, classes = from_class_folders(tmp_path / "ds")
    assert classes == ["a", "b"]
    assert sorted(e.path for e in splits["all"]) == sorted(names)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"{tmp_path / 'ds'}: 3 files in class folders are not listed: 3 whose suffixes are not a video's (.txt: 2, "
        f".xyz: 1), e.g. a/notes.txt (a video among them is listed under a suffix of .mp4/.avi/"), warnings


def write_audio(path, codec: str = "flac") -> None:
    """A second of silence, the only stream of ``path`` (a clip's sound track kept beside it)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=16000)
        for i in range(16):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1000), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_files_of_a_suffix_that_names_audio_too_are_listed_where_they_hold_a_video(tmp_path, caplog):
    """.ogg names Ogg Vorbis/Opus/FLAC audio as often as Ogg video (.mxf, .rm, .asf, .mod and .webm also name files
    without one: yt-dlp's bestaudio download is an Opus .webm): each clip's sound track kept beside it as .ogg was
    listed as a video, and failed every read ('no video stream'), stopping a run at data.max_failure_fraction (an
    audio .webm still was). Such a file is listed only where FFmpeg finds a video stream in it, else counted, by
    suffix, in the warning of files not listed."""
    frames = affine_video(4, 32, 32)[0]
    for cls in ("jump", "run"):
        (tmp_path / "ds" / cls).mkdir(parents=True)
        write_video(tmp_path / "ds" / cls / "clip.mp4", frames)
        write_audio(tmp_path / "ds" / cls / "clip.ogg")
    write_video(tmp_path / "ds" / "run" / "vp8.ogg", frames, codec="libvpx")  # an Ogg video: listed
    write_audio(tmp_path / "ds" / "run" / "track.asf", "pcm_s16le")
    write_audio(tmp_path / "ds" / "run" / "clip.f251.webm", "libopus")  # yt-dlp's bestaudio download
    write_video(tmp_path / "ds" / "run" / "vp9.webm", frames, codec="libvpx-vp9")  # a WebM video: listed
    (tmp_path / "ds" / "run" / "song.mod").write_bytes(b"M.K." * 300)  # a tracker module FFmpeg does not read
    (tmp_path / "ds" / "run" / "notes.txt").write_text("x")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        splits, classes = from_class_folders(tmp_path / "ds")
    assert classes == ["jump", "run"]
    assert [(e.path, e.label) for e in splits["all"]] == [("jump/clip.mp4", 0), ("run/clip.mp4", 1),
                                                          ("run/vp8.ogg", 1), ("run/vp9.webm", 1)]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'ds'}: 6 files in class folders are not listed: 1 whose suffix is not a video's (.txt: 1), "
        f"e.g. run/notes.txt (a video among them is listed under a suffix of {'/'.join(VIDEO_EXTS)}); 5 in which "
        f"FFmpeg finds no video stream (.ogg: 2, .asf: 1, .mod: 1, .webm: 1: audio alone, or no file it reads), e.g. "
        f"jump/clip.ogg"]


@pytest.mark.parametrize("opening", ["gone", "out of memory"])
def test_a_file_of_a_suffix_that_names_audio_too_gone_or_out_of_memory_as_it_is_opened(tmp_path, monkeypatch,
                                                                                        opening):
    """A .webm gone between the walk and FFmpeg's open of it (moved, its volume unmounted) stopped the build with a
    VideoError 'missing' where it is left out, as a file FFmpeg cannot open is. FFmpeg out of memory as it opened a
    video .webm left the video out of the list without a word: it stops the build (OutOfMemory), the machine's
    failure, not the file's."""
    (tmp_path / "ds" / "run").mkdir(parents=True)
    write_video(tmp_path / "ds" / "run" / "clip.mp4", affine_video(4, 32, 32)[0])
    write_video(tmp_path / "ds" / "run" / "vp9.webm", affine_video(4, 32, 32)[0], codec="libvpx-vp9")
    real = av.open

    def opening_it(name, *args, **options):
        if opening == "gone":
            os.unlink(name)
            return real(name, *args, **options)
        raise ffmpeg_out_of_memory()

    monkeypatch.setattr(av, "open", opening_it)
    if opening == "gone":
        assert [e.path for e in from_class_folders(tmp_path / "ds")[0]["all"]] == ["run/clip.mp4"]
    else:
        with pytest.raises(OutOfMemory, match=r"vp9\.webm: out of memory while reading it"):
            from_class_folders(tmp_path / "ds")


def test_each_file_of_a_suffix_that_names_audio_too_is_opened_once_in_a_folder_of_split_folders(tmp_path,
                                                                                                 monkeypatch):
    """A folder of split folders is walked twice (its split folders first taken for classes): each .ogg file was
    opened twice to look for a video stream (one at the top of a split folder too). Now once per build."""
    from mme.data import lists

    frames = affine_video(4, 32, 32)[0]
    for split in ("train", "val"):
        for cls in ("jump", "run"):
            (tmp_path / "ds" / split / cls).mkdir(parents=True)
            write_video(tmp_path / "ds" / split / cls / "clip.ogg", frames, codec="libvpx")
            write_audio(tmp_path / "ds" / split / cls / "clip_sound.ogg")
    write_audio(tmp_path / "ds" / "train" / "loose.ogg")
    opened = []
    real_open = lists.open_container
    monkeypatch.setattr(lists, "open_container", lambda path, **kw: opened.append(path) or real_open(path, **kw))
    splits, classes = from_class_folders(tmp_path / "ds")
    assert classes == ["jump", "run"]
    assert {split: [(e.path, e.label) for e in entries] for split, entries in splits.items()} == {
        split: [(f"{split}/jump/clip.ogg", 0), (f"{split}/run/clip.ogg", 1)] for split in ("train", "val")}
    assert sorted(opened) == sorted(str(p) for p in (tmp_path / "ds").rglob("*.ogg"))  # 9, each once


def test_numbered_class_folders_are_said(tmp_path, caplog):
    """Folders 0..11 sort as text (0, 1, 10, 11, 2, ...), as torchvision's ImageFolder sorts them, so class id 2
    is folder 10. Kept as it is, with a warning (before: nothing said)."""
    for name in [str(i) for i in range(12)]:
        (tmp_path / "nums" / name).mkdir(parents=True)
        (tmp_path / "nums" / name / "v.mp4").write_bytes(b"x")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_class_folders(tmp_path / "nums")[1][:4] == ["0", "1", "10", "11"]
        assert "class folders are numbers, sorted as text as torchvision's ImageFolder sorts them (0, 1, 10, 11, " \
               "2)" in caplog.text
        caplog.clear()
        from_class_folders(tmp_path / "nums", classes=[str(i) for i in range(12)])  # a map given: its ids
        shutil.rmtree(tmp_path / "nums" / "10")
        shutil.rmtree(tmp_path / "nums" / "11")
        from_class_folders(tmp_path / "nums")  # 0..9: text order is numeric order
    assert not caplog.text


def test_class_folders_spelled_two_ways_are_one_class(tmp_path, caplog):
    """UCF101 as train/ and test/ folders, train's spelling HandstandPushups (as classInd.txt), test's
    HandStandPushups (as the file names): before, two classes, ids 2 in train and 1 in test, without a word. Now
    one class, named as train spells it, with a warning; a split built on its own with train's class map takes
    it. Two folders of one split so spelled (case, or 'café' in NFC and NFD) are refused, naming both."""
    for rel in ("train/ApplyEyeMakeup/a1.avi", "train/HandstandPushups/h1.avi", "train/HandstandPushups/h2.avi",
                "test/ApplyEyeMakeup/a2.avi", "test/HandStandPushups/h3.avi", "test/Zumba/z1.avi"):
        (tmp_path / "ucf" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "ucf" / rel).write_bytes(b"x")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        splits, classes = from_class_folders(tmp_path / "ucf")
    assert classes == ["ApplyEyeMakeup", "HandstandPushups", "Zumba"]
    assert splits == {"train": [ListEntry("train/ApplyEyeMakeup/a1.avi", 0),
                                ListEntry("train/HandstandPushups/h1.avi", 1),
                                ListEntry("train/HandstandPushups/h2.avi", 1)],
                      "test": [ListEntry("test/ApplyEyeMakeup/a2.avi", 0), ListEntry("test/HandStandPushups/h3.avi", 1),
                               ListEntry("test/Zumba/z1.avi", 2)]}
    assert "split folders spell one class 'HandstandPushups' (in train) and 'HandStandPushups' (in test): one " \
           "class, named 'HandstandPushups'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.data.lists"):  # test/ built on its own, with train's class map
        assert from_class_folders(tmp_path / "ucf" / "test", classes=classes)[0] == {"test": splits["test"]}
    assert "spelled otherwise than the given class map, taken as its classes: 'HandStandPushups' as " \
           "'HandstandPushups'" in caplog.text
    (tmp_path / "ucf" / "test" / "handstandpushups").mkdir()  # one split, two folders: which is meant is unclear
    (tmp_path / "ucf" / "test" / "handstandpushups" / "h4.avi").write_bytes(b"x")
    for folder in (tmp_path / "ucf", tmp_path / "ucf" / "test"):
        with pytest.raises(DataError, match=rf"{tmp_path / 'ucf' / 'test'}: class folders 'HandStandPushups' and "
                                            r"'handstandpushups' differ only in case or Unicode form"):
            from_class_folders(folder)
    (tmp_path / "ucf" / "test" / "Unused").mkdir()  # a folder without videos is no class: no twin
    shutil.rmtree(tmp_path / "ucf" / "test" / "handstandpushups")
    (tmp_path / "ucf" / "test" / "handstandpushups").mkdir()
    assert from_class_folders(tmp_path / "ucf")[1] == classes
    for name in ("caf\u00e9", "cafe\u0301"):  # one name in NFC and NFD
        (tmp_path / "cafe" / name).mkdir(parents=True)
        (tmp_path / "cafe" / name / "v.mp4").write_bytes(b"x")
    with pytest.raises(DataError, match=r"class folders 'cafe\\u0301' and 'caf\\xe9' differ only in case or "
                                        r"Unicode form"):
        from_class_folders(tmp_path / "cafe")


def test_class_folders_that_differ_in_more_than_case_letter_by_letter_are_two_classes(tmp_path):
    """Straße and Strasse: two folders a file system ignoring case holds apart (it folds case letter by letter), and
    two classes; before, full case folding made them one spelling, and the split was refused as two folders of
    one class. Twins by case alone stay refused."""
    for name in ("Stra\u00dfe", "Strasse", "STRASSE"):
        (tmp_path / "d" / name).mkdir(parents=True)
        (tmp_path / "d" / name / "v.mp4").write_bytes(b"x")
    with pytest.raises(DataError, match=r"class folders 'STRASSE' and 'Strasse' differ only in case"):
        from_class_folders(tmp_path / "d")
    shutil.rmtree(tmp_path / "d" / "STRASSE")
    assert from_class_folders(tmp_path / "d") == ({"all": [ListEntry("Strasse/v.mp4", 0),
                                                           ListEntry("Stra\u00dfe/v.mp4", 1)]},
                                                  ["Strasse", "Stra\u00dfe"])


def test_class_folders_that_look_like_another_layout_are_said(tmp_path, caplog):
    """One class folder (the folder of class folders is one level down), or class folders that all hold the same
    sub-folders (splits under names not taken as splits, fold1/ fold2/): lists were written without a word, the
    first of one class, the second with the splits as classes."""
    for rel in ("one/ucf101/ApplyEyeMakeup/v.avi", "one/ucf101/Archery/v.avi", "val/walk/a.mp4",
                "folds/fold1/cat/a.mp4", "folds/fold1/dog/b.mp4", "folds/fold1/owl/e.mp4", "folds/fold2/cat/c.mp4",
                "folds/fold2/dog/d.mp4", "folds/fold2/owl/f.mp4", "cams/walk/cam1/a.mp4", "cams/walk/cam2/b.mp4",
                "cams/run/cam1/c.mp4", "cams/run/cam2/d.mp4", "cams/jump/cam1/e.mp4", "cams/jump/cam2/f.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_class_folders(tmp_path / "one")[1] == ["ucf101"]
        assert f"one class folder, ucf101: a list of one class, which no classifier learns from; is " \
               f"{tmp_path / 'one' / 'ucf101'} the folder of class folders?" in caplog.text
        caplog.clear()
        assert from_class_folders(tmp_path / "folds")[1] == ["fold1", "fold2"]
        assert "every class folder (fold1, fold2) holds the same sub-folders (cat, dog, owl) and no video of its " \
               "own: are they split folders under other names?" in caplog.text
        caplog.clear()
        assert from_class_folders(tmp_path / "one" / "ucf101")[1] == ["ApplyEyeMakeup", "Archery"]
        assert from_class_folders(tmp_path / "folds" / "fold1")[1] == ["cat", "dog", "owl"]
        assert from_class_folders(tmp_path / "cams")[1] == ["jump", "run", "walk"]  # a few cameras per class
        from_class_folders(tmp_path / "one", classes=["ucf101", "x"])  # a class map given: a split of some classes
    assert not caplog.text
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_class_folders(tmp_path / "val")[1] == ["walk"]  # one class of its own videos
    assert caplog.text.strip().endswith("one class folder, walk: a list of one class, which no classifier learns from")


def test_a_folder_without_videos_is_one_line(tmp_path):
    """An empty folder, or one of empty sub-folders: before, an IndexError traceback (looking for another layout
    among no class folders)."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "subs" / "a").mkdir(parents=True)
    for folder in ("empty", "subs"):
        with pytest.raises(DataError, match=rf"^{tmp_path / folder}: no videos \(\.mp4/"):
            from_class_folders(tmp_path / folder)
        assert cli_main(["lists", "folder", str(tmp_path / folder), "--out", str(tmp_path / "lists")]) == 1


def test_an_option_of_other_list_kinds_is_said_to_be_ignored(tmp_path, caplog):
    """``mme lists folder ... --split 3`` wrote the folder's lists without a word, as if split 3 had been taken
    (``--path-format`` was already said to be for kinetics and ssv2)."""
    for name in ("walk", "run"):
        (tmp_path / "videos" / name).mkdir(parents=True)
        (tmp_path / "videos" / name / "v.mp4").write_bytes(b"x")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert cli_main(["lists", "folder", str(tmp_path / "videos"), "--out", str(tmp_path / "lists")]) == 0
        assert not caplog.text
        assert cli_main(["lists", "folder", str(tmp_path / "videos"), "--out", str(tmp_path / "lists"),
                         "--split", "3", "--path-format", "{label}.mp4"]) == 0
    assert "--split is for ucf101 and hmdb51 lists (their official splits); folder lists" in caplog.text
    assert "--path-format is for kinetics and ssv2 lists" in caplog.text


def test_folder_lists_are_written_in_utf8_under_an_ascii_locale(tmp_path):
    """``LC_ALL=C PYTHONUTF8=0 mme lists folder`` over a class folder named ``caf\u00e9``: the lists were written in
    the locale's encoding (ASCII), a UnicodeEncodeError traceback, though every reader reads UTF-8. They are written
    in UTF-8, the name's bytes as on disk, and read back as the folder's name. Its class, in classes.json, was the
    name as Python decodes it there, ``caf\\udcc3\\udca9``: another class than a UTF-8 locale's ``caf\u00e9``, so each
    locale's ``--classes`` refused the other's class map; it is the name as UTF-8 reads it, whatever the locale."""
    for name in ("caf\u00e9", "tea"):
        (tmp_path / "videos" / name).mkdir(parents=True)
        (tmp_path / "videos" / name / "v.mp4").write_bytes(b"x")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mme.cli", "lists", "folder", str(tmp_path / "videos"), "--out",
                           str(tmp_path / "lists")], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert read_list(tmp_path / "lists" / "all.txt")[0] == [ListEntry("caf\u00e9/v.mp4", 0), ListEntry("tea/v.mp4", 1)]
    assert (tmp_path / "lists" / "all.txt").read_bytes() == "caf\u00e9/v.mp4 0\ntea/v.mp4 1\n".encode()
    assert read_classes(tmp_path / "lists" / "classes.json") == ["caf\u00e9", "tea"]
    assert cli_main(["lists", "folder", str(tmp_path / "videos"), "--out", str(tmp_path / "utf8"), "--classes",
                     str(tmp_path / "lists" / "classes.json")]) == 0  # (this process: a UTF-8 locale)
    assert (tmp_path / "utf8" / "classes.json").read_bytes() == (tmp_path / "lists" / "classes.json").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "mme.cli", "lists", "folder", str(tmp_path / "videos"), "--out",
                           str(tmp_path / "again"), "--classes", str(tmp_path / "utf8" / "classes.json")],
                          capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert (tmp_path / "again" / "all.txt").read_bytes() == (tmp_path / "lists" / "all.txt").read_bytes()


def test_utf8_list_and_recipe_paths_name_their_files_under_an_ascii_locale(tmp_path):
    """``LC_ALL=C PYTHONUTF8=0``: a UTF-8 list naming ``caf\u00e9/v.mp4`` (as ``mme lists folder`` writes it there)
    crashed ``mme check``, ``mme embed`` and a run (UnicodeEncodeError: Python names that file
    ``caf\\udcc3\\udca9/v.mp4`` there), and a recipe's ``data.root: "dat\u00e9"`` (a run's config.yaml written
    under a UTF-8 locale, resumed) was 'not a folder'. Each names its file, and a run's config.yaml keeps the UTF-8
    text, whatever the locale."""
    for folder in ("caf\u00e9", "dat\u00e9"):
        (tmp_path / folder).mkdir()
    (tmp_path / "caf\u00e9" / "v.mp4").write_bytes(b"12345")
    (tmp_path / "all.txt").write_bytes("caf\u00e9/v.mp4 0\n".encode())
    (tmp_path / "recipe.yaml").write_bytes(b'data:\n  root: "dat\\xE9"\n')
    script = """if True:
        import json, os, sys
        from mme.config import load_config, with_paths_as
        from mme.data.lists import read_list, resolve
        from mme.train.config import PretrainConfig
        from mme.train.engine import as_recipe
        from mme.utils import fs_name
        os.chdir(sys.argv[1])
        entry = read_list("all.txt")[0][0]
        cfg = load_config(PretrainConfig, "recipe.yaml")
        resumed = with_paths_as(fs_name, PretrainConfig, {"data": {"root": "dat\\u00e9"}})
        print(json.dumps({"encoding": sys.getfilesystemencoding(), "size": os.stat(resolve(entry, ".")).st_size,
                          "root": os.path.isdir(cfg.data.root), "resumed": os.path.isdir(resumed["data"]["root"]),
                          "written": as_recipe(cfg)["data"]["root"]}))
    """
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert json.loads(proc.stdout) == {"encoding": "ascii", "size": 5, "root": True, "resumed": True,
                                       "written": "dat\u00e9"}


def test_a_video_whose_name_is_not_utf8_is_refused_in_one_line_naming_it(tmp_path, capsys):
    """``mme lists folder`` over ``caf\\xe9.mp4`` (a Latin-1 byte): a UnicodeEncodeError traceback as the list was
    written. One line names the file and says to rename it, and no list is written (no reader could read it)."""
    for rel in (b"a/caf\xe9.mp4", b"b/x.mp4"):
        path = tmp_path / "videos" / os.fsdecode(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert cli_main(["lists", "folder", str(tmp_path / "videos"), "--out", str(tmp_path / "lists")]) == 1
    err = capsys.readouterr().err
    assert err == (f"mme lists: error: {tmp_path / 'lists' / 'all.txt'}: cannot list 'a/caf\\udce9.mp4': its name is "
                   f"not UTF-8 (a list file is UTF-8 text); rename it (e.g. convmv -f latin1 -t utf8)\n")
    assert not (tmp_path / "lists" / "all.txt").exists()


def test_a_folder_of_split_folders_gives_one_list_per_split_with_one_class_map(tmp_path):
    """train/ and val/ of class folders: one list each, numbered by the classes of both (val lacks 'bowling'),
    also when the lists are written inside the folder (before: its split folders became the classes)."""
    root = tmp_path / "fold"
    for rel in ("train/archery/a1.mp4", "train/bowling/b1.mp4", "train/cooking/c1.mp4", "validation/archery/a2.mp4",
                "validation/cooking/c2.mp4", "validation/cooking/c3.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "lists").mkdir()  # the lists' own folder (or annotations/): no videos, no class, no split
    splits, classes = from_class_folders(root)
    assert classes == ["archery", "bowling", "cooking"]
    assert splits == {"train": [ListEntry("train/archery/a1.mp4", 0), ListEntry("train/bowling/b1.mp4", 1),
                                ListEntry("train/cooking/c1.mp4", 2)],
                      "val": [ListEntry("validation/archery/a2.mp4", 0), ListEntry("validation/cooking/c2.mp4", 2),
                              ListEntry("validation/cooking/c3.mp4", 2)]}
    assert cli_main(["lists", "folder", str(root), "--out", str(root / "lists")]) == 0
    assert read_list(root / "lists" / "val.txt")[0] == splits["val"]
    # each split built on its own into one --out, the second numbered by the first's class map: a list each,
    # named after its split (before: both all.txt, the second replacing the first)
    assert cli_main(["lists", "folder", str(root / "train"), "--out", str(tmp_path / "v")]) == 0
    assert cli_main(["lists", "folder", str(root / "validation"), "--out", str(tmp_path / "v"),
                     "--classes", str(tmp_path / "v" / "classes.json")]) == 0
    assert sorted(f.name for f in (tmp_path / "v").iterdir()) == ["classes.json", "train.txt", "val.txt"]
    assert [e.label for e in read_list(tmp_path / "v" / "val.txt")[0]] == [0, 2, 2]
    # a class the map lacks is refused
    with pytest.raises(DataError, match=r"class folder \['bowling'\] not in the given class map"):
        from_class_folders(root / "train", classes=["archery", "cooking"])
    (root / "val" / "archery").mkdir(parents=True)  # 'val' beside 'validation': one split twice
    (root / "val" / "archery" / "a9.mp4").write_bytes(b"x")
    with pytest.raises(DataError, match=r"name the same split twice \(\['val'\]\)"):
        from_class_folders(root)
    shutil.rmtree(root / "val")
    (root / "extra" / "x").mkdir(parents=True)  # class folders beside split folders: which is meant is unclear
    (root / "extra" / "x.mp4").write_bytes(b"x")
    with pytest.raises(DataError, match=r"split folders \['train', 'validation'\] and class folders \['extra'\]"):
        from_class_folders(root)


def test_clips_of_one_source_video_in_two_split_folders_are_warned_about(tmp_path, caplog, monkeypatch):
    """train/ and test/ of UCF101-style clips where clips of one group (cut from one video) sit in both, and an
    HMDB51 source alike: `mme lists folder` said nothing (it compares files only), and a probe scored clips of
    videos it was fit on. A warning names the count and the first source; clips of other groups are not counted."""
    root = tmp_path / "ucf"
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    for rel in ("train/Archery/v_Archery_g01_c01.avi", "train/Archery/v_Archery_g02_c01.avi",
                "test/Archery/v_Archery_g01_c02.avi", "test/Archery/v_Archery_g03_c01.avi",
                "train/brush_hair/Pat_brush_hair_u_nm_np1_fr_goo_0.avi",
                "test/brush_hair/Pat_brush_hair_f_cm_np1_le_bad_1.avi",  # (one source's clips differ in tags)
                "test/brush_hair/Kim_brush_hair_h_cm_np2_le_bad_0.avi",
                "train/Archery/1.avi", "test/Archery/1.avi"):  # (a name of no dataset's: each file its own source,
        (root / rel).parent.mkdir(parents=True, exist_ok=True)  # one name or not; a split built alone took them as one)
        write_video(root / rel, frames, codec="mpeg4")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert cli_main(["lists", "folder", str(root), "--out", str(tmp_path / "l")]) == 0
    assert (f"{root}: 2 source videos have clips in two splits, e.g. v_Archery_g01 (test/Archery/"
            f"v_Archery_g01_c02.avi in test, train/Archery/v_Archery_g01_c01.avi in train): scores of one split are "
            f"of videos the other fits on; move each source's clips to one split") in caplog.text, caplog.text
    # each split folder built on its own (train/, then test/ with its class map), as docs/data.md shows: the split
    # folders beside it are walked for the same files, and their sources are compared too (nothing was said); of
    # their paths, the two said alone are made relative (each of every split was: 2.5 s of 240 000 clips)
    relpath, made = os.path.relpath, []
    monkeypatch.setattr(os.path, "relpath", lambda *a: made.append(a) or relpath(*a))
    for split, more in (("train", []), ("test", ["--classes", str(tmp_path / "one" / "classes.json")])):
        caplog.clear()
        made.clear()
        with caplog.at_level("WARNING", logger="mme.data.lists"):
            assert cli_main(["lists", "folder", str(root / split), "--out", str(tmp_path / "one"), *more]) == 0
        assert len(made) == 2, made
        first, other = ("test/Archery/v_Archery_g01_c02.avi", "train/Archery/v_Archery_g01_c01.avi")[::(
            1 if split == "test" else -1)]
        assert (f"{root / split}: 2 source videos have clips in two splits, e.g. v_Archery_g01 ({first} in "
                f"{split}, {other} in {'train' if split == 'test' else 'test'}): scores of one split") in caplog.text, (
            caplog.text)
    caplog.clear()
    for rel in ("test/Archery/v_Archery_g01_c02.avi", "test/brush_hair/Pat_brush_hair_f_cm_np1_le_bad_1.avi"):
        (root / rel).unlink()
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert cli_main(["lists", "folder", str(root), "--out", str(tmp_path / "m")]) == 0
        assert cli_main(["lists", "folder", str(root / "test"), "--out", str(tmp_path / "n")]) == 0
    assert "source video" not in caplog.text, caplog.text


def test_kinetics_segments_of_one_youtube_video_in_two_splits_are_warned_about(tmp_path, caplog):
    """`mme lists kinetics` with a youtube_id in the rows of two splits (two segments of one video): nothing was
    said; a warning names the count and the first youtube_id with a row of each split."""
    header = "label,youtube_id,time_start,time_end,split\n"
    folder = tmp_path / "csvs"
    folder.mkdir()
    (folder / "train.csv").write_text(header + "abseiling,-3B32lodo2M,1,11,train\nzumba,z1,2,12,train\n"
                                      "zumba,z2,3,13,train\n")
    (folder / "validate.csv").write_text(header + "abseiling,-3B32lodo2M,30,40,validate\nzumba,z3,2,12,validate\n"
                                         "zumba,z2,20,30,validate\n")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert cli_main(["lists", "kinetics", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert (f": 2 source videos have clips in two splits, e.g. -3B32lodo2M ({folder / 'train.csv'}:2 in train, "
            f"{folder / 'validate.csv'}:2 in val): scores of one split") in caplog.text, caplog.text
    caplog.clear()
    (folder / "validate.csv").write_text(header + "zumba,z3,2,12,validate\n")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert cli_main(["lists", "kinetics", str(folder), "--out", str(tmp_path / "out2")]) == 0
    assert "source video" not in caplog.text, caplog.text


def test_splits_built_one_at_a_time_give_lists_under_one_root(tmp_path, caplog, monkeypatch):
    """train/ and validation/ built one at a time into one --out, as docs/data.md shows: before, each list's paths
    started from its own split folder (a/1.mp4 in both), so under one data.root (train/) the val list named the
    training videos (scored on them, with a warning only), and the common parent as --root found none. Now their
    paths start from the split folders' parent, as the lists of a folder of split folders do: the same lists."""
    root = tmp_path / "d"
    for rel in ("train/a/1.mp4", "train/b/1.mp4", "validation/a/1.mp4", "validation/b/1.mp4", "validation/b/2.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    together = from_class_folders(root)[0]
    out = tmp_path / "lists"
    with caplog.at_level("INFO", logger="mme.data.lists"):
        build_lists("folder", root / "train", out)
    monkeypatch.chdir(root / "validation")  # '.' is the split folder too; --skip-missing looks from its parent
    build_lists("folder", ".", out, classes=out / "classes.json", skip_missing=True)
    lists = {name: read_list(out / f"{name}.txt")[0] for name in ("train", "val")}
    assert lists == together
    assert lists["val"] == [ListEntry("validation/a/1.mp4", 0), ListEntry("validation/b/1.mp4", 1),
                            ListEntry("validation/b/2.mp4", 1)]
    assert not {real_path(e, root) for e in lists["train"]} & {real_path(e, root) for e in lists["val"]}
    assert f"{root / 'train'}: a split folder: its list's paths start from {root}" in caplog.text
    assert build_lists("folder", root / "validation", tmp_path / "l2", video_root=root, skip_missing=True) == (
        {"val": tmp_path / "l2" / "val.txt"}, root)  # the common parent as --root (before: 'no listed video is under')


def test_a_split_built_on_its_own_is_numbered_with_the_classes_of_the_splits_beside_it(tmp_path, caplog):
    """test/ built on its own without --classes, lacking class b that train/ has: its classes were its own (a, c),
    so c was 1 in test.txt and 2 in train.txt, and a model trained on train's list scored test's c videos as b, unsaid.
    Now it is numbered by the classes of the split folders beside it too, as a folder of split folders is, and the
    log names the class it has no video of."""
    root = tmp_path / "d"
    for rel in ("train/a/1.mp4", "train/b/1.mp4", "train/c/1.mp4", "test/a/2.mp4", "test/c/2.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    together, classes = from_class_folders(root)
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        alone, alone_classes = from_class_folders(root / "test")
    assert alone_classes == classes == ["a", "b", "c"]
    assert alone == {"test": together["test"]} == {"test": [ListEntry("test/a/2.mp4", 0), ListEntry("test/c/2.mp4", 2)]}
    assert (f"{root / 'test'}: numbered with the classes of {root / 'train'} beside it, which holds all of its "
            f"classes, as a folder of split folders numbers them: 3 classes, 1 with no video here ('b');") in \
        caplog.text, caplog.text
    assert from_class_folders(root / "train") == ({"train": together["train"]}, classes)


def test_a_split_built_on_its_own_keeps_its_numbering_beside_a_split_of_other_classes(tmp_path, caplog):
    """A split built on its own beside a split folder that lacks one of its classes holds other classes than its
    own: a few-shot test split of novel classes (train/{bowling,diving,skiing}, test/{archery,cooking}) renumbered
    train's skiing 2 -> 4, and unlabelled shards (test/part_000/) became classes of train's list. Such a split's
    classes are not taken: each list keeps its own numbering, with a warning naming the split beside it, its classes
    this one lacks and --classes. A split beside it that cannot be read as classes (two folders of one class) is its
    own fault: it refused the split built, naming neither; now it is not taken, said in a warning."""
    root = tmp_path / "d"
    for rel in ("train/bowling/1.mp4", "train/diving/1.mp4", "train/skiing/1.mp4", "test/archery/2.mp4",
                "test/cooking/2.mp4", "val/part_000/3.mp4", "val/skiing/3.mp4", "other/train/diving/4.mp4",
                "other/train/skiing/4.mp4", "other/test/diving/5.mp4", "other/test/Diving/6.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        train, train_classes = from_class_folders(root / "train")
        test, test_classes = from_class_folders(root / "test")
    assert train_classes == ["bowling", "diving", "skiing"]
    assert train == {"train": [ListEntry("train/bowling/1.mp4", 0), ListEntry("train/diving/1.mp4", 1),
                               ListEntry("train/skiing/1.mp4", 2)]}
    assert test_classes == ["archery", "cooking"]
    assert test == {"test": [ListEntry("test/archery/2.mp4", 0), ListEntry("test/cooking/2.mp4", 1)]}
    assert (f"{root / 'train'}: numbered by its own class folders, not with those of {root / 'test'} beside it, "
            f"which lacks some of them and has 2 it lacks ('archery', 'cooking'): the ids of its list and that "
            f"split's may differ; give --classes") in caplog.text, caplog.text
    assert f"not with those of {root / 'val'} beside it, which lacks some of them and has 1 it lacks ('part_000')" \
        in caplog.text, caplog.text
    assert f"{root / 'test'}: numbered by its own class folders, not with those of {root / 'train'}" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_class_folders(root / "other" / "train") == (
            {"train": [ListEntry("train/diving/4.mp4", 0), ListEntry("train/skiing/4.mp4", 1)]}, ["diving", "skiing"])
    assert (f"{root / 'other' / 'train'}: not numbered with the classes of {root / 'other' / 'test'} beside it, which "
            f"cannot be read as classes: {root / 'other' / 'test'}: class folders") in caplog.text, caplog.text


def test_a_split_built_on_its_own_lists_each_folder_once(tmp_path, monkeypatch):
    """A split folder built on its own (val/) has the folder holding it listed for the split folders beside it: it
    was listed twice, once for their class folders (the walk) and once for their videos (the split check). Each
    folder of the tree is listed once now, the lists the same."""
    root = tmp_path / "d"
    for rel in ("train/a/1.mp4", "train/b/1.mp4", "val/a/1.mp4", "val/b/1.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    listed = []

    def counted(real):
        def listing(path="."):
            listed.append(os.path.relpath(path, root))
            return real(path)
        return listing

    swap_listing(monkeypatch, counted)
    written, _ = build_lists("folder", root / "val", tmp_path / "lists")
    monkeypatch.undo()
    assert sorted(listed) == [".", "train", "train/a", "train/b", "val", "val/a", "val/b"]
    assert read_list(written["val"])[0] == [ListEntry("val/a/1.mp4", 0), ListEntry("val/b/1.mp4", 1)]


def test_a_folder_of_split_folders_named_as_a_split_writes_paths_from_itself(tmp_path, caplog):
    """A folder of split folders that is itself named as a split (a scratch folder test/ holding train/ and val/):
    before, its lists' paths started from its parent (test/train/a/1.mp4), against docs/data.md, without a word.
    Now from the folder, as every folder of split folders' do, that folder the default --root of --skip-missing and
    --check."""
    root = tmp_path / "test"
    for rel in ("train/a/1.mp4", "train/b/1.mp4", "val/a/1.mp4", "val/b/2.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    with caplog.at_level("INFO", logger="mme.data.lists"):
        assert from_class_folders(root)[0] == {
            "train": [ListEntry("train/a/1.mp4", 0), ListEntry("train/b/1.mp4", 1)],
            "val": [ListEntry("val/a/1.mp4", 0), ListEntry("val/b/2.mp4", 1)]}
    assert "a split folder" not in caplog.text
    written, video_root = build_lists("folder", root, tmp_path / "lists", skip_missing=True)
    assert (sorted(written), video_root) == (["train", "val"], root)
    report = make_lists("folder", root, tmp_path / "checked", check=True)["check"]
    assert (report["root"], report["videos"]) == (str(root), 4)
    assert "missing" not in report["counts"]  # (each found: 'x' is no video, but there)


def test_split_folders_reached_through_links_named_otherwise_keep_their_lists(tmp_path, caplog):
    """home/ucf_train -> data/ucf/train and home/ucf_test -> data/ucf/test built one at a time into one --out:
    before, neither was taken for a split folder (by the name given alone), both were written as all.txt, the
    second replacing the first without a word, their paths from each link (a/tr1.mp4). Now a folder not named as a
    split is one by its real name: train.txt and test.txt, paths from the real parent (train/a/tr1.mp4), as a
    folder of split folders gives. Two sources that do give one list (folders not named as splits: all.txt): the
    second replaces it with a warning naming the list and what it held; the same list again, without one. The
    --out folder holds the lists and classes.json alone: a file of the user's there (sources.json) is left as it
    was (a build once recorded its sources there, rewriting it, and refused the same data moved elsewhere). The
    same data rebuilt with a video added replaces its list with an info line only (it was a warning each time),
    but a list of other data with most lines alike (a class of another name under id 1) with the warning."""
    ucf, home = tmp_path / "data" / "ucf", tmp_path / "home"
    for rel in ("train/a/tr1.mp4", "train/b/tr2.mp4", "test/a/te1.mp4", "test/b/te2.mp4", "one/a/1.mp4",
                "one/b/1.mp4", "two/c/1.mp4", "two/d/1.mp4"):
        (ucf / rel).parent.mkdir(parents=True, exist_ok=True)
        (ucf / rel).write_bytes(b"x")
    home.mkdir()
    for split in ("train", "test"):
        (home / f"ucf_{split}").symlink_to(ucf / split, target_is_directory=True)
    out = tmp_path / "lists"
    with caplog.at_level("INFO", logger="mme.data.lists"):
        assert build_lists("folder", home / "ucf_train", out, skip_missing=True) == ({"train": out / "train.txt"},
                                                                                   ucf)
    assert f"{home / 'ucf_train'}: a split folder: its list's paths start from {ucf} (train/...)" in caplog.text
    build_lists("folder", home / "ucf_test", out, classes=out / "classes.json")
    lists = {name: read_list(out / f"{name}.txt")[0] for name in ("train", "test")}
    assert lists == {"train": [ListEntry("train/a/tr1.mp4", 0), ListEntry("train/b/tr2.mp4", 1)],
                     "test": [ListEntry("test/a/te1.mp4", 0), ListEntry("test/b/te2.mp4", 1)]}
    assert sorted(f.name for f in out.iterdir()) == ["classes.json", "test.txt", "train.txt"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "sources.json").write_text('{"notes": "scraped 2024"}\n')
    build_lists("folder", ucf / "one", other)
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert read_list(build_lists("folder", ucf / "two", other)[0]["all"])[0] == [ListEntry("c/1.mp4", 0),
                                                                                     ListEntry("d/1.mp4", 1)]
    assert [r.getMessage() for r in caplog.records] == [
        f"replacing {other / 'all.txt'}, which held another list: 2 lines, the first 'a/1.mp4 0'"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        build_lists("folder", ucf / "two", other)  # the same list again
    assert caplog.records == []
    (ucf / "two" / "c" / "2.mp4").write_bytes(b"x")
    with caplog.at_level("INFO", logger="mme.data.lists"):
        build_lists("folder", ucf / "two", other)  # the same data, a video added: logged, no warning
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "replacing" in r.getMessage()] == [
        ("INFO", f"replacing {other / 'all.txt'}: 2 lines before, 3 now")]
    for rel in ("three/c/1.mp4", "three/c/2.mp4", "three/e/1.mp4"):  # most lines alike, class 1 another class
        (ucf / rel).parent.mkdir(parents=True, exist_ok=True)
        (ucf / rel).write_bytes(b"x")
    caplog.clear()
    with caplog.at_level("INFO", logger="mme.data.lists"):
        build_lists("folder", ucf / "three", other)
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "replacing" in r.getMessage()] == [
        ("WARNING", f"replacing {other / 'all.txt'}, which held another list: 3 lines, the first 'c/1.mp4 0'")]
    assert (other / "sources.json").read_text() == '{"notes": "scraped 2024"}\n'
    assert sorted(f.name for f in other.iterdir()) == ["all.txt", "classes.json", "sources.json"]


def test_symlinked_folders_are_walked_and_videos_left_out_are_said(tmp_path, caplog):
    """A split of symlinked class folders, a symlinked sub-folder (before: rglob walked no symlinked folder, so the
    train split was silently left out); a link back to an ancestor or to another class's folder is not followed
    (its videos would be listed again under this class), and is logged, as a video in no class folder and a split
    folder without videos are."""
    for rel in ("pool/A/a1.mp4", "pool/B/b1.mp4", "ext/nested/n1.mp4", "ds/val/A/a2.mp4", "ds/val/B/b2.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    ds = tmp_path / "ds"
    for name in ("A", "B"):
        (ds / "train").mkdir(exist_ok=True)
        (ds / "train" / name).symlink_to(tmp_path / "pool" / name, target_is_directory=True)
    (ds / "val" / "B" / "more").symlink_to(tmp_path / "ext" / "nested", target_is_directory=True)
    (ds / "val" / "B" / "loop").symlink_to(ds / "val" / "B", target_is_directory=True)  # walked once, not forever
    (ds / "val" / "A" / "toB").symlink_to(ds / "val" / "B", target_is_directory=True)  # B's videos are not A's
    (tmp_path / "pool" / "A" / "up").symlink_to(tmp_path / "pool", target_is_directory=True)  # nor are B's there
    (ds / "test" / "A").mkdir(parents=True)
    (ds / "loose.mp4").write_bytes(b"x")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        splits, classes = from_class_folders(ds)
    assert classes == ["A", "B"]
    assert splits == {"train": [ListEntry("train/A/a1.mp4", 0), ListEntry("train/B/b1.mp4", 1)],
                      "val": [ListEntry("val/A/a2.mp4", 0), ListEntry("val/B/b2.mp4", 1),
                              ListEntry("val/B/more/n1.mp4", 1)]}
    assert "1 video outside class folders is not listed, e.g. loose.mp4" in caplog.text
    for link in ("val/B/loop", "val/A/toB", "train/A/up"):
        assert f"{ds / link}: a link to " in caplog.text
    assert "sub-folders without videos, no list written for them: ['test']" in caplog.text


def test_a_link_into_another_class_folder_is_not_listed_under_this_class(tmp_path, caplog):
    """A link in a class folder to a sub-folder of another class, or to one of its videos: before, their videos
    were listed under both classes without a word (only a link to the class folder itself was refused). Across
    split folders too; a link to a video of the same class in another split is listed (no class is wrong)."""
    for rel in ("d/Archery/a.mp4", "d/Boxing/session1/b1.mp4", "d/Boxing/b2.mp4", "s/train/A/a1.mp4",
                "s/train/B/sub/b1.mp4", "s/val/A/a2.mp4", "s/val/B/b2.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    d, s = tmp_path / "d", tmp_path / "s"
    (d / "Archery" / "more").symlink_to("../Boxing/session1", target_is_directory=True)
    (d / "Archery" / "alias.mp4").symlink_to("../Boxing/b2.mp4")
    (d / "Archery" / "own.mp4").symlink_to("a.mp4")  # a link within its class: listed
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        splits, classes = from_class_folders(d)
    assert classes == ["Archery", "Boxing"]
    assert splits == {"all": [ListEntry("Archery/a.mp4", 0), ListEntry("Archery/own.mp4", 0),
                              ListEntry("Boxing/b2.mp4", 1), ListEntry("Boxing/session1/b1.mp4", 1)]}
    assert f"{d / 'Archery' / 'more'}: a link to {d / 'Boxing' / 'session1'}, a folder this walk reaches " \
           f"otherwise, one holding it or one in another class's folder, is not followed" in caplog.text
    assert f"{d}: 1 link to videos in other class folders is not listed (each would be listed under two " \
           f"classes), e.g. {d / 'Archery' / 'alias.mp4'} to {d / 'Boxing' / 'b2.mp4'}" in caplog.text
    caplog.clear()
    (s / "val" / "A" / "b.mp4").symlink_to(s / "train" / "B" / "sub" / "b1.mp4")  # another class, another split
    (s / "val" / "A" / "sub").symlink_to(s / "train" / "B" / "sub", target_is_directory=True)
    (s / "val" / "A" / "a1.mp4").symlink_to(s / "train" / "A" / "a1.mp4")  # its class in another split: listed
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        splits, _ = from_class_folders(s)
    assert splits == {"train": [ListEntry("train/A/a1.mp4", 0), ListEntry("train/B/sub/b1.mp4", 1)],
                      "val": [ListEntry("val/A/a1.mp4", 0), ListEntry("val/A/a2.mp4", 0), ListEntry("val/B/b2.mp4", 1)]}
    assert f"{s}: 1 link to videos in other class folders is not listed (each would be listed under two " \
           f"classes), e.g. {s / 'val' / 'A' / 'b.mp4'} to" in caplog.text
    assert caplog.text.count("is not followed") == 1  # val/A/sub; the walk that took the splits for classes is not said


def test_a_split_folder_that_is_another_splits_videos_is_refused(tmp_path, capsys):
    """A split folder whose videos are all another split's files, through a link to its folder, a bind mount or a
    copy of hard links: before, its list was written (but for a link given with the other split, which the walk
    refuses as a class folder's), so val scored the model on its training videos. Now one line naming both splits
    and folders, before any list is written, built together or one at a time; val and test too (the val figures
    again, as test's). Files of the same names that are not the same files are other videos."""
    d = tmp_path / "d"
    for rel in ("train/a/1.mp4", "train/a/2.mp4", "train/b/1.mp4"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")

    def copy(split: str, of: str, link=os.link) -> None:
        for f in sorted((d / of).rglob("*.mp4")):
            (d / split / f.relative_to(d / of)).parent.mkdir(parents=True, exist_ok=True)
            link(f, d / split / f.relative_to(d / of))

    copy("val", "train")  # a copy of hard links
    fit_on = (f"{d / 'val'}: every video of split val (3) is one of split train's, the same file in {d / 'train'} "
              f"(through a link, a bind mount or hard links): a model would be scored on videos it was fit on; give "
              f"each split a folder of its own videos")
    with pytest.raises(DataError) as raised:
        from_class_folders(d)
    assert str(raised.value) == fit_on
    out = tmp_path / "lists"
    assert cli_main(["lists", "folder", str(d / "train"), "--out", str(out)]) == 1  # (its videos are val's too)
    shutil.rmtree(d / "val")
    copy("val", "train", lambda f, to: to.write_bytes(f.read_bytes()))  # the same names, other files: a split
    assert from_class_folders(d)[0]["val"] == [ListEntry("val/a/1.mp4", 0), ListEntry("val/a/2.mp4", 0),
                                               ListEntry("val/b/1.mp4", 1)]
    copy("test", "val")
    with pytest.raises(DataError, match=rf"^{d / 'test'}: every video of split test \(3\) is one of split val's, "
                                        rf"the same file in {d / 'val'} \(.*\): the test figures would be the val "
                                        rf"figures again; give each split a folder of its own videos$"):
        from_class_folders(d)
    shutil.rmtree(d / "test")
    shutil.rmtree(d / "val")
    assert cli_main(["lists", "folder", str(d / "train"), "--out", str(out)]) == 0
    capsys.readouterr()
    for alias in ("link", "hard links"):
        if alias == "link":
            (d / "val").symlink_to("train", target_is_directory=True)
        else:
            copy("val", "train")
        assert cli_main(["lists", "folder", str(d / "val"), "--out", str(out), "--classes",
                         str(out / "classes.json")]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"mme lists: error: {fit_on}"
        assert sorted(f.name for f in out.iterdir()) == ["classes.json", "train.txt"]
        if alias == "link":
            (d / "val").unlink()
        else:
            shutil.rmtree(d / "val")
    (d / "val").symlink_to("train", target_is_directory=True)  # given with train too
    with pytest.raises(DataError) as raised:
        from_class_folders(d)
    assert str(raised.value) == fit_on


def test_a_split_folder_of_links_to_another_splits_videos_is_refused_built_with_it(tmp_path, capsys, caplog):
    """val/a/1.mp4 -> ../../train/a/1.mp4 for each video (a farm of links), or val/a -> ../train/a: built with
    train, val was left out with a warning that it held no videos, exit 0 (built on its own, refused as train's
    copy): the walk that takes the split folders for classes passed over each link into train. Now the line of a
    split's copy, built together or on its own. A val of its own videos and one link to a train video of its class
    was listed without a word: now listed with a warning counting such links and naming the first."""
    d, out = tmp_path / "d", tmp_path / "lists"
    videos = ("a/1.mp4", "a/2.mp4", "b/1.mp4")
    for rel in videos:
        (d / "train" / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / "train" / rel).write_bytes(b"x")
        (d / "val" / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / "val" / rel).symlink_to(os.path.join("..", "..", "train", rel))
    fit_on = (f"{d / 'val'}: every video of split val (3) is one of split train's, the same file in {d / 'train'} "
              f"(through a link, a bind mount or hard links): a model would be scored on videos it was fit on; give "
              f"each split a folder of its own videos")
    for links in ("of videos", "of class folders"):
        for root in (d, d / "val"):
            with pytest.raises(DataError) as raised:
                from_class_folders(root, classes=["a", "b"])
            assert str(raised.value) == fit_on, links
        assert cli_main(["lists", "folder", str(d), "--out", str(out)]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"mme lists: error: {fit_on}"
        assert not out.exists()  # (no list written, no folder made)
        shutil.rmtree(d / "val")
        for name in ("a", "b"):
            (d / "val").mkdir(exist_ok=True)
            (d / "val" / name).symlink_to(os.path.join("..", "train", name), target_is_directory=True)
    shutil.rmtree(d / "val")
    for rel in ("a/5.mp4", "b/6.mp4"):
        (d / "val" / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / "val" / rel).write_bytes(b"y")
    (d / "val" / "a" / "x.mp4").symlink_to(os.path.join("..", "..", "train", "a", "1.mp4"))
    for root in (d, d / "val"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="mme.data.lists"):
            splits = from_class_folders(root, classes=["a", "b"])[0]
        assert splits["val"] == [ListEntry("val/a/5.mp4", 0), ListEntry("val/a/x.mp4", 0), ListEntry("val/b/6.mp4", 1)]
        assert [r.getMessage() for r in caplog.records] == [
            f"{d / 'val'}: 1 of the 3 videos of split val are split train's, the same files in {d / 'train'} "
            f"(through links, a bind mount or hard links), listed in both splits (a model would be scored on videos it "
            f"was fit on), e.g. {d / 'val' / 'a' / 'x.mp4'} as {d / 'train' / 'a' / '1.mp4'}"]


def test_a_split_of_links_to_videos_of_a_split_whose_class_folders_link_into_a_pool_is_refused(tmp_path, caplog):
    """train/A -> ../../pool/A, train/B -> ../../pool/B, and val/A/val_0.mp4 -> ../../train/A/a.mp4 (renamed): val
    was listed without a word, exit 0: the check asked whether a video's real folder (pool/A) lay in train's real
    folder, and where not, whether val/A/val_0.mp4 was the file of train/A/val_0.mp4. Now the split's videos are
    compared by file identity with those the other split lists: the line of a split's copy, built together or on
    its own; some shared (a link into the pool, a hard link of a pool video), a warning counting them."""
    d, pool = tmp_path / "d", tmp_path / "pool"
    for rel in ("A/a.mp4", "A/b.mp4", "B/c.mp4", "B/d.mp4"):
        (pool / rel).parent.mkdir(parents=True, exist_ok=True)
        (pool / rel).write_bytes(rel.encode())
    (d / "train").mkdir(parents=True)
    for name in ("A", "B"):
        (d / "train" / name).symlink_to(os.path.join("..", "..", "pool", name), target_is_directory=True)
        (d / "val" / name).mkdir(parents=True)
    (d / "val" / "A" / "val_0.mp4").symlink_to(os.path.join("..", "..", "train", "A", "a.mp4"))
    (d / "val" / "B" / "val_1.mp4").symlink_to(os.path.join("..", "..", "train", "B", "c.mp4"))
    fit_on = (f"{d / 'val'}: every video of split val (2) is one of split train's, the same file in {d / 'train'} "
              f"(through a link, a bind mount or hard links): a model would be scored on videos it was fit on; give "
              f"each split a folder of its own videos")
    for root in (d, d / "val"):
        with pytest.raises(DataError) as raised:
            from_class_folders(root, classes=["A", "B"])
        assert str(raised.value) == fit_on
    for name in ("val_0.mp4", "val_1.mp4"):
        next((d / "val").glob(f"*/{name}")).unlink()
    (d / "val" / "A" / "own.mp4").write_bytes(b"own")
    (d / "val" / "A" / "b.mp4").symlink_to(pool / "A" / "b.mp4")  # into the pool, past train's links
    os.link(pool / "B" / "d.mp4", d / "val" / "B" / "hard.mp4")
    for root in (d, d / "val"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="mme.data.lists"):
            splits = from_class_folders(root, classes=["A", "B"])[0]
        assert splits["val"] == [ListEntry("val/A/b.mp4", 0), ListEntry("val/A/own.mp4", 0),
                                 ListEntry("val/B/hard.mp4", 1)]
        assert [r.getMessage() for r in caplog.records if "split val" in r.getMessage()] == [
            f"{d / 'val'}: 2 of the 3 videos of split val are split train's, the same files in {d / 'train'} (through "
            f"links, a bind mount or hard links), listed in both splits (a model would be scored on videos it was fit "
            f"on), e.g. {d / 'val' / 'A' / 'b.mp4'} as {d / 'train' / 'A' / 'b.mp4'}"]


def test_a_split_built_on_its_own_is_not_refused_for_a_link_of_the_split_beside_it(tmp_path, caplog):
    """train/A -> pool/A, train/B -> pool/B, and val/misc -> pool (a link of the val split holding train's class
    folders): train built on its own was refused, the error naming train/A. Now val/misc is passed over with a
    warning naming it, train listed in full; a build of both splits still refuses val/misc."""
    for rel in ("pool/A/1.mp4", "pool/B/2.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    d, pool = tmp_path / "d", tmp_path / "pool"
    for split in ("train", "val"):
        (d / split).mkdir(parents=True)
    for name in ("A", "B"):
        (d / "train" / name).symlink_to(pool / name, target_is_directory=True)
    (d / "val" / "misc").symlink_to(pool, target_is_directory=True)
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_class_folders(d / "train") == ({"train": [ListEntry("train/A/1.mp4", 0),
                                                              ListEntry("train/B/2.mp4", 1)]}, ["A", "B"])
    assert [r.getMessage() for r in caplog.records] == [
        f"{d / 'val' / 'misc'}: a class folder of a split beside {d / 'train'}, leads to {pool}, at, in or over "
        f"{d / 'train' / 'A'}: passed over (a build of the splits together refuses it)"]
    with pytest.raises(DataError, match=rf"^{d / 'val' / 'misc'}: leads to {pool}, which holds {d / 'train' / 'A'}"):
        from_class_folders(d)


def test_a_split_beside_whose_class_folder_cannot_be_searched_is_passed_over(tmp_path, monkeypatch, capsys):
    """val built on its own beside a train/A that can be read but not searched (mode 644: no file in it can be
    looked at) ended in a PermissionError traceback from the walk of train's videos (for their identities). A file
    beside that cannot be looked at is passed over, as one in a folder that cannot be read; one of the split listed
    is one line naming it and the reason. (Simulated: root reads any folder.)"""
    d = tmp_path / "d"
    for rel in ("train/A/train_A.mp4", "train/A/notes.txt", "train/B/train_B.mp4", "val/A/val_A.mp4",
                "val/B/val_B.mp4"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")
    shut = str(d / "train" / "A")

    def searched(real):
        def stat(path, *args, **kwargs):
            if os.path.dirname(os.path.abspath(os.fspath(path))) == shut:
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return real(path, *args, **kwargs)
        return stat

    swap_stat(monkeypatch, searched)
    assert from_class_folders(d / "val") == ({"val": [ListEntry("val/A/val_A.mp4", 0),
                                                      ListEntry("val/B/val_B.mp4", 1)]}, ["A", "B"])
    capsys.readouterr()
    for listed in (d / "train", d):
        assert cli_main(["lists", "folder", str(listed), "--out", str(tmp_path / "lists")]) == 1
        assert capsys.readouterr().err.strip().splitlines() == [
            f"mme lists: error: {d / 'train' / 'A' / 'train_A.mp4'}: cannot be read (Permission denied)"]


def test_a_list_or_folder_in_a_folder_this_user_may_not_enter_is_said_in_one_line(tmp_path, capsys):
    """A list, a video or a folder of videos inside a teammate's folder of mode 0700: `mme lists folder` and a test
    set's source (mme embed, probe) raised PermissionError (Python's ``is_dir`` raises there), and a list was
    "cannot read it ([Errno 13] Permission denied: '<path>')"; each is one line naming the path, the reason and the
    folder this user may not enter."""
    from mme.eval.testing import build_test_set
    from mme.models.config import ModelConfig

    theirs = tmp_path / "theirs"
    (theirs / "videos" / "A").mkdir(parents=True)
    listed = theirs / "train.txt"
    listed.write_text("videos/A/a.mp4 0\n")
    denied = f"cannot be read (Permission denied: this user may not enter {theirs})"
    with unenterable(theirs):
        assert cli_main(["lists", "folder", str(theirs / "videos"), "--out", str(tmp_path / "lists")]) == 1
        assert capsys.readouterr().err == f"mme lists: error: {theirs / 'videos'}: {denied}\n"
        with pytest.raises(DataError) as read:
            read_list(listed, key="data.list_file")
        with pytest.raises(DataError) as source:
            build_test_set(listed, ModelConfig(), clips=1, crops=1)
        with pytest.raises(DataError) as folders:  # (from Python: mme lists' wrapping is not around it)
            from_class_folders(theirs / "videos")
    assert str(folders.value) == f"{theirs / 'videos'}: {denied}"
    assert str(read.value) == f"data.list_file {listed}: {denied}; set data.list_file=PATH"
    assert str(source.value) == f"{listed}: {denied}"


def test_a_root_in_a_folder_this_user_may_not_enter_is_one_line_naming_the_option(tmp_path):
    """A --root or data.root inside a teammate's folder of mode 0700 was a PermissionError traceback in every command
    (Python's ``is_dir`` raises there: lists.check_root); it is one line naming the option, the reason and the folder.
    One that is not there, or a file, is still not a folder."""
    theirs = tmp_path / "theirs"
    (theirs / "videos").mkdir(parents=True)
    (tmp_path / "file").write_text("x")
    with unenterable(theirs):
        with pytest.raises(DataError) as e:
            lists.check_root(str(theirs / "videos"), "data.root")
        lists.check_root(str(tmp_path), "data.root")
    assert str(e.value) == (f"data.root {theirs / 'videos'}: cannot be read (Permission denied: this user may not "
                            f"enter {theirs})")
    for not_one in (tmp_path / "gone", tmp_path / "file"):
        with pytest.raises(DataError, match=re.escape(f"--root '{not_one}' is not a folder")):
            lists.check_root(str(not_one), "--root")


def test_the_videos_of_a_list_in_a_folder_this_user_may_not_enter_find_it_once_per_folder(tmp_path, monkeypatch):
    """Each video of a list in a teammate's folder of mode 0700 walked the folders above it for the one this user may
    not enter (a 240k test list 85% slower to check than one of missing videos): they are looked for once per folder
    the videos lie in, each video said why. A refusal said EPERM (a file system's, a security module's) names that
    folder too, as a listing's did."""
    from mme.utils import why_absent_each, why_unreadable

    theirs = tmp_path / "theirs"
    for k in range(2):
        (theirs / "v" / str(k)).mkdir(parents=True)
    (tmp_path / "mine.mp4").write_bytes(b"x")
    paths = {f"v/{i % 2}/{i}.mp4": str(theirs / "v" / str(i % 2) / f"{i}.mp4") for i in range(50)}
    with unenterable(theirs):
        access, asked = os.access, []
        monkeypatch.setattr(os, "access", lambda path, mode: asked.append(path) or access(path, mode))
        absent = why_absent_each({**paths, "mine.mp4": str(tmp_path / "mine.mp4"), "gone.mp4": str(tmp_path / "g")})
        walked = len(asked)
        refused = why_unreadable(theirs / "a.mp4", PermissionError(errno.EPERM, os.strerror(errno.EPERM)))
    assert absent == (["gone.mp4"], dict.fromkeys(paths, f"Permission denied: this user may not enter {theirs}"))
    assert walked == 2 * (len(theirs.parents) + 1)  # the folders above each of the two, to theirs
    assert refused == f"Operation not permitted: this user may not enter {theirs}"


@pytest.mark.parametrize("kind, source", [("ucf101", "."), ("hmdb51", "."), ("kinetics", "k.csv"),
                                          ("kinetics", "."), ("ssv2", ".")])
def test_annotation_files_in_a_folder_this_user_may_not_enter_are_said_in_one_line(kind, source, tmp_path, capsys):
    """`mme lists ucf101 / kinetics / ssv2` of annotations inside a teammate's folder of mode 0700 raised
    PermissionError tracebacks (Python's ``is_file`` and ``is_dir`` raise there), and `mme lists hmdb51` said "no
    HMDB51 split files" (a glob answers nothing there). Each is one line naming the file or folder and the reason."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt", "a_test_split1.txt", "k.csv", "labels.json"):
        (theirs / name).write_text("x\n")
    looked = {"ucf101": theirs / "classInd.txt", "hmdb51": theirs, "kinetics": theirs / source,
              "ssv2": theirs / "labels.json"}[kind]
    where = f"Permission denied: this user may not enter {theirs}" if looked != theirs else "Permission denied"
    with unenterable(theirs):
        assert cli_main(["lists", kind, str(theirs / source), "--out", str(tmp_path / "lists")]) == 1
    assert capsys.readouterr().err == f"mme lists: error: {os.path.normpath(looked)}: cannot be read ({where})\n"
    assert not (tmp_path / "lists").exists()


def test_a_folder_or_entry_of_the_split_listed_that_cannot_be_looked_at_or_listed_is_one_line(tmp_path, monkeypatch,
                                                                                               capsys):
    """In the split listed, a class folder or a file beside them that cannot be looked at (a stale mount: ESTALE,
    EACCES) was a PermissionError/OSError traceback, and a class folder that cannot be listed (mode 000) was taken
    for an empty one: its videos left out, or its class dropped and later ids shifted. Each is one line naming it and
    the reason, nothing written; the same folders in a split beside, walked for its videos' identities alone, are
    passed over. (Simulated: root reads any folder.)"""
    d = tmp_path / "d"
    for rel in ("train/A/train_A.mp4", "train/B/train_B.mp4", "train/C/train_C.mp4", "val/A/val_A.mp4",
                "val/B/val_B.mp4", "val/C/val_C.mp4", "val/README.md"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(rel.encode())
    out = tmp_path / "lists"

    def failing(paths, err):  # (real) -> real, failing on paths
        def fake(real):
            def call(path=".", *args, **kwargs):
                if os.fspath(path) in paths:
                    raise OSError(err, os.strerror(err), os.fspath(path))
                return real(path, *args, **kwargs)
            return call
        return fake

    def lists(listed) -> int:
        code = cli_main(["lists", "folder", str(listed), "--out", str(out)])
        assert code == 0 or not out.exists()  # nothing written, no folder made
        return code

    for looked_at in (d / "val" / "B", d / "val" / "README.md"):  # os.lstat / os.stat fail on it
        with monkeypatch.context() as m:
            swap_stat(m, failing({str(looked_at)}, errno.ESTALE))
            assert lists(d / "val") == 1
        assert capsys.readouterr().err.strip().splitlines() == [
            f"mme lists: error: {looked_at}: cannot be read (Stale file handle)"]
    for unlisted, listed in ((d / "val" / "B", d / "val"), (d / "train" / "B", d)):  # os.scandir fails on it
        with monkeypatch.context() as m:
            m.setattr(os, "scandir", failing({str(unlisted)}, errno.EACCES)(os.scandir))
            assert lists(listed) == 1
        assert capsys.readouterr().err.strip().splitlines() == [
            f"mme lists: error: {unlisted}: cannot be read (Permission denied)"]
    with monkeypatch.context() as m:  # a split beside: passed over
        m.setattr(os, "scandir", failing({str(d / "train" / "B")}, errno.EACCES)(os.scandir))
        assert from_class_folders(d / "val") == ({"val": [ListEntry("val/A/val_A.mp4", 0),
                                                          ListEntry("val/B/val_B.mp4", 1),
                                                          ListEntry("val/C/val_C.mp4", 2)]}, ["A", "B", "C"])


def test_a_split_built_on_its_own_lists_no_link_into_another_splits_class(tmp_path, caplog):
    """val/A/b.mp4 -> train/B/sub/b1.mp4 and val/A/sub -> train/B/sub: built with train, not listed under A (with
    warnings); built on its own, as docs/data.md shows, listed under A, the split folders beside it not looked at.
    Now as when built together, also through a link named otherwise to the split folder; a link to its own class
    in another split is listed."""
    d = tmp_path / "d"
    for rel in ("train/A/a1.mp4", "train/B/sub/b1.mp4", "val/A/a2.mp4", "val/B/b2.mp4"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")
    (d / "val" / "A" / "b.mp4").symlink_to(d / "train" / "B" / "sub" / "b1.mp4")
    (d / "val" / "A" / "sub").symlink_to(d / "train" / "B" / "sub", target_is_directory=True)
    (d / "val" / "A" / "a1.mp4").symlink_to(d / "train" / "A" / "a1.mp4")
    (tmp_path / "my_val").symlink_to(d / "val", target_is_directory=True)
    together = from_class_folders(d)[0]["val"]
    assert together == [ListEntry("val/A/a1.mp4", 0), ListEntry("val/A/a2.mp4", 0), ListEntry("val/B/b2.mp4", 1)]
    for root in (d / "val", tmp_path / "my_val"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="mme.data.lists"):
            assert from_class_folders(root, classes=["A", "B"]) == ({"val": together}, ["A", "B"])
        assert f"{root}: 1 link to videos in other class folders is not listed (each would be listed under two " \
               f"classes), e.g. {root / 'A' / 'b.mp4'} to {d / 'train' / 'B' / 'sub' / 'b1.mp4'}" in caplog.text
        assert f"{root / 'A' / 'sub'}: a link to {d / 'train' / 'B' / 'sub'}, a folder this walk reaches otherwise, " \
               f"one holding it or one in another class's folder, is not followed" in caplog.text


def test_links_that_lead_to_nothing_are_counted_in_a_warning(tmp_path, caplog):
    """Class folders of links into a pool of videos not mounted now, or moved: before, those videos were left out
    of the lists without a word. Said once per build, for a folder of split folders too (walked twice)."""
    for rel in ("train/A/a1.mp4", "train/B/b1.mp4", "val/A/a2.mp4", "val/B/b2.mp4"):
        (tmp_path / "d" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / rel).write_bytes(b"x")
    train = tmp_path / "d" / "train"
    (train / "A" / "a3.mp4").symlink_to(tmp_path / "pool" / "A" / "a3.mp4")
    (train / "B" / "b3.mp4").symlink_to(tmp_path / "pool" / "B" / "b3.mp4")
    (train / "B" / "more").symlink_to(tmp_path / "pool" / "B" / "more", target_is_directory=True)
    (train / "B" / "._b3.mp4").symlink_to(tmp_path / "pool" / "._b3.mp4")  # hidden: never a video
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        splits, _ = from_class_folders(tmp_path / "d")
        assert splits["train"] == [ListEntry("train/A/a1.mp4", 0), ListEntry("train/B/b1.mp4", 1)]
        assert caplog.text.count("lead nowhere") == 1
        assert f"{tmp_path / 'd'}: 3 links that lead nowhere (a volume not mounted, a file moved, a loop) are not " \
               f"listed, e.g. {train / 'A' / 'a3.mp4'}: a link to {str(tmp_path / 'pool' / 'A' / 'a3.mp4')!r}, which " \
               "leads to nothing" in caplog.text
        caplog.clear()
        assert [e.label for e in from_class_folders(train)[0]["train"]] == [0, 1]
        assert f"{train}: 3 links that lead nowhere" in caplog.text
        looped = tmp_path / "l" / "A"  # (a link to itself: said as a loop, not as leading to nothing)
        looped.mkdir(parents=True)
        (looped / "a.mp4").write_bytes(b"x")
        (looped / "loop.mp4").symlink_to("loop.mp4")
        caplog.clear()
        from_class_folders(looped.parent)
        assert (f"1 link that leads nowhere (a volume not mounted, a file moved, a loop) is not listed, e.g. "
                f"{looped / 'loop.mp4'}: a link to 'loop.mp4', which leads back to itself through links" in caplog.text)


def test_a_class_folder_that_is_a_link_into_another_class_or_above_the_root_is_refused(tmp_path, caplog):
    """A class folder that is itself a link was never checked: b -> a listed a's videos under both classes; b ->
    a/sub left a's sub-folder out of a with a warning that named the wrong link; train/a -> the root listed a test
    video in train. Now each is one line naming the link and where it leads; links to a pool elsewhere are fine."""
    for rel in ("alias/a/1.mp4", "sub/a/1.mp4", "sub/a/in/2.mp4", "up/train/b/1.mp4", "up/test/a/t1.mp4",
                "up/test/b/t2.mp4", "pool/outer/a/1.mp4", "pool/outer/b/2.mp4", "pool/c/3.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "alias" / "b").symlink_to("a", target_is_directory=True)
    (tmp_path / "sub" / "b").symlink_to("a/in", target_is_directory=True)
    (tmp_path / "up" / "train" / "a").symlink_to(tmp_path / "up", target_is_directory=True)
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "a").symlink_to(tmp_path / "pool" / "outer" / "a", target_is_directory=True)
    (tmp_path / "held" / "c").symlink_to(tmp_path / "pool" / "c", target_is_directory=True)  # a pool: fine
    assert from_class_folders(tmp_path / "held")[0] == {"all": [ListEntry("a/1.mp4", 0), ListEntry("c/3.mp4", 1)]}
    (tmp_path / "held" / "b").symlink_to(tmp_path / "pool", target_is_directory=True)
    twice = "its videos would be listed twice, under two classes (or splits); link it to a folder of its own videos " \
            "alone"
    for root, link, leads in (
            ("alias", "alias/b", f"{tmp_path / 'alias' / 'a'}, as {tmp_path / 'alias' / 'a'} does"),
            ("sub", "sub/b", f"{tmp_path / 'sub' / 'a' / 'in'}, inside {tmp_path / 'sub' / 'a'}"),
            ("up", "up/train/a", f"{tmp_path / 'up'}, which is {tmp_path / 'up'}, the folder listed"),
            ("up/train", "up/train/a", f"{tmp_path / 'up'}, which holds {tmp_path / 'up' / 'train'}, the folder "
                                       f"listed"),
            ("held", "held/b", f"{tmp_path / 'pool'}, which holds {tmp_path / 'held' / 'a'}")):
        with pytest.raises(DataError) as raised:
            from_class_folders(tmp_path / root)
        assert str(raised.value) == f"{tmp_path / link}: leads to {leads}: {twice}"


def test_the_class_folders_walks_share_one_set_of_every_class_folder(tmp_path, monkeypatch):
    """The linear walk's structure, in CI beside the slow timing test below: each class folder's walk avoids the other
    classes' folders through one set shared by all (was a set built for each class folder, quadratic in them)."""
    from mme.data import lists

    avoided, walk = [], lists.videos_under
    monkeypatch.setattr(lists, "videos_under", lambda folder, avoid=frozenset(), passed=None: avoided.append(
        avoid) or walk(folder, avoid, passed))
    for i in range(4):
        (tmp_path / f"c{i}").mkdir()
        (tmp_path / f"c{i}" / "v.mp4").write_bytes(b"x")
    assert len(from_class_folders(tmp_path)[1]) == 4
    assert len(avoided) == 4 and len({id(a.every) for a in avoided}) == 1
    assert [os.path.realpath(tmp_path / f"c{i}") in a for i, a in enumerate(avoided)] == [False] * 4  # not its own
    assert all(os.path.realpath(tmp_path / "c0") in a for a in avoided[1:])  # another's


@pytest.mark.slow  # 15 s on 2 cores, and the ratio's margin needs the many folders
def test_walking_class_folders_takes_time_linear_in_their_number(tmp_path):
    """Each class folder's walk avoided the folders of the other classes by a set built for it (all but its own),
    quadratic in class folders: 16 000 took 5 s, 8 times the folders of 2 000 35 times as long. Now one set, tested
    against: about 8 times (CPU time; the least of three runs of the few)."""
    def cost(n: int, runs: int) -> float:
        for i in range(n):
            (tmp_path / str(n) / f"c{i:05d}").mkdir(parents=True)
            (tmp_path / str(n) / f"c{i:05d}" / "v.mp4").write_bytes(b"x")
        took = []
        for _ in range(runs):
            start = time.process_time()
            assert len(from_class_folders(tmp_path / str(n))[1]) == n
            took.append(time.process_time() - start)
        return min(took)

    few, many = cost(2000, 3), cost(16000, 1)
    assert many < 18 * few, (few, many)


def test_a_class_folder_link_that_leads_to_nothing_is_refused(tmp_path, caplog):
    """Class folders linked into pools of videos, one pool not mounted: before, its class was left out without a
    word, and every later class took another id (classes.json ['a', 'c'], c class 1). Now one line naming the link
    and its target, for a split folder so linked too; a link named as a file at the top (a video, README.txt) is no
    class folder: named in a warning (a link to a file once refused the whole build), but one of a folder's name
    with a dot (St.Bernard, v1.0) is refused as a class folder's (it was left out as a file's, shifting the ids)."""
    for rel in ("pool/a/1.mp4", "pool/c/1.mp4", "s/test/a/2.mp4", "s/test/b/2.mp4", "s/test/c/2.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    data, s, gone = tmp_path / "data", tmp_path / "s", tmp_path / "unmounted"
    for top in (data, s / "train"):
        top.mkdir()
        for name in ("a", "b", "c"):
            (top / name).symlink_to((gone if name == "b" else tmp_path / "pool") / name, target_is_directory=True)
    for root, link in ((data, data / "b"), (s, s / "train" / "b"), (s / "train", s / "train" / "b")):
        with pytest.raises(DataError) as raised:
            from_class_folders(root)
        assert str(raised.value) == (f"{link}: a link to {str(gone / 'b')!r}, which leads to nothing (a volume not "
                                     f"mounted, a folder moved), where class or split folders are: left out, the "
                                     f"classes in it would be missing and later classes take other ids; mount it, or "
                                     f"remove the link")
    (s / "train" / "b").unlink()
    (s / "val").symlink_to(gone / "val", target_is_directory=True)
    with pytest.raises(DataError, match=rf"^{s / 'val'}: a link to {str(gone / 'val')!r}, which leads to nothing"):
        from_class_folders(s)
    (data / "b").unlink()
    for name in ("Mr. B", "St.Bernard", "v1.0"):  # a dot, but no file's suffix
        (data / name).symlink_to(gone / name, target_is_directory=True)
        with pytest.raises(DataError, match=rf"^{data / name}: a link to {str(gone / name)!r}, which leads to nothing"):
            from_class_folders(data)
        (data / name).unlink()
    (data / "b.mp4").symlink_to(gone / "b.mp4")  # (a video outside class folders: not listed either way)
    for name in ("README.txt", "UCF101.rar", "notes.jpeg"):  # a file's link: refused the build (a class folder's)
        (data / name).symlink_to(gone / name)
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_class_folders(data) == ({"all": [ListEntry("a/1.mp4", 0), ListEntry("c/1.mp4", 1)]},
                                            ["a", "c"])
    for name in ("README.txt", "UCF101.rar", "notes.jpeg"):
        assert (f"{data / name}: a link to {str(gone / name)!r}, which leads to nothing, is left out (a file, by its "
                "name)") in caplog.text


def test_a_dangling_link_is_a_files_by_a_listed_suffix_and_vitamin_c_a_class_folders(tmp_path, caplog, capsys):
    """A link that leads to nothing beside class folders named Vitamin.C, Mr.T (or .h, .a, .pl, .ai: suffixes that
    Python's table of types knows, in any case) was left out as a file's, every later class taking another id;
    notes.txt.z or clips.tar.BR (a compression after a type, not in the table's case) refused the build as a class
    folder's, and so did fig.svg, IMG_0001.HEIC, report.doc or list.m3u8 (images and documents FILE_EXTS lacked).
    Now a name is a file's by a suffix of videos, lists or FILE_EXTS, in any case, also followed by a compression
    in any case; any other name, with a dot or not, is a class folder's (Recycle.Bin, Node.js)."""
    data, gone, out = tmp_path / "data", tmp_path / "gone", tmp_path / "lists"
    for rel in ("Apple/1.mp4", "Zebra/1.mp4"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(b"x")
    files = ("README.txt", "clip.rar", "a.jpeg", "x.7z", "frames.gz", "FRAMES.GZ", "backup.tar.GZ", "notes.md",
             "frames.tar.br", "notes.txt.Z", "notes.txt.z", "clips.tar.BR", "model.PKL", "fig.svg", "IMG_0001.HEIC",
             "a.avif", "b.jfif", "favicon.ico", "report.doc", "paper.docx", "slides.pptx", "notes.rtf", "paper.tex",
             "style.css", "list.m3u8", "setup.exe")
    for name in files:
        (data / name).symlink_to(gone / name)
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_class_folders(data) == ({"all": [ListEntry("Apple/1.mp4", 0), ListEntry("Zebra/1.mp4", 1)]},
                                            ["Apple", "Zebra"])
    assert sorted(r.getMessage() for r in caplog.records) == sorted(
        f"{data / name}: a link to {str(gone / name)!r}, which leads to nothing, is left out (a file, by its name)"
        for name in files)
    for name in ("Vitamin.C", "Mr.T", "Jay.Z", "St.Bernard", "U.S.A", "Spider.Man", "Recycle.Bin", "Node.js",
                 "Lib.so", "Header.h"):
        (data / name).symlink_to(gone / name, target_is_directory=True)
        assert cli_main(["lists", "folder", str(data), "--out", str(out)]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"mme lists: error: {data / name}: a link to {str(gone / name)!r}, which leads to nothing (a volume not "
            f"mounted, a folder moved), where class or split folders are: left out, the classes in it would be missing "
            f"and later classes take other ids; mount it, or remove the link")
        assert list(out.glob("*")) == []  # (no list written)
        (data / name).unlink()
    (data / "Loop").symlink_to("Loop")  # (a link to itself: no mount brings it back)
    assert cli_main(["lists", "folder", str(data), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mme lists: error: {data / 'Loop'}: a link to 'Loop', which leads back to itself through links, where class "
        f"or split folders are: left out, the classes in it would be missing and later classes take other ids; point "
        f"it at its folder, or remove it")


def test_a_dangling_link_is_a_files_by_a_compression_in_any_case_but_jay_z_is_a_class_folders(tmp_path, caplog):
    """A link that leads to nothing beside class folders named FRAMES.GZ, backup.tar.GZ, notes.BZ2 or clips.XZ was
    refused as a class folder's (Python's table matches its compressions in their case alone), and one named Jay.Z
    or x.br, a class folder's, was left out as a file's (the table's .Z and .br), every later class taking another
    id. Now the common compressions (FILE_EXTS) name a file in any case; .Z and .br do after a file's suffix alone."""
    data, gone = tmp_path / "data", tmp_path / "gone"
    for rel in ("a/1.mp4", "c/1.mp4"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(b"x")
    files = ("FRAMES.GZ", "backup.tar.GZ", "notes.BZ2", "clips.XZ", "dump.ZST", "notes.txt.Z", "clips.TAR.br")
    for name in files:
        (data / name).symlink_to(gone / name)
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_class_folders(data) == ({"all": [ListEntry("a/1.mp4", 0), ListEntry("c/1.mp4", 1)]}, ["a", "c"])
    assert sorted(r.getMessage() for r in caplog.records) == sorted(
        f"{data / name}: a link to {str(gone / name)!r}, which leads to nothing, is left out (a file, by its name)"
        for name in files)
    for name in ("Jay.Z", "x.br", "frames.Z", "frames.br"):
        (data / name).symlink_to(gone / name, target_is_directory=True)
        with pytest.raises(DataError) as raised:
            from_class_folders(data)
        assert str(raised.value).startswith(f"{data / name}: a link to {str(gone / name)!r}, which leads to nothing (a "
                                            f"volume not mounted, a folder moved), where class or split folders are")
        (data / name).unlink()


def test_ucf101_official_splits(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n")
    (tmp_path / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nYoYo/v_YoYo_g25_c05.avi 3\n")
    (tmp_path / "testlist01.txt").write_text(
        "HandStandPushups/v_HandStandPushups_g01_c01.avi\r\nYoYo/v_YoYo_g01_c01.avi\n")
    splits, classes = from_ucf101(tmp_path, 1)
    assert classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert splits["train"] == [ListEntry("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
                               ListEntry("YoYo/v_YoYo_g25_c05.avi", 2)]
    assert splits["test"] == [ListEntry("HandStandPushups/v_HandStandPushups_g01_c01.avi", 1),
                              ListEntry("YoYo/v_YoYo_g01_c01.avi", 2)]
    with pytest.raises(DataError, match="trainlist02"):
        from_ucf101(tmp_path, 2)


def test_a_refused_build_leaves_no_out_folder(tmp_path, capsys):
    """`mme lists` made --out before reading the annotations: a refused build (here no classInd.txt) left an
    empty folder behind. The folder is made only once the lists are about to be written."""
    (tmp_path / "trainlist01.txt").write_text("Archery/v_Archery_g08_c01.avi 1\n")
    (tmp_path / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    out = tmp_path / "lists" / "ucf"
    assert cli_main(["lists", "ucf101", str(tmp_path), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"mme lists: error: UCF101 classInd.txt not found: {tmp_path / 'classInd.txt'}")
    assert not (tmp_path / "lists").exists()
    (tmp_path / "classInd.txt").write_text("1 Archery\n")
    assert cli_main(["lists", "ucf101", str(tmp_path), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["classes.json", "test.txt", "train.txt"]
    assert (out / "train.txt").read_text() == "Archery/v_Archery_g08_c01.avi 0\n"


def test_a_build_that_cannot_write_one_of_its_files_leaves_the_earlier_build_whole(tmp_path, capsys):
    """The disk fills up part-way through a build (a file-size limit here: the new test.txt fits, its train.txt does
    not). Before: the lists were written one by one, the class map last, so a new test.txt numbered by the new
    classes was left beside the earlier build's train.txt and classes.json (ids that disagree), with a traceback.
    Now every file is written, and each path seen to be no folder, before any replaces its old one: one line naming
    the file, and the earlier build whole."""
    root, out = tmp_path / "fold", tmp_path / "lists"
    for rel in ("train/bowling/b1.mp4", "train/cooking/c1.mp4", "test/bowling/b2.mp4", "test/cooking/c2.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    assert cli_main(["lists", "folder", str(root), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (root / "train" / "archery").mkdir()  # a class that comes first: every id moves
    (root / "train" / "archery" / "a1.mp4").write_bytes(b"x")
    for i in range(100):  # a train list past the limit
        (root / "train" / "cooking" / f"a_long_name_of_a_train_video_{i:03d}.mp4").write_bytes(b"x")
    proc = in_one_process([["lists", "folder", str(root), "--out", str(out)]],
                          "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                          "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))", timeout=120)
    [(code, err, _)] = proc.ran
    assert code == 1 and "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(rf"mme lists: error: {re.escape(str(out / 'train.txt'))}: could not be written \(File too "
                        r"large: this process's file-size limit \(1000 bytes, ulimit -f\) reached\); nothing of this "
                        r"build is written: the lists and class map there are as they were", last), last
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary file either
    # a folder in the way of one list: seen before any file is replaced (before: the class map and the lists after
    # it replaced, a traceback from the replace of the folder's)
    (out / "train.txt").unlink()
    (out / "train.txt").mkdir()
    del before["train.txt"]
    assert cli_main(["lists", "folder", str(root), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mme lists: error: {out / 'train.txt'}: could not be written (Is a directory); nothing of this build is "
        "written: the lists and class map there are as they were")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert [p.name for p in out.iterdir() if not p.is_file()] == ["train.txt"]


def test_a_replace_that_fails_after_every_write_leaves_the_files_given_after_it_as_they_were(tmp_path, monkeypatch):
    """atomic_write_texts replaces in the order given, the class map last: a replace that fails even so (an I/O error
    after every write and check) leaves the class map of the earlier build, with one line naming the file (before:
    replaced last first, the class map before the lists, and the replace's error a traceback)."""
    from mme.errors import MMEError
    from mme.utils import atomic_write_texts

    files = [tmp_path / name for name in ("test.txt", "train.txt", "classes.json")]
    for f in files:
        f.write_text("old")
    replace = os.replace

    def failing_for_train(src, dst):
        if os.path.basename(dst) == "train.txt":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_for_train)
    with pytest.raises(MMEError) as info:
        atomic_write_texts(dict.fromkeys(files, "new"), "the rest as it was")
    monkeypatch.undo()
    assert str(info.value) == f"{files[1]}: could not be written (Input/output error); the rest as it was"
    assert [f.read_text() for f in files] == ["new", "old", "old"] and sorted(tmp_path.iterdir()) == sorted(files)


def test_a_ucf101_trainlist_label_that_classind_names_otherwise_is_refused(tmp_path, capsys):
    """`mme lists ucf101` took each video's class from its folder and never read the trainlist's label: a
    classInd.txt in another order than the trainlist's labels was written without a word (the class map then
    named every id wrongly); now the line, its label and both classes are named, and nothing is written."""
    (tmp_path / "classInd.txt").write_text("1 Archery\r\n2 ApplyEyeMakeup\r\n3 YoYo\r\n")
    (tmp_path / "trainlist01.txt").write_text("Archery/v_Archery_g08_c01.avi 2\nApplyEyeMakeup/v_a.avi 1\n")
    (tmp_path / "testlist01.txt").write_text("YoYo/v_YoYo_g01_c01.avi\n")
    out = tmp_path / "lists"
    assert cli_main(["lists", "ucf101", str(tmp_path), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"mme lists: error: {tmp_path / 'trainlist01.txt'}:1: label 2 is 'ApplyEyeMakeup' in "
        f"{tmp_path / 'classInd.txt'}, but the video's folder is class 1 'Archery' there: "
        "'Archery/v_Archery_g08_c01.avi 2'; use the classInd.txt of these split files")
    assert not out.exists()
    (tmp_path / "trainlist01.txt").write_text("Archery/v_Archery_g08_c01.avi 4\n")
    with pytest.raises(DataError, match=r"trainlist01.txt:1: label '4' is not a class id of .*classInd.txt \(1..3\)"):
        from_ucf101(tmp_path, 1)
    (tmp_path / "trainlist01.txt").write_text("archery/v_Archery_g08_c01.avi 1\nYoYo/v_YoYo_g02_c01.avi 3\n")
    assert from_ucf101(tmp_path, 1)[0]["train"] == [ListEntry("archery/v_Archery_g08_c01.avi", 0),
                                                     ListEntry("YoYo/v_YoYo_g02_c01.avi", 2)]


def test_ucf101_and_hmdb51_videos_listed_twice_or_in_both_splits_are_said(tmp_path, caplog):
    """A split file's line repeated (lines appended twice) and a train video in the test list: before, the video
    listed twice (oversampled) and in both lists, without a word; now listed once with a warning naming both lines,
    and the video in both splits said as Kinetics' and split folders' shared sources are."""
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 YoYo\n")
    (tmp_path / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
                                              "YoYo/v_YoYo_g25_c05.avi 2\n"
                                              "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n")
    (tmp_path / "testlist01.txt").write_text("YoYo/v_YoYo_g01_c01.avi\nYoYo/v_YoYo_g25_c05.avi\n")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_ucf101(tmp_path, 1)[0] == {
            "train": [ListEntry("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
                      ListEntry("YoYo/v_YoYo_g25_c05.avi", 1)],
            "test": [ListEntry("YoYo/v_YoYo_g01_c01.avi", 1), ListEntry("YoYo/v_YoYo_g25_c05.avi", 1)]}
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'trainlist01.txt'}:3 repeats {tmp_path / 'trainlist01.txt'}:1: the video "
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi is listed once",
        f"{tmp_path}: 1 source video has clips in two splits, e.g. v_YoYo_g25 (YoYo/v_YoYo_g25_c05.avi in train, "
        "YoYo/v_YoYo_g25_c05.avi in test): scores of one split are of videos the other fits on; move each source's "
        "clips to one split"]
    caplog.clear()
    (tmp_path / "jump_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \na.avi 1 \nb.avi 1 \nc.avi 0 \nc.avi 0 \n")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_hmdb51(tmp_path, 1)[0] == {"train": [ListEntry("jump/a.avi", 0), ListEntry("jump/b.avi", 0)],
                                               "test": [ListEntry("jump/b.avi", 0)]}
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'jump_test_split1.txt'}:3 repeats {tmp_path / 'jump_test_split1.txt'}:1: the video jump/a.avi "
        "is listed once",
        f"{tmp_path}: 1 source video has clips in two splits, e.g. jump/b.avi (jump/b.avi in train, jump/b.avi in "
        "test): scores of one split are of videos the other fits on; move each source's clips to one split"]


def test_hmdb51_official_splits(tmp_path):
    (tmp_path / "brush_hair_test_split1.txt").write_text("April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n"
                                                         "Blonde_brush_hair_f_nm_np2_le_goo_1.avi 2 \n"
                                                         "Other_brush_hair_u_nm_np1_fr_med_2.avi 0 \n")
    (tmp_path / "cartwheel_test_split1.txt").write_text("cart_a.avi 2 \n")
    (tmp_path / "cartwheel_test_split2.txt").write_text("cart_a.avi 1 \n")
    splits, classes = from_hmdb51(tmp_path, 1)
    assert classes == ["brush_hair", "cartwheel"]
    assert splits["train"] == [ListEntry("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0)]
    assert splits["test"] == [ListEntry("brush_hair/Blonde_brush_hair_f_nm_np2_le_goo_1.avi", 0),
                              ListEntry("cartwheel/cart_a.avi", 1)]
    # a class whose file of a split is missing would shift every later id in that split: refused
    with pytest.raises(DataError, match=r"no split-2 file for class\(es\) \['brush_hair'\]"):
        from_hmdb51(tmp_path, 2)


def test_kinetics_csv_layouts(tmp_path):
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                        "abseiling,---QUuC4vJs,3,13,train\n"
                                        '"passing American football (in game)",-0B5v6tPoWY,14,24,train\n')
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,0wR5jVB-WPk,417,427,val\n")
    splits, classes = from_kinetics([tmp_path / "train.csv", tmp_path / "val.csv"])
    assert classes == ["abseiling", "passing American football (in game)"]
    assert splits["train"] == [
        ListEntry("train/abseiling/---QUuC4vJs_000003_000013.mp4", 0),
        ListEntry("train/passing American football (in game)/-0B5v6tPoWY_000014_000024.mp4", 1)]
    assert splits["val"] == [ListEntry("val/abseiling/0wR5jVB-WPk_000417_000427.mp4", 0)]
    flat, _ = from_kinetics([tmp_path / "val.csv"], "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4")
    assert flat["val"] == [ListEntry("0wR5jVB-WPk_000417_000427.mp4", 0)]
    (tmp_path / "validate.csv").write_text("label,youtube_id,time_start,time_end\nabseiling,0wR5jVB-WPk,417,427\n")
    given, _ = from_kinetics([tmp_path / "validate.csv"], "{split_as_given}/{label}/{youtube_id}.mp4")
    assert given == {"val": [ListEntry("validate/abseiling/0wR5jVB-WPk.mp4", 0)]}  # video folders as published
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="bad.csv: not a Kinetics CSV"):
        from_kinetics([tmp_path / "bad.csv"])
    # torchvision's download names class folders without spaces, quotes or parentheses
    tv, _ = from_kinetics([tmp_path / "train.csv"], "{split}/{label_tv}/{youtube_id}.mp4")
    assert [e.path for e in tv["train"]] == ["train/abseiling/---QUuC4vJs.mp4",
                                             "train/passing_American_football_in_game/-0B5v6tPoWY.mp4"]
    # the unlabelled test set under a label folder format: no empty folder (it made '/id.mp4', an absolute path)
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\n--33Lscn6sk,4,14,test\n")
    test, _ = from_kinetics([tmp_path / "test.csv"], "{label}/{youtube_id}.mp4")
    assert test["test"] == [ListEntry("--33Lscn6sk.mp4")]
    with pytest.raises(DataError, match=r"--path-format '\{video_id\}.mp4': KeyError 'video_id'; its fields are "
                                        r"\{split\}, \{split_as_given\}, \{label\}"):
        from_kinetics([tmp_path / "test.csv"], "{video_id}.mp4")
    with pytest.raises(DataError, match=r"KeyError 'label\.upper'"):  # format() would write a method's name
        from_kinetics([tmp_path / "test.csv"], "{label.upper}/{youtube_id}.mp4")
    (tmp_path / "latin1.csv").write_bytes("label,youtube_id,time_start,time_end\ncaf\xe9,x,1,2\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.csv: not UTF-8 text \(line 2 holds the byte 0xe9"):
        from_kinetics([tmp_path / "latin1.csv"])


@pytest.mark.parametrize("held", ['{"x": "mine"}\n', "my notes\n", "null\n"])
def test_lists_refuses_a_classes_json_that_is_no_class_map_as_synth_does(held, tmp_path, capsys):
    """`mme lists folder VIDEOS --out l3` replaced a user's l3/classes.json ({"x": "mine"}) without a word, where
    mme synth refuses the same: refused in one line before any list is written, the file as it was; a class map
    (mme's own, or a {name: id} map) is replaced as before."""
    for name in ("cls", "c2"):
        (tmp_path / "vids" / name).mkdir(parents=True)
        write_video(tmp_path / "vids" / name / "a.mp4", affine_video(T=4, H=32, W=32)[0])
    out = tmp_path / "l3"
    out.mkdir()
    (out / "classes.json").write_text(held)
    assert cli_main(["lists", "folder", str(tmp_path / "vids"), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mme lists: error: --out {out}: holds classes.json, which is not a readable class map (a JSON list of class "
        "names, or a {name: id} map) and would be replaced; move it, or choose another --out")
    assert sorted(p.name for p in out.iterdir()) == ["classes.json"] and (out / "classes.json").read_text() == held
    for mmes in ('{"c2": 1, "cls": 0}\n', "[]\n"):  # a class map, an earlier mme's of a build without labels: replaced
        (out / "classes.json").write_text(mmes)
        assert cli_main(["lists", "folder", str(tmp_path / "vids"), "--out", str(out)]) == 0
        assert json.loads((out / "classes.json").read_text()) == ["c2", "cls"]


def test_kinetics_splits_built_one_at_a_time_keep_one_class_map(tmp_path):
    """val.csv built after train.csv into the same --out: before, its ids came from its own labels (zumba 1, not
    2) and it replaced train's classes.json without a word; now refused, and --classes keeps train's ids."""
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,a1,1,11,train\n"
                                        "baking cookies,b1,1,11,train\nzumba,z1,1,11,train\n")
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,a2,1,11,val\n"
                                      "zumba,z2,1,11,val\n")
    out = tmp_path / "o"
    assert cli_main(["lists", "kinetics", str(tmp_path / "train.csv"), "--out", str(out)]) == 0
    with pytest.raises(DataError, match=r"classes\.json numbers the classes otherwise than this build would, and "
                                        r"the lists of other splits there \(train\.txt\) .*give --classes"):
        build_lists("kinetics", tmp_path / "val.csv", out)
    assert json.loads((out / "classes.json").read_text()) == ["abseiling", "baking cookies", "zumba"]
    assert cli_main(["lists", "kinetics", str(tmp_path / "val.csv"), "--out", str(out),
                     "--classes", str(out / "classes.json")]) == 0
    assert [e.label for e in read_list(out / "val.txt")[0]] == [0, 2]
    assert json.loads((out / "classes.json").read_text()) == ["abseiling", "baking cookies", "zumba"]
    with pytest.raises(DataError, match=r"val\.csv:3: label 'zumba' is not in the given class map of 2 classes"):
        from_kinetics([tmp_path / "val.csv"], classes=["abseiling", "yoga"])
    # the test CSV (no labels) first: it writes no class map, and no other build is held to an empty one; lists
    # without labels and other text files in --out number nothing
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end\nt1,1,11\n")
    first = tmp_path / "t"
    assert cli_main(["lists", "kinetics", str(tmp_path / "test.csv"), "--out", str(first)]) == 0
    assert not (first / "classes.json").exists()
    (first / "notes.txt").write_text("hi\n")
    assert cli_main(["lists", "kinetics", str(tmp_path / "train.csv"), "--out", str(first)]) == 0
    assert cli_main(["lists", "kinetics", str(tmp_path / "val.csv"), "--out", str(first), "--classes",
                     str(first / "classes.json")]) == 0
    assert json.loads((first / "classes.json").read_text()) == ["abseiling", "baking cookies", "zumba"]


def _class_folders(tmp_path):
    """Split folders of classes: ab (train and val, classes a b), a (train alone, classes a b), wxy (train alone,
    classes w x y), each also built alone into <name>_alone."""
    for rel in ("ab/train/a/1.mp4", "ab/train/b/2.mp4", "ab/val/a/3.mp4", "ab/val/b/4.mp4", "a/train/a/8.mp4",
                "a/train/b/9.mp4", "wxy/train/w/5.mp4", "wxy/train/x/6.mp4", "wxy/train/y/7.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    for name in ("ab", "a", "wxy"):
        build_lists("folder", tmp_path / name, tmp_path / f"{name}_alone")


@contextlib.contextmanager
def _build_waiting(source, out, caplog):
    """A build of ``source`` into ``out`` started in a thread while the block holds out's lock (another build
    writing there), seen waiting for it: yields its future; the lock is let go at the block's end."""
    with ThreadPoolExecutor(1) as pool, caplog.at_level("INFO", logger="mme.utils"):
        with exclusive_lock(out / LISTS_LOCK, remove=True):
            build = pool.submit(build_lists, "folder", source, out)
            deadline = time.monotonic() + 60
            while "waiting for it to end" not in caplog.text and not build.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not build.done()  # it waits for the other
            yield build
        build.exception(timeout=60)
    assert f"--out {out}: another mme lists is writing there; waiting for it to end" in caplog.text


@pytest.mark.parametrize("other, this", [("ab", "wxy"), ("wxy", "ab")])
def test_a_build_into_an_out_another_build_is_writing_waits_then_looks_at_what_it_wrote(tmp_path, caplog, other,
                                                                                        this):
    """Two `mme lists` into one --out at once both exited 0, each having looked at classes.json before either wrote:
    val.txt was left numbered by the other build's class map, or one build's lists replaced the other's unsaid. The
    second waits, then is refused as when run after the first (ab: train and val; wxy: train alone), or replaces
    the first's lists and class map whole."""
    _class_folders(tmp_path)
    out = tmp_path / "out"
    with _build_waiting(tmp_path / this, out, caplog) as second:
        shutil.copytree(tmp_path / f"{other}_alone", out, dirs_exist_ok=True)
    if this == "wxy":
        with pytest.raises(DataError, match=r"classes\.json numbers the classes otherwise than this build would, "
                                            r"and the lists of other splits there \(val\.txt\)"):
            second.result()
    else:
        second.result()
    kept = tmp_path / "ab_alone"  # refused, wxy leaves ab's; ab replaces wxy's train.txt and class map
    assert sorted(p.name for p in out.iterdir()) == ["classes.json", "train.txt", "val.txt"]
    for f in kept.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes()
    classes = read_classes(out / "classes.json")  # each video's label names its class folder
    assert all(classes[e.label] == e.path.split("/")[1] for f in out.glob("*.txt") for e in read_list(f)[0])


def test_a_build_looks_at_out_first_only_once_another_build_there_has_written_its_class_map(tmp_path, caplog):
    """The first look at --out, before the videos are looked for, was made without the lock: a build writing there
    replaces its lists first and classes.json last, and a build looking between saw the new val.txt beside the old
    classes.json, and was refused ("numbers the classes otherwise") where, run after it, it is not. It waits."""
    _class_folders(tmp_path)
    out = tmp_path / "out"
    shutil.copytree(tmp_path / "wxy_alone", out)  # an earlier build's train.txt and class map (w x y)
    for name in ("train.txt", "val.txt"):  # ab's build has replaced its lists, not yet the class map
        shutil.copy(tmp_path / "ab_alone" / name, out / name)
    with _build_waiting(tmp_path / "a", out, caplog) as build:  # classes a b: train alone
        shutil.copy(tmp_path / "ab_alone" / "classes.json", out / "classes.json")
    build.result()
    assert (out / "train.txt").read_bytes() == (tmp_path / "a_alone" / "train.txt").read_bytes()
    for name in ("val.txt", "classes.json"):
        assert (out / name).read_bytes() == (tmp_path / "ab_alone" / name).read_bytes()


def _one_video_and_an_out(base: Path, mode: int) -> tuple[Path, Path]:
    """A class folder of one video under ``base/src``, and an --out ``base/out`` of ``mode``, with its lock's path."""
    (base / "src" / "train" / "a").mkdir(parents=True)
    (base / "src" / "train" / "a" / "1.mp4").write_bytes(b"x")
    out = base / "out"
    out.mkdir()
    out.chmod(mode)
    return out, out / LISTS_LOCK


def test_a_lock_file_in_out_this_user_cannot_open_is_one_line_naming_it():
    """Another user's .lists.lock in --out, readable by its owner alone (their umask 077), ended the build in a
    PermissionError traceback. It is one line naming it and the reason, before anything is written. As root, the build
    runs as another user (nobody); else the file is the user's own, mode 000."""
    import tempfile

    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o755)
        out, lock = _one_video_and_an_out(base, 0o777)
        lock.write_bytes(b"")
        lock.chmod(0o600 if os.geteuid() == 0 else 0o000)
        build = ("import os, sys\n"
                 "from mme.cli import main\n"
                 "import mme.data.lists\n"
                 "if os.geteuid() == 0:  # (imported first: Python's own files may be root's only)\n"
                 "    os.setgid(65534)\n"
                 "    os.setuid(65534)\n"
                 "sys.exit(main(['lists', 'folder', sys.argv[1], '--out', sys.argv[2]]))\n")
        proc = subprocess.run([sys.executable, "-c", build, str(base / "src"), str(out)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        owner = "it is another user's, whose job may hold it: remove it once that job has ended, or " \
            if os.geteuid() == 0 else ""
        assert f"{lock}: the lock file could not be opened (Permission denied); {owner}choose another --out" \
            in proc.stderr
        assert sorted(p.name for p in out.iterdir()) == [LISTS_LOCK]
    finally:
        shutil.rmtree(base)


def test_a_folder_at_the_lock_files_path_in_out_is_one_line_naming_it(tmp_path, capsys):
    """A folder named .lists.lock in --out was opened as the lock file (read-only, which a folder allows) and locked,
    so the build ran and left the folder there, which the lock's removal cannot remove. It is one line naming it and
    the reason, before anything is written, as when the open made files (O_CREAT, which a folder refuses)."""
    out, lock = _one_video_and_an_out(tmp_path, 0o755)
    lock.mkdir()
    assert cli_main(["lists", "folder", str(tmp_path / "src"), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"mme lists: error: {lock}: the lock file could not be opened (Is a directory); choose another --out"
    assert sorted(p.name for p in out.iterdir()) == [LISTS_LOCK] and lock.is_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="gives a file to another user: needs root")
def test_another_users_lock_file_in_a_shared_sticky_out_is_opened_as_it_is(tmp_path, protected_regular):
    """Another user's .lists.lock (0644) in a shared --out that all may write, sticky (a folder under /tmp): the
    build opened it with O_CREAT, which the kernel refuses there for another user's file (fs.protected_regular, on
    by default; played here, as a test may not set it), so it stopped at 'the lock file could not be opened
    (Permission denied)', where the file opened as it is locks as this user's. It is opened first as it is now, and
    made only where it is not there."""
    out, lock = _one_video_and_an_out(tmp_path, 0o1777)
    lock.touch(mode=0o644)
    os.chown(lock, 65534, 65534)
    with exclusive_lock(lock, unopened="choose another --out") as held:  # (its owner's job, played: not removed)
        assert held
        look = os.open(lock, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # held as this user's
                fcntl.flock(look, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(look)
    assert cli_main(["lists", "folder", str(tmp_path / "src"), "--out", str(out)]) == 0
    assert read_list(out / "train.txt")[0] == [ListEntry("train/a/1.mp4", 0)]


def test_kinetics_columns_are_matched_whatever_their_case_and_a_missing_label_column_is_said(tmp_path, caplog):
    """A header spelling 'Label' (or ' Split'): before, every list was written unlabelled, its paths without the
    label folder, without a word."""
    (tmp_path / "train.csv").write_text("Label, YouTube_ID,Time_Start,time_end, Split\nabseiling,a1,1,11,train\n")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_kinetics([tmp_path / "train.csv"]) == (
            {"train": [ListEntry("train/abseiling/a1_000001_000011.mp4", 0)]}, ["abseiling"])
        assert not caplog.text
        (tmp_path / "val.csv").write_text("youtube_id,time_start,time_end\nv1,1,11\n")
        (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end\nt1,1,11\n")
        from_kinetics([tmp_path / "val.csv", tmp_path / "test.csv"])
    assert "val.csv: no label column; its ['val'] list is written without labels" in caplog.text
    assert "test.csv" not in caplog.text


def test_a_kinetics_split_with_a_label_column_empty_in_every_row_is_said(tmp_path, caplog):
    """A val CSV with a label column but no label in any row (labels not yet filled in, or lost in an export):
    before, an unlabelled val list without a word, as a test set's; now a warning naming the CSV and the split,
    as where the column is absent. A test split's empty labels are its own."""
    header = "label,youtube_id,time_start,time_end,split\n"
    (tmp_path / "validate.csv").write_text(header + ",v1,1,11,validate\n,v2,2,12,validate\n")
    (tmp_path / "test.csv").write_text(header + ",t1,1,11,test\n")
    (tmp_path / "all.csv").write_text(header + "zumba,z1,1,11,train\n,w1,1,11,extra\n,h1,1,11,holdout_test\n")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_kinetics([tmp_path / "validate.csv", tmp_path / "test.csv", tmp_path / "all.csv"]) == (
            {"val": [ListEntry("val/v1_000001_000011.mp4"), ListEntry("val/v2_000002_000012.mp4")],
             "test": [ListEntry("test/t1_000001_000011.mp4")],
             "train": [ListEntry("train/zumba/z1_000001_000011.mp4", 0)],
             "extra": [ListEntry("extra/w1_000001_000011.mp4")],
             "holdout": [ListEntry("holdout/h1_000001_000011.mp4")]},
            ["zumba"])
    assert [r.getMessage() for r in caplog.records] == [  # (the list's, not the CSV's: "its list is" read as the CSV's)
        f"{tmp_path / 'validate.csv'}: its label column is empty in every row of ['val']; the list is written "
        "without labels",
        f"{tmp_path / 'all.csv'}: its label column is empty in every row of ['extra']; the list is written "
        "without labels"]


def test_kinetics_csv_errors_name_the_line_the_row_starts_on(tmp_path):
    """Blank lines and quoted fields that span lines make rows and lines differ: before, errors named the row's
    number plus one (line 3 for the row on line 5 after two blank lines), so the line named was another row."""
    header = "label,youtube_id,time_start,time_end,split\n"
    cases = {"blank": (header + "abseiling,a1,1,11,train\n\n\nabseiling,a2,x,11,train\n", 5, "bad time_start"),
             "quoted": (header + '"air\ndrumming",d1,1,11,train\n,d2,1,11,train\n', 2, "label 'air\\\\ndrumming'"),
             "spanning": (header + "\nabseiling,a1,1,11,train\n\"air\r\ndrumming\",d1,x,11,train\n", 4,
                          "label 'air\\\\r\\\\ndrumming' holds a line break"),
             "short": (header + "abseiling,a1,1,11,train\n\nabseiling\n", 4, "bad time_start"),
             "no id": (header + "abseiling,a1,1,11,train\r\n\r\nabseiling,,1,11,train\r\n", 4, "no youtube_id")}
    for name, (text, line, reason) in cases.items():
        (tmp_path / f"{name}.csv").write_bytes(text.encode())
        with pytest.raises(DataError, match=rf"{name}\.csv:{line}: {reason}"):
            from_kinetics([tmp_path / f"{name}.csv"])


def test_a_kinetics_csv_is_read_without_holding_its_rows(tmp_path):
    """`mme lists kinetics` held every row of a CSV as a dict and again as a tuple before listing any: 1.3 kB a row at
    its peak, 3.4 GB of memory for a CSV of 2.5M rows. Each row is now listed as it is read: the peak is a few times
    the lists it returns, which are the same."""
    rows = 5000
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\n" + "".join(
        f"class {i % 40},id{i:07d},{i % 300},{i % 300 + 10},{'val' if i % 10 == 0 else 'train'}\n"
        for i in range(rows)))
    tracemalloc.start()
    try:
        splits, classes = from_kinetics([tmp_path / "train.csv"])
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert classes == sorted(f"class {i}" for i in range(40))
    assert splits["val"][:2] == [ListEntry("val/class 0/id0000000_000000_000010.mp4", 0),
                                 ListEntry("val/class 10/id0000010_000010_000020.mp4", 2)]
    assert len(splits["train"]) == rows * 9 // 10 and len(splits["val"]) == rows // 10
    assert peak < 4 * held, (peak / rows, held / rows)  # (before: 5.0 times, 1.25 kB a row)


def test_blank_rows_of_a_kinetics_csv_are_skipped(tmp_path):
    """A line of spaces at the end of a CSV, or the empty ',,,,,' row a spreadsheet writes for a blank row: skipped
    as an empty line is (before: the whole file refused, 'bad time_start/time_end {'label': ''}'); a row after them
    is still named by its line."""
    header = "label,youtube_id,time_start,time_end,split\r\n"
    (tmp_path / "validate.csv").write_bytes((header + "abseiling,a1,1,11,validate\r\n,,,,\r\n \t\r\n"
                                             "zumba,z1,2,12,validate\r\n , ,,\r\n   \r\n").encode())
    assert from_kinetics([tmp_path / "validate.csv"]) == (
        {"val": [ListEntry("val/abseiling/a1_000001_000011.mp4", 0), ListEntry("val/zumba/z1_000002_000012.mp4", 1)]},
        ["abseiling", "zumba"])
    (tmp_path / "validate.csv").write_bytes((header + ",,,,\r\nzumba,z1,x,12,validate\r\n").encode())
    with pytest.raises(DataError, match=r"validate\.csv:3: bad time_start/time_end"):
        from_kinetics([tmp_path / "validate.csv"])


def test_a_kinetics_csv_with_an_unclosed_quote_is_one_line_naming_where_it_opens(tmp_path):
    """A quote not closed made one field of the rest of the file: in a big CSV, a bare '_csv.Error: field larger
    than field limit' traceback; in a small one, 'bad time_start/time_end' printing a row of every later line; a
    quote closed lines later, a youtube_id holding rows. Now one line naming the line the row starts on, whatever
    field holds the rest (a label: 'bad time_start/time_end' again). Spaces after a closing quote are the field's,
    stripped as every field's are (strict reading refused them as text after a closing quote: '"air drumming" ,')."""
    header = "label,youtube_id,time_start,time_end,split\n"
    rows = "".join(f"abseiling,v{i:06d},1,11,train\n" for i in range(5000))  # > the csv module's 131072 bytes
    unclosed = r"holds a line break: a quote not closed, or closed on a later line, or a line break in the cell\?$"
    cases = {"small": (header + 'abseiling,"abc,1,11,train\nabseiling,def,2,12,train\n', 2,
                       r"youtube_id 'abc,1,11,train\\nabseiling,def,2,12,train\\n' " + unclosed),
             "last": (header + 'abseiling,abc,1,11,train\n"zumba,def,2,12,train\n', 3,
                      r"label 'zumba,def,2,12,train\\n' " + unclosed),
             "label": (header + '"abseiling,abc,1,11,train\nzumba,def,2,12,train\n', 2,
                       r"label 'abseiling,abc,1,11,train\\nzumba,def,2,12,'\.\.\. " + unclosed),
             "big": (header + "abseiling,a1,1,11,train\n" + 'abseiling,"x0,1,11,train\n' + rows, 3,
                     r"not a CSV row \(field larger than field limit \(131072\)\): a quote not closed\?$"),
             "later": (header + 'abseiling,"x0,1,11,train\nabseiling,y0",2,12,train\n', 2,
                       r"youtube_id 'x0,1,11,train\\nabseiling,y0' " + unclosed)}
    for name, (text, line, reason) in cases.items():
        (tmp_path / f"{name}.csv").write_text(text)
        with pytest.raises(DataError, match=rf"^{tmp_path / name}\.csv:{line}: {reason}"):
            from_kinetics([tmp_path / f"{name}.csv"])
        assert cli_main(["lists", "kinetics", str(tmp_path / f"{name}.csv"), "--out", str(tmp_path / name)]) == 1
    (tmp_path / "ok.csv").write_text(header + 'abseiling,a"b,1,11,train\n"air, drumming",d1,1,11,train\n'
                                     '"air, drumming" ,d2,1,11,"train" \nzumba,"d3"\t,1,11,train\n')
    assert from_kinetics([tmp_path / "ok.csv"], "{label}/{youtube_id}.mp4") == (  # a quote inside a field: as written
        {"train": [ListEntry('abseiling/a"b.mp4', 0), ListEntry("air, drumming/d1.mp4", 1),
                   ListEntry("air, drumming/d2.mp4", 1), ListEntry("zumba/d3.mp4", 2)]},
        ["abseiling", "air, drumming", "zumba"])


def test_a_kinetics_csv_written_with_comma_space_separators_reads_its_quoted_labels(tmp_path):
    """A CSV written with ', ' separators (its column names with spaces are matched): a quoted label after the space
    kept its quotes, '"air drumming"' a class of its own beside the val CSV's 'air drumming', without a word. Now
    the spaces after a comma are skipped and the quotes read; a label still beginning or ending with a quote (a tab
    before it) is one line naming the line."""
    (tmp_path / "train.csv").write_text('youtube_id, label, time_start, time_end, split\n'
                                        'abc, "air drumming", 1, 11, train\ndef, zumba, 2, 12, train\n')
    (tmp_path / "val.csv").write_text('youtube_id,label,time_start,time_end,split\nghi,"air drumming",1,11,val\n'
                                      'jkl,zumba,2,12,val\n')
    assert from_kinetics([tmp_path / "train.csv", tmp_path / "val.csv"], "{label}/{youtube_id}.mp4") == (
        {"train": [ListEntry("air drumming/abc.mp4", 0), ListEntry("zumba/def.mp4", 1)],
         "val": [ListEntry("air drumming/ghi.mp4", 0), ListEntry("zumba/jkl.mp4", 1)]}, ["air drumming", "zumba"])
    (tmp_path / "tab.csv").write_text('youtube_id,label,time_start,time_end,split\nabc,zumba,2,12,train\n'
                                      'def,\t"air drumming",1,11,train\n')
    with pytest.raises(DataError) as raised:
        from_kinetics([tmp_path / "tab.csv"])
    assert str(raised.value) == (f"{tmp_path / 'tab.csv'}:3: label '\"air drumming\"' begins or ends with a quote: a "
                                 f"quoted field after other text (a tab before its quote)?")


def test_hidden_files_beside_kinetics_csvs_are_passed_over(tmp_path):
    """A folder of CSVs copied from a Mac holds '._train.csv', its AppleDouble companion (binary, not UTF-8):
    before, `mme lists kinetics FOLDER` failed on it as 'not a UTF-8 text file'; HMDB51's split files and class
    folders already passed such names over."""
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,a1,1,11,train\n")
    (tmp_path / "._train.csv").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \xb0\xff\x00")
    assert build_lists("kinetics", tmp_path, tmp_path / "out") == ({"train": tmp_path / "out" / "train.txt"}, None)
    assert read_list(tmp_path / "out" / "train.txt")[0] == [ListEntry("train/abseiling/a1_000001_000011.mp4", 0)]


SSV2_LABELS = {"Approaching something with your camera": "0", "Putting something on something": "1"}
SSV2_SPLITS = {
    "train": [{"id": "78687", "label": "putting a cup on a table", "template": "Putting [something] on [something]",
               "placeholders": ["a cup", "a table"]},
              {"id": "42326", "label": "approaching a pen", "template": "Approaching [something] with your camera",
               "placeholders": ["a pen"]}],
    "validation": [{"id": "74225", "template": "Putting [something] on [something]"}],
    "test": [{"id": "1420"}],
}
SSV2_EXPECTED = {"train": [ListEntry("78687.webm", 1), ListEntry("42326.webm", 0)],
                 "val": [ListEntry("74225.webm", 1)], "test": [ListEntry("1420.webm")]}


def write_text(path, text: str, variant: str) -> None:
    """``text`` as saved by different tools: as is, with CRLF line ends, or with a UTF-8 byte-order mark too."""
    if variant != "plain":
        text = text.replace("\n", "\r\n")
    path.write_bytes(("\ufeff" if variant == "bom" else "").encode() + text.encode())


@pytest.mark.parametrize("variant", ["plain", "crlf", "bom"])
@pytest.mark.parametrize("labels,split_name", [
    ("labels.json", "something-something-v2-{}.json"),  # the release's naming
    ("labels.json", "{}.json"),
    ("something-something-v2-labels.json", "something-something-v2-{}.json"),
    ("something-something-v2-labels.json", "{}.json"),
])
def test_ssv2_every_naming(tmp_path, labels, split_name, variant):
    write_text(tmp_path / labels, json.dumps(SSV2_LABELS, indent=1), variant)
    for split, items in SSV2_SPLITS.items():
        write_text(tmp_path / split_name.format(split), json.dumps(items, indent=1), variant)
    splits, classes = from_ssv2(tmp_path)
    assert classes == list(SSV2_LABELS)
    assert splits == SSV2_EXPECTED


def test_ssv2_says_what_it_looked_for(tmp_path):
    with pytest.raises(DataError, match=r"no SSv2 label map \(looked for labels\.json and "
                                        r"something-something-v2-labels\.json\)"):
        from_ssv2(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps(SSV2_LABELS))
    with pytest.raises(DataError, match=r"no SSv2 split files \(looked for something-something-v2-train\.json, "
                                        r"train\.json, something-something-v2-validation\.json, validation\.json, "
                                        r"something-something-v2-test\.json, test\.json\)"):
        from_ssv2(tmp_path)
    (tmp_path / "train.json").write_text("[{")
    with pytest.raises(DataError, match=r"train\.json: not valid JSON"):
        from_ssv2(tmp_path)


def test_an_ssv2_json_file_under_another_name_is_said_not_read(tmp_path, caplog):
    """A validation file named val.json beside train.json: before, passed over without a word (no val list written);
    now every JSON file of the folder the reader knows no name of is named in a warning with the names split files
    are read under. The other naming of a file read (short-name links beside the release's files, a second label
    map) and mme lists' own classes.json and check.json (--out the annotation folder) are not: before, each was
    said not read, a split file told to be renamed to a name it had."""
    (tmp_path / "labels.json").write_text(json.dumps(SSV2_LABELS))
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(SSV2_LABELS))  # a second map
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps(SSV2_SPLITS["train"]))
    (tmp_path / "train.json").symlink_to("something-something-v2-train.json")  # the short name other tools expect
    (tmp_path / "val.json").write_text(json.dumps(SSV2_SPLITS["validation"]))
    (tmp_path / "check.json").write_text("{}")  # mme lists --check's report
    (tmp_path / "._train.json").write_bytes(b"\0\5\26\7")  # a Mac's companion: not an annotation file
    (tmp_path / "notes.txt").write_text("not JSON")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_ssv2(tmp_path)[0] == {"train": SSV2_EXPECTED["train"]}
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: val.json not read: SSv2 split files are read under the names something-something-v2-train.json, "
        "train.json, something-something-v2-validation.json, validation.json, something-something-v2-test.json, "
        "test.json; rename a split file to one of them"]
    (tmp_path / "val.json").rename(tmp_path / "validation.json")
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        for _ in range(2):  # the second reads the folder holding the classes.json the first wrote
            build_lists("ssv2", tmp_path, tmp_path)
    assert (tmp_path / "classes.json").is_file()
    assert read_list(tmp_path / "val.txt")[0] == SSV2_EXPECTED["val"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_ssv2_label_map_keeping_the_templates_brackets_is_read(tmp_path):
    """A labels.json written from the templates, keeping '[something]': before, every video refused ('template
    ... is not in labels.json'); its keys are now looked up without the brackets, as the templates are, and two
    keys that are one template so are one line naming both."""
    (tmp_path / "labels.json").write_text(json.dumps({"Approaching [something] with your camera": "0",
                                                      "Putting [something] on [something]": "1"}))
    for split, items in SSV2_SPLITS.items():
        (tmp_path / f"{split}.json").write_text(json.dumps(items))
    assert from_ssv2(tmp_path) == (SSV2_EXPECTED, ["Approaching [something] with your camera",
                                                   "Putting [something] on [something]"])
    (tmp_path / "labels.json").write_text(json.dumps({"Putting something on something": 0,
                                                      "Putting [something] on [something]": 1}))
    with pytest.raises(DataError, match=re.escape(
            f"{tmp_path / 'labels.json'}: labels 'Putting something on something' and 'Putting [something] on "
            f"[something]' are one template without its '[something]' brackets; a template names one class")):
        from_ssv2(tmp_path)


def test_an_ssv2_split_mixing_items_with_and_without_a_template_is_refused(tmp_path, caplog):
    """Before: a labelled list with unlabelled lines (which its own reader rejects), without a word; a train or
    validation file without any template is written unlabelled, with a warning."""
    (tmp_path / "labels.json").write_text(json.dumps(SSV2_LABELS))
    (tmp_path / "train.json").write_text(json.dumps([SSV2_SPLITS["train"][0], {"id": "555"}]))
    with pytest.raises(DataError, match=r"train\.json: item 1 \(video 555\) has no template, unlike item 0"):
        from_ssv2(tmp_path)
    (tmp_path / "train.json").write_text(json.dumps([{"id": "555"}]))
    (tmp_path / "test.json").write_text(json.dumps(SSV2_SPLITS["test"]))
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert from_ssv2(tmp_path)[0] == {"train": [ListEntry("555.webm")], "test": [ListEntry("1420.webm")]}
    assert "train.json: no video has a template; its train list is written without labels" in caplog.text
    assert "test.json" not in caplog.text


@pytest.mark.parametrize("variant", ["crlf", "bom"])
def test_text_annotations_saved_on_windows(tmp_path, variant):
    write_text(tmp_path / "classInd.txt", "1 ApplyEyeMakeup\n2 YoYo\n", variant)
    write_text(tmp_path / "trainlist01.txt", "YoYo/v_YoYo_g25_c05.avi 2\n", variant)
    write_text(tmp_path / "testlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n", variant)
    splits, classes = from_ucf101(tmp_path, 1)
    assert classes == ["ApplyEyeMakeup", "YoYo"]
    assert splits == {"train": [ListEntry("YoYo/v_YoYo_g25_c05.avi", 1)],
                      "test": [ListEntry("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 0)]}
    write_text(tmp_path / "jump_test_split1.txt", "a.avi 1 \nb.avi 2 \n", variant)
    assert from_hmdb51(tmp_path, 1)[0] == {"train": [ListEntry("jump/a.avi", 0)], "test": [ListEntry("jump/b.avi", 0)]}
    write_text(tmp_path / "validate.csv", "label,youtube_id,time_start,time_end\nabseiling,0wR5jVB-WPk,417,427\n",
               variant)  # no split column: the file's name says it, under any of its spellings
    assert from_kinetics([tmp_path / "validate.csv"])[0] == {
        "val": [ListEntry("val/abseiling/0wR5jVB-WPk_000417_000427.mp4", 0)]}
    write_text(tmp_path / "list.txt", "my videos/a.mp4 3\nb.mp4 0\n", variant)
    assert read_list(tmp_path / "list.txt")[0] == [ListEntry("my videos/a.mp4", 3), ListEntry("b.mp4", 0)]


@pytest.mark.parametrize("variant", ["plain", "crlf", "cr", "bom"])
def test_a_list_or_annotation_file_that_is_not_utf8_is_named_with_the_line_and_offset_of_its_byte(tmp_path,
                                                                                                  variant):
    """A list, Kinetics CSV, UCF101 split file or SSv2 JSON saved in Latin-1 ('café' as the byte 0xe9): one line
    naming the file, the line and the byte's offset in the file, and to save it as UTF-8 (before: the decoder's
    position alone, for a CSV past its first 8 KiB one in the decoder's buffer, not the file's, and a list said
    only 'cannot read it'). Its lines end at \\n, \\r\\n or \\r alone (counted at \\n only, a file of \\r ends was all
    line 1)."""
    def latin1(path, lines):
        text = "".join(line + {"plain": "\n", "cr": "\r"}.get(variant, "\r\n") for line in lines)
        path.write_bytes((b"\xef\xbb\xbf" if variant == "bom" else b"") + text.encode("latin-1"))
        return path.read_bytes().find(b"\xe9")

    def said(path, line, offset):
        return (f"{path}: not UTF-8 text (line {line} holds the byte 0xe9, at offset {offset} of the file); save it "
                "as UTF-8")

    at = latin1(tmp_path / "train.txt", [f"abseiling/v{i}.mp4 0" for i in range(600)] + ["café/x.mp4 1"])
    with pytest.raises(DataError) as refused:
        read_list(tmp_path / "train.txt")
    assert str(refused.value) == said(f"list file {tmp_path / 'train.txt'}", 601, at) and at > 12000
    at = latin1(tmp_path / "train.csv", ["label,youtube_id,time_start,time_end,split"]
                + [f"abseiling,yt{i:08d}a,0,10,train" for i in range(600)] + ["café,ytx,0,10,train"])
    with pytest.raises(DataError) as refused:
        from_kinetics([tmp_path / "train.csv"])
    assert str(refused.value) == said(tmp_path / "train.csv", 602, at) and at > 12000
    ucf = tmp_path / "ucf"
    ucf.mkdir()
    latin1(ucf / "classInd.txt", ["1 Archery", "2 Cafe"])
    at = latin1(ucf / "trainlist01.txt", ["Archery/v_Archery_g01_c01.avi 1", "Cafe/v_café_g01_c01.avi 2"])
    with pytest.raises(DataError) as refused:
        from_ucf101(ucf, 1)
    assert str(refused.value) == said(ucf / "trainlist01.txt", 2, at)
    ssv2 = tmp_path / "ssv2"
    ssv2.mkdir()
    (ssv2 / "labels.json").write_text(json.dumps(SSV2_LABELS))
    at = latin1(ssv2 / "train.json", ['[{"id": "1",', ' "template": "Putting [something] on [something]",',
                                      ' "label": "putting a café cup on a table"}]'])
    with pytest.raises(DataError) as refused:
        from_ssv2(ssv2)
    assert str(refused.value) == said(ssv2 / "train.json", 3, at)
    at = latin1(tmp_path / "classes.json", ['["abseiling",', ' "café"]'])
    with pytest.raises(DataError) as refused:
        read_classes(tmp_path / "classes.json")
    assert str(refused.value) == said(f"classes {tmp_path / 'classes.json'}", 2, at)


def test_split_names():
    assert [split_name(n) for n in ("train", "validate", "validation", "val", "kinetics_400_val", "Test", "extra",
                                    "kinetics_600_holdout_test")] \
        == ["train", "val", "val", "val", "val", "test", "extra", "holdout"]  # K600's holdout is not its test


def test_a_kinetics_csv_without_a_split_column_is_a_split_by_a_whole_word_of_its_name(tmp_path):
    """A CSV without a split column took its split from any 'train', 'val' or 'test' inside its name: its list of
    k400_subset_latest.csv was written as test.txt ('latest'), of interval.csv as val.txt, of retrain.csv as
    train.txt. A split is named by a whole word, words parted by what is not a letter (a digit, punctuation, a
    space) or a capital after a small letter: a browser's second download 'train(1)', 'k400train', 'val1',
    'train+val', 'KineticsVal' name their splits as every published naming does."""
    names = {"k400_subset_latest": "k400_subset_latest", "interval": "interval", "contest": "contest",
             "retrain": "retrain", "protest_clips": "protest_clips", "kinetics_400_train": "train",
             "kinetics-700-2020-validate": "val", "k400.valid": "val", "Training": "train", "k400 testing": "test",
             "test": "test", "validate": "val", "kinetics_600_holdout_test": "holdout", "train(1)": "train",
             "kinetics400val": "val", "k400train": "train", "val1": "val", "train2": "train",
             "Kinetics400Val": "val", "train+val": "train", "KineticsVal": "val", "k400_TrainVal": "train",
             "HoldoutTest": "holdout"}
    assert {name: split_name(name) for name in names} == names
    header = "label,youtube_id,time_start,time_end\n"
    (tmp_path / "k400_subset_latest.csv").write_text(header + "abseiling,ytaaaaaaaaa,0,10\n")
    (tmp_path / "kinetics_400_train.csv").write_text(header + "abseiling,ytbbbbbbbbb,0,10\n")
    assert from_kinetics([tmp_path / "k400_subset_latest.csv", tmp_path / "kinetics_400_train.csv"])[0] == {
        "k400_subset_latest": [ListEntry("k400_subset_latest/abseiling/ytaaaaaaaaa_000000_000010.mp4", 0)],
        "train": [ListEntry("train/abseiling/ytbbbbbbbbb_000000_000010.mp4", 0)]}


def test_cli_writes_lists_and_label_map(tmp_path, caplog, refuse_removal):
    (tmp_path / "classInd.txt").write_text("1 A\n2 B\n")
    (tmp_path / "trainlist01.txt").write_text("A/a1.avi 1\nB/b1.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("B/b2.avi\n")
    (tmp_path / "videos" / "A").mkdir(parents=True)
    (tmp_path / "videos" / "A" / "a1.avi").write_bytes(b"x")
    out = tmp_path / "lists"
    assert cli_main(["lists", "ucf101", str(tmp_path), "--out", str(out)]) == 0
    assert (out / "train.txt").read_text() == "A/a1.avi 0\nB/b1.avi 1\n"
    assert (out / "test.txt").read_text() == "B/b2.avi 1\n"
    assert json.loads((out / "classes.json").read_text()) == ["A", "B"]
    # with --skip-missing: a split with no video found is not written (its list of the build before is removed,
    # or a later run would read it; one that cannot be is one line, before any write), and a class with none is named
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with refuse_removal(out / "test.txt", errno.EPERM), pytest.raises(MMEError) as raised:
        build_lists("ucf101", tmp_path, out, video_root=tmp_path / "videos", skip_missing=True)
    assert str(raised.value) == (f"{out / 'test.txt'}: could not be removed (Operation not permitted); the test list "
                                 "of an earlier build, which this build has no videos for; nothing of this build is "
                                 "written: make it removable, or choose another --out")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with caplog.at_level("WARNING"):
        written, _ = build_lists("ucf101", tmp_path, out, video_root=tmp_path / "videos", skip_missing=True)
    assert set(written) == {"train"} and written["train"].read_text() == "A/a1.avi 0\n"
    assert not (out / "test.txt").exists() and "removed" in caplog.text
    assert "train: no video of 1 class(es) found" in caplog.text and "['B']" in caplog.text
    assert "test: none of its 1 videos is under" in caplog.text
    with pytest.raises(DataError, match="no listed video is under"):  # a wrong video root
        build_lists("ucf101", tmp_path, out, video_root=tmp_path, skip_missing=True)
    assert cli_main(["lists", "ssv2", str(tmp_path / "nothing"), "--out", str(out)]) == 1
    (tmp_path / "file").write_text("x")  # an output that cannot be a folder: refused before any work
    assert cli_main(["lists", "ucf101", str(tmp_path), "--out", str(tmp_path / "file")]) == 1


def test_skip_missing_suggests_path_format_only_where_it_names_the_files(tmp_path, caplog):
    """A class with no video found: the hint of --path-format ({label_tv}) is for kinetics and ssv2 lists alone
    (before: given for ucf101, hmdb51 and folder lists too, where that option is ignored)."""
    (tmp_path / "classInd.txt").write_text("1 A\n2 B\n")
    (tmp_path / "trainlist01.txt").write_text("A/a1.avi 1\nB/b1.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("A/a1.avi\n")
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "A").mkdir()
    for video in ("A/a1.avi", "train/a/k1_000001_000011.mp4"):
        (tmp_path / video).write_bytes(b"x")
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end\na,k1,1,11\nb,k2,1,11\n")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        build_lists("ucf101", tmp_path, tmp_path / "u", video_root=tmp_path, skip_missing=True)
        assert "train: no video of 1 class(es) found" in caplog.text and "--path-format" not in caplog.text
        with pytest.raises(DataError, match=r"paths start from\?$"):
            build_lists("ucf101", tmp_path, tmp_path / "u", video_root=tmp_path / "train", skip_missing=True)
        build_lists("kinetics", tmp_path / "train.csv", tmp_path / "k", video_root=tmp_path, skip_missing=True)
    assert "(is --path-format the folders' naming? {label_tv} is torchvision's)" in caplog.text


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A folder of class sub-folders: a good video, a short one, an Xvid AVI with packed B-frames (exact only
    when read sequentially), a text file named like a video."""
    root = tmp_path_factory.mktemp("videos")
    frames, _ = affine_video(30, 48, 64, dx=0.7, seed=1)
    (root / "a").mkdir()
    (root / "b").mkdir()
    write_video(root / "a" / "good.mp4", frames)
    write_video(root / "a" / "short.mp4", frames[:5])
    write_corpus_file(root / "b" / "packed.avi", frames, *CORPUS["mpeg4_packed_xvid.avi"])
    (root / "b" / "notes.mp4").write_text("not a video\n" * 20)
    return root


def test_check_reports_what_a_run_would_meet(videos, tmp_path, caplog):
    (tmp_path / "train.txt").write_text("a/good.mp4 0\na/short.mp4 0\nb/packed.avi 1\nb/notes.mp4 1\n"
                                        "b/gone.mp4 1\na/good.mp4 cat\n")
    with caplog.at_level(logging.WARNING, logger="mme"):
        report = check_lists([tmp_path / "train.txt"], videos, tmp_path / "check.json", min_frames=16)
    said = [r.getMessage() for r in caplog.records]  # on the console too
    unread = [m for m in said if m.startswith("a run cannot read")]
    assert len(unread) == 3, said  # each path and status said once
    assert unread[0] == (f"a run cannot read {tmp_path / 'train.txt'}:6: bad list line "
                         f"({report['problems'][0]['reason']})")
    assert unread[2] == f"a run cannot read {videos / 'b/gone.mp4'}: missing (no such file)"
    assert unread[1] == f"a run cannot read {report['problems'][3]['reason']}" and "unreadable (" in unread[1], said
    assert said[-1] == (  # what each role does with them (before: 'a run skips', though the tests score none of them)
        "pre-training and fine-tuning skip those of their training list (a bad line left out, a video replaced by "
        "another drawn in its place, counted against data.max_failure_fraction); the tests of a val or test list "
        "(fine-tuning's, task.eval_only's) and mme probe refuse a bad line before any work and report a video as "
        "failed, left out of their figures")
    assert json.loads((tmp_path / "check.json").read_text()) == report
    assert report["videos"] == 5 and report["failing"] == 3
    assert report["counts"] == {"ok": 1, "short": 1, "suspicious": 1, "unreadable": 1, "missing": 1,
                                "bad list line": 1}
    problems = {p["path"].replace(str(videos), "ROOT"): (p["status"], p.get("frames")) for p in report["problems"]}
    assert problems == {f"{tmp_path / 'train.txt'}:6": ("bad list line", None), "ROOT/a/short.mp4": ("short", 5),
                        "ROOT/b/packed.avi": ("suspicious", 30), "ROOT/b/notes.mp4": ("unreadable", 0),
                        "ROOT/b/gone.mp4": ("missing", 0)}
    packed = next(p for p in report["problems"] if p["path"].endswith("packed.avi"))
    assert (packed["seeking"], packed["packets"]) == ("sequential", 30)
    assert packed["reason"].startswith("the 30 decoded frames do not carry the 30 packets' timestamps in order")
    assert report["repeats"] == {"listed_twice": [], "labels_differ": [], "in_several_lists": []}
    out = tmp_path / "cli.json"  # the command, with workers: the same report, exit status 1 (a run cannot read 2)
    assert cli_main(["check", str(tmp_path / "train.txt"), "--root", str(videos), "--out", str(out),
                     "--workers", "2"]) == 1
    assert json.loads(out.read_text())["problems"] == report["problems"]


def test_a_second_check_into_a_report_a_check_is_writing_is_refused_naming_it(tmp_path, capsys):
    """Two checks given one --out at once (a job array's tasks) both ran, and the last to end replaced the other's
    report without a word."""
    (tmp_path / "a.txt").write_text("gone.mp4 0\n")
    out = tmp_path / "reports" / "check.json"
    check = ["check", str(tmp_path / "a.txt"), "--root", str(tmp_path), "--out", str(out)]
    assert cli_main(check) == 1  # (a run cannot read its video)
    assert sorted(p.name for p in out.parent.iterdir()) == ["check.json"]  # its lock is gone with it
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom mme.data import lists\n"
                               "def slow(*args):\n    print(flush=True)\n    time.sleep(60)\n"
                               "lists.check_video = slow\n"
                               f"lists.check_lists([{str(tmp_path / 'a.txt')!r}], {str(tmp_path)!r}, {str(out)!r})\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()  # it is checking its video
        out.unlink()
        assert cli_main(check) == 1
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"mme check: error: --out '{out}' is being written by another check (PID {holder.pid} on " in err, err
    assert err.rstrip().endswith("); wait for it to end or choose another --out"), err
    assert not out.exists()  # the refused check wrote nothing
    assert sorted(p.name for p in out.parent.iterdir()) == [".check.json.lock"]  # the killed holder's, left
    assert cli_main(check) == 1  # the holder killed: its lock is let go with it
    assert json.loads(out.read_text())["counts"] == {"missing": 1}
    assert sorted(p.name for p in out.parent.iterdir()) == ["check.json"]  # the leftover lock removed at its end


def test_a_check_into_a_report_whose_name_nearly_fills_a_file_name_holds_a_shortened_lock(tmp_path, capsys):
    """A report named in 252 bytes (of ext4's 255) was refused, 'File name too long': its lock, .<name>.lock, took 6
    bytes more. Its name is shortened as a temporary file's is, the same in every check into that report."""
    (tmp_path / "a.txt").write_text("gone.mp4 0\n")
    out = tmp_path / "reports" / f"{'r' * 247}.json"
    out.parent.mkdir()
    check = ["check", str(tmp_path / "a.txt"), "--root", str(tmp_path), "--out", str(out)]
    with lists._report_held(out):  # (a check into that report, played by this process)
        [lock] = out.parent.iterdir()
        assert lock.name.startswith(f".{'r' * 200}") and lock.name.endswith(".lock") and len(lock.name) == 255
        assert cli_main(check) == 1
        assert f"--out '{out}' is being written by another check (PID {os.getpid()} on " in capsys.readouterr().err
    assert cli_main(check) == 1  # (a run cannot read its video)
    assert json.loads(out.read_text())["counts"] == {"missing": 1}
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # its lock removed at its end


def test_a_check_refused_by_a_holder_of_another_users_lock_file_does_not_name_its_stale_line_as_the_holder(
        tmp_path, capsys):
    """Another user's check killed in a folder all users write, sticky, left its lock file (0644), which a check of
    this user's takes read-only, unable to write its line there: a second check was refused naming the killed
    check, its line, as the holder."""
    (tmp_path / "a.txt").write_text("gone.mp4 0\n")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    out = shared / "check.json"
    lock = shared / ".check.json.lock"
    lock.write_text("PID 4242 on node7, since 2026-01-02 03:04:05\n")  # the killed check's
    lock.chmod(0o644)
    os.chown(lock, 65534, 65534)
    holder = os.open(lock, os.O_RDONLY)  # this user's check holding it, unable to write its line (played)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert cli_main(["check", str(tmp_path / "a.txt"), "--root", str(tmp_path), "--out", str(out)]) == 1
    finally:
        os.close(holder)
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mme check: error: --out '{out}' is being written by another check (held by another process; the lock file "
        "is another user's (uid 65534), where a holder of another user cannot write its line: the line there (PID "
        "4242 on node7, since 2026-01-02 03:04:05) may be an earlier holder's, which may have ended); wait for it to "
        "end or choose another --out")
    assert not out.exists()


def test_lists_check_into_an_out_whose_report_a_check_is_writing_is_refused_before_any_list_is_written(tmp_path,
                                                                                                      capsys):
    """mme lists --check into an --out whose check.json a check was writing was refused only once it had replaced
    that check's lists with its own: the holder's report then described lists no longer there."""
    for folder, video in (("v1", "cat/a.mp4"), ("v2", "dog/b.mp4")):
        (tmp_path / folder / video).parent.mkdir(parents=True)
        (tmp_path / folder / video).touch()
    out = tmp_path / "L"
    assert cli_main(["lists", "folder", str(tmp_path / "v1"), "--out", str(out)]) == 0
    before = {p.name: p.read_text() for p in out.iterdir()}
    with lists._report_held(out / "check.json"):  # (a check of these lists, played by this process)
        assert cli_main(["lists", "folder", str(tmp_path / "v2"), "--out", str(out), "--check"]) == 1
    assert f"mme lists: error: --out {out}: its check.json is being written by another check (PID {os.getpid()} " \
           f"on " in capsys.readouterr().err
    assert {p.name: p.read_text() for p in out.iterdir()} == before  # its lists as they were, the lock gone


def test_check_shows_its_progress_and_the_problems_so_far(videos, tmp_path, capsys, caplog):
    """mme check and mme lists --check said nothing between 'checking N videos' and the summary (hours on a real
    dataset); they draw mme extract's progress bar now, the problems so far in its postfix, and say what they do
    before finding each entry's file (a minute at 240k lines)."""
    (tmp_path / "train.txt").write_text("a/good.mp4 0\na/short.mp4 0\nb/gone.mp4 1\n")
    with caplog.at_level(logging.INFO, logger="mme.data.lists"):
        report = check_lists([tmp_path / "train.txt"], videos, tmp_path / "check.json")
    assert report["counts"] == {"ok": 1, "short": 1, "missing": 1}
    bar = capsys.readouterr().err.split("\r")[-1]
    assert bar.startswith("check: 100%") and "3/3 [" in bar and bar.rstrip().endswith("problems=2]"), bar
    said = [r.getMessage() for r in caplog.records]
    assert said[:2] == [f"checking the 3 entries of {tmp_path / 'train.txt'}: finding the file each names",
                        f"checking 3 videos of {tmp_path / 'train.txt'} with 1 worker"], said


@pytest.mark.parametrize("stop", ["Ctrl-C", "out of memory"])
def test_a_check_stopped_part_way_writes_the_report_of_the_videos_it_checked(videos, tmp_path, monkeypatch, stop):
    """A check stopped (Ctrl-C, SIGTERM) said 'what was written is kept' and wrote no report: every result was lost.
    It writes a partial report now, the videos checked in its counts and problems, the others listed as unchecked.
    FFmpeg out of memory on a video was that video's 'unreadable'; it stops the check as the machine's failure."""
    from mme.data import pyav_reader

    real = pyav_reader.open_container

    def stopping(path, **options):
        if path.endswith("short.mp4"):
            if stop == "Ctrl-C":
                raise KeyboardInterrupt
            raise ffmpeg_out_of_memory()
        return real(path, **options)

    monkeypatch.setattr(pyav_reader, "open_container", stopping)
    (tmp_path / "train.txt").write_text("b/notes.mp4 0\na/good.mp4 0\na/short.mp4 0\nb/gone.mp4 1\n")
    with pytest.raises(KeyboardInterrupt if stop == "Ctrl-C" else OutOfMemory):
        check_lists([tmp_path / "train.txt"], videos, tmp_path / "check.json")
    report = json.loads((tmp_path / "check.json").read_text())
    assert (report["videos"], report["counts"], report["failing"]) == (4, {"unreadable": 1, "ok": 1}, 1)
    assert [p["path"] for p in report["problems"]] == [str(videos / "b" / "notes.mp4")]
    assert report["unchecked"] == [str(videos / "a" / "short.mp4"), str(videos / "b" / "gone.mp4")]
    assert report["partial"] == "interrupted" if stop == "Ctrl-C" else re.fullmatch(
        r".*short\.mp4: out of memory while reading it \(.*\): the machine's memory ran short, the video is not at "
        "fault", report["partial"])
    assert lists.is_check_report(tmp_path / "check.json")  # (a rerun replaces it)


def test_a_check_stopped_before_any_video_leaves_the_earlier_report(videos, tmp_path, monkeypatch):
    """A check stopped before it had checked a video (Ctrl-C in its first second; its --workers refused) replaced
    the complete report of an earlier check with a 'partial' one of none: with nothing checked, nothing is written."""
    from mme.data import pyav_reader

    (tmp_path / "train.txt").write_text("a/good.mp4 0\na/short.mp4 0\n")
    check_lists([tmp_path / "train.txt"], videos, tmp_path / "check.json")
    before = (tmp_path / "check.json").read_text()

    def interrupted(path, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(pyav_reader, "open_container", interrupted)
    with pytest.raises(KeyboardInterrupt):
        check_lists([tmp_path / "train.txt"], videos, tmp_path / "check.json")
    assert (tmp_path / "check.json").read_text() == before and "partial" not in json.loads(before)


def test_check_decodes_with_the_threads_a_run_decodes_with(videos, tmp_path, monkeypatch):
    """A damaged or cut file can decode differently with other decoder threads: the check opened every video with
    FFmpeg's automatic threads where a run uses ``data.decode_threads`` (1 by default). It uses the run's now."""
    import mme.data.video as video

    opened, open_video = [], video.open_video
    monkeypatch.setattr(video, "open_video", lambda *a, **k: opened.append(k["threads"]) or open_video(*a, **k))
    (tmp_path / "train.txt").write_text("a/good.mp4 0\n")
    assert check_lists([tmp_path / "train.txt"], videos, tmp_path / "check.json")["decode_threads"] == 1
    assert cli_main(["check", str(tmp_path / "train.txt"), "--root", str(videos), "--out",
                     str(tmp_path / "c.json"), "--decode-threads", "3"]) == 0
    assert opened == [1, 3] and json.loads((tmp_path / "c.json").read_text())["decode_threads"] == 3


def _list_beside_its_videos(videos, folder, lines: str, monkeypatch) -> None:
    """``folder/train.txt`` of ``lines`` beside a copy of ``a/good.mp4``, the working folder its parent's: a list
    checked without --root, whose relative paths start in the working folder."""
    (folder / "a").mkdir(parents=True)
    shutil.copy(videos / "a" / "good.mp4", folder / "a" / "good.mp4")
    (folder / "train.txt").write_text(lines)
    monkeypatch.chdir(folder.parent)


def test_check_says_where_relative_paths_start_when_the_lists_folder_holds_its_videos(videos, tmp_path,
                                                                                      monkeypatch, caplog):
    """A list beside its videos checked without --root reported every one 'missing (no such file)', with no word
    of where relative paths start."""
    _list_beside_its_videos(videos, tmp_path / "v", "a/good.mp4 0\na/gone.mp4 0\n", monkeypatch)
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert check_lists(["v/train.txt"], "", tmp_path / "c.json")["counts"] == {"missing": 2}
    assert (f"v/train.txt: none of its 2 videos is under the working folder {tmp_path}, where its relative paths "
            f"start (--root); the list's own folder holds them: give --root {tmp_path / 'v'}") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert check_lists(["v/train.txt"], "v", tmp_path / "c.json")["counts"] == {"ok": 1, "missing": 1}
    assert "own folder" not in caplog.text


def test_check_advises_a_root_whose_name_has_a_space_quoted_for_the_shell(videos, tmp_path, monkeypatch, caplog):
    """The advice "give --root DIR" was not quoted: a list's folder named with a space ('my videos') pasted into a
    shell gave --root the part before the space, and the command failed. It is quoted for the shell
    (command_option), and the root it gives finds the videos."""
    import shlex

    _list_beside_its_videos(videos, tmp_path / "my videos", "a/good.mp4 0\n", monkeypatch)
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert check_lists(["my videos/train.txt"], "", tmp_path / "c.json")["counts"] == {"missing": 1}
    said = [r.getMessage() for r in caplog.records if "own folder holds them" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith(f"give --root '{tmp_path / 'my videos'}'"), said
    flag, root = shlex.split(said[0].split("give ")[-1])
    assert flag == "--root" and check_lists(["my videos/train.txt"], root, tmp_path / "c.json")["counts"] == {"ok": 1}


def test_lists_check_after_writing(videos, tmp_path, capsys):
    for rel in ("a/good.mp4", "a/short.mp4", "b/packed.avi"):  # only videos a run can read
        (tmp_path / "v" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(videos / rel, tmp_path / "v" / rel)
    assert cli_main(["lists", "folder", str(tmp_path / "v"), "--out", str(tmp_path / "lists"), "--check"]) == 0
    report = json.loads((tmp_path / "lists" / "check.json").read_text())
    assert report["counts"] == {"ok": 1, "short": 1, "suspicious": 1} and report["failing"] == 0
    (tmp_path / "classInd.txt").write_text("1 a\n")
    (tmp_path / "trainlist01.txt").write_text("a/good.mp4 1\n")
    (tmp_path / "testlist01.txt").write_text("a/good.mp4\n")
    assert cli_main(["lists", "ucf101", str(tmp_path), "--out", str(tmp_path / "l2"), "--check"]) == 1
    assert "give the folder they are in with --root" in capsys.readouterr().err
    assert not (tmp_path / "l2").exists()  # refused before any list is written (they were, then the error)
    assert cli_main(["lists", "ucf101", str(tmp_path), "--out", str(tmp_path / "l2"), "--check",
                     "--root", str(videos)]) == 0


def test_lists_check_judges_its_reports_place_once(videos, tmp_path, monkeypatch):
    """`mme lists --check` judged its check.json's place before writing its lists, then again in the check."""
    from mme.data import lists

    (tmp_path / "v" / "a").mkdir(parents=True)
    shutil.copy(videos / "a/good.mp4", tmp_path / "v" / "a" / "good.mp4")
    judged, judge = [], lists._check_replaced

    def counted(out, *args, **kwargs):
        judged.append(out)
        judge(out, *args, **kwargs)

    monkeypatch.setattr(lists, "_check_replaced", counted)
    assert cli_main(["lists", "folder", str(tmp_path / "v"), "--out", str(tmp_path / "lists"), "--check"]) == 0
    assert judged == [tmp_path / "lists" / "check.json"]
    assert json.loads((tmp_path / "lists" / "check.json").read_text())["counts"] == {"ok": 1}


def test_check_names_videos_listed_more_than_once_and_refuses_a_bad_out_first(videos, tmp_path, caplog):
    """Repeated videos are checked once, and the report says which: twice in a list, with two labels, or in two
    lists (a video in both train and test). An --out that is a folder is refused before any video is decoded."""
    (tmp_path / "train.txt").write_text("a/good.mp4 0\na/good.mp4 1\nb/packed.avi 1\n")
    (tmp_path / "test.txt").write_text("./b//packed.avi 1\n")  # the same file spelled otherwise
    with caplog.at_level(logging.WARNING, logger="mme.data.lists"):
        report = check_lists([tmp_path / "train.txt", tmp_path / "test.txt"], videos, tmp_path / "check.json")
    good, packed = str(videos / "a" / "good.mp4"), str(videos / "b" / "packed.avi")
    assert report["videos"] == 2
    assert report["repeats"] == {"listed_twice": [good], "labels_differ": [good], "in_several_lists": [packed]}
    said = [r.getMessage() for r in caplog.records if ", e.g. " in r.getMessage()]  # (was "1 video labels differ")
    assert said == [f"1 video listed twice, e.g. {good}", f"1 video whose labels differ, e.g. {good}",
                    f"1 video in several lists, e.g. {packed}"], said
    (tmp_path / "folder").mkdir()
    with pytest.raises(Exception, match="--out"):
        check_lists([tmp_path / "train.txt"], videos, tmp_path / "folder")


def test_check_out_replaces_a_check_report_a_users_file_with_overwrite_and_never_an_input(videos, tmp_path,
                                                                                           capsys):
    """`mme check --out F` replaced any file F with its report: the list it checked, another list, a listed video, a
    user's notes. An input (a list, a listed video, however reached: a link, a hard link) is refused in one line, a
    file that is not a check report unless --overwrite; a check report is replaced as before."""
    (tmp_path / "v").mkdir()
    shutil.copy(videos / "a" / "good.mp4", tmp_path / "v" / "good.mp4")
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("v/good.mp4 0\n")
    val.write_text("v/good.mp4 0\n")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "v" / "good.mp4")
    os.link(tmp_path / "v" / "good.mp4", tmp_path / "hard.mp4")
    (tmp_path / "notes.json").write_text('{"my": "notes"}\n')
    held = {p: p.read_bytes() for p in (train, val, tmp_path / "v" / "good.mp4", tmp_path / "notes.json")}
    for out, said in [(train, f"is the list {train}, which this check reads; write the report elsewhere"),
                      (tmp_path / "link.mp4", f"is {tmp_path / 'v/good.mp4'}, a video the list {train} names"),
                      (tmp_path / "hard.mp4", f"is {tmp_path / 'v/good.mp4'}, a video the list {train} names"),
                      (val, "already holds a file mme check did not write (not a check report); give --overwrite to "
                            "replace it, or another --out"),
                      (tmp_path / "notes.json", "already holds a file mme check did not write")]:
        assert cli_main(["check", str(train), "--root", str(tmp_path), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"mme check: error: --out {out}: {said}") and len(err.splitlines()) == 1, err
    for out in (train, tmp_path / "link.mp4"):  # an input, with --overwrite too
        with pytest.raises(ConfigError, match="write the report elsewhere"):
            check_lists([train], tmp_path, out, overwrite=True)
    assert {p: p.read_bytes() for p in held} == held
    notes = tmp_path / "notes.json"
    assert cli_main(["check", str(train), "--root", str(tmp_path), "--out", str(notes), "--overwrite"]) == 0
    assert json.loads(notes.read_text())["counts"] == {"ok": 1}
    (tmp_path / "v" / "good.mp4").unlink()  # a check report is replaced without --overwrite
    assert check_lists([train], tmp_path, notes)["counts"] == {"missing": 1}
    assert json.loads(notes.read_text())["counts"] == {"missing": 1}
    (tmp_path / "lists").mkdir()  # mme lists --check: a check.json of the user's refused before any list is written
    (tmp_path / "lists" / "check.json").write_text("mine\n")
    shutil.copytree(videos / "a", tmp_path / "folder" / "a")
    assert cli_main(["lists", "folder", str(tmp_path / "folder"), "--out", str(tmp_path / "lists"), "--check"]) == 1
    assert "its check.json already holds a file mme check did not write" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "lists").iterdir()) == ["check.json"]


def test_lists_check_replaces_a_users_check_json_with_overwrite_as_check_out_does(videos, tmp_path, capsys, caplog):
    """`mme lists --check` refused a check.json of the user's in its --out with no way past it but moving the file:
    it had no --overwrite, which `mme check --out` has. It takes the flag now, with the same refusal and message;
    without --check, the flag is said to be for it."""
    shutil.copytree(videos / "a", tmp_path / "folder" / "a")
    out = tmp_path / "lists"
    out.mkdir()
    (out / "check.json").write_text("mine\n")
    args = ["lists", "folder", str(tmp_path / "folder"), "--out", str(out), "--check"]
    assert cli_main(args) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mme lists: error: --out {out}: its check.json already holds a file mme check did not write (not a check "
        f"report); give --overwrite to replace it, or another --out")
    assert sorted(p.name for p in out.iterdir()) == ["check.json"] and (out / "check.json").read_text() == "mine\n"
    assert cli_main([*args, "--overwrite"]) == 0
    report = json.loads((out / "check.json").read_text())
    assert report["counts"] == {"ok": 1, "short": 1} and report["lists"] == [str(out / "all.txt")]
    assert read_list(out / "all.txt")[0] == [ListEntry("a/good.mp4", 0), ListEntry("a/short.mp4", 0)]
    assert cli_main([*args[:-1], "--overwrite"]) == 0
    assert "--overwrite is for --check (a check.json in --out that is not a check report)" in caplog.text
    (out / "check.json").unlink()  # a link to a video the build lists: refused before any list, --overwrite or not
    (out / "check.json").hardlink_to(tmp_path / "folder" / "a" / "good.mp4")
    (out / "all.txt").write_text("earlier/x.mp4 0\n")
    for given in (args, [*args, "--overwrite"]):
        assert cli_main(given) == 1
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"mme lists: error: --out {out}: its check.json is {tmp_path / 'folder' / 'a' / 'good.mp4'}, a video the "
            f"list {out / 'all.txt'} names; write the report elsewhere")
        assert (out / "all.txt").read_text() == "earlier/x.mp4 0\n"


def test_an_out_that_is_a_pipe_or_a_link_to_one_is_refused_not_waited_on(videos, tmp_path):
    """`mme check --out X` hung for ever where X was a FIFO or a link to a pipe (/dev/stdout of a pipeline): the
    check of what X held read it; with --overwrite the report replaced the FIFO or the link with a file. Both are
    refused in one line, with or without --overwrite, and left as they were; so is a check.json of mme lists --check,
    before any list is written. Run in a child whose stdout is a pipe, with a timeout, so a hang fails."""
    import stat

    (tmp_path / "v").mkdir()
    shutil.copy(videos / "a" / "good.mp4", tmp_path / "v" / "good.mp4")
    (tmp_path / "train.txt").write_text("v/good.mp4 0\n")
    fifo, link = tmp_path / "fifo", tmp_path / "stdout"
    os.mkfifo(fifo)
    link.symlink_to("/proc/self/fd/1")
    shutil.copytree(videos / "a", tmp_path / "folder" / "a")
    (tmp_path / "lists").mkdir()
    os.mkfifo(tmp_path / "lists" / "check.json")
    check = ["check", str(tmp_path / "train.txt"), "--root", str(tmp_path), "--out"]
    cases = [check + [str(out), *more] for out in (fifo, link) for more in ([], ["--overwrite"])]
    cases += [["lists", "folder", str(tmp_path / "folder"), "--out", str(tmp_path / "lists"), "--check"]]
    proc = in_one_process(cases, timeout=30)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert [code for code, _, _ in proc.ran] == [1] * 5, proc.stderr[-2000:]
    said = "not a regular file (a pipe, terminal or device); give a file name"
    assert errors == [f"mme check: error: --out {out}: {said}" for out in (fifo, fifo, link, link)] + \
        [f"mme lists: error: --out {tmp_path / 'lists' / 'check.json'}: {said}"], proc.stderr[-2000:]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.readlink(link) == "/proc/self/fd/1"
    assert [p.name for p in (tmp_path / "lists").iterdir()] == ["check.json"]


def test_malformed_annotations_are_one_line_naming_the_file(tmp_path):
    """A folder without Kinetics CSVs, a Kinetics split that mixes labelled and unlabelled rows (a list its own
    reader rejects), and SSv2 lists that are not lists of videos: DataErrors naming the file (and row)."""
    (tmp_path / "k").mkdir()
    with pytest.raises(DataError, match="no Kinetics CSV"):
        build_lists("kinetics", tmp_path / "k", tmp_path / "out")
    (tmp_path / "k" / "TRAIN.CSV").write_text("label,youtube_id,time_start,time_end,split\n"
                                              "abseiling,aaa,0,10,train\n,bbb,0,10,train\n")
    with pytest.raises(DataError, match=r"TRAIN\.CSV:3: no label, where other rows of split 'train' have one"):
        build_lists("kinetics", tmp_path / "k", tmp_path / "out")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "labels.json").write_text(json.dumps(SSV2_LABELS))
    for bad, match in [({"a": 1}, "expected a JSON list of videos"), (["12"], "item 0 is not a video"),
                       ([{"template": "x"}], "item 0 is not a video"), ([{"id": "1", "template": None}], "item 0")]:
        (tmp_path / "s" / "train.json").write_text(json.dumps(bad))
        with pytest.raises(DataError, match=rf"train\.json: {match}"):
            from_ssv2(tmp_path / "s")
    (tmp_path / "s" / "train.json").write_text("[]")  # no videos: nothing to write
    with pytest.raises(DataError, match="lists no videos"):
        build_lists("ssv2", tmp_path / "s", tmp_path / "out")


def test_line_breaks_only_end_lines(tmp_path):
    """Only \\n, \\r\\n and \\r end a list line: U+2028 or U+0085 in a file name is part of it (before: the
    line was cut there, giving a bad line and a wrong video); a path the format cannot hold is refused."""
    write_list(tmp_path / "l.txt", [ListEntry("Cls/a\u2028b.mp4", 1), ListEntry("Cls/c\x85d.mp4", 0)])
    assert read_list(tmp_path / "l.txt") == ([ListEntry("Cls/a\u2028b.mp4", 1), ListEntry("Cls/c\x85d.mp4", 0)], [])
    (tmp_path / "m.txt").write_bytes(b"a.mp4 1\rb.mp4 0\r\n")
    assert read_list(tmp_path / "m.txt")[0] == [ListEntry("a.mp4", 1), ListEntry("b.mp4", 0)]
    for path in (" Lead/x.mp4", "a\nb.mp4"):
        with pytest.raises(DataError, match="cannot list"):
            write_list(tmp_path / "n.txt", [ListEntry(path, 0)])
    # a class folder named '# misc' (mme lists folder): its lines were read back as comments, its videos dropped
    write_list(tmp_path / "c.txt", [ListEntry("# misc/x.mp4", 0), ListEntry("#/y.mp4", 1), ListEntry("#z.mp4", 1)])
    assert read_list(tmp_path / "c.txt")[0] == [ListEntry("./# misc/x.mp4", 0), ListEntry("#/y.mp4", 1),
                                                ListEntry("#z.mp4", 1)]


def test_class_maps_as_published(tmp_path):
    """The label map of task.classes and --classes: a list, a {name: id} map, or SSv2's own labels.json, whose
    ids are strings."""
    from mme.data.lists import read_classes

    (tmp_path / "ssv2.json").write_text(json.dumps({"Pushing something": "1", "Approaching something": "0"}))
    assert read_classes(tmp_path / "ssv2.json") == ["Approaching something", "Pushing something"]
    # ids that are JSON's booleans were taken for 0 and 1 (Python's bool is an int): refused as any other non-id
    (tmp_path / "bools.json").write_text(json.dumps({"b": True, "a": False}))
    with pytest.raises(DataError, match=r"bools\.json: a \{name: id\} map needs the ids 0\.\.1, each once$"):
        read_classes(tmp_path / "bools.json")
    # a list holding what is not a name (null, a number, a bool, an object) was read through str(): classes named
    # 'None', '3', 'True', "{'a': 1}"; refused, naming the first
    for entry, said in ((None, "null"), (3, "3"), (True, "true"), ({"a": 1}, '{"a": 1}')):
        (tmp_path / "odd.json").write_text(json.dumps(["walk", entry, "run"]))
        with pytest.raises(DataError, match=rf"^task\.classes {re.escape(str(tmp_path / 'odd.json'))}: class 1 is "
                                            rf"{re.escape(said)}, not a name \(a JSON string\); class names are "
                                            r'strings, "3" for a class named 3$'):
            read_classes(tmp_path / "odd.json", "task.classes")


def test_a_list_entry_pickled_before_entries_were_slotted_loads_as_it_was(monkeypatch):
    """A ListEntry pickled before the class was slotted holds its ``__dict__``, which the slotted dataclass's own
    ``__setstate__`` read as its keys: ListEntry(path='path', label='label'). Both states load as pickled, on Python
    3.10 too (where the slotted dataclass put its own ``__setstate__`` over the class's)."""

    @dataclass(frozen=True)
    class Unslotted:  # the class as it was before it was slotted, pickled under its name
        path: str
        label: int | None = None
        line_no: int = field(default=0, compare=False, repr=False)

    Unslotted.__module__, Unslotted.__qualname__ = lists.__name__, "ListEntry"
    with monkeypatch.context() as m:
        m.setattr(lists, "ListEntry", Unslotted)
        pickled = pickle.dumps([Unslotted("videos/a.mp4", 3, 7), Unslotted("b.mp4")])
    loaded = pickle.loads(pickled)
    assert all(type(e) is lists.ListEntry for e in loaded)
    assert [(e.path, e.label, e.line_no) for e in loaded] == [("videos/a.mp4", 3, 7), ("b.mp4", None, 0)]
    again = pickle.loads(pickle.dumps(loaded))  # as this class pickles them
    assert [(e.path, e.label, e.line_no) for e in again] == [("videos/a.mp4", 3, 7), ("b.mp4", None, 0)]


def test_the_one_based_hint_reads_every_scored_list_whatever_their_order():
    """A 0-based training subset lacking class 0 (labels 1..3) beside a val list of 0..3 and a test list of 0..2:
    the hint that the training list looks 1-based took the top label of the last scored list, so it came with val
    before test and not after. It reads every scored list: here none."""
    from mme.data.lists import ListEntry, untrained_classes

    def entries(labels):
        return [ListEntry(f"v{i}.mp4", label) for i, label in enumerate(labels)]

    train, val, test = entries([1, 2, 3]), entries([0, 1, 2, 3]), entries([0, 1, 2])
    for scored in ({"val": ("val.txt", val), "test": ("test.txt", test)},
                   {"test": ("test.txt", test), "val": ("val.txt", val)}):
        said = untrained_classes("train.txt", train, scored)
        assert said is not None and "1-based" not in said, said
    said = untrained_classes("train.txt", entries([1, 2, 3, 4]), {"test": ("test.txt", entries([0, 1, 2, 3]))})
    assert "its labels are 1..4 with no 0: it looks 1-based" in said


def test_class_names_are_judged_against_the_class_folders_as_mme_lists_matches_them():
    """The class folder of each listed video (its path's last folder, as listed) is matched to a class name as
    ``mme lists`` matches them, without regard to case or Unicode form (UCF101's HandStandPushups folder is class
    HandstandPushups; 'café' in NFD), in split folders or under an absolute root; lists in which some video lies
    in no class's folder (SSv2's, Kinetics' CVDF copy, folders named otherwise than the classes) are not judged."""
    from mme.data.lists import ListEntry, misnamed_classes

    names = ["HandstandPushups", "caf\u00e9", "playing guitar"]
    listed = [ListEntry("HandStandPushups/v_HandStandPushups_g01_c01.avi", 0, 1),
              ListEntry("train/cafe\u0301/x.mp4", 1, 2), ListEntry("/data/k400/train/playing guitar/y.mp4", 2, 3)]
    assert misnamed_classes(names, "--classes c.json", [("a.txt", listed)]) is None
    swapped = [names[1], names[0], names[2]]
    said = misnamed_classes(swapped, "--classes c.json", [("a.txt", listed[2:]), ("b.txt", listed[:2])])
    assert said.startswith("--classes c.json: 2 of the 3 listed videos are not in the class folder of their "
                           "label's name (the first: b.txt:1: label 0, named 'caf\u00e9', in folder "
                           "'HandStandPushups'): ")
    for outside in ("123.webm", "train/abc_000001_000011.mp4", "train/playing_gitar/y.mp4"):
        assert misnamed_classes(swapped, "--classes c.json", [("a.txt", [*listed[:2], ListEntry(outside, 2)])]) \
            is None, outside


def test_the_class_folder_judged_is_the_outermost_that_names_a_class_as_mme_lists_writes_it(tmp_path):
    """Only a path's last folder was judged, as it is: `mme lists folder`'s lists of class folders with sub-folders
    ('green/sub1/x.mp4', numbered by 'green') and Kinetics lists made with --path-format {label_} or {label_tv}
    ('playing_guitar', 'passing_American_football_in_game') were never judged, in the classes' order or not. The
    class folder is the outermost folder of the path that names a class as `mme lists` names folders, as `mme lists
    folder` numbers a video by its top class folder (the nearest, 'red' of 'green/red/x.mp4' numbered by 'green',
    was warned of in the lists' own order). A label beyond
    the names (a 1-based list read unchecked) is not judged (before: an IndexError). Names a classifier records
    (``trained_with``) are said to disagree with the lists, either being in another order, and how to tell.
    A path written with '\\' is one file name on POSIX (its video missing, as the runs say): not judged."""
    from mme.data.lists import ListEntry, folder_lists, misnamed_classes

    names = ["green", "playing guitar", "passing American football (in game)"]
    listed = [ListEntry("green/sub1/green_001.mp4", 0, 1), ListEntry("train/playing_guitar/y_000001_000011.mp4", 1, 2),
              ListEntry("train/passing_American_football_in_game/z_000001_000011.mp4", 2, 3)]
    assert misnamed_classes(names, "--classes c.json", [("a.txt", [*listed, ListEntry("green/sub2/x.mp4", 3, 4)])]) \
        is None
    swapped = [names[1], names[0], names[2]]
    said = misnamed_classes(swapped, "--classes c.json", [("a.txt", listed)])
    assert said.startswith("--classes c.json: 2 of the 3 listed videos are not in the class folder of their label's "
                           "name (the first: a.txt:1: label 0, named 'playing guitar', in folder 'green'): names in "
                           "another order than the lists' numbering?")
    said = misnamed_classes(swapped, "the class names run/ck.pt records", [("a.txt", listed[1:])], "run/ck.pt")
    assert said == ("the class names run/ck.pt records: 1 of the 2 listed videos are not in the class folder of "
                    "their label's name (the first: a.txt:2: label 1, named 'green', in folder 'playing_guitar'): "
                    "the names run/ck.pt records disagree with the lists' class folders. Either they are in another "
                    "order than the numbering of the list it was trained on (then only the per-class names are "
                    "wrong) or these lists are numbered otherwise than that list (then its scores are wrong too); to "
                    "tell, compare them (`python -c 'import sys; from mme.data.lists import write_classes; from "
                    "mme.models.checkpoint import read_checkpoint; write_classes(sys.argv[2], "
                    "read_checkpoint(sys.argv[1]).class_names)' run/ck.pt FILE` writes them to FILE) with the "
                    "classes.json `mme lists` wrote beside that list: in another order, the names are wrong")
    assert misnamed_classes(swapped, "--classes c.json", [("a.txt", [ListEntry("green\\green_001.mp4", 1)])]) is None
    for video in ("green/red/g_red_take.mp4", "red/r_take.mp4"):
        (tmp_path / video).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / video).write_bytes(b"")
    splits, classes, _ = folder_lists(tmp_path)
    assert classes == ["green", "red"] and splits == {"all": [ListEntry("green/red/g_red_take.mp4", 0),
                                                             ListEntry("red/r_take.mp4", 1)]}
    assert misnamed_classes(classes, "--classes c.json", [("all.txt", splits["all"])]) is None
    said = misnamed_classes(classes[::-1], "--classes c.json", [("all.txt", splits["all"])])
    assert said.startswith("--classes c.json: 2 of the 2 listed videos are not in the class folder of their label's "
                           "name (the first: all.txt:0: label 0, named 'red', in folder 'green'): ")


@pytest.mark.parametrize("command", ["check", "extract"])
def test_a_list_holding_a_nul_byte_is_refused_in_one_line_naming_it(tmp_path, capsys, command):
    """A list saved as UTF-16 without a byte-order mark, or a file of zeros (a write cut short by a power loss),
    holds NUL bytes, which no path can: one line naming the list and the likely cause (UTF-16 told by where its NULs
    fall; of the zeros, their line), nothing written (before: a ValueError traceback, 'embedded null byte')."""
    (tmp_path / "u16.txt").write_bytes("a.mp4 0\n".encode("utf-16-le"))
    (tmp_path / "zeros.txt").write_bytes(bytes(64))
    for name, said in (("u16.txt", "not UTF-8 text (saved as UTF-16 without a byte-order mark); save it as UTF-8"),
                       ("zeros.txt", "line 1 holds a NUL byte: not UTF-8 text (saved as UTF-16 without a byte-order "
                                     "mark, or zeros a write cut short left); save it as UTF-8")):
        out = tmp_path / f"{command}-{name}"
        assert cli_main([command, str(tmp_path / name), "--root", str(tmp_path), "--out", str(out),
                         "--workers", "1"]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"mme {command}: error: list file {tmp_path / name}: {said}")
        assert not out.exists()


@pytest.mark.parametrize("command", ["check", "extract"])
def test_a_video_or_a_utf16_list_given_for_a_list_is_refused_in_one_line_saying_so(tmp_path, capsys, command):
    """``mme check VIDEO.mp4`` (a video where a list is due; also under another suffix) or a list saved as UTF-16 with
    its byte-order mark (PowerShell 5's ``>``): one line saying what the file is, nothing written (before: "cannot
    read it ('utf-8' codec can't decode byte 0xae ...)")."""
    write_video(tmp_path / "a.mp4", affine_video(4, 32, 32)[0])
    shutil.copy(tmp_path / "a.mp4", tmp_path / "a.txt")
    (tmp_path / "le.txt").write_bytes("a.mp4 0\n".encode("utf-16"))  # (its BOM first)
    (tmp_path / "be.txt").write_bytes(b"\xfe\xff" + "a.mp4 0\n".encode("utf-16-be"))
    video = "not a list file (one 'path [label]' a line)"
    utf16 = "not UTF-8 text (saved as UTF-16, its first bytes the byte-order mark); save it as UTF-8"
    for name, said in (("a.mp4", f"a video, {video}"), ("a.txt", f"a video or another binary file, {video}"),
                       ("le.txt", utf16), ("be.txt", utf16)):
        out = tmp_path / f"{command}-{name}"
        assert cli_main([command, str(tmp_path / name), "--root", str(tmp_path), "--out", str(out)]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"mme {command}: error: list file {tmp_path / name}: {said}"), name
        assert not out.exists()


def test_a_utf16_list_or_kinetics_csv_holding_non_ascii_text_is_said_to_be_utf16(tmp_path):
    """A list saved as UTF-16 without a byte-order mark holding one accented path, or an ideographic space (U+3000,
    a NUL its low byte), was called "a video or another binary file", and a Kinetics CSV saved as UTF-16 was told
    the position of its first byte ("line 1 holds the byte 0xff") or, of ASCII alone without a byte-order mark
    (valid UTF-8), "missing columns". All are told they are UTF-16, as a list with its byte-order mark is."""
    from mme.data.lists import from_kinetics

    no_bom = "not UTF-8 text (saved as UTF-16 without a byte-order mark); save it as UTF-8"
    bom = "not UTF-8 text (saved as UTF-16, its first bytes the byte-order mark); save it as UTF-8"
    for n, text in enumerate(("videos/a.mp4 0\nvideos/caf\u00e9.mp4 1\n", "videos/\u65e5\u3000\u672c.mp4 0\n",
                              "videos/\u0100.mp4 0\n")):
        for order in ("le", "be"):
            (path := tmp_path / f"{n}{order}.txt").write_bytes(text.encode(f"utf-16-{order}"))
            with pytest.raises(DataError) as e:
                read_list(path, strict=False)
            assert str(e.value) == f"list file {path}: {no_bom}"
    csv_text = "label,youtube_id,time_start,time_end,split\ncaf\u00e9,x,1,2,train\n"
    ascii_csv = csv_text.replace("caf\u00e9", "abseiling")
    for name, data, said in (("bom.csv", csv_text.encode("utf-16"), bom),
                             ("le.csv", csv_text.encode("utf-16-le"), no_bom),
                             ("ascii_le.csv", ascii_csv.encode("utf-16-le"), no_bom),
                             ("ascii_be.csv", ascii_csv.encode("utf-16-be"), no_bom)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as e:
            from_kinetics([tmp_path / name])
        assert str(e.value) == f"{tmp_path / name}: {said}"


@pytest.mark.parametrize("command", ["check", "extract"])
def test_a_json_file_given_for_a_list_is_refused_in_one_line_naming_it(tmp_path, capsys, command):
    """classes.json (a JSON array of class names) or a {name: id} map given where a list is due, beside train.txt:
    one line saying the file is JSON, not a list, nothing written (before: `mme check` reported its lines '[',
    '"translate_left",', ']' as missing videos, exit 0). A list whose paths start with '[' is read as before."""
    write_classes(tmp_path / "classes.json", ["translate_left", "translate_right"])
    (tmp_path / "map.json").write_text('\ufeff{\n "abseiling": 0,\n "air drumming": 1\n}\n', encoding="utf-8")
    for name, kind in (("classes.json", "array"), ("map.json", "object")):
        said = (f"list file {tmp_path / name}: a JSON {kind}, not a list of videos (one 'path [label]' a line): a "
                "class map or annotation file given for a list such as train.txt?")
        with pytest.raises(DataError) as e:
            read_list(tmp_path / name, strict=False)
        assert str(e.value) == said
        out = tmp_path / f"{command}-{name}"
        assert cli_main([command, str(tmp_path / name), "--root", str(tmp_path), "--out", str(out),
                         "--workers", "1"]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"mme {command}: error: {said}"
        assert not out.exists()
    (tmp_path / "brackets.txt").write_text("[2019] a.mp4 0\n{b}.mp4 1\n")
    assert read_list(tmp_path / "brackets.txt")[0] == [ListEntry("[2019] a.mp4", 0), ListEntry("{b}.mp4", 1)]


def test_lists_saved_with_a_bom_and_joined_read_each_path_without_it(tmp_path):
    """Two lists saved with a UTF-8 byte-order mark (Notepad), joined with cat: the second BOM starts a line inside
    the file. Its path is read without it (before: kept, U+FEFF first, so the video was reported missing), as a
    comment after one is a comment."""
    parts = ["a.mp4 0\r\n", "my videos/b.mp4 1\r\n", "# from part 3\r\n"]
    (tmp_path / "joined.txt").write_bytes(b"".join("\ufeff".encode() + part.encode() for part in parts))
    assert read_list(tmp_path / "joined.txt")[0] == [ListEntry("a.mp4", 0), ListEntry("my videos/b.mp4", 1)]


def test_split_files_saved_with_a_bom_and_joined_read_each_line_without_it(tmp_path):
    """HMDB51 and UCF101 split files with a BOM starting a line inside (lines of a file saved with one appended):
    the line is read without it (before: HMDB51 kept U+FEFF first in the video's path, without a word, and the
    video was reported missing; UCF101 refused the class folder '\\ufeffYoYo')."""
    bom = "\ufeff".encode()
    (tmp_path / "jump_test_split1.txt").write_bytes(b"a.avi 1 \r\n" + bom + b"b.avi 2 \r\n" + bom + b"\r\n")
    assert from_hmdb51(tmp_path, 1)[0] == {"train": [ListEntry("jump/a.avi", 0)], "test": [ListEntry("jump/b.avi", 0)]}
    (tmp_path / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n" + bom + b"2 YoYo\r\n")
    (tmp_path / "trainlist01.txt").write_bytes(b"ApplyEyeMakeup/v_a.avi 1\r\n" + bom + b"YoYo/v_YoYo_g25_c05.avi 2\r\n")
    (tmp_path / "testlist01.txt").write_bytes(bom + b"YoYo/v_YoYo_g01_c01.avi\r\n" + bom + b"YoYo/v_b.avi\r\n")
    assert from_ucf101(tmp_path, 1) == (
        {"train": [ListEntry("ApplyEyeMakeup/v_a.avi", 0), ListEntry("YoYo/v_YoYo_g25_c05.avi", 1)],
         "test": [ListEntry("YoYo/v_YoYo_g01_c01.avi", 1), ListEntry("YoYo/v_b.avi", 1)]}, ["ApplyEyeMakeup", "YoYo"])


def test_kinetics_rows_appended_from_a_csv_saved_with_a_bom_read_their_label_without_it(tmp_path):
    """Rows of an Excel 'CSV UTF-8' file appended to a CSV (cat extra.csv >> train.csv): the BOM starts a line inside
    the file. Its label is read without it (before: '\\ufeffabseiling', a class of its own beside abseiling, every id
    after it shifted), a quoted one too."""
    text = "label,youtube_id,time_start,time_end,split\r\nzumba,z1,2,12,train\r\n"
    extra = ["abseiling,a1,1,11,train\r\n", '"air drumming",d1,1,11,train\r\n']
    (tmp_path / "train.csv").write_bytes(text.encode() + b"".join("\ufeff".encode() + row.encode() for row in extra))
    assert from_kinetics([tmp_path / "train.csv"]) == (
        {"train": [ListEntry("train/zumba/z1_000002_000012.mp4", 2),
                   ListEntry("train/abseiling/a1_000001_000011.mp4", 0),
                   ListEntry("train/air drumming/d1_000001_000011.mp4", 1)]}, ["abseiling", "air drumming", "zumba"])


def test_check_out_ending_in_a_separator_is_refused_not_written_as_a_file(tmp_path, capsys):
    """`mme check --out reports/` (a folder meant, not there yet) is refused in one line before any video is
    opened (before: the report was written to a file named reports)."""
    write_video(tmp_path / "a.mp4", affine_video(T=4, H=32, W=32)[0])
    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    out = f"{tmp_path / 'reports'}/"
    assert cli_main(["check", str(tmp_path / "list.txt"), "--root", str(tmp_path), "--out", out,
                     "--workers", "1"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mme check: error: --out {out}: ends in '/', a folder's name; give a file name")
    assert not (tmp_path / "reports").exists()


def test_a_check_report_that_a_full_disk_refuses_comes_after_the_results_and_says_the_space_free(tmp_path, capsys,
                                                                                                caplog, monkeypatch):
    """`mme check` whose report's write fails on a full disk said `OUT: could not be written (No space left on
    device)`, without the MiB free that the other writes give. It gives them. And the write came before the results
    were said: every video decoded, then the error alone, the counts and the videos a run cannot read never shown.
    They are said first, and the error says so; so are the videos a run reads that the report would name (for a while
    counted alone: `1 short`). With its index folder on the same full disk, that the folder is not filled was never
    said (the report's error raised first) and the counts named the report never written: both are said, the counts
    as the check's."""
    write_video(tmp_path / "a.mp4", affine_video(T=4, H=32, W=32)[0])
    (tmp_path / "list.txt").write_text("a.mp4 0\nb.mp4 0\n")  # (b.mp4 missing)
    from mme.data import pyav_reader

    out, index, write = tmp_path / "r.json", tmp_path / "idx", lists.atomic_write_text

    def full(path, *args, **kwargs):
        if str(path) == str(out) or index in Path(path).parents:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(path, *args, **kwargs)

    monkeypatch.setattr(lists, "atomic_write_text", full)
    monkeypatch.setattr(pyav_reader, "atomic_write_text", full)
    caplog.set_level("INFO", logger="mme.data.lists")
    assert cli_main(["check", str(tmp_path / "list.txt"), "--root", str(tmp_path), "--out", str(out),
                     "--index-dir", str(index), "--workers", "1", "--min-frames", "5"]) == 1
    said = [r.getMessage() for r in caplog.records if r.name == "mme.data.lists"]
    assert said[-5:] == ["the check: 1 missing, 1 short",
                         f"a run cannot read {tmp_path / 'b.mp4'}: missing (no such file)", lists.UNREAD_BY_ROLE,
                         f"{tmp_path / 'a.mp4'}: short (4 frames, fewer than 5)",
                         f"--index-dir {index}: not filled: the frame indices of 1 of the 1 videos a run reads could "
                         f"not be kept there (No space left on device), e.g. {tmp_path / 'a.mp4'}'s, so a run indexes "
                         "them again in every process; the same check run again once they can be written there keeps "
                         "them"], said
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(rf"mme check: error: {re.escape(str(out))}: could not be written \(No space left on device; "
                        r"\d+ MiB free\); the check's results are above; another --out keeps its report", last), last


def test_a_check_whose_index_folder_fills_up_says_so_and_leaves_it_unmarked(tmp_path, capsys, monkeypatch):
    """`mme check --index-dir D` whose folder filled up exited 0, every video ok, and left D marked as filled by a
    check (the mark written before any decode), with 3 of 12 indices kept: later runs indexed the others in every
    process, unsaid. It says how many videos' indices were not kept, why and where, exits 1 and leaves D unmarked (an
    earlier check's mark removed); the same check with space fills the rest and marks it. For a while a video was
    taken as kept where an index of it was there (a run's, of its first frames) though the check's failed, or where
    its copy under another name it is listed by (a symlink) failed, the mark left before those copies; and a check
    again in the same process kept nothing, its indices' failed saves remembered."""
    from mme.data import pyav_reader
    from mme.data.video import open_video

    for name, frames in (("a", 4), ("b", 16), ("c", 4)):
        write_video(tmp_path / f"{name}.mp4", affine_video(T=frames, H=32, W=32)[0])
    (tmp_path / "l.mp4").symlink_to(tmp_path / "a.mp4")
    (tmp_path / "one.txt").write_text("a.mp4 0\n")
    (tmp_path / "all.txt").write_text("a.mp4 0\nb.mp4 0\nc.mp4 0\nl.mp4 0\n")
    index, report = tmp_path / "idx", tmp_path / "r.json"
    mark = index / f"v{pyav_reader.INDEX_VERSION}" / pyav_reader.CHECKED_MARK

    def check(list_file: str) -> int:  # (each in this one process)
        return cli_main(["check", str(tmp_path / list_file), "--root", str(tmp_path), "--out", str(report),
                         "--index-dir", str(index), "--workers", "1", "--min-frames", "1"])

    assert check("one.txt") == 0 and mark.is_file()
    with open_video(str(tmp_path / "b.mp4"), index_dir=index) as reader:  # a run's read: b's first frames proven
        reader.read([0])
    stored = lambda: sorted(json.loads(p.read_text())["proven"] for p in index.rglob("*.json"))  # noqa: E731
    assert stored() == [1, 4]
    write = pyav_reader.atomic_write_text

    def full(path, *args, **kwargs):
        if index in Path(path).parents:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(path, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(pyav_reader, "atomic_write_text", full)
        capsys.readouterr()
        assert check("all.txt") == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mme check: error: --index-dir {index}: not filled: the frame indices of 3 of the 3 videos a run reads "
        f"could not be kept there (No space left on device), e.g. {tmp_path / 'b.mp4'}'s, so a run indexes them "
        f"again in every process; the report {report} is written, and the same check run again once they can be "
        "written there keeps them")
    assert not mark.exists() and json.loads(report.read_text())["counts"] == {"ok": 3} and stored() == [1, 4]
    assert check("all.txt") == 0 and mark.is_file() and stored() == [4, 4, 4, 16]  # (a, l.mp4's copy of it, c, b)


def test_a_check_counts_only_the_videos_a_run_reads_as_not_kept_under_their_other_names(tmp_path, capsys,
                                                                                       monkeypatch):
    """A video a run cannot read (no decodable frame; its demux index kept) listed under a second name too (a
    symlink) whose copy of the index failed to be kept there made `mme check --index-dir` end on "not filled: ... 1
    of the 1 videos a run reads", though the one video a run reads was kept: it counts the videos a run reads alone,
    as their own saves are, and the folder is marked."""
    from mme.data import pyav_reader

    write_video(tmp_path / "a.mp4", affine_video(T=4, H=32, W=32)[0])
    frames = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), np.uint8)
    cut_mid_gop(write_keyint_video(tmp_path / "one.mp4", frames, "infinite"), tmp_path / "nokey.mkv", drop=1)
    (tmp_path / "ln.mkv").symlink_to(tmp_path / "nokey.mkv")
    (tmp_path / "l.txt").write_text("a.mp4 0\nnokey.mkv 0\nln.mkv 0\n")
    index, write = tmp_path / "idx", pyav_reader.atomic_write_text

    def full(path, *args, **kwargs):  # (the copy under the link's name alone)
        if path == pyav_reader._index_store(str(index), str(tmp_path / "ln.mkv"),
                                            pyav_reader.VersionOfFile.of(str(tmp_path / "nokey.mkv")).version):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(path, *args, **kwargs)

    monkeypatch.setattr(pyav_reader, "atomic_write_text", full)
    assert cli_main(["check", str(tmp_path / "l.txt"), "--root", str(tmp_path), "--out", str(tmp_path / "r.json"),
                     "--index-dir", str(index), "--workers", "1", "--min-frames", "1"]) == 1  # (an unreadable video)
    assert "not filled" not in capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["counts"] == {"ok": 1, "unreadable": 1}
    assert pyav_reader.filled_by_check(index)


def test_a_check_whose_mark_cannot_be_made_says_so(tmp_path, caplog, monkeypatch):
    """The mark of a filled index folder is made after its indices, and a full disk may refuse it alone: the check
    exited 0 unmarked, not a word (its docstring said the indices' reads had said it). It warns, naming the mark, the
    reason and what a run makes of the folder."""
    from mme.data import pyav_reader

    write_video(tmp_path / "a.mp4", affine_video(T=4, H=32, W=32)[0])
    (tmp_path / "l.txt").write_text("a.mp4 0\n")
    index, touch = tmp_path / "idx", Path.touch

    def full(self, *args, **kwargs):
        if self.name == pyav_reader.CHECKED_MARK:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return touch(self, *args, **kwargs)

    monkeypatch.setattr(Path, "touch", full)
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        assert cli_main(["check", str(tmp_path / "l.txt"), "--root", str(tmp_path), "--out", str(tmp_path / "r.json"),
                         "--index-dir", str(index), "--workers", "1", "--min-frames", "1"]) == 0
    mark = index / f"v{pyav_reader.INDEX_VERSION}" / pyav_reader.CHECKED_MARK
    assert [r.getMessage() for r in caplog.records if r.name == "mme.data.lists"] == [
        f"--index-dir {index}: its mark {mark} could not be made (No space left on device): a run judges it as filled "
        "by its own reads"]
    assert not mark.exists()


def test_index_unkept_asks_without_indexing(tmp_path):
    """index_unkept, a question, on a file this process holds no index of with the folder (changed since its read,
    let go) demuxed it and saved an index there, answering "kept". It makes and saves nothing."""
    from mme.data.pyav_reader import index_unkept

    write_video(tmp_path / "a.mp4", affine_video(T=4, H=32, W=32)[0])
    assert index_unkept(tmp_path / "idx", str(tmp_path / "a.mp4")) is None
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("index_dir", ["r.json", "./r.json", "r.json/idx"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_check_index_dir_that_is_its_out_or_under_it_is_refused_before_anything_is_made(index_dir, overwrite, tmp_path,
                                                                                      capsys, monkeypatch):
    """`mme check LIST --out r.json --index-dir r.json` made r.json a folder, then refused it as a file mme check did
    not write; with --overwrite, an IsADirectoryError traceback after the whole decode. Refused in one line, however
    the two are spelt, before any folder is made or video opened."""
    write_video(tmp_path / "a.mp4", affine_video(T=4, H=32, W=32)[0])
    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["check", "list.txt", "--out", "r.json", "--index-dir", index_dir, "--workers", "1",
                     *overwrite]) == 1
    under = "under " if index_dir.endswith("idx") else ""
    assert capsys.readouterr().err.strip().splitlines() == [
        f"mme check: error: --index-dir {index_dir}: is {under}--out r.json, a file to be written; give another "
        "--index-dir"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "list.txt"]


def test_check_index_dir_keeps_the_index_of_a_file_listed_under_two_names_under_each(tmp_path, monkeypatch):
    """`mme check --index-dir` of a video listed as itself and through symlinks (in one list or two) checked it once
    and kept its index under the first name alone: the index folder keys each by its absolute path, so a run reading
    it by another name indexed it again (seconds for a long video). It is kept under every name listed."""
    from mme.data import pyav_reader
    from mme.data.pyav_reader import indexes_none_of
    from mme.data.video import open_video

    write_video(tmp_path / "a.mp4", affine_video(T=6, H=32, W=32)[0])
    (tmp_path / "link.mp4").symlink_to("a.mp4")
    (tmp_path / "other.mp4").symlink_to(tmp_path / "a.mp4")
    (tmp_path / "one.txt").write_text("a.mp4 0\nlink.mp4 0\n")
    (tmp_path / "two.txt").write_text("other.mp4 0\n")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["check", "one.txt", "two.txt", "--out", "r.json", "--index-dir", "idx", "--workers", "1"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["videos"] == 1
    for name in ("a.mp4", "link.mp4", "other.mp4"):
        assert not indexes_none_of(tmp_path / "idx", [str(tmp_path / name)]), name

    def stored():  # each index file as kept (a rewrite is a new file renamed over it: another inode)
        return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "idx").rglob("*.json")}

    written = stored()
    assert cli_main(["check", "one.txt", "two.txt", "--out", "r.json", "--index-dir", "idx", "--workers", "1"]) == 0
    assert stored() == written  # (none written again)
    monkeypatch.setattr(pyav_reader, "_make_index", lambda path: pytest.fail(f"{path} indexed again"))
    pyav_reader._pyav_index.cache_clear()  # (a run's process, which has not read it)
    assert open_video(str(tmp_path / "other.mp4"), index_dir=str(tmp_path / "idx")).read([0, 5]).shape[0] == 2


@pytest.mark.parametrize("bad", ["a file", "missing"])
@pytest.mark.parametrize("command", ["check", "extract", "embed", "probe", "lists"])
def test_a_root_that_is_not_a_folder_is_refused_before_any_work(command, bad, tmp_path, capsys):
    """A --root that is a file or is not there is refused in one line, as pretrain's data.root is (before: every
    video 'missing', a report, a failure file or lists written)."""
    (tmp_path / "videos" / "a").mkdir(parents=True)
    write_video(tmp_path / "videos" / "a" / "1.mp4", affine_video(T=4, H=32, W=32)[0])
    listed = tmp_path / "list.txt"
    listed.write_text("a/1.mp4 0\n")
    root = str(listed if bad == "a file" else tmp_path / "nowhere")
    out = tmp_path / "out"
    args = {"check": ["check", str(listed), "--out", str(out / "check.json")],
            "extract": ["extract", str(listed), "--out", str(out), "--short-side", "32"],
            "embed": ["embed", str(tmp_path / "ck.pt"), str(listed), "--out", str(out / "f.npy")],
            "probe": ["probe", str(tmp_path / "ck.pt"), "--train", str(listed), "--out", str(out)],
            "lists": ["lists", "folder", str(tmp_path / "videos"), "--out", str(out), "--check"]}[command]
    assert cli_main([*args, "--root", root]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"mme {command}: error: --root {root!r} is not a folder"
    assert not out.exists()


def test_folder_lists_refuse_a_root_other_than_where_their_paths_start(tmp_path, capsys):
    """Folder lists' paths start at the source (a split folder's parent): a --root elsewhere is refused in one line
    naming both, where --check called every video missing (the same folder spelt otherwise is taken)."""
    (tmp_path / "videos" / "a").mkdir(parents=True)
    write_video(tmp_path / "videos" / "a" / "1.mp4", affine_video(T=16, H=32, W=32)[0])
    source, out = tmp_path / "videos", tmp_path / "lists"
    assert cli_main(["lists", "folder", str(source), "--out", str(out), "--root", str(tmp_path), "--check"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mme lists: error: --root {tmp_path}: folder lists' paths start at {source}; give --root {source} or leave "
        f"it out")
    assert not out.exists()
    assert cli_main(["lists", "folder", str(source), "--out", str(out), "--root", f"{tmp_path}/videos/../videos",
                     "--check"]) == 0
    assert (out / "all.txt").read_text() == "a/1.mp4 0\n"
    assert json.loads((out / "check.json").read_text())["failing"] == 0


def test_a_kinetics_time_that_is_infinite_is_refused_in_one_line(tmp_path, capsys):
    """A time of inf or 1e400 (a float past any int) is refused naming the CSV line, as nan is (before: an
    OverflowError traceback)."""
    header = "label,youtube_id,time_start,time_end,split\n"
    for n, start in enumerate(("inf", "1e400", "-inf", "nan")):
        csv_file = tmp_path / f"t{n}.csv"
        csv_file.write_text(header + f"abseiling,abc,{start},11,train\n")
        with pytest.raises(DataError, match=rf"^{csv_file}:2: bad time_start/time_end "):
            from_kinetics([csv_file])
        assert cli_main(["lists", "kinetics", str(csv_file), "--out", str(tmp_path / f"out{n}")]) == 1
        assert capsys.readouterr().err.startswith(f"mme lists: error: {csv_file}:2: bad time_start/time_end")


def test_a_kinetics_time_that_no_clip_name_holds_and_an_empty_path_format_are_refused_in_one_line(tmp_path, capsys):
    """A negative time_start or time_end is refused naming the CSV line and the value where the path format names
    the clip by it (before: listed as x_-00005_001000.mp4, silently); a fraction names the clip by its whole
    seconds, as the Kinetics downloader does ('%06d': 3.5 is 000003); 10.0 and 1e1 are 10, and a format without the
    times takes any. `--path-format ''` is refused (before: the default format, silently)."""
    header = "label,youtube_id,time_start,time_end,split\n"
    for n, (row, column, value) in enumerate((("abseiling,x,-5,1000,train", "time_start", "-5"),
                                              ("abseiling,y,3,-9,train", "time_end", "-9"))):
        csv_file = tmp_path / f"t{n}.csv"
        csv_file.write_text(header + "abseiling,ok,1,11,train\n" + row + "\n")
        said = (f"{csv_file}:3: {column} '{value}' is negative: no clip starts or ends before its video, as the "
                f"video's file name says (--path-format '{lists.KINETICS_FORMAT}')")
        with pytest.raises(DataError) as e:
            from_kinetics([csv_file])
        assert str(e.value) == said
        assert cli_main(["lists", "kinetics", str(csv_file), "--out", str(tmp_path / f"out{n}")]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"mme lists: error: {said}"
        assert not (tmp_path / f"out{n}").exists()
        assert from_kinetics([csv_file], "{split}/{youtube_id}.mp4")[0]["train"][1].path == row.split(",")[1] \
            .join(("train/", ".mp4"))
    (tmp_path / "hacs.csv").write_text(header + "abseiling,y,3.5,9.25,train\n")
    assert from_kinetics([tmp_path / "hacs.csv"])[0] == {"train": [ListEntry("train/abseiling/y_000003_000009.mp4",
                                                                             0)]}
    (tmp_path / "whole.csv").write_text(header + "abseiling,z,4.0,1e1,train\n")
    assert from_kinetics([tmp_path / "whole.csv"])[0] == {"train": [ListEntry("train/abseiling/z_000004_000010.mp4",
                                                                              0)]}
    for fmt in ("", "  "):
        assert cli_main(["lists", "kinetics", str(tmp_path / "whole.csv"), "--out", str(tmp_path / "e"),
                         "--path-format", fmt]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"mme lists: error: --path-format {fmt!r}: empty, it names no file; leave it out for the dataset's default")
        assert not (tmp_path / "e").exists()


def test_a_line_break_in_any_kinetics_csv_field_is_refused_naming_its_line(tmp_path):
    """A quoted label holding a line break (typed with Alt+Enter in a spreadsheet) is refused naming the CSV line the
    row starts on, as in any other field (before: the label was exempt: 'air\\ndrumming' became a class of its own
    beside 'air drumming', and every class id after it shifted by one)."""
    header = "label,youtube_id,time_start,time_end,split\n"
    csv_file = tmp_path / "train.csv"
    csv_file.write_text(header + 'abseiling,aaa,1,11,train\n"air\ndrumming",bbb,1,11,train\nair drumming,ccc,1,11,'
                        'train\nzumba,ddd,1,11,train\n')
    with pytest.raises(DataError, match=rf"^{csv_file}:3: label 'air\\ndrumming' holds a line break: "):
        from_kinetics([csv_file], "{split}/{youtube_id}.mp4")
    assert cli_main(["lists", "kinetics", str(csv_file), "--out", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()


def test_a_control_character_in_a_kinetics_csv_field_is_refused_naming_its_line(tmp_path, capsys):
    """A NUL byte or another control character in a field (a label, a youtube_id; a tab within it) is refused in one
    line naming the CSV line, as a line break is (before: a NUL in a label was a 'ValueError: embedded null byte'
    traceback from the folder's listing with --skip-missing, and a class of its own without it; a tab, a class of its
    own; on Python 3.10, whose csv module refuses a NUL itself, a NUL was 'not a CSV row (line contains NUL): a quote
    not closed?'). A tab at a field's ends is stripped (the test below)."""
    (tmp_path / "v" / "train" / "abseiling").mkdir(parents=True)
    (tmp_path / "v" / "train" / "abseiling" / "aaa_000001_000011.mp4").write_bytes(b"x")
    csv_file = tmp_path / "train.csv"
    for row, told in (("zum\0ba,ddd,1,11,train", r"label 'zum\x00ba' holds the control character '\x00'"),
                      ("zumba,d\x01dd,1,11,train", r"youtube_id 'd\x01dd' holds the control character '\x01'"),
                      ("air\tdrumming,ddd,1,11,train", r"label 'air\tdrumming' holds the control character '\t'")):
        csv_file.write_text(f"label,youtube_id,time_start,time_end,split\nabseiling,aaa,1,11,train\n{row}\n")
        message = f"{csv_file}:3: {told}: no class or video name holds one"
        with pytest.raises(DataError, match=rf"^{re.escape(message)}$"):
            from_kinetics([csv_file])
        assert cli_main(["lists", "kinetics", str(csv_file), "--out", str(tmp_path / "out"), "--root",
                         str(tmp_path / "v"), "--skip-missing"]) == 1
        assert capsys.readouterr().err.strip().splitlines() == [f"mme lists: error: {message}"]
        assert not (tmp_path / "out").exists()


def test_an_ssv2_id_that_is_empty_or_not_a_string_nor_an_integer_is_refused(tmp_path, capsys):
    """An SSv2 item's id must be a non-empty string without control characters or an integer (before: "id": "" was
    listed as '.webm' and "id": true as 'True.webm'; a NUL in an id put in a folder by --path-format was a ValueError
    traceback of --skip-missing's listing); a refused file is one line naming it and the item, nothing written."""
    (tmp_path / "labels.json").write_text(json.dumps({"Zooming in on something": "0"}))
    for bad in ("", " ", True, False, None, 1.5, "12\x00", "1\n2"):
        template = "Zooming in on [something]"
        items = [{"id": "12", "template": template}, {"id": bad, "template": template}]
        (tmp_path / "train.json").write_text(json.dumps(items))
        with pytest.raises(DataError, match=rf"^{tmp_path / 'train.json'}: item 1 is not a video as SSv2 lists them: "
                                            rf"its id {re.escape(repr(bad))} is not a non-empty string \(without "
                                            r"control characters\) or an integer$"):
            from_ssv2(tmp_path)
        assert cli_main(["lists", "ssv2", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
        assert "mme lists: error: " in capsys.readouterr().err and not (tmp_path / "out").exists()
    (tmp_path / "train.json").write_text(json.dumps([{"id": 7, "template": "Zooming in on [something]"}]))
    assert from_ssv2(tmp_path) == ({"train": [ListEntry("7.webm", 0)]}, ["Zooming in on something"])


def test_skip_missing_suggests_label_fields_only_where_the_format_has_one(tmp_path, caplog):
    """A class with no video found: {label_tv} is suggested where --path-format names the files by their class
    (before: also for SSv2, whose format has no label field, and a flat Kinetics format, where the class cannot be
    why its videos are missing)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "labels.json").write_text(json.dumps({"Zooming in on something": "0", "Holding something": "1"}))
    (tmp_path / "train.json").write_text(json.dumps([{"id": 1, "template": "Zooming in on [something]"},
                                                     {"id": 2, "template": "Holding [something]"}]))
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end\na,k1,1,11\nb,k2,1,11\n")
    for video in ("1.webm", "train/k1_000001_000011.mp4", "train/a/k1_000001_000011.mp4"):
        (tmp_path / video).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / video).write_bytes(b"x")
    hint = "(is --path-format the folders' naming? {label_tv} is torchvision's)"
    builds = [("ssv2", tmp_path, None, False), ("kinetics", tmp_path / "train.csv", "{split}/{youtube_id}_"
              "{time_start:06d}_{time_end:06d}.mp4", False), ("kinetics", tmp_path / "train.csv", None, True)]
    for n, (kind, source, path_format, hinted) in enumerate(builds):
        caplog.clear()
        with caplog.at_level("WARNING", logger="mme.data.lists"):
            build_lists(kind, source, tmp_path / f"out{n}", path_format=path_format, video_root=tmp_path,
                        skip_missing=True)
        assert "train: no video of 1 class(es) found under" in caplog.text
        assert (hint in caplog.text) == hinted, (kind, path_format, caplog.text)


def test_kinetics_rows_repeated_within_or_across_csvs_are_listed_once(tmp_path, caplog):
    """The same split and file twice (a row repeated; a subset CSV, train_mini.csv, beside train.csv in the folder
    of CSVs): listed once, with a warning naming both CSV lines; under two labels: one line naming both (before: the
    video listed twice, oversampled in training, and a val list mme finetune refuses)."""
    header = "label,youtube_id,time_start,time_end,split\n"
    folder = tmp_path / "csvs"
    folder.mkdir()
    (folder / "train.csv").write_text(header + "abseiling,a1,1,11,train\nzumba,z1,2,12,train\nzumba,z2,3,13,train\n"
                                      "abseiling,a1,1,11,train\n")
    (folder / "train_mini.csv").write_text(header + "abseiling,a1,1,11,train\nzumba,z1,2,12,train\n")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        written, _ = build_lists("kinetics", folder, tmp_path / "out")
    assert written["train"].read_text() == ("train/abseiling/a1_000001_000011.mp4 0\n"
                                            "train/zumba/z1_000002_000012.mp4 1\ntrain/zumba/z2_000003_000013.mp4 1\n")
    assert (f"{folder / 'train.csv'}:5 repeats {folder / 'train.csv'}:2: the video "
            f"train/abseiling/a1_000001_000011.mp4 is listed once\n") in caplog.text
    assert (f"{folder / 'train_mini.csv'}:2 repeats {folder / 'train.csv'}:2: the video "
            f"train/abseiling/a1_000001_000011.mp4 is listed once (and 1 more of its rows repeat rows of "
            f"{folder / 'train.csv'})") in caplog.text
    (folder / "train_mini.csv").write_text(header + "zumba,a1,1,11,train\n")  # a flat format: one file, two labels
    flat = "{split}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
    with pytest.raises(DataError, match=rf"^{folder / 'train_mini.csv'}:2: the train video train/a1_000001_000011\.mp4 "
                                        rf"is labelled 'zumba' here and 'abseiling' at {folder / 'train.csv'}:2; a "
                                        rf"video has one class$"):
        build_lists("kinetics", folder, tmp_path / "flat", path_format=flat)
    assert not (tmp_path / "flat").exists()


def test_kinetics_videos_kept_under_another_video_suffix_are_found_and_listed_as_they_are(tmp_path, caplog,
                                                                                          monkeypatch):
    """--skip-missing finds a row's video under any video suffix (yt-dlp keeps the .mkv or .webm it downloaded; the
    CSV's format names .mp4), listing each folder once, and lists the file found; a split missing many videos is a
    warning counting them (before: only the .mp4 was looked for, the others dropped with an INFO line, 'train: 2 of
    6 videos found', and the warning blamed {label_tv}, which a flat format has not)."""
    csv_file = tmp_path / "train.csv"
    csv_file.write_text("label,youtube_id,time_start,time_end,split\n" + "".join(
        f"{label},{yid},1,11,train\n" for label, yid in [("a", "mp4"), ("a", "mkv"), ("b", "webm"), ("b", "upper"),
                                                          ("c", "gone"), ("c", "audio"), ("a", "two")]))
    videos = tmp_path / "videos" / "train"
    videos.mkdir(parents=True)
    for name in ("mp4_000001_000011.mp4", "mkv_000001_000011.mkv", "webm_000001_000011.webm",
                 "upper_000001_000011.MKV", "audio_000001_000011.f251.webm", "._gone_000001_000011.mkv",
                 "two_000001_000011.webm", "two_000001_000011.mkv", "gone_000001_000011.txt"):
        (videos / name).write_bytes(b"x")
    flat = "{split}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"  # the CVDF download's layout
    listed = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": listed.append(path) or scandir(path))
    with caplog.at_level("INFO", logger="mme.data.lists"):
        written, _ = build_lists("kinetics", csv_file, tmp_path / "out", path_format=flat,
                                 video_root=tmp_path / "videos", skip_missing=True)
    assert written["train"].read_text() == (
        "train/mp4_000001_000011.mp4 0\ntrain/mkv_000001_000011.mkv 0\ntrain/webm_000001_000011.webm 1\n"
        "train/upper_000001_000011.MKV 1\ntrain/two_000001_000011.webm 0\n")
    assert listed == [str(videos)]  # one listing of the folder, not a stat per suffix per row
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert (f"train: 2 of 7 videos missing under {tmp_path / 'videos'} (5 found), e.g. train/gone_000001_000011.mp4 "
            f"(is --path-format their naming?)") in warned
    assert "train: no video of 1 class(es) found" in caplog.text and "{label_tv}" not in caplog.text


def test_skip_missing_names_a_missing_video_of_a_split_missing_few(tmp_path, caplog):
    """--skip-missing with under a tenth of a split's videos missing: before, the INFO line only counted them ('train:
    11 of 12 videos found'), leaving the user no video to look for; now it names the first, as the warning past a
    tenth does. A split missing none is said as before."""
    flat = "{split}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\n" + "".join(
        f"zumba,{yid},1,11,{split}\n" for yid, split in [(f"t{i:02d}", "train") for i in range(12)] + [("v1", "val")]))
    videos = tmp_path / "videos"
    (videos / "train").mkdir(parents=True)
    (videos / "val").mkdir()
    for path in [f"train/t{i:02d}_000001_000011.mp4" for i in range(12) if i != 7] + ["val/v1_000001_000011.mp4"]:
        (videos / path).write_bytes(b"x")
    with caplog.at_level("INFO", logger="mme.data.lists"):
        written, _ = build_lists("kinetics", tmp_path / "train.csv", tmp_path / "out", path_format=flat,
                                 video_root=videos, skip_missing=True)
    assert len(written["train"].read_text().splitlines()) == 11
    said = [r.getMessage() for r in caplog.records]
    assert f"train: 11 of 12 videos found under {videos} (1 missing, e.g. train/t07_000001_000011.mp4)" in said
    assert f"val: 1 of 1 videos found under {videos}" in said
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_kinetics_video_there_under_several_suffixes_is_listed_as_its_row_names_it_else_the_first_and_said(
        tmp_path, caplog):
    """--skip-missing with a video there under two suffixes (a conversion to .mp4 left half done; yt-dlp's .webm and
    .mkv) took the file the row names, else the first in VIDEO_EXTS order, without a word. Still so, with a warning
    per split counting them and naming the first, which file is listed and which not; a link to the same file under
    another suffix is one file. --path-format naming the other suffix takes it."""
    csv_file = tmp_path / "train.csv"
    csv_file.write_text("label,youtube_id,time_start,time_end,split\n" + "".join(
        f"a,{yid},1,11,train\n" for yid in ("two", "conv", "link", "one")))
    videos = tmp_path / "videos" / "train"
    videos.mkdir(parents=True)
    for name in ("two_000001_000011.mkv", "two_000001_000011.webm", "conv_000001_000011.webm",
                 "conv_000001_000011.mp4", "link_000001_000011.mkv", "one_000001_000011.mp4"):
        (videos / name).write_bytes(name.encode())
    (videos / "link_000001_000011.webm").symlink_to("link_000001_000011.mkv")
    def listed(suffix: str) -> tuple[str, list[str]]:
        """The list written and the warnings where --path-format names ``suffix``."""
        caplog.clear()
        with caplog.at_level("WARNING", logger="mme.data.lists"):
            written, _ = build_lists("kinetics", csv_file, tmp_path / suffix[1:], video_root=tmp_path / "videos",
                                     path_format="{split}/{youtube_id}_{time_start:06d}_{time_end:06d}" + suffix,
                                     skip_missing=True)
        return written["train"].read_text(), [r.getMessage() for r in caplog.records]

    assert listed(".mp4") == (
        "train/two_000001_000011.webm 0\ntrain/conv_000001_000011.mp4 0\ntrain/link_000001_000011.webm 0\n"
        "train/one_000001_000011.mp4 0\n", [
            "train: 2 videos are there under several suffixes, e.g. train/two_000001_000011.mp4: listed as "
            "train/two_000001_000011.webm, not train/two_000001_000011.mkv; a row's video is listed as the file it "
            "names where that is there, else under the first of its suffixes in the order of VIDEO_EXTS (.mp4, .avi, "
            ".webm, .mkv, ...): remove the others, or name the suffix to take in --path-format"])
    text, said = listed(".mkv")
    assert text == ("train/two_000001_000011.mkv 0\ntrain/conv_000001_000011.mp4 0\ntrain/link_000001_000011.mkv 0\n"
                    "train/one_000001_000011.mp4 0\n")
    assert said[0].startswith("train: 2 videos are there under several suffixes, e.g. train/two_000001_000011.mkv: "
                              "listed as train/two_000001_000011.mkv, not train/two_000001_000011.webm")
    said = listed(".webm")[1]  # each file listed is the one its row names: no --path-format to name
    assert said[0].startswith("train: 2 videos are there under several suffixes") and "--path-format" not in said[0]


def _unlisted(monkeypatch, folder: os.PathLike) -> str:
    """``folder`` made one that can be entered but not listed (mode 0311, which root lists all the same): its
    ``os.scandir`` refused. Returns its name."""
    shut, scandir = str(folder), os.scandir

    def unlisted(path="."):
        if os.fspath(path) == shut:
            raise PermissionError(errno.EACCES, "Permission denied", shut)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", unlisted)
    return shut


def test_kinetics_videos_in_a_folder_that_can_be_entered_but_not_listed_are_looked_up_each(tmp_path, monkeypatch):
    """--skip-missing in a class folder that can be entered but not listed (mode 0311, as shared dataset mounts give)
    looks each row's video up: the name, then each suffix of VIDEO_EXTS, also in capitals (before: the build stopped,
    'cannot be read (Permission denied)', though a run reads those videos); one that can be neither listed nor
    entered (mode 000) is that one line still. (Simulated: root lists any folder.)"""
    csv_file = tmp_path / "train.csv"
    csv_file.write_text("label,youtube_id,time_start,time_end,split\nabseiling,aaa,1,11,train\nzumba,ddd,1,11,train\n"
                        "zumba,eee,1,11,train\nzumba,fff,1,11,train\nzumba,ggg,1,11,train\n")
    videos = tmp_path / "videos"
    for rel in ("train/abseiling/aaa_000001_000011.mp4", "train/zumba/ddd_000001_000011.mp4",
                "train/zumba/eee_000001_000011.webm", "train/zumba/eee_000001_000011.mkv",
                "train/zumba/ggg_000001_000011.MKV"):
        (videos / rel).parent.mkdir(parents=True, exist_ok=True)
        (videos / rel).write_bytes(b"x")
    shut = _unlisted(monkeypatch, videos / "train" / "zumba")
    written, _ = build_lists("kinetics", csv_file, tmp_path / "out", video_root=videos, skip_missing=True)
    assert written["train"].read_text() == (
        "train/abseiling/aaa_000001_000011.mp4 0\ntrain/zumba/ddd_000001_000011.mp4 1\n"
        "train/zumba/eee_000001_000011.webm 1\ntrain/zumba/ggg_000001_000011.MKV 1\n")
    access = os.access  # a folder that can be neither listed nor entered (mode 000): one line, as before
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: os.fspath(path) != shut and access(path, mode))
    with pytest.raises(DataError, match=rf"{re.escape(shut)}: cannot be read \(Permission denied\)"):
        build_lists("kinetics", csv_file, tmp_path / "out2", video_root=videos, skip_missing=True)
    above = str(videos / "train")  # a folder above that cannot be entered is named, the one at fault
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: os.fspath(path) not in (shut, above) and
                        access(path, mode))
    with pytest.raises(DataError, match=rf"^{re.escape(shut)}: cannot be read \(Permission denied: this user may not "
                                        rf"enter {re.escape(above)}\)$"):
        build_lists("kinetics", csv_file, tmp_path / "out2", video_root=videos, skip_missing=True)


def test_kinetics_videos_in_a_folder_that_cannot_be_listed_are_found_under_a_first_capital_and_the_spellings_said(
        tmp_path, monkeypatch, caplog):
    """--skip-missing in a class folder that can be entered but not listed (mode 0311) looked each row's video up
    under each suffix in lower case and capitals alone: 'abc.Mp4' was missing there, though found in a folder
    listed, without a word of how it was looked for. Now also under a first capital (.Mp4), and a warning says the
    spellings tried where some are not found ('.mP4' still is not). (Simulated: root lists any folder.)"""
    csv_file = tmp_path / "train.csv"
    csv_file.write_text("label,youtube_id,time_start,time_end,split\n" + "".join(
        f"zumba,{yid},1,11,train\n" for yid in ("aaa", "bbb", "ccc", "ddd")))
    videos = tmp_path / "videos"
    (videos / "train" / "zumba").mkdir(parents=True)
    for name in ("aaa_000001_000011.Mp4", "bbb_000001_000011.mP4", "ccc_000001_000011.mp4", "ddd_000001_000011.Mkv"):
        (videos / "train" / "zumba" / name).write_bytes(b"x")
    shut = _unlisted(monkeypatch, videos / "train" / "zumba")
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        written, _ = build_lists("kinetics", csv_file, tmp_path / "out", video_root=videos, skip_missing=True)
    assert written["train"].read_text() == (
        "train/zumba/aaa_000001_000011.Mp4 0\ntrain/zumba/ccc_000001_000011.mp4 0\n"
        "train/zumba/ddd_000001_000011.Mkv 0\n")
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"train: 1 of 4 videos missing under {videos} (3 found), e.g. train/zumba/bbb_000001_000011.mp4 (is "
        f"--path-format their naming?)",
        f"1 folder under {videos} can be entered but not listed (e.g. {shut}): each of its 4 videos was looked "
        f"up by its name, then under each video suffix in lower case, capitals or a first capital (.mp4, .MP4, .Mp4), "
        f"the first file found taken (a video kept under several suffixes is not noticed there); 1 not found (e.g. "
        f"train/zumba/bbb_000001_000011.mp4): one whose suffix is spelled otherwise (.mP4) is not found there; let the "
        f"folders be listed (chmod a+r) to find a suffix in any case"]


def test_kinetics_videos_in_a_folder_that_can_be_listed_but_not_entered_are_missing(tmp_path, monkeypatch, caplog):
    """--skip-missing does not trust the listing of a class folder that can be listed but not entered (mode 0644):
    its files are missing, none looked up (each would fail), as a run could not open them (before: listed as found,
    since a listing's entry tells its type). (Simulated: root enters any folder.)"""
    csv_file = tmp_path / "train.csv"
    csv_file.write_text("label,youtube_id,time_start,time_end,split\nabseiling,aaa,1,11,train\nzumba,ddd,1,11,train\n")
    videos = tmp_path / "videos"
    for rel in ("train/abseiling/aaa_000001_000011.mp4", "train/zumba/ddd_000001_000011.mp4"):
        (videos / rel).parent.mkdir(parents=True, exist_ok=True)
        (videos / rel).write_bytes(b"x")
    shut = str(videos / "train" / "zumba")
    access, stat, looked_up = os.access, os.stat, []

    def entered(path, mode, *args, **kwargs):
        return not (os.fspath(path) == shut and mode & os.X_OK) and access(path, mode, *args, **kwargs)

    def looked_at(path, *args, **kwargs):
        if os.path.dirname(os.fspath(path)) == shut:
            looked_up.append(os.path.basename(os.fspath(path)))
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "access", entered)
    monkeypatch.setattr(os, "stat", looked_at)
    with caplog.at_level("WARNING", logger="mme.data.lists"):
        written, _ = build_lists("kinetics", csv_file, tmp_path / "out", video_root=videos, skip_missing=True)
    assert written["train"].read_text() == "train/abseiling/aaa_000001_000011.mp4 0\n"
    assert f"train: no video of 1 class(es) found under {videos}, e.g. ['zumba']" in caplog.text
    assert looked_up == []  # (before: the named file, then each suffix in both cases, all refused)


def test_a_check_report_names_a_non_ascii_video_as_utf8_text_under_an_ascii_locale(tmp_path):
    """``LC_ALL=C PYTHONUTF8=0``: a check report named a listed ``caf\u00e9/v.mp4`` as Python names that file there,
    ``caf\\udcc3\\udca9`` (lone surrogates in the JSON; under a Latin-1 locale ``caf\u00c3\u00a9``), not as the list
    has it. Its path and the reason naming it are UTF-8 text, whatever the locale."""
    (tmp_path / "all.txt").write_bytes("caf\u00e9/v.mp4 0\n".encode())
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mme", "check", str(tmp_path / "all.txt"), "--root", str(tmp_path),
                           "--out", str(tmp_path / "c.json")], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]  # (a video a run cannot read)
    [problem] = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))["problems"]
    assert (problem["path"], problem["status"]) == (f"{tmp_path}/caf\u00e9/v.mp4", "missing")
    assert problem["path"] in problem["reason"] and problem["reason"].isprintable(), problem
