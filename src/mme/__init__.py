"""mme: Masked Motion Encoding (CVPR 2023) -- self-supervised video pre-training on motion trajectories."""

__version__ = "0.1.0"


def load_encoder(path, **kwargs):
    """Load a pre-trained video encoder from any supported checkpoint (ours, original VideoMAE/MME, Hugging Face
    directory). Returns a module whose forward takes ``(B, 3, T, H, W)`` ImageNet-normalised floats and returns
    tokens ``(B, N, D)``."""
    from mme.models.checkpoint import load_encoder as _load

    return _load(path, **kwargs)
