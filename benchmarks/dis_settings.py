"""DIS settings around the default flow: track accuracy on analytic motion and CPU per frame pair.

``mme bench flow`` ranks the flow methods (mme.motion.flow.METHODS); this looks for a better point near them:
DIS MEDIUM with other patch strides, descent and refinement iterations and patch sizes (OpenCV's ``set<Name>``
setters, as ``mme.motion.flow.DIS_SETTINGS``). Each setting is judged as ``mme bench flow`` judges a method
(``track_errors``: tracks from every 3rd frame for L = 6 steps on H.264-coded pans, rolls and zooms at 112² and
224², ``--scenes`` scenes each) and timed by ``pair_ms`` (one thread, CPU time) at 96² (the demo's crop) and
224².

    python benchmarks/dis_settings.py --scenes 4

Prints per setting the mean end-point error per step per motion and size, the drift after L steps, the RMS
error of the PatchStd target (z) and the median ms per pair, and the CPU it ran on.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from mme.motion import bench_flow, flow
from mme.utils import counted, cpu_name

SETTINGS = {
    "dis (MEDIUM)": {},
    "dis-balanced": flow.DIS_SETTINGS["dis-balanced"],
    "stride 4, 12 it": {"PatchStride": 4, "GradientDescentIterations": 12},
    "stride 4, 16 it": {"PatchStride": 4, "GradientDescentIterations": 16},
    "stride 5, 8 it": {"PatchStride": 5, "GradientDescentIterations": 8},
    "stride 6, 12 it": {"PatchStride": 6, "GradientDescentIterations": 12},
    "stride 4, 8 it, 3 refine": {"PatchStride": 4, "GradientDescentIterations": 8,
                                 "VariationalRefinementIterations": 3},
    "stride 5, 12 it, 3 refine": {"PatchStride": 5, "GradientDescentIterations": 12,
                                  "VariationalRefinementIterations": 3},
    "stride 5, 12 it, patch 10": {"PatchStride": 5, "GradientDescentIterations": 12, "PatchSize": 10},
    "stride 6, 12 it, patch 12": {"PatchStride": 6, "GradientDescentIterations": 12, "PatchSize": 12},
}
"""Over DIS MEDIUM (patch 8 at stride 3, 25 descent and 5 refinement iterations, finest scale 1)."""


def main(scenes: int, repeat: int) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    for name, settings in SETTINGS.items():  # registered as flow methods for this process only
        flow.DIS_PRESETS.setdefault(name, cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow.DIS_SETTINGS.setdefault(name, settings)
    sizes = (112, 224)
    videos = {}  # (size, motion, scene) -> (decoded frames, true maps)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for motion in bench_flow.MOTIONS:
                for scene in range(scenes):
                    frames, maps = bench_flow.analytic_video(motion, size, 16, seed=scene)
                    videos[(size, motion, scene)] = (bench_flow.coded(frames, Path(tmp), f"{motion}{scene}_{size}"),
                                                     maps)
    timed = {96: [v[0][:, 8:104, 8:104].copy() for k, v in videos.items() if k[0] == 112 and k[2] == 0],
             224: [v[0] for k, v in videos.items() if k[0] == 224 and k[2] == 0]}
    print(f"DIS settings, {counted(scenes, 'scene')} per motion, one thread, CPU: {cpu_name()}")
    cols = [f"{m[:4]} {s}" for s in sizes for m in bench_flow.MOTIONS]
    print(f"| setting | {' | '.join(cols)} | after L {sizes[0]} / {sizes[1]} | PatchStd z {sizes[1]} | "
          f"ms/pair 96 | ms/pair 224 |")
    print("|---" * (len(cols) + 5) + "|")
    for name in SETTINGS:
        step, end, z = [], {s: [] for s in sizes}, []
        for size in sizes:
            for motion in bench_flow.MOTIONS:
                e = [bench_flow.track_errors(*videos[(size, motion, s)], name, 6) for s in range(scenes)]
                step.append(np.mean([x["epe_step"] for x in e]))
                end[size] += [x["epe_end"] for x in e]
                if size == sizes[1]:
                    z += [x["target_rmse_patchstd"] for x in e]
        ms = [bench_flow.pair_ms(timed[size], name, repeat) for size in timed]
        print(f"| {name} | {' | '.join(f'{v:.3f}' for v in step)} | "
              f"{np.mean(end[sizes[0]]):.2f} / {np.mean(end[sizes[1]]):.2f} | {np.mean(z):.2f} | "
              f"{ms[0]:.2f} | {ms[1]:.2f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=4, help="scenes per motion (errors are their means)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over every pair")
    a = parser.parse_args()
    main(a.scenes, a.repeat)
