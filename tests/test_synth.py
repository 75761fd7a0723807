"""``mme synth``: the label is carried by motion only. A linear classifier on one frame's pixel statistics is
at chance, while the true motion parameters separate the classes perfectly."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from training import on_one_core

from mme.data.lists import read_list
from mme.data.synth import CLASSES, DEFAULTS, PRESETS, draw_params, encode_h264, generate_synth, render, split_sizes
from mme.data.video import open_video
from mme.errors import ConfigError

FRAMES = 17  # odd, so there is a middle frame (where appearance is drawn)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_synth(tmp_path_factory.mktemp("synth"), num_classes=8, videos_per_class=24, size=64,
                          num_frames=FRAMES, seed=7, workers=2)


def fit_logreg(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Multinomial logistic regression (L-BFGS, L2 1e-2) on standardised features; returns (D + 1, K)."""
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    w = torch.zeros(xb.shape[1], num_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=60, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xb @ w, y) + 1e-2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def cross_val_accuracy(x: np.ndarray, y: np.ndarray, folds: int = 4, seed: int = 0) -> float:
    """k-fold cross-validated accuracy of :func:`fit_logreg` (one torch thread: tiny matrices run 30x slower
    with two threads on a busy 2-core machine)."""
    order = np.random.default_rng(seed).permutation(len(y))
    correct = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-8
        w = fit_logreg(torch.tensor((x[train] - mu) / sd), torch.tensor(y[train]), int(y.max()) + 1)
        xs = torch.tensor((x[test] - mu) / sd)
        pred = (torch.cat([xs, torch.ones(len(xs), 1, dtype=xs.dtype)], 1) @ w).argmax(1).numpy()
        correct += int((pred == y[test]).sum())
    torch.set_num_threads(threads)
    return correct / len(y)


def frame_stats(frame: np.ndarray) -> np.ndarray:
    """Per-channel mean, std and an 8-bin histogram of one uint8 RGB frame (30 numbers)."""
    f = frame.reshape(-1, 3).astype(np.float64)
    hists = [np.histogram(f[:, c], bins=8, range=(0, 256))[0] / len(f) for c in range(3)]
    return np.concatenate([f.mean(0), f.std(0), *hists])


def test_outputs_are_consistent(synth):
    assert synth.classes == list(CLASSES[:8])
    assert json.loads((synth.root / "classes.json").read_text()) == synth.classes
    params = json.loads(synth.params_file.read_text())
    seen = []
    for split, path in synth.lists.items():
        entries, bad = read_list(path)
        assert not bad and len(entries) == 8 * {"train": 17, "val": 4, "test": 3}[split]  # 16.8 / 3.6 / 3.6
        for e in entries:
            assert params[e.path]["label"] == e.label and params[e.path]["split"] == split
            seen.append(e.path)
    assert sorted(seen) == sorted(params)
    with open_video(synth.root / seen[0]) as reader:
        assert (reader.num_frames, reader.size) == (FRAMES, (64, 64))
        frames = reader.read([0, FRAMES - 1])
    assert np.abs(frames[0].astype(int) - frames[1]).mean() > 1.0  # something moved


def test_single_frame_is_at_chance_but_motion_separates(synth):
    params = json.loads(synth.params_file.read_text())
    paths = sorted(params)
    labels = np.array([params[p]["label"] for p in paths])
    stats = []
    for p in paths:
        with open_video(synth.root / p) as reader:
            stats.append(frame_stats(reader.read([FRAMES // 2])[0]))
    appearance_acc = cross_val_accuracy(np.stack(stats), labels)
    keys = ("vx", "vy", "omega", "log_scale_rate", "osc_ax", "osc_ay")
    motion = np.array([[params[p][k] for k in keys] for p in paths])
    motion_acc = cross_val_accuracy(motion, labels)
    chance = 1 / len(synth.classes)
    assert appearance_acc < chance + 0.12, appearance_acc
    assert motion_acc > 0.95, motion_acc


def test_split_sizes_follow_the_fractions(tmp_path, caplog):
    """Was: val and test rounded on their own and train given the rest, so ``--splits 0 1 1`` of 5 videos put one
    in train, and 24 videos at 0.7 / 0.15 / 0.15 gave train 16 of its 16.8. The summary counting them left its
    list files open (a ResourceWarning under python -X dev or -W error)."""
    d = generate_synth(tmp_path, num_classes=2, videos_per_class=5, size=32, num_frames=4, splits=(0, 1, 1),
                       workers=1)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert "(lists: {'train': 0, 'val': 6, 'test': 4};" in d.summary()
    assert [str(w.message) for w in said] == []
    demo = PRESETS["demo"]  # 8 classes: 560 / 80 / 160, as docs/results.md says
    assert split_sizes(demo["videos_per_class"], demo["splits"]) == [70, 10, 20]
    assert split_sizes(DEFAULTS["videos_per_class"], DEFAULTS["splits"]) == [28, 6, 6]
    assert split_sizes(24, (0.7, 0.15, 0.15)) == [17, 4, 3]
    assert split_sizes(250, (0.85, 0.05, 0.1)) == [213, 12, 25]  # docs/experiments.md's 1704 train of 8 classes
    assert split_sizes(3, (0.7, 0.15, 0.15)) == [1, 1, 1]  # one each when there are enough
    assert split_sizes(5, (0.7, 0.1, 0.2)) == [3, 1, 1]
    assert not caplog.records
    with caplog.at_level("WARNING", logger="mme.data.synth"):
        assert split_sizes(2, (0.7, 0.15, 0.15)) == [2, 0, 0]
    assert "2 videos per class leave val and test empty despite a positive fraction (3 fill every split)" \
        in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.data.synth"):
        assert split_sizes(1, (0.7, 0.15, 0.15)) == [1, 0, 0]
    assert "1 video per class leaves val and test empty despite a positive fraction (3 fill every split)" \
        in caplog.text


SAME_BYTES = dict(num_classes=2, videos_per_class=2, size=32, num_frames=6)

# Another process: other hash seed, thread settings and allocation history (so other buffer alignments) than the
# test's, OpenCV's IPP switched on as it is by default in a fresh process, and numpy's and OpenCV's AVX-512 code
# switched off (their AVX2 code, as on an AVX2 CPU; x264 is capped at AVX2 by mme itself).
AVX2_CODE = {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR", "OPENCV_CPU_DISABLE": "AVX512-SKX"}
_OTHER_PROCESS = """
import json, sys, cv2, numpy as np, torch
junk = [np.empty(int(n)) for n in np.random.default_rng(7).integers(1, 5000, 300)]
torch.set_num_threads(1)
cv2.setNumThreads(2)
from mme.data.synth import generate_synth
for i, kwargs in enumerate(json.loads(sys.argv[2])):
    generate_synth(f"{sys.argv[1]}/{i}", seed=3, workers=1, **kwargs)
"""
DESIGNS = [dict(motion="object", texture="two_colour"), dict(motion="scene", texture="high_contrast"),
           dict(motion="scene", texture="dead_leaves", objects=2)]


def test_same_seed_same_bytes_whatever_the_workers_threads_process_or_simd_level(tmp_path):
    """Each design (its own drawing code) alike; the other process makes all three (a process start is seconds)."""
    designs = [{**SAME_BYTES, **design} for design in DESIGNS]
    env = {**os.environ, "PYTHONHASHSEED": "11", "OMP_NUM_THREADS": "1", **AVX2_CODE}
    subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(tmp_path / "other"), json.dumps(designs)],
                   check=True, env=env, timeout=120)
    for i, kwargs in enumerate(designs):
        a = generate_synth(tmp_path / f"a{i}", seed=3, workers=1, **kwargs)
        b = generate_synth(tmp_path / f"b{i}", seed=3, workers=2, **kwargs)
        c = generate_synth(tmp_path / f"c{i}", seed=4, workers=1, **kwargs)
        files = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file() and p.name != ".lock")
        assert len(files) == 4 + 3 + 3  # videos; classes.json, params.json, lists; their record (and the folder's lock)
        for other in (b.root, tmp_path / "other" / str(i)):
            for f in files:
                assert (a.root / f).read_bytes() == (other / f).read_bytes(), (kwargs, other, f)
        assert (a.root / files[-1]).read_bytes() != (c.root / files[-1]).read_bytes()


def test_synths_workers_make_their_videos_without_importing_torch(tmp_path, monkeypatch):
    """Each spawned worker imported torch (1.9 s of CPU, on the 2-core AMD EPYC) to read its CPU's features for
    x264's options, which nothing else of a video's making needs: the main process reads them once and gives them
    (and a rerun that keeps every video, none). Here a torch that cannot be imported in the workers (spawn gives
    them this process's sys.path) stops nothing."""
    shim = tmp_path / "shim" / "torch"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text('raise ImportError("a synth worker imported torch")\n')
    monkeypatch.syspath_prepend(str(shim.parent))  # (this process's torch is imported already)
    d = generate_synth(tmp_path / "data", seed=3, workers=2, **SAME_BYTES)
    assert len(read_list(d.lists["train"])[0]) == 4
    generate_synth(tmp_path / "data", seed=4, workers=2, overwrite=True, **SAME_BYTES)  # over another design's
    # a rerun that keeps every video reads no options at all: in a process of its own, it imports no torch
    rerun = (f"import sys; from mme.data.synth import generate_synth; generate_synth({str(tmp_path / 'data')!r}, "
             f"seed=4, workers=1, **{SAME_BYTES!r}); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", rerun], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout == "False\n"


@pytest.mark.skipif(os.cpu_count() < 2, reason="one CPU: its count and its affinity agree")
def test_synth_defaults_its_workers_to_the_cpus_it_may_run_on(tmp_path, monkeypatch):
    """`mme synth` without --workers started os.cpu_count() processes, the machine's, under taskset or a Slurm
    share of one CPU too: it starts as many as the process's affinity allows (mme.utils.usable_cores)."""
    from mme.data import synth

    used, real = [], synth.in_workers
    monkeypatch.setattr(synth, "in_workers", lambda fn, jobs, workers, *rest: used.append(workers) or real(
        fn, jobs, workers, *rest))
    with on_one_core():
        d = generate_synth(tmp_path, seed=3, **SAME_BYTES)
    assert used == [1] and len(read_list(d.lists["train"])[0]) > 0


def test_synth_in_this_process_leaves_opencvs_threads_and_ipp_as_it_found_them(tmp_path):
    """With fewer than two workers synth renders in the caller's process, on one OpenCV thread without IPP: the
    caller's settings are put back (IPP off changes the DIS flow of a later run's tracks in that process)."""
    import cv2

    before = cv2.getNumThreads(), cv2.ipp.useIPP()
    try:
        cv2.setNumThreads(3)
        cv2.ipp.setUseIPP(True)
        set_here = cv2.getNumThreads(), cv2.ipp.useIPP()  # IPP stays off in a build without it
        generate_synth(tmp_path, seed=3, workers=1, **SAME_BYTES)
        assert (cv2.getNumThreads(), cv2.ipp.useIPP()) == set_here == (3, set_here[1])
    finally:
        cv2.setNumThreads(before[0])
        cv2.ipp.setUseIPP(before[1])


def test_a_script_calling_synth_with_workers_without_a_main_guard_is_told_to_add_it(tmp_path):
    """docs/experiments.md's snippets saved as a script: each spawned worker imports the script, so runs it again
    (before: multiprocessing's RuntimeError from every worker, then a BrokenProcessPool traceback)."""
    call = f"from mme.data.synth import generate_synth\ngenerate_synth({str(tmp_path / 'data')!r}, workers=2, " \
           f"num_classes=2, videos_per_class=2, size=32, num_frames=8)\n"
    (tmp_path / "unguarded.py").write_text(call)
    (tmp_path / "guarded.py").write_text('if __name__ == "__main__":\n' + "".join(f"    {ln}\n"
                                                                              for ln in call.splitlines()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, tmp_path / "unguarded.py"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 1 and "RuntimeError" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1] == ('mme.errors.UnguardedScript: worker processes ran the calling script '
                                            'again (spawned workers import it): call mme in a script under `if '
                                            '__name__ == "__main__":`, or, where the call takes workers, pass '
                                            'workers=1')
    subprocess.run([sys.executable, tmp_path / "guarded.py"], check=True, env=env, timeout=120)
    assert len(read_list(tmp_path / "data" / "train.txt")[0]) == 4


def test_a_rerun_keeps_the_videos_it_would_make_and_makes_the_others_again(tmp_path):
    """An interrupted `mme synth` or `mme demo` encoded every video again on its rerun (800 for the demo)."""
    generate_synth(tmp_path, seed=3, workers=1, **SAME_BYTES)
    videos = sorted(tmp_path.rglob("*.mp4"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in videos}
    videos[0].write_bytes(b"cut short")  # not what the design makes
    generate_synth(tmp_path, seed=3, workers=1, **SAME_BYTES)
    assert all(p.stat().st_mtime_ns == before[p][1] for p in videos[1:])
    assert videos[0].read_bytes() == before[videos[0]][0]
    generate_synth(tmp_path, seed=3, workers=1, overwrite=True, **{**SAME_BYTES, "fps": 30})  # another: every video
    assert all(p.stat().st_mtime_ns != before[p][1] for p in videos[1:])


def test_a_rerun_of_other_settings_is_refused_before_any_work_unless_overwrite(tmp_path, capsys):
    """`mme synth DIR --seed 1` into a folder of seed 0's videos, which a run was training on, made every video again
    without a word: the run read the new ones from mid-way, and its resume was not told (the lists' text the same).
    Videos recorded with other settings are refused, naming those that differ, unless --overwrite; the same
    settings keep them."""
    from mme.cli import main

    small = dict(num_classes=2, videos_per_class=3, size=32, num_frames=6, workers=1)
    generate_synth(tmp_path, seed=3, **small)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock")  # (its holder each run's)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    first = "videos/translate_right/translate_right_0000.mp4"
    with pytest.raises(ConfigError, match=rf"^out {tmp_path}: holds 6 videos made with other settings, e\.g\. "
                                          rf"{first}: seed 3 \(this run: 4\); give --overwrite to make them again \(no "
                                          r"run may be reading them: it would read the new ones\), or choose another "
                                          r"folder$"):
        generate_synth(tmp_path, seed=4, **small)
    with pytest.raises(ConfigError, match=r": texture two_colour \(this run: dead_leaves\), objects 0 \(this run: "
                                          r"1\); give --overwrite"):
        generate_synth(tmp_path, seed=3, texture="dead_leaves", objects=1, **small)
    more = ["--classes", "2", "--videos-per-class", "3", "--size", "32", "--frames", "6", "--workers", "1"]
    assert main(["synth", str(tmp_path), "--seed", "4", *more]) == 1
    assert "holds 6 videos made with other settings" in capsys.readouterr().err
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock") == files  # nothing made
    assert all((p.read_bytes(), p.stat().st_mtime_ns) == before[p] for p in files)
    generate_synth(tmp_path, seed=3, **{**small, "videos_per_class": 4})  # these settings: kept, one more made
    assert all(p.stat().st_mtime_ns == before[p][1] for p in files if p.suffix == ".mp4")
    assert main(["synth", str(tmp_path), "--seed", "4", *more, "--overwrite"]) == 0
    made = json.loads((tmp_path / "params.json").read_text())
    assert sorted(made) == sorted(p.relative_to(tmp_path).as_posix() for p in files if p.suffix == ".mp4")
    assert {p["seed"] for p in made.values()} == {4}
    assert all(p.read_bytes() != before[p][0] for p in files if p.suffix == ".mp4")


def test_videos_an_earlier_mme_recorded_without_some_settings_are_judged_by_those_they_record(tmp_path):
    """An mme that recorded no size, num_frames or seed in params.json made the videos again on the same command;
    the refusal of other settings read each missing one as None and refused that command (`size None (this run:
    32)`). The settings a record holds are compared, those it lacks not: the same command makes them again, another
    texture is refused naming the texture alone."""
    small = dict(num_classes=2, videos_per_class=2, size=32, num_frames=6, seed=3, workers=1)
    generate_synth(tmp_path, **small)
    made = json.loads((tmp_path / "params.json").read_text())
    unrecorded = ("size", "num_frames", "seed")
    (tmp_path / "params.json").write_text(json.dumps(
        {rel: {key: v for key, v in p.items() if key not in unrecorded} for rel, p in made.items()}))
    (tmp_path / ".lists-written.json").unlink()  # (an earlier mme wrote none)
    first = "videos/translate_right/translate_right_0000.mp4"
    with pytest.raises(ConfigError, match=rf"^out {tmp_path}: holds 4 videos made with other settings, e\.g\. {first}: "
                                          r"texture two_colour \(this run: dead_leaves\); give --overwrite"):
        generate_synth(tmp_path, **{**small, "texture": "dead_leaves"})
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.mp4")}
    generate_synth(tmp_path, **small)
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items())  # made again, as that mme's records ask
    assert json.loads((tmp_path / "params.json").read_text()) == made


def test_a_rerun_that_moves_kept_videos_to_another_split_warns_naming_how_many(tmp_path, caplog):
    """`mme synth` rerun into its folder with more videos per class (or other --splits) moved earlier training
    videos, the same bytes, into test without a word (a split follows a video's number and the counts), though its
    params.json recorded each video's split: a model trained on the earlier lists was scored on its own videos."""
    small = dict(num_classes=2, size=32, num_frames=4, workers=1)
    generate_synth(tmp_path, videos_per_class=4, **small)  # per class: test 0, val 1, train 2-3
    first = {split: {e.path for e in read_list(tmp_path / f"{split}.txt")[0]} for split in ("train", "val", "test")}
    with caplog.at_level("WARNING", logger="mme.data.synth"):
        generate_synth(tmp_path, videos_per_class=20, **small)  # test 0-2, val 3-5, train 6-19
    second = {split: {e.path for e in read_list(tmp_path / f"{split}.txt")[0]} for split in ("train", "val", "test")}
    assert len(first["train"] & second["test"]) == 2 and len(first["val"] & second["test"]) == 2  # (kept, moved)
    warnings = [r.getMessage() for r in caplog.records if "change split" in r.getMessage()]
    assert warnings == [f"synth: 6 videos kept from the earlier run in {tmp_path} change split (2 train -> val, "
                        "2 train -> test, 2 val -> test): a model trained on the earlier run's lists must not be "
                        "scored on the new test or val list (nor one trained on the new lists on its)"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.data.synth"):
        generate_synth(tmp_path, videos_per_class=20, **small)  # the same command: nothing moves
        generate_synth(tmp_path, videos_per_class=20, seed=1, overwrite=True, **small)  # none kept, none moved
    assert "change split" not in caplog.text
    with caplog.at_level("WARNING", logger="mme.data.synth"):
        generate_synth(tmp_path, videos_per_class=20, seed=1, splits=(0.5, 0.25, 0.25), **small)
    assert "synth: 12 videos kept from the earlier run" in caplog.text \
        and "(8 train -> val, 4 val -> test)" in caplog.text  # test 0-4, val 5-9: 3-4 and 6-9 per class move


def test_synth_refuses_a_folder_holding_lists_it_did_not_write_and_replaces_its_own(tmp_path):
    """`mme synth OUT` into a folder holding the train.txt / test.txt / classes.json of `mme lists` replaced them
    without a word."""
    small = dict(num_classes=2, videos_per_class=3, size=32, num_frames=8, workers=1)
    users = {"train.txt": "train/bikes/a.mp4 0\ntrain/bunny/b.mp4 1\n", "test.txt": "test/bikes/c.mp4 0\n",
             "classes.json": '["bikes", "bunny"]\n'}
    for name, text in users.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=rf"^out {tmp_path}: holds train.txt, test.txt, classes.json, which mme "
                                          r"synth did not write \(not lists or parameters it wrote, nor its class "
                                          r"names\) and would replace; choose another folder, or move them$"):
        generate_synth(tmp_path, **small)
    assert {p.name: p.read_text() for p in tmp_path.iterdir() if p.name != ".lock"} == users  # no video made
    own = tmp_path / "own"
    generate_synth(own, **{**small, "num_classes": 3})
    generate_synth(own, **small)  # its own lists, of an earlier design, replaced
    assert json.loads((own / "classes.json").read_text()) == list(CLASSES[:2])
    assert [e.path for e in read_list(own / "val.txt")[0]] == ["videos/translate_right/translate_right_0001.mp4",
                                                               "videos/translate_left/translate_left_0001.mp4"]
    with open(own / "train.txt", "a") as f:
        f.write("my_clips/jump.mp4 1\n")  # a line of the user's: no longer synth's list
    with pytest.raises(ConfigError, match=r"holds train.txt, which mme synth did not write"):
        generate_synth(own, **small)


def test_synth_refuses_a_params_json_it_did_not_write_and_replaces_its_own(tmp_path):
    """`mme synth OUT` replaced a params.json of the user's in OUT without a word, its lists protected. Its params.json
    is synth's where its sha256 is recorded with the lists' (.lists-written.json), or, where the record holds none,
    an earlier mme's, where it is the records of synth's videos."""
    import mme.data.synth as synth

    small = dict(num_classes=2, videos_per_class=3, size=32, num_frames=8, workers=1)
    users = '{"lr": 0.1, "note": "my sweep"}\n'
    (tmp_path / "params.json").write_text(users)
    with pytest.raises(ConfigError, match=rf"^out {tmp_path}: holds params.json, which mme synth did not write"):
        generate_synth(tmp_path, **small)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "params.json"]  # no video made
    assert (tmp_path / "params.json").read_text() == users
    own = tmp_path / "own"
    generate_synth(own, **small)
    made = (own / "params.json").read_text()
    recorded = json.loads((own / synth.LISTS_WRITTEN).read_text())
    assert recorded["params.json"] == [hashlib.sha256(made.encode()).hexdigest()]
    generate_synth(own, **small)  # its own, replaced
    assert (own / "params.json").read_text() == made
    edited = json.loads(made)
    edited[next(iter(edited))]["note"] = "blurry"
    (own / "params.json").write_text(json.dumps(edited))
    with pytest.raises(ConfigError, match=r"holds params.json, which mme synth did not write"):
        generate_synth(own, **small)
    del recorded["params.json"]  # an earlier mme's record, of the lists alone: its params.json by what it holds
    (own / synth.LISTS_WRITTEN).write_text(json.dumps(recorded))
    generate_synth(own, **small)
    assert (own / "params.json").read_text() == made
    (own / synth.LISTS_WRITTEN).write_text(json.dumps(recorded))  # the earlier mme's record again
    (own / "params.json").write_text(users)
    with pytest.raises(ConfigError, match=r"holds params.json, which mme synth did not write"):
        generate_synth(own, **small)
    assert (own / "params.json").read_text() == users


def test_a_rerun_hashes_each_file_it_judges_once(tmp_path, monkeypatch):
    """Judging the lists and params.json a rerun finds hashed each list twice (to judge it, then to record it). Each
    is hashed once as found and once as written (the same bytes: the same design)."""
    import mme.data.synth as synth

    small = dict(num_classes=2, videos_per_class=3, size=32, num_frames=8, workers=1)
    generate_synth(tmp_path, **small)
    judged = {name: (tmp_path / name).read_bytes() for name in ("params.json", "test.txt", "train.txt", "val.txt")}
    hashed, sha256 = [], synth._sha256

    def counted(data):
        hashed.append(data)
        return sha256(data)

    monkeypatch.setattr(synth, "_sha256", counted)
    generate_synth(tmp_path, **small)
    assert sorted(data for data in hashed if data[4:8] != b"ftyp") == sorted(2 * list(judged.values()))  # (not videos)


def test_synth_refuses_its_own_lists_edited_and_replaces_those_its_records_imply(tmp_path, monkeypatch):
    """A list whose every line is one of synth's videos counted as synth's: a hand-picked test.txt (a subset of its
    videos) or a train.txt with a comment line of the user's was replaced without a word. A list is synth's where
    its sha256 is one its runs recorded."""

    small = dict(num_classes=2, videos_per_class=3, size=32, num_frames=8, workers=1)
    generate_synth(tmp_path, **small)
    train = (tmp_path / "train.txt").read_text()
    edited = {"train.txt": "# fixed by hand, keep it\n" + train, "test.txt": train.splitlines()[0] + "\n"}
    for name, text in edited.items():
        held = (tmp_path / name).read_text()
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=rf"^out {tmp_path}: holds {name}, which mme synth did not write"):
            generate_synth(tmp_path, **small)
        assert (tmp_path / name).read_text() == text
        (tmp_path / name).write_text(held)

    stop_after_the_lists(monkeypatch)  # a run of another design
    with pytest.raises(KeyboardInterrupt):
        generate_synth(tmp_path, **{**small, "videos_per_class": 4})
    assert (tmp_path / "train.txt").read_text() != train
    monkeypatch.undo()
    generate_synth(tmp_path, **small)  # its lists, of the stopped run, replaced
    assert (tmp_path / "train.txt").read_text() == train



def stop_after_the_lists(monkeypatch) -> None:
    """mme synth stopped (Ctrl-C) after it wrote its lists, before its class map and params.json (those it writes
    anew: a class map that is the same is not written)."""
    import mme.data.synth as synth

    write = synth.atomic_write_text

    def stopped(path, text):
        if Path(path).name in ("classes.json", "params.json"):
            raise KeyboardInterrupt
        write(path, text)

    monkeypatch.setattr(synth, "atomic_write_text", stopped)


def stop_at_the_fourth_video(monkeypatch) -> list:
    """mme synth's making of videos stopped (Ctrl-C) at its fourth; returns the names of the three made."""
    import mme.data.synth as synth

    made, make = [], synth._make_video

    def stopped_at_the_fourth(job):
        if len(made) == 3:
            raise KeyboardInterrupt
        made.append(job[1])
        return make(job)

    monkeypatch.setattr(synth, "_make_video", stopped_at_the_fourth)
    return made


def test_synth_takes_its_lists_after_interrupted_runs_and_an_earlier_mmes_without_records(tmp_path, monkeypatch):
    """Synth refused its own lists where its params.json and progress did not imply them: a run of other --splits
    stopped after its lists, then one stopped among its videos (its progress mixing the two runs' records); or the
    lists of an earlier mme's run stopped before its params.json. Each list it writes is recorded (its sha256) and
    the record carried forward; a folder without one, of an earlier mme, keeps the earlier rule: a list of its
    videos only."""
    import mme.data.synth as synth

    small = dict(num_classes=2, videos_per_class=4, size=32, num_frames=4, workers=1, splits=(0.5, 0.25, 0.25))
    other_splits = {**small, "splits": (0.25, 0.25, 0.5)}
    generate_synth(tmp_path, **small)
    lists = {name: (tmp_path / name).read_text() for name in ("train.txt", "val.txt", "test.txt")}

    stop_after_the_lists(monkeypatch)  # other splits
    with pytest.raises(KeyboardInterrupt):
        generate_synth(tmp_path, **other_splits)
    theirs = {name: (tmp_path / name).read_text() for name in lists}
    assert theirs != lists
    monkeypatch.undo()
    monkeypatch.setattr(synth, "PROGRESS_EVERY_S", -1.0)  # its progress saved after each video
    stop_at_the_fourth_video(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        generate_synth(tmp_path, **small)
    monkeypatch.undo()
    generate_synth(tmp_path, **small)  # the stopped run's lists are synth's: replaced
    assert {name: (tmp_path / name).read_text() for name in lists} == lists
    (tmp_path / "test.txt").write_text(lists["test.txt"].splitlines()[0] + "\n")  # a subset: still refused
    with pytest.raises(ConfigError, match=r"holds test.txt, which mme synth did not write"):
        generate_synth(tmp_path, **small)

    for name, text in theirs.items():  # an earlier mme's lists, of a run stopped before its params.json
        (tmp_path / name).write_text(text)
    (tmp_path / synth.LISTS_WRITTEN).unlink()
    generate_synth(tmp_path, **small)
    assert {name: (tmp_path / name).read_text() for name in lists} == lists
    (tmp_path / synth.LISTS_WRITTEN).unlink()
    (tmp_path / "train.txt").write_text("my_clips/jump.mp4 1\n")  # not a video of synth's: refused there too
    with pytest.raises(ConfigError, match=r"holds train.txt, which mme synth did not write"):
        generate_synth(tmp_path, **small)


def test_synth_refuses_a_list_whose_video_number_is_a_digit_of_another_script(tmp_path):
    """A list line `videos/translate_right/translate_right_².mp4 0`: '²' is a digit to str.isdigit and not to int(),
    and mme synth ended in a ValueError traceback; it is a list synth did not write, refused in one line."""
    line = "videos/translate_right/translate_right_\u00b2.mp4 0\n"
    (tmp_path / "train.txt").write_text(line)
    with pytest.raises(ConfigError, match=r"holds train.txt, which mme synth did not write"):
        generate_synth(tmp_path, num_classes=2, videos_per_class=3, size=32, num_frames=8, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "train.txt"]
    assert (tmp_path / "train.txt").read_text() == line


def test_an_interrupted_synth_keeps_what_it_made_and_another_length_remakes_every_video(tmp_path, monkeypatch,
                                                                                       caplog, refuse_removal):
    """A run stopped part-way wrote no params.json, so its rerun made every video again; and a rerun with another
    frame count kept the oscillation videos, whose drawn parameters do not depend on it, at the old length."""
    import mme.data.synth as synth

    monkeypatch.setattr(synth, "PROGRESS_EVERY_S", 0.0)
    made = stop_at_the_fourth_video(monkeypatch)
    design = dict(num_classes=10, videos_per_class=1, size=32, num_frames=6)
    with pytest.raises(KeyboardInterrupt):
        generate_synth(tmp_path, seed=3, workers=1, **design)
    monkeypatch.undo()
    stamps = {rel: (tmp_path / rel).stat().st_mtime_ns for rel in made}
    progress = tmp_path / synth.PROGRESS
    with refuse_removal(progress, errno.EPERM), caplog.at_level("WARNING", logger="mme.utils"):  # was a traceback
        data = generate_synth(tmp_path, seed=3, workers=1, **design)
    assert f"{progress}: could not be removed (Operation not permitted); it holds a run's progress until its " \
           "params.json, written now: the data is complete" in caplog.text
    assert len(json.loads(data.params_file.read_text())) == 10 and progress.exists()
    generate_synth(tmp_path, seed=3, workers=1, **design)
    assert all((tmp_path / rel).stat().st_mtime_ns == t for rel, t in stamps.items())
    assert not progress.exists()
    generate_synth(tmp_path, seed=3, workers=1, overwrite=True, **{**design, "num_frames": 8})
    for video in tmp_path.rglob("*.mp4"):
        with av.open(str(video)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 8, video.name
    with caplog.at_level("INFO", logger="mme.data.synth"):
        generate_synth(tmp_path, seed=3, workers=1, **{**design, "num_frames": 8, "num_classes": 9})  # one left over
    assert "9 videos in" in caplog.text and "0 made, 9 kept from an earlier run" in caplog.text, caplog.text
    assert "1 videos in" in caplog.text
    assert "are not of this design (an earlier run's, e.g. videos/oscillate_vertical/" in caplog.text


def test_a_full_disk_is_one_line_keeping_the_videos_made_and_a_finished_rerun_writes_nothing(tmp_path):
    """The disk fills up while synth encodes (a file-size limit here, in workers and in the process): before, a
    traceback from the worker's encode, a temporary file of the other worker's write left beside its video, and a
    rerun of the finished command on a full disk failed rewriting its progress and lists though nothing was to be
    made. Now one line names the video, the reason and the MiB free, no temporary file is left, the same command
    with space makes the rest, and a finished one writes nothing."""
    import re

    from training import in_one_process

    out = tmp_path / "s"
    argv = ["synth", str(out), "--classes", "2", "--videos-per-class", "3", "--size", "32", "--frames", "8",
            "--workers", "2"]  # (videos of 1.9 to 2.2 kB: some fit under the first run's limit)
    proc = in_one_process([argv, argv, argv], "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                          "import mme.data.synth\n"
                          "def before(i):\n"
                          "    resource.setrlimit(resource.RLIMIT_FSIZE, ((2000, -1, 200)[i], -1))\n"
                          "    mme.data.synth.PROGRESS_EVERY_S = -1 if i == 2 else 5.0  # (a long check of the kept)",
                          timeout=120)
    (code, err, _), done, again = proc.ran
    assert code == 1 and "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(rf"mme synth: error: {re.escape(str(out))}/videos/\w+/\w+\.mp4: could not be written "
                        r"\(File too large: this process's file-size limit \(2000 bytes, ulimit -f\) reached\); the "
                        r"videos made are kept and the same command continues", last), last
    assert done[0] == 0 and again[0] == 0, (done[1][-3000:], again[1][-3000:])
    assert "0 made, 6 kept from an earlier run" in again[1]
    assert not [p for p in out.rglob(".*") if ".tmp" in p.name]
    assert sorted(json.loads((out / "params.json").read_text())) == sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*.mp4"))


@pytest.mark.parametrize("label, k", [(0, 0), (1, 0), (1, 1)])
def test_encoding_the_same_frames_gives_the_same_bytes_every_time(label, k, tmp_path):
    # x264's own AVX-512 code changed the bytes in 11 of 60 encodes of the first clip (mme.data.synth._x264_options)
    rng = np.random.default_rng([3, label, k])
    frames, _ = render(draw_params(label, 32, 6, rng), 32, 6, rng)
    encodings, held = set(), []
    for n in range(30):
        held.append([np.empty(size) for size in rng.integers(1, 5000, 20)])  # another allocation history each time
        encode_h264(tmp_path / f"{n}.mp4", frames)
        encodings.add((tmp_path / f"{n}.mp4").read_bytes())
    assert len(encodings) == 1


def test_bad_arguments_are_refused_naming_the_option(tmp_path):
    with pytest.raises(ConfigError, match="even"):
        generate_synth(tmp_path / "d", size=33)
    with pytest.raises(ConfigError, match="motion"):
        generate_synth(tmp_path / "e", motion="camera")
    with pytest.raises(ConfigError, match="texture"):
        generate_synth(tmp_path / "f", texture="plaid")
    with pytest.raises(ConfigError, match="objects"):
        generate_synth(tmp_path / "g", objects=-1)
    # fps 0 wrote 24-fps videos, 5000 MP4s missing frames on decode; a negative one and a NaN or huge sway were
    # tracebacks
    for bad, said in ((dict(fps=0), r"synth fps must be in \[1, 1000\] \(past it the MP4's timestamps break: "
                                    r"frames lost on decode\), got 0"), (dict(fps=5000), r"fps .* got 5000"),
                      (dict(seed=-1), r"seed: a seed must be in \[0, 2\*\*63 - 1\], got -1"),
                      (dict(camera_jitter=float("nan")), "camera_jitter"), (dict(camera_jitter=1e9), "camera_jitter"),
                      (dict(splits=(float("nan"), 0.1, 0.1)), "splits")):
        with pytest.raises(ConfigError, match=said):
            generate_synth(tmp_path / "h", **bad)


def test_synth_at_its_highest_frame_rate_writes_videos_whose_every_frame_decodes(tmp_path):
    """``mme synth --fps 5000`` wrote MP4s whose B-frames had timestamps the container could not tell apart: frames
    lost on decode (none left at 65536 fps), exit 0. The rate is capped at MAX_FPS (refused above it, the test
    before), where every frame of a video decodes, at the times its rate gives."""
    from mme.data.synth import MAX_FPS

    data = generate_synth(tmp_path / "fast", num_classes=2, videos_per_class=1, size=32, num_frames=FRAMES,
                          fps=MAX_FPS, workers=1)
    videos = json.loads(data.params_file.read_text())
    assert len(videos) == 2
    for rel in videos:
        with av.open(str(data.root / rel)) as container:
            stream = container.streams.video[0]
            times = [float(frame.pts * stream.time_base) for frame in container.decode(stream)]
            assert stream.average_rate == MAX_FPS  # (read while the container is open)
        assert np.allclose(times, np.arange(FRAMES) / MAX_FPS), (rel, times)


def test_scene_motion_refuses_a_sway_beyond_what_its_canvas_holds(tmp_path):
    """A scene-motion view is cut from a canvas 3x its side, and any jitter up to the size was taken: a view zoomed
    out and swayed past the canvas showed the scene mirrored, moving against the class motion. The limit is the
    largest sway the canvas holds at the strongest zoom out: there the view's canvas coordinates run straight to
    its edge, a fifth of a pixel beyond they are the canvas's edge repeated; a jitter above it is one line."""
    import math

    import mme.data.synth as synth

    small = dict(num_classes=2, videos_per_class=1, num_frames=4, workers=1)
    with pytest.raises(ConfigError) as refused:
        generate_synth(tmp_path / "scene", motion="scene", size=64, camera_jitter=28.72, **small)
    assert str(refused.value) == ("synth camera_jitter must be <= 28.71 px with motion=scene at size 64 (the view, "
                                  "zoomed out and swayed, must stay in its 3x canvas, else it shows the scene "
                                  "mirrored), got 28.72")
    assert not (tmp_path / "scene").exists()
    generate_synth(tmp_path / "object", size=32, camera_jitter=32, **small)  # its canvas has the sway's margin
    limit = synth.max_scene_jitter(64)
    assert limit == pytest.approx(3 * 32 / math.sqrt(2.5) - 32)  # 28.72
    y, x = np.mgrid[:synth.SCENE_CANVAS * 64, :synth.SCENE_CANVAS * 64].astype(np.float32)
    canvas = np.stack([x, y], -1)  # each pixel holds its own coordinates
    for jitter, inside in ((limit, True), (limit + 0.2, False)):  # swayed down-right: the corner (0, 0) goes out
        view = synth.scene_view(canvas, (64, 64), 64, jitter, jitter, -math.log(synth.ZOOM_RANGE[1]) / 2, 0.0)
        bends = max(np.abs(np.diff(view[..., 0], 2, axis=1)).max(), np.abs(np.diff(view[..., 1], 2, axis=0)).max())
        assert (bends < 0.1) == inside, (jitter, bends)  # 1/32 px: warpAffine's coordinate steps


def test_scene_motion_moves_the_whole_view_by_the_class_motion():
    """motion="scene": each frame is the previous one shifted by the drawn velocity (the shift that best maps one
    frame onto the next, among 0, v/2, v and 3v/2), where motion="object" leaves the background still (0 fits
    best: the object is ~10 % of the frame)."""
    import cv2

    from mme.data.synth import draw_params, render

    def misfit(f: np.ndarray, shift: np.ndarray) -> float:
        m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        moved = np.stack([cv2.warpAffine(f[t], m, f.shape[1:][::-1]) for t in range(len(f) - 1)])
        return float(np.abs(moved - f[1:])[:, 16:-16, 16:-16].mean())

    for name in ("translate_right", "translate_up"):
        best = {}
        for motion in ("object", "scene"):
            rng = np.random.default_rng([0, CLASSES.index(name), 1])
            p = {**draw_params(CLASSES.index(name), 96, 12, rng), "motion": motion, "texture": "high_contrast"}
            f = render(p, 96, 12, rng)[0].astype(np.float32).mean(-1)
            v = np.array([p["vx"], p["vy"]])
            best[motion] = min((0.0, 0.5, 1.0, 1.5), key=lambda k: misfit(f, k * v))
        assert best == {"object": 0.0, "scene": 1.0}, (name, best)


def test_high_contrast_textures_are_strong_and_centred_on_grey():
    from mme.data.synth import _texture

    rng = np.random.default_rng(0)
    faint = np.stack([_texture(64, 64, rng) for _ in range(40)]).astype(np.float64)
    bold = np.stack([_texture(64, 64, rng, "high_contrast") for _ in range(40)]).astype(np.float64)
    # Within-texture contrast (std over pixels, strongest channel) and between-texture spread of the mean colour.
    contrast = {k: np.median(v.std((1, 2)).max(1)) for k, v in (("faint", faint), ("bold", bold))}
    spread = {k: v.mean((1, 2)).std(0).mean() for k, v in (("faint", faint), ("bold", bold))}
    assert contrast["bold"] > 2 * contrast["faint"], contrast
    assert spread["bold"] < 0.25 * spread["faint"], spread


def test_dead_leaves_textures_have_the_heavy_tailed_edges_of_photographs():
    """Natural images are flat regions cut by sharp edges: their grey-level differences between neighbours are
    heavy-tailed (kurtosis well above a Gaussian's 3), where smooth noise, even pushed to two tones, is not."""
    from scipy.stats import kurtosis

    from mme.data.synth import _texture

    def edge_kurtosis(texture: str) -> float:
        grey = [_texture(128, 128, np.random.default_rng(i), texture).astype(np.float64).mean(-1) for i in range(6)]
        return float(np.median([kurtosis(np.diff(g, axis=1).ravel(), fisher=False) for g in grey]))

    leaves, noise = edge_kurtosis("dead_leaves"), edge_kurtosis("high_contrast")
    assert leaves > 7 and noise < 6, (leaves, noise)  # 8.6 and 4.7 here
    tex = _texture(128, 128, np.random.default_rng(0), "dead_leaves")
    assert tex.shape == (128, 128, 3) and tex.dtype == np.uint8
    assert np.array_equal(tex, _texture(128, 128, np.random.default_rng(0), "dead_leaves"))


def test_a_mover_moves_on_its_own_at_its_drawn_velocity():
    """Over a scene whose class motion is switched off, a distractor is the only thing that changes, and its
    silhouette's centroid travels by its drawn velocity over the video."""
    from mme.data.synth import draw_movers, draw_params, render

    size, frames = 96, 24
    rng = np.random.default_rng(5)
    p = {**draw_params(0, size, frames, rng), "vx": 0.0, "motion": "scene", "texture": "dead_leaves"}
    p["movers"] = draw_movers(size, frames, 1, rng)
    m = p["movers"][0]
    m.update(omega=0.0, cx=size / 2, cy=size / 2)  # centred and not turning, so it stays whole in view
    still = render({**p, "movers": []}, size, frames, np.random.default_rng(9))[0].astype(np.int16)
    moved = render(p, size, frames, np.random.default_rng(9))[0].astype(np.int16)  # same scene, with the mover
    silhouette = np.abs(moved - still).max(-1) > 12
    area = silhouette.mean((1, 2))
    assert 0.2 < area.min() / (np.pi * m["radius"] ** 2 * m["aspect"] / size ** 2) < 1.2, area
    centroid = [np.argwhere(s).mean(0)[::-1] for s in silhouette[[0, -1]]]  # (x, y)
    travel = (centroid[1] - centroid[0]) / (frames - 1)
    assert np.allclose(travel, (m["vx"], m["vy"]), atol=0.1), (travel, m)
    assert np.array_equal(still[0], still[-1])  # the scene itself is still: only the mover moved


def background_shifts(frames: np.ndarray, p: dict) -> np.ndarray:
    """(T - 1, 2): the x, y px by which the background of each frame after the first is moved against the first
    (grey frames of an object-motion video of params ``p``), by ECC, sub-pixel; the object's discs, grown by the
    sway, are left out."""
    import cv2

    from mme.data.synth import motion_at

    y, x = np.mgrid[:p["size"], :p["size"]]

    def around_object(t: int) -> np.ndarray:
        dx, dy, log_scale, _ = motion_at(p, t, len(frames))
        r = p["radius"] * np.exp(log_scale) + p["camera_jitter"] + 3
        return (x - p["cx"] - dx) ** 2 + (y - p["cy"] - dy) ** 2 < r ** 2

    shifts = []
    for t in range(1, len(frames)):
        background = (~(around_object(0) | around_object(t))).astype(np.uint8)
        _, warp = cv2.findTransformECC(frames[0], frames[t], np.eye(2, 3, dtype=np.float32), cv2.MOTION_TRANSLATION,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6), background, 1)
        shifts.append(warp[:, 2])  # frame t's content is frame 0's moved by this
    return np.array(shifts)


def test_render_leaves_the_params_it_is_given_as_they_are():
    """render wrote the sway it drew into the caller's ``p`` (``p["camera_sway"]``); it returns it now, ``p`` left
    as it is, so the same ``p`` and seed render the same frames and sway again."""
    from mme.data.synth import draw_movers

    rng = np.random.default_rng(4)
    p = {**draw_params(CLASSES.index("rotate_cw"), 32, 6, rng), "movers": draw_movers(32, 6, 1, rng)}
    given = json.loads(json.dumps(p))
    first = render(p, 32, 6, np.random.default_rng(5), camera_jitter=1.5)
    assert p == given  # was given a "camera_sway"
    frames, sway = render(p, 32, 6, np.random.default_rng(5), camera_jitter=1.5)
    assert p == given and frames.shape == (6, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, first[0])
    assert sway == first[1] and len(sway["freq"]) == len(sway["phase"]) == 2
    assert all(0.05 <= f <= 0.2 for f in sway["freq"]) and all(0 <= a <= 2 * np.pi for a in sway["phase"])


def test_object_motion_sways_the_view_sub_pixel_as_params_json_records(tmp_path):
    """`--camera-jitter` with object motion cut the view out of the canvas at whole pixels: under 0.5 px the view
    never moved (while params.json recorded the jitter), at 1 px it jumped by 0, 1 or 2 px. Now the view sways
    smoothly as in scene motion: the background of each decoded frame is moved against frame 0 by the difference
    of the sway params.json records (``camera_jitter`` times a sine per axis of its ``camera_sway``), to a tenth of
    a pixel; and a rerun makes again a swayed video recorded without its sway (an earlier mme's, whole pixels)."""
    import mme.data.synth as synth

    design = dict(num_classes=2, videos_per_class=1, size=96, num_frames=24, seed=1, splits=(1, 0, 0),
                  texture="dead_leaves", workers=1)
    for jitter in (0.4, 1.0):
        data = generate_synth(tmp_path / str(jitter), camera_jitter=jitter, **design)
        params = json.loads(data.params_file.read_text())
        for rel, p in params.items():
            with av.open(str(data.root / rel)) as container:
                f = np.stack([x.to_ndarray(format="gray").astype(np.float32) for x in container.decode(video=0)])
            shifts = background_shifts(f, p)
            off_grid = np.abs(shifts - shifts.round()) > 0.15
            assert off_grid.mean() > 0.4, (jitter, rel, shifts.round(2).tolist())  # was 0: whole pixels
            t = np.arange(len(f))[:, None]
            sway = jitter * np.sin(np.array(p["camera_sway"]["freq"]) * t + np.array(p["camera_sway"]["phase"]))
            error = np.abs(shifts - (sway[1:] - sway[0]))
            assert error.max() < 0.15 and error.mean() < 0.07, (jitter, rel, error.max(), error.mean())
    older, kept = sorted(params)
    data.params_file.write_text(json.dumps({**params, older: {k: v for k, v in params[older].items()
                                                              if k != "camera_sway"}}))
    record = data.root / synth.LISTS_WRITTEN  # an earlier mme's, which records no digest of its params.json
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "params.json"}))
    stamps = {rel: (data.root / rel).stat().st_mtime_ns for rel in params}
    again = json.loads(generate_synth(data.root, camera_jitter=1.0, **design).params_file.read_text())
    assert (data.root / older).stat().st_mtime_ns != stamps[older] and again[older] == params[older]
    assert (data.root / kept).stat().st_mtime_ns == stamps[kept]


def test_a_relative_out_folder_with_a_colon_in_its_first_part_is_written(tmp_path, monkeypatch):
    """FFmpeg reads the part of a relative name before a colon as a protocol ('run:1', a time stamp): the videos
    are written by their absolute paths (before: ProtocolNotFoundError, a traceback, and no dataset)."""
    monkeypatch.chdir(tmp_path)
    d = generate_synth("run:1", num_classes=2, videos_per_class=1, size=32, num_frames=4, workers=1)
    entries = read_list(d.lists["train"])[0]  # (one video per class: none for val or test)
    assert len(entries) == 2
    for entry in entries:
        with open_video(tmp_path / "run:1" / entry.path) as reader:
            assert reader.num_frames == 4 and reader.size == (32, 32)


@pytest.mark.parametrize("command", [["synth", "", "--classes", "2", "--videos-per-class", "1", "--size", "32",
                                      "--frames", "2"], ["lists", "folder", "videos", "--out", ""],
                                     ["extract", "list.txt", "--out", ""]])
def test_an_empty_out_is_refused_not_taken_for_the_working_folder(command, tmp_path, monkeypatch, capsys):
    """`mme synth ""` (an unset shell variable) is refused in one line, as `mme extract` / `mme lists` with
    `--out ''` are (before: the videos, lists or failure files written into the working folder): by argparse, as
    any empty path option, and from Python by the output's check."""
    from videos import affine_video, write_video

    from mme.cli import main as cli_main

    (tmp_path / "videos" / "a").mkdir(parents=True)
    write_video(tmp_path / "videos" / "a" / "1.mp4", affine_video(T=4, H=32, W=32)[0])
    (tmp_path / "list.txt").write_text("a/1.mp4 0\n")
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(SystemExit) as info:
        cli_main([*command, "--workers", "1"])
    option = "out" if command[0] == "synth" else "--out"
    assert (info.value.code, capsys.readouterr().err.strip().splitlines()[-1]) == (2, (
        f"mme {command[0]}: error: argument {option}: empty, which names no file or folder (an unset shell "
        "variable?)"))
    with pytest.raises(ConfigError, match=r"^out is empty; give a folder name$"):
        generate_synth("", num_classes=2, videos_per_class=1, size=32, num_frames=2, workers=1)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_killed_synths_temporary_files_are_removed_by_its_rerun_not_called_videos(tmp_path, caplog):
    """A synth killed while it wrote a video (or a list) left its temporary file (``.<name>.mp4.tmp<pid>.mp4``), which
    its rerun never removed and called, on every rerun, a video of an earlier run that no list names."""
    from worker_jobs import dead_pid

    design = dict(num_classes=2, videos_per_class=2, size=32, num_frames=4, seed=3, workers=1)
    generate_synth(tmp_path, **design)
    pid = dead_pid()
    video = tmp_path / "videos" / CLASSES[0] / f".{CLASSES[0]}_0000.mp4.tmp{pid}.mp4"
    listed = tmp_path / f".train.txt.tmp{pid}.txt"
    video.write_bytes(b"half a video")
    listed.write_text("half a list")
    with caplog.at_level("INFO"):
        generate_synth(tmp_path, **design)
    assert not video.exists() and not listed.exists()
    assert "not of this design" not in caplog.text


def test_a_second_synth_on_a_folder_in_use_is_refused_and_runs_once_it_is_free(tmp_path, capsys):
    """Two `mme synth` of other seeds into one folder at once both exited 0: the videos of both seeds mixed, and
    params.json recorded one seed's."""
    from mme.cli import main

    out = tmp_path / "data"
    args = ["synth", str(out), "--classes", "2", "--videos-per-class", "2", "--size", "32", "--frames", "6",
            "--workers", "1"]
    holder = subprocess.Popen([sys.executable, "-c", "import time; from mme.utils import lock_folder; "
                               f"lock_folder({str(out)!r}, 'out'); print(flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()  # it holds the folder
        assert main([*args, "--seed", "1"]) == 1
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"mme synth: error: out '{out}' is in use by another job (PID {holder.pid} on " in err
    assert not list(out.rglob("*.mp4")) and not (out / "params.json").exists()
    assert main([*args, "--seed", "1"]) == 0
    assert {p["seed"] for p in json.loads((out / "params.json").read_text()).values()} == {1}


def test_a_rerun_counts_a_video_made_again_as_made_not_kept(tmp_path, caplog):
    """A video removed and made again, the same bytes as its record, was counted as "kept from an earlier run"."""
    generate_synth(tmp_path, seed=3, workers=1, **SAME_BYTES)
    videos = sorted(tmp_path.rglob("*.mp4"))
    before = videos[0].read_bytes()
    videos[0].unlink()
    with caplog.at_level("INFO", logger="mme.data.synth"):
        generate_synth(tmp_path, seed=3, workers=1, **SAME_BYTES)
    assert videos[0].read_bytes() == before
    assert f"synth: {len(videos)} videos in {tmp_path}, 1 made, {len(videos) - 1} kept from an earlier run" \
        in caplog.text
