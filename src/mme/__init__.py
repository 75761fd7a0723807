"""mme: Masked Motion Encoding (CVPR 2023) -- self-supervised video pre-training on motion trajectories."""

import os as _os

# Bitwise-reproducible BLAS: outside its strict "conditional numerical reproducibility" mode, MKL (torch's CPU BLAS)
# documents results that may depend on buffer alignment, i.e. on the process's allocation history, which even the
# Python hash seed changes. MKL reads this at its first call, so mme must be imported before any torch computation
# (a job on the CPU warns otherwise: mme.utils.warn_if_mkl_not_strict); a value the user set wins, but an empty one
# (`MKL_CBWR=$MKL_CBWR` of a variable not set), which MKL takes as unset: its default mode. (A 2048² fp32 matmul on
# a 2-core AMD EPYC: 162 ms with it, 178 ms without.)
MKL_CBWR_SET = None if _os.environ.get("MKL_CBWR") else "AUTO,STRICT"
"""The ``MKL_CBWR`` that ``import mme`` set; None where the user had set one (a value MKL may not take)."""
if MKL_CBWR_SET:
    _os.environ["MKL_CBWR"] = MKL_CBWR_SET

__version__ = "0.2.0"


def rule_versions() -> dict[str, int]:
    """The versions of this mme's rules that decide what a job computes from the same videos and settings, which
    :data:`__version__` (bumped by no such change) cannot tell apart: the frames a video's index gives
    (:data:`mme.data.pyav_reader.INDEX_VERSION`), the test views (:data:`mme.eval.testing.READING_VERSION`), the
    data order (:data:`mme.train.distributed.ORDER_VERSION`) and the tracker's tracks
    (:data:`mme.motion.tracks.TRACKER`). A result saved with other values was computed by other rules (mme demo's
    rows are made again: :func:`mme.demo._fingerprint`; a training run records those it depends on, and a resume
    says their changes: :func:`mme.train.engine.rule_change`). Not the formats of files whose contents these decide
    (a checkpoint's, a track cache's), nor the git commit, which changes with every edit of the docs or tests (one
    commit in ten of mme's) and which an installed mme does not know. Imported on first use: ``import mme`` stays
    light."""
    from mme.data.pyav_reader import INDEX_VERSION
    from mme.eval.testing import READING_VERSION
    from mme.motion.tracks import TRACKER
    from mme.train.distributed import ORDER_VERSION

    return {"index": INDEX_VERSION, "reading": READING_VERSION, "order": ORDER_VERSION, "tracker": TRACKER}


def repository_doc(name: str) -> str:
    """How a message or help text cites one of the repository's documents: an installed mme (the wheel) holds no
    docs/ folder, so the citation says where the file is."""
    return f"docs/{name} in mme's source repository"


def load_encoder(path, strict: bool = True, **hints):
    """Load a pre-trained video encoder from any supported checkpoint (ours, original VideoMAE/MME, Hugging Face
    directory). Returns a module whose forward takes ``(B, 3, T, H, W)`` ImageNet-normalised floats and returns
    tokens ``(B, N, D)``. Hints (``num_heads``, ``decoder_heads``, ``img_size``, ``num_frames``) and clips of other
    sizes: :func:`mme.models.checkpoint.load_encoder`, which this calls (imported on first use: ``import mme``
    stays light)."""
    from mme.models.checkpoint import load_encoder as _load

    return _load(path, strict, **hints)
