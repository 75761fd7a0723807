"""``mme demo``'s report: the rows summarised over seeds, its two tables and the loss curves (mme.demo makes the
rows)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mme import repository_doc
from mme.errors import DataError
from mme.train.metrics import plot_loss_records, records_through, steps_of
from mme.utils import atomic_path, literal_text, log_scale_y

REAL_KEYS = ("real_val_linear_top1", "real_val_knn_top1", "real_test_linear_top1", "real_test_knn_top1")
"""The real-footage columns of a row, means over the folds (mme.demo.probe_real): on each fold's validation
source (what experiments are judged on), then on its test source."""


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and population standard deviation (n, not n - 1) over seeds, per target (in first-seen order); a
    value read back from JSON as null (NaN written) counts as NaN."""
    out = []
    for target in dict.fromkeys(r["target"] for r in rows):
        rs = [r for r in rows if r["target"] == target]
        entry = {"target": target, "seeds": len(rs)}
        for key in ("linear_top1", "knn_top1", *REAL_KEYS, "minutes", "clips_per_s", "final_loss",
                    "mean_prediction_loss", "loss_ratio"):
            v = np.array([r[key] for r in rs], dtype=float)
            entry[key] = float(v.mean())
            entry[key + "_std"] = float(v.std()) if len(v) > 1 else 0.0
        out.append(entry)
    return out


SPREAD = "population standard deviation (n)"
"""What ± stands for in the tables (:func:`summarise`)."""


def _cell(e: dict, key: str, digits: int = 1) -> str:
    v, sd = e[key], e[key + "_std"]
    if np.isnan(v):
        return "–"
    return f"{v:.{digits}f} ± {sd:.{digits}f}" if e["seeds"] > 1 else f"{v:.{digits}f}"


LOSS_DIGITS = 4
"""Decimals of a loss in the loss table: of one seed's, and at most of a mean over seeds, which is shown to 3
significant digits of its spread where those end sooner (30.86 ± 2.95, not 30.8611 ± 2.9469)."""


def _loss_cell(e: dict, key: str) -> str:
    sd = e[key + "_std"]
    # (a spread of NaN, or one too wide for a float, np.std's inf over huge finite losses: no digits to count)
    spread_digits = 2 - math.floor(math.log10(sd)) if e["seeds"] > 1 and math.isfinite(sd) and sd > 0 else LOSS_DIGITS
    return _cell(e, key, min(LOSS_DIGITS, max(0, spread_digits)))


def markdown_table(summary: list[dict], chance: float, real: bool) -> str:
    """The probes on the synthetic videos, then on real footage (``real``: whether it was probed): the folds'
    validation sources, then their test sources; and chance; with more than one seed, what ± is."""
    real_heads = [f"real {split}: {probe} top-1 (%)" for split in ("val", "test") for probe in ("linear", "kNN")]
    lines = ["| " + " | ".join(["target", "linear probe top-1 (%)", "kNN top-1 (%)", *real_heads,
                                "pre-training minutes", "clips/s"]) + " |", "|---" * (5 + len(REAL_KEYS)) + "|"]
    for e in summary:
        cells = [e["target"], *(_cell(e, k) for k in ("linear_top1", "knn_top1", *REAL_KEYS)),
                 _cell(e, "minutes", 2), _cell(e, "clips_per_s")]
        lines.append("| " + " | ".join(cells) + " |")
    real_chance = [f"{chance:.1f}" if real else "–"] * len(REAL_KEYS)
    lines.append("| " + " | ".join(["chance", f"{chance:.1f}", f"{chance:.1f}", *real_chance, "–", "–"]) + " |")
    if any(e["seeds"] > 1 for e in summary):
        lines.append(f"\n(mean ± {SPREAD} over seeds.)")
    return "\n".join(lines) + "\n"


LEARNED_RATIO = 0.99
"""A target whose final loss is below this fraction of its mean-prediction level has learned from the clips."""


def markdown_loss_table(summary: list[dict]) -> str:
    """Whether each target's loss left the level of predicting its mean (ratio < 1: it learned something), and
    a line that says which targets did."""
    lines = ["| target | loss, last tenth of the steps | loss of predicting the mean target | ratio |",
             "|---|---|---|---|"]
    trained = [e for e in summary if not np.isnan(e["final_loss"])]
    for e in trained:
        lines.append(f"| {e['target']} | {_loss_cell(e, 'final_loss')} | {_loss_cell(e, 'mean_prediction_loss')} | "
                     f"{_cell(e, 'loss_ratio', 3)} |")
    learned = [e["target"] for e in trained if e["loss_ratio"] < LEARNED_RATIO]
    stuck = [e["target"] for e in trained if e["loss_ratio"] >= LEARNED_RATIO]
    off = round(100 * (1 - LEARNED_RATIO))
    reading = [f"Learned from the clips (loss more than {off} % below the level): {', '.join(learned) or 'none'}."]
    unknown = [e["target"] for e in summary if np.isnan(e["final_loss"]) and not np.isnan(e["minutes"])]
    if unknown:  # pre-trained, but no log of its run reaches its last step (mme.demo.loss_against_mean)
        reading.append(f"No loss figures for {', '.join(unknown)}: the logs of a run stop before its last step (a "
                       "write that failed, a full disk; the row's loss_note says where), so its loss is not known.")
    if stuck:
        reading.append(f"Not yet at this budget (loss within {off} % of the level, or above it): {', '.join(stuck)}. "
                       "Such an encoder has learned nothing from the clips yet, only drifted from its random "
                       f"initialisation, and can probe below a random encoder ({repository_doc('results.md')}, "
                       "\"Why pixel and HOG stay below a random encoder\").")
    return "\n".join(lines) + "\n\n" + "\n".join(reading) + "\n"


@literal_text()  # under a user's text.usetex, its loss names ('loss_hog') went to LaTeX
def plot_losses(rows: list[dict], root: Path, path: Path, last_step: int) -> None:
    """One panel per pre-trained target: every loss term against the step (first seed), per metrics record (faint:
    the mean of the steps it covers, ``train.log_every``) and as a running mean over records, each weighed by its
    steps (:func:`mme.train.metrics.plot_loss_records`, as ``loss.png``), read from a log of its run that reaches
    its ``last_step`` (:func:`records_through`, as the loss table reads them). The rows' metrics paths are relative
    to ``root``. A run without such a log has no panel; where none has, the DataError of the first."""
    from matplotlib.figure import Figure  # not pyplot, whose backend and figures are the process's (a notebook's)

    runs, unknown = [], []
    for r in rows:
        if "metrics" in r and r["seed"] == rows[0]["seed"]:
            try:
                runs.append((r, records_through((root / r["metrics"]).parent, last_step)))
            except DataError as e:  # (its row says so: mme.demo.loss_against_mean)
                unknown.append(e)
    if not runs and unknown:
        raise unknown[0]
    fig = Figure(figsize=(4.2 * len(runs), 3.2))
    axes = fig.subplots(1, len(runs), squeeze=False)
    for ax, (r, records) in zip(axes[0], runs):
        steps = [rec["step"] for rec in records]
        covered = [steps_of(rec) for rec in records]  # a record's mean is of its steps
        keys = sorted(k for k in records[0] if k.startswith("loss"))
        drawable = [plot_loss_records(ax, steps, [rec[key] for rec in records], covered, key) for key in keys]
        ax.set_title(f"{r['target']} target")
        ax.set_xlabel("step")
        if any(drawable):  # (as loss.png)
            log_scale_y(ax)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
