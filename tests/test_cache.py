"""The track cache: `mme extract` (resume, shards, failures), load_tracks, and cached vs online targets.

Stated tolerance (cached vs online, same clip and crop): with the identity geometry the displacements agree to
half the int16 quantum (0.025 px); under a crop + resize (and a flip) the mean absolute difference is <= 0.1 px
(measured 0.03 px at zoom 0.8, 0.054 px at zoom 0.67 over the tokens' points) and the 95th percentile of the
valid points <= 0.15 px (measured 0.08 px), and >= 98 % of the points / tokens agree on validity. These hold for
these videos: the difference depends on the content (docs/targets.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from os_fakes import out_of_memory_opening
from videos import (
    H264_GOP,
    affine_video,
    analytic_positions,
    cut_mid_gop,
    decode_all,
    read_all,
    with_end_of_sequence,
    write_corpus_file,
    write_keyint_video,
    write_video,
)
from worker_jobs import alive, dead_pid, fails_on, held_then, held_until

from mme import utils
from mme.cli import main as cli
from mme.data import pyav_reader
from mme.data.dataset import DataConfig, PretrainDataset, Sample
from mme.data.sampling import sample_pretrain
from mme.data.transforms import Geometry, apply_geometry
from mme.errors import (
    ConfigError,
    DataError,
    FolderReplaced,
    NoSpaceError,
    OutOfMemory,
    UnguardedScript,
    VideoError,
)
from mme.models.config import ModelConfig
from mme.motion import compute_tracks, extract, load_tracks
from mme.motion.cache import (
    QUANT,
    V1_SUFFIX,
    VERSION,
    cache_file,
    cache_meta,
    cache_meta_and_refusal,
    check_settings,
    find_cache_file,
    listed_files,
    quantise,
    read_cache,
    resample,
    save_tracks,
    start_homs,
)
from mme.motion.extract import ExtractOptions, _Job, _work, extract_cache, other_settings, share_name
from mme.motion.flow import DEFAULT_FLOW
from mme.motion.targets import TargetConfig, make_target_fn
from mme.motion.tracks import TRACKER, seed_grid, track
from mme.utils import NAME_MAX, _remove_stale_temp, _temp_names, atomic_path, atomic_write_text


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two generated videos (affine motion), a corrupt one, a single-frame one (tracks that stand still), and a list
    of the four."""
    d = tmp_path_factory.mktemp("videos")
    (d / "cls").mkdir()
    write_video(d / "cls" / "a.mp4", affine_video(30, 120, 150, dx=1.3, dy=0.6, rot_deg=0.8, seed=4)[0])
    write_video(d / "b.mp4", affine_video(12, 96, 96, dx=-2.0, seed=5)[0])
    (d / "bad.mp4").write_bytes(b"not a video at all")
    write_video(d / "one.mp4", affine_video(1, 64, 64)[0])
    (d / "list.txt").write_text("cls/a.mp4 0\nb.mp4 1\nbad.mp4 0\none.mp4 1\n")
    return d


def _cached_dataset(root: Path, out: Path, max_failure_fraction: float) -> PretrainDataset:
    """The pre-training dataset of ``root/list.txt`` (4 frames of 32², stride 2) whose MME targets (2 steps) are read
    from the track cache ``out``."""
    m = ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=2, cache_dir=str(out)), m)
    data = DataConfig(list_file=str(root / "list.txt"), root=str(root), num_frames=4, stride=2, img_size=32,
                      max_failure_fraction=max_failure_fraction)
    return PretrainDataset(data, fn, fn.track_length, track_reads=fn.track_reads)


def report(out, list_file, part=0, parts=1) -> dict:
    """The report that extracting share ``part`` of ``parts`` of ``list_file`` into ``out`` wrote."""
    return json.loads((out / f"failed-{share_name(str(list_file), part, parts)}.json").read_text())


def test_extract_writes_resumes_and_reports_failures(videos, tmp_path):
    out = tmp_path / "cache"
    args = ["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "4",
            "--short-side", "96"]
    assert cli(args) == 1  # a video failed, the others are written
    made = report(out, videos / "list.txt")
    assert made["done"] == 3 and list(made["failed"]) == [str(videos / "bad.mp4")]
    assert "bad.mp4: unreadable" in made["failed"][str(videos / "bad.mp4")]
    a = cache_file(out, "cls/a.mp4")
    mtime = a.stat().st_mtime_ns
    assert cli(args) == 1 and a.stat().st_mtime_ns == mtime  # resumed: the complete file is skipped
    assert report(out, videos / "list.txt")["skipped"] == 3
    disp, valid = load_tracks(a)
    assert disp.shape == (30, 4, 12, 15, 2) and valid.shape == (30, 12, 15)  # 120x150 -> 96x120, stride 8
    assert not list(out.rglob(".*tmp*"))  # no temporary files left behind


def test_a_resumed_extraction_says_it_looks_and_reads_each_files_header_alone(videos, tmp_path, monkeypatch,
                                                                             capsys, caplog):
    """A resumed mme extract over a finished cache printed nothing until it had opened every cache file (47 s at
    240k lines), each read as a whole cache with no record (read_cache), its path built four times. It says what it
    looks at, with a progress bar, reads each file's header, offsets and length alone (cache_meta), and builds each
    video's cache file once."""
    import mme.motion.cache as cache

    (tmp_path / "list.txt").write_text("b.mp4 1\none.mp4 1\n")
    out = tmp_path / "cache"
    args = dict(root=str(videos), length=2, short_side=64)
    assert extract_cache(str(tmp_path / "list.txt"), str(out), **args)["done"] == 2
    built, read, read_cache = [], [], cache.read_cache
    monkeypatch.setattr(extract, "cache_file", lambda *a: built.append(a[1]) or cache_file(*a))
    monkeypatch.setattr(cache, "read_cache", lambda *a, **k: read.append(a[0]) or read_cache(*a, **k))
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the look's bar is drawn on a terminal alone
    with caplog.at_level(logging.INFO, logger="mme.extract"):
        assert extract_cache(str(tmp_path / "list.txt"), str(out), **args)["skipped"] == 2
    assert built == ["b.mp4", "one.mp4"] and read == []
    assert f"extract: looking at the cache files of the 2 videos of share 0/1 in {out}" in caplog.messages
    assert "look:   0%|          | 0/2 [" in capsys.readouterr().err  # (cleared when done)


def test_a_resumed_extraction_stats_each_finished_file_once(videos, tmp_path, monkeypatch):
    """A resumed mme extract looked up each finished cache file four times (its identity, then whether a file is there
    in the look, in other_settings and in the open of its header): 53 s at 240k finished files on a local disk, more
    on NFS. It is looked up once, what it found passed along, the header read from the file then opened."""
    (tmp_path / "list.txt").write_text("b.mp4 1\none.mp4 1\n")
    out = tmp_path / "cache"
    args = dict(root=str(videos), length=2, short_side=64)
    assert extract_cache(str(tmp_path / "list.txt"), str(out), **args)["done"] == 2
    finished = {str(cache_file(out, name)) for name in ("b.mp4", "one.mp4")}
    looked, stat = [], os.stat
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: looked.append(os.fspath(path)) or stat(path, *a, **k))
    assert extract_cache(str(tmp_path / "list.txt"), str(out), **args)["skipped"] == 2
    assert sorted(p for p in looked if p in finished) == sorted(finished)


def test_a_resumed_extraction_passes_over_a_folder_or_fifo_at_a_cache_path_unsaid(videos, tmp_path, caplog):
    """The one look-up of each finished file counted anything there as a file: a folder or FIFO at a cache path was
    warned about ("not a valid mme track cache (... a folder, not a cache file)"), and a folder hid the complete
    version 1 file beside it, so the video was made again and failed at the folder. Only a regular file is looked at
    there, as before the one look-up."""
    (tmp_path / "list.txt").write_text("b.mp4 1\none.mp4 1\n")
    out = tmp_path / "cache"
    args = dict(root=str(videos), length=2, short_side=64)
    assert extract_cache(str(tmp_path / "list.txt"), str(out), **args)["done"] == 2
    folder, fifo = cache_file(out, "b.mp4"), cache_file(out, "one.mp4")
    full = read_cache(folder)
    meta = {k: v for k, v in full.meta.items() if k not in ("version", "quant", "starts", "grid", "homs")}
    write_version_1(cache_file(out, "b.mp4", V1_SUFFIX), quantise(full.disp), full.valid, None, meta)
    folder.unlink()
    folder.mkdir()
    fifo.unlink()
    os.mkfifo(fifo)
    with caplog.at_level("WARNING", logger="mme.extract"):
        made = extract_cache(str(tmp_path / "list.txt"), str(out), **args)
    assert "not a valid mme track cache" not in caplog.text
    assert (made["done"], made["skipped"], made["failed"]) == (1, 1, {})  # before: 0, 1 and b.mp4 failed
    assert fifo.is_file()
    fifo.unlink()  # one that appears after the look, met by the job's second look
    os.mkfifo(fifo)
    job = _Job(str(videos / "one.mp4"), "one.mp4", str(out), fifo, ExtractOptions(length=2, short_side=64), True, None)
    with caplog.at_level("WARNING", logger="mme.extract"):
        done = _work(job)
    assert (done.error, done.made) == (None, True)
    assert "not a valid mme track cache" not in caplog.text and fifo.is_file()
    with caplog.at_level("WARNING", logger="mme.extract"):  # a path under a file: no cache there, as a missing one
        assert other_settings(fifo / "x.tracks", ExtractOptions(length=2, short_side=64), None) is None
    assert "not a valid mme track cache" not in caplog.text


def test_the_line_of_counts_is_the_commands_and_a_library_caller_gets_none(videos, tmp_path, capsys):
    """``extract_cache`` printed ``mme extract``'s line of counts from inside the library: ``mme bench pipeline``,
    which builds a track cache with it, printed a stray "extract: 1 written, 0 already complete, 0 failed" among its
    figures. The command says it (``say_counts``), a Python caller gets the report alone."""
    (tmp_path / "list.txt").write_text("b.mp4 1\n")
    args = dict(root=str(videos), length=2, short_side=64)
    assert extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "lib"), **args)["done"] == 1
    assert capsys.readouterr().out == ""
    assert cli(["extract", str(tmp_path / "list.txt"), "--root", str(videos), "--out", str(tmp_path / "cli"),
                "--length", "2", "--short-side", "64"]) == 0
    assert capsys.readouterr().out == "extract: 1 written, 0 already complete, 0 failed\n"


def test_a_resumed_extractions_log_in_a_file_has_each_line_start_with_mme(videos, tmp_path):
    """The look's bar, cleared when done, and the extraction's bar leave their line open: in a file (a CI log, not a
    terminal) a warning logged while one was drawn, and the count after the look, followed the bar's text on its
    line, missed by a search for lines that start with ``[mme``. The look's bar is drawn on a terminal alone, and a
    line logged after a bar starts a line of its own."""
    out = tmp_path / "cache"
    (tmp_path / "list.txt").write_text("b.mp4 1\none.mp4 1\nbad.mp4 0\n")
    args = dict(root=str(videos), length=2, short_side=64)
    assert extract_cache(str(tmp_path / "list.txt"), str(out), **args)["done"] == 2
    cut = cache_file(out, "one.mp4")
    cut.write_bytes(cut.read_bytes()[:100])
    with open(tmp_path / "err.txt", "w") as err:
        subprocess.run([sys.executable, "-m", "mme.cli", "extract", str(tmp_path / "list.txt"), "--root", str(videos),
                        "--out", str(out), "--length", "2", "--short-side", "64"], stdout=subprocess.DEVNULL,
                       stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    logged = [line for line in (tmp_path / "err.txt").read_text().split("\n") if "[mme " in line]
    assert all(line.startswith("[mme ") for line in logged), logged
    said = "\n".join(logged)
    assert f"WARNING] extract: {cut}: not a valid mme track cache" in said and "look:" not in said
    assert "INFO] extract: 3 of 3 videos in share 0/1, 1 already done, 2 to do" in said
    assert f"WARNING] failed: {videos / 'bad.mp4'}: unreadable" in said  # logged while the bar was drawn
    assert "extract: 100%" in (tmp_path / "err.txt").read_text()  # the extraction's bar is still drawn


def test_a_one_frame_video_is_cached_as_online_training_tracks_it(videos, tmp_path):
    """A video of one frame trains online (tracks that stand still: frames past the last read as the last), but
    `mme extract` failed it as too short, and training from the cache then failed it, advising the `mme extract`
    that could not make it. The cache holds it now as the online path tracks it: one start of zero motion."""
    (tmp_path / "list.txt").write_text("one.mp4 1\n")
    made = extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "cache"), root=str(videos), length=4,
                         short_side=64)
    assert (made["done"], made["failed"]) == (1, {})
    disp, valid = load_tracks(cache_file(tmp_path / "cache", "one.mp4"))
    assert disp.shape == (1, 4, 8, 8, 2) and not disp.any() and valid.all()
    m = ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    data = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(videos), num_frames=4, stride=2, img_size=32,
                      max_failure_fraction=0.0)
    online = make_target_fn(TargetConfig(kind="mme", track_length=4), m)
    cached = make_target_fn(TargetConfig(kind="mme", track_length=4, cache_dir=str(tmp_path / "cache")), m)
    for seed in range(3):  # crops of the one frame
        sample = PretrainDataset(data, track_length=4).sample(0, np.random.default_rng(seed))
        a, b = online(sample), cached(sample)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), seed
        assert not a["disp"].any() and a["track_valid"].all()
    item = PretrainDataset(data, cached, cached.track_length, track_reads=cached.track_reads)[0]
    assert item["index"] == 0 and not item["motion"]["disp"].any()


def test_a_bad_list_line_is_skipped_and_reported_as_training_skips_it(videos, tmp_path, capsys, caplog):
    """One line that is not `path [label]` stopped all of `mme extract`, where training and `mme check` skip and count
    it. It is skipped, warned about and listed in the report of share 0 as failed; the videos are made."""
    list_file = tmp_path / "list.txt"
    list_file.write_text("b.mp4 1\nb.mp4 1.5\none.mp4 0\ncls/a.mp4 -2\n")
    args = ["extract", str(list_file), "--root", str(videos), "--out", str(tmp_path / "cache"), "--length", "2",
            "--short-side", "64"]
    with caplog.at_level("WARNING", logger="mme.extract"):
        assert cli(args + ["--shard", "1/2"]) == 0  # share 1 (one.mp4) does not list them
        assert cli(args + ["--shard", "0/2"]) == 1
    made = report(tmp_path / "cache", list_file, 0, 2)
    assert made["done"] == 1 and cache_file(tmp_path / "cache", "b.mp4").is_file()
    assert made["failed"] == {f"{list_file}:2": f"{list_file}:2: bad label '1.5' (expected a class id >= 0 at the "
                                                "end of the line): 'b.mp4 1.5'",
                              f"{list_file}:4": f"{list_file}:4: negative label -2: 'cls/a.mp4 -2'"}
    assert report(tmp_path / "cache", list_file, 1, 2)["failed"] == {}
    said = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert said == [f"2 lines of {list_file} are not 'path [label]' and are left out: "
                    f"{made['failed'][f'{list_file}:2']}; {made['failed'][f'{list_file}:4']}"], said
    assert "1 written, 0 already complete, 2 failed" in capsys.readouterr().out


def test_resuming_with_other_settings_stops_before_any_work(videos, tmp_path, capsys):
    """Finished caches made with other settings (e.g. the flow of an earlier default) are not silently made again:
    the run stops and names one file and the settings that differ, until --overwrite says to redo them."""
    out = tmp_path / "cache"
    args = ["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--short-side", "64",
            "--length", "3"]
    assert cli(args + ["--flow", "dis"]) == 1  # a bad video
    a = cache_file(out, "cls/a.mp4")
    mtime = a.stat().st_mtime_ns
    capsys.readouterr()
    for other, said in ((["--flow", "dis-fast"], "flow dis (this run: dis-fast)"),
                        (["--flow", "dis", "--length", "4"], "length 3 (this run: 4)")):
        assert cli(args + other) == 1
        err = capsys.readouterr().err
        assert err.startswith("mme extract: error: 3 videos already have caches"), err  # the command named once
        assert said in err and "--overwrite" in err, err
        assert a.stat().st_mtime_ns == mtime
    assert cli(args + ["--flow", "dis-fast", "--overwrite"]) == 1
    assert cache_meta(a)["flow"] == "dis-fast"
    assert report(out, videos / "list.txt")["done"] == 3


def _stopping_at(video: str, error: BaseException):
    """extract_video, but for ``video``, where it raises ``error`` (Ctrl-C, a full disk) before its file is made."""
    made = extract.extract_video

    def extract_video(path, out_path, opts):
        if path.endswith(video):
            raise error
        made(path, out_path, opts)
    return extract_video


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), NoSpaceError(f"c: could not be written; {extract.KEPT}")])
def test_an_overwrite_stopped_mid_way_run_again_keeps_the_files_it_made_and_makes_the_earlier_ones(
        videos, tmp_path, monkeypatch, capsys, stop):
    """An --overwrite stopped mid-way (Ctrl-C, a full disk) said that the same command continues, keeping what it
    finished, but that command made every file again (0 already done). It keeps the files it made now, and makes
    the others again, those made before it began among them (one whose record is damaged past its header, which a
    plain resume keeps): the same bytes as an overwrite not stopped; its marker goes once every video is done."""
    listed = tmp_path / "list.txt"
    listed.write_text("cls/a.mp4\nb.mp4\none.mp4\n")
    out, whole = tmp_path / "cache", tmp_path / "whole"

    def extract_into(cache, *more):
        return cli(["extract", str(listed), "--root", str(videos), "--out", str(cache), "--length", "2",
                    "--short-side", "64", *more])

    assert extract_into(out) == 0 and extract_into(whole) == 0 and extract_into(whole, "--overwrite") == 0
    files = [cache_file(out, p) for p in ("cls/a.mp4", "b.mp4", "one.mp4")]
    damaged = bytearray(files[2].read_bytes())
    damaged[-2] ^= 0xFF  # the last record's (zlib's check fails at its read; the header is whole)
    files[2].write_bytes(bytes(damaged))
    earlier = [utils.file_identity(f) for f in files]
    with monkeypatch.context() as m:
        m.setattr(extract, "extract_video", _stopping_at("b.mp4", stop))
        capsys.readouterr()
        assert extract_into(out, "--overwrite") != 0
    said = capsys.readouterr().err
    assert "the same command continues" in said, said
    stopped = [utils.file_identity(f) for f in files]
    assert stopped[0] != earlier[0] and stopped[1:] == earlier[1:]  # a made, b not, one not reached
    assert extract_into(out, "--overwrite") == 0
    assert "2 written, 1 already complete" in capsys.readouterr().out
    assert utils.file_identity(files[0]) == stopped[0]  # kept
    assert all(utils.file_identity(f) != e for f, e in zip(files[1:], earlier[1:]))  # made again
    assert [f.read_bytes() for f in files] == [(whole / f.relative_to(out)).read_bytes() for f in files]
    assert not list(out.glob("overwriting-*")) and not list(whole.glob("overwriting-*"))
    assert extract_into(out, "--overwrite") == 0 and "3 written" in capsys.readouterr().out  # a new one: every file


def test_each_share_of_an_overwrite_keeps_its_own_marker(videos, tmp_path, monkeypatch, capsys):
    """Shares of one --overwrite on two machines (--shard k/n) on one --out: one that ends does not take away the
    marker of another that stopped, which keeps the files it made when run again; a marker of other settings is
    another overwrite's, which makes every file again."""
    listed = tmp_path / "list.txt"
    listed.write_text("cls/a.mp4\nb.mp4\none.mp4\n")  # share 0/2: a.mp4, one.mp4; share 1/2: b.mp4
    out = tmp_path / "cache"

    def extract_into(*more):
        return cli(["extract", str(listed), "--root", str(videos), "--out", str(out), "--short-side", "64", *more])

    assert extract_into("--length", "2") == 0
    a, one = cache_file(out, "cls/a.mp4"), cache_file(out, "one.mp4")
    with monkeypatch.context() as m:
        m.setattr(extract, "extract_video", _stopping_at("one.mp4", KeyboardInterrupt()))
        assert extract_into("--length", "2", "--overwrite", "--shard", "0/2") != 0
    made, earlier = utils.file_identity(a), utils.file_identity(one)
    assert extract_into("--length", "2", "--overwrite", "--shard", "1/2") == 0
    marker = [p.name for p in out.glob("overwriting-*")]
    capsys.readouterr()
    assert extract_into("--length", "2", "--overwrite", "--shard", "0/2") == 0
    assert "1 written, 1 already complete" in capsys.readouterr().out
    assert marker == [f"overwriting-{share_name(str(listed), 0, 2)}.jsonl"]  # share 1/2's gone as it ended
    assert utils.file_identity(a) == made and utils.file_identity(one) != earlier
    with monkeypatch.context() as m:
        m.setattr(extract, "extract_video", _stopping_at("one.mp4", KeyboardInterrupt()))
        assert extract_into("--length", "2", "--overwrite", "--shard", "0/2") != 0
    assert extract_into("--length", "3", "--overwrite", "--shard", "0/2") == 0
    assert "2 written, 0 already complete" in capsys.readouterr().out and not list(out.glob("overwriting-*"))


def test_an_overwrite_stopped_mid_way_marks_the_file_it_made_of_a_video_listed_twice(videos, tmp_path,
                                                                                     monkeypatch, capsys):
    """A video listed twice, relative to --root and by its absolute path, has a cache file of each path: an overwrite
    stopped after making the first marked the second, its file from before the overwrite, as made (the files made
    were looked up by the video's path), so the same command run again kept it. It marks the file it made."""
    listed, out = tmp_path / "list.txt", tmp_path / "cache"
    listed.write_text(f"b.mp4\n{videos / 'b.mp4'}\n")
    args = ["extract", str(listed), "--root", str(videos), "--out", str(out), "--length", "2", "--short-side", "64"]
    assert cli(args) == 0
    files = [cache_file(out, "b.mp4"), cache_file(out, str(videos / "b.mp4"))]
    earlier = [utils.file_identity(f) for f in files]
    real, calls = extract.extract_video, []

    def stopping_at_the_second(path, out_path, opts):
        calls.append(out_path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, out_path, opts)

    with monkeypatch.context() as m:
        m.setattr(extract, "extract_video", stopping_at_the_second)
        assert cli(args + ["--overwrite"]) != 0
    assert calls == files
    marked = [json.loads(line)[0] for line in next(out.glob("overwriting-*")).read_text().splitlines()[1:]]
    assert marked == [str(files[0].relative_to(out))]
    capsys.readouterr()
    assert cli(args + ["--overwrite"]) == 0 and "1 written, 1 already complete" in capsys.readouterr().out
    assert all(utils.file_identity(f) != e for f, e in zip(files, earlier))  # each made by the overwrite


def test_an_overwrite_whose_video_failed_keeps_its_marker_and_the_same_command_makes_that_one_alone(
        videos, tmp_path, monkeypatch, capsys):
    """A video that failed in an --overwrite keeps its file of other settings: the marker was removed all the same,
    so the same --overwrite made every file again and the command without it was refused (a cache of mixed
    settings). The marker is kept while a video failed, the command's last line saying so: the same command makes
    that video alone, then removes it."""
    listed, out = tmp_path / "list.txt", tmp_path / "cache"
    listed.write_text("cls/a.mp4\nb.mp4\n")

    def extract_into(*more):
        return cli(["extract", str(listed), "--root", str(videos), "--out", str(out), "--short-side", "64", *more])

    assert extract_into("--length", "2") == 0
    with monkeypatch.context() as m:
        m.setattr(extract, "extract_video", _stopping_at("b.mp4", VideoError(f"{videos / 'b.mp4'}: missing")))
        capsys.readouterr()
        assert extract_into("--length", "3", "--overwrite") == 1
    marker = out / f"overwriting-{share_name(str(listed), 0, 1)}.jsonl"
    assert "1 written, 0 already complete, 1 failed" in (said := capsys.readouterr().out), said
    assert f"; the same command makes again only the videos that failed, keeping the files it made (listed in " \
        f"{marker})" in said, said
    a = utils.file_identity(cache_file(out, "cls/a.mp4"))
    assert extract_into("--length", "3", "--overwrite") == 0
    assert "1 written, 1 already complete, 0 failed" in capsys.readouterr().out and not marker.exists()
    assert utils.file_identity(cache_file(out, "cls/a.mp4")) == a
    assert extract_into("--length", "3") == 0 and "0 written, 2 already complete" in capsys.readouterr().out


def test_a_plain_run_that_makes_every_video_ends_the_marker_of_an_overwrite_whose_video_failed(videos, tmp_path,
                                                                                                  capsys):
    """An --overwrite whose video failed (a file listed before it was there) keeps its marker; a plain run that then
    makes that video left the marker, so the next --overwrite took itself for that one continued, "that stopped",
    and kept every file it listed. The first run of the share in which no video fails removes it."""
    root, listed, out = tmp_path / "videos", tmp_path / "list.txt", tmp_path / "cache"
    (root / "cls").mkdir(parents=True)
    for name in ("cls/a.mp4", "b.mp4"):
        shutil.copyfile(videos / name, root / name)
    args = ["extract", str(listed), "--root", str(root), "--out", str(out), "--length", "2", "--short-side", "64"]
    listed.write_text("cls/a.mp4\nb.mp4\n")
    assert cli(args) == 0
    listed.write_text("cls/a.mp4\nb.mp4\nlate.mp4\n")
    marker = out / f"overwriting-{share_name(str(listed), 0, 1)}.jsonl"
    assert cli(args + ["--overwrite"]) == 1 and marker.exists()  # late.mp4 missing
    shutil.copyfile(videos / "b.mp4", root / "late.mp4")
    capsys.readouterr()
    assert cli(args) == 0 and "1 written, 2 already complete, 0 failed" in capsys.readouterr().out
    assert not marker.exists()
    assert cli(args + ["--overwrite"]) == 0 and "3 written, 0 already complete" in capsys.readouterr().out


def test_a_marker_whose_last_line_a_kill_cut_short_is_continued_on_a_line_of_its_own(videos, tmp_path,
                                                                                       monkeypatch, capsys):
    """An overwrite killed mid-way through a line of its marker, continued: the first line it added was joined to the
    cut one, so the file it named, made, was made again by the next run. The cut line alone is passed over."""
    listed, out = tmp_path / "list.txt", tmp_path / "cache"
    listed.write_text("cls/a.mp4\nb.mp4\none.mp4\n")
    args = ["extract", str(listed), "--root", str(videos), "--out", str(out), "--length", "2", "--short-side", "64"]
    assert cli(args) == 0
    marker = out / f"overwriting-{share_name(str(listed), 0, 1)}.jsonl"
    with monkeypatch.context() as m:
        m.setattr(extract, "extract_video", _stopping_at("one.mp4", KeyboardInterrupt()))
        assert cli(args + ["--overwrite"]) != 0
        marker.write_text(marker.read_text()[:-9])  # b.mp4's line cut short
        assert cli(args + ["--overwrite"]) != 0  # b.mp4 made again, one.mp4 not
    capsys.readouterr()
    assert cli(args + ["--overwrite"]) == 0 and "1 written, 2 already complete" in capsys.readouterr().out


def test_a_file_an_overwrite_made_then_replaced_by_its_earlier_bytes_and_mtime_is_made_again(videos, tmp_path,
                                                                                              monkeypatch, capsys,
                                                                                              caplog):
    """A file the stopped overwrite made, then put back as it was before it (its bytes and mtime: `rsync -a` from a
    copy), is another file than the marker lists: the same command makes it again."""
    listed, out = tmp_path / "list.txt", tmp_path / "cache"
    listed.write_text("cls/a.mp4\nb.mp4\n")
    args = ["extract", str(listed), "--root", str(videos), "--out", str(out), "--length", "2", "--short-side", "64"]
    assert cli(args) == 0
    a = cache_file(out, "cls/a.mp4")
    earlier, earlier_ns = a.read_bytes(), a.stat().st_mtime_ns
    with monkeypatch.context() as m:
        m.setattr(extract, "extract_video", _stopping_at("b.mp4", KeyboardInterrupt()))
        assert cli(args + ["--overwrite"]) != 0
    assert a.stat().st_mtime_ns != earlier_ns
    a.write_bytes(earlier)
    os.utime(a, ns=(earlier_ns, earlier_ns))
    capsys.readouterr()
    caplog.set_level(logging.INFO, logger="mme")
    assert cli(args + ["--overwrite"]) == 0 and "2 written, 0 already complete" in capsys.readouterr().out
    assert "keeping the 1 file it made (" in caplog.text, caplog.text
    assert a.stat().st_mtime_ns != earlier_ns


def test_caches_another_job_makes_after_the_start_check_are_looked_at_again_before_each_video(videos, tmp_path,
                                                                                           monkeypatch, capsys):
    """Two extractions of overlapping lists into one --out, with other settings, at once: the refusal of files made
    otherwise ran once, at the start, so both went on and left a cache of mixed settings, each saying every file
    written. Now each video looks at its file again just before it is made: one the other job made otherwise fails
    that video with the start's refusal (the other job's file kept), one made with these settings is skipped."""
    (videos / "bo.txt").write_text("b.mp4\none.mp4\n")
    out = tmp_path / "cache"
    ours = ExtractOptions(length=2, short_side=64)
    real, made = extract._share_jobs, {}

    def other_job_writes_meanwhile(*args):
        found = real(*args)  # the start's check: nothing there yet
        extract.extract_video(str(videos / "b.mp4"), cache_file(out, "b.mp4"), dataclasses.replace(ours, seed_stride=4))
        extract.extract_video(str(videos / "one.mp4"), cache_file(out, "one.mp4"), ours)
        made["one"] = cache_file(out, "one.mp4").stat().st_mtime_ns
        return found

    monkeypatch.setattr(extract, "_share_jobs", other_job_writes_meanwhile)
    assert cli(["extract", str(videos / "bo.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
                "--short-side", "64"]) == 1
    assert "0 written, 1 already complete, 1 failed" in capsys.readouterr().out
    failed = report(out, videos / "bo.txt")["failed"]
    assert list(failed) == [str(videos / "b.mp4")]
    assert failed[str(videos / "b.mp4")] == (
        f"1 video already has caches in {out} made with other settings, e.g. b.mp4: seed_stride 4 (this "
        f"run: 8). Resume with the settings they were made with, or pass --overwrite to make them again")
    assert cache_meta(cache_file(out, "b.mp4"))["seed_stride"] == 4  # the other job's files, as it made them
    assert cache_file(out, "one.mp4").stat().st_mtime_ns == made["one"]


def test_two_jobs_starting_one_video_at_once_make_it_once(videos, tmp_path, monkeypatch):
    """Two extractions into one --out starting the same video at the same instant: each looked at its file just
    before making it, found none, and both made it. Its making holds the file's lock: the second waits, then finds
    it made and skips it; no lock file is left."""
    from mme.data.lists import read_list

    (videos / "b1.txt").write_text("b.mp4\n")
    out = tmp_path / "cache"
    opts = ExtractOptions(length=2, short_side=64)
    mine = {cache_file(out, e.path): e for e in read_list(str(videos / "b1.txt"))[0]}
    jobs = [extract._share_jobs(mine, str(videos), str(out), opts, None)[0][0] for _ in range(2)]
    real, made = extract.extract_video, []

    def slow(*args):  # the making takes a while: the other job starts meanwhile
        made.append(threading.current_thread().name)
        time.sleep(0.5)
        real(*args)

    monkeypatch.setattr(extract, "extract_video", slow)
    results = {}
    threads = [threading.Thread(target=lambda j=j, n=n: results.__setitem__(n, extract._work(j)), name=n)
               for n, j in zip(("first", "second"), jobs)]
    threads[0].start()
    time.sleep(0.2)
    threads[1].start()
    for t in threads:
        t.join(30)
    assert made == ["first"]
    made_at = cache_file(out, "b.mp4")
    assert results == {"first": (str(videos / "b.mp4"), made_at, None, True, None),
                       "second": (str(videos / "b.mp4"), made_at, None, False, None)}
    assert other_settings(cache_file(out, "b.mp4"), opts) == {}
    assert sorted(p.name for p in out.iterdir()) == [".locks", "b.mp4.tracks"]
    assert not any((out / ".locks").rglob("*.lock"))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_video_another_job_holds_is_waited_for_after_the_others_and_said(videos, tmp_path, caplog, request,
                                                                          monkeypatch, workers):
    """The lock of a video's making held by another job (one stopped with Ctrl-Z): the extraction waited for it
    silently, the other videos not made meanwhile (with one worker, never). It makes the others first, then says it
    waits for that video, naming its lock, and makes it once the lock is free."""
    from mme.data.lists import read_list

    (videos / "ab.txt").write_text("cls/a.mp4\nb.mp4\n")
    out = tmp_path / "cache"
    mine = {cache_file(out, e.path): e for e in read_list(str(videos / "ab.txt"))[0]}
    held = extract._share_jobs(mine, str(videos), str(out), ExtractOptions(length=2, short_side=64), None)[0][0]
    assert held.listed == "cls/a.mp4"
    other_made = threading.Event()
    holding = contextlib.ExitStack()  # the other job's hold of the lock, let go when the extraction says it waits

    class Waits(logging.Handler):
        def emit(self, record):  # (in this thread, as the extraction says it, before it waits)
            if "waiting for" in record.getMessage():
                if cache_file(out, "b.mp4").is_file():
                    other_made.set()
                holding.close()

    real_work = extract._work

    def work(job):  # a wait for the lock, said or not, lets it go first: on this thread it would never end
        if job.wait:
            holding.close()
        return real_work(job)

    monkeypatch.setattr(extract, "_work", work)
    caplog.set_level(logging.INFO, logger="mme")
    logging.getLogger("mme").addHandler(handler := Waits())
    request.addfinalizer(lambda: logging.getLogger("mme").removeHandler(handler))
    with holding:
        assert holding.enter_context(utils.exclusive_lock(held.lock))
        report = extract_cache(str(videos / "ab.txt"), str(out), root=str(videos), length=2, short_side=64,
                               workers=workers)
    assert other_made.is_set()  # made while the lock was held
    assert report["done"] == 2 and report["failed"] == {}
    assert other_settings(cache_file(out, "cls/a.mp4"), ExtractOptions(length=2, short_side=64)) == {}
    said = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert said == [f"extract: waiting for {videos / 'cls' / 'a.mp4'}, being made by another job (it holds "
                    f"{held.lock})"]


def test_a_held_video_whose_holder_is_done_before_the_second_pass_is_made_without_a_wait_said(videos, tmp_path,
                                                                                               caplog, monkeypatch):
    """The lock of a video's making held by another job that ends while the extraction makes the other videos: it
    said it waited for the video, being made by another job, though the lock was free when it came back to it. It is
    said only where the lock is still held then."""
    from mme.data.lists import read_list

    (videos / "ab.txt").write_text("cls/a.mp4\nb.mp4\n")
    out = tmp_path / "cache"
    mine = {cache_file(out, e.path): e for e in read_list(str(videos / "ab.txt"))[0]}
    held = extract._share_jobs(mine, str(videos), str(out), ExtractOptions(length=2, short_side=64), None)[0][0]
    taken, release, released = threading.Event(), threading.Event(), threading.Event()

    def hold():
        with utils.exclusive_lock(held.lock):
            taken.set()
            release.wait(30)
        released.set()

    real = extract._try

    def trying(job):  # (one worker: in this process) the holder ends once the first pass has found it held
        tried = real(job)
        if tried[1] is None:
            release.set()
            assert released.wait(10)
        return tried

    monkeypatch.setattr(extract, "_try", trying)
    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    caplog.set_level(logging.INFO, logger="mme")
    report = extract_cache(str(videos / "ab.txt"), str(out), root=str(videos), length=2, short_side=64)
    holder.join(40)
    assert release.is_set() and report["done"] == 2 and report["failed"] == {}
    assert [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()] == []


def test_a_video_whose_name_is_too_long_for_its_cache_files_name_is_extracted_and_read(videos, tmp_path):
    """A video's cache file is its name + '.tracks' and its temporary file ``.<name>.tracks.tmp<pid>.tracks``: a name
    of 230 bytes (77 characters of a CJK title) could not get a track cache (extract failed it, and a run's advice
    sent the user back to the same extract), one of 248 an ENAMETOOLONG traceback from extract and from a run with
    target.cache_dir, as did a video in a folder of a name too long. A name too long gets a shortened one (its first
    bytes and a hash), found by the run; a temporary name too long is shortened too; a folder's name too long for a
    file name is said as such (no file can be there, but it is not "missing")."""
    root = tmp_path / "root"
    root.mkdir()
    names = ["a" * 236 + ".mp4", "b" * 246 + ".mp4", "\u8996" * 82 + ".mp4"]  # 240, 250 and 250 bytes
    for name in names:
        (root / name).write_bytes((videos / "b.mp4").read_bytes())
    (root / "list.txt").write_text("".join(f"{name} 0\n" for name in names))
    out = tmp_path / "cache"
    made = extract_cache(str(root / "list.txt"), str(out), root=str(root), length=2, short_side=64)
    assert (made["done"], made["failed"]) == (3, {})
    files = sorted(out.glob("*.tracks"))
    assert files == sorted(cache_file(out, name) for name in names) and len(set(files)) == 3
    assert [len(os.fsencode(f.name)) for f in files] == [247, 255, 255]
    assert files[1].name.startswith("b" * 231 + "~") and files[2].name.startswith("\u8996" * 77 + "~")  # (whole chars)
    assert not list(out.rglob(".*tmp*"))
    again = extract_cache(str(root / "list.txt"), str(out), root=str(root), length=2, short_side=64)
    assert (again["done"], again["skipped"]) == (0, 3)
    data = _cached_dataset(root, out, max_failure_fraction=0.0)
    for i in range(3):
        assert find_cache_file(out, str(root / names[i])) == cache_file(out, names[i])
        assert data[(0, i)]["motion"]["disp"].shape[0] == 2

    (root / "missing.txt").write_text("c" * 300 + "/x.mp4\n")
    made = extract_cache(str(root / "missing.txt"), str(out), root=str(root), length=2, short_side=64)
    assert list(made["failed"].values()) == [f"{root / ('c' * 300)}/x.mp4: unreadable (File name too long)"]

    long = tmp_path / ("d" * 250 + ".json")
    with atomic_path(long) as tmp:
        assert len(os.fsencode(tmp.name)) <= 255 and tmp.name.endswith(".json") and tmp.name.startswith(".ddd")
        tmp.write_text("{}")
        stale = tmp.with_name(tmp.name.replace(f"tmp{os.getpid()}", f"tmp{dead_pid()}"))
        stale.write_text("")
        assert _remove_stale_temp(stale, _temp_names([long.name], NAME_MAX)) and not stale.exists()
    assert long.read_text() == "{}"


def test_stale_temporary_files_are_matched_to_a_folders_names_once(tmp_path, monkeypatch):
    """A folder's stale temporary files are matched to the names of its files by each name's temporary stem made
    once for the folder: made again for every temporary file found, an extract of a share of 220k cache files with
    16 killed writes' files took 24 s to clean up, not 4."""
    names = [f"{i:04d}.webm.tracks" for i in range(300)]
    pid = dead_pid()
    for name in names[:5]:
        (tmp_path / f".{name}.tmp{pid}.tracks").write_bytes(b"")
    (tmp_path / f".other.tracks.tmp{pid}.tracks").write_bytes(b"")  # another share's file's: not one of names
    stems, made = utils._temp_stem, []
    monkeypatch.setattr(utils, "_temp_stem", lambda name, *args: made.append(name) or stems(name, *args))
    utils.remove_stale_temps_in(tmp_path, set(names))
    assert sorted(made) == sorted(names * 2)  # (today's stem and an earlier mme's)
    assert [p.name for p in tmp_path.iterdir()] == [f".other.tracks.tmp{pid}.tracks"]


def test_a_stale_temporary_file_of_a_long_name_that_an_earlier_mme_wrote_is_removed(tmp_path):
    """A name that fitted a temporary file's name with its writer's PID but not with the longest PID kept it whole
    there in an earlier mme, which shortened no name: that file is still found as stale, as is today's shortened
    one (before: only the shortened one was looked for, and the earlier one was left for good). So is the name an
    earlier mme shortened, with no room for the tag it did not write (9 bytes less shortened than today's)."""
    pid = str(dead_pid())
    name = "v" * (255 - len(f"..tmp{pid}.tracks") - len(".mp4.tracks")) + ".mp4.tracks"  # its temp: 255 bytes
    assert utils._temp_stem(name, utils.NAME_MAX) != name
    earlier = tmp_path / f".{name}.tmp{pid}.tracks"
    long = "v" * 300 + ".mp4.tracks"
    stem = utils.fitting_name(long.removesuffix(".tracks"), ".tracks", room=len(f"..tmp{utils.PID_MAX}.tracks"),
                              limit=utils.NAME_MAX)  # (as an earlier mme shortened it)
    shortened = tmp_path / f".{stem}.tmp{pid}.tracks"
    assert shortened.name != f".{utils._temp_stem(long, utils.NAME_MAX)}.tmp{pid}.tracks"
    now = tmp_path / f".{utils._temp_stem(name, utils.NAME_MAX)}.tmp{pid}.tracks"
    for tmp in (earlier, shortened, now):
        tmp.write_bytes(b"x")
    assert len(os.fsencode(earlier.name)) == 255
    stems = utils._temp_names([name, long], utils.NAME_MAX)
    assert all(utils._is_stale_temp(tmp, stems) for tmp in (earlier, shortened, now))
    utils.remove_stale_temps([tmp_path / name, tmp_path / long])
    assert not list(tmp_path.iterdir())


def test_finding_a_cache_file_fits_each_part_of_the_path_once(tmp_path, monkeypatch):
    """A run looks up each video's cache file at its start: the parts of its path are fitted to a file name
    (:func:`~mme.utils.fitting_name`) once, not again for every tail of the path and suffix, and a path with no part
    near the limit is not encoded at all (a run of 50k videos started 1.2x, 10k of a moved dataset 1.9x slower)."""
    from mme.motion import cache

    title = "\u8996" * 90 + ".mp4"  # 364 bytes
    made = {rel: cache_file(tmp_path, rel) for rel in ("train/class_1/vid_0001.mp4", f"train/class_1/{title}")}
    assert made[f"train/class_1/{title}"].name != title + ".tracks"
    listed = frozenset(tuple(f.relative_to(tmp_path).parts) for f in made.values())
    fit, fitted = cache.fitting_name, []
    monkeypatch.setattr(cache, "fitting_name", lambda name, *a: fitted.append(name) or fit(name, *a))
    assert find_cache_file(tmp_path, "/data/k400/train/class_1/vid_0001.mp4", listed) == \
        made["train/class_1/vid_0001.mp4"]
    assert fitted == []
    assert find_cache_file(tmp_path, f"/data/k400/train/class_1/{title}", listed) == made[f"train/class_1/{title}"]
    assert len(fitted) == 2 * 5  # (each of the 5 parts under the anchor, for each suffix)


def test_the_cache_file_of_a_path_of_no_parts_is_a_file_not_the_cache_folder(tmp_path):
    """A list line '.' (or '/') names no file: its cache file is '..tracks' in the folder, as before cache names were
    fitted, not the cache folder itself."""
    for video in (".", "", "/", "./"):
        assert cache_file(tmp_path, video) == tmp_path / "..tracks"
        assert cache_file(tmp_path, video, V1_SUFFIX) == tmp_path / f".{V1_SUFFIX}"


def test_a_video_that_fails_leaves_no_folder_in_the_cache(videos, tmp_path):
    """A video's making is locked in --out's .locks: its lock beside its cache file made the file's folders before
    the video was read, so a video that fails (a wrong --root: every one) left them made, empty."""
    (videos / "missing.txt").write_text("nope/sub/missing.mp4\nb.mp4\n")
    out = tmp_path / "cache"
    report = extract.extract_cache(str(videos / "missing.txt"), str(out), root=str(videos), length=2, short_side=64)
    assert list(report["failed"]) == [str(videos / "nope" / "sub" / "missing.mp4")] and report["done"] == 1
    assert not (out / "nope").exists() and cache_file(out, "b.mp4").is_file()


def test_many_failed_videos_are_a_few_lines_and_the_rest_counted_naming_the_report(videos, tmp_path, caplog):
    """A wrong --root: one warning per video (a line for each of Kinetics' 240k). The first 5 are said, then one
    line each time their count doubles, and one for those left, naming the report that lists them all."""
    (tmp_path / "list.txt").write_text("".join(f"gone{i}.mp4\n" for i in range(12)) + "b.mp4\n")
    caplog.set_level(logging.WARNING, logger="mme")
    made = extract.extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "cache"), root=str(videos), length=2,
                                 short_side=64)
    assert len(made["failed"]) == 12 and made["done"] == 1
    said = [r.getMessage() for r in caplog.records]
    assert [m.split(": ")[:2] for m in said[:5]] == [["failed", str(videos / f"gone{i}.mp4")] for i in range(5)]
    assert said[4].endswith("; later ones are counted each time their number doubles (10, ...)")
    assert said[5:] == ["extract: 5 more videos failed: 10 so far",
                        f"extract: 2 more videos failed: 12 in all, each in {made['reports'][0]}"], said


def test_extract_stops_on_ffmpeg_out_of_memory_and_fails_no_video(videos, tmp_path, monkeypatch):
    """FFmpeg out of memory (ENOMEM) on a sound video was that video's failure in the report; it is the machine's:
    the extraction stops on it, as on a full disk, with the files made kept, and the video is no failure."""
    out_of_memory_opening(monkeypatch, lambda path: path.endswith("b.mp4"))
    (tmp_path / "list.txt").write_text("b.mp4\n")
    with pytest.raises(OutOfMemory, match=r"b\.mp4: out of memory while reading it .*the video is not at fault"):
        extract.extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "cache"), root=str(videos), length=2,
                              short_side=64)


def test_extract_refuses_a_video_too_thin_to_train_on_before_it_makes_a_working_frame(videos, tmp_path):
    """A 64x1 video was tracked on a 14336x224 working frame (its short side resized to --short-side: 37 s and 18 MB
    for 30 frames); it is a failed video, named with its size, and the others are made."""
    write_video(tmp_path / "line.mkv", affine_video(8, 1, 64, dx=1.0)[0])
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'line.mkv'}\nb.mp4\n")
    out = tmp_path / "cache"
    report = extract.extract_cache(str(tmp_path / "list.txt"), str(out), root=str(videos), length=2, short_side=64)
    assert report["done"] == 1 and cache_file(out, "b.mp4").is_file()
    assert {path: str(why) for path, why in report["failed"].items()} == {
        str(tmp_path / "line.mkv"): f"{tmp_path / 'line.mkv'}: unreadable (its frames are 64x1, whose short side is "
                                    f"under 16 px)"}


def test_extract_fails_a_named_pipe_in_its_list_as_no_regular_file_and_goes_on(videos, tmp_path):
    """mme extract waited for good on a named pipe in its list: the record of its failure read the file for its
    fingerprint, an open that waits for a writer. It is failed as no regular file, unread, and the others are made."""
    pipe, waited = tmp_path / "pipe.mp4", []
    os.mkfifo(pipe)

    def writer():  # (before: ends the wait, the extraction's open of the pipe its reader)
        with contextlib.suppress(OSError):  # (ENXIO: no reader)
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
            waited.append(True)

    (tmp_path / "list.txt").write_text(f"{pipe}\nb.mp4\n")
    unblocking = threading.Timer(5, writer)
    unblocking.start()
    try:
        report = extract.extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "cache"), root=str(videos),
                                       length=2, short_side=64)
    finally:
        unblocking.cancel()
    assert not waited
    assert report["done"] == 1 and cache_file(tmp_path / "cache", "b.mp4").is_file()
    assert {path: str(why) for path, why in report["failed"].items()} == {
        str(pipe): f"{pipe}: unreadable (not a regular file (a named pipe, a socket or a device))"}


def test_extract_refuses_a_video_too_elongated_to_track_whole_and_a_run_from_the_cache_skips_it(tmp_path,
                                                                                                  monkeypatch):
    """A 16x4000 video was tracked on a 224x56000 working frame (its short side resized to --short-side, whatever
    the aspect): 7.9 GB and 76 s for 20 frames. A long side over MAX_ASPECT times the short side is a failed video,
    named with its size; a run reading the cache skips it as unreadable, naming why (it had no cache file: 'run mme
    extract for it', which refuses it), and a run without the cache trains on it, as on any wide frame; a cache
    file of it an earlier mme's extract made is read."""
    write_video(tmp_path / "strip.mkv", affine_video(8, 16, 144, dx=1.0)[0])  # 9:1
    write_video(tmp_path / "wide.mkv", affine_video(8, 16, 128, dx=1.0)[0])  # 8:1, the bound: made
    (tmp_path / "list.txt").write_text("strip.mkv 0\nwide.mkv 1\n")
    out = tmp_path / "cache"
    made = extract.extract_cache(str(tmp_path / "list.txt"), str(out), root=str(tmp_path), length=2, short_side=32)
    why = ("its frames are 144x16, whose long side is over 8 times the short side, too elongated for a track cache "
           "(its working frame is the whole frame at --short-side); crop the video, or train on it online, without "
           "target.cache_dir")
    assert made["done"] == 1 and cache_file(out, "wide.mkv").is_file() and not cache_file(out, "strip.mkv").exists()
    assert {path: str(e) for path, e in made["failed"].items()} == {
        str(tmp_path / "strip.mkv"): f"{tmp_path / 'strip.mkv'}: unreadable ({why})"}
    cfg = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(tmp_path), img_size=32, num_frames=4, stride=1,
                     max_failure_fraction=0.5)
    m = ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    for cache_dir, indices, failures in [(str(out), [1, 1], {str(tmp_path / "strip.mkv"): "unreadable"}),
                                         (None, [0, 1], {})]:
        fn = make_target_fn(TargetConfig(kind="mme", track_length=2, cache_dir=cache_dir), m)
        dataset = PretrainDataset(cfg, fn, fn.track_length, track_reads=fn.track_reads)
        assert [dataset[i]["index"] for i in range(2)] == indices and dataset.failures == failures
    monkeypatch.setattr(extract, "whole_frame_refusal", lambda *size: None)  # an earlier mme's extract made its file
    assert extract.extract_cache(str(tmp_path / "list.txt"), str(out), root=str(tmp_path), length=2,
                                 short_side=32)["done"] == 1
    fn = make_target_fn(TargetConfig(kind="mme", track_length=2, cache_dir=str(out)), m)
    dataset = PretrainDataset(cfg, fn, fn.track_length, track_reads=fn.track_reads)
    assert [dataset[i]["index"] for i in range(2)] == [0, 1] and dataset.failures == {}  # read, not skipped


def test_an_extraction_refused_by_its_ranks_leaves_no_out_folder(tmp_path, monkeypatch, capsys):
    """`mme extract` made --out before reading the torchrun ranks and choosing the device: a refusal there (a RANK
    left in the environment beyond WORLD_SIZE) left an empty folder behind. --out is made once they are known; a
    folder the user had stays, and holds nothing of the refused run."""
    listed = tmp_path / "train.txt"
    listed.write_text("a.mp4 0\n")
    out = tmp_path / "caches" / "train"
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    refused = ("mme extract: error: RANK=3 in the environment is not below WORLD_SIZE=2 (torchrun sets both; unset "
               "them to run as one process)")
    assert cli(["extract", str(listed), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == refused
    assert not (tmp_path / "caches").exists()
    out.mkdir(parents=True)
    assert cli(["extract", str(listed), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == refused
    assert out.is_dir() and list(out.iterdir()) == []
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert cli(["extract", str(listed), "--root", str(tmp_path), "--out", str(out)]) == 1  # (a.mp4 is missing)
    assert [p.name for p in out.glob("failed-*.json")] == [f"failed-{share_name(str(listed), 0, 1)}.json"]


def test_an_extraction_whose_out_another_job_took_writes_no_report_there(videos, tmp_path, monkeypatch):
    """--out removed and made anew by another job while an extraction that finds every file done starts: its report,
    outside the share's lock folder, was written into the other job's folder (no video ran the check before it)."""
    (videos / "b1.txt").write_text("b.mp4\n")
    out = tmp_path / "cache"
    extract.extract_cache(str(videos / "b1.txt"), str(out), root=str(videos), length=2, short_side=64)
    remove_stale_temps = extract.remove_stale_temps

    def another_job_takes_out(files):
        shutil.rmtree(out)
        out.mkdir()
        (out / "theirs").write_text("x")
        return remove_stale_temps(files)

    monkeypatch.setattr(extract, "remove_stale_temps", another_job_takes_out)
    with pytest.raises(FolderReplaced, match="was removed or replaced while this run used it"):
        extract.extract_cache(str(videos / "b1.txt"), str(out), root=str(videos), length=2, short_side=64)
    assert sorted(p.name for p in out.iterdir()) == ["theirs"]


def test_a_damaged_cache_file_to_make_again_is_read_and_warned_about_once(videos, tmp_path, caplog):
    """A damaged cache file is made again: it was read and warned about at the start's look and again at the look
    just before the video is made; the second look reads only a file made since the first."""
    (videos / "b1.txt").write_text("b.mp4\n")
    out = tmp_path / "cache"
    cache_file(out, "b.mp4").parent.mkdir(parents=True)
    cache_file(out, "b.mp4").write_bytes(b"not a cache")
    with caplog.at_level(logging.WARNING, logger="mme.extract"):
        assert cli(["extract", str(videos / "b1.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
                    "--short-side", "64"]) == 0
    said = [r.getMessage() for r in caplog.records if "not a valid mme track cache" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"extract: {cache_file(out, 'b.mp4')}: not a valid"), said
    assert other_settings(cache_file(out, "b.mp4"), ExtractOptions(length=2, short_side=64)) == {}


def test_a_cache_files_settings_are_read_by_one_helper_for_the_resume_check_and_the_advice(videos, tmp_path):
    """made_settings: what extract's resume check (other_settings) and a run's advice (resume_settings) read of a
    file; the advice leaves out a default bound and takes the run's decoder where it reads the same frames."""
    from mme.motion.cache import made_settings, resume_settings

    made = cache_file(tmp_path, "b.mp4")
    opts = ExtractOptions(length=2, short_side=64, seed_stride=4)
    extract.extract_video(str(videos / "b.mp4"), made, opts)
    meta = cache_meta(made)
    settings = made_settings(meta)
    assert settings == {"length": 2, "short_side": 64, "seed_stride": 4, "flow": DEFAULT_FLOW, "compensate": False,
                        "max_disp": float(meta["max_disp"]), "orientation": "coded", "backend": "pyav"}
    assert resume_settings(meta, "pyav-cuda") == {**settings, "max_disp": None, "backend": "pyav-cuda"}
    assert other_settings(made, opts) == {}
    assert other_settings(made, dataclasses.replace(opts, seed_stride=8, max_disp=1.0)) == {
        "seed_stride": (4, 8), "max_disp": (round(settings["max_disp"], 4), 1.0)}


def test_a_cache_records_its_decoder_and_a_resume_with_another_is_refused(videos, tmp_path, capsys):
    """OpenCV reads other frames than PyAV on some files (docs/data.md): a cache made with one is a setting that
    differs for a resume with the other (before: "already complete"). PyAV on the GPU reads the CPU's frames; a file
    made before the decoder was recorded is not held against any (an OpenCV extraction of then resumes with it)."""
    (videos / "b.txt").write_text("b.mp4\n")
    out = tmp_path / "cache"
    args = ["extract", str(videos / "b.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
            "--short-side", "64"]
    assert cli(args + ["--backend", "opencv"]) == 0
    made = cache_file(out, "b.mp4")
    assert cache_meta(made)["backend"] == "opencv"
    capsys.readouterr()
    assert cli(args) == 1
    err = capsys.readouterr().err
    assert "1 video already has caches" in err and "backend opencv (this run: pyav)" in err, err
    assert cli(args + ["--overwrite"]) == 0 and cache_meta(made)["backend"] == "pyav"
    opts = ExtractOptions(length=2, short_side=64)
    assert other_settings(made, dataclasses.replace(opts, backend="pyav-cuda")) == {}
    cached = read_cache(made)
    save_tracks(made, cached.disp, cached.valid, None, {k: v for k, v in cached.meta.items() if k != "backend"})
    assert other_settings(made, opts) == {}
    assert other_settings(made, dataclasses.replace(opts, backend="opencv")) == {}  # an OpenCV share resumes


def test_shards_split_the_list(videos, tmp_path):
    out = tmp_path / "cache"
    base = ["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
            "--short-side", "64"]
    assert cli(base + ["--shard", "0/2"]) == 1  # entries 0 and 2: a.mp4 and bad.mp4
    assert cache_file(out, "cls/a.mp4").is_file() and not cache_file(out, "b.mp4").is_file()
    assert cli(base + ["--shard", "1/2"]) == 0  # entries 1 and 3: b.mp4 and the single-frame one.mp4
    assert cache_file(out, "b.mp4").is_file() and cache_file(out, "one.mp4").is_file()
    assert report(out, videos / "list.txt", 1, 2)["done"] == 2
    assert cli(base + ["--shard", "2/2"]) == 1  # not a share: a ConfigError, printed by the CLI


def test_a_run_of_the_whole_list_removes_the_reports_of_its_extractions_in_other_shares(videos, tmp_path, caplog):
    """Reports are named per share: a list extracted in 2 shares (torchrun ranks, --shard), its failed video mended,
    then extracted whole left the 2 shares' reports naming it as failed, where its cache file was made. A run of the
    whole list removes those of another number of shares, and keeps its own and other lists'."""
    videos = Path(shutil.copytree(videos, tmp_path / "videos"))  # (bad.mp4 mended below)
    out = tmp_path / "cache"
    base = ["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
            "--short-side", "64"]
    (videos / "other.txt").write_text("bad.mp4\n")
    assert cli(["extract", str(videos / "other.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
                "--short-side", "64", "--shard", "0/2"]) == 1  # another list's: kept
    assert cli(base + ["--shard", "0/2"]) == 1 and cli(base + ["--shard", "1/2"]) == 0
    assert list(report(out, videos / "list.txt", 0, 2)["failed"]) == [str(videos / "bad.mp4")]
    shutil.copy(videos / "b.mp4", videos / "bad.mp4")  # mended
    with caplog.at_level(logging.INFO, "mme.extract"):
        assert cli(base) == 0
    assert cache_file(out, "bad.mp4").is_file() and report(out, videos / "list.txt", 0, 1)["failed"] == {}
    assert sorted(p.name for p in out.glob("failed-*.json")) == sorted(
        f"failed-{share_name(str(videos / name), part, parts)}.json" for name, part, parts in (
            ("list.txt", 0, 1), ("other.txt", 0, 2)))
    assert sum("the report of an earlier extraction of the list in 2 shares" in r.getMessage()
               for r in caplog.records) == 2, caplog.text
    assert cli(base + ["--shard", "1/2"]) == 0  # a share of the list: the whole list's report is kept
    assert report(out, videos / "list.txt", 0, 1)["failed"] == {}


def test_lists_extracted_into_one_cache_keep_their_own_reports(videos, tmp_path):
    """A train and a val list extracted into one --out: each share of each list writes its own report of failures
    (before: one failed.json per share, so the val list's extraction erased the train list's failure)."""
    (videos / "trainA.txt").write_text("bad.mp4\nb.mp4\n")
    (videos / "valB.txt").write_text("b.mp4\n")
    out = tmp_path / "cache"
    for name, shard, code in (("trainA", "0/1", 1), ("valB", "0/1", 0), ("trainA", "0/2", 1), ("valB", "0/2", 0)):
        assert cli(["extract", str(videos / f"{name}.txt"), "--root", str(videos), "--out", str(out), "--length",
                    "2", "--short-side", "64", "--shard", shard]) == code
    names = sorted(p.name for p in out.glob("failed*.json"))
    assert len(names) == 4 and all(re.fullmatch(r"failed-(trainA|valB)-[0-9a-f]{12}(-0-of-2)?\.json", n)
                                   for n in names), names
    for part, parts in ((0, 1), (0, 2)):
        assert list(report(out, videos / "trainA.txt", part, parts)["failed"]) == [str(videos / "bad.mp4")]
        assert report(out, videos / "valB.txt", part, parts)["failed"] == {}



def test_a_list_whose_real_path_is_not_utf8_is_extracted_and_reported(videos, tmp_path):
    """``mme extract $'lists\\xe9'/val.txt`` (a Latin-1 byte in the list's folder, read by Python with a surrogate
    escape): its share's name, a hash of the list's real path, raised UnicodeEncodeError before any work. The path is
    hashed as its bytes on disk (a UTF-8 one as before: its report keeps its name)."""
    import hashlib

    folder = tmp_path / os.fsdecode(b"lists\xe9")
    folder.mkdir()
    (folder / "val.txt").write_text("bad.mp4\nb.mp4\n")
    out = tmp_path / "cache"
    assert cli(["extract", str(folder / "val.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
                "--short-side", "64"]) == 1  # bad.mp4 failed, b.mp4 is made
    which = hashlib.blake2b(os.fsencode(os.path.realpath(folder / "val.txt")), digest_size=6).hexdigest()
    assert share_name(str(folder / "val.txt"), 0, 1) == f"val-{which}"
    assert list(report(out, folder / "val.txt")["failed"]) == [str(videos / "bad.mp4")]
    assert (out / "b.mp4.tracks").is_file()
    utf8 = hashlib.blake2b(os.path.realpath(videos / "list.txt").encode(), digest_size=6).hexdigest()
    assert share_name(str(videos / "list.txt"), 0, 1) == f"list-{utf8}"

DYING_WORKER = """import os, signal, sys


def dying_on_b(work):
    def dying(path, *args):  # in each spawned worker too, which imports this file as __mp_main__
        if os.path.basename(path) == "b.mp4":
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer, or a decoder's crash
        return work(path, *args)
    return dying


# the command's own function only (a spawned worker has its parent's sys.argv): check's workers import no torch
if sys.argv[1] == "extract":
    from mme.motion import extract
    extract.extract_video = dying_on_b(extract.extract_video)
else:
    from mme.data import lists
    lists.check_video = dying_on_b(lists.check_video)
if __name__ == "__main__":
    from mme import cli
    sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("bad,error,said", [("denied", PermissionError, "Permission denied"),
                                            ("cut", EOFError, "cut short"), ("odd", RuntimeError, "odd \\(7\\)")])
def test_an_error_in_a_worker_is_raised_as_without_workers(bad, error, said):
    """A worker's OSError or EOFError ended the worker quietly (exit status 0), and `mme check --workers` reported
    the video 'unreadable: a worker process died checking it (exit status 0)'; without workers it was raised. An
    exception that does not unpickle as itself came back as unpickling's TypeError."""
    from mme.utils import WorkerError, in_workers

    assert sorted(in_workers(fails_on, ["a", "b", "c"], 2, lambda job, how: how)) == ["A", "B", "C"]
    with pytest.raises(error, match=said) as info:
        list(in_workers(fails_on, ["a", bad, "c"], 2, lambda job, how: how))
    assert isinstance(info.value.__cause__, WorkerError) and "in fails_on" in str(info.value.__cause__)


@pytest.mark.parametrize("workers, stopped", [(2, False), (1, False), (2, True)])
def test_a_job_a_worker_holds_long_is_warned_of_naming_it_and_the_worker(tmp_path, monkeypatch, workers, stopped):
    """A worker hung on a read (a stalled mount) held mme check and mme extract without a word; the job held is
    warned of once held WAIT_WARNING_S, and again as the wait doubles, naming it, its worker's PID and the jobs done.
    Without workers (mme check's default, --workers 1) the job this process holds is warned of alike (it was not: the
    warning's timer was the workers' loop's). A worker stopped (SIGSTOP, a job suspended) is said stopped, with the
    command that resumes it, as a loader's is (its PID alone was named)."""
    release, said = tmp_path / "release", []

    class Releasing(logging.Handler):  # (the job ends at the second warning; ``stopped``: its worker stopped at the
        def emit(self, record):         # first, resumed at the second)
            if not record.getMessage().startswith(str(release)):  # (the job "" may be warned of before its worker
                return                                             # has started, where that is slow)
            said.append(record.getMessage())
            if stopped:
                pid = int(re.search(r"worker process (\d+)", said[-1]).group(1))
                os.kill(pid, signal.SIGSTOP if len(said) == 1 else signal.SIGCONT)
            if len(said) == 2:  # (the job '' is done once its worker started: no warning of it)
                release.touch()

    monkeypatch.setattr(utils, "WAIT_WARNING_S", 0.3, raising=False)
    handler = Releasing(logging.WARNING)
    logging.getLogger("mme.utils").addHandler(handler)
    try:
        done = sorted(utils.in_workers(held_until, ["", str(release)], workers, lambda job, how: how,
                                       lambda job: job))
    finally:
        logging.getLogger("mme.utils").removeHandler(handler)
    who = f"worker process {done[1][1]}" if workers > 1 else f"this process (pid {os.getpid()})"
    states = ("", ", stopped: kill -CONT resumes it" if stopped else "")
    assert [re.sub(r"for \d+ s|\(\d of", "#", m) for m in said[:2]] == [  # (the job '': done, or not yet started;
        # a third may come before the job's result is taken)
        f"{release}: no result # from {who}{state}, still waited for # 2 done; a slow read may take this long; Ctrl-C "
        "or SIGTERM ends the wait)" for state in states]


def test_the_results_that_came_with_a_workers_error_are_given_before_it(tmp_path):
    """A job's error that came in the same wait as another worker's result was raised before that result was read:
    a check stopped by it (FFmpeg out of memory) wrote a partial report without a video it had checked, its counts
    and 'failing' short of it. The results that came with the error are given first."""
    go, got = tmp_path / "go", []
    with pytest.raises(PermissionError, match="Permission denied"):
        for result in utils.in_workers(held_then, [(str(go), "denied"), (str(go), "a"), ("", "w")], 3,
                                       lambda job, how: how):
            got.append(result)
            if result == "W":  # the other two end while this result is taken: their error and result are both sent
                go.touch()
                end = time.monotonic() + 10
                while not all(os.path.exists(f"{go}.{name}") for name in ("denied", "a")) and time.monotonic() < end:
                    time.sleep(0.01)
                time.sleep(0.3)
    assert got == ["W", "A"]


def test_the_workers_that_die_leave_no_open_files():
    """Each dead worker's pipe and process stayed open until the job ended: a check of a dataset whose decoder
    crashes on a few hundred files ran out of file descriptors."""
    from mme.utils import in_workers

    fds = len(os.listdir("/proc/self/fd"))
    done = in_workers(fails_on, [f"exit{i}" for i in range(6)] + ["a"], 2, lambda job, how: f"{job}: {how}")
    said = []  # in the order the jobs end: "a" may end before the last worker's death is seen
    while sum(s.startswith("exit") for s in said) < 6:
        said.append(next(done))
    assert len(os.listdir("/proc/self/fd")) <= fds + 6, "descriptors of dead workers left open"  # two live workers
    assert sorted(said + list(done)) == ["A", *sorted(f"exit{i}: exit status 3" for i in range(6))]


KILLED_PARENT = """import sys, threading
sys.path.insert(0, sys.argv[3])
from worker_jobs import says_and_waits
from mme.utils import in_workers

if __name__ == "__main__":
    folder = sys.argv[1]

    def died(job, how):  # (a worker killed where it should live: said at once, not at the wait's deadline)
        open(folder + "/died", "w").write(job[1] + " died: " + how)
        return job[1] + " died: " + how

    done = in_workers(says_and_waits, [(folder, name) for name in ("a", "b", "wait1", "wait2")], 2, died)
    if sys.argv[2] == "thread":  # the workers start in a thread that ends after the first result
        first = threading.Thread(target=lambda: print(next(done), flush=True))
        first.start()
        first.join()
    for name in done:
        print(name, flush=True)
"""


@pytest.mark.parametrize("started_by", ["main", "thread"])
def test_the_workers_of_a_job_whose_process_is_killed_end_with_it(tmp_path, started_by):
    """`mme extract --workers 2` (`mme check`, `mme synth`) killed with SIGKILL (the OOM killer choosing it, a
    supervisor's kill -9, a subprocess timeout): each worker went on with its video to its end, a core each and the
    video's lock held, so a rerun waited on videos 'being made by another job' that was dead. Now they end within a
    second or so. Workers started by a thread that ends before the job does (a caller's thread pool) live on with
    the job: the kernel's parent-death signal follows the thread that started a process, so it is asked for only
    where the main thread started it."""
    (tmp_path / "job.py").write_text(KILLED_PARENT)
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "job.py"), str(tmp_path), started_by, tests],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = {}
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"{n}.pid").is_file() for n in ("a", "b", "wait1", "wait2")):
            assert not (tmp_path / "died").exists(), (tmp_path / "died").read_text()
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        pids = {n: int((tmp_path / f"{n}.pid").read_text()) for n in ("a", "b", "wait1", "wait2")}
        assert {pids["wait1"], pids["wait2"]} == {pids["a"], pids["b"]}, pids  # the workers that took a and b
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        while any(map(alive, pids.values())) and time.monotonic() < killed + 10:
            time.sleep(0.1)
        assert not any(map(alive, pids.values())), "workers outlived their killed parent by 10 s"
        assert time.monotonic() - killed < 5
    finally:
        proc.kill()
        proc.communicate()
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_that_dies_fails_its_video_alone_and_the_others_are_made(videos, tmp_path):
    """A worker killed while it extracted a video (kill -9, the OOM killer) left `mme extract --workers 2` waiting
    forever, its share locked and no report written; `mme check --workers 2` alike."""
    (tmp_path / "dying.py").write_text(DYING_WORKER)
    out = tmp_path / "cache"
    proc = subprocess.run([sys.executable, str(tmp_path / "dying.py"), "extract", str(videos / "list.txt"), "--root",
                           str(videos), "--out", str(out), "--length", "2", "--short-side", "64", "--workers", "2"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr[-2000:]
    made = report(out, videos / "list.txt")
    assert made["done"] == 2 and cache_file(out, "cls/a.mp4").is_file(), made
    assert made["failed"][str(videos / "b.mp4")] == \
        f"{videos / 'b.mp4'}: a worker process died extracting it (signal 9: Killed)", made
    assert sorted(made["failed"]) == [str(videos / "b.mp4"), str(videos / "bad.mp4")]
    bad = made["lasting"][str(videos / "bad.mp4")]  # failed of itself, a run fails it again; b.mp4 may be made
    assert list(made["lasting"]) == [str(videos / "bad.mp4")] and bad["source_stat"][0] == (videos / "bad.mp4").stat(
        ).st_size, made
    assert "2 written, 0 already complete, 2 failed" in proc.stdout
    proc = subprocess.run([sys.executable, str(tmp_path / "dying.py"), "check", str(videos / "list.txt"), "--root",
                           str(videos), "--out", str(tmp_path / "check.json"), "--workers", "2"],
                          capture_output=True, text=True, timeout=240)
    checked = json.loads((tmp_path / "check.json").read_text())  # `mme check` waited forever too
    assert {p["path"]: p["reason"] for p in checked["problems"]}[str(videos / "b.mp4")] == \
        "a worker process died checking it (signal 9: Killed)", checked
    assert checked["videos"] == 4 and checked["counts"]["unreadable"] >= 2, checked


@pytest.mark.slow  # in_workers' refusal, which test_synth.py's main-guard test keeps in CI
def test_a_script_extracting_with_workers_without_a_main_guard_is_told_to_add_it(videos, tmp_path):
    """Each spawned worker imports the unguarded script, so extracts again, and its share's lock is the parent's: it
    ends there (before: each worker died on the lock, exit 1, every video was reported failed and the script went
    on, exit 0)."""
    out = tmp_path / "cache"
    (tmp_path / "unguarded.py").write_text(
        "from mme.motion.extract import extract_cache\n"
        f"extract_cache({str(videos / 'list.txt')!r}, {str(out)!r}, root={str(videos)!r}, length=2, short_side=64, "
        "workers=2)\nprint('done')\n")
    proc = subprocess.run([sys.executable, str(tmp_path / "unguarded.py")], capture_output=True, text=True,
                          timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and "done" not in proc.stdout, proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1] == f"mme.errors.UnguardedScript: {UnguardedScript()}", proc.stderr[-2000:]
    assert not list(out.glob("failed-*.json"))  # no report of videos failed


@pytest.mark.parametrize("call", ["check_lists", "extract_cache"])
def test_a_script_read_from_stdin_with_workers_is_told_its_workers_cannot_start(videos, tmp_path, call):
    """Spawned workers import the calling script again, which a script read from stdin (`python - < script.py`) is
    not there for: each died while it started, exit 1, and the job it had been sent was counted its death (before:
    every video `unreadable (a worker process died checking it (exit status 1))`, each extracted one failed alike,
    exit 0). Now a worker says it is ready before it takes a job, and one that dies before is one error naming why."""
    out = tmp_path / "out"
    script = ("if __name__ == '__main__':\n"
              + ("    from mme.data.lists import check_lists\n"
                 f"    check_lists([{str(videos / 'list.txt')!r}], {str(videos)!r}, {str(out)!r}, workers=2)\n"
                 if call == "check_lists" else
                 "    from mme.motion.extract import extract_cache\n"
                 f"    extract_cache({str(videos / 'list.txt')!r}, {str(out)!r}, root={str(videos)!r}, length=2, "
                 "short_side=64, workers=2)\n")
              + "    print('done')\n")
    proc = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert proc.returncode == 1 and "done" not in proc.stdout, proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1] == (
        "mme.errors.MMEError: worker processes could not start (exit status 1): the calling script was read from "
        "stdin, which spawned workers cannot import again: run it from a file, or pass workers=1"), proc.stderr[-2000:]
    assert "a worker process died" not in proc.stderr + proc.stdout
    assert not (out.is_file() or list(out.glob("failed-*.json")))  # no report of videos unreadable, or failed


def test_a_worker_killed_while_it_starts_gives_its_job_to_another(videos, tmp_path):
    """One spawned worker killed by a signal before it said it was ready (the OOM killer at its import) stopped the
    whole job, `worker processes could not start (signal 9: Killed): see the error printed above`, nothing printed
    above: its job goes to another worker, once, as where it died before the job reached it."""
    out, flag = tmp_path / "out", tmp_path / "killed"
    script = ("import os, signal\n"
              f"if __name__ == '__mp_main__' and not os.path.exists({str(flag)!r}):\n"
              f"    open({str(flag)!r}, 'x').close()\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n"
              "if __name__ == '__main__':\n"
              "    from mme.data.lists import check_lists\n"
              f"    print(check_lists([{str(videos / 'list.txt')!r}], {str(videos)!r}, {str(out)!r}, "
              "workers=2)['counts'])\n")
    (tmp_path / "script.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "script.py")], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert proc.returncode == 0 and flag.exists(), proc.stderr[-2000:]
    assert "a worker process died" not in proc.stderr + proc.stdout
    from mme.data.lists import check_lists

    assert proc.stdout.strip().splitlines()[-1] == str(check_lists([str(videos / "list.txt")], str(videos),
                                                                   str(tmp_path / "in_one"))["counts"])


def test_a_share_removes_the_temporary_files_that_killed_writes_of_its_files_left(videos, tmp_path):
    """A write killed mid-way (kill -9) leaves its temporary file; the share's next run removes those of its own
    videos and report (before: kept for good, about 1 MB each), and leaves those of other shares' videos alone,
    which a share running at the same time may be writing."""
    out = tmp_path / "cache"
    args = ["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
            "--short-side", "64", "--shard", "0/2"]  # a.mp4 and bad.mp4
    assert cli(args) == 1
    name = share_name(str(videos / "list.txt"), 0, 2)
    gone = dead_pid()
    stale = [out / "cls" / f".a.mp4.tracks.tmp{gone}.tracks", out / f".bad.mp4.tracks.tmp{gone}.tracks",
             out / f".failed-{name}.json.tmp{gone}.json"]
    others = out / f".b.mp4.tracks.tmp{gone}.tracks"  # share 1/2's video
    live = out / "cls" / f".a.mp4.tracks.tmp{os.getppid()}.tracks"  # a live writer's: another list's job
    for path in [*stale, others, live]:
        path.touch()
    assert cli(args) == 1
    assert not any(path.exists() for path in stale) and others.exists() and live.exists()
    assert report(out, videos / "list.txt", 0, 2)["skipped"] == 1


def test_a_live_writer_whose_pid_means_nothing_here_keeps_its_temporary_file(videos, tmp_path):
    """Another list's job writing the same video from another PID namespace (a container) or machine: its PID is
    none of this machine's, but it holds its temporary file's lock, so the share's run leaves the file (before: it
    was removed, and that job failed its video with FileNotFoundError at the rename)."""
    out = tmp_path / "cache"
    (out / "cls").mkdir(parents=True)
    gone = dead_pid()
    writer = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; from mme.utils import atomic_path; "
         f"os.getpid = lambda: {gone}; "
         f"w = atomic_path({str(out / 'cls' / 'a.mp4.tracks')!r}); tmp = w.__enter__(); "
         "tmp.write_bytes(b'tracks'); print(tmp, flush=True); sys.stdin.read(); w.__exit__(None, None, None)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        live = Path(writer.stdout.readline().strip())
        assert live.parent == out / "cls" and re.fullmatch(rf"\.a\.mp4\.tracks\.tmp{gone}-[0-9a-f]{{8}}\.tracks",
                                                          live.name)
        stale = out / f".bad.mp4.tracks.tmp{gone}.tracks"  # no writer holds it
        stale.touch()
        assert cli(["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
                    "--short-side", "64", "--shard", "0/2"]) == 1  # a.mp4 and bad.mp4 (undecodable)
        assert live.read_bytes() == b"tracks" and not stale.exists()
    finally:
        writer.communicate("")
    assert writer.returncode == 0 and cache_file(out, "cls/a.mp4").read_bytes() == b"tracks"


def test_writes_of_one_file_by_jobs_of_one_pid_each_write_their_own_temporary_file(tmp_path):
    """Jobs in containers of their own may have one PID (1, their entry point), and their writes of a video in both
    their lists had one temporary name, where the second waited for the first (before that: both wrote the one file,
    and the rename of the one that ended last failed with FileNotFoundError). Each write's temporary name draws
    random digits now (no one can tell it in advance): the second (here: another thread) writes its own file at
    once, and the last to end replaces the file last."""
    target = tmp_path / "a.mp4.tracks"
    second_done, errors = threading.Event(), []

    def second():
        try:
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"second")
        except OSError as e:
            errors.append(e)
        second_done.set()

    with atomic_path(target) as tmp:
        tmp.write_bytes(b"first")
        threading.Thread(target=second).start()
        assert second_done.wait(5) and target.read_bytes() == b"second"
    assert not errors and target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4.tracks"]


def test_many_writes_of_one_file_at_once_neither_fail_nor_tear(tmp_path):
    """Four threads (as jobs of one PID) writing one file 100 times each: none fails, and the file read is always one
    write's whole. (When the temporary name was one per PID, a write removed it after its rename too, where the next
    writer had made and locked its own file by then: that writer failed with FileNotFoundError, or a third one wrote
    into its file unlocked, and the file read was torn; each write now has a name of its own.)"""
    target = tmp_path / "a.mp4.tracks"
    errors, torn = [], []

    def write(k: int):
        for i in range(100):
            try:
                with atomic_path(target) as tmp:
                    tmp.write_text(f"{k}:{i}\n" * 50)
            except OSError as e:
                errors.append(e)
            lines = target.read_text().splitlines()
            if len(lines) != 50 or len(set(lines)) != 1:
                torn.append(lines)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and not torn
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4.tracks"]


def test_a_write_that_fails_at_or_after_its_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    """The rename that puts the file in place fails (a full folder, a quota), or the block fails after its write
    (Ctrl-C, the next file of an export): the temporary file is removed, also an export's weights written into it
    (before mme wrote them itself, safetensors renamed a file of its own onto the name, which was left behind)."""
    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def weights(tmp):
        utils.write_safetensors(tmp, {"w": torch.ones(8)})

    with monkeypatch.context() as m:
        m.setattr(os, "replace", full)
        for write in (lambda tmp: tmp.write_bytes(b"in place"), weights):
            with pytest.raises(OSError, match="No space left"), atomic_path(tmp_path / "w.safetensors") as tmp:
                write(tmp)
                assert tmp.stat().st_size > 0
            assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match="No space left"), atomic_path(tmp_path / "w.safetensors") as tmp:
        weights(tmp)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_a_stale_temporary_file_replaced_under_its_name_while_it_is_locked_keeps_the_new_one(tmp_path, monkeypatch):
    """A writer in another PID namespace (its PID means nothing here) renames its temporary file into place and
    makes its next one under the same name between the cleanup's open of the first and its lock: the lock is then
    on the renamed file, no writer's, and the cleanup removed the name, the writer's new file (its write failed
    with FileNotFoundError at the rename). The name is removed only while it names the file locked."""
    target = tmp_path / "x.json"
    tmp = tmp_path / f".x.json.tmp{dead_pid()}.json"
    tmp.write_text("first")
    flock, writer = utils._flock, []

    def swapped_then_locked(fd, how, path):
        os.replace(tmp, target)  # the writer's rename, then its next write under the name, held as atomic_path does
        writer.append(os.open(tmp, os.O_WRONLY | os.O_CREAT))
        fcntl.flock(writer[0], fcntl.LOCK_EX)
        os.write(writer[0], b"second")
        flock(fd, how, path)

    monkeypatch.setattr(utils, "_flock", swapped_then_locked)
    try:
        assert not _remove_stale_temp(tmp, _temp_names(["x.json"], NAME_MAX))
        assert tmp.read_text() == "second" and target.read_text() == "first"
    finally:
        for fd in writer:
            os.close(fd)


def test_a_file_system_without_flock_is_written_unlocked(tmp_path, monkeypatch, caplog):
    """Where ``flock`` is not supported (Lustre mounted without it, some FUSE and NFS mounts: ENOLCK), files are
    written and stale temporary files removed without the lock, as before writes locked them, said once at debug
    level (before: every write failed, run.json, checkpoints and caches alike, and no stale file was removed)."""
    def no_flock(fd, how):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    monkeypatch.setattr(utils, "_unlocked_devices", set())  # said once per process and file system
    stale = tmp_path / f".b.json.tmp{dead_pid()}.json"
    stale.touch()
    with caplog.at_level(logging.DEBUG, logger="mme.utils"):
        atomic_write_text(tmp_path / "a.json", "{}")
        atomic_write_text(tmp_path / "a.json", "[]")
        assert _remove_stale_temp(stale, _temp_names(["b.json"], NAME_MAX)) and not stale.exists()
    assert (tmp_path / "a.json").read_text() == "[]"
    assert [r.levelno for r in caplog.records if "takes no flock" in r.message] == [logging.DEBUG]


def test_a_file_written_again_inside_its_own_write_is_written(tmp_path):
    """The same thread writing a file inside its own write of it waited for its own lock forever (then was an
    error): each write has a temporary name of its own now, so the inner write replaces the file, then the outer."""
    target = tmp_path / "a.json"
    with atomic_path(target) as tmp:
        tmp.write_text("a")
        atomic_write_text(target, "b")
        assert target.read_text() == "b"
    assert target.read_text() == "a" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("flow", [None, "torch-lk"])  # the default; the step's flow, extracted batched
def test_load_tracks_equals_compute_tracks_at_the_working_size(videos, tmp_path, flow):
    out = tmp_path / "cache"
    cli(["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "3",
         "--short-side", "96", *(["--flow", flow] if flow else [])])
    frames = read_all(videos / "b.mp4")  # 96x96 already: the working frames are the decoded ones
    disp, valid = load_tracks(cache_file(out, "b.mp4"))
    ref_disp, ref_valid = compute_tracks(frames, starts=np.arange(9), length=3, flow=flow or DEFAULT_FLOW)
    assert np.abs(disp[:9] - ref_disp).max() <= QUANT / 2 + 1e-4
    assert (valid[:9] == ref_valid).all()
    part = read_cache(cache_file(out, "b.mp4"), starts=[7, 2, 30])  # only the blocks of these starts
    assert part.starts.tolist() == [2, 7, 11] and np.array_equal(part.disp, disp[[2, 7, 11]])  # 30 -> last
    # tracks that run past the last frame see zero motion there (the dataset's clamping convention)
    assert np.abs(disp[11]).max() == 0 and np.abs(disp[10, 1:]).max() == 0


@pytest.mark.parametrize("compensate", [False, True])
def test_cached_tracks_match_online_tracks_for_any_crop(videos, tmp_path, compensate):
    out = tmp_path / "cache"
    args = ["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "4",
            "--short-side", "120"] + (["--compensate"] if compensate else [])
    cli(args)
    cached = read_cache(cache_file(out, "cls/a.mp4"))
    raw = read_all(videos / "cls" / "a.mp4")  # (30, 120, 150, 3): the working size is the source size
    starts = np.array([2, 6, 10, 14, 25])
    for geom, mean_tol, p95_tol in [(Geometry(0, 0, 150, 120, 150, 120), QUANT / 2, QUANT / 2),
                                    (Geometry(20, 8, 100, 100, 80, 80), 0.1, 0.15),
                                    (Geometry(20.5, 8, 100, 100, 80, 80, flip=True), 0.1, 0.15)]:
        online = track(apply_geometry(raw, geom), np.arange(30), starts, 4, compensate=compensate, clamp=True)
        from_cache = resample(cached, starts, 4, geom, 8)
        both = online.valid & from_cache.valid
        diff = np.abs(online.disp - from_cache.disp)[np.broadcast_to(both[:, None, ..., None], online.disp.shape)]
        assert (online.valid == from_cache.valid).mean() >= 0.99
        assert diff.mean() <= mean_tol + 1e-4 and np.percentile(diff, 95) <= p95_tol + 1e-4, geom


@pytest.mark.parametrize("compensate", [False, True])
def test_a_cache_written_chunk_by_chunk_is_the_file_of_one_chunk(videos, tmp_path, compensate):
    """A video's tracks are written as each chunk of starts is made (a long video's were held whole until the end:
    25 KB a frame, 2.7 GB for an hour); the file is the same bytes whatever the chunk, its homographies included."""
    from mme.motion.extract import extract_video

    made = {}
    for chunk in (7, 64):
        made[chunk] = tmp_path / f"chunk{chunk}.tracks"
        extract_video(str(videos / "cls" / "a.mp4"), made[chunk],
                      ExtractOptions(length=4, short_side=64, compensate=compensate, chunk=chunk))
    assert made[7].read_bytes() == made[64].read_bytes()
    assert read_cache(made[7]).meta["starts"] == 30


def test_a_video_extracted_from_python_with_device_auto_is_its_file_made_on_the_cpu(videos, tmp_path, monkeypatch):
    """ExtractOptions takes --device auto (as choose_device does); extract_video called from Python with it, not
    through run (which resolves the device per rank), ended in torch's 'Expected one of cpu, cuda, ...' traceback."""
    from mme.motion.extract import extract_video

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    made = {device: tmp_path / f"{device}.tracks" for device in ("auto", "cpu")}
    for device, path in made.items():
        extract_video(str(videos / "cls" / "a.mp4"), path, ExtractOptions(length=4, short_side=64, device=device))
    assert made["auto"].read_bytes() == made["cpu"].read_bytes()


def test_each_starts_homographies_are_its_pairs_and_the_identity_past_the_last_frame():
    """Step j of start s is the pair of frames (s + j, s + j + 1); a step past the last frame has no pair and
    moves nothing (as online tracks, which clamp there), not the last pair's camera motion again."""
    pair = np.stack([np.eye(3) + 0.1 * (k + 1) * np.eye(3, k=1) for k in range(2)]).astype(np.float32)  # 3 frames
    eye = np.eye(3, dtype=np.float32)
    homs = start_homs(pair, 3, [1])
    assert homs.shape == (1, 3, 3, 3) and homs.dtype == np.float32
    assert np.array_equal(homs[0], [pair[1], eye, eye])
    assert np.array_equal(start_homs(pair, 3), [[pair[0], pair[1], eye], [pair[1], eye, eye], [eye, eye, eye]])
    assert np.array_equal(start_homs(pair[:0], 2, [0]), [[eye, eye]])  # one frame: no pair at all


def test_training_reads_the_cache_and_matches_online_targets(videos, tmp_path):
    out = tmp_path / "cache"
    cli(["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "4",
         "--short-side", "120"])
    raw = read_all(videos / "cls" / "a.mp4")
    idx = sample_pretrain(30, 8, 2, 2, 4, np.random.default_rng(1))
    geom = Geometry(30, 10, 96, 96, 64, 64)
    sample = Sample(apply_geometry(raw[idx.needed], geom), idx.needed, idx.clip, idx.starts, geom,
                    str(videos / "cls" / "a.mp4"), 4)
    m = ModelConfig(img_size=64, num_frames=8, embed_dim=32, depth=1, num_heads=2)
    kw = dict(kind="mme", track_length=4, patch_norm=False)
    online, v_on = make_target_fn(TargetConfig(**kw), m).targets(sample)
    cached, v_ca = make_target_fn(TargetConfig(**kw, cache_dir=str(out)), m).targets(sample)
    both = v_on["traj"] & v_ca["traj"]
    bound = 20 * 64 / 224
    assert (v_on["traj"] == v_ca["traj"]).float().mean() >= 0.98
    assert (online["traj"] - cached["traj"])[both].abs().mean() * bound <= 0.1  # px
    assert torch.allclose(online["shape"][both], cached["shape"][both], atol=0.05, rtol=0.1)
    with pytest.raises(ConfigError, match="holds only 4 steps"):
        make_target_fn(TargetConfig(kind="mme", track_length=6, cache_dir=str(out)), m).targets(sample)


def test_a_cache_that_lacks_the_lists_videos_says_to_extract_them(videos, tmp_path):
    """Videos without a cache file failed the run with "`mme check LIST` names every video a run cannot read",
    where `mme check` finds them readable: the advice is now the extraction that makes the missing files, with every
    setting the run reads."""
    (tmp_path / "list.txt").write_text("cls/a.mp4 0\nb.mp4 1\n")
    cfg = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(videos), img_size=64, num_frames=8, stride=2,
                     max_failure_fraction=0.0)
    m = ModelConfig(img_size=64, num_frames=8, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=4, cache_dir=str(tmp_path / "empty")), m)
    with pytest.raises(DataError, match=rf"`mme extract {tmp_path / 'list.txt'} --root {videos} --out "
                                        rf"{tmp_path / 'empty'} --length 4 --short-side 224 --seed-stride 28 --flow "
                                        r"dis-balanced --orientation coded --backend pyav` makes the track cache "
                                        r"files these videos lack"):
        PretrainDataset(cfg, fn, fn.track_length, track_reads=fn.track_reads)[0]


def test_the_cache_of_a_list_of_absolute_paths_is_found_after_its_dataset_moved(tmp_path):
    """A cache made from a list of absolute paths keeps them whole under it (<cache>/<old root>/cls/a.mp4.tracks):
    once the dataset was moved and its list's paths changed to match, no tail of the new paths named a file there,
    and the run refused the cache as lacking the files of every video (an extraction made them all again). The file
    that ends with the longest tail of a video's path, alone, is taken where it records that video's fingerprint; a
    new video of the same name is not given another's file, and an extraction that resumes the cache finds them
    too."""
    old, moved, out = tmp_path / "old" / "ds", tmp_path / "new" / "place", tmp_path / "cache"
    (old / "cls").mkdir(parents=True)
    write_video(old / "cls" / "a.mp4", affine_video(12, 64, 80, dx=2.0, seed=3)[0])
    write_video(old / "b.mp4", affine_video(12, 64, 64, dx=-1.0, seed=1)[0])
    (tmp_path / "list.txt").write_text(f"{old / 'cls' / 'a.mp4'}\n{old / 'b.mp4'}\n")
    assert cli(["extract", str(tmp_path / "list.txt"), "--out", str(out), "--length", "2", "--short-side", "64"]) == 0
    made = [cache_file(out, str(old / "cls" / "a.mp4")), cache_file(out, str(old / "b.mp4"))]
    m = ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=2, cache_dir=str(out)), m)
    config = DataConfig(list_file=str(tmp_path / "list.txt"), num_frames=4, stride=2, img_size=32)
    before = [PretrainDataset(config, fn, 2, track_reads=fn.track_reads)[i]["motion"]["disp"] for i in range(2)]
    moved.parent.mkdir()
    old.rename(moved)
    (moved / "new").mkdir()
    write_video(moved / "new" / "a.mp4", affine_video(12, 64, 80, dx=-2.0, seed=4)[0])  # never extracted
    (tmp_path / "list.txt").write_text(f"{moved / 'cls' / 'a.mp4'}\n{moved / 'b.mp4'}\n{moved / 'new' / 'a.mp4'}\n")
    dataset = PretrainDataset(dataclasses.replace(config, max_failure_fraction=0.5), fn, 2,
                              track_reads=fn.track_reads)
    assert dataset.cache_lookup.files == [str(made[0]), str(made[1]), None]
    assert dataset.cache_lookup.lacking == [2]
    for i in range(2):
        assert torch.equal(dataset[i]["motion"]["disp"], before[i])
    # the extraction that resumes it finds the moved files as the run does (before: it made all three again)
    report = extract_cache(str(tmp_path / "list.txt"), str(out), length=2, short_side=64)
    assert (report["done"], report["skipped"], report["failed"]) == (1, 2, {})
    new = cache_file(out, str(moved / "new" / "a.mp4"))
    assert not cache_file(out, str(moved / "b.mp4")).exists() and new.is_file()
    resumed = PretrainDataset(config, fn, 2, track_reads=fn.track_reads)
    assert resumed.cache_lookup.files == [str(made[0]), str(made[1]), str(new)]


def test_a_video_changed_in_a_moved_dataset_is_advised_its_cache_file_deleted_then_the_extract(tmp_path, capsys):
    """A dataset moved with its cache, one video then replaced: training advised the resumed `mme extract ...` that
    makes such files again, which refused the file as another dataset's video of the same name (its recorded path is
    gone: a volume not mounted looks the same, so extract does not make it again). The advice names the file to
    delete first, where it is this dataset's, then the extract, which followed makes it again and keeps the other."""
    import shlex

    from training import tiny_config

    from mme.train.pretrain import check_cache, pretrain_dataset

    old, moved, out = tmp_path / "old", tmp_path / "moved", tmp_path / "cache"
    old.mkdir()
    for name, dx in (("v.mp4", 2.0), ("w.mp4", -1.0)):
        write_video(old / name, affine_video(12, 64, 64, dx=dx, seed=3)[0])
    (old / "list.txt").write_text("v.mp4\nw.mp4\n")
    assert cli(["extract", str(old / "list.txt"), "--root", str(old), "--out", str(out), "--length", "2",
                "--short-side", "64"]) == 0
    old.rename(moved)
    write_video(moved / "v.mp4", affine_video(12, 64, 64, dx=0.5, seed=9)[0])  # replaced since
    made, kept = cache_file(out, "v.mp4"), cache_file(out, "w.mp4")
    kept_bytes = kept.read_bytes()
    with pytest.raises(VideoError, match=re.escape(f"made from {old / 'v.mp4'} (not there now: moved, or on a volume "
                                                   "not mounted), which a re-run of mme extract refuses as another "
                                                   "dataset's video of the same name: where it is this dataset's")):
        dataset = _cached_dataset(moved, out, max_failure_fraction=1.0)
        dataset.target_fn(dataset.sample(0, np.random.default_rng(0)))
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={moved / 'list.txt'}", f"data.root={moved}"],
                      tmp_path / "run", f"target.cache_dir={out}", "target.track_length=2")
    with pytest.raises(DataError) as refused:
        check_cache(cfg, pretrain_dataset(cfg))
    said = str(refused.value)
    assert "1 of its 2 track cache files of the videos of" in said and "were made from other files of the same " \
        "name" in said and f"delete them ({made}), then `mme extract " in said, said
    made.unlink()  # as advised
    capsys.readouterr()
    assert cli(shlex.split(said.split("then `")[1].split("`")[0])[1:]) == 0
    assert "1 written, 1 already complete" in capsys.readouterr().out and kept.read_bytes() == kept_bytes
    check_cache(cfg, pretrain_dataset(cfg))


def test_a_moved_cache_file_is_not_taken_for_another_video_of_its_size_and_mtime(videos, tmp_path):
    """A moved cache's file is taken for the video at the new path where it records that video's fingerprint: it
    was judged by same_source, which takes equal size and mtime without a hash, so another video of the old one's
    size and mtime (padded here, its mtime set) took its tracks."""
    from mme.motion.cache import moved_cache_file

    old, new = tmp_path / "old" / "x" / "v.mp4", tmp_path / "new" / "x" / "v.mp4"
    old.parent.mkdir(parents=True), new.parent.mkdir(parents=True)
    a, b = (videos / "cls" / "a.mp4").read_bytes(), (videos / "b.mp4").read_bytes()
    size = max(len(a), len(b))
    old.write_bytes(a.ljust(size, b"\0")), new.write_bytes(b.ljust(size, b"\0"))
    os.utime(new, ns=(old.stat().st_atime_ns, old.stat().st_mtime_ns))
    (tmp_path / "l.txt").write_text(f"{old}\n")
    assert cli(["extract", str(tmp_path / "l.txt"), "--out", str(tmp_path / "cache"), "--length", "2"]) == 0
    listed = listed_files(tmp_path / "cache")[0]
    assert moved_cache_file(tmp_path / "cache", str(new), listed) is None
    moved = tmp_path / "moved" / "x" / "v.mp4"  # the same video moved: found
    moved.parent.mkdir(parents=True)
    shutil.copy2(old, moved)
    assert moved_cache_file(tmp_path / "cache", str(moved), listed) == cache_file(tmp_path / "cache", str(old))


def test_a_moved_cache_of_many_videos_of_one_name_is_searched_once_per_video(monkeypatch):
    """The moved-cache search (cache._moved_file) compared every listed file of a video's name with its path: a list
    of <id>/clip.mp4 videos took 6.9 s for 4,000 lines and 74 s for 10,000 where half lacked a file. The longest tail
    alone is taken, a tie none, each video one search of the listing."""
    import mme.motion.cache as cache

    ids = 3000
    listed = frozenset(("data", "old", f"v{i:05d}", "clip.mp4.tracks") for i in range(ids)) | {
        ("a", "old", "v00042", "clip.mp4.tracks"), ("data", "old", "v00007", "other.mp4.tracks")}
    assert cache._moved_file(("new", "place", "v00041", "clip.mp4"), listed) == (
        "data", "old", "v00041", "clip.mp4.tracks")
    assert cache._moved_file(("q", "a", "old", "v00042", "clip.mp4"), listed) == (
        "a", "old", "v00042", "clip.mp4.tracks")
    assert cache._moved_file(("q", "old", "v00042", "clip.mp4"), listed) is None  # two as long
    assert cache._moved_file(("new", "v00007", "other.mp4"), listed) == ("data", "old", "v00007", "other.mp4.tracks")
    assert cache._moved_file(("new", "v99999", "clip.mp4"), listed) is None  # its name's files all tie
    assert cache._moved_file(("new", "v00007", "none.mp4"), listed) is None
    compared = []
    common = cache._common
    monkeypatch.setattr(cache, "_common", lambda a, b: compared.append(b) or common(a, b))
    found = [cache._moved_file(("new", f"w{i:05d}", "clip.mp4"), listed) for i in range(ids)]
    assert found == [None] * ids
    assert len(compared) <= 4 * ids  # a few neighbours of one search each (before: every file of its name, 3,000)


def test_the_missing_files_advice_reads_the_caches_files_once(videos, tmp_path, monkeypatch):
    """The advice for a cache that lacks files looked the probed videos up and read their files' headers each time
    it was given: by the run's check before any work, then again by every failure check past the fraction (each
    worker's, each join of the ranks'). They are looked up in one listing of the folder, and read once."""
    from mme.motion import cache

    (tmp_path / "one.txt").write_text("cls/a.mp4 0\n")
    (tmp_path / "list.txt").write_text("cls/a.mp4 0\nb.mp4 1\n")
    cli(["extract", str(tmp_path / "one.txt"), "--root", str(videos), "--out", str(tmp_path / "cache"), "--length",
         "4", "--short-side", "64"])
    cfg = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(videos), img_size=64, num_frames=8, stride=2,
                     max_failure_fraction=0.0)
    m = ModelConfig(img_size=64, num_frames=8, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=4, cache_dir=str(tmp_path / "cache")), m)
    dataset = PretrainDataset(cfg, fn, fn.track_length, track_reads=fn.track_reads)
    read = []
    monkeypatch.setattr(cache, "cache_meta", lambda path: read.append(str(path)) or cache.read_cache(path).meta)
    advice = [dataset.extract_advice() for _ in range(3)]
    assert advice == [f"`mme extract {tmp_path / 'list.txt'} --root {videos} --out {tmp_path / 'cache'} --length 4 "
                      f"--short-side 64 --seed-stride 8 --flow dis-balanced --orientation coded --backend pyav` makes "
                      f"the track cache files these videos lack with the settings of the cache's "
                      f"{cache.cache_file(tmp_path / 'cache', 'cls/a.mp4')}, and resumes"] * 3
    assert read == [str(cache.cache_file(tmp_path / "cache", "cls/a.mp4"))]  # before: 3 reads


@pytest.mark.parametrize("kind", ["mme", "mme-released"])
def test_from_the_cache_a_worker_decodes_only_the_frames_its_targets_read(videos, tmp_path, kind):
    """Online, a worker decodes the L + 1 frames from each start that the flow links; from the cache only the L
    that ``shape`` reads (none beyond the clip for ``traj`` alone), and it ships the same motion, bitwise."""
    out = tmp_path / "cache"
    cli(["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "4",
         "--short-side", "96"])
    m = ModelConfig(img_size=64, num_frames=8, embed_dim=32, depth=1, num_heads=2)
    online = make_target_fn(TargetConfig(kind=kind, track_length=4), m)
    cached = make_target_fn(TargetConfig(kind=kind, track_length=4, cache_dir=str(out)), m)
    assert (online.track_reads, cached.track_reads) == (5, 4 if kind == "mme" else 0)
    (videos / "a.txt").write_text("cls/a.mp4\n")
    data = DataConfig(list_file=str(videos / "a.txt"), root=str(videos), num_frames=8, stride=2, img_size=64)
    every = PretrainDataset(data, cached, track_length=4)  # the online path's frames
    few = PretrainDataset(data, cached, track_length=4, track_reads=cached.track_reads)
    for seed in range(3):
        rng = [np.random.default_rng([seed, 0, 0, 0]) for _ in range(2)]
        full, sample = every.sample(0, rng[0]), few.sample(0, rng[1])
        assert np.array_equal(full.clip, sample.clip)  # the same window and crop
        starts = sample.starts[:, None] + np.arange(cached.track_reads)[None]
        expected = np.unique(np.concatenate([sample.clip, np.minimum(starts, 29).ravel()]))
        assert np.array_equal(sample.frame_ids, expected) and len(expected) < len(full.frame_ids)
        shipped, reference = cached(sample), cached(full)
        assert shipped.keys() == reference.keys()
        for key in shipped:
            assert torch.equal(shipped[key], reference[key]), key


def test_corrupt_cache_is_an_error_naming_the_file_and_the_dataset_skips_it(videos, tmp_path):
    out = tmp_path / "cache"
    cli(["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "4",
         "--short-side", "64"])
    bad = cache_file(out, "cls/a.mp4")
    good = bad.read_bytes()
    flipped = bytearray(good)
    flipped[-30] ^= 0xFF  # inside the last start's record: its zlib check fails
    huge_header = bytearray(good)
    huge_header[8 + 5] ^= 1 << 0  # bit 40 of the header's length (a MemoryError before)
    header_end = 16 + int.from_bytes(good[8:16], "little")
    bad_offset = bytearray(good)
    bad_offset[header_end + 8:header_end + 16] = (1 << 62).to_bytes(8, "little")  # start 1's record, far away
    size = "which the header's 30 starts and the offsets do not describe"
    damaged = "the header and offsets do not match their checksum"
    for broken, why in [(good[:100], "a header of \\d+ bytes in a file of 100"), (good[:-1], size),
                        (good + b"x", size), (bytes(flipped), "while decompressing data"),
                        (b"GIF89a" + good, "unknown file type"), (bytes(huge_header), "a header of \\d+ bytes"),
                        (bytes(bad_offset), damaged), (good.replace(b'"quant"', b'"qvant"'), damaged)]:
        bad.write_bytes(broken)
        with pytest.raises(VideoError, match=rf"a\.mp4\.tracks: track cache \(not a valid mme track cache: .*{why}"):
            load_tracks(bad)
    # a video or a list given in its place is no cache file to delete (it said to delete it)
    with pytest.raises(VideoError, match=r"a\.mp4: track cache \(not a track cache file \(unknown file type\): give a "
                                         r"\.tracks file of mme extract\)$"):
        load_tracks(videos / "cls" / "a.mp4")
    with pytest.raises(VideoError, match=r"track cache \(a folder, not a cache file\)"):
        load_tracks(videos)
    bad.write_bytes(good.replace(b'"version": 3', b'"version": 1'))
    with pytest.raises(VideoError, match=r"a\.mp4\.tracks: track cache \(track cache version 1, expected 3"):
        read_cache(bad, starts=[0])
    bad.write_bytes(good.replace(b'"version": 3', b'"version": 4'))  # (a later mme's: upgrade mme)
    with pytest.raises(VideoError, match=r"a\.mp4\.tracks: track cache \(made by a later mme \(tracker revision 3, "
                                         r"this mme's 3; file format 4, this mme's 3\): upgrade mme to read it\)$"):
        read_cache(bad, starts=[0])
    bad.write_bytes(good[:-1])
    (videos / "two.txt").write_text("cls/a.mp4\nb.mp4\n")
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=4, cache_dir=str(out)), m)
    data = DataConfig(list_file=str(videos / "two.txt"), root=str(videos), num_frames=4, stride=2, img_size=64,
                      max_failure_fraction=0.5)
    ds = PretrainDataset(data, fn, track_length=fn.track_length)
    item = ds[0]  # a.mp4's cache is corrupt: replaced by b.mp4, and a.mp4 is reported
    assert item["index"] == 1 and item["motion"]["disp"].shape == (2, 4, 8, 8, 2)  # (starts, steps, grid, xy)
    assert ds.failure_counts() == {"track cache": 1}


def test_a_cache_file_whose_records_are_damaged_is_named_to_delete_before_the_advised_extract(tmp_path, capsys):
    """A file whose records fail zlib's check (its header reads): the failure fraction's refusal advised re-running
    mme extract, whose resume reads headers only and kept it ("0 written, 2 already complete"), so following the
    advice looped. The refusal names the file to delete first, and the extraction it advises then makes it; not a
    file whose header fails, which that extraction makes again (before: named to delete as one it keeps)."""
    root, out = tmp_path / "videos", tmp_path / "cache"
    root.mkdir()
    write_video(root / "pan.mp4", affine_video(12, 64, 80, dx=2.0, seed=3)[0])
    write_video(root / "still.mp4", affine_video(12, 64, 64, seed=1)[0])
    (root / "list.txt").write_text("pan.mp4\nstill.mp4\n")
    args = ["extract", str(root / "list.txt"), "--root", str(root), "--out", str(out), "--length", "2",
            "--short-side", "64"]
    assert cli(args) == 0
    bad = cache_file(out, "pan.mp4")
    data = bytearray(bad.read_bytes())
    header = int.from_bytes(data[8:16], "little")
    starts = json.loads(data[16:16 + header])["starts"]
    offsets = np.frombuffer(bytes(data[16 + header:16 + header + 8 * (starts + 1)]), "<u8")
    for offset in offsets[:-1]:  # a byte inside each record: every start's zlib check fails, the header reads
        data[16 + header + 8 * (starts + 1) + 4 + int(offset) + 4] ^= 0xFF
    bad.write_bytes(bytes(data))
    header_damaged = cache_file(out, "still.mp4")
    data = bytearray(header_damaged.read_bytes())
    data[16 + 2] ^= 0x01  # a byte of its header: its checksum fails
    header_damaged.write_bytes(bytes(data))
    dataset = _cached_dataset(root, out, max_failure_fraction=0.5)
    with pytest.raises(DataError, match=r"\(\{'track cache': 2\}\); e\.g\. .*; delete the track "
                                        r"cache files that cannot be read, which a resumed extraction keeps \(it reads "
                                        r"their headers only\): \S*pan\.mp4\.tracks \(Error -3 while decompressing "
                                        r"data: .*\); then `mme extract ") as refused:
        for i in range(2):
            dataset[i]
    assert "still.mp4.tracks" not in str(refused.value).split("delete the track")[1]
    capsys.readouterr()
    assert cli(args) == 0 and "1 written, 1 already complete" in capsys.readouterr().out  # pan kept: to be deleted
    bad.unlink()
    assert cli(args) == 0 and "1 written, 1 already complete" in capsys.readouterr().out  # as advised
    fresh = _cached_dataset(root, out, max_failure_fraction=0.5)
    assert fresh[0]["motion"]["disp"].shape[0] == 2 and fresh.failure_counts() == {}


def test_a_cache_file_is_checked_whole_one_record_at_a_time(tmp_path):
    """cache.damaged read a file's every record into arrays (read_cache): an hour-long video's tracks at the default
    settings, about 13 GB, in each loader worker that gave the failure advice. Its records are checked one at a time,
    none kept; a damaged last record is still found, by zlib's check or its size."""
    import tracemalloc

    from mme.motion.cache import damaged, track_writer

    path, starts, grid = tmp_path / "long.mp4.tracks", 600, (28, 37)  # the default settings' grid: 26 KB a record
    with track_writer(path, {"length": 6}, starts, grid, False) as write:
        for _ in range(starts // 100):
            write(np.zeros((100, 6, *grid, 2), np.int16), np.ones((100, *grid), bool))
    tracemalloc.start()
    try:
        assert damaged(path) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # (before: 75 MB, the file's tracks in int16 and float32)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the last record
    path.write_bytes(bytes(data))
    assert damaged(path).startswith("Error -3 while decompressing data")


def test_a_damaged_header_is_refused_and_a_resume_makes_a_damaged_file_again(videos, tmp_path, caplog):
    """One bit of the header's quantum flipped (0.05 -> 0.07 px) read as displacements 1.4 times larger, and a
    resumed extraction counted the file "already complete". Version 3 files carry a checksum of their header; files
    of version 2 (without one) are still read, held to the quantum mme writes. A damaged record is refused by the
    read that needs it (zlib's own check), naming the file; a resume checks headers only, not every record."""
    import logging

    out = tmp_path / "cache"
    (videos / "b.txt").write_text("b.mp4\n")
    args = ["extract", str(videos / "b.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
            "--short-side", "64"]
    assert cli(args) == 0
    made = cache_file(out, "b.mp4")
    good = made.read_bytes()
    tracks = read_cache(made)
    length = int.from_bytes(good[8:16], "little")
    version_2 = good[:16] + good[16:16 + length].replace(b'"version": 3', b'"version": 2') \
        + good[16 + length:16 + length + 13 * 8] + good[16 + length + 13 * 8 + 4:]  # 12 starts: no checksum
    made.write_bytes(version_2)
    old = read_cache(made)
    assert old.meta["version"] == 2 and np.array_equal(old.disp, tracks.disp)
    assert np.array_equal(old.valid, tracks.valid)

    def flip_quant(data: bytes) -> bytes:
        flipped = bytearray(data)
        flipped[data.index(b'"quant": 0.05') + len(b'"quant": 0.0')] ^= 2
        return bytes(flipped)

    record = bytearray(good)
    record[-5] ^= 0xFF
    made.write_bytes(bytes(record))
    with pytest.raises(VideoError, match=re.escape(f"{made}: track cache (not a valid mme track cache: Error -")):
        read_cache(made)
    for broken, why in ((flip_quant(good), "the header and offsets do not match their checksum"),
                        (flip_quant(version_2), "a quantum of 0.07 px, where mme writes 0.05")):
        made.write_bytes(broken)
        with pytest.raises(VideoError, match=re.escape(f"{made}: track cache (not a valid mme track cache: {why}")):
            read_cache(made)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert cli(args) == 0
        assert report(out, videos / "b.txt")["done"] == 1 and made.read_bytes() == good
        assert f"extract: {made}: not a valid mme track cache (ValueError: {why}" in caplog.text
        assert "; made again" in caplog.text and "re-run" not in caplog.text

def test_a_version_2_header_missing_or_negative_fields_is_refused_by_a_resume_and_made_again(videos, tmp_path,
                                                                                             caplog):
    """A version 2 file has no checksum of its header. Its header was checked by a resume (cache_meta) for its
    starts and offsets alone: one without "homs", or with a negative length or grid, was counted complete and the
    training read refused it. The header is checked for every field the read takes, in one place."""
    out = tmp_path / "cache"
    (tmp_path / "b.txt").write_text("b.mp4\n")
    args = dict(root=str(videos), length=2, short_side=64)
    assert extract_cache(str(tmp_path / "b.txt"), str(out), **args)["done"] == 1
    made = cache_file(out, "b.mp4")
    good, tracks = made.read_bytes(), read_cache(made)
    length = int.from_bytes(good[8:16], "little")
    meta = json.loads(good[16:16 + length])
    offsets = good[16 + length:16 + length + 8 * (meta["starts"] + 1)]
    records = good[16 + length + len(offsets) + 4:]  # past the checksum, which version 2 lacks

    def version_2(damaged: dict) -> bytes:
        header = json.dumps({**damaged, "version": 2}).encode()
        return good[:8] + len(header).to_bytes(8, "little") + header + offsets + records

    without_homs = {k: v for k, v in meta.items() if k != "homs"}
    for damaged, why in ((without_homs, "'homs'"),
                         ({**meta, "length": -1}, f"{meta['starts']} starts of -1 steps on a"),
                         ({**meta, "grid": [-1, 4]}, "on a -1x4 grid")):
        made.write_bytes(version_2(damaged))
        with pytest.raises(VideoError, match=re.escape(f"{made}: track cache (not a valid mme track cache: ")) as e:
            cache_meta(made)
        assert why in str(e.value)
        with pytest.raises(VideoError, match=re.escape(why)):
            read_cache(made)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert extract_cache(str(tmp_path / "b.txt"), str(out), **args)["done"] == 1
        assert made.read_bytes() == good and "; made again" in caplog.text
    made.write_bytes(version_2(meta))
    assert cache_meta(made)["version"] == 2 and np.array_equal(read_cache(made).disp, tracks.disp)  # intact: read


def test_a_version_3_header_whose_quantum_is_missing_or_not_a_number_is_refused_and_made_again(videos, tmp_path,
                                                                                                caplog):
    """A version 3 header whose checksum matches it but whose "quant" (the px per step read_cache scales by) is
    missing, null or text is refused by the header's check, as a damaged file: a resume makes it again, the start
    check counts it unreadable, and a training read fails it as its video's failure (before: cache_meta took it, a
    resume counted it complete, and read_cache raised a bare KeyError, TypeError or ValueError)."""
    import zlib

    out = tmp_path / "cache"
    (tmp_path / "b.txt").write_text("b.mp4\n")
    args = dict(root=str(videos), length=2, short_side=64)
    assert extract_cache(str(tmp_path / "b.txt"), str(out), **args)["done"] == 1
    made = cache_file(out, "b.mp4")
    good = made.read_bytes()
    length = int.from_bytes(good[8:16], "little")
    meta = json.loads(good[16:16 + length])
    offsets = good[16 + length:16 + length + 8 * (meta["starts"] + 1)]
    records = good[16 + length + len(offsets) + 4:]

    def checksummed(damaged: dict) -> bytes:
        header = json.dumps(damaged).encode()
        length_bytes = len(header).to_bytes(8, "little")
        checksum = zlib.crc32(length_bytes + header + offsets).to_bytes(4, "little")
        return good[:8] + length_bytes + header + offsets + checksum + records

    assert checksummed(meta) == good  # the checksum written as mme writes it
    without_quant = {k: v for k, v in meta.items() if k != "quant"}
    for damaged, why in ((without_quant, "'quant'"), ({**meta, "quant": None}, "not 'NoneType'"),
                         ({**meta, "quant": "x"}, "could not convert string to float: 'x'")):
        made.write_bytes(checksummed(damaged))
        for read in (cache_meta, read_cache):
            with pytest.raises(VideoError, match=re.escape(f"{made}: track cache (not a valid mme track cache: ")) as e:
                read(made)
            assert why in str(e.value)
        assert cache_meta_and_refusal(made, str(videos / "b.mp4")) == (None, "unreadable",
                                                                        f"unreadable ({e.value.__cause__})")
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert extract_cache(str(tmp_path / "b.txt"), str(out), **args)["done"] == 1
        assert made.read_bytes() == good and "; made again" in caplog.text


def test_a_cache_made_from_another_version_of_the_video_is_refused(videos, tmp_path):
    """The cache of a video, then a resized, a trimmed and a re-encoded copy (same frame size and frame count, other
    motion) under the same name: their frames are not the ones the tracks were made on, so each is a VideoError
    naming the cache and both versions (the dataset skips it and reports it); the video itself still reads its
    cache, and so does a copy of it."""
    cli(["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(tmp_path / "cache"), "--length", "4",
         "--short-side", "64"])
    frames = affine_video(30, 120, 150, dx=1.3, dy=0.6, rot_deg=0.8, seed=4)[0]
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=4, cache_dir=str(tmp_path / "cache")), m)
    other = affine_video(30, 120, 150, dx=-1.3, dy=0.6, rot_deg=0.8, seed=4)[0]
    (tmp_path / "copied" / "cls").mkdir(parents=True)  # cp: another mtime, the same content
    (tmp_path / "copied" / "cls" / "a.mp4").write_bytes((videos / "cls" / "a.mp4").read_bytes())
    (tmp_path / "copied" / "list.txt").write_text("cls/a.mp4\n")
    for root, copy, now in [(videos, None, None), (tmp_path / "copied", None, None),
                            (tmp_path / "resized", frames[:, ::2, ::2], "75x60, 30 frames"),
                            (tmp_path / "trimmed", frames[:20], "150x120, 20 frames"),
                            (tmp_path / "re-encoded", other, None)]:
        if copy is not None:
            (root / "cls").mkdir(parents=True)
            write_video(root / "cls" / "a.mp4", np.ascontiguousarray(copy))
            (root / "list.txt").write_text("cls/a.mp4\n")
        if copy is other:
            sample = PretrainDataset(DataConfig(list_file=str(root / "list.txt"), root=str(root), num_frames=4,
                                                stride=2, img_size=64)).sample(0, np.random.default_rng(0))
            with pytest.raises(VideoError, match=r"a\.mp4\.tracks: track cache \(made from another version of "
                                                 r".*a\.mp4 \(same frame size and frame count, other content\)"):
                fn(sample)
            continue
        data = DataConfig(list_file=str(root / "list.txt"), root=str(root), num_frames=4, stride=2, img_size=64)
        sample = PretrainDataset(data).sample(0, np.random.default_rng(0))
        if now is None:
            assert fn(sample)["disp"].shape == (2, 4, 8, 8, 2)
            continue
        with pytest.raises(VideoError, match=rf"a\.mp4\.tracks: track cache \(made from another version of "
                                             rf".*a\.mp4: 150x120, 30 frames there, {now} now; it was made from "
                                             rf"{re.escape(str(videos))}/cls/a\.mp4, which a re-run of mme extract "
                                             r"refuses as another dataset's video of the same name"):
            fn(sample)  # (its copy in another folder: a re-run refuses the file, made from the first)


def test_an_overwrite_of_a_cache_a_job_reads_is_refused_naming_it_and_goes_on_once_it_ends(videos, tmp_path,
                                                                                             capsys):
    """`mme extract --overwrite` into the track cache a live `mme pretrain` read (target.cache_dir) was not refused:
    it replaced the files mid-run, and the run trained on the new tracks from then on without a word."""
    out = tmp_path / "cache"
    (tmp_path / "ab.txt").write_text("cls/a.mp4 0\nb.mp4 1\n")
    args = ["extract", str(tmp_path / "ab.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
            "--short-side", "64"]
    assert cli(args) == 0
    # a plain extraction makes both sides' lock files (a run of a user who cannot write the cache holds it on them,
    # opened read-only; it read unlocked beside a later --overwrite where only an overwrite had made them)
    assert {p.name for p in (out / ".locks").glob("*.lock")} == {"readers.lock", "writers.lock"}
    a, b = cache_file(out, "cls/a.mp4"), cache_file(out, "b.mp4")
    made = a.stat().st_mtime_ns
    reader = subprocess.Popen([sys.executable, "-c", "import time; from mme.utils import hold_for_reading; "
                               f"hold_for_reading({str(out)!r}, 'target.cache_dir'); print(flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        reader.stdout.readline()  # it reads the cache
        capsys.readouterr()
        assert cli(args + ["--flow", "dis-fast", "--overwrite"]) == 1
        err = capsys.readouterr().err
        assert f"mme extract: error: --out '{out}' is read by a running job (PID {reader.pid} on " in err, err
        assert "wait for it to end, or extract into another --out" in err and a.stat().st_mtime_ns == made
        b.unlink()  # adding the files a cache lacks goes on beside a reader (it refused them missing at its start)
        assert cli(args) == 0 and b.is_file() and a.stat().st_mtime_ns == made
    finally:
        reader.kill()
        reader.wait()
    assert cli(args + ["--flow", "dis-fast", "--overwrite"]) == 0  # its reader gone
    assert cache_meta(a)["flow"] == "dis-fast" and not list((out / ".locks" / "readers").iterdir())


def test_a_job_that_cannot_hold_a_caches_readers_lock_is_warned_once_per_node(videos, tmp_path, monkeypatch, caplog):
    """A track cache copied without its dot files (no .locks/) that the run cannot write was read without the
    readers' lock, so an `mme extract --overwrite` there was not refused while the run read it, and nothing said so.
    The node's first rank warns once, naming the cache and why; where the lock files are there, such a cache is
    held (opened read-only) and the overwrite refused."""
    from mme.utils import _warn_read_unlocked, hold_for_reading, make_side_locks, replacing_read_files, unlock_folder

    out = tmp_path / "cache"
    (tmp_path / "ab.txt").write_text("cls/a.mp4 0\nb.mp4 1\n")
    assert cli(["extract", str(tmp_path / "ab.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
                "--short-side", "64"]) == 0
    shutil.rmtree(out / ".locks")  # copied without its dot files
    mkdir = Path.mkdir

    def unwritable(self, *args, **kwargs):  # the cache's owner's folder (root writes any: refused as a user would be)
        if self.parent == out:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", unwritable)
    with caplog.at_level("WARNING", logger="mme.utils"):
        monkeypatch.setenv("LOCAL_RANK", "1")  # the node's second rank: its first says it
        hold_for_reading(out, "target.cache_dir")
        assert caplog.records == []
        _warn_read_unlocked.cache_clear()  # (as in another process)
        monkeypatch.setenv("LOCAL_RANK", "0")
        for _ in range(2):
            hold_for_reading(out, "target.cache_dir")
    assert [r.getMessage() for r in caplog.records] == [
        f"target.cache_dir '{out}': this job cannot hold its readers' lock (its .locks/readers.lock can be neither "
        "opened nor made: Permission denied), so an mme extract --overwrite there is not refused while the job "
        "reads it: its tracks could change under the job, unsaid"]
    caplog.clear()
    monkeypatch.setattr(Path, "mkdir", mkdir)
    make_side_locks(out)  # as an extraction by its owner makes them
    monkeypatch.setattr(Path, "mkdir", unwritable)
    with caplog.at_level("WARNING", logger="mme.utils"):
        hold_for_reading(out, "target.cache_dir")
    try:
        assert caplog.records == []
        with pytest.raises(ConfigError, match=rf"^--out '{out}' is read by a running job"):
            with replacing_read_files(out, "--out"):
                pass
    finally:
        unlock_folder(out)


def test_a_job_that_cannot_search_a_caches_locks_folder_reads_it_with_the_warning_not_a_traceback():
    """A cache whose .locks/ this user cannot search (another user's, mode 0700): the readers' lock cannot be opened,
    and the second look that chose the warning's words (Path.exists, which raises PermissionError there on Python
    3.11) stopped the run with a traceback, where it read the cache before. Its words come from the open's error."""
    import tempfile

    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o755)  # (searchable by the other user)
        (base / ".locks").mkdir(mode=0o000)
        (base / ".locks").chmod(0o000)  # (root's, searched by another user; or this user's own, not searchable)
        read = ("import logging, os, sys\n"
                "import mme.train.distributed\n"
                "from mme.utils import hold_for_reading\n"
                "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
                "if os.geteuid() == 0:  # (imported first: Python's own files may be root's only)\n"
                "    os.setgid(65534)\n"
                "    os.setuid(65534)\n"
                "hold_for_reading(sys.argv[1], 'target.cache_dir')\n"
                "print('read')\n")
        proc = subprocess.run([sys.executable, "-c", read, str(base)], capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stdout) == (0, "read\n"), proc.stderr[-2000:]
        assert proc.stderr == f"target.cache_dir '{base}': this job cannot hold its readers' lock (its .locks/" \
            "readers.lock can be neither opened nor made: Permission denied), so an mme extract --overwrite there " \
            "is not refused while the job reads it: its tracks could change under the job, unsaid\n"
    finally:
        (base / ".locks").chmod(0o700)
        shutil.rmtree(base)


def test_the_shares_of_one_overwrite_go_on_beside_each_other_and_a_reader_is_refused_while_either_runs(
        videos, tmp_path, capsys):
    """Sharded `mme extract --overwrite` jobs into one cache (--shard k/N on each node, a SLURM array) refused each
    other as "read by a running job": each took the readers' lock alone. Overwrites exclude readers, not each other."""
    from mme.utils import hold_for_reading, unlock_folder

    out = tmp_path / "cache"
    (tmp_path / "ab.txt").write_text("cls/a.mp4 0\nb.mp4 1\n")
    args = ["extract", str(tmp_path / "ab.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
            "--short-side", "64", "--overwrite"]
    share = out / ".locks" / share_name(str(tmp_path / "ab.txt"), 0, 2)
    other = subprocess.Popen([sys.executable, "-c", "import time; from mme.utils import lock_folder, "  # share 0/2
                              f"replacing_read_files; f = replacing_read_files({str(out)!r}, '--out'); "
                              f"f.__enter__(); lock_folder({str(share)!r}, '--out'); print(flush=True); "
                              "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        other.stdout.readline()  # share 0 of the overwrite runs
        assert cli(args + ["--shard", "1/2"]) == 0, capsys.readouterr().err
        assert cache_meta(cache_file(out, "b.mp4"))["length"] == 2 and not cache_file(out, "cls/a.mp4").exists()
        with pytest.raises(ConfigError, match=rf"^target.cache_dir '{out}' is being rewritten by an mme extract "
                                              rf"--overwrite \(PID {other.pid} on .*\), whose tracks would change"):
            hold_for_reading(out, "target.cache_dir")
    finally:
        other.kill()
        other.wait()
    hold_for_reading(out, "target.cache_dir")  # the overwrite gone, a reader holds the cache
    try:
        assert cli(args + ["--shard", "0/2"]) == 1
        assert f"--out '{out}' is read by a running job (PID {os.getpid()} on " in capsys.readouterr().err
    finally:
        unlock_folder(out)
    assert cli(args + ["--shard", "0/2"]) == 0 and cache_file(out, "cls/a.mp4").is_file()


def test_a_run_refused_a_cache_being_rewritten_names_the_overwrite_not_an_extraction_adding_files(tmp_path):
    """A run refused a cache an `mme extract --overwrite` rewrote named every job holding a share in its .locks as
    that overwrite: an extraction of val.txt only adding files was named, the overwrite was not. The jobs holding the
    writers' side record themselves (.locks/writers/), as readers do, and those records are named."""
    from mme.utils import hold_for_reading, replacing_read_files, unlock_folder

    cache = tmp_path / "cache"
    cache.mkdir()
    adding = cache / ".locks" / share_name(str(tmp_path / "val.txt"), 0, 1)
    extraction = subprocess.Popen([sys.executable, "-c", "import time; from mme.utils import lock_folder; "
                                   f"lock_folder({str(adding)!r}, '--out'); print(flush=True); time.sleep(60)"],
                                  stdout=subprocess.PIPE, text=True)
    try:
        extraction.stdout.readline()
        with replacing_read_files(cache, "--out"):  # the overwrite, this process
            with pytest.raises(ConfigError) as refused:
                hold_for_reading(cache, "target.cache_dir")
            said = str(refused.value)
            assert f"is being rewritten by an mme extract --overwrite (PID {os.getpid()} on " in said, said
            assert f"PID {extraction.pid} " not in said, said
            assert [p.name for p in (cache / ".locks" / "writers").iterdir()] == [
                f"{socket.gethostname()}-{os.getpid()}.lock"]
        assert list((cache / ".locks" / "writers").iterdir()) == []  # its record removed at its end
    finally:
        extraction.kill()
        extraction.wait()
    hold_for_reading(cache, "target.cache_dir")  # the overwrite gone, the adding extraction too: a run reads
    unlock_folder(cache)


def test_every_rank_of_an_overwrite_is_refused_a_cache_a_job_reads_in_its_own_out(videos, tmp_path, monkeypatch):
    """Only global rank 0 of `mme extract --overwrite` under torchrun looked for a run reading its --out: a node's own
    --out (node-local NVMe), which rank 0 does not write, was rewritten under a run reading it there."""
    from mme.utils import hold_for_reading, unlock_folder

    out = tmp_path / "node1"
    (tmp_path / "ab.txt").write_text("cls/a.mp4 0\nb.mp4 1\n")
    opts = ExtractOptions(length=2, short_side=64)
    extract.run(str(tmp_path / "ab.txt"), str(videos), str(out), opts)
    made = cache_file(out, "b.mp4").stat().st_mtime_ns
    monkeypatch.setattr(extract, "launch_ranks", lambda: (1, 2))  # this process plays rank 1, the second node's
    monkeypatch.setattr(extract, "init_distributed", lambda device: None)
    hold_for_reading(out, "target.cache_dir")  # a run on that node reads its cache
    try:
        with pytest.raises(ConfigError, match=rf"^--out '{out}' is read by a running job \(PID {os.getpid()} on "):
            extract.run(str(tmp_path / "ab.txt"), str(videos), str(out), opts, overwrite=True)
    finally:
        unlock_folder(out)
    assert cache_file(out, "b.mp4").stat().st_mtime_ns == made
    assert extract.run(str(tmp_path / "ab.txt"), str(videos), str(out), opts, overwrite=True)["done"] == 1


def test_a_run_holds_its_track_cache_for_its_life_and_is_refused_one_being_rewritten(synth, tmp_path):
    """A run started on a track cache that an `mme extract --overwrite` was rewriting read tracks of two settings; one
    running let the extraction replace them under it (previous test). The run holds the cache while it lives, and
    is refused one being rewritten, naming the extraction."""
    from training import run

    from mme.utils import lock_folder, replacing_read_files, unlock_folder

    list_file, root = (o.split("=", 1)[1] for o in synth)
    cache = tmp_path / "cache"
    assert cli(["extract", list_file, "--root", root, "--out", str(cache), "--length", "2", "--short-side", "64"]) == 0
    share = cache / ".locks" / "share"
    lock_folder(share, "--out")  # an extraction's share
    try:
        with replacing_read_files(cache, "--out"), pytest.raises(
                ConfigError, match=rf"^target.cache_dir '{cache}' is being rewritten by an mme extract --overwrite "
                                   rf"\(PID {os.getpid()} on .*\), whose tracks would change under this job; wait for "
                                   r"it to end$"):
            run("tiny_cpu_mme", synth, tmp_path / "refused", f"target.cache_dir={cache}", "model.depth=1",
                "train.steps=2", "target.track_length=2")
    finally:
        unlock_folder(share)
    run("tiny_cpu_mme", synth, tmp_path / "run", f"target.cache_dir={cache}", "model.depth=1", "train.steps=2",
        "target.track_length=2")
    with replacing_read_files(cache, "--out"):  # the run let go of it as it ended
        pass


def test_a_run_on_a_cache_an_extraction_is_writing_now_is_told_to_wait_for_it(synth, tmp_path):
    """A run refused for the track cache files its cache lacked advised the `mme extract` that makes them, while one
    was making them: that command would be refused as in use. It names the extraction writing the cache now; one of
    another list (val.txt beside train.txt), which makes none of its files, is not said (for a while it was)."""
    from training import run

    cache = tmp_path / "cache"
    listed = Path(synth[0].split("=", 1)[1])
    other = cache / ".locks" / share_name(str(listed.with_name("val.txt")), 0, 1)  # of another list: not said
    extraction = subprocess.Popen([sys.executable, "-c", "import time; from mme.utils import lock_folder; "
                                   f"lock_folder({str(other)!r}, '--out'); print(flush=True); time.sleep(60)"],
                                  stdout=subprocess.PIPE, text=True)
    try:
        extraction.stdout.readline()
        with pytest.raises(DataError, match=r"; `mme extract .*` makes the track cache files these videos lack"):
            run("tiny_cpu_mme", synth, tmp_path / "run", f"target.cache_dir={cache}")
    finally:
        extraction.kill()
        extraction.wait()
    share = cache / ".locks" / share_name(str(listed), 1, 2)  # a share of the run's list
    extraction = subprocess.Popen([sys.executable, "-c", "import time; from mme.utils import lock_folder; "
                                   f"lock_folder({str(share)!r}, '--out'); print(flush=True); time.sleep(60)"],
                                  stdout=subprocess.PIPE, text=True)
    try:
        extraction.stdout.readline()  # it holds its share of the cache
        with pytest.raises(DataError, match=rf"^target.cache_dir '{cache}' holds no track cache file for any of the "
                                            rf"16 videos of .*; an mme extract \(PID {extraction.pid} on .*\) is "
                                            r"writing it now: wait for it to end, then run again$"):
            run("tiny_cpu_mme", synth, tmp_path / "run", f"target.cache_dir={cache}")
    finally:
        extraction.kill()
        extraction.wait()
    with pytest.raises(DataError, match=r"; `mme extract .*` makes the track cache files these videos lack"):
        run("tiny_cpu_mme", synth, tmp_path / "run", f"target.cache_dir={cache}")  # (its end: the command again)


def test_a_cache_an_earlier_mme_made_of_the_file_beside_a_symlinked_root_is_refused_and_made_again(tmp_path):
    """A list line '../other/x.mp4' under a --root R -> real/deep/root names real/deep/other/x.mp4; an earlier mme
    removed '..' by text and tracked other/x.mp4 beside the link, recording that path and the named file's
    fingerprint. Training refuses that file as made by an earlier mme, and a resumed extraction makes it again of the
    named video (before: both took it, tracks of the other video)."""
    for folder in ("real/deep/root", "real/deep/other", "other"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "R").symlink_to("real/deep/root")
    named, beside = tmp_path / "real/deep/other/x.mp4", tmp_path / "other/x.mp4"
    write_video(named, affine_video(10, 64, 64, dx=1.5, seed=1)[0])
    write_video(beside, affine_video(10, 64, 64, dx=-1.5, seed=2)[0])
    (tmp_path / "list.txt").write_text("../other/x.mp4 0\n")
    opts = ExtractOptions(length=2, short_side=64)
    target = cache_file(tmp_path / "cache", "../other/x.mp4")
    extract.extract_video(str(beside), target, opts)  # as the earlier mme made it: beside's tracks, named's identity
    wrong = read_cache(target)
    save_tracks(target, wrong.disp, wrong.valid, None, {**wrong.meta, **extract.source_identity(named)})
    assert wrong.disp[:, 0, ..., 0].mean() < -1
    data = DataConfig(list_file=str(tmp_path / "list.txt"), root=str(tmp_path / "R"), num_frames=4, stride=2,
                      img_size=64)
    sample = PretrainDataset(data).sample(0, np.random.default_rng(0))
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=2, cache_dir=str(tmp_path / "cache")), m)
    with pytest.raises(VideoError, match=rf"its tracks are of {re.escape(str(beside))}, the file an earlier mme "
                                         r"opened for .*R/\.\./other/x\.mp4 .*; re-run mme extract"):
        fn(sample)
    (refused,) = PretrainDataset(data, fn, track_length=2).refused_probes  # as the start check counts it
    assert refused[:3] == (sample.path, str(target), "stale") and refused[3].startswith(
        f"its tracks are of {beside}")
    assert other_settings(target, opts, sample.path) is None  # made again
    made = extract_cache(str(tmp_path / "list.txt"), str(tmp_path / "cache"), root=str(tmp_path / "R"), length=2,
                         short_side=64)
    assert (made["done"], made["skipped"]) == (1, 0)
    assert read_cache(target).disp[:, 0, ..., 0].mean() > 1  # the named video's motion
    assert other_settings(target, opts, sample.path) == {}  # now kept
    assert fn(sample)["disp"].shape[1] == 2


@pytest.mark.parametrize("old_place", ["gone", "a copy"])
def test_a_cache_of_a_dataset_moved_since_and_reached_through_a_symlink_is_kept(tmp_path, old_place):
    """This mme's cache of a list line '../extra/x.mp4' under data/videos records data/extra/x.mp4. The dataset is
    then moved (data/extra gone) or copied (data/extra kept) to big/, and data/videos made a link to big/videos: the
    line now names big/extra/x.mp4, and the recorded path is that spelling with '..' removed by text. The file there
    is gone or the same file, so the cache is kept: training reads it, the start check refuses nothing, and a resumed
    extraction keeps it (before: refused as tracks an earlier mme made of the file beside the link)."""
    (tmp_path / "data/videos").mkdir(parents=True)
    (tmp_path / "data/extra").mkdir()
    write_video(tmp_path / "data/extra/x.mp4", affine_video(10, 64, 64, dx=-1.5, seed=2)[0])
    (tmp_path / "list.txt").write_text("../extra/x.mp4 0\n")
    root, cache = str(tmp_path / "data/videos"), str(tmp_path / "cache")
    extract_cache(str(tmp_path / "list.txt"), cache, root=root, length=2, short_side=64)
    target = cache_file(cache, "../extra/x.mp4")
    made = target.read_bytes()
    move = shutil.move if old_place == "gone" else shutil.copytree
    (tmp_path / "big").mkdir()
    for folder in ("videos", "extra"):
        move(tmp_path / "data" / folder, tmp_path / "big" / folder)
    shutil.rmtree(tmp_path / "data/videos", ignore_errors=True)
    (tmp_path / "data/videos").symlink_to(tmp_path / "big/videos")
    assert (tmp_path / "data/extra/x.mp4").is_file() == (old_place == "a copy")
    data = DataConfig(list_file=str(tmp_path / "list.txt"), root=root, num_frames=4, stride=2, img_size=64)
    sample = PretrainDataset(data).sample(0, np.random.default_rng(0))
    assert os.path.realpath(sample.path) == str(tmp_path / "big/extra/x.mp4")
    assert other_settings(target, ExtractOptions(length=2, short_side=64), sample.path) == {}
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=2, cache_dir=cache), m)
    assert PretrainDataset(data, fn, track_length=2).refused_probes == []
    assert fn(sample)["disp"].shape[1] == 2
    resumed = extract_cache(str(tmp_path / "list.txt"), cache, root=root, length=2, short_side=64)
    assert (resumed["done"], resumed["skipped"]) == (0, 1)
    assert target.read_bytes() == made


def test_a_cache_of_longer_tracks_gives_the_validity_of_the_tracks_read(tmp_path):
    """A point is valid while it stays in the frame over the target's L steps. A cache holds tracks of its own L;
    read for a shorter one, a point that leaves only after the L read must stay valid (a pan of 1.5 px/frame:
    the column of tokens at the edge it moves to was dropped from a cache of L = 8 read at L = 4)."""
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "pan.mp4", affine_video(30, 64, 64, dx=1.5, seed=7)[0])
    (root / "list.txt").write_text("pan.mp4\n")
    data = DataConfig(list_file=str(root / "list.txt"), root=str(root), num_frames=8, stride=2, img_size=64,
                      crop="center")
    sample = PretrainDataset(data, track_length=4).sample(0, np.random.default_rng(0))
    m = ModelConfig(img_size=64, num_frames=8, embed_dim=32, depth=1, num_heads=2)
    valid = {}
    for length in (None, 4, 8):
        cfg = dict(kind="mme", track_length=4, patch_norm=False)
        if length is not None:
            out = tmp_path / f"cache{length}"
            cli(["extract", str(root / "list.txt"), "--root", str(root), "--out", str(out), "--length", str(length),
                 "--short-side", "64"])
            cfg["cache_dir"] = str(out)
        valid[length] = make_target_fn(TargetConfig(**cfg), m).targets(sample)[1]["traj"]
    assert valid[None].float().mean() > 0.9
    assert torch.equal(valid[8], valid[4]) and torch.equal(valid[4], valid[None])


def test_a_phone_video_is_tracked_in_the_orientation_training_reads(tmp_path, capsys):
    """With ``--orientation display`` the tracks are made on the frames as displayed, which training with
    ``data.orientation=display`` reads; a cache of a phone video made in the other orientation is refused by
    training (a ConfigError: the whole cache is) and by a resumed extraction (naming the setting). A video without
    a display matrix reads the same either way, so its cache serves both."""
    root = tmp_path / "videos"
    root.mkdir()
    frames = affine_video(12, 72, 96, dx=1.5, seed=6)[0]  # 96x72 as coded, 72x96 as displayed (turned 90 degrees)
    write_video(root / "phone.mp4", frames, display=[0, -1 << 16, 0, 1 << 16, 0, 0, 0, 0, 1 << 30])
    (root / "list.txt").write_text("phone.mp4\n")
    out = tmp_path / "cache"
    args = ["extract", str(root / "list.txt"), "--root", str(root), "--out", str(out), "--length", "3",
            "--short-side", "72"]
    assert cli(args) == 0
    data = DataConfig(list_file=str(root / "list.txt"), root=str(root), num_frames=4, stride=2, img_size=64,
                      orientation="display")
    sample = PretrainDataset(data, track_length=3).sample(0, np.random.default_rng(0))
    assert sample.source == (72, 96, 12, (True, True, False))  # turned 90 degrees counterclockwise
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=3, cache_dir=str(out)), m)
    with pytest.raises(ConfigError, match=r"the track cache .*phone\.mp4\.tracks was extracted with --orientation "
                                          r"coded, which read this video's frames as coded, where this run's "
                                          r"data\.orientation reads them as displayed \(its display matrix turns its "
                                          r"frames 90 degrees counterclockwise\); extract it with the run's$"):
        fn(sample)
    capsys.readouterr()
    assert cli(args + ["--orientation", "display"]) == 1
    assert "orientation coded (this run: display)" in capsys.readouterr().err
    assert cli(args + ["--orientation", "display", "--overwrite"]) == 0
    assert cache_meta(cache_file(out, "phone.mp4"))["src_size"] == [72, 96]
    assert fn(sample)["disp"].shape == (2, 3, 8, 8, 2)
    write_video(root / "plain.mp4", frames)  # no display matrix: its coded cache serves data.orientation=display
    (root / "list.txt").write_text("plain.mp4\n")
    assert cli(args) == 0
    plain = PretrainDataset(data, track_length=3).sample(0, np.random.default_rng(0))
    assert plain.source == (96, 72, 12, (False, False, False)) and fn(plain)["disp"].shape == (2, 3, 8, 8, 2)


@pytest.mark.parametrize("turned", ["90 degrees", "180 degrees"])
def test_a_video_that_gained_a_display_matrix_since_extraction_is_its_own_failure_not_the_runs(tmp_path, turned):
    """A video extracted with --orientation display, then made again from its phone's original (the same frames,
    now with a display matrix), read by a run of data.orientation=display: its turn was judged before its version, a
    ConfigError that stopped the run ("extracted with --orientation display, which reads this video's frames otherwise
    than this run's data.orientation", both display). It is another version of the video, skipped and counted as
    one: a VideoError saying so (its frames as coded are of the same size and count, its content other)."""
    root = tmp_path / "videos"
    root.mkdir()
    frames = affine_video(12, 72, 96, dx=1.5, seed=6)[0]
    write_video(root / "v.mp4", frames)
    (root / "list.txt").write_text("v.mp4\n")
    out = tmp_path / "cache"
    assert cli(["extract", str(root / "list.txt"), "--root", str(root), "--out", str(out), "--length", "3",
                "--short-side", "72", "--orientation", "display"]) == 0
    matrix = {"90 degrees": [0, -1 << 16, 0, 1 << 16, 0, 0, 0, 0, 1 << 30],
              "180 degrees": [-1 << 16, 0, 0, 0, -1 << 16, 0, 0, 0, 1 << 30]}[turned]
    write_video(root / "v.mp4", frames, display=matrix)
    data = DataConfig(list_file=str(root / "list.txt"), root=str(root), num_frames=4, stride=2, img_size=64,
                      orientation="display")
    sample = PretrainDataset(data, track_length=3).sample(0, np.random.default_rng(0))
    assert sample.source[3] != (False, False, False)
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=3, cache_dir=str(out)), m)
    with pytest.raises(VideoError, match=r"v\.mp4\.tracks: track cache \(made from another version of .*v\.mp4 "
                                         r"\(same frame size and frame count, other content\); re-run mme extract"):
        fn(sample)  # before: a ConfigError


@pytest.mark.parametrize("change", ["trimmed", "turned without a matrix"])
def test_another_version_of_a_phone_video_is_said_in_its_coded_sizes_and_as_read(tmp_path, change):
    """The sizes a changed video's failure names are its coded ones, said so, with those its frames were read at
    where turned: a trimmed phone video (90 degree matrix, data.orientation=display) said '96x72, 12 frames there,
    96x72, 10 frames now' where the run reads 72x96; one re-encoded turned without its matrix said '96x72 ... there,
    72x96 ... now' though the run read 72x96 both times."""
    root = tmp_path / "videos"
    root.mkdir()
    frames = affine_video(12, 72, 96, dx=1.5, seed=6)[0]
    write_video(root / "v.mp4", frames, display=[0, -1 << 16, 0, 1 << 16, 0, 0, 0, 0, 1 << 30])
    (root / "list.txt").write_text("v.mp4\n")
    out = tmp_path / "cache"
    assert cli(["extract", str(root / "list.txt"), "--root", str(root), "--out", str(out), "--length", "3",
                "--short-side", "72", "--orientation", "display"]) == 0
    data = DataConfig(list_file=str(root / "list.txt"), root=str(root), num_frames=4, stride=2, img_size=64,
                      orientation="display")
    if change == "trimmed":
        write_video(root / "v.mp4", frames[:10], display=[0, -1 << 16, 0, 1 << 16, 0, 0, 0, 0, 1 << 30])
        now = r"96x72 coded \(72x96 as read\), 10 frames now"
    else:
        with PretrainDataset(data, track_length=3).open(str(root / "v.mp4")) as reader:
            shown = reader.read(list(range(12)))
        assert shown.shape[1:3] == (96, 72)
        write_video(root / "v.mp4", shown)
        now = r"72x96, 12 frames now"
    sample = PretrainDataset(data, track_length=3).sample(0, np.random.default_rng(0))
    assert sample.source[:2] == (72, 96)  # read as 72x96 both times
    fn = make_target_fn(TargetConfig(kind="mme", track_length=3, cache_dir=str(out)),
                        ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2))
    with pytest.raises(VideoError, match=rf"made from another version of .*v\.mp4: 96x72 coded \(72x96 as read\), "
                                         rf"12 frames there, {now}; re-run mme extract"):
        fn(sample)


def write_version_1(path, q, valid, pair_homs, meta):
    """A cache file as version 1 wrote it: a zip of int16 blocks of 32 starts, the whole validity, the pairs'
    homographies and the meta."""
    arrays = {f"disp_{k // 32:05d}": q[k:k + 32] for k in range(0, len(q), 32)}
    arrays["valid"] = valid
    arrays["meta"] = np.frombuffer(json.dumps({**meta, "version": 1, "quant": QUANT}).encode(), np.uint8)
    if pair_homs is not None:
        arrays["pair_homs"] = pair_homs
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize("member", ["bzip2", "oversized"])
def test_a_version_1_file_of_a_few_kb_that_unpacks_to_many_mb_is_refused_unread(tmp_path, member):
    """A version 1 cache file (a zip) of a few KB whose validity member unpacks to 16 MB (bzip2, which mme never
    wrote; or deflated, more than its meta's 4 frames of 28x28 hold): cache_meta (a resumed extraction's look, a
    run's start check) read the whole member, and such a file of a few KB took GBs. It is refused now, named, from
    its zip entry alone, as read_cache and damaged refuse it."""
    import io
    import zipfile

    from mme.motion.cache import damaged

    def npy(array_or_header: np.ndarray | dict) -> bytes:
        buffer = io.BytesIO()
        if isinstance(array_or_header, dict):
            np.lib.format.write_array_header_1_0(buffer, array_or_header)
        else:
            np.save(buffer, array_or_header)
        return buffer.getvalue()

    n = 16 << 20
    meta = {"version": 1, "length": 2, "quant": QUANT, "work_size": [224, 224], "seed_stride": 8, "num_frames": 4}
    path = tmp_path / f"bomb{V1_SUFFIX}"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.npy", npy(np.frombuffer(json.dumps(meta).encode(), np.uint8)))
        info = zipfile.ZipInfo("valid.npy")
        info.compress_type = zipfile.ZIP_BZIP2 if member == "bzip2" else zipfile.ZIP_DEFLATED
        with z.open(info, "w") as f:
            f.write(npy({"descr": "|b1", "fortran_order": False, "shape": (n, 1, 1)}))
            for _ in range(n >> 20):
                f.write(bytes(1 << 20))
    assert path.stat().st_size < 32 << 10
    said = ("its member valid.npy is compressed by zip method 12, which mme never writes" if member == "bzip2" else
            rf"its member valid.npy holds {n + 128} bytes, more than its meta allows \(210716\)")  # (a block of 32
    # starts' displacements, 32 x 2 steps x 28 x 28 x 2 int16, and an .npy header's most)
    for read in (cache_meta, read_cache):
        with pytest.raises(VideoError, match=rf"bomb\.tracks\.npz: track cache \(not a valid mme track cache: "
                                             rf"{said}; delete it"):
            read(path)
    assert re.fullmatch(said, damaged(path))


@pytest.mark.parametrize("stride", [0, 0.5])
def test_a_version_1_file_whose_seed_stride_is_under_1_is_refused_named(tmp_path, stride):
    """A version 1 file whose meta says seed_stride 0 or 0.5 was a bare ZeroDivisionError from the bound of its
    members (its stride taken as int: 0), past the refusals of an unreadable cache; it is refused, named."""
    from mme.motion.cache import damaged

    path = tmp_path / f"s{V1_SUFFIX}"
    write_version_1(path, np.zeros((2, 2, 2, 2, 2), np.int16), np.ones((2, 2, 2), bool), None,
                    {"work_size": [16, 16], "seed_stride": stride, "length": 2, "num_frames": 2})
    said = rf"its meta's seed_stride is {stride}, where mme writes one of at least 1"
    for read in (cache_meta, read_cache):
        with pytest.raises(VideoError, match=rf"s\.tracks\.npz: track cache \(not a valid mme track cache: {said}"):
            read(path)
    assert re.fullmatch(said, damaged(path))


def test_version_1_files_are_still_read_as_the_same_tracks(videos, tmp_path):
    """A version 1 cache (.tracks.npz) of the same tracks reads and resamples to bitwise what the current file
    gives; the current file is preferred where both exist, and a resumed extraction skips a complete version 1
    file."""
    out = tmp_path / "cache"
    args = ["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "4",
            "--short-side", "120", "--compensate"]
    cli(args)
    new = cache_file(out, "cls/a.mp4")
    full = read_cache(new)
    assert full.homs is not None and full.num_starts == 30
    meta = {k: v for k, v in full.meta.items() if k not in ("version", "quant", "starts", "grid", "homs")}
    old = cache_file(out, "cls/a.mp4", V1_SUFFIX)
    write_version_1(old, quantise(full.disp), full.valid, full.homs[:-1, 0], meta)  # pair s: start s, step 0
    starts = [25, 3, 29, 40, 3]
    a, b = read_cache(new, starts), read_cache(old, starts)
    assert a.starts.tolist() == b.starts.tolist() == [3, 25, 29]
    for name in ("disp", "valid", "homs"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a.num_starts, a.meta["length"]) == (b.num_starts, b.meta["length"])
    geom = Geometry(20.5, 8, 100, 100, 80, 80, flip=True)
    ra, rb = resample(a, [3, 25, 29], 4, geom, 8), resample(b, [3, 25, 29], 4, geom, 8)
    for name in ("disp", "valid", "homs"):
        assert np.array_equal(getattr(ra, name), getattr(rb, name)), name
    assert find_cache_file(out, str(videos / "cls" / "a.mp4")) == new
    new.unlink()
    assert find_cache_file(out, str(videos / "cls" / "a.mp4")) == old
    cli(args)
    assert not new.exists() and report(out, videos / "list.txt")["skipped"] == 3
    longer = tmp_path / "longer.tracks.npz"  # meta says more steps than its arrays hold
    write_version_1(longer, quantise(full.disp), full.valid, None, {**meta, "length": meta["length"] + 1})
    with pytest.raises(VideoError, match=f"inconsistent arrays: its meta says {meta['length'] + 1} steps, its "
                                         f"arrays hold {meta['length']}"):
        read_cache(longer, starts)


def test_a_damaged_current_file_beside_a_complete_version_1_file_is_made_again(videos, tmp_path, caplog):
    """A resumed extraction looked at a video's version 1 file beside its current one, which every read prefers:
    with the current file damaged and the version 1 file complete, it warned "made again" and skipped the video,
    whose damaged file each run then failed. The version 1 file is looked at only where there is no current file."""
    (videos / "a1.txt").write_text("cls/a.mp4\n")
    out = tmp_path / "cache"
    args = ["extract", str(videos / "a1.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
            "--short-side", "64"]
    assert cli(args) == 0
    new = cache_file(out, "cls/a.mp4")
    full = read_cache(new)
    meta = {k: v for k, v in full.meta.items() if k not in ("version", "quant", "starts", "grid", "homs")}
    write_version_1(cache_file(out, "cls/a.mp4", V1_SUFFIX), quantise(full.disp), full.valid, None, meta)
    new.write_bytes(b"damaged")
    with caplog.at_level("WARNING"):
        assert cli(args) == 0
    assert f"extract: {new}: not a valid mme track cache" in caplog.text
    assert (report(out, videos / "a1.txt")["done"], report(out, videos / "a1.txt")["skipped"]) == (1, 0)  # before: 0, 1
    again = read_cache(find_cache_file(out, str(videos / "cls" / "a.mp4")))
    assert np.array_equal(again.disp, full.disp) and np.array_equal(again.valid, full.valid)


def test_a_video_listed_twice_is_extracted_once(videos, tmp_path):
    (videos / "twice.txt").write_text("b.mp4 0\nb.mp4 1\n")
    out = tmp_path / "cache"
    assert cli(["extract", str(videos / "twice.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
                "--short-side", "64"]) == 0
    made = report(out, videos / "twice.txt")
    assert (made["done"], made["skipped"], made["failed"]) == (1, 0, {})
    assert cache_file(out, "b.mp4").is_file()


def test_a_video_listed_twice_is_in_one_share(videos, tmp_path):
    """Before: each share took one of its lines, so two ranks wrote its cache file at once, and the joined count
    said '2 written, 1 failed' of one good and one broken video, each listed twice."""
    (videos / "twice2.txt").write_text("b.mp4 0\n./b.mp4 0\nbad.mp4 1\nbad.mp4 1\n")
    out = tmp_path / "cache"
    base = ["extract", str(videos / "twice2.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
            "--short-side", "64"]
    assert cli(base + ["--shard", "0/2"]) == 0
    assert cli(base + ["--shard", "1/2"]) == 1
    shares = [report(out, videos / "twice2.txt", part, 2) for part in (0, 1)]
    assert [(r["done"], r["skipped"], list(r["failed"])) for r in shares] == [(1, 0, []),
                                                                             (0, 0, [str(videos / "bad.mp4")])]


@pytest.mark.parametrize("looked_up", ["on disk", "in a listing"])
def test_a_videos_cache_file_is_found_by_its_paths_parts_made_once(tmp_path, monkeypatch, looked_up):
    """find_cache_file made a Path and escaped the parts of every suffix of every video's path (20-88 us an entry,
    21 s of CPU for a 240k-line list with a deep root; 250 us an entry under a root 20 folders deep, 35 now): the
    path's parts are escaped once and matched as tuples, with the same results ('..', a symlinked root, unicode,
    version 1 files, the legacy place of '..' paths)."""
    import mme.motion.cache as cache

    out = tmp_path / "cache"
    files = ["train/café x/v1.mp4.tracks", "%2E%2E/up.mp4.tracks", "a/b.mp4.tracks.npz", "v2.mp4.tracks",
             "a/c.mp4.tracks", "ü/漢字.mp4.tracks"]
    for f in files:
        (out / f).parent.mkdir(parents=True, exist_ok=True)
        (out / f).write_bytes(b"")
    (tmp_path / "legacy.mp4.tracks").write_bytes(b"")  # where '..' paths were cached before: beside the folder
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    deep = "/" + "/".join(f"level{i}" for i in range(20))
    expected = {"/data/k400/train/café x/v1.mp4": files[0], "train/café x/v1.mp4": files[0], "../up.mp4": files[1],
                "/r/../up.mp4": files[1], "a/b.mp4": files[2], "/a/b.mp4": files[2], "/v2.mp4": files[3],
                "./a//c.mp4": files[4], f"{tmp_path}/link/a/c.mp4": files[4], f"{deep}/a/c.mp4": files[4],
                "x/ü/漢字.mp4": files[5], "../legacy.mp4": "../legacy.mp4.tracks"}
    listed = None if looked_up == "on disk" else listed_files(out)[0]
    escaped, under_cache = [], cache._under_cache
    monkeypatch.setattr(cache, "_under_cache", lambda video: escaped.append(video) or under_cache(video))
    assert {p: str(find_cache_file(out, p, listed)) for p in expected} == {p: str(out / f) for p, f in expected.items()}
    assert len(escaped) == len(expected)  # once a video (before: once per suffix of its path)
    with pytest.raises(VideoError, match="no track cache for it under"):
        find_cache_file(out, "/nope/z.mp4", listed)


def test_extract_redoes_a_changed_video_and_keeps_to_its_bound_and_its_folder(tmp_path, capsys):
    """A video re-encoded under its name (same size and frames) is extracted again on resume (before: "already
    complete", and training read the old video's tracks); a cache of another --max-disp is a setting that differs
    (resume) and a bound below the run's is refused by training (before: the tracks were silently clipped at
    0.5 px); a list entry '../x.mp4' is cached under --out (before: beside the video)."""
    root, out = tmp_path / "videos", tmp_path / "cache"
    (root / "in").mkdir(parents=True)
    write_video(root / "pan.mp4", affine_video(12, 64, 80, dx=2.0, seed=3)[0])
    (root / "in" / "list.txt").write_text("../pan.mp4\n")
    args = ["extract", str(root / "in" / "list.txt"), "--root", str(root / "in"), "--out", str(out), "--length",
            "2", "--short-side", "64"]
    assert cli(args) == 0
    made = cache_file(out, "../pan.mp4")
    assert made.is_file() and out in made.parents and not list(root.rglob("*.tracks"))
    assert find_cache_file(out, str(root / "in" / ".." / "pan.mp4")) == made
    legacy = out / ".." / "pan.mp4.tracks"  # where extractions before this wrote it: still read
    made.rename(legacy)
    assert find_cache_file(out, str(root / "in" / ".." / "pan.mp4")) == legacy
    legacy.rename(made)
    assert load_tracks(made)[0][:, 0, ..., 0].mean() > 1.5  # moving right
    write_video(root / "pan.mp4", affine_video(12, 64, 80, dx=-2.0, seed=3)[0])
    assert cli(args) == 0 and "1 written, 0 already complete" in capsys.readouterr().out
    assert load_tracks(made)[0][:, 0, ..., 0].mean() < -1.5  # made again from the new video
    assert cli(args + ["--max-disp", "0.5"]) == 1
    assert "max_disp 5.7143 (this run: 0.5)" in capsys.readouterr().err  # the default: 20 px at 224, 64 here
    assert cli(args + ["--max-disp", "0.5", "--overwrite"]) == 0
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    data = DataConfig(list_file=str(root / "in" / "list.txt"), root=str(root / "in"), num_frames=4, stride=2,
                      img_size=64)
    sample = PretrainDataset(data, track_length=2).sample(0, np.random.default_rng(0))
    with pytest.raises(ConfigError, match=r"bounded at 0.5 px per frame in its 64 px working frames \(mme extract "
                                          r"--max-disp\), 0.5 px in this run's 64 px clips of a frame's whole short "
                                          r"side, below this run's default bound 5.71429 \(target.max_disp unset: "
                                          r"the release's, scaled to its clips\); extract again with --max-disp 6 at "
                                          r"--short-side 64, or set target.max_disp=0.5$"):
        make_target_fn(TargetConfig(kind="mme", track_length=2, cache_dir=str(out)), m)(sample)
    assert make_target_fn(TargetConfig(kind="mme", track_length=2, cache_dir=str(out), max_disp=0.5), m)(sample)


def test_a_cache_bound_below_the_runs_in_its_clips_pixels_is_refused_and_the_advised_extract_reads_as_online(
        tmp_path):
    """--max-disp is in the cache's working px, target.max_disp in the run's clip px; they were compared as one unit.
    A 6 px/frame pan on 192x144, cached at --short-side 144 --max-disp 5, is 4 px/frame in a 96 px clip of the whole
    short side, where the cache bounds it at 5 * 96 / 144 = 3.33 px: accepted at target.max_disp=5, its tracks read
    3.33 px/frame against the online path's 4.00, without a word (and the refusal of --max-disp 4 advised
    --max-disp 5). Refused now, in the run's px, advising --max-disp 8, which reads as online does."""
    root, out = tmp_path / "videos", tmp_path / "cache"
    root.mkdir()
    write_video(root / "fast.mp4", affine_video(10, 144, 192, dx=6.0, seed=11)[0])
    (root / "list.txt").write_text("fast.mp4\n")
    extract = ["extract", str(root / "list.txt"), "--root", str(root), "--out", str(out), "--length", "4",
               "--short-side", "144"]
    assert cli(extract + ["--max-disp", "5"]) == 0
    data = DataConfig(list_file=str(root / "list.txt"), root=str(root), num_frames=4, stride=2, img_size=96,
                      crop="center")
    sample = PretrainDataset(data, track_length=4).sample(0, np.random.default_rng(0))
    assert sample.geometry == Geometry(24.0, 0.0, 144.0, 144.0, 96, 96)  # the whole short side
    m = ModelConfig(img_size=96, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    target = TargetConfig(kind="mme", track_length=4, max_disp=5.0)
    cached = dataclasses.replace(target, cache_dir=str(out))
    with pytest.raises(ConfigError, match=r"bounded at 5 px per frame in its 144 px working frames \(mme extract "
                                          r"--max-disp\), 3\.33333 px in this run's 96 px clips of a frame's whole "
                                          r"short side, below this run's 5 \(target\.max_disp\); extract again with "
                                          r"--max-disp 8 at --short-side 144, or set target\.max_disp=3\.33333$"):
        make_target_fn(cached, m)(sample)
    assert cli(extract + ["--max-disp", "8", "--overwrite"]) == 0

    def mean_dx(motion: dict) -> float:
        valid = np.broadcast_to(motion["track_valid"].numpy()[:, None], motion["disp"].shape[:-1])
        return float(motion["disp"].numpy()[..., 0][valid].mean())

    online, from_cache = mean_dx(make_target_fn(target, m)(sample)), mean_dx(make_target_fn(cached, m)(sample))
    assert online == pytest.approx(4.0, abs=0.1)
    assert from_cache == pytest.approx(online, abs=0.1)  # before: 3.33


def test_a_cache_bound_below_the_default_bound_says_it_is_the_default(tmp_path):
    """With target.max_disp unset the run bounds its clips at the default (20 px at a 224 short side, scaled: 5.71 px
    in 64 px clips); a cache below it was refused as below "this run's 5.71429 (target.max_disp)", a key the run
    does not set. The refusal says it is the default bound, and the key that sets another."""
    root, out = tmp_path / "videos", tmp_path / "cache"
    root.mkdir()
    write_video(root / "pan.mp4", affine_video(4, 64, 80, dx=1.0, seed=2)[0])
    (root / "list.txt").write_text("pan.mp4\n")
    assert cli(["extract", str(root / "list.txt"), "--root", str(root), "--out", str(out), "--length", "2",
                "--short-side", "64", "--max-disp", "1"]) == 0
    file = cache_file(out, "pan.mp4")
    meta = cache_meta(file)
    with pytest.raises(ConfigError, match=r"1 px in this run's 64 px clips of a frame's whole short side, below this "
                                          r"run's default bound 5\.71429 \(target\.max_disp unset: the release's, "
                                          r"scaled to its clips\); extract again with --max-disp 6 at --short-side 64, "
                                          r"or set target\.max_disp=1$"):
        check_settings(meta, file, TargetConfig(kind="mme", track_length=2), 2, 64)
    with pytest.raises(ConfigError, match=r"below this run's 3 \(target\.max_disp\); extract again with --max-disp 3 "):
        check_settings(meta, file, TargetConfig(kind="mme", track_length=2, max_disp=3.0), 2, 64)


def test_a_changed_videos_cache_advises_the_plain_rerun_that_makes_it_again(tmp_path, capsys):
    """A video replaced by a resized copy: training's refusal advised `mme extract --overwrite`, which makes every file
    of the share again, where a plain re-run makes that file alone again, as the refusal of a same-size change said.
    A file that records no fingerprint of its video (an earlier mme's), which a re-run keeps, is to be deleted."""
    root, out = tmp_path / "videos", tmp_path / "cache"
    root.mkdir()
    frames = affine_video(12, 64, 80, dx=2.0, seed=3)[0]
    write_video(root / "pan.mp4", frames)
    write_video(root / "still.mp4", affine_video(12, 64, 64, seed=1)[0])
    (root / "list.txt").write_text("pan.mp4\nstill.mp4\n")
    args = ["extract", str(root / "list.txt"), "--root", str(root), "--out", str(out), "--length", "2",
            "--short-side", "64"]
    assert cli(args) == 0
    made, kept = cache_file(out, "pan.mp4"), cache_file(out, "still.mp4")
    kept_mtime = kept.stat().st_mtime_ns
    write_video(root / "pan.mp4", np.ascontiguousarray(frames[:, ::2, ::2]))  # resized: 40x32
    dataset = _cached_dataset(root, out, max_failure_fraction=0.0)
    fn = dataset.target_fn
    with pytest.raises(VideoError, match=r"made from another version of .*pan\.mp4: 80x64, 12 frames there, 40x32, "
                                         r"12 frames now; re-run mme extract \(it redoes such files\)\)$"):
        fn(dataset.sample(0, np.random.default_rng(0)))
    with pytest.raises(DataError, match=r"and resumes; a re-run also makes again the files of videos changed since "
                                        r"\(the warnings above name each file\)$") as refused:
        dataset[0]
    assert "--overwrite" not in str(refused.value)
    capsys.readouterr()
    assert cli(args) == 0 and "1 written, 1 already complete" in capsys.readouterr().out  # as advised
    assert kept.stat().st_mtime_ns == kept_mtime and cache_meta(made)["src_size"] == [40, 32]
    assert fn(dataset.sample(0, np.random.default_rng(0)))["disp"].shape[0] == 2
    c = read_cache(made)  # as an mme that recorded no fingerprint wrote it
    meta = {k: v for k, v in c.meta.items() if k not in ("fingerprint", "source_stat", "version", "quant", "starts",
                                                       "grid", "homs")}
    save_tracks(made, c.disp, c.valid, None, meta)
    write_video(root / "pan.mp4", frames)
    with pytest.raises(VideoError, match=r"40x32, 12 frames there, 80x64, 12 frames now; delete it and re-run mme "
                                         r"extract \(the file records no fingerprint of its video: a re-run keeps "
                                         r"it\)\)$"):
        fn(PretrainDataset(dataset.cfg, track_length=2).sample(0, np.random.default_rng(0)))
    assert cli(args) == 0 and "0 written, 2 already complete" in capsys.readouterr().out  # kept, as said


def test_a_dataset_whose_videos_have_another_datasets_names_is_refused_in_its_cache(tmp_path, capsys):
    """A second --root whose list names its videos as the first's did silently made their cache files again over
    the first's (whose training then skipped them as made from another version); a copy of the first dataset still
    resumes. A dataset on a volume not mounted now is not told from a moved one: their videos of the same name and
    other content are refused too (they were made again, over the other dataset's caches)."""
    for root, dx in (("first", 2.0), ("second", -2.0)):
        (tmp_path / root).mkdir()
        write_video(tmp_path / root / "v.mp4", affine_video(8, 64, 64, dx=dx, seed=3)[0])
        (tmp_path / root / "list.txt").write_text("v.mp4\n")
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "v.mp4").write_bytes((tmp_path / "first" / "v.mp4").read_bytes())
    (tmp_path / "copy" / "list.txt").write_text("v.mp4\n")
    out = tmp_path / "cache"

    def extract(root, *more):
        return cli(["extract", str(tmp_path / root / "list.txt"), "--root", str(tmp_path / root), "--out", str(out),
                    "--length", "2", "--short-side", "64", *more])

    assert extract("first") == 0
    made = cache_file(out, "v.mp4")
    before = made.read_bytes()
    assert cache_meta(made)["video"] == str(tmp_path / "first" / "v.mp4")
    capsys.readouterr()
    assert extract("second") == 1 and made.read_bytes() == before
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"1 video already has caches in {out} made from other files of the same " \
        f"name, e.g. v.mp4: made from {tmp_path / 'first' / 'v.mp4'}, this run's is {tmp_path / 'second' / 'v.mp4'}" \
        in err and "its own --out" in err and f"delete their cache files ({made}) and run again" in err, err
    assert extract("copy") == 0 and made.read_bytes() == before  # the same content elsewhere: already complete
    assert extract("second", "--overwrite") == 0 and cache_meta(made)["video"] == str(tmp_path / "second" / "v.mp4")
    (tmp_path / "second").rename(tmp_path / "unmounted")  # its volume not mounted now, the first dataset extracted
    capsys.readouterr()
    assert extract("first") == 1 and cache_meta(made)["video"] == str(tmp_path / "second" / "v.mp4")
    assert f"made from {tmp_path / 'second' / 'v.mp4'} (not there now: moved, or on a volume not mounted)" in \
        capsys.readouterr().err
    (tmp_path / "unmounted").rename(tmp_path / "second")
    assert extract("second") == 0 and cache_meta(made)["video"] == str(tmp_path / "second" / "v.mp4")  # complete


def test_a_second_extraction_of_the_same_share_is_refused_while_the_first_runs(videos, tmp_path):
    """Two jobs on one --out both did all the work; the second is refused naming the holder, while other shares
    (the ranks or machines of one extraction) run side by side."""
    import subprocess
    import sys

    out = tmp_path / "cache"
    base = ["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "2",
            "--short-side", "64"]
    (tmp_path / "other.txt").write_text("b.mp4\n")  # another list into the same --out
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from mme.motion import extract; "
                               "extract.unlock_folder = lambda *a: None; extract._share_jobs = lambda *a: "
                               "(print('held', flush=True), sys.stdin.read(), ([], 0, set()))[2]; "
                               f"extract.run({str(videos / 'list.txt')!r}, {str(videos)!r}, {str(out)!r}, "
                               "extract.ExtractOptions(length=2, short_side=64))"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # a job holds share 0/1 of list.txt
        with pytest.raises(ConfigError, match=r"--out \(share 0/1 of its extraction\) .* is in use by another job"):
            extract_cache(str(videos / "list.txt"), str(out), root=str(videos), length=2, short_side=64)
        assert cli(base + ["--shard", "1/2"]) == 0  # another share runs ...
        assert report(out, videos / "list.txt", 1, 2)["done"] == 2
        assert extract_cache(str(tmp_path / "other.txt"), str(out), root=str(videos), length=2,
                             short_side=64)["skipped"] == 1  # ... and so does another list (its b.mp4 just made)
    finally:
        holder.communicate("")
    assert cli(base) == 1 and cache_file(out, "cls/a.mp4").is_file()


def test_a_file_with_fewer_frames_than_packets_is_extracted_with_the_frames_it_has(tmp_path, monkeypatch):
    """Cut inside its first GOP (a capture or split that starts mid-GOP), the file has fewer frames than packets,
    which its count was until a read found out. The first chunk's read corrected the count within range, without
    a word, and a later chunk asked past the true end: 'index out of range', the video failed (every such file
    longer than one chunk of 64 starts; one of 30 frames failed on its last read, which raised the error the
    extraction retries). Now the count is known when the file is indexed; and where a read still finds it (a cause
    the index does not foresee: here its checks turned off), the read says so, and the video is tracked again from
    its true count. Either way, the tracks are those of the same frames in a file that has no frames to drop."""
    frames, _ = affine_video(100, 48, 64, dx=0.7, seed=2)
    (tmp_path / "videos").mkdir()
    full = write_corpus_file(tmp_path / "full.mkv", frames, "libx264", H264_GOP)
    cut = cut_mid_gop(full, tmp_path / "videos" / "cut.mkv")
    ref = decode_all(cut)
    with av.open(str(cut)) as c:
        assert sum(1 for p in c.demux(video=0) if p.size) == 97 > len(ref) > 64 + 2
    write_corpus_file(tmp_path / "videos" / "same.mkv", ref, "ffv1", {}, pix_fmt="bgr0")  # its frames, lossless
    (tmp_path / "list.txt").write_text("cut.mkv 0\nsame.mkv 0\n")
    assert cli(["extract", str(tmp_path / "list.txt"), "--root", str(tmp_path / "videos"), "--out",
                str(tmp_path / "cache"), "--length", "2", "--short-side", "32"]) == 0
    disp, valid = load_tracks(cache_file(tmp_path / "cache", "same.mkv"))
    assert disp.shape[0] == valid.shape[0] == len(ref)
    monkeypatch.setattr(pyav_reader, "_why_recount", lambda *args: "")  # counted by the read that finds out
    pyav_reader._pyav_index.cache_clear()
    (tmp_path / "list.txt").write_text("cut.mkv 0\n")
    assert cli(["extract", str(tmp_path / "list.txt"), "--root", str(tmp_path / "videos"), "--out",
                str(tmp_path / "unforeseen"), "--length", "2", "--short-side", "32"]) == 0
    for out in ("cache", "unforeseen"):
        np.testing.assert_array_equal(load_tracks(cache_file(tmp_path / out, "cut.mkv"))[0], disp)
        np.testing.assert_array_equal(load_tracks(cache_file(tmp_path / out, "cut.mkv"))[1], valid)


def test_the_track_cache_of_a_video_with_a_frameless_packet_is_taken_as_its_own(tmp_path):
    """An H.264 file with an end-of-sequence packet (joined recordings) has one frame fewer than packets. Its
    cache, made by `mme extract`, whose reads cross that packet, records the true count; training in a process
    whose reads had not crossed it counted the packets, and refused the cache of the unchanged video as "made from
    another version" (60 frames there, 61 now; `--overwrite` could not help). Now the count is known when the
    file is indexed, in every process."""
    frames, _ = affine_video(60, 48, 64, dx=0.7, seed=3)
    videos, out = tmp_path / "videos", tmp_path / "cache"
    videos.mkdir()
    with_end_of_sequence(write_keyint_video(tmp_path / "full.mkv", frames, "8"), videos / "joined.mkv", after=50)
    (videos / "list.txt").write_text("joined.mkv 0\n")
    assert cli(["extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--length", "3",
                "--short-side", "32"]) == 0
    assert cache_meta(cache_file(out, "joined.mkv"))["num_frames"] == len(decode_all(videos / "joined.mkv")) == 60
    m = ModelConfig(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=3, cache_dir=str(out)), m)
    data = PretrainDataset(DataConfig(list_file=str(videos / "list.txt"), root=str(videos), num_frames=4, stride=2,
                                      img_size=32), track_length=3)
    for epoch in range(4):  # clips of 11 frames: most end before the packet, and no read of theirs crosses it
        pyav_reader._pyav_index.cache_clear()  # a loader worker that has not read the video
        sample = data.sample(0, np.random.default_rng([0, epoch, 0, 0]))
        assert fn(sample)["disp"].shape[0] > 0  # the cache's tracks, not refused
        assert sample.source[2] == 60


def test_a_small_video_is_enlarged_as_online_and_a_cache_of_copied_pixels_is_made_again(tmp_path, capsys):
    """A 64x48 video cached at short side 144 (3x): its cached tracks are as close to the analytic motion as the
    online path's, whose crop INTER_LINEAR enlarges (before: the cache enlarged with INTER_AREA, which copies pixels,
    and its tracks read too little motion: 0.20 px mean error against 0.10). A file made before the interpolation
    was recorded is made again by a resumed extraction and refused by training where its frames were enlarged,
    and kept where they were shrunk."""
    root, out = tmp_path / "videos", tmp_path / "cache"
    frames, maps = affine_video(10, 48, 64, dx=0.6, dy=0.3, rot_deg=1.0, seed=11)
    root.mkdir()
    write_video(root / "small.mp4", frames)
    write_video(root / "large.mp4", affine_video(10, 160, 200, dx=1.0, seed=2)[0])
    (root / "list.txt").write_text("small.mp4\nlarge.mp4\n")
    args = ["extract", str(root / "list.txt"), "--root", str(root), "--out", str(out), "--length", "3",
            "--short-side", "144"]
    assert cli(args) == 0
    small, large = cache_file(out, "small.mp4"), cache_file(out, "large.mp4")
    seeds = seed_grid(144, 192, 8)
    truth = np.diff(analytic_positions(maps, range(6), 3, (seeds + 0.5) / 3 - 0.5), axis=1) * 3  # working px
    online = compute_tracks(apply_geometry(read_all(root / "small.mp4"), Geometry(0, 0, 64, 48, 192, 144)),
                            starts=range(6), length=3)[0]
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # the border sees content entering
    err_cache, err_online = (np.abs(d - truth)[inner].mean() for d in (load_tracks(small)[0][:6], online))
    assert err_cache <= err_online + QUANT / 2, (err_cache, err_online)
    for path in (small, large):  # as made before the interpolation was recorded
        c = read_cache(path)
        save_tracks(path, c.disp, c.valid, None, {k: v for k, v in c.meta.items() if k != "resize"})
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=3, cache_dir=str(out)), m)
    data = PretrainDataset(DataConfig(list_file=str(root / "list.txt"), root=str(root), num_frames=4, stride=2,
                                      img_size=64), track_length=3)
    with pytest.raises(VideoError, match=r"small\.mp4\.tracks: track cache \(its frames were enlarged from 64x48 to "
                                         r"192x144 by an mme that copied pixels \(INTER_AREA\).*re-run mme extract"):
        fn(data.sample(0, np.random.default_rng(0)))
    assert fn(data.sample(1, np.random.default_rng(0)))["disp"].shape[1] == 3  # shrunk: read as it is
    kept = large.stat().st_mtime_ns
    capsys.readouterr()
    assert cli(args) == 0 and "1 written, 1 already complete" in capsys.readouterr().out
    assert large.stat().st_mtime_ns == kept and np.abs(load_tracks(small)[0][:6] - online).max() <= QUANT / 2 + 1e-4
    assert fn(data.sample(0, np.random.default_rng(0)))["disp"].shape[1] == 3


def test_a_cache_of_an_earlier_tracker_is_made_again_and_refused_by_training(videos, tmp_path, capsys):
    """Files of tracker revision 1 (a point that left the frame read 0 px from then on, where it now reads the flow
    at the frame's edge: 3-6 % of a pan's displacements differ) record neither the revision nor their orientation
    (before: read by training as current, and a resumed extraction counted them "already complete"): training
    skips and counts the video naming the file and what changed, a resumed extraction makes it again. A file with
    an orientation but no revision, of the current tracker, is kept as it is."""
    out, listed = tmp_path / "cache", tmp_path / "b.txt"
    listed.write_text("b.mp4\n")
    args = ["extract", str(listed), "--root", str(videos), "--out", str(out), "--length", "3", "--short-side", "64"]
    assert cli(args) == 0
    made = cache_file(out, "b.mp4")
    good, c = made.read_bytes(), read_cache(made)
    assert c.meta["tracker"] == 3
    later = ("tracker", "orientation", "turn", "backend", "resize", "fingerprint", "source_stat")  # keys added since
    save_tracks(made, c.disp, c.valid, None, {k: v for k, v in c.meta.items() if k not in later})
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=3, cache_dir=str(out)), m)
    data = PretrainDataset(DataConfig(list_file=str(listed), root=str(videos), num_frames=4, stride=2, img_size=64),
                           track_length=3)
    with pytest.raises(VideoError, match=r"b\.mp4\.tracks: track cache \(its tracks were made by tracker revision 1, "
                                         r"this mme's is 3; revision 2: a point that leaves the frame reads the flow "
                                         r"at the frame's edge, where it stopped at 0 px; re-run mme extract"):
        fn(data.sample(0, np.random.default_rng(0)))
    capsys.readouterr()
    assert cli(args) == 0 and "1 written, 0 already complete" in capsys.readouterr().out
    assert made.read_bytes() == good
    save_tracks(made, c.disp, c.valid, None, {k: v for k, v in c.meta.items() if k != "tracker"})
    kept = made.stat().st_mtime_ns
    assert cli(args) == 0 and "0 written, 1 already complete" in capsys.readouterr().out
    assert made.stat().st_mtime_ns == kept and fn(data.sample(0, np.random.default_rng(0)))["disp"].shape[1] == 3


def _rewrite_header(path: Path, **changes) -> None:
    """A version 3 cache file's header with ``changes`` (a later mme's tracker revision or file format), its checksum
    made again, as a later mme would write it."""
    data = path.read_bytes()
    n = int.from_bytes(data[8:16], "little")
    meta = json.loads(data[16:16 + n])
    offsets = data[16 + n:24 + n + 8 * meta["starts"]]
    header = json.dumps({**meta, **changes}).encode()
    head = len(header).to_bytes(8, "little") + header + offsets
    path.write_bytes(data[:8] + head + zlib.crc32(head).to_bytes(4, "little") + data[20 + n + len(offsets):])


@pytest.mark.parametrize("later", [{"tracker": TRACKER + 1}, {"version": VERSION + 1}])
def test_a_cache_a_later_mme_made_is_refused_by_training_and_made_again_by_extract_only_with_overwrite(
        videos, tmp_path, capsys, later):
    """A cache file of a later mme (a tracker revision or file format above this mme's) was called made by an earlier
    mme, training advised re-running mme extract, and a plain resumed extraction silently made it again with this
    mme's older tracker. Training refuses it as a later mme's, advising to upgrade; extract refuses it likewise, its
    file kept, and makes it again with --overwrite alone."""
    from training import tiny_config

    from mme.train.pretrain import check_cache, pretrain_dataset

    listed, out = tmp_path / "list.txt", tmp_path / "cache"
    listed.write_text("b.mp4\n")
    args = ["extract", str(listed), "--root", str(videos), "--out", str(out), "--length", "2", "--short-side", "64"]
    assert cli(args) == 0
    made = cache_file(out, "b.mp4")
    ours = made.read_bytes()
    _rewrite_header(made, **later)
    theirs = made.read_bytes()
    why = (f"made by a later mme (tracker revision {later.get('tracker', TRACKER)}, this mme's {TRACKER}; file format "
           f"{later.get('version', VERSION)}, this mme's {VERSION}): upgrade mme to read it")
    assert cache_meta_and_refusal(made, str(videos / "b.mp4"))[1:] == ("later", why)
    with pytest.raises(VideoError, match=re.escape(f"{made}: track cache ({why})")):
        read_cache(made)  # (each training read: the video's failure)
    cfg = tiny_config("tiny_cpu_mme", [f"data.list_file={listed}", f"data.root={videos}"], tmp_path / "run",
                      f"target.cache_dir={out}", "target.track_length=2")
    with pytest.raises(DataError) as refused:
        check_cache(cfg, pretrain_dataset(cfg))
    assert str(refused.value).endswith(f"1 of its 1 track cache files of the videos of {listed} were made by a later "
                                       f"mme, which each read fails as its video's failure (the first, {made}: {why}); "
                                       "upgrade mme to read a later mme's files (this mme's extract replaces them "
                                       "only with --overwrite)"), refused.value
    capsys.readouterr()
    assert cli(args) == 1 and made.read_bytes() == theirs
    assert f"1 video already has caches in {out} that this mme does not make again, e.g. b.mp4: its cache file " \
        f"{made} was {why}; or pass " \
        "--overwrite to make them again with this mme" in capsys.readouterr().err
    assert cli(args + ["--overwrite"]) == 0 and made.read_bytes() == ours


def test_a_damaged_tracker_revision_in_a_header_is_unreadable_not_a_later_mmes(videos, tmp_path):
    """One flipped bit of a version 3 header's tracker revision (3 to 7, its checksum not made again) was called made
    by a later mme, with advice to upgrade: a later tracker revision is judged once the checksum has passed, so the
    file is unreadable, as a damaged header is, and a resumed extraction makes it again."""
    listed, out = tmp_path / "list.txt", tmp_path / "cache"
    listed.write_text("b.mp4\n")
    extract_cache(str(listed), str(out), root=str(videos), length=2, short_side=64)
    made = cache_file(out, "b.mp4")
    data = made.read_bytes()
    flipped = data.replace(f'"tracker": {TRACKER}'.encode(), f'"tracker": {TRACKER | 4}'.encode(), 1)
    assert flipped != data and TRACKER | 4 > TRACKER
    made.write_bytes(flipped)
    kind, why = cache_meta_and_refusal(made, str(videos / "b.mp4"))[1:]
    assert kind == "unreadable" and "do not match their checksum" in why, why
    report = extract_cache(str(listed), str(out), root=str(videos), length=2, short_side=64)
    assert report["done"] == 1 and made.read_bytes() == data


def test_a_later_mmes_cache_of_a_moved_list_of_absolute_paths_is_found_and_kept(tmp_path, capsys):
    """A cache a later mme made of a list of absolute paths, its dataset moved since: its files were not found as the
    moved ones (taken as unreadable), so training advised a plain mme extract, which made them again at the new paths
    with this mme's older tracker. They are found: training refuses them as a later mme's, and extract stops before
    any work, keeping them."""
    old, moved, out, listed = tmp_path / "old" / "ds", tmp_path / "new" / "place", tmp_path / "cache", \
        tmp_path / "list.txt"
    old.mkdir(parents=True)
    write_video(old / "b.mp4", affine_video(12, 64, 64, dx=-1.0, seed=1)[0])
    listed.write_text(f"{old / 'b.mp4'}\n")
    extract_cache(str(listed), str(out), length=2, short_side=64)
    made = cache_file(out, str(old / "b.mp4"))
    _rewrite_header(made, tracker=TRACKER + 1)
    theirs = made.read_bytes()
    moved.parent.mkdir()
    old.rename(moved)
    listed.write_text(f"{moved / 'b.mp4'}\n")
    assert find_cache_file(out, str(moved / "b.mp4"), listed_files(out)[0]) == made
    capsys.readouterr()
    assert cli(["extract", str(listed), "--out", str(out), "--length", "2", "--short-side", "64"]) == 1
    assert "made by a later mme" in capsys.readouterr().err
    assert made.read_bytes() == theirs and not cache_file(out, str(moved / "b.mp4")).exists()


def test_a_stale_file_of_a_phone_video_turned_otherwise_is_its_videos_failure_not_the_runs(tmp_path):
    """A file of tracker revision 1 records no orientation, so read as coded: where the run turns its phone video
    otherwise, its read says it is stale (a VideoError the dataset skips and counts, as the start check counts it;
    a re-run of extract makes it again), before its orientation (before: a ConfigError that stopped the run)."""
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "phone.mp4", affine_video(12, 48, 64, dx=1.5, seed=6)[0],
                display=[0, -1 << 16, 0, 1 << 16, 0, 0, 0, 0, 1 << 30])
    (root / "list.txt").write_text("phone.mp4\n")
    out = tmp_path / "cache"
    assert cli(["extract", str(root / "list.txt"), "--root", str(root), "--out", str(out), "--length", "3",
                "--short-side", "48"]) == 0
    made = cache_file(out, "phone.mp4")
    c = read_cache(made)
    save_tracks(made, c.disp, c.valid, None, {k: v for k, v in c.meta.items()
                                              if k not in ("tracker", "orientation", "turn")})
    data = DataConfig(list_file=str(root / "list.txt"), root=str(root), num_frames=4, stride=2, img_size=48,
                      orientation="display")
    sample = PretrainDataset(data, track_length=3).sample(0, np.random.default_rng(0))
    assert sample.source[3] == (True, True, False)  # the run turns it; the file was read as coded
    m = ModelConfig(img_size=48, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    fn = make_target_fn(TargetConfig(kind="mme", track_length=3, cache_dir=str(out)), m)
    with pytest.raises(VideoError, match=r"phone\.mp4\.tracks: track cache \(its tracks were made by tracker "
                                         r"revision 1, this mme's is 3; .*re-run mme extract"):
        fn(sample)


def test_a_revision_of_one_flow_makes_that_flows_files_stale_only():
    """Revision 3 changed torch-lk's tracks only (samples read outside the frame): its files of revision 2 are made
    again, a DIS file of revision 2 is still this mme's tracks (none of its work is redone)."""
    from mme.motion.cache import RESIZE, stale

    meta = {"src_size": (64, 64), "work_size": (64, 64), "resize": RESIZE, "tracker": 2}
    assert stale({**meta, "flow": "dis"}) is None
    assert stale({**meta, "flow": "torch-lk"}) == (
        "its tracks were made by tracker revision 2, this mme's is 3; revision 3: torch-lk gives no weight to samples "
        "read outside the frame, where it under-read the motion")
    assert stale({**meta, "flow": "dis", "tracker": 1}).startswith("its tracks were made by tracker revision 1, "
                                                                   "this mme's is 3; revision 2: a point")
