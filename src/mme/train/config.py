"""The pre-training configuration: one dataclass per component, read by ``mme.config.load_config``.

defaults (below and in each component's dataclass) <- a recipe in ``configs/`` <- ``key=value`` overrides,
e.g. ``mme pretrain --config tiny_cpu_mme train.steps=50 model.mask_ratio=0.9``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mme.data.dataset import DataConfig
from mme.errors import ConfigError
from mme.models.config import ModelConfig
from mme.motion.targets import TargetConfig
from mme.train.optim import OptimConfig
from mme.train.precision import PRECISIONS


@dataclass
class TrainConfig:
    """The run: length, batch, precision, seed, output, checkpoints, failure limits."""

    epochs: int = 1600
    """Schedule length in epochs (ignored when steps is set); 1600 as the released K400 recipe."""
    steps: int | None = None
    """Schedule length in optimizer steps; overrides epochs."""
    stop_after: int | None = None
    """Stop (with a checkpoint) once this many optimizer steps are done, keeping the full schedule, e.g. to
    split a long run into jobs; None = run to the end."""
    batch_size: int = 64
    """Clips per rank per micro-batch (the effective batch is batch_size x world size x accum_steps)."""
    accum_steps: int = 1
    """Micro-batches accumulated per optimizer step."""
    precision: str = "auto"
    """'auto' (bf16 where the hardware has it natively, else fp32), 'fp32', 'bf16' or 'fp16' (with a grad scaler)."""
    compile: bool = False
    """torch.compile the model (a gain on GPUs; none for a ViT on CPU)."""
    activation_checkpointing: bool = False
    """Recompute encoder blocks in the backward pass to save activation memory."""
    seed: int = 0
    """Seeds the initial weights, the data order, the augmentations and the masks."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda'."""
    out_dir: str = "runs/pretrain"
    """Folder for config.yaml, run.json, metrics, checkpoints and the loss-curve PNG."""
    log_every: int = 1
    """Write a metrics record every this many optimizer steps."""
    ckpt_every: int = 1000
    """Save a checkpoint every this many optimizer steps (and always at the end)."""
    keep_last: int = 3
    """Checkpoints kept in out_dir (older ones are deleted); 0 keeps all."""
    resume: str | None = None
    """'auto' (the newest valid checkpoint in out_dir, if any) or a checkpoint path; None = start fresh."""
    init: str | None = None
    """Initial model weights from a training checkpoint (the optimizer and step start fresh)."""
    max_nonfinite: int = 5
    """Stop with a diagnostic after this many non-finite losses in a row (each one skips its step)."""

    def __post_init__(self):
        for name in ("epochs", "batch_size", "accum_steps", "log_every", "ckpt_every", "max_nonfinite"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be positive, got {getattr(self, name)}")
        for name in ("steps", "stop_after"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be positive or null, got {getattr(self, name)}")
        if self.keep_last < 0:
            raise ConfigError(f"train.keep_last must be >= 0, got {self.keep_last}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if not self.out_dir:
            raise ConfigError("train.out_dir must not be empty")


@dataclass
class PretrainConfig:
    """Everything ``mme pretrain`` needs."""

    data: DataConfig = field(default_factory=DataConfig)
    """Videos, sampling and augmentation (mme.data.dataset)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Encoder, masking and decoder (mme.models.config)."""
    target: TargetConfig = field(default_factory=TargetConfig)
    """What the decoder reconstructs: pixel, hog, mme, mme-released (mme.motion.targets)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW and its schedules (mme.train.optim)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Length, batch, precision, checkpoints (above)."""

    def __post_init__(self):
        check_clips_fit_model(self.data, self.model)


def check_clips_fit_model(data, model) -> None:
    """The data section's clip geometry must equal the model's (shared by pre-training and fine-tuning)."""
    for d, m in (("num_frames", "num_frames"), ("img_size", "img_size"), ("tubelet", "tubelet_size")):
        if getattr(data, d) != getattr(model, m):
            raise ConfigError(f"data.{d}={getattr(data, d)} differs from model.{m}={getattr(model, m)}: "
                              "the clips must fit the model; set both")
