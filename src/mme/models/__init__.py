"""ViT encoder, masked autoencoder, heads and checkpoint conversion."""

from mme.models.classifier import VideoClassifier
from mme.models.config import ModelConfig
from mme.models.mae import HeadSpec, MaskedAutoencoder
from mme.models.vit import VisionTransformer

__all__ = ["HeadSpec", "MaskedAutoencoder", "ModelConfig", "VideoClassifier", "VisionTransformer"]
