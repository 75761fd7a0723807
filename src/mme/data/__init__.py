"""Video lists, readers, datasets and transforms."""

MIN_SHORT_SIDE = 16
"""The fewest pixels a frame's short side may have: a ViT patch's side, and twice ``mme extract``'s seed stride and
DIS's patch (8 px each, every preset), so that the flow has texture around a patch to match. Under it every crop is a
few source pixels stretched to the clip (one pixel at 2x2: no pixel varies within a frame) and its motion targets
read nothing. Here, not in :mod:`mme.data.video`, so that the CLI's ``--short-side`` takes it without importing
the readers."""
