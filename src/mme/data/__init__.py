"""Video lists, readers, datasets and transforms."""

MIN_SHORT_SIDE = 16
"""The fewest pixels a frame's short side may have: a ViT patch's side, and twice ``mme extract``'s seed stride and
DIS's patch (8 px each, every preset), so that the flow has texture around a patch to match. Under it every crop is a
few source pixels stretched to the clip (one pixel at 2x2: no pixel varies within a frame) and its motion targets
read nothing. Here, not in :mod:`mme.data.video`, so that the CLI's ``--short-side`` takes it without importing
the readers."""

MAX_ASPECT = 8
"""The most times a frame's long side may be its short side for ``mme extract``, which tracks the whole frame resized
so that its short side is ``--short-side`` (a 16x4000 file: 224x56000, 7.9 GB for 20 frames). No footage comes near
it (cinema 2.39:1, panoramas about 4:1); training online crops squares of the short side first, so it trains on
longer ones (:func:`mme.data.video.whole_frame_refusal`)."""
