"""Which raw frames to decode: the encoder's clip and the raw frames the motion tracks need.

All samplers return a :class:`ClipIndices` of raw frame indices (0-based, presentation order).

Short videos: indices past the last frame are clamped to it, so the clip repeats its last frame and a track
that runs past the end stays on the last frame for its remaining steps. The motion targets treat such repeated
frames as zero motion (the flow between two copies of a frame is zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class ClipIndices:
    """Raw frame indices of one clip (architecture.md, the sample contract)."""

    clip: np.ndarray
    """(T,) raw index of each encoder frame."""
    starts: np.ndarray
    """(T / tubelet,) raw index of each tubelet's first frame, ``clip[::tubelet]``: where tracks start."""
    track_length: int
    """L: each track runs from ``s`` to ``s + L`` (L raw steps); 0 = no tracks."""
    needed: np.ndarray
    """Sorted unique raw indices to decode: clip ∪ {s + j : s in starts, 0 ≤ j < reads} (clamped to the video);
    ``reads`` is L + 1 (flow needs every frame a track visits) unless the targets read fewer (cached tracks)."""


def clip_indices(clip_unclamped: np.ndarray, num_video_frames: int, tubelet: int, track_length: int,
                 reads: int | None = None) -> ClipIndices:
    """The :class:`ClipIndices` of a clip's raw indices, clamped to the video (module docstring)."""
    last = num_video_frames - 1
    clip = np.minimum(clip_unclamped, last).astype(np.int64)
    starts = clip[::tubelet]
    reads = track_length + 1 if reads is None else reads
    tracks = np.minimum(starts[:, None] + np.arange(reads)[None, :], last)  # (S, reads)
    needed = np.unique(np.concatenate([clip, tracks.reshape(-1)]))
    return ClipIndices(clip=clip, starts=starts, track_length=track_length, needed=needed)


def window_length(num_frames: int, stride: int, tubelet: int, track_length: int) -> int:
    """Raw frames spanned by a strided clip and its tracks: the last tubelet's track may reach past the clip."""
    last_start = (num_frames - 1) // tubelet * tubelet * stride
    return max((num_frames - 1) * stride, last_start + track_length) + 1


def sample_pretrain(num_video_frames: int, num_frames: int, stride: int, tubelet: int, track_length: int,
                    rng: np.random.Generator, reads: int | None = None) -> ClipIndices:
    """T frames at stride s from a uniformly random window that also holds the tracks (mme-method.md §3).

    MME: 16 frames × stride 4 on Kinetics (a 61-raw-frame window, with tracks of L = 4 at tubelet 2 as without),
    stride 2 on SSv2. With ``track_length=0`` this is the strided sampler of fine-tuning. Videos shorter than the
    window start at 0 and repeat their last frame (module docstring). ``reads``: raw frames decoded from each start
    (:class:`ClipIndices`); the window is the same whatever it is.
    """
    span = window_length(num_frames, stride, tubelet, track_length)
    start = int(rng.integers(0, num_video_frames - span + 1)) if num_video_frames >= span else 0
    return clip_indices(start + stride * np.arange(num_frames), num_video_frames, tubelet, track_length, reads)


def sample_segments(num_video_frames: int, num_frames: int, tubelet: int, rng: np.random.Generator | None,
                    track_length: int = 0, offset: Fraction = Fraction(1, 2), reads: int | None = None) -> ClipIndices:
    """TSN segment sampling (SSv2 fine-tuning): split the video into T equal segments, one frame from each.

    Training (``rng`` given): a uniformly random frame per segment, segment i holding the whole frames
    ⌊i·F/T⌋ to ⌊(i + 1)·F/T⌋ − 1, so that no two segments share a frame (no frame is drawn twice) and every frame,
    the last among them, can be drawn; a video of fewer frames than T takes ⌊(i + u)·F/T⌋ for a uniform u, some
    frames twice. Testing (``rng=None``): the frame at
    fraction ``offset`` of each segment (1/2 = the centre frame), ⌊(i + offset)·F/T⌋ computed in integers, so a
    frame is never a float's rounding off. With tracks (``track_length`` L), the segments split all but the last
    L frames when the video has them, so every track runs on real frames (else the last tracks would stand
    still on the repeated last frame).
    """
    before_tracks = num_video_frames - track_length
    split = before_tracks if before_tracks >= num_frames else num_video_frames
    if rng is not None:
        i, u = np.arange(num_frames, dtype=np.int64), rng.random(num_frames)
        if split >= num_frames:
            lo, hi = i * split // num_frames, (i + 1) * split // num_frames
            clip = lo + np.floor(u * (hi - lo)).astype(np.int64)
        else:
            clip = np.floor((i + u) * (split / num_frames)).astype(np.int64)
    else:
        steps = np.arange(num_frames, dtype=np.int64) * offset.denominator + offset.numerator
        clip = steps * split // (num_frames * offset.denominator)
    return clip_indices(clip, num_video_frames, tubelet, track_length, reads)


def sample_test_clips(num_video_frames: int, num_frames: int, stride: int, tubelet: int, num_clips: int,
                      segments: bool = False) -> list[ClipIndices]:
    """``num_clips`` evenly spaced temporal views for multi-view testing (VideoMAE's test protocol).

    Strided clips: window starts evenly spaced from the first to the last possible start, each rounded down, as
    VideoMAE's ``int(chunk_nb * temporal_step)`` (one clip: the centre start, rounded down: deterministic where the
    authors' validation draws its window at random); exact in integers, so a start is never a float's rounding
    off. Segment clips: one clip takes every segment's centre frame (deterministic where the authors' validation
    draws a random frame of each segment); several take the frame at fraction
    ``k / num_clips`` of every segment (VideoMAE's two SSv2 test clips: the segments' first and centre frames),
    in integers as well (:func:`sample_segments`).
    A change of these views bumps :data:`mme.eval.testing.READING_VERSION` (features cached with the earlier ones).
    """
    if segments:
        offsets = [Fraction(1, 2)] if num_clips == 1 else [Fraction(k, num_clips) for k in range(num_clips)]
        return [sample_segments(num_video_frames, num_frames, tubelet, None, offset=o) for o in offsets]
    span = window_length(num_frames, stride, tubelet, 0)
    room = max(num_video_frames - span, 0)
    starts = [k * room // (num_clips - 1) for k in range(num_clips)] if num_clips > 1 else [room // 2]
    return [clip_indices(s + stride * np.arange(num_frames), num_video_frames, tubelet, 0) for s in starts]
