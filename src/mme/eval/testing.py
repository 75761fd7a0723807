"""Classification testing: multi-view prediction, top-k accuracy, confusion matrix and per-class accuracy.

Multi-view testing (VideoMAE/MME protocol, mme-method.md §10): every test video is seen as N temporal clips ×
M spatial crops (the dataset's ``test_clips`` × ``test_crops``); the model's softmax over each view is averaged
into one probability vector per video. Top-1/top-5 and the confusion matrix are computed on those averages.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)


def topk_accuracy(probs: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Fraction of rows whose label is among the k highest scores, for each k (k is capped at the number of
    classes, so top-5 of a 4-class problem is 1.0)."""
    out = {}
    for k in ks:
        top = probs.topk(min(k, probs.shape[1]), dim=1).indices  # (N, k)
        out[f"top{k}"] = (top == labels[:, None]).any(dim=1).float().mean().item() if len(labels) else float("nan")
    return out


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """``cm[true, predicted]`` counts, ``(num_classes, num_classes)`` int64."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).numpy()


def classification_report(probs: torch.Tensor, labels: torch.Tensor,
                          class_names: list[str] | None = None) -> dict[str, Any]:
    """Top-1/top-5, per-class accuracy (recall; None for a class absent from ``labels``), mean class accuracy
    and the confusion matrix of ``probs (N, C)`` against ``labels (N,)``, as JSON-serialisable values."""
    probs = torch.as_tensor(probs, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.long)
    num_classes = probs.shape[1]
    names = class_names or [str(c) for c in range(num_classes)]
    cm = confusion_matrix(probs.argmax(1), labels, num_classes)
    support = cm.sum(1)
    per_class = {names[c]: (float(cm[c, c] / support[c]) if support[c] else None) for c in range(num_classes)}
    present = [v for v in per_class.values() if v is not None]
    return {
        **topk_accuracy(probs, labels),
        "mean_class_accuracy": float(np.mean(present)) if present else float("nan"),
        "num_samples": int(len(labels)),
        "per_class_accuracy": per_class,
        "confusion_matrix": cm.tolist(),
        "class_names": names,
    }


def save_confusion_png(cm: np.ndarray | list, path: str | Path, class_names: list[str] | None = None,
                       title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (rows: true class, columns: predicted), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    n = cm.shape[0]
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    side = min(2 + 0.35 * n, 30)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(rows, vmin=0, vmax=1, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"confusion ({int(cm.sum())} videos, row-normalised)")
    if n <= 60:  # beyond that labels are unreadable
        names = class_names or [str(c) for c in range(n)]
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if rows[i, j] > 0.5 else "black")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)
    return path


@torch.no_grad()
def view_probabilities(model: torch.nn.Module, video: torch.Tensor) -> torch.Tensor:
    """Per-view softmax averaged over views: ``video (B, V, 3, T, H, W) -> probs (B, C)``."""
    B, V = video.shape[:2]
    logits = model(video.flatten(0, 1))  # (B*V, C)
    return logits.float().softmax(-1).reshape(B, V, -1).mean(1)


class Predictions(NamedTuple):
    probs: torch.Tensor
    """``(N, C)`` softmax averaged over each video's views."""
    labels: torch.Tensor
    """``(N,)`` ground truth."""
    views: int
    """Views per video (temporal clips × spatial crops)."""


@torch.no_grad()
def multiview_predict(model: torch.nn.Module, dataset: Dataset, *, batch_size: int = 2, num_workers: int = 0,
                      device: str | torch.device = "cpu", autocast_dtype: torch.dtype | None = None,
                      progress: bool = True) -> Predictions:
    """Softmax-averaged multi-view probabilities of every item of a test ``dataset`` (items
    ``{"video": (V, 3, T, H, W), "label", "index"}``), in dataset order."""
    from tqdm import tqdm

    device = torch.device(device)
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    probs, labels, index, views = [], [], [], 0
    for batch in tqdm(loader, desc="test", unit="batch", disable=not progress):
        video = batch["video"].to(device, non_blocking=True)
        views = video.shape[1]
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            probs.append(view_probabilities(model, video).cpu())
        labels.append(torch.as_tensor(batch["label"]))
        index.append(torch.as_tensor(batch["index"]))
    order = torch.cat(index).argsort()
    return Predictions(torch.cat(probs)[order], torch.cat(labels)[order], views)


def evaluate(model: torch.nn.Module, dataset: Dataset, out_dir: str | Path, *,
             class_names: list[str] | None = None, name: str = "test", **predict_kwargs) -> dict[str, Any]:
    """Multi-view test of ``model`` on ``dataset``: writes ``<name>.json`` (report + view counts) and
    ``<name>_confusion.png`` into ``out_dir`` and returns the report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred = multiview_predict(model, dataset, **predict_kwargs)
    report = classification_report(pred.probs, pred.labels, class_names)
    report["views_per_video"] = pred.views
    write_json(report, out_dir / f"{name}.json")
    save_confusion_png(report["confusion_matrix"], out_dir / f"{name}_confusion.png", report["class_names"])
    log.info("%s: top-1 %.2f%%  top-5 %.2f%%  (%d videos, %d views each)", name, 100 * report["top1"],
             100 * report["top5"], report["num_samples"], report["views_per_video"])
    return report
