"""`mme bench flow` on a tiny case: the figures are there and sane (values, never timings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mme.data.synth import generate_synth
from mme.errors import DataError
from mme.motion import bench_flow
from mme.motion.flow import DEFAULT_FLOW


def test_the_analytic_maps_are_the_rendered_motion():
    """Frame t is frame 0 moved by maps[t]: warping frame 0 with it gives frame t (away from the borders)."""
    import cv2

    for motion in bench_flow.MOTIONS:
        frames, maps = bench_flow.analytic_video(motion, 96, 4)
        moved = cv2.warpAffine(frames[0], maps[3][:2], (96, 96), flags=cv2.INTER_LINEAR)
        moved_err = np.abs(moved.astype(float) - frames[3])[16:-16, 16:-16].mean()
        still_err = np.abs(frames[0].astype(float) - frames[3])[16:-16, 16:-16].mean()
        assert moved_err < 1.5 and still_err > 10, motion  # 0.7-1.1 against 11-25 grey levels


def test_dis_tracks_a_pure_translation_to_a_tenth_of_a_pixel(tmp_path):
    frames, maps = bench_flow.analytic_video("translate", 112, 12)
    decoded = bench_flow.coded(frames, tmp_path, "t")
    e = bench_flow.track_errors(decoded, maps, "dis", 6)
    assert e["points"] > 100 and e["epe_step"] < 0.2 and e["epe_end"] < 0.5 and e["target_rmse_px"] < 0.2


def test_bench_flow_reports_every_method(tmp_path, capsys):
    data = generate_synth(tmp_path / "synth", preset="demo", num_classes=2, videos_per_class=4, size=64,
                          num_frames=20, workers=1, splits=(2, 1, 1)).root
    from mme.cli import main

    assert main(["bench", "flow", "--data", str(data), "--sizes", "64", "--scenes", "1", "--repeat", "1",
                 "--json", str(tmp_path / "flow.json")]) == 0
    r = json.loads((tmp_path / "flow.json").read_text())
    assert sorted(r["methods"]) == sorted(bench_flow.available_methods()) == sorted(r["ranking"])
    for m, row in r["methods"].items():
        for motion in bench_flow.MOTIONS:
            e = row[f"{motion}@64"]
            assert 0 < e["epe_step"] < 1.0 and e["points"] > 0, (m, motion)
        assert row["ms_pair@64"] > 0 and row["targets_ms_clip"] > 0
        for kind in ("px", "patchstd"):
            p = row["probe"]["synth"][kind]
            assert 0 <= p["val"] <= 1 and 0 <= p["test"] <= 1
        assert row["acc_per_ms"] > 0
    assert r["methods"]["dis"]["translate@64"]["epe_step"] < 0.3
    assert r["methods"]["dis"]["probe"]["synth"]["px"]["test"] == 1.0  # 2 classes of opposite pans
    out = capsys.readouterr().out
    shown = {m: f"{m} (default)" if m == DEFAULT_FLOW else m for m in r["methods"]}
    assert all(f"| {shown[m]} |" in out for m in r["methods"]) and "synth px" in out


def test_bench_flow_uses_the_demo_target():
    from mme.demo import TARGETS

    recipe, overrides = TARGETS["mme"]
    assert bench_flow.DEMO_TARGET == (recipe, tuple(overrides))


def test_bench_flow_refuses_bad_input_before_any_work(tmp_path):
    from mme.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match=r"^--methods: unknown flow method \['dis-slow'\]; choose from"):
        bench_flow.run(methods=["dis", "dis-slow"])
    for given, said in ((dict(methods=["dis", "farneback", "dis"]), "--methods dis farneback dis: give each method"),
                        (dict(sizes=(112, 112)), "--sizes 112 112: give each size once"),
                        (dict(data=["a/synth", "./a/synth/"]), r"--data a/synth \./a/synth/: give each folder once \(a "
                                                               r"repeat spelled otherwise is probed and reported again "
                                                               r"under each spelling\)$")):
        with pytest.raises(ConfigError, match=said):
            bench_flow.run(**given)
    # folders of one name elsewhere are named by their paths as given in the report; one alone, by its name
    assert list(bench_flow._named(["runs1/synth", "runs2/synth", "x/demo/", "."])) == [
        "runs1/synth", "runs2/synth", "demo", Path.cwd().name]

    data = generate_synth(tmp_path / "s", num_classes=2, videos_per_class=2, size=64, num_frames=20, workers=1,
                          splits=(1, 0, 0)).root
    with pytest.raises(DataError, match="val.txt"):
        bench_flow.target_features(data, ["dis"])


def test_the_flow_benchmarks_targets_refuse_a_flow_margin_they_would_not_read(tmp_path):
    """Its clips are centre crops read alone: a target.flow_margin among the overrides was taken and ignored, the
    targets reported as that setting's being of the crop alone."""
    from mme.errors import ConfigError

    overrides = (*bench_flow.DEMO_TARGET[1], "target.flow_margin=8")
    with pytest.raises(ConfigError, match=r"^target\.flow_margin=8: the flow benchmark reads its clips as centre "
                                          r"crops alone, without a margin"):
        bench_flow.target_features(tmp_path, ["dis"], overrides=overrides)


@pytest.mark.filterwarnings(r"ignore:std\(\)")  # 32 px: the PatchStd of no token
def test_bench_flow_refuses_sizes_that_judge_no_token_of_the_target(tmp_path):
    from mme.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--sizes \[32, 40\]: the trajectory target is judged per token"):
        bench_flow.bench_flow(sizes=[32, 40, 64], json_path=str(tmp_path / "flow.json"))
    assert not (tmp_path / "flow.json").exists()
    # the rule's reason: on a still scene the tracks judge no token at 32 px (its error was NaN), some at 48
    for size, judged in ((32, False), (48, True)):
        still = np.repeat(bench_flow.analytic_video("translate", size, 8)[0][:1], 8, axis=0)
        e = bench_flow.track_errors(still, np.repeat(np.eye(3)[None], 8, axis=0), "dis", 4)
        assert (e["tokens"] > 0) == judged and e["points"] > 0, size


def test_an_empty_split_list_is_no_split_of_the_probe(tmp_path):
    """`mme synth --splits 0.8 0 0.2` writes an empty val.txt (docs/evaluation.md's pan4 folder): read_list refused
    it ('no videos listed') before the probe's own message; a split of no videos is none, as for test.txt."""
    (tmp_path / "train.txt").write_text("a.mp4 0\n")
    (tmp_path / "val.txt").write_text("")
    with pytest.raises(DataError, match="the probe needs videos in train.txt and val.txt"):
        bench_flow.target_features(tmp_path, ["dis"])
