"""Motion targets: optical flow, dense tracks, HOG, per-token target assembly, and the track cache."""

from mme.motion.targets import TargetConfig, head_specs, make_target_fn, step_targets
from mme.motion.tracks import compute_tracks


def load_tracks(path):
    """Read one `mme extract` cache file: ``(disp (S, L, Gh, Gw, 2) float32 px, valid (S, Gh, Gw) bool)``."""
    from mme.motion.cache import load_tracks as _load

    return _load(path)


__all__ = ["TargetConfig", "compute_tracks", "head_specs", "load_tracks", "make_target_fn", "step_targets"]
