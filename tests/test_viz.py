"""`mme viz` pictures a person can read: panels upsampled to at least MIN_PANEL px, titled, masked patches dimmed,
track colours that follow the motion (as the key says), target and prediction in panels of their own; a pixel
model's masked input and reconstruction, de-normalised as its target was normalised."""

from __future__ import annotations

import errno
import os
import re
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence
from videos import affine_video, write_video

from mme.data.synth import encode_h264
from mme.data.transforms import to_video_tensor
from mme.errors import MMEError
from mme.motion import viz
from mme.motion.viz import MIN_PANEL, _direction_rgb, _upsample, prediction_picture, read_clip, tracks_picture


@pytest.fixture
def panels(monkeypatch) -> list[tuple[str, np.ndarray]]:
    """The titled panels of the next picture (the PNG is still written)."""
    seen = []
    figure = viz._figure

    def capture(p, *args):
        seen.extend(p)
        figure(p, *args)

    monkeypatch.setattr(viz, "_figure", capture)
    return seen


def added(panel: np.ndarray, under: np.ndarray, rgb: tuple[int, int, int], tol: int = 60) -> int:
    """Pixels of ``panel`` within ``tol`` of colour ``rgb`` that were not so in ``under``."""
    def near(img):
        return (np.abs(img.astype(int) - rgb) <= tol).all(-1)
    return int((near(panel) & ~near(under)).sum())


def tiny_model():
    from mme.models.config import ModelConfig

    return ModelConfig(img_size=64, num_frames=4, embed_dim=32, depth=1, num_heads=2, decoder_dim=16, decoder_heads=2,
                       head_hidden=16)


def test_a_track_is_drawn_on_its_pixel_of_the_upsampled_frame():
    """A pixel's centre on a frame shown f times larger is at (p + 0.5) f - 0.5: positions times f alone drew the
    tracks (f - 1) / 2 px up and to the left (2 px at the quick demo's x5)."""
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[10, 20] = 255
    big = _upsample(frame, 5)[..., 0].astype(float)
    ys, xs = np.nonzero(big == big.max())
    assert (xs.mean(), ys.mean()) == tuple(viz._on_upsampled(np.array([20.0, 10.0]), 5)) == (102.0, 52.0)


def test_track_colours_follow_the_direction_and_length_of_the_motion():
    d = np.array([[0, 0], [4, 0], [-4, 0], [0, 4], [0, -4], [1, 0]], float)  # px, image axes (y down)
    assert _direction_rgb(d, full=4.0).tolist() == [
        [255, 255, 255],  # still: white
        [255, 0, 0],  # right: red
        [0, 255, 255],  # left: cyan
        [127, 255, 0],  # down: yellow-green
        [128, 0, 255],  # up: violet
        [255, 192, 192],  # right by a quarter of full: pale red
    ]


@pytest.mark.parametrize("dx, colour", [(2.0, (255, 0, 0)), (-2.0, (0, 255, 255))])
def test_tracks_picture_has_one_upsampled_titled_panel_per_tubelet_coloured_by_motion(dx, colour, panels,
                                                                                       tmp_path):
    frames, _ = affine_video(24, 72, 96, dx=dx, seed=6)
    video = write_video(tmp_path / "v.mp4", frames)
    out = tracks_picture(str(video), tmp_path / "t.png", num_frames=4, stride=4, size=64, length=4)
    assert [t for t, _ in panels] == ["frame 0, tracks to 4", "frame 8, tracks to 12"]  # tubelet starts 0 and 8
    assert all(p.shape == (320, 320, 3) for _, p in panels)  # 64 px shown x5 (>= MIN_PANEL)
    w, h = Image.open(out).size
    assert w >= 2 * MIN_PANEL and h >= MIN_PANEL
    decoded = read_clip(str(video), 0, 4, 4, 64, 4).frames
    other = (0, 255, 255) if dx > 0 else (255, 0, 0)
    for (_, p), start in zip(panels, (0, 8)):  # ~8 px to the side in 4 frames: the tracks in full colour
        under = _upsample(decoded[start], 5)
        assert added(p, under, colour) > 300 and added(p, under, other) == 0


def test_compensated_tracks_are_drawn_and_coloured_by_their_motion_relative_to_the_camera(panels, tmp_path,
                                                                                          drawn_text):
    """A pan (the scene 2 px/frame to the left) under a square moving 1 px/frame to the right: with --compensate the
    picture was the one without it, every track coloured and drawn by its motion in the frame (the background cyan,
    'moving left'), though the compensated displacements held the background still and the square 3 px/frame to
    the right; a GIF's or MP4's frames are turned to the first one's view, where those tracks are drawn."""
    from videos import texture

    scene, square = texture(96, 200, seed=6), texture(24, 24, seed=7, scale=1.0)
    frames = []
    for t in range(20):
        f = scene[:, 2 * t: 2 * t + 128].copy()
        f[36:60, 20 + t: 44 + t] = square
        frames.append(f)
    video = str(write_video(tmp_path / "pan.mp4", np.stack(frames)))
    cyan, red, white = (0, 255, 255), (255, 0, 0), (255, 255, 255)
    decoded = read_clip(video, 0, 2, 4, 96, 4).frames
    under = _upsample(decoded[0], 3)
    tracks_picture(video, tmp_path / "plain.png", num_frames=2, stride=4, size=96, length=4)
    plain = panels[0][1]
    assert added(plain, under, cyan) > 1000  # in the frame the scene moves left
    panels.clear()
    tracks_picture(video, tmp_path / "comp.png", num_frames=2, stride=4, size=96, length=4, seed_stride=8,
                   compensate=True)
    comp = panels[0][1]
    assert added(comp, under, cyan) == 0 and added(comp, under, red) > 300  # the scene still, the square right
    rows = slice(3 * 30, 3 * 66)  # the square's rows (96 / 128 of 36..60, x3): its tracks, red, ~12 px long
    assert added(comp[rows], under[rows], red) > 0.9 * added(comp, under, red)
    scene_rows = np.r_[0:3 * 24, 3 * 72:len(comp)]
    assert added(comp[scene_rows], under[scene_rows], white, tol=10) > 200  # the scene's points: still, white dots
    assert "pan.mp4: point tracks over 4 frames, motion relative to the camera (compensated), one panel per tubelet" \
        in drawn_text
    gif = tmp_path / "comp.gif"
    tracks_picture(video, gif, num_frames=2, stride=4, size=96, length=4, compensate=True)
    shown = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(gif))][:5]
    top = (slice(0, 24), slice(8, 72))  # scene only, seen in every frame of the first tubelet (8 px panned)
    assert np.abs(shown[4][top].astype(int) - shown[0][top]).mean() < 8  # in the first frame's view: still
    assert np.abs(decoded[0][top].astype(int) - read_clip(video, 4, 2, 4, 96, 0).frames[0][top]).mean() > 20  # as coded


@pytest.mark.parametrize("name", ["deal_$5_and_$10.mp4", "cost $5 vs $6_x.mp4"], ids=["no-maths", "maths"])
def test_a_video_name_is_drawn_as_spelt(name, tmp_path, drawn_text):
    """A file name holding two '$' was read by matplotlib as maths: a parse error (exit 1, no picture), or where it
    parsed, a title without its '$' ('cost 5vs6_x.mp4', in italics)."""
    video = write_video(tmp_path / name, affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    out = tracks_picture(str(video), tmp_path / "t.png", num_frames=4, stride=2, size=64, length=2)
    assert Image.open(out).format == "PNG"
    title = f"{name}: point tracks over 2 frames, one panel per tubelet"
    assert drawn_text.get(title) is False  # drawn, as text


def test_a_name_in_characters_the_font_lacks_is_drawn_without_a_warning_of_each(tmp_path, drawn_text):
    """A CJK file name: matplotlib's fonts have no glyph for it, and each missing glyph was a UserWarning pointing at
    a line of mme; the name is drawn (as boxes) and the picture written."""
    video = write_video(tmp_path / "自転車.mp4", affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = tracks_picture(str(video), tmp_path / "t.png", num_frames=4, stride=2, size=64, length=2)
    assert [str(w.message) for w in caught] == []
    assert Image.open(out).format == "PNG"
    assert drawn_text.get("自転車.mp4: point tracks over 2 frames, one panel per tubelet") is False


def test_a_picture_that_cannot_replace_its_file_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """A GIF was written to a temporary name of its own, then moved: one that could not replace the file there was
    a bare PermissionError, its temporary file left (under a name no later run removes); so was a PNG or MP4."""
    frames, _ = affine_video(24, 72, 96, dx=2.0, seed=6)
    video = str(write_video(tmp_path / "v.mp4", frames))
    gif = tracks_picture(video, tmp_path / "t.gif", num_frames=4, stride=4, size=64, length=4)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 2 * 5  # 2 tubelets, each its first frame and the 4 after
    replace = os.replace

    def refused(src, dst):
        if Path(dst).parent == tmp_path / "out":
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), str(dst))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", refused)
    (tmp_path / "out").mkdir()
    for name in ("t.gif", "t.mp4", "t.png"):
        out = tmp_path / "out" / name
        out.write_bytes(b"an earlier picture")
        with pytest.raises(MMEError, match=rf"^{re.escape(str(out))}: could not be written \(Operation not "
                                           rf"permitted\); nothing is replaced$"):  # no space said: not its reason
            tracks_picture(video, out, num_frames=4, stride=4, size=64, length=4)
        assert out.read_bytes() == b"an earlier picture"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t.gif", "t.mp4", "t.png"]


def test_a_picture_that_cannot_be_drawn_is_one_line_and_keeps_the_picture_there(tmp_path, monkeypatch, capsys):
    """A RuntimeError of the drawing (matplotlib's, a font it cannot load; Pillow's writing a GIF) was a traceback
    from mme viz, whose picture is its only output: one line naming the picture and the reason, the earlier picture
    at --out kept. A matplotlib that cannot be imported was an ImportError traceback: one line too."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from mme.cli import main

    video = write_video(tmp_path / "a.mp4", affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    args = ["--num-frames", "4", "--stride", "2", "--size", "64"]
    reason = "In FT2Font: Could not set the fontsize (error code 0x17)"

    def fails(*_, **__):
        raise RuntimeError(reason)

    for name, where, attribute in (("t.png", FigureCanvasAgg, "draw"), ("t.gif", Image.Image, "save")):
        out = tmp_path / name
        assert main(["viz", str(video), "--out", str(out), *args]) == 0
        held = out.read_bytes()
        capsys.readouterr()
        with monkeypatch.context() as m:
            m.setattr(where, attribute, fails)
            assert main(["viz", str(video), "--out", str(out), *args]) == 1
        assert capsys.readouterr().err == f"mme viz: error: {out}: could not be drawn ({reason}); nothing is replaced\n"
        assert out.read_bytes() == held
    with monkeypatch.context() as m:  # a matplotlib that cannot be imported: literal_text's RuntimeError, inside
        m.setitem(sys.modules, "matplotlib", None)
        assert main(["viz", str(video), "--out", str(tmp_path / "t.png"), *args]) == 1
    assert capsys.readouterr().err == (f"mme viz: error: {tmp_path / 't.png'}: could not be drawn (matplotlib cannot "
                                       "be imported (import of matplotlib halted; None in sys.modules); pip install "
                                       "matplotlib); nothing is replaced\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "t.gif", "t.png"]


def test_a_one_frame_video_is_said_to_hold_1_frame(tmp_path, caplog):
    """`mme viz` of a 1-frame video said 'one.mp4: 1 frames; ...' (and refused a late --start with '1 frames'): the
    count reads as `mme check`'s does (mme.utils.counted), '1 frame', '2 frames'."""
    import logging

    frames, _ = affine_video(2, 32, 32, dx=1.0, seed=0)
    for n in (1, 2):
        path = write_video(tmp_path / f"v{n}.mp4", frames[:n])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mme"):
            sample = read_clip(str(path), 0, 4, 1, 32, 2)
        assert sample.frames.shape[0] == n
        said = f"{n} frame{'s' * (n > 1)}; 4 frames at stride 1 from frame 0, with tracks of 2, need 5"
        assert [r.getMessage() for r in caplog.records] == [
            f"{path}: {said}: its last frame repeats, as training reads a video this short"]
        late = said.replace("frame 0", "frame 1").replace("need 5", "need 6")
        with pytest.raises(MMEError, match=f"^{re.escape(str(path))}: too short \\({late}; "):
            read_clip(str(path), 1, 4, 1, 32, 2)


def test_a_seed_out_of_range_is_refused_before_any_work(tmp_path, capsys):
    """--seed 2**64 (argparse's count takes any whole number >= 0) was taken, and with --checkpoint ended in torch's
    ValueError traceback at the mask's draw (Overflow when unpacking long long), once the model was read; --seed
    goes through check_seed, as mme demo's and mme synth's do."""
    from mme.cli import main

    video = write_video(tmp_path / "a.mp4", affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    out = tmp_path / "t.png"
    with pytest.raises(SystemExit):  # (argparse's, as for any whole-number flag past int64)
        main(["viz", str(video), "--out", str(out), "--seed", str(2**64), "--num-frames", "4", "--stride", "2",
              "--size", "64"])
    assert capsys.readouterr().err.splitlines()[-1] == ("mme viz: error: argument --seed: 18446744073709551616 does "
                                                        "not fit a 64-bit integer (at most 2**63 - 1 = "
                                                        "9223372036854775807 in size)")
    assert not out.exists()
    with pytest.raises(MMEError, match=r"^--seed: a seed must be an integer, got True$"):
        viz.draw_picture(str(video), out, seed=True)


def test_viz_refuses_a_mask_seed_without_a_checkpoint(tmp_path, capsys):
    """``--seed 3`` without --checkpoint (its help: the mask seed, with --checkpoint) drew the tracks picture, which
    masks nothing, exit 0, the seed dropped without a word; refused now, nothing written."""
    from mme.cli import main

    video = write_video(tmp_path / "a.mp4", affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    args = ["viz", str(video), "--out", str(tmp_path / "t.png"), "--num-frames", "4", "--stride", "2", "--size", "64"]
    assert main([*args, "--seed", "3"]) == 1
    assert capsys.readouterr().err == ("mme viz: error: --seed draws the mask of --checkpoint's model; a picture of "
                                       "tracks masks nothing: leave it out\n")
    assert not (tmp_path / "t.png").exists()
    assert main(args) == 0 and (tmp_path / "t.png").is_file()


def test_viz_refuses_an_out_that_is_the_video_drawn_however_it_is_reached(tmp_path, capsys):
    """--out naming the video (itself, a symbolic link to it, a hard link) replaced the video with the picture,
    exit 0, and later runs read the drawing as the video."""
    from mme.cli import main

    video = write_video(tmp_path / "v.mp4", affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    held = video.read_bytes()
    (tmp_path / "link.gif").symlink_to(video)
    os.link(video, tmp_path / "hard.png")
    for out in (video, tmp_path / "link.gif", tmp_path / "hard.png"):
        assert main(["viz", str(video), "--out", str(out), "--num-frames", "4", "--stride", "2", "--size", "64"]) == 1
        assert capsys.readouterr().err == (f"mme viz: error: --out {out}: is {video}, the video drawn; write the "
                                           "picture elsewhere\n")
        assert video.read_bytes() == held
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.png", "link.gif", "v.mp4"]


def test_viz_replaces_its_own_picture_and_another_file_only_with_overwrite(tmp_path, capsys):
    """`mme viz a.mp4 --out b.mp4` replaced b.mp4, another video of the user's, exit 0, and later runs read the
    drawing as data; its own pictures (PNG, GIF, MP4) are replaced by a rerun as before."""
    from mme.cli import main

    video = write_video(tmp_path / "a.mp4", affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    other = write_video(tmp_path / "b.mp4", affine_video(40, 64, 64, dy=1.0, seed=7)[0])
    held = other.read_bytes()
    notes = tmp_path / "notes.png"
    Image.new("RGB", (8, 8)).save(notes)
    args = ["--num-frames", "4", "--stride", "2", "--size", "64"]
    for out in (other, notes):
        before = out.read_bytes()
        assert main(["viz", str(video), "--out", str(out), *args]) == 1
        assert capsys.readouterr().err == (f"mme viz: error: --out {out}: already holds a file mme viz did not write "
                                           "(not a picture of its own); give --overwrite to replace it, or another "
                                           "--out\n")
        assert out.read_bytes() == before
    assert other.read_bytes() == held
    for name in ("t.png", "t.gif", "t.mp4"):
        out = tmp_path / name
        for _ in range(2):  # the rerun replaces the picture it wrote
            assert main(["viz", str(video), "--out", str(out), *args]) == 0
            assert capsys.readouterr().out == f"viz: wrote {out}\n"
    assert main(["viz", str(video), "--out", str(other), *args, "--overwrite"]) == 0
    assert other.read_bytes() != held and viz._drawn_by_viz(other)
    assert main(["viz", str(video), "--out", str(video), *args, "--overwrite"]) == 1  # the video drawn, never
    assert capsys.readouterr().err.endswith(f"--out {video}: is {video}, the video drawn; write the picture "
                                            "elsewhere\n")


def test_a_picture_of_vizs_is_told_from_one_opening(tmp_path, monkeypatch):
    """Its mark and the digest of its frames are read from one opening of the file (an MP4 was opened twice)."""
    from PIL import Image

    video = write_video(tmp_path / "a.mp4", affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    opened = []

    def counted(module):
        real = module.open

        def open_(*args, **kwargs):
            opened.append(module.__name__)
            return real(*args, **kwargs)
        return open_

    for name, module in (("t.mp4", av), ("t.png", Image)):
        tracks_picture(str(video), tmp_path / name, num_frames=4, stride=2, size=64, length=2)
        with monkeypatch.context() as m:
            m.setattr(module, "open", counted(module))
            assert viz._drawn_by_viz(tmp_path / name)
    assert opened == ["av", "PIL.Image"]


def test_a_picture_made_from_vizs_keeps_its_comment_and_is_not_taken_for_vizs(tmp_path, capsys):
    """A GIF made from viz's (every other frame, half size, saved by Pillow), an MP4 cut from viz's (its comment
    copied) and a PNG of viz's edited in place kept viz's mark: viz replaced the user's edit without --overwrite.
    The mark holds the digest of the frames viz wrote."""
    from PIL import ImageSequence

    from mme.cli import main

    video = write_video(tmp_path / "a.mp4", affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    args = ["--num-frames", "4", "--stride", "2", "--size", "64"]
    for name in ("t.gif", "t.mp4", "t.png"):
        assert main(["viz", str(video), "--out", str(tmp_path / name), *args]) == 0
        assert viz._drawn_by_viz(tmp_path / name)
    with Image.open(tmp_path / "t.gif") as im:
        frames = [f.convert("RGB").resize((f.width // 2, f.height // 2)) for f in ImageSequence.Iterator(im)][::2]
        comment = im.info["comment"]
    frames[0].save(tmp_path / "edit.gif", save_all=True, append_images=frames[1:], duration=200, loop=0)
    assert Image.open(tmp_path / "edit.gif").info["comment"] == comment  # Pillow carries it over
    with av.open(str(tmp_path / "t.mp4")) as container:
        cut = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][:3]
        comment = container.metadata["comment"]
    encode_h264(tmp_path / "edit.mp4", np.stack(cut), fps=10, comment=comment)
    with Image.open(tmp_path / "t.png") as im:
        edited, comment = im.convert("RGB"), im.info["Comment"]
    edited.putpixel((0, 0), (255, 0, 0))
    edited.save(tmp_path / "edit.png", pnginfo=_png_comment(comment))
    for out in (tmp_path / "edit.gif", tmp_path / "edit.mp4", tmp_path / "edit.png"):
        before = out.read_bytes()
        assert main(["viz", str(video), "--out", str(out), *args]) == 1
        assert capsys.readouterr().err.startswith(f"mme viz: error: --out {out}: already holds a file mme viz did "
                                                  "not write")
        assert out.read_bytes() == before


def test_a_marked_video_is_encoded_once_and_holds_the_digest_of_its_frames(tmp_path, monkeypatch):
    """The marked MP4 was encoded twice (a first time for the digest of its frames, a second for its mark) and the
    GIF saved twice: each is written once, and its mark holds the digest of the frames it decodes to."""
    import mme.data.synth as synth

    images = [np.full((32, 32, 3), 10 * k, np.uint8) for k in range(6)]
    encoded, encode = [], synth.encode_h264
    monkeypatch.setattr(synth, "encode_h264", lambda *a, **k: encoded.append(k["comment"]) or encode(*a, **k))
    saved, save = [], Image.Image.save
    monkeypatch.setattr(Image.Image, "save", lambda im, path, *a, **k: saved.append(path) or save(im, path, *a, **k))
    for name in ("t.mp4", "t.gif"):
        viz._save_frames(images, tmp_path / name)
        with viz._opened_picture(tmp_path / name) as (mark, frames):
            assert mark == f"{viz.DRAWN_BY} {viz._digest(frames)}"
    assert len(encoded) == 1 and len(saved) == 1


def _png_comment(text: str):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", text)
    return info


def test_viz_refuses_a_users_png_whose_text_pillow_will_not_read_in_one_line(tmp_path, capsys, monkeypatch):
    """A user's PNG holding more text than Pillow reads (a zTXt of 2 MB unpacked, text chunks past its memory
    limit): looking for viz's mark in it was a ValueError traceback from Pillow; it is a file viz did not write."""
    import struct
    import zlib

    from PIL import PngImagePlugin

    from mme.cli import main

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    video = write_video(tmp_path / "a.mp4", affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    plain = (tmp_path / "plain.png").read_bytes()
    header = 8 + 25  # the signature and IHDR: text chunks follow
    texts = {"xmp.png": chunk(b"zTXt", b"XML:com.adobe.xmp\0\0" + zlib.compress(b" " * 2_000_000)),
             "notes.png": b"".join(chunk(b"tEXt", b"note%d\0" % i + b"x" * 1000) for i in range(5))}
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 4000)  # Pillow's 64 MB, met by 5 kB here
    for name, text in texts.items():
        out = tmp_path / name
        out.write_bytes(plain[:header] + text + plain[header:])
        before = out.read_bytes()
        assert main(["viz", str(video), "--out", str(out), "--num-frames", "4", "--stride", "2", "--size", "64"]) == 1
        assert capsys.readouterr().err == (f"mme viz: error: --out {out}: already holds a file mme viz did not write "
                                           "(not a picture of its own); give --overwrite to replace it, or another "
                                           "--out\n")
        assert out.read_bytes() == before


def test_prediction_picture_shows_frame_target_and_prediction_apart_with_masked_patches_dimmed(panels, tmp_path):
    from mme.models.export import save_pretrained
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, head_specs

    frames, _ = affine_video(24, 64, 64, dx=2.0, seed=6)
    video = write_video(tmp_path / "v.mp4", frames)
    m = tiny_model()
    torch.manual_seed(0)
    model = MaskedAutoencoder(m, head_specs(TargetConfig(kind="mme-released"), m))
    save_pretrained(model, tmp_path / "ckpt")
    out = prediction_picture(str(video), str(tmp_path / "ckpt"), tmp_path / "p.png", stride=4)
    assert [t for t, _ in panels] == [f"{name}frame {s}" for s in (0, 8) for name in (  # (PatchStd targets)
        "", "target tracks (PatchStd), ", "predicted tracks (PatchStd), ")]
    w, h = Image.open(out).size
    assert w >= 3 * MIN_PANEL and h >= 2 * MIN_PANEL  # a row of three readable panels per tubelet
    decoded = read_clip(str(video), 0, 4, 4, 64, 4).frames
    masked = model.make_mask(1, torch.Generator().manual_seed(0))[0].reshape(m.grid).numpy()
    for k in range(2):
        frame, target, pred = (p.astype(float) for _, p in panels[3 * k: 3 * k + 3])
        assert np.array_equal(frame, _upsample(decoded[8 * k], 5))
        is_masked = np.kron(masked[k], np.ones((5 * 16, 5 * 16), bool))  # token grid -> panel px
        ratio = target.mean(-1) / np.maximum(frame.mean(-1), 1)
        assert abs(np.median(ratio[is_masked]) - viz.DIM) < 0.05  # masked patches dimmed
        assert (target == frame).all(-1)[~is_masked].mean() > 0.9  # visible ones as they are, bar stray tracks
        assert added(target, frame, viz.TARGET_RGB) > 100 and added(target, frame, viz.PRED_RGB) == 0
        assert added(pred, frame, viz.PRED_RGB) > 100 and added(pred, frame, viz.TARGET_RGB) == 0
        assert (target != pred).any(-1)[is_masked].mean() > 0.02  # the two motions drawn differ


def test_a_checkpoints_picture_is_drawn_the_same_under_a_callers_float64_default_dtype(panels, tmp_path):
    """A caller's ``torch.set_default_dtype(torch.float64)``: the model was built in float64 and refused the float32
    clip, advising ``x.to(torch.float64)``, which no caller of ``prediction_picture`` (nor of mme viz) can give."""
    from mme.models.export import save_pretrained
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, head_specs

    video = write_video(tmp_path / "v.mp4", affine_video(24, 64, 64, dx=2.0, seed=6)[0])
    m = tiny_model()
    torch.manual_seed(0)
    save_pretrained(MaskedAutoencoder(m, head_specs(TargetConfig(kind=["mme-released", "pixel"]), m)), tmp_path / "ck")
    prediction_picture(str(video), str(tmp_path / "ck"), tmp_path / "a.png", stride=4)
    drawn = [p for _, p in panels]
    panels.clear()
    torch.set_default_dtype(torch.float64)
    try:
        prediction_picture(str(video), str(tmp_path / "ck"), tmp_path / "b.png", stride=4)
        assert torch.get_default_dtype() == torch.float64  # the caller's
    finally:
        torch.set_default_dtype(torch.float32)
    assert len(panels) == len(drawn) == 10 and all(np.array_equal(a, b) for a, (_, b) in zip(drawn, panels))


@pytest.mark.parametrize("run_target, stride", [
    ({"flow": "farneback", "max_disp": 1.0, "patch_norm": False, "prune": True}, 2),
    ({"interpolate": False, "patch_norm": False, "position_unit": 1.0}, 2),
    ({"flow": "torch-lk"}, 4),
    ({"flow_margin": 8, "patch_norm": False, "position_unit": 1.0}, 2),
])
def test_prediction_picture_draws_the_targets_its_run_trained_on(run_target, stride, monkeypatch, tmp_path):
    """The target panels were tracks of the default flow over the CLI's stride, unbounded (2x a run's max_disp
    of 1 px), with no pruning or interpolate=false, or of the crop alone where the run's workers' flow read a
    margin of the video around it: motion the run never supervised."""
    import dataclasses

    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, TargetFn, head_specs

    frames, _ = affine_video(24, 64, 80, dx=2.0, seed=6)  # 8 px of video on either side of the 64² centre crop
    video = str(write_video(tmp_path / "v.mp4", frames))
    m = tiny_model()
    run = TargetConfig(kind="mme", track_length=4, **run_target)
    heads = head_specs(run, m)
    model = MaskedAutoencoder(m, heads)
    torch.save({"model": model.state_dict(), "heads": [dataclasses.asdict(h) for h in heads],
                "config": {"model": dataclasses.asdict(m), "target": dataclasses.asdict(run),
                           "data": {"stride": stride}}}, tmp_path / "checkpoint.pth")
    drawn = {}
    draw = viz._prediction_panels

    def capture(frames, starts, tokens, target, *rest):
        drawn.update(starts=list(starts), target=target)
        return draw(frames, starts, tokens, target, *rest)

    monkeypatch.setattr(viz, "_prediction_panels", capture)
    prediction_picture(video, str(tmp_path / "checkpoint.pth"), tmp_path / "p.png")
    assert drawn["starts"] == [0, 2 * stride]  # tubelet starts of the run's clip stride
    clip = read_clip(video, 0, 4, stride, 64, 4, flow_margin=run.flow_margin)
    assert (clip.flow_frames is None) == (not run.flow_margin)
    trained = TargetFn(run, m).targets(clip)[0]["traj"]
    mask = model.make_mask(1, torch.Generator().manual_seed(0))[0]
    assert torch.equal(drawn["target"], trained[mask])
    if run.flow_margin:  # the crop alone's targets differ
        assert not torch.equal(TargetFn(run, m).targets(read_clip(video, 0, 4, stride, 64, 4))[0]["traj"], trained)
    if not run.patch_norm:  # 2 px per frame to the right, in the run's unit: bounded at 1 px, or as it is
        x = drawn["target"].reshape(len(drawn["target"]), 2, 4, 4)[:, 0]
        assert x.median() == pytest.approx(1.0 if run.max_disp else 2.0, abs=0.1)


@pytest.mark.parametrize("trained_compensated", [False, True], ids=["run-without", "run-with"])
def test_compensated_targets_of_a_run_trained_without_compensation_are_warned_of_and_titled(
        trained_compensated, monkeypatch, tmp_path, caplog, drawn_text):
    """--compensate with a checkpoint of a run trained without target.compensate drew compensated targets against
    predictions of the motion in the frame, nothing said, where the docstring said the targets were made as the run's
    training made them; a run trained with it draws its own targets, as without the flag."""
    import dataclasses
    import logging

    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, TargetFn, head_specs

    video = str(write_video(tmp_path / "v.mp4", affine_video(24, 64, 64, dx=2.0, seed=6)[0]))
    m = tiny_model()
    run = TargetConfig(kind="mme", track_length=4, compensate=trained_compensated)
    heads = head_specs(run, m)
    model = MaskedAutoencoder(m, heads)
    ck = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict(), "heads": [dataclasses.asdict(h) for h in heads],
                "config": {"model": dataclasses.asdict(m), "target": dataclasses.asdict(run),
                           "data": {"stride": 4}}}, ck)
    drawn = {}
    draw = viz._prediction_panels

    def capture(frames, starts, tokens, target, *rest):
        drawn.update(target=target)
        return draw(frames, starts, tokens, target, *rest)

    monkeypatch.setattr(viz, "_prediction_panels", capture)
    caplog.set_level(logging.WARNING, logger="mme")
    prediction_picture(video, str(ck), tmp_path / "p.png", compensate=True)
    compensated = TargetFn(dataclasses.replace(run, compensate=True), m).targets(read_clip(video, 0, 4, 4, 64, 4))[0]
    assert torch.equal(drawn["target"], compensated["traj"][model.make_mask(1, torch.Generator().manual_seed(0))[0]])
    warned = [r.getMessage() for r in caplog.records if "--compensate" in r.getMessage()]
    title = "motion within the masked patches (PatchStd) relative to the camera (compensated), target vs predicted"
    assert any(text.endswith(title) for text in drawn_text)
    note = ("targets compensated by --compensate; its run trained without: the predictions are of the motion in the "
            "frame")
    if trained_compensated:
        assert warned == [] and note not in drawn_text
    else:
        assert warned == [
            f"viz: --compensate draws targets of the motion relative to the camera, but {ck}'s run trained without "
            "target.compensate: its predictions are of the motion in the frame, the camera's included, so the two "
            "differ by the camera's motion; leave --compensate out to draw the targets its run trained on"]
        assert note in drawn_text


@pytest.mark.parametrize("patch_norm", [True, False])
def test_a_patchstd_models_picture_says_its_targets_are_motion_within_each_patch(patch_norm, tmp_path, drawn_text):
    """A PatchStd model's targets (tiny_cpu_mme's, the released layout's) are each point's motion relative to its
    patch, a patch moving as one drawn as dots; its picture's key said 'target: tracked motion' and its title
    'motion of the masked patches', its panels 'target tracks', as a model of position targets'
    (target.patch_norm=false) still say."""
    import dataclasses

    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, head_specs

    video = str(write_video(tmp_path / "v.mp4", affine_video(24, 64, 64, dx=2.0, seed=6)[0]))
    m = tiny_model()
    run = TargetConfig(kind="mme", track_length=4, patch_norm=patch_norm)
    heads = head_specs(run, m)
    torch.save({"model": MaskedAutoencoder(m, heads).state_dict(), "heads": [dataclasses.asdict(h) for h in heads],
                "config": {"model": dataclasses.asdict(m), "target": dataclasses.asdict(run),
                           "data": {"stride": 4}}}, tmp_path / "checkpoint.pth")
    prediction_picture(video, str(tmp_path / "checkpoint.pth"), tmp_path / "p.png")
    said = {"title": next(text.split(": ", 1)[1] for text in drawn_text if text.startswith("v.mp4, checkpoint.pth")),
            "target": [text for text in drawn_text if text.startswith("target:")],
            "note": [text for text in drawn_text if text.startswith("PatchStd:")]}
    tracks = "tracks (PatchStd)" if patch_norm else "tracks"
    assert {f"target {tracks}, frame 0", f"predicted {tracks}, frame 0"} <= set(drawn_text)
    if patch_norm:
        assert said == {"title": "motion within the masked patches (PatchStd), target vs predicted",
                        "target": ["target: motion within"], "note": [
                            "PatchStd: each point's motion less its patch's mean, divided by their standard "
                            "deviation: a patch moving as one (a pan) draws as dots"]}
        assert {"the patch (PatchStd)", "predicted motion", "within the patch"} <= set(drawn_text)
    else:
        assert said == {"title": "motion of the masked patches, target vs predicted",
                        "target": ["target: tracked motion"], "note": []}
        assert "predicted motion" in drawn_text and "within the patch" not in drawn_text


def test_viz_of_a_checkpoint_that_records_no_run_says_what_it_takes_on_trust(tmp_path, caplog):
    """A checkpoint that records no run (an export made before exports carried their run, an original file) was
    drawn at stride 4, as coded, with the released traj target (PatchStd of 2 x 2 points) and VideoMAE's pixel
    normalisation, said in two info lines (stride, orientation) or not at all: the warning ``mme embed`` gives such a
    file now names each, and the options that set them; what the command line gives is not named."""
    import logging

    from mme.models.export import save_pretrained
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, head_specs

    frames, _ = affine_video(24, 64, 64, dx=2.0, seed=6)
    video = str(write_video(tmp_path / "v.mp4", frames))
    m = tiny_model()
    torch.manual_seed(0)
    save_pretrained(MaskedAutoencoder(m, head_specs(TargetConfig(kind=["mme-released", "pixel"]), m)), tmp_path / "ck")
    caplog.set_level(logging.INFO, logger="mme")
    prediction_picture(video, str(tmp_path / "ck"), tmp_path / "p.png")
    (said,) = [r for r in caplog.records if "records no run" in r.getMessage()]
    assert said.levelno == logging.WARNING and said.getMessage().startswith(f"viz: {tmp_path / 'ck'} (mme mae) ")
    assert said.getMessage().endswith(
        "so its run may have had other settings than these, taken on trust: stride 4; orientation coded; backend pyav; "
        "the traj target of the released layout (PatchStd, 4 points a patch, tracks of 4 steps, flow dis-balanced); "
        "pixels normalised per patch (VideoMAE's norm_pix_loss default); give them with --stride, --orientation, "
        "--backend")
    assert "(default)" not in caplog.text  # no info line besides
    caplog.clear()
    prediction_picture(video, str(tmp_path / "ck"), tmp_path / "p.png", stride=2, orientation="coded", backend="pyav")
    (said,) = [r.getMessage() for r in caplog.records if "records no run" in r.getMessage()]
    assert "taken on trust: the traj target of the released layout" in said and "give them with" not in said


@pytest.mark.parametrize("norm_pix", [True, False])
def test_the_reconstruction_of_the_exact_pixel_target_is_the_clip(norm_pix):
    """The key identity of the reconstruction picture: fed the exact target of the masked patches in place of the
    prediction, it gives back the clip's pixels (de-normalised with each input patch's mean and std under norm_pix,
    a flat patch included); its visible patches are the input's whatever the prediction."""
    from mme.motion.targets import pixel_target
    from mme.motion.viz import reconstruction, token_frames

    m = tiny_model()
    frames = affine_video(4, 64, 64, dx=2.0, seed=6)[0]
    frames[:, :16, :16] = (77, 150, 20)  # a flat token: norm_pix's z-score is 0 there, its std 0
    x = to_video_tensor(frames)[None]
    mask = torch.from_numpy(np.random.default_rng(0).random(32) < 0.5)
    mask[0] = True
    pixels = pixel_target(x, 2, 16, norm=False)[0].unflatten(-1, (-1, 3))  # (N, 2*16*16, 3) in [0, 1]
    exact = reconstruction(x, pixel_target(x, 2, 16, norm=norm_pix)[0][mask], mask, 2, 16, norm_pix)
    torch.testing.assert_close(exact, pixels, atol=2e-6, rtol=0)  # a biased std: ~1e-4 off; no 1e-6: ~3e-6
    assert np.array_equal(token_frames(exact, m), frames)
    off = reconstruction(x, torch.zeros(int(mask.sum()), 2 * 16 * 16 * 3), mask, 2, 16, norm_pix)
    assert torch.equal(off[~mask], pixels[~mask])
    if norm_pix:  # a prediction of zeros is each masked patch's mean colour
        torch.testing.assert_close(off[mask], pixels[mask].mean(1, keepdim=True).expand_as(off[mask]))
    else:
        assert (off[mask] == 0).all()


def test_viz_of_a_pixel_mae_draws_the_masked_input_and_its_reconstruction(monkeypatch, tmp_path, capsys):
    """`mme viz --checkpoint` of a pixel (VideoMAE) run: per tubelet its frame, the masked input (masked patches
    grey) and the reconstruction (the input where visible, the de-normalised prediction where masked), with the
    run's stride, norm_pix and the seeded mask. On colour ramps every patch has the same normalised pixels, so 30
    steps of training predict them better than each patch's mean colour (what a prediction of zeros shows)."""
    from training import FP32, run

    from mme.cli import main
    from mme.models.checkpoint import load_model

    t, y, x = np.meshgrid(np.arange(24), np.arange(64), np.arange(64), indexing="ij")
    video = write_video(tmp_path / "ramps.mp4", np.stack([40 + 2.5 * x + 2 * t, 40 + 2.5 * y, 200 - 2 * x], -1))
    (tmp_path / "list.txt").write_text("ramps.mp4\n" * 4)
    r = run("tiny_cpu_pixel", [f"data.list_file={tmp_path / 'list.txt'}", f"data.root={tmp_path}"], tmp_path / "run",
            "train.steps=30", FP32)
    drawn, figure = {}, viz._figure

    def capture(panels, cols, title, *rest):
        drawn.update(panels=panels, title=title)
        figure(panels, cols, title, *rest)

    monkeypatch.setattr(viz, "_figure", capture)
    assert main(["viz", str(video), "--checkpoint", str(r.checkpoint), "--out", str(tmp_path / "r.png"),
                 "--seed", "3"]) == 0
    starts = [0, 4, 8, 12]  # tubelets of 2 frames at the run's stride 2
    assert [title for title, _ in drawn["panels"]] == [f"{name}frame {s}" for s in starts
                                               for name in ("", "masked input, ", "reconstruction, ")]
    assert "norm_pix: each predicted patch de-normalised with the mean and std of the input's" in drawn["title"]
    clip = read_clip(str(video), 0, 8, 2, 64, 0)
    decoded = clip.frames.astype(float)  # 15 raw frames: the clip's are the even ones
    masked = load_model(r.checkpoint).make_mask(1, torch.Generator().manual_seed(3))[0].reshape(4, 4, 4)
    errors = {"model": 0.0, "patch mean": 0.0}
    for k, s in enumerate(starts):
        frame, given, shown = (p[2::5, 2::5].astype(float) for _, p in drawn["panels"][3 * k: 3 * k + 3])  # x5
        is_masked = np.kron(masked[k].numpy(), np.ones((16, 16), bool))
        assert np.array_equal(frame, decoded[s])
        assert (given[~is_masked] == frame[~is_masked]).all() and (given[is_masked] == viz.GREY).all()
        assert (shown[~is_masked] == frame[~is_masked]).all()
        tubelet = decoded[[s, s + 2]].reshape(2, 4, 16, 4, 16, 3).transpose(1, 3, 0, 2, 4, 5).reshape(4, 4, -1, 3)
        means = np.kron(tubelet.mean(2), np.ones((16, 16, 1)))  # each patch's mean colour over the tubelet
        errors["model"] += ((shown - frame)[is_masked] ** 2).mean()
        errors["patch mean"] += ((means - frame)[is_masked] ** 2).mean()
    assert errors["model"] < 0.8 * errors["patch mean"], errors
    w, h = Image.open(tmp_path / "r.png").size
    assert w >= 3 * MIN_PANEL and h >= 4 * MIN_PANEL and "viz: wrote" in capsys.readouterr().out


def test_a_checkpoint_with_traj_and_pixel_heads_draws_both_on_one_mask(panels, tmp_path):
    """One row per tubelet: frame | target tracks | predicted tracks | masked input | reconstruction, the patches
    dimmed for the tracks those greyed in the masked input."""
    from mme.models.export import save_pretrained
    from mme.models.mae import MaskedAutoencoder
    from mme.motion.targets import TargetConfig, head_specs

    video = write_video(tmp_path / "v.mp4", affine_video(24, 64, 64, dx=2.0, seed=6)[0])
    m = tiny_model()
    torch.manual_seed(0)
    save_pretrained(MaskedAutoencoder(m, head_specs(TargetConfig(kind=["mme-released", "pixel"]), m)), tmp_path / "ck")
    prediction_picture(str(video), str(tmp_path / "ck"), tmp_path / "p.png", stride=4)
    assert [t for t, _ in panels] == [f"{name}frame {s}" for s in (0, 8) for name in (
        "", "target tracks (PatchStd), ", "predicted tracks (PatchStd), ", "masked input, ", "reconstruction, ")]
    for k in range(2):
        frame, target, _, given, _ = (p[2::5, 2::5].astype(int) for _, p in panels[5 * k: 5 * k + 5])
        grey = (given == viz.GREY).all(-1)
        assert 0.5 < grey.mean() < 0.95  # the mask ratio 0.7 of 16 tokens, on patches of 16x16 px
        dimmed = np.abs(target - frame * viz.DIM).max(-1) <= 1  # bar the tracks drawn over them
        assert dimmed[grey].mean() > 0.8 and not dimmed[~grey & (frame.min(-1) > 10)].any()


def test_viz_of_an_original_file_draws_the_clip_given_with_size_and_num_frames(panels, tmp_path, caplog):
    """An original .pth records no clip: mme viz --checkpoint built its model for 16 frames of 224 px and refused
    --size / --num-frames with --checkpoint, so a model trained on another clip could not be drawn as trained. They
    give the clip the model is built for: the file draws what an export recording that clip draws, and the warning
    of what it takes on trust names them."""
    import logging

    from mme.cli import main
    from mme.models import convert
    from mme.models.config import ModelConfig
    from mme.models.export import save_pretrained
    from mme.models.mae import HeadSpec, MaskedAutoencoder

    video = str(write_video(tmp_path / "v.mp4", affine_video(24, 64, 64, dx=2.0, seed=6)[0]))
    m = ModelConfig(img_size=64, num_frames=4, embed_dim=64, depth=1, num_heads=1, decoder_dim=64, decoder_heads=1)
    torch.manual_seed(0)  # (1 head of 64 wide: what a file without a count takes)
    model = MaskedAutoencoder(m, [HeadSpec("pixel", 2 * 16 * 16 * 3)])
    torch.save({"model": convert.rename(model.state_dict(), convert.invert(convert.VIDEOMAE_PRETRAIN))[0]},
               tmp_path / "orig.pth")
    save_pretrained(model, tmp_path / "ours")
    prediction_picture(video, str(tmp_path / "ours"), tmp_path / "ours.png", stride=4, seed=3)
    recorded = list(panels)
    panels.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["viz", video, "--checkpoint", str(tmp_path / "orig.pth"), "--out", str(tmp_path / "p.png"),
                     "--stride", "4", "--seed", "3", "--size", "64", "--num-frames", "4"]) == 0
    names = ("", "masked input, ", "reconstruction, ")
    assert [t for t, _ in panels] == [t for t, _ in recorded] == [f"{n}frame {s}" for s in (0, 8) for n in names]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(panels, recorded))
    assert "taken on trust: num_heads=1, decoder_heads=1 (if the model was trained otherwise, write a file that " \
        "records them: mme export with --num-heads, --decoder-heads)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["viz", video, "--checkpoint", str(tmp_path / "orig.pth"), "--out", str(tmp_path / "p.png")]) == 0
    assert "taken on trust: num_heads=1, img_size=224, num_frames=16, decoder_heads=1 (if the model was trained " \
        "otherwise, give --size, --num-frames; for num_heads, decoder_heads, write a file that records them: mme " \
        "export with --num-heads, --decoder-heads)" in caplog.text


def test_viz_of_a_file_that_records_its_clip_refuses_another_size_or_frame_count(panels, tmp_path, capsys):
    """--size / --num-frames with --checkpoint of a file that records its clip (4 frames of 64 px) rebuilt its model
    for a clip it was never trained on (a fresh sin-cos table), the picture written without a word. They are refused
    there, nothing written; the recorded values themselves are taken."""
    from mme.cli import main
    from mme.models.export import save_pretrained
    from mme.models.mae import HeadSpec, MaskedAutoencoder

    video = str(write_video(tmp_path / "v.mp4", affine_video(24, 96, 96, dx=2.0, seed=6)[0]))
    torch.manual_seed(0)
    save_pretrained(MaskedAutoencoder(tiny_model(), [HeadSpec("pixel", 2 * 16 * 16 * 3)]), tmp_path / "ours")
    args = ["viz", video, "--checkpoint", str(tmp_path / "ours"), "--out", str(tmp_path / "p.png"), "--stride", "4"]
    assert main([*args, "--size", "96"]) == 1
    assert capsys.readouterr().err.endswith(f"error: --size 96: {tmp_path / 'ours'} records the clip its model was "
                                            f"trained on (img_size=64), which is drawn; leave it out\n")
    assert main([*args, "--size", "96", "--num-frames", "8"]) == 1
    assert capsys.readouterr().err.endswith("records the clip its model was trained on (num_frames=4, img_size=64), "
                                            "which is drawn; leave them out\n")
    assert not (tmp_path / "p.png").exists() and not panels
    assert main([*args, "--size", "64", "--num-frames", "4"]) == 0
    assert [t for t, _ in panels] == [f"{n}frame {s}" for s in (0, 8) for n in ("", "masked input, ",
                                                                               "reconstruction, ")]


@pytest.mark.parametrize("held, options, said", [
    ("hog", [], "holds a masked autoencoder with the head 'hog'; nothing to draw (mme viz --checkpoint draws "
                "the predicted motion of a 'traj' head and the reconstruction of a 'pixel' head)"),
    ("classifier", [], "holds a classifier; nothing to draw"),
    ("encoder", [], "holds an encoder; nothing to draw"),
    ("pixel", ["--compensate"], "has no 'traj' head; its reconstruction uses no tracks"),
], ids=["hog", "classifier", "encoder", "pixel-compensate"])
def test_viz_refuses_in_one_line_a_checkpoint_without_a_head_to_draw(held, options, said, tmp_path, capsys):
    from mme.cli import main
    from mme.models.classifier import VideoClassifier
    from mme.models.export import save_pretrained
    from mme.models.mae import MaskedAutoencoder
    from mme.models.vit import VisionTransformer
    from mme.motion.targets import TargetConfig, head_specs

    m = tiny_model()
    model = {"classifier": lambda: VideoClassifier(m, num_classes=3), "encoder": lambda: VisionTransformer(m)}.get(
        held, lambda: MaskedAutoencoder(m, head_specs(TargetConfig(kind=held), m)))()
    save_pretrained(model, tmp_path / "ck")
    video = write_video(tmp_path / "v.mp4", affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    assert main(["viz", str(video), "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "p.png"),
                 *options]) == 1
    err = capsys.readouterr().err
    assert said in err and str(tmp_path / "ck") in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "p.png").exists()


def test_a_relative_mp4_out_named_with_a_colon_is_written_and_drawn_over(tmp_path, monkeypatch):
    """FFmpeg reads the part of a relative name before a colon as a protocol (a time stamp
    '2024-05-01T10:00.mp4'): the picture is written, and read back as viz's own to be drawn over, by its absolute
    path (before: ProtocolNotFoundError, a traceback; a picture written by its absolute path was then called the
    user's file)."""
    from mme.cli import main

    video = write_video(tmp_path / "a.mp4", affine_video(12, 64, 64, dx=2.0, seed=6)[0])
    monkeypatch.chdir(tmp_path)
    name = "2024-05-01T10:00.mp4"
    for _ in range(2):
        assert main(["viz", str(video), "--out", name, "--num-frames", "4", "--stride", "2", "--size", "64"]) == 0
        with av.open(str(tmp_path / name)) as container:
            assert sum(1 for _ in container.decode(video=0)) > 0
