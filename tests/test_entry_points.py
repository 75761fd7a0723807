"""Every subcommand's library function runs from Python with keyword arguments (no argparse namespace), and the
demo's data design is the ``mme synth`` preset "demo"."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import types
from pathlib import Path

import pytest
import torch
from training import on_one_core

from mme.data.synth import PRESETS, generate_synth, synth_design
from mme.errors import ConfigError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two 64² videos of 16 frames (one per class), all in the train list. (Not smaller: OpenCV's DIS flow, one
    engine per process, computes other flows for the same frames after it has seen 32² ones.)"""
    return generate_synth(tmp_path_factory.mktemp("tiny"), num_classes=2, videos_per_class=1, size=64,
                          num_frames=16, workers=1)


def test_a_preset_is_its_arguments_and_given_arguments_replace_its_values(tmp_path):
    small = {"num_classes": 2, "videos_per_class": 1, "size": 32, "num_frames": 4}
    a = generate_synth(tmp_path / "a", preset="demo", workers=1, **small)
    b = generate_synth(tmp_path / "b", workers=1, **{**PRESETS["demo"], **small})
    for rel in ("params.json", "train.txt", "videos/translate_left/translate_left_0000.mp4"):
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    params = json.loads(a.params_file.read_text())
    assert {(p["motion"], p["texture"], len(p["movers"])) for p in params.values()} == {("scene", "dead_leaves", 2)}
    assert synth_design("demo", size=64)["size"] == 64 and synth_design("demo")["videos_per_class"] == 100
    assert synth_design(num_classes=None) == synth_design()  # None: not given
    with pytest.raises(ConfigError, match=r"unknown synth preset 'dem'; available: \['demo'\]"):
        synth_design("dem")


def test_the_demo_takes_its_data_design_from_the_preset_and_its_flags_as_keywords(tmp_path):
    from mme.demo import DemoSettings, demo_settings

    assert DemoSettings().data_design() == synth_design("demo")
    s = demo_settings(out=tmp_path, quick=True, steps=2, seeds=[1, 2], device="cpu", overrides=["train.lr=1"])
    assert s.steps == 2 and s.seeds == (1, 2) and s.device == "cpu" and s.overrides[-1] == "train.lr=1"
    assert s.data_design() == {**synth_design("demo"), "num_classes": 4, "videos_per_class": 6, "size": 64,
                               "num_frames": 24}
    assert demo_settings(steps=7, minutes=6).steps == 7  # steps win over the time budget


def test_make_lists_writes_and_checks_a_class_folder(tiny, tmp_path):
    from mme.data.lists import make_lists

    r = make_lists(kind="folder", source=tiny.root / "videos", out_dir=tmp_path, check=True, min_frames=8)
    assert r["lists"]["all"].read_text().count("\n") == 2
    assert r["check"]["counts"] == {"ok": 2} and r["check"]["failing"] == 0
    assert make_lists(kind="folder", source=tiny.root / "videos", out_dir=tmp_path)["check"] is None


def test_extract_cache_reports_what_it_wrote(tiny, tmp_path, capsys):
    from mme.motion.extract import extract_cache, say_counts

    report = extract_cache(list_file=str(tiny.lists["train"]), out=str(tmp_path), root=str(tiny.root), length=2,
                           short_side=64)
    assert report["done"] == 2 and report["failed"] == {}
    assert capsys.readouterr().out == ""  # (the line of counts is mme extract's: say_counts)
    assert say_counts(report) is False
    assert capsys.readouterr().out == "extract: 2 written, 0 already complete, 0 failed\n"


def test_draw_picture_writes_the_tracks_picture(tiny, tmp_path, capsys):
    from mme.motion.viz import draw_picture

    video = str(tiny.root / tiny.lists["train"].read_text().split()[0])
    path = draw_picture(video=video, out=tmp_path / "t.png", num_frames=4, stride=2, size=64, length=2)
    assert path.read_bytes()[:4] == b"\x89PNG" and f"viz: wrote {path}" in capsys.readouterr().out


def test_bench_targets_returns_the_figures_it_prints(tmp_path, capsys):
    """Its --json holds them too, with the code that measured them."""
    from videos import affine_video, write_video

    from mme.motion.bench import bench_targets
    from mme.utils import code_version

    video = str(write_video(tmp_path / "b.mp4", affine_video(24, 64, 64, dx=1.0)[0]))
    r = bench_targets(video=video, frames=4, stride=2, size=64, length=2, repeat=1, json_path=str(tmp_path / "b.json"))
    assert r["flow_pairs"] > 0 and json.loads((tmp_path / "b.json").read_text()) == {**r, **code_version()}
    assert "total / decode" in capsys.readouterr().out


def test_bench_json_replaces_a_benchmarks_figures_never_a_file_it_reads_or_a_users(tmp_path, capsys):
    """`mme bench <kind> --json F` replaced whatever F held after the work: the video it benchmarked (given as
    --video, or a link to it) became JSON, a user's notes.txt too. Every kind refuses both in one line before any
    work, the file as it was; a benchmark's own figures (of any kind) are replaced."""

    from videos import affine_video, write_video

    from mme.cli import main

    video = write_video(tmp_path / "v.mp4", affine_video(24, 64, 64, dx=1.0)[0])
    held = video.read_bytes()
    os.link(video, tmp_path / "hard.mp4")
    (tmp_path / "r.yaml").write_text("model: {preset: tiny}\n")
    (tmp_path / "notes.txt").write_text("mine\n")
    small = ["--frames", "4", "--size", "32"]
    for kind, read in (("data", ["--video", str(video), "--workers", "0"]), ("targets", ["--video", str(video)]),
                       ("pipeline", ["--video", str(video)]), ("train", ["--recipe", str(tmp_path / "r.yaml")]),
                       ("flow", [])):
        elsewhere = "; write the figures elsewhere"
        for out, said in ((tmp_path / "hard.mp4", f"is {video}, the video benchmarked{elsewhere}"),
                          (tmp_path / "r.yaml", f"is {tmp_path / 'r.yaml'}, the recipe timed{elsewhere}"),
                          (tmp_path / "notes.txt", "already holds a file mme bench did not write (not a benchmark's "
                                                   "figures); move it, or give another --json")):
            if "timed" in said and kind != "train" or "benchmarked" in said and kind in ("train", "flow"):
                continue
            assert main(["bench", kind, "--json", str(out), *read, *(small if kind != "flow" else [])]) == 1
            out_, err = capsys.readouterr()
            assert err.splitlines() == [f"mme bench {kind}: error: --json {out}: {said}"] and out_ == "", (kind, err)
    assert video.read_bytes() == held and (tmp_path / "notes.txt").read_text() == "mine\n"
    assert (tmp_path / "r.yaml").read_text() == "model: {preset: tiny}\n"
    figures = tmp_path / "b.json"
    for _ in range(2):  # its own figures replaced
        assert main(["bench", "targets", "--json", str(figures), "--video", str(video), "--repeat", "1", "--batch",
                     "1", *small]) == 0
    from mme.utils import is_bench_json

    assert is_bench_json(figures) and json.loads(figures.read_text())["clip"] == "4x32x32"
    assert not is_bench_json(tmp_path / "notes.txt") and not is_bench_json(video)
    for earlier, figures in (({"cpu": "x", "ratio_total_decode": 2.1}, True), ({"device": "cpu", "rows": []}, True),
                             ({"rows": [], "cpu": "x", "summary": {}}, False)):  # an earlier mme's; a demo's report
        (tmp_path / "earlier.json").write_text(json.dumps(earlier))
        assert is_bench_json(tmp_path / "earlier.json") is figures, earlier


def test_bench_data_returns_clips_per_second(tiny):
    from mme.data.bench import bench_data

    video = str(tiny.root / tiny.lists["train"].read_text().split()[0])
    figures = bench_data(video=video, workers=[0], clips=2, batch=1, frames=4, stride=2, size=64, length=2)
    assert figures["clips_per_s"]["0"] > 0 and figures["img_size"] == 64


@pytest.mark.parametrize("backend, said", [
    ("decord", "--backend decord: the 'decord' backend is not installed (pip install decord)"),
    ("pyav-cuda", "--backend pyav-cuda: this PyAV's FFmpeg has no CUDA device type (it has [])")])
def test_bench_data_refuses_a_backend_this_machine_lacks_before_making_its_video(backend, said, monkeypatch, capsys):
    """``mme bench data --backend decord`` without decord made its test video, then failed naming it as a temp path
    ('/tmp/.../bench.mp4: the 'decord' backend is not installed'), and --backend pyav-cuda without NVDEC named
    data.backend: one line naming --backend now, before the video is made."""
    import importlib.util

    from mme.cli import main
    from mme.data import bench, pyav_reader

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "decord" else
                        find_spec(name, *args))
    monkeypatch.setattr(pyav_reader, "hwdevices_available", lambda: [])
    monkeypatch.setattr(pyav_reader, "_CUDA_DECODERS", {})
    made, generated_video = [], bench.generated_video
    monkeypatch.setattr(bench, "generated_video", lambda folder: made.append(generated_video(folder)) or made[-1])
    assert main(["bench", "data", "--backend", backend, "--clips", "2", "--workers", "0"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"mme bench data: error: {said}" and made == []


class _Sleeps(torch.utils.data.Dataset):
    """The items of a list, 0.2 s each (a sleep: the rate of ``w`` workers is 5 w clips/s, on a busy machine too)."""

    def __init__(self, cfg, track_length):
        self.n = len(Path(cfg.list_file).read_text().splitlines())

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        time.sleep(0.2)
        return {"index": i}


def test_bench_data_runs_its_reference_on_the_threads_it_prints(tmp_path, monkeypatch, capsys):
    """Without --threads the header printed torch's count while the 0-worker reference decoded with OpenCV's own
    (2 where torch had 1): this process runs both on the count printed, and the caller's counts come back after."""
    import cv2
    from videos import affine_video, write_video

    from mme.data import bench

    used = []
    monkeypatch.setattr(bench, "_throughput", lambda ds, w, b, c: used.append(
        (torch.get_num_threads(), cv2.getNumThreads())) or 1.0)
    video = str(write_video(tmp_path / "b.mp4", affine_video(24, 64, 64, dx=1.0)[0]))
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(2)
    try:
        figures = bench.bench_data(video=video, workers=[0], clips=1, batch=1, frames=4, stride=2, size=64, length=2)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 2)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
    assert used == [(1, 1)] * 3 and figures["threads"] == 1  # (each of its 3 rounds)
    assert " | 1 thread in this process, 1 per worker | " in capsys.readouterr().out.splitlines()[0]


def test_bench_datas_workers_on_one_core_are_said_naming_its_flag(tmp_path, monkeypatch, caplog):
    """``mme bench data --workers 2`` on one core is told of its loader workers by its own flag: "--workers=2 ...
    --workers=0 suits this machine", not the data.num_workers it does not take."""
    import logging

    from videos import affine_video, write_video

    from mme.cli import main
    from mme.data import bench

    monkeypatch.setattr(bench, "PretrainDataset", _Sleeps)
    monkeypatch.setattr(bench, "_stages", lambda *args: dict.fromkeys(
        ("open", "decode", "geometry", "to_tensor", "decoded_frames"), 0.0))
    video = str(write_video(tmp_path / "b.mp4", affine_video(24, 64, 64, dx=1.0)[0]))
    with on_one_core():
        with caplog.at_level(logging.WARNING, logger="mme"):
            assert main(["bench", "data", "--video", video, "--workers", "2", "--clips", "2", "--batch", "1",
                         "--frames", "4", "--stride", "2", "--size", "64"]) == 0
    assert [r.getMessage() for r in caplog.records if "loader workers on" in r.getMessage()] == [
        "--workers=2: 2 loader workers on 1 usable core wait for the CPU in turn, beside this process: --workers=0 "
        "suits this machine"]


def test_bench_data_refuses_a_worker_count_given_twice(tmp_path, monkeypatch, capsys):
    """`--workers 0 1 0 1` timed four loaders and printed two rows, each repeat's figure in place of the first's:
    refused in one line before any work."""
    from mme.cli import main
    from mme.data import bench
    from mme.train import bench_pipeline

    for module in (bench, bench_pipeline):  # (bench_pipeline binds its own name at import: patched there too, else
        # one first imported here kept the failing stand-in for the later tests of its process)
        monkeypatch.setattr(module, "generated_video", lambda folder: pytest.fail("a video made before the refusal"))
    assert main(["bench", "data", "--workers", "0", "1", "0", "1", "--json", str(tmp_path / "d.json")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == ["mme bench data: error: --workers 0 1 0 1: give each count once (a "
                                              "repeated one is timed again and only its last figure kept)"]
    assert not (tmp_path / "d.json").exists()


def test_bench_errors_name_the_flag_given_not_the_config_key(tmp_path, monkeypatch, capsys):
    """A bench flag's value the config refuses was named by its config key, which the user never typed
    (`--frames 1`: 'data.num_frames 1 is not a multiple of data.tubelet 2'; `--mask-ratio 1`: 'model.mask_ratio
    must be in [0, 1)'; `--preset x`: "config key 'model.preset'", now argparse's choice): now by the flag, before any
    work. A recipe's
    own value, not replaced by a flag, is still named by its key."""
    from mme.cli import main
    from mme.data import bench
    from mme.train import bench_pipeline

    for module in (bench, bench_pipeline):  # (bench_pipeline binds its own name at import: patched there too, else
        # one first imported here kept the failing stand-in for the later tests of its process)
        monkeypatch.setattr(module, "generated_video", lambda folder: pytest.fail("a video made before the refusal"))
    for argv, said in (
            (["data", "--frames", "1"], "--frames 1 is not a multiple of data.tubelet 2"),
            (["targets", "--frames", "3"], "--frames 3 is not a multiple of tubelet_size 2"),
            (["targets", "--size", "40"], "--size 40 is not a multiple of patch_size 16"),
            (["targets", "--kind", "mme,foo"], "--kind: unknown target ['foo']; choose from ['pixel', 'hog', 'mme', "
                                               "'mme-released']"),
            (["pipeline", "--frames", "1"], "--frames 1 is not a multiple of tubelet_size 2"),
            (["train", "--frames", "1"], "--frames 1 is not a multiple of tubelet_size 2"),
            (["train", "--recipe", "tiny_cpu_pixel", "--size", "40"],
             "--img-size 40 is not a multiple of patch_size 16"),
            (["train", "--mask-ratio", "1"], "--mask-ratio must be in [0, 1), got 1.0"),
            (["train", "--target", "foo"], "--target: unknown target ['foo']; choose from ['pixel', 'hog', 'mme', "
                                           "'mme-released']")):
        assert main(["bench", *argv, "--json", str(tmp_path / "b.json")]) == 1, argv
        out, err = capsys.readouterr()
        assert out == "" and err.splitlines() == [f"mme bench {argv[0]}: error: {said}"], argv
    assert not (tmp_path / "b.json").exists()
    recipe = tmp_path / "odd.yaml"
    recipe.write_text("_base_: tiny_cpu_pixel\nmodel:\n  num_frames: 3\n")
    assert main(["bench", "train", "--recipe", str(recipe), "--mask-ratio", "0.5"]) == 1
    assert capsys.readouterr().err.strip() == ("mme bench train: error: model.num_frames 3 is not a multiple of "
                                               "tubelet_size 2")


def test_bench_targets_and_train_refuse_a_target_kind_given_twice(tmp_path, monkeypatch, capsys):
    """`--kind mme,mme` was timed as `--kind mme`, while `bench data --workers 0 1 0 1` is refused for a count given
    twice: refused the same way (mme.utils.check_given_once), before any work, as `bench train --target`."""
    from mme.cli import main
    from mme.motion import bench

    monkeypatch.setattr(bench, "_generated_video", lambda *a: pytest.fail("a video made before the refusal"))
    why = "give each kind once (a repeated one adds nothing: the target has each of its heads once)"
    for argv in (["targets", "--kind", "mme,mme"], ["targets", "--kind", "mme, pixel,mme"],
                 ["train", "--target", "pixel,hog,pixel"]):
        assert main(["bench", *argv, "--json", str(tmp_path / "b.json")]) == 1, argv
        out, err = capsys.readouterr()
        assert out == "" and err.splitlines() == [f"mme bench {argv[0]}: error: {argv[1]} {argv[2]}: {why}"], argv
    assert not (tmp_path / "b.json").exists()


def test_bench_data_times_whole_rounds_of_its_workers_batches(tiny, monkeypatch):
    """The clock started at the first batch, which the workers made at once with the others of their first round,
    and the last round could have fewer batches than workers: 4 workers read 2.3x the clips/s they made."""
    from mme.data import bench

    monkeypatch.setattr(bench, "PretrainDataset", _Sleeps)
    video = str(tiny.root / tiny.lists["train"].read_text().split()[0])
    figures = bench.bench_data(video=video, workers=[4], clips=4, batch=2, frames=4, stride=2, size=64, length=2)
    made = 4 * 2 / 0.4  # 4 workers, each a batch of 2 items per 0.4 s
    assert made / 3 < figures["clips_per_s"]["4"] < 1.3 * made  # (below: a loaded machine slows them; above: counted)


def test_bench_data_times_its_worker_counts_in_turns_and_prints_each_ratios_range_over_rounds(tmp_path, monkeypatch,
                                                                                               capsys):
    """The worker counts were timed one after another, once, and their ratios printed to 0.01 (repeats on a shared
    machine: 0.96x, 0.86x, 1.19x): they take turns in each round now, and each ratio, the median of the rounds'
    own, is printed with its lowest and highest round and said to be of wall time."""
    from videos import affine_video, write_video

    from mme.data import bench

    speed = iter([10.0, 12.0, 5.0, 4.0, 10.0, 5.0])  # clips/s of (0, 2 workers), round by round
    calls = []
    monkeypatch.setattr(bench, "_throughput", lambda ds, w, b, c: calls.append(w) or next(speed))
    video = str(write_video(tmp_path / "b.mp4", affine_video(24, 64, 64, dx=1.0)[0]))
    figures = bench.bench_data(video=video, workers=[0, 2], clips=1, batch=1, frames=4, stride=2, size=64, length=2,
                               rounds=3)
    assert calls == [0, 2, 0, 2, 0, 2]  # in turns
    assert figures["clips_per_s"] == {"0": 10.0, "2": 5.0}  # each count's median round
    assert figures["ratio_rounds"] == {"0": [1.0, 1.0, 1.0], "2": [1.2, 0.8, 0.5]}  # each round's own
    printed = capsys.readouterr().out.splitlines()
    assert "       2      5.00          0.80x   0.50–1.20" in printed  # the median round's ratio, and the range
    assert [line for line in printed if line.startswith("(wall time; 3 rounds")]


def _eager_variants() -> list[str]:
    """What ``mme bench train`` times without options on this CPU: fp32, and bf16 and fp16 where each is native."""
    from mme.train.precision import bf16_native, fp16_native

    cpu = torch.device("cpu")
    return ["fp32 eager"] + ["bf16 eager"] * bf16_native(cpu) + ["fp16 eager"] * bool(fp16_native(cpu))


def test_bench_train_times_ours_and_the_hf_peer_at_one_configuration(tmp_path, capsys):
    from mme.train.bench import bench_train

    out = tmp_path / "bench.json"
    rows = bench_train(preset="tiny", img_size=32, frames=4, batch=2, steps=1, warmup=0, rounds=1, device="cpu",
                       profile=True, json_path=str(out))
    ours = _eager_variants()
    assert [r["variant"] for r in rows] == ours + [f"HF {v}" for v in ours] and rows[0]["ratio"] == 1.0
    assert all(r["clips_per_s"] > 0 and r["mfu"] > 0 for r in rows)
    peer = rows[len(ours)]
    assert peer["ours_vs_peer"] == pytest.approx(rows[0]["clips_per_s"] / peer["clips_per_s"])
    # one round: its own ratios are the best rounds' ones
    assert all(r["ratio_in_rounds"] == pytest.approx(r["ratio"]) for r in rows)
    assert peer["ours_vs_peer_in_rounds"] == pytest.approx(peer["ours_vs_peer"])
    bench = json.loads(out.read_text())
    for parts in bench["profile_ms_per_step"].values():  # every step profiled, each with an optimizer and matmuls
        assert parts["optimizer"] > 0 and parts["linear layers, patch embedding"] > 0
    assert bench["profile_time"] == "self CPU time of each op"  # on a GPU the kernels' time: the CPU only queues them
    check = bench["peer_check"]
    # 2x2x2 tokens, tube mask 0.7: int(0.7 * 4) = 2 of 4 per slice masked, so 4 visible and 4 masked per clip
    assert check["params"][0] == check["params"][1] and check["encoder_tokens"] == check["masked_tokens"] == [4, 4]
    assert check["attention"] == ["sdpa", "sdpa"] and check["loss_rel_diff"] <= 1e-5
    printed = capsys.readouterr().out
    assert "peer check" in printed and "where the step goes (torch.profiler: self CPU time of each op)" in printed
    # the peer's GFLOP/s are our step's FLOPs over its time (its own step counts more: it embeds every patch)
    table = [line for line in printed.splitlines() if "ms/step" in line]
    assert [("GFLOP/s (our FLOPs)" in line) for line in table] == [r["variant"].startswith("HF") for r in rows]
    assert len({line.index("MFU") for line in table}) == 1  # the columns kept aligned


def test_bench_train_ratios_in_rounds_pair_the_variants_of_each_round(monkeypatch):
    from mme.train import bench

    # seconds per step of (fp32, bf16, fp16), round by round: the machine 4x slower in round 2
    times = iter([1.0, 1.0, 2.0, 4.0, 1.0, 2.0, 2.0, 1.5, 2.0])
    monkeypatch.setattr(bench, "seconds_per_step", lambda step, steps, device: next(times))
    monkeypatch.setattr(bench, "matmul_peak", lambda dtype, device, size=None, seconds=1.0: (100.0, 256, "a·bᵀ"))
    rows = bench.bench_train(preset="tiny", img_size=32, frames=4, batch=2, steps=1, warmup=0, rounds=3,
                             device="cpu", all_precisions=True, peer=False)
    ratio = {r["precision"]: (r["ratio"], r["ratio_in_rounds"]) for r in rows}
    assert ratio["fp32"] == (1.0, 1.0)
    assert ratio["bf16"] == (1.0, pytest.approx(4 / 3))  # best rounds 1.0 / 1.0; rounds' ratios 1, 4, 4/3
    assert ratio["fp16"] == (0.5, 1.0)  # best rounds 1.0 / 2.0; rounds' ratios 0.5, 2, 1


def test_bench_train_prints_the_range_over_rounds_beside_every_ratio_and_the_spread_of_each_step(monkeypatch,
                                                                                                  capsys):
    """ms/step and the ratios were printed to 0.1 and 0.01 alone, where the rounds (and the matmul peak, by 34-283 %)
    could differ by far more: each ratio has its rounds' lowest and highest beside it, each step its rounds' spread,
    and the JSON each round's figures."""
    from mme.train import bench

    times = iter([1.0, 1.0, 2.0, 4.0, 1.0, 2.0, 2.0, 1.5, 2.0])  # (fp32, bf16, fp16) round by round, as above
    monkeypatch.setattr(bench, "seconds_per_step", lambda step, steps, device: next(times))
    monkeypatch.setattr(bench, "matmul_peak", lambda dtype, device, size=None, seconds=1.0: (100.0, 256, "a·bᵀ"))
    rows = bench.bench_train(preset="tiny", img_size=32, frames=4, batch=2, steps=1, warmup=0, rounds=3,
                             device="cpu", all_precisions=True, peer=False)
    fp16 = rows[2]
    assert fp16["ms_per_step_rounds"] == [2000.0] * 3 and fp16["ratio_rounds"] == [0.5, 2.0, 1.0]
    table = [line for line in capsys.readouterr().out.splitlines() if "ms/step" in line]
    assert "1000.0 ms/step (spread 300 %)" in table[0]  # fp32's rounds: 1, 4 and 2 s
    assert "x0.50 (1.00; rounds 0.50–2.00) vs fp32 eager" in table[2]
    assert len({line.index("MFU") for line in table}) == 1  # the columns kept aligned


def test_bench_train_profiles_its_eager_steps_in_turns_and_keeps_each_parts_best_round(tmp_path, monkeypatch):
    from mme.train import bench

    monkeypatch.setattr(bench, "seconds_per_step", lambda step, steps, device: 1.0)
    monkeypatch.setattr(bench, "matmul_peak", lambda dtype, device, size=None, seconds=1.0: (100.0, 256, "a·bᵀ"))
    parts = [part for part, _ in bench.PROFILE_PARTS]
    n = len(_eager_variants())
    profiled = []

    def profile_step(step, device):  # the first two parts: (3, 2) ms in round 0, (1, 5) ms in round 1
        profiled.append(step)
        first, second = [(3.0, 2.0), (1.0, 5.0)][(len(profiled) - 1) // n]
        return {**dict.fromkeys(parts, 1.0), parts[0]: first, parts[1]: second}

    monkeypatch.setattr(bench, "profile_step", profile_step)
    out = tmp_path / "bench.json"
    bench.bench_train(preset="tiny", img_size=32, frames=4, batch=2, steps=1, warmup=0, rounds=2, device="cpu",
                      peer=False, profile=True, json_path=str(out))
    assert len(set(profiled)) == n and profiled == profiled[:n] * 2  # each eager step once a round, in turns
    best = {**dict.fromkeys(parts, 1.0), parts[0]: 1.0, parts[1]: 2.0}  # each part's best round
    assert json.loads(out.read_text())["profile_ms_per_step"] == dict.fromkeys(_eager_variants(), best)


def test_bench_train_says_an_mfu_above_100_percent_comes_from_a_peak_timed_on_a_busier_machine(monkeypatch, capsys):
    from mme.train import bench

    monkeypatch.setattr(bench, "seconds_per_step", lambda step, steps, device: 1.0)
    for peak, said in ((1e-6, True), (1e6, False)):  # GFLOP/s: a tiny step's FLOPs per second are far above 1e-6
        monkeypatch.setattr(bench, "matmul_peak",
                            lambda dtype, device, size=None, seconds=1.0, peak=peak: (peak, 256, "a·bᵀ"))
        rows = bench.bench_train(preset="tiny", img_size=32, frames=4, batch=2, steps=1, warmup=0, rounds=1,
                                 device="cpu", peer=False)
        assert (rows[0]["mfu"] > 1) == said
        out = capsys.readouterr().out  # (fp32 eager, and bf16 eager on a CPU with native bf16)
        assert ("MFU above 100 % (fp32 eager" in out and "the matmul peak was timed while the machine was busier"
                in out) == said


def test_bench_train_keeps_each_rounds_matmul_peak_and_says_when_they_differ(monkeypatch, tmp_path, capsys):
    """Only the best round's peak was kept and printed, and only an MFU above 100 % was said to be doubtful: a
    peak timed high in one round on a loaded machine put MFU at 12.3 % where about 3 % was true, unsaid."""
    from mme.train import bench

    monkeypatch.setattr(bench, "seconds_per_step", lambda step, steps, device: 1.0)
    out = tmp_path / "bench.json"
    for peaks, said in (([100.0, 130.0, 110.0], "rounds differ by more than 20 % (fp32 30 %"),
                        ([100.0, 110.0, 105.0], None), ([100.0], "timed in one round only")):
        timings = {dtype: iter(peaks) for dtype in (torch.float32, torch.bfloat16)}
        monkeypatch.setattr(bench, "matmul_peak", lambda dtype, device, size=None, seconds=1.0, timings=timings:
                            (next(timings[dtype]), 512, "a·b"))
        bench.bench_train(preset="tiny", img_size=32, frames=4, batch=2, steps=1, warmup=0, rounds=len(peaks),
                          device="cpu", peer=False, json_path=str(out))
        peak = json.loads(out.read_text())["peaks"]["fp32"]
        assert peak == {"gflops": max(peaks), "size": 512, "layout": "a·b", "rounds": peaks}  # in their order
        printed = capsys.readouterr().out
        spread = (f"its {len(peaks)} rounds: min {min(peaks):.0f}, median {sorted(peaks)[len(peaks) // 2]:.0f}, max "
                  f"{max(peaks):.0f} (spread {100 * (max(peaks) / min(peaks) - 1):.0f} %)")
        assert (spread in printed) == (len(peaks) > 1)  # (one round: no spread to show)
        assert ("MFU is uncertain" in printed) == bool(said) and (said or "") in printed


class _LazyTransformers(types.ModuleType):
    """transformers whose VideoMAE fails to load at first use, as its lazy module does where torchvision does not
    match torch (transformers 5: a ModuleNotFoundError; 4.x: a RuntimeError)."""

    def __getattr__(self, name):
        raise ModuleNotFoundError("Failed to import transformers.models.videomae.modeling_videomae because of the "
                                  "following error (look up to see its traceback):\noperator torchvision::nms does "
                                  "not exist")


@pytest.mark.parametrize("target, transformers, why", [
    ("mme", "installed", "predicts pixels only"),
    ("pixel", None, "transformers cannot be imported (import of transformers halted; None in sys.modules; pip "
     "install transformers), so no to compare with"),  # (the peer's name taken out below)
    ("pixel", _LazyTransformers("transformers"), "transformers cannot load VideoMAEForPreTraining (Failed to import "
     "transformers.models.videomae.modeling_videomae because of the following error (look up to see its traceback): "
     "operator torchvision::nms does not exist)\n")])
def test_bench_train_skips_the_peer_with_a_reason(target, transformers, why, monkeypatch, capsys):
    """The peer skipped, with the reason, where it cannot be: a target other than pixels, transformers not
    installed, or its VideoMAE not loaded (before: a traceback at the peer's model)."""
    from mme.train.bench import bench_train

    if transformers != "installed":
        monkeypatch.setitem(sys.modules, "transformers", transformers)  # None: import transformers raises ImportError
    rows = bench_train(preset="tiny", img_size=32, frames=4, batch=2, steps=1, warmup=0, rounds=1, device="cpu",
                       target=target)
    assert [r["variant"] for r in rows] == _eager_variants()
    assert f"peer skipped: {why}" in capsys.readouterr().out.replace("HF VideoMAEForPreTraining ", "")


@pytest.mark.parametrize("size, frames, ratio", [(32, 4, 0.0), (16, 2, 0.7)])  # mask 0; a 1 x 1 x 1 grid at 0.7
def test_bench_train_refuses_a_mask_that_hides_no_token_as_pretraining_does(size, frames, ratio, capsys):
    from mme import cli

    argv = ["bench", "train", "--preset", "tiny", "--img-size", str(size), "--frames", str(frames), "--batch", "1",
            "--steps", "1", "--warmup", "0", "--rounds", "1", "--no-peer", "--mask-ratio", str(ratio)]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "masks no token" in captured.err and captured.err.count("\n") == 1 and "clips/s" not in captured.out


def test_bench_train_target_kind_keeps_the_recipes_other_target_settings():
    from mme.train.bench import _configs

    _, target, _, _ = _configs("mme_k400_released", None, None, None, None, "mme-released", None)
    assert (target.kind, target.activation, target.hog_style, target.track_length) == ("mme-released", "release",
                                                                                        "release", 4)
    _, target, _, _ = _configs("mme_k400_released", None, None, None, None, "pixel", None)
    assert target.heads == ["pixel"]


def test_bench_train_times_the_recipes_gradient_clipping_in_ours_and_the_peers_step(tmp_path, monkeypatch, capsys):
    """The step ran OptimConfig()'s settings whatever the recipe: a recipe's optim.clip_grad was never timed."""
    from mme.train import bench

    recipe = tmp_path / "clip.yaml"
    recipe.write_text("_base_: tiny_cpu_pixel\noptim:\n  clip_grad: 1.0\n  weight_decay: 0.1\n")
    clipped = []
    clip = torch.nn.utils.clip_grads_with_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grads_with_norm_",
                        lambda params, max_norm, *a, **k: (clipped.append(max_norm), clip(params, max_norm, *a, **k)))
    monkeypatch.setattr(bench, "matmul_peak", lambda dtype, device, size=None, seconds=1.0: (100.0, 256, "a·bᵀ"))
    out = tmp_path / "bench.json"
    for given, clips in ((str(recipe), 1.0), (None, None)):  # without a recipe: OptimConfig's, no clipping
        clipped.clear()
        rows = bench.bench_train(recipe=given, preset="tiny", img_size=32, frames=4, batch=2, steps=2, warmup=1,
                                 rounds=1, device="cpu", json_path=str(out))
        assert clipped == ([clips] * 3 * len(rows) if clips else [])  # each step of each variant: warm-up and timed
        assert len(rows) == 2 * len(_eager_variants())  # ours and the peer's
        assert json.loads(out.read_text())["optim"]["clip_grad"] == clips
        assert f"clip_grad {clips}, device cpu" in capsys.readouterr().out.splitlines()[0]
    assert bench._configs(str(recipe), None, None, None, None, None, None)[2].weight_decay == 0.1


def test_bench_train_profile_table_keeps_long_variant_names_apart():
    import re

    from mme.train.bench import PROFILE_PARTS, profile_table

    names = ["fp32 eager", "bf16 (emulated) eager", "HF bf16 (emulated) eager"]
    lines = profile_table({n: dict.fromkeys((part for part, _ in PROFILE_PARTS), 1.0) for n in names},
                          torch.device("cpu"))
    assert re.split(r"\s{2,}", lines[1].strip()) == names  # each name its own column, not run together
    assert len({len(line) for line in lines[1:]}) == 1 and lines[-1].split()[-1] == f"{len(PROFILE_PARTS):.1f}"


def test_bench_data_says_when_the_video_is_shorter_than_the_clips_window(tiny, capsys):
    from mme.data.bench import bench_data

    video = str(tiny.root / tiny.lists["train"].read_text().split()[0])  # 16 frames
    figures = bench_data(video=video, workers=[0], clips=1, batch=1, frames=4, stride=8, size=64, length=2)
    assert figures["window_frames"] == 25 and figures["video_shorter_than_window"]
    assert "shorter than the clip's window of 25 raw frames" in capsys.readouterr().out


def test_the_sdist_holds_the_test_suite_with_its_helpers_and_what_the_readmes_commands_run(tmp_path):
    """An sdist built from this tree (MANIFEST.in) holds tests/ with conftest.py and its helper modules, the Makefile,
    .ci, docs and benchmarks, and no caches. Before: tests/test_*.py alone, which could not be collected there."""
    pytest.importorskip("setuptools", minversion="77")  # pyproject.toml's build requirement (its licence field)
    repo = Path(__file__).resolve().parents[1]
    tree = tmp_path / "tree"
    shutil.copytree(repo, tree, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.pyc", ".*_cache", "*.egg-info", "build", "dist", "runs", "demo_out"))
    (tree / "tests" / "__pycache__").mkdir()
    (tree / "tests" / "__pycache__" / "conftest.cpython-311.pyc").write_bytes(b"")
    build = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    made = subprocess.run([sys.executable, "-c", build, str(tmp_path / "dist")], cwd=tree, capture_output=True,
                          text=True, check=True).stdout.split()[-1]
    with tarfile.open(tmp_path / "dist" / made) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    source = {p.relative_to(tree).as_posix() for top in ("tests", "docs", "benchmarks", ".ci")
              for p in (tree / top).rglob("*") if p.is_file()}
    assert {"tests/conftest.py", "tests/videos.py", "tests/training.py", "tests/worker_jobs.py", "Makefile",
            ".ci/run", "docs/reliability.md", "benchmarks/device_env.sh"} <= names
    assert source - {"tests/__pycache__/conftest.cpython-311.pyc"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make here")
def test_the_makefile_gives_pip_the_words_of_torch_as_arguments(tmp_path):
    """``make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"`` (the CPU build, where no
    local wheel is found and plain torch==2.13.0 is PyPI's CUDA build with GBs of nvidia-* wheels): the Makefile
    quoted TORCH as one requirement, and pip refused it ("Invalid requirement"). Its words are pip's arguments."""
    import shlex

    cpu = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    repo = Path(__file__).resolve().parents[1]
    dry = subprocess.run(["make", "-n", "-B", "-C", str(repo), "demo", f"VENV={tmp_path}", f"TORCH={cpu}"],
                         capture_output=True, text=True, timeout=30)
    assert dry.returncode == 0, dry.stderr
    [line] = [ln for ln in dry.stdout.splitlines() if "torch==" in ln]
    assert shlex.split(line.split("||")[-1]) == [f"{tmp_path}/bin/python", "-m", "pip", "install", "-q", *cpu.split()]
