"""`mme embed` / extract_features: one row per video in list order, failed videos reported (NaN row, valid
mask, sidecar JSON), view averaging, token grids, and resume after a killed run."""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from os_fakes import swap_stat
from training import in_one_process, on_one_core
from videos import DecodedFrames, texture, write_hdr_video, write_keyint_video, write_video
from worker_jobs import dead_pid, killing_a_worker_after, with_small_shm

from mme.data.transforms import normalize_clip
from mme.errors import ConfigError, DataError, MMEError
from mme.eval.features import _read_otherwise, embed, extract_features, read_features, read_tokens
from mme.eval.testing import READING_VERSION, build_test_set
from mme.models.checkpoint import load_encoder
from mme.models.config import ModelConfig
from mme.models.export import save_pretrained
from mme.models.vit import VisionTransformer

pytestmark = pytest.mark.numerics  # also run with 'auto' resolved as on the other CPU kind (Makefile)

CFG = dict(img_size=32, patch_size=16, num_frames=4, tubelet_size=2, embed_dim=32, depth=2, num_heads=2)


def _moving(seed: int, frames: int = 12, size: int = 40) -> np.ndarray:
    """A texture translating by (seed + 1) px per frame: every video looks different."""
    big = texture(size, size + frames * 6, seed=seed)
    return np.stack([big[:, t * (seed % 5 + 1):t * (seed % 5 + 1) + size] for t in range(frames)])


@pytest.fixture(autouse=True)
def on_the_cpu(monkeypatch):
    """These tests compare rows embedded in batches of other sizes exactly: device 'auto' is the CPU here whatever
    the machine has (a GPU's kernels may round otherwise with the batch's size)."""
    from mme.train import precision

    choose = precision.choose_device
    monkeypatch.setattr(precision, "choose_device",
                        lambda device="auto", *args, **kwargs: choose("cpu" if device == "auto" else device, *args,
                                                                      **kwargs))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An encoder checkpoint and a labelled list of 8 videos; line 2 is a corrupt file, line 5 is missing."""
    root = tmp_path_factory.mktemp("embed")
    torch.manual_seed(0)
    ckpt = save_pretrained(VisionTransformer(ModelConfig(**CFG)), root / "encoder")
    lines = []
    for i in range(8):
        path = root / f"v{i}.mp4"
        if i == 2:
            path.write_bytes(b"\x00not a video" * 100)
        elif i != 5:
            write_video(path, _moving(i))
        lines.append(f"{path.name} {i % 3}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root, ckpt


def test_rows_follow_the_list_and_failures_are_reported_not_dropped(setup, tmp_path, monkeypatch):
    from mme.data.dataset import ClassificationDataset

    root, ckpt = setup
    loads = []
    load = ClassificationDataset._load
    monkeypatch.setattr(ClassificationDataset, "_load", lambda self, i, rng: loads.append(i) or load(self, i, rng))
    out = embed(ckpt, root / "list.txt", tmp_path / "f.npy", clips=2, crops=3, stride=2, root=str(root),
                num_workers=0, progress=False)
    x = np.load(out)
    info = json.loads(Path(str(out) + ".json").read_text())
    assert x.shape == (8, 32)
    assert np.isnan(x[[2, 5]]).all() and np.isfinite(np.delete(x, [2, 5], 0)).all()
    assert [f["index"] for f in info["failures"]] == [2, 5]
    assert info["failures"][0]["path"].endswith("v2.mp4") and info["failures"][1]["path"].endswith("v5.mp4")
    # each failure's own reason, from one attempt: no replacement is decoded, which a test set would not use (where
    # every replacement failed too, the error was "no readable video for item 2 of <a temporary list> ...")
    assert sorted(loads) == list(range(8))
    assert "v2.mp4: unreadable" in info["failures"][0]["error"]
    assert "v5.mp4: missing" in info["failures"][1]["error"]
    assert info["labels"] == [i % 3 for i in range(8)] and info["views"] == 6 and info["num_valid"] == 6
    assert not (tmp_path / "f.npy.partial").exists()
    # row i is video i: embedding the file alone gives the same row
    for i in (0, 4, 7):
        single = embed(ckpt, root / f"v{i}.mp4", tmp_path / f"one{i}.safetensors", clips=2, crops=3, stride=2,
                       num_workers=0, progress=False)
        xi, valid, labels, _ = read_features(single)
        assert valid.tolist() == [True] and labels.tolist() == [-1]  # a single file has no label
        np.testing.assert_allclose(xi[0], x[i], rtol=1e-5, atol=1e-6)
    assert not np.allclose(x[0], x[1], atol=1e-3)


def test_one_video_in_a_folder_whose_name_is_not_utf8_is_embedded(setup, tmp_path, monkeypatch):
    """``mme embed CKPT v0.mp4`` from a working folder ``$'root\\xe9'`` (a Latin-1 byte): the video was written into a
    temporary list, which cannot hold a name that is not UTF-8, and the command refused naming that list, which the
    user never wrote ("/tmp/tmpXXXX/test.txt: cannot list ..."). The test set takes the video itself: its row is
    the one it has elsewhere, as a list of it under such a --root (already read so) gives."""
    root, ckpt = setup
    folder = tmp_path / os.fsdecode(b"root\xe9")
    folder.mkdir()
    shutil.copy(root / "v0.mp4", folder / "v0.mp4")
    (folder / "list.txt").write_text("v0.mp4 1\n")
    kw = dict(clips=2, crops=1, stride=2, num_workers=0, progress=False)
    want = read_features(embed(ckpt, root / "v0.mp4", tmp_path / "plain.npy", **kw))[0]
    monkeypatch.chdir(folder)
    for source, more, labels in (("v0.mp4", {}, [-1]), (folder / "v0.mp4", {}, [-1]),
                                 (folder / "list.txt", {"root": str(folder)}, [1])):
        x, valid, got, _ = read_features(embed(ckpt, source, tmp_path / "f.npy", overwrite=True, **kw, **more))
        assert valid.tolist() == [True] and got.tolist() == labels, source
        np.testing.assert_array_equal(x, want)


def test_features_embedded_under_one_locale_are_up_to_date_under_another(setup, tmp_path):
    """The same command over a checkpoint, list and root in a folder ``caf\u00e9``, run again under ``LC_ALL=C
    PYTHONUTF8=0`` (ASCII, which names the folder ``caf\udcc3\udca9``): the job's record held the paths as the
    locale decoded them, so the rerun embedded every video again ("0 done before"), and one stopped under the other
    locale was refused ("partial results of a different job"); a Latin-1 locale (``caf\u00c3\u00a9``) did the same,
    not run here (a machine may lack that locale). The same files are the same job, whatever the locale."""
    root, ckpt = setup
    folder = tmp_path / "caf\u00e9"
    shutil.copytree(ckpt, folder / "encoder")
    for i in (0, 1):
        (folder / f"v{i}.mp4").symlink_to(root / f"v{i}.mp4")
    (folder / "list.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    out = tmp_path / "f.npy"
    embed(folder / "encoder", folder / "list.txt", out, stride=2, root=str(folder), num_workers=0, device="cpu",
          precision="fp32", progress=False)
    ascii_ = str(folder).encode().decode("ascii", "surrogateescape")  # (as an ASCII locale's shell gives it)
    argv = ["embed", f"{ascii_}/encoder", f"{ascii_}/list.txt", "--root", ascii_, "--out", str(out), "--stride", "2",
            "--workers", "0", "--device", "cpu", "--precision", "fp32"]
    [(code, err, _)] = in_one_process([argv], env={**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0",
                                                   "OMP_NUM_THREADS": "1"}, timeout=120).ran
    assert code == 0 and f"embed: {out} is up to date" in err, err[-3000:]


def test_an_out_whose_names_are_too_long_is_refused_before_any_work_or_written(setup, tmp_path, monkeypatch):
    """``--out <240 characters>.npy``: the temporary name of its final write was too long, so the job failed after
    all the embedding, and a rerun resumed, then failed the same way (its work kept in .partial). A long name is
    written (its temporary name shortened); one whose own name, its sidecar's (``.json``) or its partial results'
    (``.partial``) is too long for a file name is refused before any video is read."""
    from mme.data.dataset import ClassificationDataset

    root, ckpt = setup
    (tmp_path / "list.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    kw = dict(root=str(root), num_workers=0, progress=False)
    out = tmp_path / "out" / ("e" * 240 + ".npy")
    x = read_features(embed(ckpt, tmp_path / "list.txt", out, **kw))[0]
    assert x.shape == (2, 32) and np.isfinite(x).all() and (tmp_path / "out" / f"{out.name}.json").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [out.name, f"{out.name}.json"]
    monkeypatch.setattr(ClassificationDataset, "_load", lambda *args: pytest.fail("a video was read"))
    for n, name, more in ((252, "its name", 0), (250, "the name of f+\\.npy\\.json, which it writes beside it,", 5),
                          (245, "the name of f+\\.npy\\.partial, which it writes beside it,", 8)):
        out = tmp_path / "refused" / ("f" * n + ".npy")
        size = len(out.name) + more
        with pytest.raises(ConfigError, match=rf"^--out {out}: {name} is {size} bytes, more than a file name takes "
                                              r"\(255\); give a shorter name$"):
            embed(ckpt, tmp_path / "list.txt", out, **kw)
    assert not (tmp_path / "refused").exists()


@pytest.mark.pinned  # no run: the output's checks alone
def test_an_out_name_is_refused_as_too_long_by_its_file_systems_limit_in_bytes_on_linux(tmp_path, monkeypatch):
    """On Linux, --out's name is refused before any work where its bytes pass its folder's file system's limit
    (pathconf: 143 on eCryptfs, FUSE mounts theirs, whose look-ups of a long name say EPERM or EBADMSG, not
    ENAMETOOLONG), else 255 bytes; a whole path longer than PATH_MAX is not said to be a name too long. On other
    systems (a Mac: 255 characters, not bytes) no name is refused up front. A folder that cannot be searched (EACCES)
    gives the check no traceback, nor a failed write's message its MiB free: the nearest folder it can see is asked.
    A name that fits there is written, its temporary name fitted to the same limit (before: shortened to 255 bytes
    only, the write of a 140-byte --out died of ENAMETOOLONG after all the work), and found stale by it."""
    from mme import utils
    from mme.utils import atomic_path, check_output, remove_stale_temps

    monkeypatch.setattr(sys, "platform", "linux")
    out = tmp_path / "new" / ("\u8996" * 90 + ".npy")  # 274 bytes, 94 characters
    with pytest.raises(ConfigError, match=rf"^--out {re.escape(str(out))}: its name is 274 bytes, more than a file "
                                          r"name takes \(255\); give a shorter name$"):
        check_output(out, "--out")
    assert not out.parent.exists()
    asked = []
    pathconf = os.pathconf

    def ecryptfs(path, name):  # a file system of 143-byte names
        asked.append(Path(path))
        return 143 if name == "PC_NAME_MAX" else pathconf(path, name)

    monkeypatch.setattr(os, "pathconf", ecryptfs)
    fits = tmp_path / "new" / ("\u00e9" * 69 + "e.npy")  # 143 bytes
    assert check_output(fits, "--out") == fits and fits.parent.is_dir() and asked == [tmp_path]
    with pytest.raises(ConfigError, match=r": its name is 144 bytes, more than a file name takes \(143\)"):
        check_output(fits.with_name("e" + fits.name), "--out")
    with pytest.raises(ConfigError, match=r": the name of e+\.npy\.json, which it writes beside it, is 144 bytes"):
        check_output(tmp_path / ("e" * 135 + ".npy"), "--out", beside=[tmp_path / ("e" * 135 + ".npy.json")])
    for name in ("a" * 136 + ".npy", fits.name):  # 140 and 143 bytes: their temporary names would be 154, 157
        with atomic_path(fits.with_name(name)) as tmp:
            np.save(tmp, np.arange(3))
        assert len(os.fsencode(tmp.name)) <= 143 and tmp.name.endswith(".npy")
        assert np.load(fits.with_name(name)).tolist() == [0, 1, 2]
        stale = tmp.with_name(tmp.name.replace(f"tmp{os.getpid()}", f"tmp{dead_pid()}"))
        stale.write_bytes(b"")
        remove_stale_temps([fits.with_name(name)])
        assert not stale.exists()
    monkeypatch.setattr(os, "pathconf", pathconf)

    deep = tmp_path
    while len(os.fsencode(deep)) <= 4096:  # a whole path over PATH_MAX: its name, o.npy, is not too long
        deep /= "d" * 250
    assert utils._name_limit(deep) == 255

    locked = tmp_path / "locked"
    locked.mkdir()
    is_dir = Path.is_dir

    def unsearchable(self):  # Python 3.11's is_dir under a folder without x (root searches it: so mocked)
        if locked in self.parents:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return is_dir(self)

    monkeypatch.setattr(Path, "is_dir", unsearchable)
    assert utils._nearest_existing(locked / "x" / "y", folder=True) == locked
    assert utils._name_limit(locked / "x") == 255 and utils.mib_free(locked / "x" / "f").endswith(" MiB free")
    with pytest.raises(ConfigError, match=rf"^--out {re.escape(str(locked / 'x' / 'f.npy'))}: cannot be written "
                                          r"\(.*Permission denied.*\)$"):  # (before: the is_dir's traceback)
        utils.check_output(locked / "x" / "f.npy", "--out")

    monkeypatch.setattr(Path, "is_dir", is_dir)
    monkeypatch.setattr(sys, "platform", "darwin")

    def apples(stat):  # a file system that takes 255 characters, of any bytes (APFS)
        def call(path, *args, **kw):
            if len(os.path.basename(path)) <= 255 < len(os.fsencode(os.path.basename(path))):
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            return stat(path, *args, **kw)
        return call

    swap_stat(monkeypatch, apples)
    assert utils._name_limit(tmp_path) is None and check_output(out, "--out") == out


def test_many_failed_videos_are_a_few_lines_and_a_summary_naming_the_sidecar(setup, tmp_path, caplog):
    """A wrong --root on a long list: one warning per failed video (640 lines for 640 videos, 240k for Kinetics), and
    the summary line an info. The first 5 are said, then one line each time their count doubles, one for those left
    at the end, and the summary is a warning naming the sidecar that lists them all."""
    import logging

    root, ckpt = setup
    (tmp_path / "list.txt").write_text("".join(f"v{i}.mp4 0\n" for i in (0, 1, 3, 4))
                                       + "".join(f"gone{i}.mp4 1\n" for i in range(36)))
    caplog.set_level(logging.INFO, logger="mme")
    out = embed(ckpt, tmp_path / "list.txt", tmp_path / "f.npy", stride=2, root=str(root), num_workers=0,
                progress=False)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "failed" in r.getMessage()]
    assert [m.split(f": {root}")[0] for m in said[:5]] == [f"embed: video {i} failed" for i in range(4, 9)], said
    assert said[4].endswith("; later ones are counted each time their number doubles (10, ...)")
    assert said[5:8] == ["embed: 5 more videos failed, up to video 13: 10 so far",
                         "embed: 10 more videos failed, up to video 23: 20 so far",
                         "embed: 16 more videos failed: 36 in all"]
    assert said[8:] == [f"embed: wrote {out} (40 x 32), 36 failed (listed in {out}.json, their rows NaN and not "
                        "valid)"]  # (its folder named: before, f.npy.json, not where the user runs from)
    assert len(json.loads(Path(str(out) + ".json").read_text())["failures"]) == 36


def test_videos_shorter_than_a_clip_are_counted_in_one_warning_as_training_counts_them(setup, tmp_path, caplog):
    """mme embed / mme probe embedded 1- and 2-frame videos as clips of their frames repeated (documented), with no
    word where training warns of them. One warning counts the videos read that hold fewer raw frames than a clip
    spans, with the span and the shortest (the table training's warning reads, _VideoDataset.short_videos), for
    strided clips and TSN segments alike; a list whose videos hold a clip says nothing."""
    import logging

    root, ckpt = setup
    for n in (1, 2):
        write_video(tmp_path / f"s{n}.mp4", _moving(n, frames=n))
    (tmp_path / "list.txt").write_text(f"s1.mp4 0\n{root / 'v0.mp4'} 1\ns2.mp4 0\n")
    (tmp_path / "long.txt").write_text(f"{root / 'v0.mp4'} 1\n{root / 'v1.mp4'} 0\n")
    (tmp_path / "one_short.txt").write_text(f"s1.mp4 0\n{root / 'v0.mp4'} 1\n")
    (tmp_path / "all_short.txt").write_text("s1.mp4 0\ns2.mp4 0\n")

    def said(source: str, **views) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mme"):
            out = embed(ckpt, tmp_path / source, tmp_path / f"f{len(list(tmp_path.iterdir()))}.npy", root=str(tmp_path),
                        num_workers=0, progress=False, **views)
        assert np.isfinite(np.load(out)).all()  # (every video embedded)
        return [r.getMessage() for r in caplog.records if "a clip spans" in r.getMessage()]

    # the check names the list and its root (before: `mme check --min-frames 7`, which fails: no list given)
    check = f"mme check {tmp_path / 'list.txt'} --root {tmp_path}"
    assert said("list.txt", stride=2, clips=2) == [  # before: nothing
        "embed: 2 of the 3 videos read hold fewer raw frames than the 7 a clip spans (4 frames at stride 2; the "
        f"shortest holds 1): their clips repeat their last frame, features of frozen frames (`{check} --min-frames "
        "7` names them)"]
    assert said("list.txt", segments=True) == [
        "embed: 2 of the 3 videos read hold fewer raw frames than the 4 a clip spans (4 frames in TSN segments; the "
        f"shortest holds 1): their clips draw frames more than once, features of frozen frames (`{check} "
        "--min-frames 4` names them)"]
    # the command as said runs, and names the 2 short videos
    from mme import cli
    assert cli.main([*shlex.split(check)[1:], "--min-frames", "7", "--out", str(tmp_path / "check.json")]) == 0
    assert json.loads((tmp_path / "check.json").read_text())["counts"] == {"short": 2, "ok": 1}
    # one video embedded (no list for mme check to read): the warning names no check
    assert said("s1.mp4", stride=2) == [
        "embed: the 1 video read holds fewer raw frames than the 7 a clip spans (4 frames at stride 2; the "
        "shortest holds 1): its clips repeat its last frame, features of frozen frames"]
    # the line agrees with its count (before: "1 of the 1 videos read hold", "1 of the 2 videos read hold", and for
    # one short video "their clips repeat their last frame", "names them")
    one = f"mme check {tmp_path / 'one_short.txt'} --root {tmp_path} --min-frames 7"
    assert said("one_short.txt", stride=2) == [
        "embed: 1 of the 2 videos read holds fewer raw frames than the 7 a clip spans (4 frames at stride 2; the "
        f"shortest holds 1): its clips repeat its last frame, features of frozen frames (`{one}` names it)"]
    every = f"mme check {tmp_path / 'all_short.txt'} --root {tmp_path} --min-frames 7"
    assert said("all_short.txt", stride=2) == [
        "embed: the 2 videos read hold fewer raw frames than the 7 a clip spans (4 frames at stride 2; the shortest "
        f"holds 1): their clips repeat their last frame, features of frozen frames (`{every}` names them)"]
    assert said("long.txt", stride=2) == []  # (12 frames hold a window of 7)


def test_mme_embed_exits_0_where_some_videos_failed_its_last_line_a_warning_naming_the_sidecar(setup, tmp_path,
                                                                                               caplog):
    """A job where some videos failed exits 0 (documented: their rows NaN, valid 0; mme extract and mme check exit
    1), so its last line is what a script or a user reading the log is told by: it was an info, "2 failed", as of a
    job without failures. It is a warning naming the count and the sidecar that lists them."""
    import logging

    from mme.cli import main

    root, ckpt = setup
    caplog.set_level(logging.INFO, logger="mme")
    assert main(["embed", str(ckpt), str(root / "list.txt"), "--root", str(root), "--out", str(tmp_path / "f.npy"),
                 "--stride", "2"]) == 0
    *_, last = (r for r in caplog.records if r.name != "mme.utils")  # (not a wait for a lock another test holds)
    assert (last.levelname, last.getMessage()) == (
        "WARNING", f"embed: wrote {tmp_path / 'f.npy'} (8 x 32), 2 failed (listed in {tmp_path / 'f.npy.json'}, their "
        "rows NaN and not valid)")
    assert json.loads((tmp_path / "f.npy.json").read_text())["num_valid"] == 6


def test_a_low_open_file_limit_is_raised_for_embeds_and_checks_workers_or_refused_in_one_line(setup, tmp_path):
    """A soft limit of 20 open files (``ulimit -Sn 20``, the hard one higher) ended ``mme embed`` (``mme probe``'s
    embedding too) in torch's traceback ``Too many open files. Communication with the workers is no longer
    possible``, and ``mme check`` in one of ``OSError: [Errno 24]`` as it started a worker: ``mme pretrain`` alone
    raised the soft limit. Every start of workers raises it now; where the hard limit is too low, one line naming
    it. One process, its limits set before each command (a hard limit is lowered for good)."""
    import resource

    root, ckpt = setup
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 128:
        pytest.skip(f"a hard limit of {hard} open files here: below what 2 loader workers need")
    listed = str(root / "list.txt")
    embeds = ["embed", str(ckpt), listed, "--root", str(root), "--stride", "2", "--workers", "2", "--device", "cpu",
              "--precision", "fp32", "--out"]
    checks = ["check", listed, "--root", str(root), "--workers", "3"]
    calls = [([*embeds, str(tmp_path / "a.npy")], (20, hard)), (checks, (20, hard)),
             ([*embeds, str(tmp_path / "b.npy")], (32, 32)), (checks, (32, 32))]
    proc = in_one_process([argv for argv, _ in calls], f"import resource\nlimits = {[lim for _, lim in calls]!r}\n"
                          "def before(i): resource.setrlimit(resource.RLIMIT_NOFILE, limits[i])\n", timeout=120)
    (embed_code, embed_err, _), (check_code, check_err, _), *refused = proc.ran
    assert embed_code == 0 and json.loads((tmp_path / "a.npy.json").read_text())["num_valid"] == 6, embed_err[-3000:]
    assert check_code == 1 and "Traceback" not in check_err, check_err[-3000:]  # (the list's two bad videos: 1)
    assert "Too many open files" not in embed_err + check_err
    assert [(code, err.strip().splitlines()[-1]) for code, err, _ in refused] == [
        (1, "mme embed: error: --workers=2: this process may open at most 32 files (its hard limit, ulimit -Hn), "
            "below the 96 that 2 loader workers may hold (the batches they send come as file descriptors): raise it "
            "(ulimit -n 96; past the hard limit, as root or by the session's limits), or lower --workers"),
        (1, "mme check: error: --workers=3: this process may open at most 32 files (its hard limit, ulimit -Hn), "
            "below the 36 that 3 worker processes may hold (a pipe and a process handle each): raise it (ulimit -n "
            "36; past the hard limit, as root or by the session's limits), or lower --workers")]


def test_more_loader_workers_than_cores_are_said_once_naming_mme_embeds_flag(setup, tmp_path, caplog):
    """mme embed --workers 2 on one core (taskset -c 0) warned "data.num_workers=2 ... data.num_workers=1 suits this
    machine", a setting mme embed has not: the warning names its --workers."""
    import logging

    from mme.cli import main

    root, ckpt = setup
    with on_one_core():
        with caplog.at_level(logging.WARNING, logger="mme"):
            assert main(["embed", str(ckpt), str(root / "list.txt"), "--root", str(root), "--out",
                         str(tmp_path / "f.npy"), "--stride", "2", "--workers", "2"]) == 0
    assert [r.getMessage() for r in caplog.records if "loader workers on" in r.getMessage()] == [
        "--workers=2: 2 loader workers on 1 usable core wait for the CPU in turn, beside this process: --workers=0 "
        "suits this machine"]


def test_the_clips_of_a_chunk_are_not_held_until_it_is_written(setup, tmp_path, monkeypatch):
    """Before: each batch's clips (B, V, 3, T, H, W) were kept until its chunk was written (50 batches by default):
    from loader workers, in shared memory, about 10 GB at Kinetics' test views (7 x 3, 16 x 224², batch 4)."""
    import weakref

    from mme.eval import features

    root, ckpt = setup
    clips, alive = [], []
    batches, write = features.iter_test_batches, features._write_part

    def tracked(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            clips.extend([weakref.ref(batch["video"])] if batch["video"] is not None else [])
            yield batch

    monkeypatch.setattr(features, "iter_test_batches", tracked)
    monkeypatch.setattr(features, "_write_part", lambda *a: alive.append(sum(c() is not None for c in clips))
                        or write(*a))
    embed(ckpt, root / "list.txt", tmp_path / "f.npy", clips=2, crops=3, stride=2, root=str(root), batch_size=1,
          num_workers=0, progress=False)
    assert len(clips) == 6 and alive == [0]


@pytest.mark.parametrize("precision,rtol,atol", [
    ("fp32", 1e-5, 1e-6),
    # bf16 keeps 8 significant bits (relative rounding 2^-8 per op); through the tiny encoder's blocks the
    # features stay within a few of those units of the fp32 hand computation
    ("bf16", 8 * 2**-8, 8 * 2**-8),
])
@pytest.mark.pinned  # each case pins its precision (fp32, bf16)
def test_views_are_averaged_and_the_token_grid_matches_the_features(setup, precision, rtol, atol):
    root, ckpt = setup
    enc = load_encoder(ckpt)
    ds = build_test_set(root / "list.txt", enc.cfg, clips=2, crops=3, stride=2, root=str(root))
    feats = extract_features(enc, ds, batch_size=3, tokens=True, progress=False, precision=precision)
    assert feats.valid.tolist() == [True, True, False, True, True, False, True, True]
    assert [f["index"] for f in feats.failures] == [2, 5]
    assert feats.tokens.shape == (8, 2, 2, 2, 32)  # (N, t, h, w, D) for 4 frames at 32 px
    ok = feats.valid
    torch.testing.assert_close(feats.tokens[ok].mean((1, 2, 3)), feats.x[ok], rtol=rtol, atol=atol)
    # the view average equals the mean of the per-view features, computed by hand for video 0
    views = ds[0]["video"]  # (6, 3, T, H, W)
    assert views.shape[0] == 6
    with torch.no_grad():
        by_hand = enc(normalize_clip(views)).mean(1).mean(0)
    torch.testing.assert_close(feats.x[0], by_hand, rtol=rtol, atol=atol)


@pytest.mark.pinned  # every run precision fp32
def test_features_asked_for_in_fp32_are_fp32_under_a_callers_autocast_which_is_left_on(setup, tmp_path):
    """``embed``/``extract_features(precision="fp32")`` inside a caller's bf16 autocast gave bf16's features, recorded
    as fp32."""
    root, ckpt = setup
    plain = embed(ckpt, root / "list.txt", tmp_path / "plain.safetensors", root=str(root), num_workers=0,
                  precision="fp32", progress=False)
    enc = load_encoder(ckpt)
    ds = build_test_set(root / "list.txt", enc.cfg, clips=1, crops=1, stride=2, root=str(root))
    by_itself = extract_features(enc, ds, progress=False, precision="fp32").x
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = embed(ckpt, root / "list.txt", tmp_path / "under.safetensors", root=str(root), num_workers=0,
                      precision="fp32", progress=False)
        feats = extract_features(enc, ds, progress=False, precision="fp32").x
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16  # the caller's
    assert np.array_equal(read_features(under)[0], read_features(plain)[0], equal_nan=True)
    assert torch.equal(feats.isfinite().all(1), by_itself.isfinite().all(1))
    assert torch.equal(feats.nan_to_num(), by_itself.nan_to_num())


@pytest.mark.pinned  # every run precision fp32
def test_an_encoder_loaded_and_embedding_under_a_callers_float64_default_dtype_are_float32s(setup, tmp_path):
    """A caller's ``torch.set_default_dtype(torch.float64)``: ``load_encoder`` gave float64 weights, which refused
    float32 clips, and ``embed`` refused its own clips, advising ``x.to(torch.float64)``."""
    root, ckpt = setup
    plain = embed(ckpt, root / "list.txt", tmp_path / "plain.npy", root=str(root), num_workers=0, precision="fp32",
                  progress=False)
    clip = torch.rand(1, 3, 4, 32, 32)
    expected = load_encoder(ckpt)(clip)
    torch.set_default_dtype(torch.float64)
    try:
        enc = load_encoder(ckpt)
        under = embed(ckpt, root / "list.txt", tmp_path / "under.npy", root=str(root), num_workers=0,
                      precision="fp32", progress=False)
        assert torch.get_default_dtype() == torch.float64  # the caller's
    finally:
        torch.set_default_dtype(torch.float32)
    assert {p.dtype for p in enc.parameters()} == {torch.float32} and torch.equal(enc(clip), expected)
    assert np.array_equal(read_features(under)[0], read_features(plain)[0], equal_nan=True)


@pytest.mark.pinned  # no run
@pytest.mark.parametrize("as_path", [str, Path])
def test_build_test_set_given_a_checkpoints_path_says_to_read_it(tmp_path, as_path):
    """``checkpoint=`` takes what read_checkpoint returns; its file's path was an AttributeError of run_views."""
    write_video(tmp_path / "a.mp4", np.stack([texture(32, 32, seed=i) for i in range(8)]))
    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    with pytest.raises(ConfigError) as refused:
        build_test_set(tmp_path / "list.txt", ModelConfig(), clips=1, crops=1, root=str(tmp_path),
                       checkpoint=as_path(tmp_path / "checkpoint.pt"))
    assert str(refused.value) == ("build_test_set: checkpoint= takes a Checkpoint, what read_checkpoint(path) "
                                  f"returns, got {as_path(tmp_path / 'checkpoint.pt')!r}")


@pytest.mark.pinned  # every run train.precision=fp32 / precision fp32
def test_the_documented_python_route_gives_the_features_mme_embed_gives(synth, tmp_path):
    """docs/evaluation.md's route (read_checkpoint, build_model, build_test_set with ``checkpoint=``,
    extract_features) samples the clips as the checkpoint's run did, as ``mme embed`` does: its data.stride=2 here,
    where DataConfig's default is 4 (before: the documented route took the default, other features)."""
    from training import FP32, run

    from mme.models.checkpoint import build_model, read_checkpoint

    ckpt = run("tiny_cpu_pixel", synth, tmp_path / "run", "train.steps=1", FP32).checkpoint
    lines = Path(synth[0].split("=", 1)[1]).read_text().splitlines()[:4]
    (tmp_path / "four.txt").write_text("\n".join(lines) + "\n")
    root = synth[1].split("=", 1)[1]
    out = embed(ckpt, tmp_path / "four.txt", tmp_path / "cli.npy", clips=2, root=root, num_workers=0,
                precision="fp32", progress=False)
    ck = read_checkpoint(ckpt, encoder_only=True)
    encoder = build_model(ck)
    documented = build_test_set(tmp_path / "four.txt", encoder.cfg, clips=2, crops=1, root=root, checkpoint=ck)
    features = extract_features(encoder, documented, precision="fp32", progress=False, pooled_norm=ck.pooled_norm)
    assert documented.cfg.stride == 2 and np.array_equal(features.x.numpy(), read_features(out)[0])
    default = build_test_set(tmp_path / "four.txt", encoder.cfg, clips=2, crops=1, root=root)
    assert default.cfg.stride == 4  # (without the checkpoint, DataConfig's: the clips the route took before)


@pytest.mark.pinned  # refused before a precision is chosen
@pytest.mark.parametrize("given, said", [(dict(clips="2"), "--clips must be an integer of at least 1, got '2'"),
                                         (dict(crops=2.5), "--crops must be an integer of at least 1, got 2.5"),
                                         (dict(batch_size=0), "--batch-size must be an integer of at least 1, got 0"),
                                         (dict(batch_size=2**63), f"--batch-size: {2**63} does not fit a 64-bit "
                                          f"integer (at most 2**63 - 1 = {2**63 - 1} in size)")])
def test_counts_given_from_python_that_are_no_integers_are_one_line_naming_the_argument(setup, tmp_path, given,
                                                                                        said):
    """embed(clips="2") from Python was a TypeError of '<' between str and int; embed(batch_size=2**63) a traceback
    where torch took it."""
    root, ckpt = setup
    with pytest.raises(ConfigError) as refused:
        embed(ckpt, root / "list.txt", tmp_path / "f.npy", root=str(root), num_workers=0, progress=False, **given)
    assert str(refused.value) == said and not (tmp_path / "f.npy").exists()


def test_safetensors_output_carries_the_valid_mask_and_labels(setup, tmp_path):
    root, ckpt = setup
    out = embed(ckpt, root / "list.txt", tmp_path / "f.safetensors", stride=2, root=str(root), tokens=True,
                num_workers=0, progress=False)
    x, valid, labels, info = read_features(out)
    from safetensors.numpy import load_file

    arrays = load_file(str(out))
    assert arrays["tokens"].shape == (8, 2, 2, 2, 32)
    assert valid.tolist() == [True, True, False, True, True, False, True, True]
    assert labels.tolist() == [i % 3 for i in range(8)] and info["views"] == 1


@pytest.mark.pinned  # every run precision=fp32
def test_features_that_are_not_finite_are_refused_naming_the_checkpoint_and_the_precision(setup, tmp_path, capsys):
    """A model that gives NaN (a weight of NaN) or inf (activations past float32's range) was embedded without a word:
    rows of NaN marked valid, "0 failed", exit 0; mme probe later refused them as "failed videos?" and said to drop
    them with the valid mask, which held them valid. They are no failure of a video but of the model: refused at the
    first batch that has them, naming the checkpoint, the precision and the cause; no features file is written."""
    from mme.cli import main

    root, _ = setup
    torch.manual_seed(0)
    nan = VisionTransformer(ModelConfig(**CFG))
    with torch.no_grad():
        nan.blocks[0].mlp.fc1.weight[0, 0] = float("nan")
    huge = VisionTransformer(ModelConfig(**CFG))
    with torch.no_grad():
        huge.patch_embed.proj.weight.mul_(1e36)  # (finite weights)
    for model, out, why in ((nan, "nan.safetensors", r"its weights hold NaN or inf \(blocks\.0\.mlp\.fc1\.weight\): "
                                                     "a damaged or diverged model"),
                            (huge, "huge.npy", "its activations overflow even in fp32: a diverged model")):
        ckpt = save_pretrained(model, tmp_path / out.split(".")[0])
        with pytest.raises(MMEError, match=rf"^checkpoint {re.escape(str(ckpt))} gives features that are not finite "
                                           rf"\(NaN or inf\) at precision fp32, 3 of the 3 videos of a batch, first "
                                           rf"{re.escape(str(root / 'v0.mp4'))}: {why}$"):
            embed(ckpt, root / "list.txt", tmp_path / out, stride=2, root=str(root), num_workers=0, progress=False,
                  precision="fp32")
        assert not (tmp_path / out).exists() and not (tmp_path / f"{out}.json").exists()
    assert main(["embed", str(tmp_path / "nan"), str(root / "list.txt"), "--root", str(root), "--out",
                 str(tmp_path / "nan.npy"), "--workers", "0", "--precision", "bf16", "--stride", "2"]) == 1
    assert "at precision bf16, 3 of the 3 videos of a batch" in capsys.readouterr().err
    assert not (tmp_path / "nan.npy").exists()

def test_features_of_the_same_list_under_another_root_are_made_again(setup, tmp_path):
    """The same list (its relative paths) under another --root names other videos: the features kept for the
    first root are not reused for it (they were, as 'up to date'), and both roots keep their own."""
    root, ckpt = setup
    other = tmp_path / "other"
    other.mkdir()
    for i in range(8):
        if i not in (2, 5):
            write_video(other / f"v{i}.mp4", _moving(i + 20))
    (other / "list.txt").write_text((root / "list.txt").read_text())
    out = tmp_path / "f.npy"
    first, ok, _, _ = read_features(embed(ckpt, root / "list.txt", out, stride=2, root=str(root), num_workers=0,
                                          progress=False))
    second = read_features(embed(ckpt, root / "list.txt", out, stride=2, root=str(other), num_workers=0,
                                 progress=False))[0]
    assert not np.allclose(first[ok], second[ok])
    again = embed(ckpt, other / "list.txt", tmp_path / "g.npy", stride=2, root=str(other), num_workers=0,
                  progress=False)
    np.testing.assert_array_equal(read_features(again)[0][ok], second[ok])


def test_a_checkpoint_folder_whose_weights_change_in_place_is_embedded_again(setup, tmp_path):
    """The cache key held the folder's own entry, which a copy over its weights file leaves as it is: the old
    features were reused as up to date."""
    import shutil

    root, ckpt = setup
    folder = tmp_path / "enc"
    shutil.copytree(ckpt, folder)
    out = tmp_path / "f.npy"
    first = read_features(embed(folder, root / "list.txt", out, stride=2, root=str(root), num_workers=0,
                                progress=False))
    torch.manual_seed(1)
    other = save_pretrained(VisionTransformer(ModelConfig(**CFG)), tmp_path / "other")
    stamp = os.stat(folder).st_mtime_ns
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())  # in place
    os.utime(folder, ns=(stamp, stamp))
    second = read_features(embed(folder, root / "list.txt", out, stride=2, root=str(root), num_workers=0,
                                 progress=False))
    ok = first[1]
    assert not np.allclose(first[0][ok], second[0][ok])


def test_features_made_before_a_checkpoints_layer_norm_eps_was_read_are_made_again(setup, tmp_path):
    """A checkpoint's LayerNorm eps (model.norm_eps; a Hugging Face folder's layer_norm_eps) was fixed at 1e-6 before
    it was read: features of such a checkpoint (eps 1e-2 here) made then were kept as up to date, though the file
    computes others now. Its job records the eps where it is not the default: a job without it is embedded again."""
    root, _ = setup
    torch.manual_seed(2)
    ckpt = save_pretrained(VisionTransformer(ModelConfig(**{**CFG, "norm_eps": 1e-2})), tmp_path / "eps")
    out = tmp_path / "f.npy"
    kwargs = dict(stride=2, root=str(root), num_workers=0, progress=False)
    first = read_features(embed(ckpt, root / "list.txt", out, **kwargs))[0]
    sidecar = out.with_name(out.name + ".json")
    info = json.loads(sidecar.read_text())
    assert info["job"]["norm_eps"] == 1e-2
    del info["job"]["norm_eps"]  # as written before the eps was read
    sidecar.write_text(json.dumps(info))
    np.save(out, np.zeros_like(np.load(out)))  # (the features it would keep)
    again = read_features(embed(ckpt, root / "list.txt", out, **kwargs))[0]
    np.testing.assert_array_equal(again, first)


def test_a_job_killed_between_its_data_and_its_sidecar_leaves_no_file_taken_as_finished(setup, tmp_path,
                                                                                        monkeypatch):
    """The data files and the ``.json`` sidecar that marks them finished were replaced one after the other: a job
    killed before its sidecar left another checkpoint's features beside the first job's sidecar, and the first job
    rerun called them up to date. The sidecar is marked unfinished first now, and written whole last."""
    import shutil

    from mme.errors import DataError

    root, ckpt = setup
    torch.manual_seed(1)
    other = save_pretrained(VisionTransformer(ModelConfig(**CFG)), tmp_path / "other")
    out, kw = tmp_path / "f.npy", dict(stride=2, root=str(root), num_workers=0, progress=False, tokens=True)
    first = read_features(embed(ckpt, root / "list.txt", out, **kw))

    _kill_before_the_finished_sidecar(monkeypatch, out.with_name(out.name + ".json"))
    with pytest.raises(KeyboardInterrupt):
        embed(other, root / "list.txt", out, **kw)
    monkeypatch.undo()
    with pytest.raises(DataError, match="partial results of a different job"):  # the killed job's, kept
        embed(ckpt, root / "list.txt", out, **kw)
    shutil.rmtree(out.with_name(out.name + ".partial"))  # as the message says
    again = read_features(embed(ckpt, root / "list.txt", out, **kw))
    ok = first[1]
    assert np.array_equal(first[0][ok], again[0][ok])


@pytest.mark.pinned  # no run: it writes features files only
def test_features_killed_while_written_leave_no_file_after_the_next_write(tmp_path):
    """A kill (the file-size limit's signal, whose default action ends the process mid-write) while a
    ``.safetensors`` features file was written left safetensors' own temporary file (``.tmpXXXXXX``) beside it for
    good, and ours, which no later write removed. The features are written into our temporary file itself, and the
    next write removes the ones a killed write left."""
    from mme.eval.features import write_features

    x, valid, labels = np.arange(100 * 64, dtype=np.float32).reshape(100, 64), np.ones(100, bool), np.arange(100)
    script = ("import resource, signal, sys; import numpy as np; from pathlib import Path; "
              "from mme.eval.features import write_features; signal.signal(signal.SIGXFSZ, signal.SIG_DFL); "
              "resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); resource.setrlimit(resource.RLIMIT_FSIZE, "
              "(10_000, 10_000)); write_features(Path(sys.argv[1]), np.zeros((100, 64), np.float32), "
              "np.ones(100, bool), np.arange(100), None, {})")
    out = tmp_path / "f.safetensors"
    proc = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr[-3000:]
    assert any(p.name.startswith(".") for p in tmp_path.iterdir())  # what the killed write left
    write_features(out, x, valid, labels, None, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.safetensors", "f.safetensors.json"]
    features, read_valid = read_features(out)[:2]
    assert np.array_equal(features, x) and read_valid.all()


@pytest.mark.pinned  # no run: it writes features files only
def test_a_features_write_that_fails_names_the_file_it_failed_on(tmp_path):
    """The token file or the sidecar that a file-size limit (or a full disk) refused was named as the features file
    (`f.npy: could not be written`, where f.npy, 3.2 KB, was whole and f.tokens.npy failed; `val.safetensors`
    where its sidecar failed): the message names the file whose write failed."""
    script = ("import resource, signal, sys; import numpy as np; from pathlib import Path; "
              "from mme.errors import DataError; from mme.eval.features import write_features; "
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
              "x, valid, labels = np.zeros((4, 8), np.float32), np.ones(4, bool), np.arange(4)\n"
              "for name, tokens, failures in (('a.npy', np.zeros((4, 1000), np.float32), []), "
              "('b.npy', None, ['x' * 20_000]), ('c.safetensors', None, ['x' * 20_000])):\n"
              "    try:\n"
              "        write_features(Path(sys.argv[1]) / name, x, valid, labels, tokens, {'failures': failures})\n"
              "    except DataError as e:\n"
              "        print(e)")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stdout.splitlines()  # (the reason: numpy's short write, or EFBIG)
    assert [line.split(": could not be written (")[0] for line in said] == [
        str(tmp_path / name) for name in ("a.tokens.npy", "b.npy.json", "c.safetensors.json")], said


@pytest.mark.pinned  # every run precision fp32
def test_a_second_job_on_the_same_output_is_refused_while_the_first_runs(setup, tmp_path):
    """Two jobs on one --out both embedded everything, and the first to finish deleted the parts the other was
    assembling. The partial-results folder is now locked by the job that writes it."""
    from mme.errors import ConfigError

    root, ckpt = setup
    out = tmp_path / "f.npy"
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from mme.utils import lock_folder; "  # (no torch)
                               f"lock_folder({str(out) + '.partial'!r}, '--out'); print('held', flush=True); "
                               "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=r"--out \(its partial results\) '.*f\.npy\.partial' is in use by "
                                              r"another job \(PID \d+ on "):
            embed(ckpt, root / "list.txt", out, stride=2, root=str(root), num_workers=0, progress=False,
                  precision="fp32")
    finally:
        holder.communicate("")
    assert read_features(embed(ckpt, root / "list.txt", out, stride=2, root=str(root), num_workers=0,
                               progress=False, precision="fp32"))[1].sum() == 6  # once it is gone, the job runs
    assert not (tmp_path / "f.npy.partial").exists()


@pytest.mark.pinned  # every run precision fp32
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_or_interrupted_embedding_resumes_where_it_stopped(sig, setup, tmp_path, monkeypatch):
    from mme.eval import features

    root, ckpt = setup
    many = tmp_path / "many.txt"  # 24 rows (the 8 videos repeated), a part each; the command waits after its third,
    rows = (root / "list.txt").read_text().splitlines() * 3  # so the signal comes mid-way however loaded the machine
    many.write_text("\n".join(str(root / r) for r in rows) + "\n")
    # the reference: the 8 videos embedded once, repeated as the list repeats them (a row is its video's whatever
    # the batch it is embedded in: the resumed file holds rows of batch 1 and of the default batch alike)
    reference = np.tile(np.load(embed(ckpt, root / "list.txt", tmp_path / "ref.npy", stride=2, root=str(root),
                                      num_workers=0, progress=False, precision="fp32")), (3, 1))
    out = tmp_path / "f.npy"
    script = ("import sys, time\n"
              "import mme.eval.features as features\n"
              "from mme import cli\n"
              "write, written = features._write_part, []\n"
              "def then_wait(*args):\n"
              "    written.append(write(*args))\n"
              "    if len(written) >= 3:\n"
              "        time.sleep(2)  # (a batch of seconds: the signal comes in the first)\n"
              "    return written[-1]\n"
              "features._write_part = then_wait\n"
              "sys.exit(cli.main(sys.argv[1:]))")
    cmd = [sys.executable, "-c", script, "embed", str(ckpt), str(many), "--out", str(out), "--stride", "2",
           "--batch-size", "1", "--chunk-batches", "1", "--num-workers", "0", "--device", "cpu", "--precision", "fp32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "f.npy.partial"
    # the signal is sent once the third part is written, never at a deadline before it: on a loaded 2-core machine
    # torch's import alone took 43 s, and a signal sent earlier came wherever the command was, which may be where its
    # KeyboardInterrupt is dropped and the command goes on into its wait after the third part: a __del__ (shown:
    # test_a_ctrl_c_whose_exception_python_dropped_stops_the_embedding_at_its_next_batch), or this script's own
    # imports, before the CLI records signals (torch's native start-up drops it: mme.cli._command_module). A Ctrl-C
    # that lands where Python drops it is acted on after the item it came in (mme.train.interrupts.raise_recorded),
    # so the parts after the third take 2 s each, as a batch does, not one wait of 600 s (CI's run timed out on it
    # under load); the 21 left take 42 s, so a command that ignored the signal ends within the 60 s below and fails
    # "mid-way"
    deadline = time.monotonic() + 300
    while len(list(partial.glob("part-*.npz"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    if len(list(partial.glob("part-*.npz"))) < 3:
        proc.kill()
        pytest.fail(f"the command wrote fewer than 3 parts (exit {proc.wait()}): {proc.communicate()[1][-3000:]}")
    os.kill(proc.pid, sig)
    try:
        err = proc.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the command went on 60 s after {sig.name}: {proc.communicate()[1][-3000:]}")
    if sig == signal.SIGINT:  # Ctrl-C: one line, what is written is kept
        assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err[-2000:]
    done = len(list(partial.glob("part-*.npz")))
    assert not out.exists() and 3 <= done < len(rows), "the run should have been killed mid-way"
    with pytest.raises(DataError, match="different job"):
        embed(ckpt, many, out, stride=4, num_workers=0, progress=False, precision="fp32")
    failed = {int(i) for part in partial.glob("part-*.npz") for i in np.load(part)["failed"]}  # (tried again)
    again, write = [], features._write_part
    monkeypatch.setattr(features, "_write_part", lambda *args: again.extend(  # (a video that fails is a row too)
        [*args[2]["index"].tolist(), *args[2]["failed"].tolist()]) or write(*args))
    embed(ckpt, many, out, stride=2, num_workers=0, progress=False, precision="fp32")
    assert sorted(again) == sorted({*failed, *range(done, len(rows))}), "the rerun embeds only what is not done"
    np.testing.assert_array_equal(np.load(out), reference)
    assert not partial.exists()


@pytest.mark.pinned  # its run precision fp32
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # (the KeyboardInterrupt dropped)
def test_a_ctrl_c_whose_exception_python_dropped_stops_the_embedding_at_its_next_batch(setup, tmp_path, monkeypatch,
                                                                                       capsys):
    """A Ctrl-C whose KeyboardInterrupt was raised where Python drops it (here a ``__del__``; alike, a weakref callback
    the garbage collector runs) was recorded by the CLI but acted on only once the command ended: ``mme embed``
    embedded the whole list (hours on Kinetics), then said it was interrupted. It stops at its next batch, the parts
    written kept."""
    from mme.cli import main
    from mme.eval import features

    root, ckpt = setup
    out, write = tmp_path / "f.npy", features._write_part

    class DroppedOnDeletion:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # its KeyboardInterrupt printed as "Exception ignored", not raised

    def write_then_drop(*args):
        path = write(*args)
        DroppedOnDeletion()
        return path

    monkeypatch.setattr(features, "_write_part", write_then_drop)
    assert main(["embed", str(ckpt), str(root / "list.txt"), "--root", str(root), "--out", str(out), "--stride",
                 "2", "--batch-size", "1", "--chunk-batches", "1", "--workers", "0", "--precision", "fp32"]) == 130
    assert capsys.readouterr().err.endswith("mme embed: interrupted; what was written is kept (the same command "
                                            "continues, keeping what it finished)\n")
    assert not out.exists()
    assert [p.name for p in (tmp_path / "f.npy.partial").glob("part-*.npz")] == ["part-000000000-r0.npz"]


@pytest.mark.pinned  # every run precision fp32
def test_a_loader_worker_killed_mid_embedding_is_one_line_and_the_same_command_continues(setup, tmp_path,
                                                                                         monkeypatch):
    """A loader worker killed (the out-of-memory killer) raised torch's RuntimeError wherever the job was, here
    while it wrote a finished chunk: a traceback."""
    from mme.errors import ProcessLost
    from mme.eval import features

    root, ckpt = setup
    reference = embed(ckpt, root / "list.txt", tmp_path / "ref.npy", stride=2, root=str(root), num_workers=0,
                      progress=False, precision="fp32")
    out, killed = tmp_path / "f.npy", []
    monkeypatch.setattr(features, "_write_part", killing_a_worker_after(features._write_part, lambda *_: True, killed))
    with pytest.raises(ProcessLost) as info:
        embed(ckpt, root / "list.txt", out, stride=2, root=str(root), batch_size=1, chunk_batches=1, num_workers=1,
              progress=False, precision="fp32")
    assert str(info.value) == (f"data loader worker 0 (pid {killed[0]}) died (signal 9: Killed), most likely killed "
                               "by the out-of-memory killer: lower --workers or --batch-size")
    assert len(list((tmp_path / "f.npy.partial").glob("part-*.npz"))) >= 1 and not out.exists()
    monkeypatch.undo()
    embed(ckpt, root / "list.txt", out, stride=2, root=str(root), num_workers=0, progress=False, precision="fp32")
    np.testing.assert_array_equal(np.load(out), np.load(reference))


@pytest.mark.pinned  # its run --precision fp32
def test_a_shared_memory_too_small_for_the_views_is_one_line_not_a_wait_forever(setup, tmp_path):
    """A /dev/shm too small for a batch of test views (a container's default, Docker's 64 MB, under Kinetics' 7 x 3
    views of 16 x 224²): the workers stacked their batches in their own memory, which their queues' threads then
    failed to move to shared memory, printing "No space left on device" and dropping the batch, the worker alive:
    `mme embed` (as `mme probe` and fine-tuning's tests) waited for it for good. It is the one line of a worker's
    batch that does not fit there beside the others the workers hold."""
    root, ckpt = setup
    out = tmp_path / "f.safetensors"
    proc = subprocess.run(with_small_shm(
        [sys.executable, "-m", "mme.cli", "embed", str(ckpt), str(root / "list.txt"), "--root", str(root), "--out",
         str(out), "--clips", "4", "--crops", "3", "--batch-size", "4", "--workers", "2", "--precision", "fp32"]),
        capture_output=True, text=True, timeout=120)  # (a wait forever before)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "mme embed: error: data loader worker 0: a batch does not fit in shared memory (/dev/shm, 0.25 MiB in all), "
        "which holds the batches of the loader's 2 workers at once, 2 each: give it more, or lower --workers or "
        "--batch-size; what was written is kept (the same command continues, keeping what it "
        "finished)"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not out.exists()


@pytest.mark.pinned  # no run
def test_a_list_or_a_video_is_told_apart_whatever_its_names(setup, tmp_path, monkeypatch):
    """A list whose 4096th byte cuts a character of a name is a list (before: one video, that failed); a video
    named on the command line is that file, whatever ``root`` says."""
    root, _ = setup
    names = ["é" * 10 + f"_{i}.mp4 {i % 3}" for i in range(200)]
    comment = "# " + "x" * 4092 + "\n"  # 4095 bytes: the first 'é' lies across bytes 4095 and 4096
    (tmp_path / "list.txt").write_text(comment + "\n".join(names) + "\n", encoding="utf-8")
    assert (tmp_path / "list.txt").read_bytes()[4095:4097] == "é".encode()
    assert len(build_test_set(tmp_path / "list.txt", ModelConfig(**CFG), clips=1, crops=1)) == 200
    monkeypatch.chdir(root)
    ds = build_test_set("v0.mp4", ModelConfig(**CFG), clips=1, crops=1, root=str(tmp_path))
    assert len(ds) == 1 and ds[0]["video"].shape[-3] == CFG["num_frames"]  # decoded: the file was found


@pytest.fixture
def own_root(setup, tmp_path, monkeypatch):
    """A copy of the setup's videos and list (v2 corrupt, v5 missing), and the indices of the videos decoded."""
    import shutil

    from mme.data.dataset import ClassificationDataset

    root, ckpt = setup
    own = tmp_path / "videos"
    shutil.copytree(root, own, ignore=shutil.ignore_patterns("encoder"))
    loads = []
    load = ClassificationDataset._load
    monkeypatch.setattr(ClassificationDataset, "_load", lambda self, i, rng: loads.append(i) or load(self, i, rng))
    return own, ckpt, loads


def _kill_before_assembly(monkeypatch) -> None:
    """Stop ``embed`` after every part is written, as a kill before the final file would."""
    import mme.eval.features as features

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(features, "_assemble", killed)


def _kill_before_the_finished_sidecar(monkeypatch, sidecar: Path) -> None:
    """Stop ``embed`` just before it writes ``sidecar`` as finished, once it has marked its files unfinished, as a
    kill between its data and its sidecar would."""
    import mme.eval.features as features

    write_json = features.atomic_write_json

    def killed(path, obj, *args, **kwargs):
        if Path(path) == sidecar and not obj.get("unfinished"):
            raise KeyboardInterrupt
        return write_json(path, obj, *args, **kwargs)

    monkeypatch.setattr(features, "atomic_write_json", killed)


def test_failed_videos_of_a_finished_file_are_tried_again_and_its_rows_kept(own_root, tmp_path):
    """A rerun of the same command said "up to date" and kept the NaN row of a video that was now there; the
    embedded rows are now kept (not decoded again) and the failed videos alone are tried again."""
    root, ckpt, loads = own_root
    kw = dict(stride=2, root=str(root), tokens=True, num_workers=0, progress=False)
    out = embed(ckpt, root / "list.txt", tmp_path / "f.safetensors", **kw)
    assert [f["index"] for f in read_features(out)[3]["failures"]] == [2, 5]
    write_video(root / "v5.mp4", _moving(5))
    loads.clear()
    embed(ckpt, root / "list.txt", out, **{**kw, "batch_size": 1})  # a part per video: part-000000005 again
    assert sorted(loads) == [2, 5]
    reference = embed(ckpt, root / "list.txt", tmp_path / "ref.safetensors", **kw)
    from safetensors.numpy import load_file

    got, want = load_file(str(out)), load_file(str(reference))
    assert want["valid"].tolist() == [1, 1, 0, 1, 1, 1, 1, 1]
    for key in ("features", "valid", "labels", "tokens"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert [f["index"] for f in read_features(out)[3]["failures"]] == [2]
    assert not (tmp_path / "f.safetensors.partial").exists()
    loads.clear()  # video 2 fails for good: unchanged since, it is not tried again and the file is a cache
    mtime = out.stat().st_mtime_ns
    embed(ckpt, root / "list.txt", out, **kw)
    assert loads == [] and out.stat().st_mtime_ns == mtime


def test_a_resumed_job_tries_its_failed_videos_again(own_root, tmp_path, monkeypatch, refuse_removal):
    """The parts of a stopped job counted failed videos as done, so a resume never tried them again. Video 5 (the
    missing one) is the first row of the second part: the part of its retry must not replace that part's rows. A
    part that cannot be removed (another user's in a shared folder) was a PermissionError traceback."""
    root, ckpt, loads = own_root
    kw = dict(stride=2, root=str(root), batch_size=5, chunk_batches=1, num_workers=0, progress=False)
    out = tmp_path / "f.npy"
    with monkeypatch.context() as m:
        _kill_before_assembly(m)
        with pytest.raises(KeyboardInterrupt):
            embed(ckpt, root / "list.txt", out, **kw)
    partial = tmp_path / "f.npy.partial"
    assert not out.exists() and len(list(partial.glob("part-*.npz"))) == 2
    write_video(root / "v5.mp4", _moving(5))
    loads.clear()
    with refuse_removal(partial / "part-000000005-r0.npz", errno.EACCES), pytest.raises(MMEError) as refused:
        embed(ckpt, root / "list.txt", out, **{**kw, "batch_size": 1})  # its rows 6, 7 written as part-000000006
    assert str(refused.value) == (
        f"{partial / 'part-000000005-r0.npz'}: could not be removed (Permission denied); it holds videos to embed "
        f"again (failed, or changed since), which would be taken as done: make it removable, or delete {partial} to "
        "embed every video again")
    assert not out.exists() and not loads  # refused before any video
    loads.clear()
    embed(ckpt, root / "list.txt", out, **{**kw, "batch_size": 1})  # a part per video: part-000000005 again
    assert sorted(loads) == [2, 5]
    reference = embed(ckpt, root / "list.txt", tmp_path / "ref.npy", **kw)
    np.testing.assert_array_equal(np.load(out), np.load(reference))
    assert [f["index"] for f in read_features(out)[3]["failures"]] == [2]


def test_parts_of_an_earlier_mme_are_said_to_be_so_when_embedded_again(own_root, tmp_path, monkeypatch, caplog):
    """The parts of a stopped job of an earlier mme, without each video's state, are embedded again: the log called
    their videos changed since (size or modification time); it now says which videos changed and which were
    written by an earlier mme."""
    import logging
    import shutil

    root, ckpt, loads = own_root
    kw = dict(stride=2, root=str(root), batch_size=5, chunk_batches=1, num_workers=0, progress=False)
    out, partial = tmp_path / "f.npy", tmp_path / "f.npy.partial"
    with monkeypatch.context() as m:
        _kill_before_assembly(m)
        with pytest.raises(KeyboardInterrupt):
            embed(ckpt, root / "list.txt", out, **kw)
    first, second = sorted(partial.glob("part-*.npz"))  # rows 0-4 (2 failed), rows 5-7 (5 failed)
    with np.load(first) as z:
        np.savez(first, **{k: z[k] for k in z.files if k != "state"})  # as an earlier mme wrote it
    shutil.copyfile(root / "v0.mp4", root / "v6.mp4")
    loads.clear()
    caplog.set_level(logging.INFO, logger="mme")
    embed(ckpt, root / "list.txt", out, **kw)
    assert sorted(loads) == [0, 1, 2, 3, 4, 5, 6]
    assert f"embed: {partial}: 1 videos embedded there changed since (size or modification time)" in caplog.text
    assert f"embed: {partial}: 4 videos embedded there were written by an earlier mme, without each video's " \
           "state; embedding them again" in caplog.text


@pytest.fixture
def wide_grids(own_root, tmp_path):
    """An encoder of 32 tokens of 128 (16 KiB of token grid per video), a list of 128 of the videos of ``own_root``
    (v2 corrupt, v5 missing): 2 MiB of grids in all, far above what else an embedding's files hold, ``embed``'s
    options for them, and the indices of the videos decoded."""
    root, _, loads = own_root
    torch.manual_seed(0)
    ckpt = save_pretrained(VisionTransformer(ModelConfig(**{**CFG, "patch_size": 8, "embed_dim": 128})),
                           tmp_path / "encoder")
    (tmp_path / "list.txt").write_text("".join(f"v{i % 8}.mp4 {i % 3}\n" for i in range(128)))
    return ckpt, tmp_path / "list.txt", dict(stride=2, root=str(root), batch_size=4, chunk_batches=1, tokens=True,
                                              num_workers=0, progress=False, precision="fp32"), loads  # 32 parts of 4


@pytest.mark.parametrize("suffix", [".npy", ".safetensors"])
@pytest.mark.pinned  # every run precision fp32 (wide_grids)
def test_the_token_grids_are_assembled_a_part_at_a_time_into_the_same_files(suffix, wide_grids, tmp_path,
                                                                              monkeypatch):
    """`mme embed --tokens` gathered every part, token grids included, and then the whole grid again to write it:
    twice the token file in memory at the very end (96 GB for ViT-B's grids of 10k videos at 16 x 224²), the
    out-of-memory kill there at every rerun. The grids are written into the final file one part at a time, the disk
    holding the parts and that file alone (not a third copy of the grids, gathered in the partial folder first: the
    disk full at the end, at every rerun), each part's grids read once (the first part's were read twice, for the
    grid's shape, which its header gives); the files are those the whole grid in memory gave, byte for byte."""
    import tracemalloc

    from mme.eval import features
    from mme.eval.features import write_features

    ckpt, videos, kw, _ = wide_grids
    peaks, assemble, on_disk, sidecar = [], features._assemble, [], features.atomic_write_json
    read, member = [], np.lib.npyio.NpzFile.__getitem__

    def reading(npz, key):
        array = member(npz, key)
        if key == "tokens":
            read.append(array.nbytes)
        return array

    def measured(*args):
        tracemalloc.start()
        monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", reading)
        try:
            assemble(*args)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()

    def disk(files) -> int:
        return sum(p.stat().st_blocks * 512 for p in files if p.is_file())

    def measuring(path, obj, **dumps):  # (the last, the finished sidecar: the final files whole, the parts there)
        ours = (p for p in tmp_path.rglob("*") if p.relative_to(tmp_path).parts[0].startswith(("f", ".f")))
        on_disk.append((disk(tmp_path.glob(f"f{suffix}.partial/part-*")), disk(ours)))
        sidecar(path, obj, **dumps)

    monkeypatch.setattr(features, "_assemble", measured)
    monkeypatch.setattr(features, "atomic_write_json", measuring)
    out = embed(ckpt, videos, tmp_path / f"f{suffix}", **kw)
    grids = read_tokens(out)
    assert grids.shape == (128, 2, 4, 4, 128) and np.isnan(grids[2::8]).all() and np.isfinite(grids[::8]).all()
    assert peaks[0] < grids.nbytes / 2, peaks  # before: 4 MiB, every part's grids and the whole grid
    assert sum(read) == np.isfinite(grids).all(axis=(1, 2, 3, 4)).sum() * grids[0].nbytes, read  # each part's once
    parts, peak = on_disk[-1][0], max(total for _, total in on_disk)
    assert parts > grids.nbytes / 2 and peak < parts + grids.nbytes * 1.25, (parts, peak)  # before: + the grids again
    assert not (tmp_path / f"f{suffix}.partial").exists()  # (the file the grids were gathered in with it)
    x, valid, labels, info = read_features(out)
    write_features(tmp_path / f"whole{suffix}", x, valid, labels, grids, info)  # as before, the grid in memory
    for name in (f"f{suffix}", "f.tokens.npy")[:2 if suffix == ".npy" else 1]:
        assert (tmp_path / name).read_bytes() == (tmp_path / name.replace("f", "whole", 1)).read_bytes(), name


@pytest.mark.parametrize("suffix", [".npy", ".safetensors"])
@pytest.mark.pinned  # every run precision fp32 (wide_grids)
def test_a_final_token_file_that_cannot_be_written_holds_no_disk_space(suffix, wide_grids, tmp_path, monkeypatch):
    """A final file that could not be written (a full disk) kept the space of the grids gathered for it, a file
    removed but still mapped into memory, for as long as the error lived (a notebook's last traceback). The grids are
    written straight into the final file: the error leaves the parts alone, and the same command resumes from them."""
    from mme.eval import features

    ckpt, videos, kw, _ = wide_grids
    save, write = np.save, features.write_safetensors

    def full(path, *args, **kwargs):
        (save if suffix == ".npy" else write)(path, *args, **kwargs)
        if Path(path).name.startswith(f".f{suffix}.tmp"):  # (the features' file, the grids' written before)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", full) if suffix == ".npy" else monkeypatch.setattr(features, "write_safetensors",
                                                                                       full)
    with pytest.raises(DataError, match="No space left") as failed:
        embed(ckpt, videos, tmp_path / f"f{suffix}", **kw)
    held = [line for line in Path("/proc/self/maps").read_text().splitlines()
            if str(tmp_path) in line and line.endswith("(deleted)")]
    assert not held and failed.value is not None, held  # before: the gathered grids, mapped
    partial = tmp_path / f"f{suffix}.partial"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # (no temporary file left)
    assert all(p.name.startswith("part-") for p in partial.iterdir() if p.name not in (".lock", "job.json"))
    monkeypatch.undo()
    assert read_tokens(embed(ckpt, videos, tmp_path / f"f{suffix}", **kw)).shape == (128, 2, 4, 4, 128)


@pytest.mark.parametrize("suffix", [".npy", ".safetensors"])
@pytest.mark.pinned  # every run precision fp32 (wide_grids)
def test_an_embedding_killed_while_its_token_grids_are_written_leaves_nothing_after_the_next_run(suffix, wide_grids,
                                                                                                 tmp_path):
    """A kill while the token grids were assembled (the file-size limit's signal, its default action ending the
    process mid-write) leaves the final file's temporary file (not a file of the grids in the partial folder, which a
    different job's run there kept); the next run resumes from the parts and removes it."""
    ckpt, videos, kw, _ = wide_grids
    script = ("import json, resource, signal, sys; from mme.eval.features import embed; "
              "signal.signal(signal.SIGXFSZ, signal.SIG_DFL); resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20)); "  # (a part fits, not the grids)
              "embed(*sys.argv[1:4], **json.loads(sys.argv[4]))")
    out = tmp_path / f"f{suffix}"
    proc = subprocess.run([sys.executable, "-c", script, str(ckpt), str(videos), str(out), json.dumps(kw)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGXFSZ, proc.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".f{suffix.replace('.npy', '.tokens.npy')}")]
    assert read_tokens(embed(ckpt, videos, out, **kw)).shape == (128, 2, 4, 4, 128)
    assert not [p.name for p in tmp_path.rglob(".*")] and not (tmp_path / f"f{suffix}.partial").exists()


@pytest.mark.pinned  # every run precision fp32 (wide_grids)
def test_a_resumed_embedding_lists_its_done_rows_without_reading_their_token_grids(wide_grids, tmp_path, monkeypatch):
    """A rerun of `mme embed --tokens` read every finished part whole, token grids included, all at once, to list the
    rows done (the whole grid in memory before any embedding), and each part whole again to check its videos'
    states. Their rows and states are read alone."""
    import tracemalloc

    from mme.eval import features

    ckpt, videos, kw, _ = wide_grids
    out = tmp_path / "f.npy"
    with monkeypatch.context() as m:
        _kill_before_assembly(m)
        with pytest.raises(KeyboardInterrupt):
            embed(ckpt, videos, out, **kw)
    grids = 0
    for part in (tmp_path / "f.npy.partial").glob("part-*.npz"):
        with np.load(part) as z:
            grids += z["tokens"].nbytes
    assert grids == 96 * 16 << 10  # the grids of the 96 videos of the 128 that embedded

    def peak_so_far(*args):
        peaks.append(tracemalloc.get_traced_memory()[1])
        raise KeyboardInterrupt

    peaks = []
    monkeypatch.setattr(features, "_assemble", peak_so_far)
    tracemalloc.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            embed(ckpt, videos, out, **kw)  # every video done (the failed ones tried again): to the assembly at once
    finally:
        tracemalloc.stop()
    assert peaks[0] < grids / 2, peaks  # before: 2 MiB, the parts' grids all at once, and more


@pytest.mark.parametrize("suffix", [".npy", ".safetensors"])
@pytest.mark.pinned  # every run precision fp32 (wide_grids)
def test_features_and_the_rows_kept_of_a_finished_file_are_read_without_the_whole_token_grid(suffix, wide_grids,
                                                                                              tmp_path, monkeypatch):
    """read_features of a `.safetensors` file made with --tokens read every tensor of it, the whole token grid, to
    give the features; a rerun where some videos changed read the whole grid, and the grids of the rows it kept
    again, to write those rows to one part. The features are read alone, and the rows kept a part at a time."""
    import tracemalloc

    from mme.eval import features

    ckpt, videos, kw, loads = wide_grids
    out = embed(ckpt, videos, tmp_path / f"f{suffix}", **kw)
    grids = read_tokens(out)
    assert grids.nbytes == 2 << 20
    tracemalloc.start()
    try:
        x = read_features(out)[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (128, 128) and peak < grids.nbytes / 4, peak  # before (.safetensors): 2 MiB

    def measured(*args):
        tracemalloc.start()
        try:
            open_partial(*args)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()

    peaks, open_partial = [], features._open_partial
    monkeypatch.setattr(features, "_open_partial", measured)
    v0 = Path(kw["root"]) / "v0.mp4"
    os.utime(v0, ns=(v0.stat().st_atime_ns, v0.stat().st_mtime_ns + 10**9))  # "replaced": its 16 rows embedded again
    loads.clear()
    again = embed(ckpt, videos, out, **kw)
    assert sorted(loads) == sorted(i for i in range(128) if i % 8 in (0, 2, 5))  # (and the failed ones)
    assert peaks[0] < grids.nbytes / 4, peaks  # before: 4.7 MiB, the whole grid and the 80 rows kept again
    np.testing.assert_array_equal(read_tokens(again), grids)
    np.testing.assert_array_equal(read_features(again)[0], x)


@pytest.mark.pinned  # every run precision fp32
def test_a_disk_full_while_writing_a_part_is_one_line_and_the_parts_before_are_kept(own_root, tmp_path):
    """The disk filled up (a file-size limit set after the first part makes the writes fail where a full disk would):
    a bare traceback from numpy. Now one line names the part, the reason (the limit) and what is kept; the rerun
    resumes."""
    root, ckpt, loads = own_root
    out, partial = tmp_path / "f.npy", tmp_path / "f.npy.partial"
    script = ("import resource, signal, sys\n"
              "import mme.eval.features as features\n"
              "from mme import cli\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "write = features._write_part\n"
              "def then_full(*args):\n"
              "    path = write(*args)\n"
              "    resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
              "    return path\n"
              "features._write_part = then_full\n"
              "sys.exit(cli.main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", script, "embed", str(ckpt), str(root / "list.txt"), "--out", str(out),
                           "--root", str(root), "--stride", "2", "--batch-size", "1", "--chunk-batches", "1",
                           "--num-workers", "0", "--device", "cpu", "--precision", "fp32"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"mme embed: error: {partial}/part-000000001-r0.npz: could not be written (File too large: this "
                    f"process's file-size limit (100 bytes, ulimit -f) reached); the videos embedded before are kept "
                    f"in {partial}, and the same command resumes from them"), last
    assert [p.name for p in partial.glob("part-*.npz")] == ["part-000000000-r0.npz"] and not out.exists()
    loads.clear()
    embed(ckpt, root / "list.txt", out, root=str(root), stride=2, num_workers=0, progress=False, precision="fp32")
    assert sorted(loads) == list(range(1, 8)) and read_features(out)[1].sum() == 6


@pytest.mark.pinned  # no run: the features file's writing alone
def test_a_full_disk_under_the_final_features_file_says_so_plainly(tmp_path):
    """numpy writes a .npy's data with one write, and a full disk took part of it: the line gave numpy's text, 'could
    not be written (10368 requested and 992 written; 0 MiB free)'. A 24 KiB tmpfs, where this user may mount one."""
    from mme.eval.features import _kept_in, write_features

    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("no tmpfs can be mounted here (not root)")
    out, partial = full / "e.npy", tmp_path / "e.npy.partial"
    try:
        with pytest.raises(DataError) as info:
            write_features(out, np.zeros((64, 1024), np.float32), np.ones(64, bool), np.zeros(64, np.int64), None,
                           {"dim": 1024}, _kept_in(partial))
    finally:
        subprocess.run(["umount", str(full)], check=True)
    assert re.fullmatch(rf"{re.escape(str(out))}: could not be written \(No space left on device, or a quota reached "
                        r"\(a short write: \d+ of 65536 items written\); 0 MiB free\); the videos embedded before are "
                        rf"kept in {re.escape(str(partial))}, and the same command resumes from them",
                        str(info.value)), info.value


@pytest.mark.parametrize("stage", ["finished", "resumed"])
def test_a_video_replaced_since_it_was_embedded_is_embedded_again(stage, own_root, tmp_path, monkeypatch):
    """The cache key held the list file alone: a video replaced by another (cp) kept its old row, the finished
    file called up to date (row 3 off by up to 0.34) and a resumed job mixing rows of both. Every row records its
    video's size and mtime; the changed ones are embedded again, with the failed ones (2 corrupt, 5 missing)."""
    import shutil

    root, ckpt, loads = own_root
    kw = dict(stride=2, root=str(root), tokens=True, num_workers=0, progress=False)
    out = tmp_path / "f.npy"
    with monkeypatch.context() as m:
        if stage == "resumed":
            _kill_before_assembly(m)
        try:
            embed(ckpt, root / "list.txt", out, **kw)
        except KeyboardInterrupt:
            assert stage == "resumed"
    shutil.copyfile(root / "v6.mp4", root / "v3.mp4")
    loads.clear()
    embed(ckpt, root / "list.txt", out, **kw)
    assert sorted(loads) == [2, 3, 5]
    reference = embed(ckpt, root / "list.txt", tmp_path / "ref.npy", **kw)
    np.testing.assert_array_equal(np.load(out), np.load(reference))
    np.testing.assert_array_equal(np.load(tmp_path / "f.tokens.npy"), np.load(tmp_path / "ref.tokens.npy"))
    loads.clear()
    embed(ckpt, root / "list.txt", out, **kw)
    assert loads == []  # unchanged since: a cache again


def test_a_job_where_every_video_failed_leaves_nothing_in_the_way_of_the_corrected_one(own_root, tmp_path,
                                                                                        monkeypatch):
    """Every video failed under a wrong --root: the partial folder (failures only) was kept, the rerun failed
    without decoding ("see the warnings above" with none above, naming the list by its fingerprint) and the
    corrected command was refused as a different job."""
    root, ckpt, loads = own_root
    out = tmp_path / "f.npy"
    kw = dict(stride=2, num_workers=0, progress=False)
    (tmp_path / "wrong").mkdir()  # a folder, without the videos (one that is not a folder is refused at once)
    for _ in range(2):
        loads.clear()
        with pytest.raises(DataError, match=rf"^all 8 videos of {root / 'list.txt'} failed; first error: "
                                            r".*v0\.mp4: missing"):
            embed(ckpt, root / "list.txt", out, root=str(tmp_path / "wrong"), **kw)
        assert sorted(loads) == list(range(8)) and not (tmp_path / "f.npy.partial").exists()
    with monkeypatch.context() as m:  # a stopped job that embedded nothing does not block the corrected one
        _kill_before_assembly(m)
        with pytest.raises(KeyboardInterrupt):
            embed(ckpt, root / "list.txt", out, root=str(tmp_path / "wrong"), **kw)
    assert (tmp_path / "f.npy.partial").is_dir()
    assert read_features(embed(ckpt, root / "list.txt", out, root=str(root), **kw))[1].sum() == 6


def test_features_written_into_the_checkpoint_folder_are_a_cache_of_it(own_root, tmp_path, monkeypatch):
    """The fingerprint of a checkpoint folder took in every file under it: features written there (their sidecar,
    the partial folder) changed it, so they were never reused and a stopped job was refused as a different one."""
    import shutil

    root, ckpt, loads = own_root
    folder = tmp_path / "enc"
    shutil.copytree(ckpt, folder)
    out = folder / "f.npy"
    kw = dict(stride=2, root=str(root), batch_size=5, chunk_batches=1, num_workers=0, progress=False)
    with monkeypatch.context() as m:
        _kill_before_assembly(m)
        with pytest.raises(KeyboardInterrupt):
            embed(folder, root / "list.txt", out, **kw)
    loads.clear()
    first = read_features(embed(folder, root / "list.txt", out, **kw))[0]  # resumed, not refused
    assert sorted(loads) == [2, 5]  # the failed videos alone
    loads.clear()
    np.testing.assert_array_equal(read_features(embed(folder, root / "list.txt", out, **kw))[0], first)
    assert loads == []  # a cache hit: its failed videos unchanged since


def test_files_at_out_that_mme_embed_did_not_write_are_replaced_only_with_overwrite(own_root, tmp_path, monkeypatch):
    """--out results.npy replaced the user's results.npy and results.npy.json without a word, and deleted an
    unrelated results.tokens.npy. Files of those names are mme embed's where its sidecar is (finished, or marked
    unfinished by a write stopped half-way) or its partial folder; others are refused in one line, kept, unless
    --overwrite. A job stopped after --overwrite resumes without it, and a token file not mme's is never removed."""
    root, ckpt, loads = own_root
    (root / "list.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    here = tmp_path / "out"
    here.mkdir()
    out, kw = here / "results.npy", dict(stride=2, root=str(root), num_workers=0, progress=False)
    np.save(out, np.arange(10.0))
    (here / "results.npy.json").write_text('{"my": "notes"}')
    np.save(here / "results.tokens.npy", np.ones(3))
    mine = {p.name: p.read_bytes() for p in here.iterdir()}
    with pytest.raises(ConfigError, match=rf"^--out {out}: already holds files mme embed did not write \(results\.npy, "
                                          r"results\.npy\.json\); give --overwrite to replace them, or another --out$"):
        embed(ckpt, root / "list.txt", out, **kw)
    assert {p.name: p.read_bytes() for p in here.iterdir()} == mine and loads == []
    _kill_before_assembly(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        embed(ckpt, root / "list.txt", out, overwrite=True, **kw)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in here.iterdir() if p.is_file()} == mine
    loads.clear()
    x = read_features(embed(ckpt, root / "list.txt", out, **kw))[0]  # the stopped job resumed, without --overwrite
    assert loads == [] and x.shape == (2, CFG["embed_dim"]) and np.isfinite(x).all()
    assert (here / "results.tokens.npy").read_bytes() == mine["results.tokens.npy"]
    with pytest.raises(ConfigError, match=r"did not write \(results\.tokens\.npy\); give --overwrite"):
        embed(ckpt, root / "list.txt", out, tokens=True, **kw)
    grids = read_tokens(embed(ckpt, root / "list.txt", out, tokens=True, overwrite=True, **kw))
    assert grids.shape[0] == 2 and np.isfinite(grids).all()

    _kill_before_the_finished_sidecar(monkeypatch, here / "results.npy.json")
    with pytest.raises(KeyboardInterrupt):
        embed(ckpt, root / "list.txt", out, **kw)  # without tokens now: a changed job, written again
    monkeypatch.undo()
    with pytest.raises(DataError, match=rf"^{out}: written part-way \(mme embed stopped while it wrote the file\)"):
        read_features(out)
    shutil.rmtree(here / "results.npy.partial")
    np.testing.assert_array_equal(read_features(embed(ckpt, root / "list.txt", out, **kw))[0], x)
    assert not (here / "results.tokens.npy").exists()  # the grids of mme's earlier job, which its sidecar named


def test_a_token_file_gone_is_made_again(own_root, tmp_path):
    """Features cached as .npy were reused with --tokens although their .tokens.npy was gone."""
    root, ckpt, loads = own_root
    (root / "v2.mp4").unlink()
    (root / "list.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    out = tmp_path / "f.npy"
    embed(ckpt, root / "list.txt", out, stride=2, root=str(root), tokens=True, num_workers=0, progress=False)
    tokens = np.load(tmp_path / "f.tokens.npy")
    (tmp_path / "f.tokens.npy").unlink()
    loads.clear()
    embed(ckpt, root / "list.txt", out, stride=2, root=str(root), tokens=True, num_workers=0, progress=False)
    assert sorted(loads) == [0, 1]
    np.testing.assert_array_equal(np.load(tmp_path / "f.tokens.npy"), tokens)


@pytest.mark.parametrize("name,cut", [("f.npy", lambda size: 100), ("f.safetensors", lambda size: size - 40)])
def test_a_damaged_features_file_is_named_and_made_again(name, cut, own_root, tmp_path, caplog):
    """A features file cut short (a full disk, a copy stopped half-way) was called up to date by the next run,
    whose reading then failed with numpy's or safetensors' bare error. Its headers are checked now: the file is
    made again, with a warning, and read_features names a damaged file."""
    root, ckpt, loads = own_root
    kw = dict(stride=2, root=str(root), num_workers=0, progress=False)
    out = embed(ckpt, root / "list.txt", tmp_path / name, **kw)
    first = read_features(out)[0]
    os.truncate(out, cut(out.stat().st_size))
    with pytest.raises(DataError, match=rf"^{out}: damaged \(.+\)$"):
        read_features(out)
    loads.clear()
    embed(ckpt, root / "list.txt", out, **kw)
    assert sorted(loads) == list(range(8))
    assert f"embed: {out}: damaged (" in caplog.text and "; embedding it again" in caplog.text
    np.testing.assert_array_equal(read_features(out)[0], first)


@pytest.mark.parametrize("name,damage", [("f.npy", "cut"), ("f.safetensors", "cut"), ("f.safetensors", "gone")])
def test_a_damaged_or_missing_sidecar_beside_embedded_features_is_named_and_made_again(name, damage, own_root,
                                                                                       tmp_path, caplog):
    """A sidecar cut short (a copy stopped half-way), or gone beside a .safetensors file whose header records mme
    embed's job, made the rerun refuse the files as not written by mme embed, naming --overwrite (which mme probe
    lacks). They are mme embed's, damaged: the rerun warns, naming the sidecar, and makes them again. A .npy
    without a sidecar records no job: it may be the user's, and is still refused."""
    root, ckpt, loads = own_root
    kw = dict(stride=2, root=str(root), num_workers=0, progress=False)
    out = embed(ckpt, root / "list.txt", tmp_path / name, **kw)
    first = read_features(out)[0]
    side = tmp_path / f"{name}.json"
    if damage == "cut":
        side.write_bytes(side.read_bytes()[:100])
    else:
        side.unlink()
    loads.clear()
    embed(ckpt, root / "list.txt", out, **kw)
    said = f"{side}: damaged (" if damage == "cut" else f"{side} is missing"
    assert f"embed: {said}" in caplog.text and f"beside the features mme embed wrote in {name}; making them again" \
        in caplog.text
    assert sorted(loads) == list(range(8))
    np.testing.assert_array_equal(read_features(out)[0], first)
    if name == "f.npy":
        side.unlink()
        with pytest.raises(ConfigError, match=rf"^--out {out}: already holds files mme embed did not write \(f\.npy\)"):
            embed(ckpt, root / "list.txt", out, **kw)


@pytest.mark.pinned  # refused before a precision is chosen
def test_the_refusal_of_files_mme_embed_did_not_write_reads_their_sidecar_once(tmp_path, monkeypatch):
    """The refusal of a user's features and sidecar cut short read the sidecar three times (its damage, whose files
    they are, how it is cut): it is read once and each check goes by what was read."""
    from mme.eval import features

    out, side = tmp_path / "f.npy", tmp_path / "f.npy.json"
    np.save(out, np.zeros((2, 3), np.float32))
    side.write_bytes(b'{\n  "jo')
    reads, read_bytes, read_text = [], Path.read_bytes, Path.read_text
    monkeypatch.setattr(Path, "read_bytes", lambda p: (reads.append(p), read_bytes(p))[1])
    monkeypatch.setattr(Path, "read_text", lambda p, *a, **k: (reads.append(p), read_text(p, *a, **k))[1])
    with pytest.raises(ConfigError, match=rf"^--out {out}: its sidecar f\.npy\.json is cut short \(7 B\), too little "
                                          r"to tell whether mme embed wrote it .* give --overwrite to replace f\.npy, "
                                          r"f\.npy\.json, or another --out$"):
        features.refuse_unowned(out)
    assert reads == [side]


@pytest.mark.parametrize("kept", [0, 18])
def test_a_npy_sidecar_cut_too_short_to_tell_is_refused_as_such(kept, own_root, tmp_path):
    """mme embed's own .npy sidecar cut before the bytes that tell it mme embed's (0 B after a full disk) was refused
    as files mme embed "did not write". It is named as damaged, too little to tell, with --overwrite; kept."""
    root, ckpt, _ = own_root
    kw = dict(stride=2, root=str(root), num_workers=0, progress=False)
    out = embed(ckpt, root / "list.txt", tmp_path / "f.npy", **kw)
    side = tmp_path / "f.npy.json"
    side.write_bytes(side.read_bytes()[:kept])
    how = "empty" if kept == 0 else rf"cut short \({kept} B\)"
    with pytest.raises(ConfigError, match=rf"^--out {out}: its sidecar f\.npy\.json is {how}, too little to tell "
                                          r"whether mme embed wrote it \(a full disk, a copy stopped half-way\); "
                                          r"give --overwrite to replace f\.npy, f\.npy\.json, or another --out$"):
        embed(ckpt, root / "list.txt", out, **kw)
    assert len(side.read_bytes()) == kept
    embed(ckpt, root / "list.txt", out, overwrite=True, **kw)
    assert json.loads(side.read_text())["job"]


def test_float32_rows_of_the_users_beside_their_own_json_lines_are_not_taken_for_mme_embeds(own_root, tmp_path,
                                                                                              monkeypatch, caplog):
    """--out feats.npy replaced the user's own feats.npy (float32 rows) and feats.npy.json (JSON Lines, which
    json.loads refuses) without --overwrite, called "damaged, beside the features mme embed wrote". A sidecar that
    does not parse is mme embed's only where it begins as mme embed writes one: the user's files are refused, kept;
    mme embed's own sidecar cut short, the finished one or the unfinished one of a stopped write, is made again."""
    root, ckpt, loads = own_root
    (root / "list.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    out, side, kw = tmp_path / "feats.npy", tmp_path / "feats.npy.json", dict(stride=2, root=str(root),
                                                                             num_workers=0, progress=False)
    np.save(out, np.random.default_rng(0).random((100, 768), dtype=np.float32))
    side.write_text('{"video": "a.mp4", "label": 0}\n{"video": "b.mp4", "label": 1}\n')
    mine = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=rf"^--out {out}: already holds files mme embed did not write \(feats\.npy, "
                                          r"feats\.npy\.json\); give --overwrite to replace them, or another --out$"):
        embed(ckpt, root / "list.txt", out, **kw)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == mine and loads == []
    assert "making them again" not in caplog.text
    x = read_features(embed(ckpt, root / "list.txt", out, overwrite=True, **kw))[0]

    for stopped in (False, True):
        if stopped:
            with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
                _kill_before_the_finished_sidecar(m, side)
                embed(ckpt, root / "list.txt", out, clips=2, **kw)  # another job, written again
            shutil.rmtree(tmp_path / "feats.npy.partial")
            assert json.loads(side.read_text())["unfinished"]
        side.write_bytes(side.read_bytes()[:60])
        caplog.clear()
        loads.clear()
        np.testing.assert_array_equal(read_features(embed(ckpt, root / "list.txt", out, **kw))[0], x)
        assert f"embed: {side}: damaged (" in caplog.text and sorted(loads) == [0, 1]


@pytest.mark.parametrize("recorded", [1, 2, 3, 4, 5])
def test_features_read_by_an_earlier_reading_rule_are_made_again(recorded, own_root, tmp_path, monkeypatch, caplog):
    """Features cached by an mme whose test views started elsewhere (rounded, not rounded down) or that gave a still
    picture a row were reused as up to date by the later rule, and a stopped job of it was resumed, mixing rows of
    both: their job records no reading version (1), 2 where the opencv and decord backends gave a still picture
    of a demuxer outside a short list a row, 3 where an ICO or a still AVIF had one, 4 where segment views' frames
    were a float product's (a frame early for some), or 5 where pyav refused a file of several frames opened by a
    picture demuxer, an animated AVIF was read as its still image and a GIF of one frame had a row. Each is named as
    read by an earlier rule and made again."""
    import logging
    import re

    caplog.set_level(logging.INFO, logger="mme")
    root, ckpt, loads = own_root
    kw = dict(stride=2, root=str(root), num_workers=0, progress=False)
    earlier = rf" read its videos by an earlier rule \(reading version {recorded}, now {READING_VERSION}: "

    def as_recorded(job: dict) -> dict:
        """``job`` as an earlier mme recorded it: reading version 1 recorded none."""
        return {k: v for k, v in job.items() if k != "reading"} | ({} if recorded == 1 else {"reading": recorded})

    out = embed(ckpt, root / "list.txt", tmp_path / "f.npy", **kw)
    fresh = read_features(out)[0]
    side = tmp_path / "f.npy.json"
    info = as_recorded(json.loads(side.read_text()))
    info["job"] = as_recorded(info["job"])
    side.write_text(json.dumps(info))
    loads.clear()
    embed(ckpt, root / "list.txt", out, **kw)
    assert sorted(loads) == list(range(8)) and re.search(f"embed: {re.escape(str(out))}{earlier}", caplog.text)
    np.testing.assert_array_equal(read_features(out)[0], fresh)

    stopped = tmp_path / "g.npy"
    with monkeypatch.context() as m:
        _kill_before_assembly(m)
        with pytest.raises(KeyboardInterrupt):
            embed(ckpt, root / "list.txt", stopped, **kw)
    job = tmp_path / "g.npy.partial" / "job.json"
    job.write_text(json.dumps(as_recorded(json.loads(job.read_text()))))
    loads.clear()
    embed(ckpt, root / "list.txt", stopped, **kw)
    assert sorted(loads) == list(range(8))
    assert re.search(f"embed: {re.escape(str(tmp_path / 'g.npy.partial'))}: the stopped job there{earlier}",
                     caplog.text)
    np.testing.assert_array_equal(read_features(stopped)[0], fresh)


@pytest.mark.pinned  # no run
def test_features_read_by_a_later_mmes_reading_rule_are_said_to_be_so():
    """A job recorded by a later mme (reading version above this one's) was said to have read its videos by an
    earlier rule; it is a later one, and a version of no order another one."""
    def said(version):
        return _read_otherwise({"reading": version, "backend": "pyav"})

    assert said(READING_VERSION) is None
    assert said(READING_VERSION + 1).startswith(f"read its videos by a later rule (reading version "
                                                f"{READING_VERSION + 1}, now {READING_VERSION}: ")
    assert said(1).startswith("read its videos by an earlier rule (reading version 1, ")
    assert said("x").startswith("read its videos by another rule (reading version x, ")


def test_features_are_made_again_for_a_reading_rule_changed_for_their_backend_alone(own_root, tmp_path, monkeypatch):
    """A reading version that changed one backend's reading alone (READING_BACKENDS) made the features and stopped
    jobs of every backend be made again, where a training run's resume took the change as another backend's
    (reading_changed): they are kept, and made again where the change was of their backend's reading."""
    import mme.eval.features
    import mme.eval.testing

    root, ckpt, loads = own_root
    kw = dict(stride=2, root=str(root), num_workers=0, progress=False)
    out, stopped = embed(ckpt, root / "list.txt", tmp_path / "f.npy", **kw), tmp_path / "g.npy"
    with monkeypatch.context() as m:
        _kill_before_assembly(m)
        with pytest.raises(KeyboardInterrupt):
            embed(ckpt, root / "list.txt", stopped, **kw)
    backend = json.loads((tmp_path / "f.npy.json").read_text())["job"]["backend"]
    now = READING_VERSION + 1
    for module in (mme.eval.testing, mme.eval.features):
        monkeypatch.setattr(module, "READING_VERSION", now)
    monkeypatch.setitem(mme.eval.testing.READING_BACKENDS, now, tuple({"pyav", "opencv"} - {backend}))
    for path, loaded in ((out, []), (stopped, [2, 5])):  # (a resumed job tries its failed videos again)
        loads.clear()
        embed(ckpt, root / "list.txt", path, **kw)
        assert sorted(loads) == loaded, path
    monkeypatch.setitem(mme.eval.testing.READING_BACKENDS, now, (backend,))
    loads.clear()
    embed(ckpt, root / "list.txt", out, **kw)
    assert sorted(loads) == list(range(8))
    assert json.loads((tmp_path / "f.npy.json").read_text())["job"]["reading"] == now


def test_token_grids_of_an_earlier_job_are_not_read_as_a_later_jobs(setup, tmp_path):
    """A job without --tokens left the .tokens.npy of an earlier one on the same --out (another encoder), and
    read_tokens returned those grids beside the later features. They are removed, and read_tokens goes by the
    sidecar, so a token file left by an earlier mme is refused too."""
    root, ckpt = setup
    torch.manual_seed(1)
    other = save_pretrained(VisionTransformer(ModelConfig(**CFG)), tmp_path / "other")
    out, kw = tmp_path / "f.npy", dict(stride=2, root=str(root), num_workers=0, progress=False)
    embed(ckpt, root / "list.txt", out, tokens=True, **kw)
    grids = (tmp_path / "f.tokens.npy").read_bytes()
    embed(other, root / "list.txt", out, **kw)
    assert not (tmp_path / "f.tokens.npy").exists()
    (tmp_path / "f.tokens.npy").write_bytes(grids)
    with pytest.raises(DataError, match=rf"{out}: no token grids: embedded without --tokens, says its f\.npy\.json"):
        read_tokens(out)


@pytest.mark.pinned  # no run
def test_a_list_that_is_empty_or_not_utf8_is_read_as_a_list(tmp_path):
    """An empty list, or one saved in Latin-1, was taken for a single video (then: all 1 videos failed); a folder
    is named as one."""
    cfg = ModelConfig(**CFG)
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("vidéo.mp4 0\n".encode("latin-1"))
    (tmp_path / "latin1").write_bytes("vidéo.mp4 0\n".encode("latin-1"))
    (tmp_path / "empty").write_bytes(b"")
    for name, reason in (("empty.txt", "no videos listed"), ("empty", "no videos listed"),
                         ("latin1.txt", "not UTF-8 text"), ("latin1", "not UTF-8 text")):
        with pytest.raises(DataError, match=rf"list file {tmp_path / name}: {reason}"):
            build_test_set(tmp_path / name, cfg, clips=1, crops=1)
    (tmp_path / "clips.mp4").mkdir()  # a folder named like a video: said to be a folder (before: 'no such file')
    with pytest.raises(DataError, match=rf"{tmp_path / 'clips.mp4'}: a folder, not a list file or video"):
        build_test_set(tmp_path / "clips.mp4", cfg, clips=1, crops=1)


@pytest.mark.pinned  # no run
def test_a_yuv4mpeg_video_is_read_as_a_video(tmp_path):
    """A .y4m (a text header, then raw pixels: no NUL byte where they are bright) was read as a list file."""
    frames = np.full((8, 32, 32, 3), 200, np.uint8)
    for name in ("clip.y4m", "clip.yuv4mpeg"):
        with av.open(str(tmp_path / name), "w", format="yuv4mpegpipe") as c:
            s = c.add_stream("wrapped_avframe", rate=25)
            s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
            for f in frames:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        assert b"\0" not in (tmp_path / name).read_bytes()[:4096]
        test_set = build_test_set(tmp_path / name, ModelConfig(**CFG), clips=1, crops=1)
        assert len(test_set) == 1 and test_set.entries[0].path == str(tmp_path / name)


@pytest.mark.pinned  # every run --precision fp32
def test_the_clip_of_a_file_that_records_none_is_given_with_img_size_and_num_frames(setup, tmp_path, capsys):
    """An original .pth records no clip: mme embed / mme probe took 16 frames of 224 px, with no way to give
    another, and a file whose position table says otherwise was refused naming --img-size / --num-frames, which they
    did not have. They have them now: the encoder built for that clip embeds as the trained one."""
    from mme.cli import main
    from mme.models.vit import sincos_table

    root, _ = setup
    cfg = ModelConfig(**{**CFG, "embed_dim": 64, "num_heads": 1})  # (1 head of 64: what a file without a count takes)
    torch.manual_seed(1)
    enc = VisionTransformer(cfg).eval()
    table = {"encoder.pos_embed": sincos_table(cfg.num_tokens, 64)[None]}  # 8 rows: 4 frames of 32 px
    torch.save({"model": {**{f"encoder.{k}": v for k, v in enc.state_dict().items()}, **table}}, tmp_path / "o.pth")
    args = ["embed", str(tmp_path / "o.pth"), str(root / "v0.mp4"), "--out", str(tmp_path / "f.npy"), "--workers",
            "0", "--precision", "fp32"]
    assert main(args) == 1
    assert capsys.readouterr().err.endswith("o.pth: its position table has 8 rows, one per token, but 16 frames of "
                                            "224x224 make 1568 tokens: give the clip it was trained on (--num-frames "
                                            "/ --img-size)\n")
    assert main([*args, "--img-size", "32", "--num-frames", "4"]) == 0
    view = build_test_set(root / "v0.mp4", cfg, clips=1, crops=1, stride=4)[0]["video"]
    with torch.no_grad():
        assert np.allclose(np.load(tmp_path / "f.npy"), enc(normalize_clip(view)).mean(1).numpy(), rtol=0, atol=1e-6)
    assert json.loads((tmp_path / "f.npy.json").read_text())["job"]["img_size"] == 32


def _classifier_with_a_telling_fc_norm(out: Path) -> tuple[ModelConfig, torch.nn.Module]:
    """A fine-tuned classifier saved at ``out`` whose fc_norm is far from the identity (so features with and without
    it differ); 1 head of 64, what a file without a count takes."""
    from mme.models.classifier import VideoClassifier

    cfg = ModelConfig(**{**CFG, "embed_dim": 64, "num_heads": 1})
    torch.manual_seed(2)
    clf = VideoClassifier(cfg, num_classes=3, head_init_scale=1.0).eval()
    with torch.no_grad():
        clf.fc_norm.weight.uniform_(0.5, 2.0)
        clf.fc_norm.bias.uniform_(-1.0, 1.0)
    save_pretrained(clf, out)
    return cfg, clf


@pytest.mark.pinned  # every run precision fp32
def test_the_features_of_a_classifier_are_what_its_head_sees(setup, tmp_path):
    """The features of a fine-tuned classifier were the mean of its encoder's tokens, without the fc_norm its head
    sees (its encoder has no final LayerNorm): rows of other norms and means than the head's inputs. Each view's
    mean now goes through fc_norm (VideoMAE's forward_features of a mean-pooled classifier), then the views are
    averaged; ours and an original .pth alike."""
    from mme.models import convert

    root, _ = setup
    cfg, clf = _classifier_with_a_telling_fc_norm(tmp_path / "ours")
    torch.save({"module": convert.rename(clf.state_dict(), convert.invert(convert.FINETUNED))[0]}, tmp_path / "o.pth")
    views = build_test_set(root / "list.txt", cfg, clips=2, crops=1, stride=2, root=str(root))
    with torch.no_grad():
        want = np.stack([clf.forward_features(normalize_clip(views[i]["video"])).mean(0).numpy() for i in (0, 1)])
    for name in ("ours", "o.pth"):
        out = embed(tmp_path / name, root / "list.txt", tmp_path / f"{name}.npy", clips=2, stride=2, root=str(root),
                    num_workers=0, precision="fp32", img_size=32, num_frames=4, progress=False)
        assert np.allclose(np.load(out)[:2], want, rtol=0, atol=1e-5), name
        assert json.loads(Path(f"{out}.json").read_text())["job"]["fc_norm"] is True


@pytest.mark.pinned  # every run precision fp32
def test_extract_features_of_a_classifier_with_its_pooled_norm_are_mme_embeds(setup, tmp_path):
    """mme embed put a fine-tuned classifier's token means through its fc_norm, while the Python route,
    extract_features of its encoder, had no way to: other features from the same file (off by 3.0). extract_features
    takes the fc_norm as ``pooled_norm`` (``Checkpoint.pooled_norm``), and gives mme embed's features with it."""
    from mme.eval.features import extract_features
    from mme.models.checkpoint import build_model, read_checkpoint

    root, _ = setup
    cfg, clf = _classifier_with_a_telling_fc_norm(tmp_path / "ours")
    out = embed(tmp_path / "ours", root / "list.txt", tmp_path / "f.npy", clips=2, stride=2, root=str(root),
                num_workers=0, precision="fp32", progress=False)
    ck = read_checkpoint(tmp_path / "ours", encoder_only=True)
    views = build_test_set(root / "list.txt", cfg, clips=2, crops=1, stride=2, root=str(root))
    got = extract_features(build_model(ck), views, precision="fp32", progress=False, pooled_norm=ck.pooled_norm)
    assert got.valid.sum() >= 2 and np.array_equal(got.x.numpy(), np.load(out), equal_nan=True)
    raw = extract_features(build_model(ck), views, precision="fp32", progress=False).x.numpy()
    assert np.nanmax(np.abs(raw - np.load(out))) > 0.1  # (the token means alone: not the head's inputs)


@pytest.mark.pinned  # refused before a precision is chosen
@pytest.mark.parametrize("flags, said", [
    (["--backend", "decord"], "--backend decord: the 'decord' backend is not installed (pip install decord)"),
    (["--backend", "pyav-cuda"], "--backend pyav-cuda: this PyAV's FFmpeg has no CUDA device type (it has [])"),
    (["--device", "cuda"], "--device: 'cuda' requested but torch sees no CUDA device")])
@pytest.mark.parametrize("command", ["embed", "probe"])
def test_a_backend_or_device_this_machine_lacks_is_one_line_naming_the_flag(command, flags, said, setup, tmp_path,
                                                                            monkeypatch, capsys):
    """``mme embed --device cuda`` without one said ``train.device: ...``, ``--backend pyav-cuda``
    ``data.backend=pyav-cuda: ...``, keys these commands do not have; ``--backend decord`` without decord failed
    every video, then stopped: "all N videos failed". Each is now one line naming the command's flag, before any
    work (no output folder made)."""
    import importlib.util

    from mme.cli import main
    from mme.data import pyav_reader

    root, ckpt = setup
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "decord" else
                        find_spec(name, *args))
    monkeypatch.setattr(pyav_reader, "hwdevices_available", lambda: [])
    monkeypatch.setattr(pyav_reader, "_CUDA_DECODERS", {})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    args = {"embed": [str(ckpt), str(root / "list.txt"), "--out", str(out / "f.npy")],
            "probe": [str(ckpt), "--train", str(root / "list.txt"), "--out", str(out)]}[command]
    assert main([command, *args, "--root", str(root), "--workers", "0", *flags]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"mme {command}: error: {said}" and "failed=" not in err
    assert not out.exists()


@pytest.mark.pinned  # refused before a precision is chosen
@pytest.mark.parametrize("command", ["embed", "probe"])
def test_an_index_folder_beside_a_backend_that_keeps_no_index_is_refused_naming_both(command, setup, tmp_path,
                                                                                     capsys):
    """``data.index_dir`` / ``--index-dir`` went to the PyAV reader alone: with opencv or decord it was taken,
    recorded and never written or read, without a word. Refused in one line, before any work."""
    from mme.cli import main
    from mme.config import load_config
    from mme.train.config import PretrainConfig

    root, ckpt = setup
    index = tmp_path / "index"
    for backend in ("opencv", "decord"):
        with pytest.raises(ConfigError) as e:
            load_config(PretrainConfig, "tiny_cpu_pixel", [f"data.backend={backend}", f"data.index_dir={index}"])
        assert str(e.value) == (f"data.index_dir={index} with data.backend={backend}: only the PyAV reader (pyav, "
                                "pyav-cuda) keeps frame indices; leave out data.index_dir or read with pyav")
    assert load_config(PretrainConfig, "tiny_cpu_pixel", ["data.backend=pyav-cuda", f"data.index_dir={index}"])
    out = tmp_path / "out"
    args = {"embed": [str(ckpt), str(root / "list.txt"), "--out", str(out / "f.npy")],
            "probe": [str(ckpt), "--train", str(root / "list.txt"), "--out", str(out)]}[command]
    assert main([command, *args, "--root", str(root), "--backend", "opencv", "--index-dir", str(index)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mme {command}: error: --index-dir {index} with --backend opencv: only the PyAV reader (pyav, pyav-cuda) "
        "keeps frame indices; leave out --index-dir or read with pyav")
    assert not out.exists() and not index.exists()


def test_clips_are_taken_at_the_stride_of_the_run_that_made_the_checkpoint(setup, tmp_path):
    """``mme embed`` / ``mme probe`` took clips at stride 4 whatever the run's: the tiny recipes train at 2, so the
    README's probe saw clips twice as long in time as the encoder was trained on."""
    import dataclasses

    root, ckpt = setup
    model = VisionTransformer(ModelConfig(**CFG))
    config = {"model": dataclasses.asdict(model.cfg), "data": {"stride": 2}}
    torch.save({"model": model.state_dict(), "config": config}, tmp_path / "run.pt")
    kw = dict(num_workers=0, progress=False)
    for source, expected in ((tmp_path / "run.pt", 2), (ckpt, 4)):  # a run's stride; an export records none
        out = embed(source, root / "v0.mp4", tmp_path / f"{expected}.npy", **kw)
        assert read_features(out)[3]["stride"] == expected
    assert read_features(embed(tmp_path / "run.pt", root / "v0.mp4", tmp_path / "3.npy", stride=3, **kw))[3][
        "stride"] == 3


def test_an_export_that_records_no_run_is_embedded_at_the_default_stride_with_a_warning(setup, tmp_path, caplog):
    """An export of a stride-2 run made before exports recorded their run (no ``run`` / ``mme_run``) was embedded
    at stride 4, said as "stride 4 (default)" in an info line (features off by up to 0.155 from its run's clips):
    a warning now says that the file records no run and to give --stride or --segments; it names the orientation
    taken on trust too (was an info line), as ``mme viz`` does (test_viz.py)."""
    import dataclasses
    import logging

    from mme.models.export import export

    caplog.set_level(logging.INFO, logger="mme")
    root, _ = setup
    model = VisionTransformer(ModelConfig(**CFG))
    config = {"model": dataclasses.asdict(model.cfg), "data": {"stride": 2}}
    torch.save({"model": model.state_dict(), "config": config}, tmp_path / "run.pt")
    kw = dict(num_workers=0, progress=False)
    recorded = export(tmp_path / "run.pt", tmp_path / "recorded", "mme")
    assert read_features(embed(recorded, root / "v0.mp4", tmp_path / "recorded.npy", **kw))[3]["stride"] == 2
    assert "records no run" not in caplog.text
    for fmt, key in (("mme", "run"), ("hf", "mme_run")):
        exported = export(tmp_path / "run.pt", tmp_path / fmt, fmt)
        meta = json.loads((exported / "config.json").read_text())
        assert meta.pop(key)["data"]["stride"] == 2
        (exported / "config.json").write_text(json.dumps(meta))  # as an export of an earlier mme
        caplog.clear()
        assert read_features(embed(exported, root / "v0.mp4", tmp_path / f"{fmt}.npy", **kw))[3]["stride"] == 4
        (said,) = [r for r in caplog.records if "records no run" in r.getMessage()]
        assert said.levelno == logging.WARNING
        assert said.getMessage().startswith(f"embed: {exported} (")
        assert said.getMessage().endswith("records no run (an export made before exports recorded their run's clips, "
                                          "or a file made otherwise than by an mme run), so its run may have had "
                                          "other settings than these, taken on trust: stride 4; orientation coded; "
                                          "backend pyav; give them with --stride or --segments, --orientation, "
                                          "--backend")
        assert "embed: orientation coded (default)" not in caplog.text  # said in the warning
        caplog.clear()
        embed(exported, root / "v0.mp4", tmp_path / f"{fmt}2.npy", segments=True, orientation="coded", backend="pyav",
              **kw)
        assert "records no run" not in caplog.text


def test_clips_are_sampled_by_segments_where_the_run_that_made_the_checkpoint_did(setup, tmp_path, caplog):
    """``mme embed`` / ``mme probe`` took a run of TSN segments (``data.sampling=segments``, SSv2's) at stride 4,
    "embed: stride 4 (default)" in the log, while ``task.eval_only`` sampled its segments; its exports alike. A
    ``--stride`` given still wins."""
    import dataclasses
    import logging

    from mme.models.export import export

    caplog.set_level(logging.INFO, logger="mme")
    root, _ = setup
    model = VisionTransformer(ModelConfig(**CFG))
    config = {"model": dataclasses.asdict(model.cfg), "data": {"sampling": "segments", "stride": 2}}
    torch.save({"model": model.state_dict(), "config": config}, tmp_path / "run.pt")
    kw = dict(num_workers=0, progress=False)
    asked = read_features(embed(tmp_path / "run.pt", root / "v0.mp4", tmp_path / "asked.npy", segments=True, **kw))
    for source in (tmp_path / "run.pt", export(tmp_path / "run.pt", tmp_path / "exp", "mme")):
        x, _, _, meta = read_features(embed(source, root / "v0.mp4", tmp_path / f"{source.name}.npy", **kw))
        assert (meta["segments"], meta["stride"]) == (True, None), source
        np.testing.assert_array_equal(x, asked[0])
    assert "embed: clips by TSN segments (its run's data.sampling)" in caplog.text
    assert "stride 4 (default)" not in caplog.text
    meta = read_features(embed(tmp_path / "run.pt", root / "v0.mp4", tmp_path / "3.npy", stride=3, **kw))[3]
    assert (meta["segments"], meta["stride"]) == (False, 3)
    with pytest.raises(ConfigError, match="^--segments and --stride 3: TSN segments take no stride"):
        embed(tmp_path / "run.pt", root / "v0.mp4", tmp_path / "both.npy", segments=True, stride=3, **kw)
    # features of segments an earlier mme recorded with the stride it never used are still this job's
    side = tmp_path / "asked.npy.json"
    info = json.loads(side.read_text())
    side.write_text(json.dumps({**info, "stride": 4, "job": {**info["job"], "stride": 4}}))
    caplog.clear()
    embed(tmp_path / "run.pt", root / "v0.mp4", tmp_path / "asked.npy", segments=True, **kw)
    assert "is up to date" in caplog.text
    assert read_features(tmp_path / "asked.npy")[3]["stride"] is None  # said as what it is (mme probe copies it)
    # mme viz draws one strided clip of such a run: the default stride, said as such (was "stride 4 (default)")
    from mme.models.checkpoint import read_checkpoint

    assert read_checkpoint(tmp_path / "run.pt", encoder_only=True).run_setting(None, "stride", "viz") == 4
    assert "viz: stride 4 (default; its run sampled TSN segments, which take none)" in caplog.text


def test_an_index_folder_lets_the_views_of_a_long_video_seek(setup, tmp_path, monkeypatch):
    """A video's first read decodes from its start: the test views of a long video (a lecture) decoded it whole
    for every item. With `--index-dir` of a `mme check`, they seek, and the features are the same."""
    from mme.cli import main

    _, ckpt = setup
    frames = np.random.default_rng(0).integers(0, 256, (300, 40, 40, 3), np.uint8)
    video = write_keyint_video(tmp_path / "long.mp4", frames, "50")
    (tmp_path / "list.txt").write_text("long.mp4\n")
    assert main(["check", str(tmp_path / "list.txt"), "--root", str(tmp_path), "--out", str(tmp_path / "check.json"),
                 "--index-dir", str(tmp_path / "index")]) == 0
    decoded = DecodedFrames(monkeypatch)
    rows, counts = [], []
    for name, more in (("plain", {}), ("indexed", {"index_dir": str(tmp_path / "index")})):
        decoded.count = 0
        rows.append(read_features(embed(ckpt, video, tmp_path / f"{name}.npy", clips=3, stride=2, num_workers=0,
                                        progress=False, **more))[0])
        counts.append(decoded.count)
    np.testing.assert_array_equal(rows[0], rows[1])
    assert counts[1] < counts[0] / 2, counts  # 3 clips of 7 frames, from keyframes 50 apart (was: from frame 0)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match="--index-dir .*a_file: is a file"):  # (was named data.index_dir)
        embed(ckpt, video, tmp_path / "x.npy", index_dir=str(tmp_path / "a_file"), num_workers=0, progress=False)


def test_a_read_only_index_folder_is_read_by_embed_and_said_once(setup, tmp_path, caplog, monkeypatch, read_only):
    """`mme embed --index-dir DIR` (and `mme probe`) of a folder `mme check` filled, then mounted read-only, was
    refused: `--index-dir DIR: cannot be written (Read-only file system)`, with `--backend` or without. Now its
    indices are read (no video indexed again), the features are those of a run without it, and it is said once."""
    import logging

    from mme import cli
    from mme.data import pyav_reader

    root, ckpt = setup
    (tmp_path / "ok.txt").write_text("v0.mp4 0\nv1.mp4 1\n")
    index = tmp_path / "index"
    assert cli.main(["check", str(tmp_path / "ok.txt"), "--root", str(root), "--out", str(tmp_path / "check.json"),
                     "--index-dir", str(index), "--min-frames", "1"]) == 0
    read_only(index)
    made, make = [], pyav_reader._make_index
    monkeypatch.setattr(pyav_reader, "_make_index", lambda path: made.append(path) or make(path))
    plain = ["embed", str(ckpt), str(tmp_path / "ok.txt"), "--root", str(root), "--workers", "0"]
    with caplog.at_level(logging.WARNING, logger="mme"):
        for name, more in (("given", ["--backend", "pyav"]), ("its_runs", [])):  # (checked before the read, after)
            pyav_reader._pyav_index.cache_clear()  # (the check's, kept by this process)
            assert cli.main([*plain, "--index-dir", str(index), "--out", str(tmp_path / f"{name}.npy"), *more]) == 0
    assert [r.getMessage() for r in caplog.records if "cannot" in r.getMessage()] == [
        f"--index-dir {index} cannot be written (Read-only file system): the frame indices it holds are read, and "
        "those it lacks are made in memory by each process, not kept there"]
    assert made == []
    assert cli.main([*plain, "--out", str(tmp_path / "plain.npy")]) == 0
    for name in ("given", "its_runs"):
        np.testing.assert_array_equal(read_features(tmp_path / f"{name}.npy")[0],
                                      read_features(tmp_path / "plain.npy")[0])


def test_an_index_folder_that_holds_none_of_the_embedded_videos_is_said(setup, tmp_path, caplog):
    """`mme embed --index-dir` of a folder `mme check` filled for the videos at their checked root, embedded through
    another spelling of it (a symlinked root): every video was indexed again at its first read, unsaid."""
    from mme.cli import main

    root, ckpt = setup
    index, alias = tmp_path / "index", tmp_path / "alias"
    alias.symlink_to(root)
    assert main(["check", str(root / "list.txt"), "--root", str(root), "--out", str(tmp_path / "check.json"),
                 "--index-dir", str(index)]) == 1  # (lines 2 and 5 cannot be read)
    for given, said in ((root, False), (alias, True)):
        caplog.clear()
        assert main(["embed", str(ckpt), str(root / "list.txt"), "--root", str(given), "--index-dir", str(index),
                     "--out", str(tmp_path / f"{said}.npy"), "--workers", "0"]) == 0
        warned = [r.getMessage() for r in caplog.records if "holds the frame index of none" in r.getMessage()]
        assert len(warned) == said, warned
        if said:
            assert warned[0].startswith(f"--index-dir {index} holds the frame index of none of the 8 videos of ")
    earlier = tmp_path / "earlier"  # an earlier mme's indices alone: no index of this one's yet, and said so
    (earlier / "v1" / "ab").mkdir(parents=True)
    (earlier / "v1" / "ab" / "cd.json").write_text("{}")
    caplog.clear()
    assert main(["embed", str(ckpt), str(root / "list.txt"), "--root", str(root), "--index-dir", str(earlier),
                 "--out", str(tmp_path / "earlier.npy"), "--workers", "0"]) == 0
    assert [r.getMessage() for r in caplog.records if "holds no frame index yet" in r.getMessage()] == [
        f"--index-dir {earlier} holds no frame index yet: `mme check {root / 'list.txt'} --root {root} --index-dir "
        f"{earlier}` fills it"]


def test_frames_are_read_in_the_orientation_of_the_run_that_made_the_checkpoint(setup, tmp_path):
    """A run of ``data.orientation=display`` learned a phone video's frames turned; ``mme embed`` / ``probe`` read
    them as coded unless told (other features), and exports did not record it."""
    import dataclasses

    from mme.models.export import export

    root, _ = setup
    phone = write_video(tmp_path / "phone.mp4", _moving(1), display=[0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30])
    model = VisionTransformer(ModelConfig(**CFG))
    config = {"model": dataclasses.asdict(model.cfg), "data": {"stride": 2, "orientation": "display"}}
    torch.save({"model": model.state_dict(), "config": config}, tmp_path / "run.pt")
    exported = export(tmp_path / "run.pt", tmp_path / "exported", "safetensors")
    kw = dict(num_workers=0, progress=False)
    rows = {name: read_features(embed(source, phone, tmp_path / f"{name}.npy", **kw, **given))
            for name, source, given in (("run", tmp_path / "run.pt", {}), ("export", exported, {}),
                                        ("display", tmp_path / "run.pt", {"orientation": "display"}),
                                        ("coded", tmp_path / "run.pt", {"orientation": "coded"}))}
    assert [rows[n][3]["orientation"] for n in rows] == ["display", "display", "display", "coded"]
    assert np.array_equal(rows["run"][0], rows["display"][0]) and np.array_equal(rows["export"][0], rows["run"][0])
    assert not np.allclose(rows["coded"][0], rows["display"][0])


@pytest.mark.pinned  # every run precision fp32 (OpenCV's colour conversion: 3.5 s of CPU at each video's open)
def test_frames_are_read_with_the_backend_of_the_run_that_made_the_checkpoint(setup, tmp_path, caplog):
    """A run of ``data.backend=opencv`` learned an HDR phone video's frames as OpenCV converts their colours; ``mme
    embed`` / ``probe`` read them with pyav unless told (other features, said nowhere), and exports did not record
    it. Now the run's backend is the default, said; another one given is warned of."""
    import dataclasses

    from mme.models.export import export

    hdr = write_hdr_video(tmp_path / "hlg.mp4", np.stack([texture(40, 40, seed=i) for i in range(12)]))
    model = VisionTransformer(ModelConfig(**CFG))
    config = {"model": dataclasses.asdict(model.cfg), "data": {"stride": 2, "backend": "opencv"}}
    torch.save({"model": model.state_dict(), "config": config}, tmp_path / "run.pt")
    exported = export(tmp_path / "run.pt", tmp_path / "exported", "safetensors")
    kw = dict(num_workers=0, progress=False, precision="fp32")
    with caplog.at_level("INFO"):
        rows = {name: read_features(embed(source, hdr, tmp_path / f"{name}.npy", **kw, **given))
                for name, source, given in (("run", tmp_path / "run.pt", {}), ("export", exported, {}),
                                            ("opencv", tmp_path / "run.pt", {"backend": "opencv"}),
                                            ("pyav", tmp_path / "run.pt", {"backend": "pyav"}))}
    assert [rows[n][3]["backend"] for n in rows] == ["opencv", "opencv", "opencv", "pyav"]  # (was pyav, pyav, ...)
    assert np.array_equal(rows["run"][0], rows["opencv"][0]) and np.array_equal(rows["export"][0], rows["run"][0])
    assert not np.allclose(rows["pyav"][0], rows["opencv"][0])
    assert caplog.text.count("embed: backend opencv (its run's data.backend)") == 2
    warned = [r.message for r in caplog.records if r.levelname == "WARNING" and r.message.startswith("embed:")]
    assert warned == ["embed: --backend pyav decodes other frames than its run's data.backend opencv (colours, of HDR "
                      "and 10-bit files above all), so its clips are not those the model was trained on; leave "
                      "--backend out to read them as its run did"]


def test_a_run_of_pyav_cuda_is_read_with_pyav_where_cuda_decoding_is_not_available_said_once(setup, tmp_path,
                                                                                                  monkeypatch, caplog):
    """A run of ``data.backend=pyav-cuda`` embedded where FFmpeg cannot decode on CUDA was said twice, the lines
    contradicting each other (``backend pyav-cuda (its run's data.backend)``, then ``backend pyav, ...``): the backend
    is now decided before one line says it; the features are pyav's."""
    import dataclasses

    from mme.data import pyav_reader

    root, _ = setup
    monkeypatch.setattr(pyav_reader, "hwdevices_available", lambda: [])
    monkeypatch.setattr(pyav_reader, "_CUDA_DECODERS", {})
    model = VisionTransformer(ModelConfig(**CFG))
    config = {"model": dataclasses.asdict(model.cfg), "data": {"stride": 2, "backend": "pyav-cuda"}}
    torch.save({"model": model.state_dict(), "config": config}, tmp_path / "run.pt")
    kw = dict(num_workers=0, progress=False)
    with caplog.at_level("INFO"):
        cuda = read_features(embed(tmp_path / "run.pt", root / "v0.mp4", tmp_path / "run.npy", **kw))
    said = [r.message for r in caplog.records if "backend" in r.message and "embed: " in r.message]
    assert said == ["embed: backend pyav, its run's pyav-cuda decoder on the CPU (its run's data.backend=pyav-cuda: "
                    "this PyAV's FFmpeg has no CUDA device type (it has []))"]
    pyav = read_features(embed(tmp_path / "run.pt", root / "v0.mp4", tmp_path / "pyav.npy", backend="pyav", **kw))
    assert cuda[3]["backend"] == "pyav" and np.array_equal(cuda[0], pyav[0])


@pytest.mark.parametrize("backend, flags, said", [
    ("decord", [], "its run's data.backend=decord: the 'decord' backend is not installed (pip install decord); "
                   "--backend pyav reads its videos anyway, other frames than its run's (warned)"),
    ("opencv", ["--index-dir", "{index}"], "--index-dir {index} with its run's data.backend=opencv: only the PyAV "
                                           "reader (pyav, pyav-cuda) keeps frame indices; leave out --index-dir or "
                                           "read with pyav")])
@pytest.mark.parametrize("command", ["embed", pytest.param("probe", marks=pytest.mark.pinned)])  # (probe refused
# before a precision is chosen; embed chooses its precision first)
def test_a_run_backend_refused_here_says_what_reads_it_and_makes_no_index_folder(command, backend, flags, said, setup,
                                                                                  tmp_path, monkeypatch, capsys,
                                                                                  caplog):
    """A checkpoint of a decord run where decord is not installed stopped without saying ``--backend pyav`` reads
    its videos anyway; one of an opencv run with ``--index-dir`` was refused after the index folder was made and
    warned to hold no frame index yet. Now the refusal says it, and the folder is made (and warned of) only once
    the run's backend is known to keep one."""
    import dataclasses
    import importlib.util

    from mme.cli import main

    root, _ = setup
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "decord" else
                        find_spec(name, *args))
    model = VisionTransformer(ModelConfig(**CFG))
    config = {"model": dataclasses.asdict(model.cfg), "data": {"stride": 2, "backend": backend}}
    torch.save({"model": model.state_dict(), "config": config}, tmp_path / "run.pt")
    out, index = tmp_path / "out", tmp_path / "index"
    args = {"embed": [str(tmp_path / "run.pt"), str(root / "list.txt"), "--out", str(out / "f.npy")],
            "probe": [str(tmp_path / "run.pt"), "--train", str(root / "list.txt"), "--out", str(out)]}[command]
    flags = [flag.format(index=index) for flag in flags]
    assert main([command, *args, "--root", str(root), "--workers", "0", *flags]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"mme {command}: error: " + said.format(index=index)
    if flags and command == "embed":  # (the command line removes the folders it made where it fails; embed() not)
        with pytest.raises(ConfigError, match="only the PyAV reader"):
            embed(tmp_path / "run.pt", root / "list.txt", out / "f.npy", root=str(root), num_workers=0,
                  index_dir=str(index))
    assert "holds no frame index" not in caplog.text and not out.exists() and not index.exists()


def test_a_command_that_joined_the_process_group_leaves_it(setup, tmp_path, monkeypatch):
    """`mme embed` and `mme probe` under torchrun joined the process group and left it up at exit, where gloo's
    teardown sometimes aborted a rank; the command now leaves the group it joined (a group of one rank here: a
    torchrun launch cannot start a second group in one process reliably)."""
    import torch.distributed as td

    from mme.cli import main
    from mme.train import distributed

    joined = []

    def join(device):
        joined.append(device)
        td.init_process_group("gloo", rank=0, world_size=1, store=td.HashStore())
        return distributed.DistInfo(0, 0, 1)

    root, ckpt = setup
    monkeypatch.setattr(distributed, "init_distributed", join)
    try:
        assert main(["embed", str(ckpt), str(root / "v0.mp4"), "--out", str(tmp_path / "f.npy"), "--stride", "2",
                     "--num-workers", "0"]) == 0
        assert joined and not td.is_initialized()
    finally:
        if td.is_initialized():  # left up: not for the later tests of this process
            td.destroy_process_group()


@pytest.mark.pinned  # auto pinned by the test's own MME_AUTO_PRECISION, the rest fp32
def test_extract_features_records_and_logs_the_precision_auto_resolved_to(setup, monkeypatch, caplog):
    """extract_features' default precision 'auto' gives bf16 where bf16 is native (AMX CPUs) and fp32 elsewhere:
    the same script's features differed between the two kinds of CPU (max rel. diff 0.003), and nothing said which
    was used. ``Features.precision`` records it and one INFO line gives it with its reason, as mme embed's does
    (auto pinned by MME_AUTO_PRECISION here, so the test holds on either kind of CPU)."""
    root, ckpt = setup
    enc = load_encoder(ckpt)
    ds = build_test_set(root / "list.txt", enc.cfg, clips=1, crops=1, stride=2, root=str(root))
    for pinned in ("fp32", "bf16"):
        monkeypatch.setenv("MME_AUTO_PRECISION", pinned)
        caplog.clear()
        with caplog.at_level("INFO", logger="mme.eval.features"):
            features = extract_features(enc, ds, batch_size=4, progress=False)
        assert features.precision == pinned
        said = [r.getMessage() for r in caplog.records if r.name == "mme.eval.features"]
        assert said == [f"extract_features: 8 videos; cpu, precision {pinned} (auto: MME_AUTO_PRECISION={pinned} in "
                        f"the environment)"]
    asked = extract_features(enc, ds, batch_size=4, progress=False, precision="fp32")
    assert asked.precision == "fp32"
    assert not torch.equal(asked.x[asked.valid], features.x[features.valid])  # bf16's rows are not fp32's


def test_an_empty_index_dirs_advice_names_the_list_and_root_as_given_and_fills_it(setup, tmp_path, caplog, capsys,
                                                                                  monkeypatch, read_only):
    """``mme embed LIST --root R --index-dir EMPTY`` advised "`mme check LIST --index-dir EMPTY` fills it": the
    list a placeholder and its root left out, so the command, with the list put in, found none of its relative
    paths (each 'missing') and filled nothing. It names the list and --root as given, and runs as said; under
    torchrun, every rank said it: a node's first rank says it alone. An empty folder read-only here, which that
    check refuses, is said to be filled where it can be written (it said the check fills it)."""
    import logging

    from mme import cli

    root, ckpt = setup
    (tmp_path / "ok.txt").write_text("v0.mp4 0\nv1.mp4 1\n")  # (relative to the root)
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.chdir(tmp_path)  # (the list as the user gives it: from the working folder)
    with caplog.at_level(logging.WARNING, logger="mme"):
        assert cli.main(["embed", str(ckpt), "ok.txt", "--root", str(root), "--out", "f.npy", "--index-dir", "index",
                         "--workers", "0"]) == 0
    said = [r.getMessage() for r in caplog.records if "holds no frame index" in r.getMessage()]
    assert said == [f"--index-dir index holds no frame index yet: `mme check ok.txt --root {root} --index-dir index` "
                    "fills it"], said
    command = said[0].split("`")[1]
    assert cli.main([*shlex.split(command)[1:], "--out", "check.json", "--min-frames", "1"]) == 0
    assert json.loads((tmp_path / "check.json").read_text())["counts"] == {"ok": 2}
    assert any(index.iterdir())  # the index it said the command fills
    # (the old advice with the list put in finds none of them)
    assert cli.main(["check", "ok.txt", "--index-dir", "index", "--out", "old.json", "--min-frames", "1"]) == 1
    assert json.loads((tmp_path / "old.json").read_text())["counts"] == {"missing": 2}
    caplog.clear()
    (tmp_path / "unsaid").mkdir()
    with monkeypatch.context() as torchrun, caplog.at_level(logging.WARNING, logger="mme"):
        torchrun.setenv("LOCAL_RANK", "1")  # a node's second rank: its first says it (every rank said it)
        assert cli.main(["embed", str(ckpt), "ok.txt", "--root", str(root), "--out", "u.npy", "--index-dir",
                         "unsaid", "--workers", "0"]) == 0
    assert [r.getMessage() for r in caplog.records if "holds no frame index" in r.getMessage()] == []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mme"):  # one video: no list for mme check, no command said
        empty = tmp_path / "empty"
        empty.mkdir()
        assert cli.main(["embed", str(ckpt), str(root / "v0.mp4"), "--out", "g.npy", "--index-dir", "empty",
                         "--workers", "0"]) == 0
    assert [r.getMessage() for r in caplog.records if "holds no frame index" in r.getMessage()] == [
        "--index-dir empty holds no frame index yet"]
    caplog.clear()
    (tmp_path / "ro").mkdir()
    read_only(tmp_path / "ro")
    with caplog.at_level(logging.WARNING, logger="mme"):
        assert cli.main(["embed", str(ckpt), "ok.txt", "--root", str(root), "--out", "r.npy", "--index-dir", "ro",
                         "--workers", "0"]) == 0
    assert [r.getMessage() for r in caplog.records if "holds no frame index" in r.getMessage()] == [
        f"--index-dir ro holds no frame index yet: `mme check ok.txt --root {root} --index-dir ro` where the folder "
        "can be written (not here) fills it"]
    capsys.readouterr()
    assert cli.main(["check", "ok.txt", "--root", str(root), "--index-dir", "ro", "--out", "ro.json"]) == 1  # (here)
    assert capsys.readouterr().err == "mme check: error: --index-dir ro: cannot be written (Read-only file system)\n"


def test_features_are_embedded_on_the_threads_a_cpu_quota_leaves_the_callers_count_given_back(setup, monkeypatch):
    """Embedding kept torch's own thread count, which follows the CPU affinity alone: in a container with a CPU quota
    of one core on more visible ones, ``mme embed`` and the probe's features ran a thread per visible core, which
    fought for the one (1.7-3x slower in a 1-CPU cgroup on 2 cores), where pre-training keeps to the quota."""
    import mme.eval.features as features
    import mme.train.precision as precision

    root, ckpt = setup
    enc = load_encoder(ckpt)
    ds = build_test_set(root / "list.txt", enc.cfg, clips=1, crops=1, stride=2, root=str(root))
    monkeypatch.setattr(precision, "core_share", lambda: (1, " (the cgroup's CPU quota of 1)"))
    seen = []
    real = features.embed_batch

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "embed_batch", spy)
    callers = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        extract_features(enc, ds, progress=False, precision="fp32")
        assert seen and set(seen) == {1}  # before: {2}, torch's count
        assert torch.get_num_threads() == 2  # the caller's, given back
    finally:
        torch.set_num_threads(callers)
