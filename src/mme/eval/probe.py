"""Linear probing and kNN classification on frozen features (the protocol is in docs/evaluation.md).

Linear probe: features are standardised with the statistics of the rows the head is fitted on, then a
multinomial logistic regression (one ``nn.Linear``, cross-entropy + L2 on the weights) is fitted full-batch
with L-BFGS. The L2 strength is chosen on a validation split (carved, stratified, from train when none is
given) by top-1, ties broken by validation cross-entropy; the test split is never looked at until the end.
The final head is refitted on train ∪ val with the chosen strength.

kNN: the same standardisation (train statistics), then L2 normalisation, cosine similarity to every train
row, the k nearest vote for their class with weight ``exp(sim / temperature)`` (DINO's weighted kNN) or 1
(majority); votes normalised to sum to 1 give the class probabilities.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mme.data.pyav_reader import holds_indices
from mme.errors import ConfigError, DataError
from mme.eval.testing import check_class_names, classification_report, top5_said
from mme.utils import (
    atomic_write_json,
    check_count,
    check_output,
    check_seed,
    code_version,
    counted,
    file_path,
    plural,
    read_json_object,
    removing,
    torch_as_mme,
    writing,
)

log = logging.getLogger(__name__)

WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""Default L2 grid for the linear probe (coefficient of ½‖W‖² added to the mean cross-entropy)."""


def check_weight_decays(weight_decays: Any) -> tuple[float, ...]:
    """The linear probe's L2 grid, checked before any work, as a tuple of floats: a ConfigError naming it unless it is
    a non-empty sequence of finite numbers >= 0 (a negative strength leaves the objective without a minimum and was
    fitted and reported, a NaN ended in a RuntimeError of the fit, an empty grid in a ValueError of ``max``)."""
    given = "linear probe: weight_decays"
    try:
        if isinstance(weight_decays, (str, bytes)):  # (a text is a sequence of its characters)
            raise TypeError
        grid = tuple(weight_decays)
    except TypeError:
        raise ConfigError(f"{given} must be a sequence of L2 strengths to choose from, got {weight_decays!r}") from None
    if not grid:
        raise ConfigError(f"{given} is empty: give at least one L2 strength to choose from")
    for wd in grid:
        try:
            fits = not isinstance(wd, bool) and isinstance(wd, numbers.Real) and math.isfinite(wd) and wd >= 0
        except OverflowError:  # (an int past float's range)
            fits = False
        if not fits:
            raise ConfigError(f"{given} must be finite numbers >= 0 (L2 strengths: a negative one leaves the fit "
                              f"without a minimum), got {wd!r} in {grid!r}")
    return tuple(float(wd) for wd in grid)


def _as_tensors(x: Any, y: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    missing = [f"{name}_{part}" for part, given in (("x", x), ("y", y)) if given is None]
    if missing:  # (a split given half-way was a numpy object-array TypeError)
        beside = f" beside {name}_{'x' if x is not None else 'y'}" if len(missing) == 1 else ""
        raise DataError(f"{name}: {' and '.join(missing)} not given{beside}; a split is its features (N, D) and "
                        "labels (N,): give both")
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{name}: expected features (N, D) and labels (N,), got {tuple(x.shape)} and "
                        f"{tuple(y.shape)}")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x).all(1)).nonzero().flatten().tolist()
        raise DataError(f"{name}: {len(bad)} feature rows are not finite, first rows {bad[:10]}: rows of failed "
                        "videos (drop them with the extraction's valid mask first), or of a model that gives NaN or "
                        "inf (weights that hold them, or activations past the range of its precision: embed in fp32)")
    if (y < 0).any():
        bad = (y < 0).nonzero().flatten().tolist()
        raise DataError(f"{name}: {len(bad)} rows have a negative label (-1: a video of an unlabelled list), first "
                        f"rows {bad[:10]}; a probe takes labels 0 .. C-1 (label the list, or drop those rows)")
    return x, y


def _num_classes(method: str, num_classes: int | None, class_names: list[str] | None,
                 labels: list[torch.Tensor]) -> int:
    """The classes of a probe: ``num_classes`` (an integer of at least 1, else a ConfigError), else as many as
    ``class_names``, else 1 + the largest label; a DataError where a label is beyond them or ``class_names`` names
    another count (a label past num_classes was a bare IndexError, or widened the linear probe's head unsaid)."""
    if num_classes is not None:
        num_classes = check_count(num_classes, 1, f"{method}: num_classes")
    largest = max((int(y.max()) for y in labels if len(y)), default=-1)
    if num_classes is None and class_names is None:
        return largest + 1
    if num_classes is not None:
        check_class_names(method, class_names, num_classes)
    count = len(class_names) if num_classes is None else num_classes
    if largest >= count:
        given = f"num_classes={count}" if num_classes is not None else f"class_names names {count} classes"
        raise DataError(f"{method}: {given}, but the largest label is {largest}; labels must be 0 .. {count - 1}")
    return count


def standardizer(x: torch.Tensor, rtol: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std ``(D,)`` of ``x (N, D)``; apply as ``(x - mean) / std``. A dimension constant in
    ``x`` (a dead unit, a padded column: its std at most ``rtol`` of its largest magnitude, float32's rounding of a
    constant) is only centred: divided by a std clamped to 1e-6, a test value 1e-4 off it became ~100, which dwarfed
    every other dimension after kNN's normalisation and made its votes all alike. The bound is relative, so features
    of a tiny scale (all of them x 1e-7) are scaled as any others."""
    std = x.std(0, unbiased=False)
    return x.mean(0), torch.where(std <= rtol * x.abs().amax(0), torch.ones_like(std), std)


def _group_labels(owner: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each group's most common label (of equal counts, the lowest), groups ``0 .. owner.max()`` (each owning a
    row): counted over the (group, label) pairs that occur, not a dense group x class matrix (240 000 clips of 400
    classes, each its own group, made one of 1.1 GiB)."""
    if not len(y):
        return np.zeros(0, dtype=np.int64)
    pairs, counts = np.unique(owner * (int(y.max()) + 1) + y, return_counts=True)  # (sorted: group, then label)
    group, label = np.divmod(pairs, int(y.max()) + 1)
    first = np.lexsort((label, -counts, group))  # per group: the most rows first, then the lowest label
    keep = np.ones(len(first), dtype=bool)
    keep[1:] = group[first][1:] != group[first][:-1]
    return label[first][keep]


def stratified_split(y: torch.Tensor, fraction: float, seed: int = 0,
                     groups: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) with ``fraction`` of every class in val (at least one of each class that has two or
    more), drawn with ``seed``. With ``groups`` (a key per row: the source video its clip was cut from,
    :func:`mme.data.lists.source_group`) whole groups are drawn, every group on one side, a group counted in its most
    common class (of equal counts, the lowest); a class of one group stays in train. Without, each row is a group."""
    if groups is None:
        owner, label = torch.arange(len(y)), y
    else:
        if len(groups) != len(y):
            raise DataError(f"stratified_split: {len(groups)} groups for {len(y)} rows (one group per row)")
        keys: dict = {}
        owner = torch.tensor([keys.setdefault(key, len(keys)) for key in groups], dtype=torch.long)
        label = torch.from_numpy(_group_labels(owner.numpy(), np.asarray(y, dtype=np.int64)))
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in label.unique():
        idx = (label == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        held.append(idx[:0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(fraction * len(idx))))])
    in_val = torch.isin(owner, torch.cat(held)) if held else torch.zeros(len(y), dtype=torch.bool)
    return (~in_val).nonzero().flatten(), in_val.nonzero().flatten()


def _check_carve(carve: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A carve of ``n`` train rows, ``(train, val)`` indices, as two 1-D int64 tensors; a DataError naming why where
    it does not hold each row 0 .. n-1 exactly once across the two (a row on both sides is scored by a head fitted on
    it; one beyond the rows, a carve drawn of another list, was a bare IndexError)."""
    try:
        tr, va = (torch.as_tensor(np.asarray(part)) for part in carve)
    except (TypeError, ValueError) as e:
        raise DataError(f"linear probe: a carve is (train, val) row indices, got {type(carve).__name__}: {e}") from e
    for part in (tr, va):
        if part.ndim != 1 or (len(part) and (part.dtype == torch.bool or part.is_floating_point()
                                             or part.is_complex())):
            raise DataError(f"linear probe: a carve is (train, val) 1-D integer row indices, got {part.dtype} of "
                            f"shape {tuple(part.shape)}")
    tr, va = tr.long(), va.long()
    both = torch.cat([tr, va])
    beyond = both[(both < 0) | (both >= n)]
    if len(beyond):
        raise DataError(f"linear probe: the carve names row {int(beyond[0])}, not one of the {n} train rows (0 .. "
                        f"{n - 1}): drawn of another list?")
    on_train, on_val = torch.bincount(tr, minlength=n), torch.bincount(va, minlength=n)
    for bad, where in (((on_train > 0) & (on_val > 0), "in both the carve's train and val indices (a head fitted "
                        "on them would score them)"), ((on_train > 1) | (on_val > 1), "twice on one side of the carve"),
                       (on_train + on_val == 0, "on neither side of the carve")):
        if bad.any():
            rows = bad.nonzero().flatten()
            raise DataError(f"linear probe: {len(rows)} of the {n} train rows are {where}, first rows "
                            f"{rows[:10].tolist()}; a carve holds each row exactly once")
    return tr, va


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float,
               max_iter: int = 500) -> torch.nn.Linear:
    """Multinomial logistic regression on standardised ``x (N, D)``: mean cross-entropy + ``weight_decay`` ·
    ½‖W‖², minimised full-batch by L-BFGS with a strong-Wolfe line search (deterministic, no lr to tune)."""
    head = torch.nn.utils.skip_init(torch.nn.Linear, x.shape[1], num_classes)  # (no draw of the caller's generator)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + 0.5 * weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return head.requires_grad_(False)


@torch_as_mme()
def linear_probe(train_x, train_y, val_x=None, val_y=None, test_x=None, test_y=None, *,
                 num_classes: int | None = None, weight_decays: tuple[float, ...] = WEIGHT_DECAYS,
                 val_fraction: float = 0.2, seed: int = 0, max_iter: int = 500,
                 class_names: list[str] | None = None, groups: list | None = None,
                 _carve: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
    """Linear probe on frozen features (arrays or tensors ``(N, D)`` / labels ``(N,)``).

    Chooses the L2 strength from ``weight_decays`` on (val_x, val_y), or on a stratified ``val_fraction`` of
    train when no val split is given (by the source groups of the train rows, ``groups``, where given: see
    :func:`stratified_split`), refits on train ∪ val, and reports on the test split (or on val when no
    test split is given). Returns a JSON-serialisable dict: ``top1``, ``top5``, per-class accuracy and the
    confusion matrix of the evaluated split (see ``classification_report``), plus ``weight_decay`` (chosen),
    ``val_top1`` per candidate, ``evaluated_on``, ``num_fit`` (the rows the reported head was fitted on: train ∪
    val where a test split is given) and ``num_select_train`` / ``num_select_val`` (the rows each λ was fitted on
    and scored on). Labels run 0 .. ``num_classes`` - 1 (default: as many as ``class_names``, else 1 + the largest
    label; a DataError where a label is beyond them)."""
    # (``_carve``, :func:`run_probe`'s alone: the split it drew already, ``stratified_split(train_y, val_fraction,
    # seed, groups)``, not drawn again; checked, as it is not drawn here)
    weight_decays = check_weight_decays(weight_decays)
    max_iter = check_count(max_iter, 1, "linear probe: max_iter")
    tx, ty = _as_tensors(train_x, train_y, "train")
    validated, tested = val_x is not None or val_y is not None, test_x is not None or test_y is not None
    if _carve is not None:
        if validated:
            raise DataError("linear probe: a carve of train given with a val split; the carve is the val split "
                            "where none is given: give one of them")
        _carve = _check_carve(_carve, len(ty))
    if not validated:
        tr, va = stratified_split(ty, val_fraction, seed, groups) if _carve is None else _carve
        if len(va) == 0:
            raise DataError("linear probe: train split too small to carve a validation split (need ≥ 2 "
                            f"{'rows' if groups is None else 'source groups'} in some class)")
        (tx, ty), (vx, vy), carved = (tx[tr], ty[tr]), (tx[va], ty[va]), True
    else:
        (vx, vy), carved = _as_tensors(val_x, val_y, "val"), False
    if tested:
        ex, ey = _as_tensors(test_x, test_y, "test")
    C = _num_classes("linear probe", num_classes, class_names, [ty, vy] + ([ey] if tested else []))

    mean, std = standardizer(tx)
    sx, svx = (tx - mean) / std, (vx - mean) / std
    scores = {}
    for wd in weight_decays:
        logits = fit_linear(sx, ty, C, wd, max_iter)(svx)
        acc = int((logits.argmax(1) == vy).sum()) / len(vy)  # (an exact fraction, as the reported top-k)
        scores[wd] = (acc, -F.cross_entropy(logits, vy).item())
    best = max(weight_decays, key=lambda wd: scores[wd])
    log.info("linear probe: val top-1 per weight decay %s -> %g",
             {f"{wd:g}": round(100 * a, 2) for wd, (a, _) in scores.items()}, best)

    if not tested:  # nothing held out: report the selection fit on val
        ex, ey, fx, fy, evaluated = vx, vy, tx, ty, "val"
    else:
        fx, fy, evaluated = torch.cat([tx, vx]), torch.cat([ty, vy]), "test"
    mean, std = standardizer(fx)
    head = fit_linear((fx - mean) / std, fy, C, best, max_iter)
    # ranked by float64 log-probabilities: a far row's float32 softmax underflows to 0 for all but its top class (a
    # logit gap past ~100), and its other classes would rank by class id, not by score
    log_probs = head((ex - mean) / std).double().log_softmax(1)
    return {
        **classification_report(log_probs, ey, class_names, trained_classes=len(fy.unique())),
        "method": "linear",
        "weight_decay": best,
        "val_top1": {f"{wd:g}": a for wd, (a, _) in scores.items()},
        "val_carved_from_train": carved,
        "evaluated_on": evaluated,
        "num_fit": len(fx),
        "num_select_train": len(tx),
        "num_select_val": len(vx),
    }


def nearest(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest of each row of ``sim (n, N)`` and their columns, ``(n, k)`` each, largest first: a stable
    descending sort's first k, so that of equal values the lower column comes first and is kept at the k-th (topk
    alone keeps either: a kNN vote that hung on the train list's order). Sorted in full only for the rows where more
    values tie with the k-th than topk took."""
    near, idx = sim.topk(k, dim=1)
    kth = near[:, -1:]
    rows = ((sim == kth).sum(1) > (near == kth).sum(1)).nonzero().flatten()
    idx = idx.sort(dim=1).values  # (column order: the stable sort below keeps it among equal values)
    if len(rows):
        idx[rows] = sim[rows].sort(dim=1, descending=True, stable=True).indices[:, :k].sort(dim=1).values
    near = sim.gather(1, idx)
    order = near.sort(dim=1, descending=True, stable=True).indices
    return near.gather(1, order), idx.gather(1, order)


KNN_K, KNN_TEMPERATURE, KNN_WEIGHTING = 20, 0.07, "softmax"
"""kNN's defaults: :func:`knn_classify`'s, and :func:`run_probe`'s for an option not given."""


def knn_classify(train_x, train_y, test_x, test_y, *, k: int = KNN_K, temperature: float = KNN_TEMPERATURE,
                 weighting: str = KNN_WEIGHTING, num_classes: int | None = None, chunk: int = 1024,
                 class_names: list[str] | None = None) -> dict[str, Any]:
    """kNN on cosine similarity of standardised features. ``weighting``: 'softmax' (vote weight
    ``exp(sim / temperature)``, DINO) or 'majority' (weight ``1 + sim / (4k)``: one vote each, a tie going to the
    nearer class by summed similarity); each class's summed weights, normalised, are its probability. ``k`` is
    capped at the number of train rows; classes as :func:`linear_probe`'s.
    Returns the ``classification_report`` of the test split plus ``k``, ``weighting``, ``temperature`` (None for
    'majority', which weighs no vote by it)."""
    check_knn(k, temperature, weighting)
    tx, ty = _as_tensors(train_x, train_y, "train")
    ex, ey = _as_tensors(test_x, test_y, "test")
    C = _num_classes("kNN", num_classes, class_names, [ty, ey])
    k = min(k, len(tx))
    mean, std = standardizer(tx)
    bank = F.normalize((tx - mean) / std, dim=1)  # (N_train, D)
    probs, voted = [], []
    for q in ((ex - mean) / std).split(chunk):
        sim, idx = nearest(F.normalize(q, dim=1) @ bank.T, k)  # (n, k), nearest first, ties to the earlier row
        sim = sim.double()
        if weighting == "softmax":  # exp(sim / T) relative to the nearest: the same shares, no overflow at small T
            w = ((sim - sim[:, :1]) / temperature).exp()  # (float64: a far vote underflows float32 from T ~ 0.01)
        else:  # one vote each; classes with as many votes are ranked by their summed similarity (under 1/2 vote)
            w = 1 + sim / (4 * k)
        votes = torch.zeros(len(q), C, dtype=torch.float64).scatter_add_(1, ty[idx], w)  # (n, C)
        probs.append(votes / votes.sum(1, keepdim=True))
        voted.append(torch.zeros(len(q), C, dtype=torch.bool).scatter_(1, ty[idx], True))  # (a weight may still be 0)
    return {**classification_report(torch.cat(probs), ey, class_names, voted=torch.cat(voted),
                                     trained_classes=len(ty.unique())), "method": "knn",
            "k": k, "weighting": weighting, "temperature": temperature if weighting == "softmax" else None,
            "num_train": len(tx)}


def _check_disjoint(lists: dict[str, str | Path], entries: dict[str, list], root: str,
                    group_by: re.Pattern | None = None) -> None:
    """Refuse a list that names a video twice, or splits that share videos (``entries``, each split's list's): a probe
    would score videos it was fit on (kNN finds each one itself; a split carved from train, the copy in the other
    part). Splits that share source videos (:func:`~mme.data.lists.source_group`, by ``group_by``: a clip's sibling
    is as near) are warned about, by rank 0."""
    from mme.data.lists import listed_once, shared_video, warn_of_shared_sources_listed
    from mme.train import distributed as dist

    videos = {split: listed_once(f, entries[split], root, f"the {split} list") for split, f in lists.items()}
    names = list(videos)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared, named = shared_video(videos[a], videos[b], root)
            if shared:
                raise ConfigError(f"the {a} list {lists[a]} and the {b} list {lists[b]} share "
                                  f"{counted(shared, 'video')}, e.g. {named}: a probe must score videos it was not "
                                  "fit on")
    if dist.is_main():
        warn_of_shared_sources_listed(", ".join(f"the {split} list {f}" for split, f in lists.items()), entries,
                                      group_by)


def failed_classes(train_list: str | Path, train: list, fitted: Any) -> str | None:
    """The warning, or None, where every video of a class of the train list (``train``, its entries) failed, so
    that no row of it is among ``fitted`` (the labels of the rows that embedded), naming those classes and their
    video counts: the probe cannot predict them (:func:`mme.data.lists.untrained_classes` warns of the classes the
    list has none of, before any embedding)."""
    from collections import Counter

    kept = set(np.asarray(fitted).tolist())
    lost = sorted((label, n) for label, n in Counter(e.label for e in train).items() if label not in kept)
    if not lost:
        return None
    counts = ", ".join(f"{label} ({n} videos)" for label, n in lost)
    return (f"every video of class(es) {counts} of the train list {train_list} failed: the kNN bank and a probe "
            f"fit on the train list alone hold none of them, so the scores of those classes' videos cannot be right")


def check_knn(k: int, temperature: float, weighting: str) -> None:
    """The kNN options, checked before any work (k = 0 or temperature 0 would vote for class 0 silently)."""
    if weighting not in ("softmax", "majority"):
        raise ConfigError(f"--weighting must be 'softmax' or 'majority', got {weighting!r}")
    if k < 1:
        raise ConfigError(f"--k must be at least 1 (neighbours that vote), got {k}")
    if not temperature > 0:
        raise ConfigError(f"--temperature must be positive (votes weigh exp(similarity / temperature)), got "
                          f"{temperature}")


def _refuse_unused(knn: bool, k: int | None, temperature: float | None, weighting: str | None, seed: int | None,
                   carved: bool, val_given: bool) -> None:
    """Refuse, before any work, a probe option given (not None) that nothing would use, which the probe took and
    dropped without a word (``probe.json`` recording the temperature of majority votes)."""
    given = [flag for flag, value in (("--k", k), ("--temperature", temperature), ("--weighting", weighting))
             if value is not None]
    if not knn and given:
        raise ConfigError(f"{', '.join(given)} with --no-knn: options of kNN, which it skips; leave "
                          f"{plural(len(given), 'it', 'them')} out")
    if weighting == "majority" and temperature is not None:
        raise ConfigError("--temperature with --weighting majority: the temperature weighs softmax votes "
                          "(exp(similarity / T)), and majority votes count one each; leave one out")
    if seed is not None and not carved:
        raise ConfigError("--seed draws the validation split carved from train, and none is carved ("
                          + ("--val is given" if val_given else "kNN alone scores the test list") + "); leave it out")


REPORT = "probe.json"


def _drop_earlier_report(path: Path) -> None:
    """Before a probe's work, the ``probe.json`` an earlier probe left in its ``--out`` is removed, so that a probe
    that then fails or is stopped leaves none that a script would read as its own (it names another checkpoint, or
    lists since changed); a file of that name that is no probe report (a user's own) is a ConfigError, before any
    work, as the report would replace it."""
    if not path.is_file():
        return
    earlier = read_json_object(path, ("checkpoint", "splits"))  # (what every probe.json of mme's holds)
    if earlier is None:
        raise ConfigError(f"--out {str(path.parent)!r} holds {path.name}, which is no probe report of mme's, where "
                          "this probe writes its own: move it, or choose another --out")
    with removing(path, "it is an earlier probe's report, which this probe replaces: make it removable, or choose "
                  "another --out"):
        path.unlink()
    log.info("removed the %s of an earlier probe (of %s) from %s: this probe writes its own", path.name,
             earlier["checkpoint"], path.parent)


@torch_as_mme()
def run_probe(checkpoint: str | Path, train_list: str | Path, out_dir: str | Path, *, val_list: str | None = None,
              test_list: str | None = None, classes: str | None = None, linear: bool = True, knn: bool = True,
              k: int | None = None, temperature: float | None = None, weighting: str | None = None,
              weight_decays: tuple[float, ...] = WEIGHT_DECAYS, val_fraction: float = 0.2, seed: int | None = None,
              group_by: str | None = None, **embed_kwargs) -> dict[str, Any] | None:
    """``mme probe``: embed each split once (cached in ``out_dir/features/<split>.safetensors``, see
    :func:`mme.eval.features.embed`; ``embed_kwargs`` are its view and loader options), then the linear probe
    and kNN; failed videos are left out and counted. Writes ``out_dir/probe.json`` and returns it. Under torchrun
    the ranks embed their shares, then rank 0 alone fits and reports; the others return None at once (waiting in
    a collective through a long fit, they would run into NCCL's timeout).

    kNN is evaluated on the split the linear probe reports on: test, else val, else the same stratified
    ``val_fraction`` of train (same ``seed``). A split carved from train holds whole source videos: the clips of
    one are a group (:func:`mme.data.lists.source_group`: ``group_by``, a regular expression over the file name, else
    the UCF101, HMDB51 or Kinetics name, else the file), all on one side of it. ``k``, ``temperature`` and
    ``weighting`` not given are :data:`KNN_K`, :data:`KNN_TEMPERATURE`, :data:`KNN_WEIGHTING`, ``seed`` 0; one given
    that nothing would use is refused (kNN's with ``knn`` False, ``temperature`` with 'majority' votes, ``seed`` where
    no split is carved)."""
    from mme.data.dataset import ClassificationDataset
    from mme.data.lists import (
        check_class_ids,
        check_labels,
        check_root,
        group_pattern,
        misnamed_classes,
        read_classes,
        source_group,
        untrained_classes,
    )
    from mme.eval.features import (
        EMBED_COUNTS,
        check_embed_options,
        embed,
        read_encoder,
        read_features,
        refuse_unowned,
        say_unindexed,
    )
    from mme.train import distributed as dist
    from mme.train.precision import run_threads

    for option, named in (("--val", val_list), ("--test", test_list), ("--classes", classes)):
        if named is not None:
            file_path(named, option)  # (an empty one, of an unset shell variable, was taken for the option not given)
    seed = None if seed is None else check_seed(seed, "--seed")
    pattern = group_pattern(group_by)
    check_root(embed_kwargs.get("root", ""), "--root")
    if not (linear or knn):
        raise ConfigError("--no-linear with --no-knn leaves the probe nothing to fit or score; drop one of them "
                          "(mme embed makes the features alone)")
    carved = not val_list and (linear or not test_list)  # (kNN alone with a test list carves nothing)
    _refuse_unused(knn, k, temperature, weighting, seed, carved, bool(val_list))
    k = KNN_K if k is None else k
    temperature = KNN_TEMPERATURE if temperature is None else temperature
    weighting = KNN_WEIGHTING if weighting is None else weighting
    seed = 0 if seed is None else seed
    if linear:
        weight_decays = check_weight_decays(weight_decays)
    if knn:
        check_knn(k, temperature, weighting)
    out_dir = check_output(out_dir, "--out", folder=True, make=False)  # made by embed, the checkpoint read
    splits = {"train": train_list, "val": val_list, "test": test_list}
    names = read_classes(classes, "--classes") if classes else None
    entries = {split: check_labels(list_file, len(names) if names else None, f"the {split} list")
               for split, list_file in splits.items() if list_file}  # before any embedding: labels, of the map
    # (each list read here alone: one given through a pipe, <(cat train.txt), reads empty the second time)
    scored = {f"the {s} list": (splits[s], entries[s]) for s in ("val", "test") if s in entries}
    notes = [untrained_classes(train_list, entries["train"], scored),
             misnamed_classes(names, f"--classes {classes}", [(splits[s], entries[s]) for s in entries])
             if names else None]
    for note in notes:
        if note and dist.is_main():
            log.warning("%s", note)
    _check_disjoint({s: f for s, f in splits.items() if f}, entries, embed_kwargs.get("root", ""), pattern)
    check_class_ids(train_list, entries["train"], "the train list", len(names) if names else None,
                    "give --classes (the class map)", scored)  # (every list's labels count the probe's classes)
    features = {split: out_dir / "features" / f"{split}.safetensors" for split, f in splits.items() if f}
    options = {name: value for name, value in embed_kwargs.items()
               if name in ("backend", "device", "index_dir", *EMBED_COUNTS)}
    # Before the checkpoint is read, once for every split: embed's options, and each split's files.
    on, counts = check_embed_options(list(features.values()), **options)
    for path in features.values():
        refuse_unowned(path, probe_out=out_dir)  # (mme embed's, a cache or damaged, alone are replaced)
    if dist.is_main():
        _drop_earlier_report(out_dir / REPORT)
    dist.init_distributed(on)
    # what every rank does: embed the splits (each split's options and list compared by its embed); the fits and
    # their options (k, seed, ...) are rank 0's alone
    dist.check_same_settings({"splits": list(features)}, "the options of mme probe",
                             "every rank must be given the same lists")
    with dist.agreed():  # read once for every split (its warnings said once), by each rank
        read = read_encoder(checkpoint, **{name: value for name, value in embed_kwargs.items() if name in (
            "img_size", "num_frames", "stride", "segments", "orientation", "backend", "index_dir")})
    index_dir = embed_kwargs.get("index_dir")
    unindexed = index_dir is not None and not holds_indices(index_dir)  # (made: check_embed_options)
    if unindexed:  # every split's list: the first split's reads fill the folder, its check would name that list alone
        say_unindexed(index_dir, ClassificationDataset.as_arguments([splits[s] for s in features],
                                                                    embed_kwargs.get("root", "")))
    data, info = {}, {}
    clip = read.encoder.cfg  # the clip the features were made at: as given, else the checkpoint's
    for split, path in features.items():
        embed(checkpoint, splits[split], path, checked_on=on, read=read, entries=entries[split],
              unindexed_said=unindexed, **{**embed_kwargs, **counts})
        x, valid, y, meta = read_features(path)
        data[split] = (x[valid], y[valid])
        if split == "train":
            train_valid = valid.tolist()  # (rows in the list's order)
        info[split] = {"list": str(splits[split]), "videos": len(x), "failed": int((~valid).sum()),
                       "num_frames": clip.num_frames, "img_size": clip.img_size, "tubelet": clip.tubelet_size,
                       "views": meta["views"], "stride": meta["stride"], "segments": meta["segments"],
                       "orientation": meta["orientation"], "backend": meta["backend"], "precision": meta["precision"],
                       "features": str(path)}
    if not dist.is_main():
        return None
    note = failed_classes(train_list, entries["train"], data["train"][1])
    if note:
        log.warning("%s", note)
    # of the lists' labels, not the rows that embedded: a class whose every video failed is still one of the probe's
    num_classes = _num_classes("probe", None, names, [torch.tensor([e.label for e in listed], dtype=torch.long)
                                                      for listed in entries.values()])
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "splits": info, "num_classes": num_classes,
                              **code_version()}
    tx, ty = data["train"]
    vx, vy = data.get("val", (None, None))
    ex, ey = data.get("test", (None, None))
    carve = groups = None  # (the sources are named only where a split is carved by them)
    if carved:  # the split linear_probe carves (and kNN scores where no test list is given): whole source groups
        groups = [source_group(e.path, pattern) for e, keep in zip(entries["train"], train_valid, strict=True)
                  if keep]
        carve = tr, va = stratified_split(torch.as_tensor(ty), val_fraction, seed, groups)
        if len(va) == 0:
            raise DataError(f"{train_list}: too small to carve a validation split from (need ≥ 2 source groups in "
                            f"some class; its {len(ty)} videos are {len(set(groups))} source groups by "
                            + (f"--group-by {group_by!r}" if group_by else "UCF101, HMDB51 or Kinetics names, else "
                               "the file") + "): " + (
                                "the split kNN is scored on; give --val or --test, or --group-by" if not linear else
                                "the split the linear probe's L2 weight is chosen on; give --val, or --group-by, or "
                                "--no-linear (kNN alone, scored on the test list)" if ex is not None else
                                "the split the linear probe's L2 weight is chosen on and both probes are scored on; "
                                "give --val, or --group-by"))
        val_groups = {groups[i] for i in va.tolist()}
        result["val_carved"] = {"group_by": group_by, "train_groups": len({groups[i] for i in tr.tolist()}),
                                "val_groups": len(val_groups)}
        log.info("validation split carved from train: %d of %d source groups, %d of %d videos (%.1f %%)",
                 len(val_groups), len(set(groups)), len(va), len(ty), 100 * len(va) / len(ty))
        kept = sorted(set(ty.tolist()) - set(ty[va.numpy()].tolist()))
        if kept:
            log.warning("class(es) %s of the train list have a single source group (%s): all their videos stay "
                        "in train, none in the validation split carved from it, which scores none of them; give "
                        "--val, or --group-by", ", ".join(str(names[c] if names else c) for c in kept),
                        f"--group-by {group_by!r}" if group_by else "UCF101, HMDB51 or Kinetics names, else the file")
    with run_threads(torch.device("cpu"), 0):  # (the fits, on the features in memory)
        if linear:
            result["linear"] = linear_probe(tx, ty, vx, vy, ex, ey, num_classes=num_classes,
                                            weight_decays=weight_decays, val_fraction=val_fraction, seed=seed,
                                            class_names=names, groups=groups, _carve=carve)
        if knn:
            if ex is None and vx is None:  # the same carved split as the linear probe
                tx, ty, ex, ey = tx[tr.numpy()], ty[tr.numpy()], tx[va.numpy()], ty[va.numpy()]
            elif ex is None:
                ex, ey = vx, vy
            result["knn"] = {**knn_classify(tx, ty, ex, ey, k=k, temperature=temperature, weighting=weighting,
                                            num_classes=num_classes, class_names=names),
                             "evaluated_on": "test" if test_list else "val",
                             "val_carved_from_train": carved and not test_list}
            if result["knn"]["k"] < k:  # (knn_classify caps it at its bank)
                log.warning("--k %d is more than the %s of kNN's bank (the train list's%s): k=%d taken", k,
                            counted(len(tx), "video"), ", less the split carved from it" if carved and not test_list
                            else "", result["knn"]["k"])
    scored = "test" if test_list else "val" if val_list else "train"
    n = info[scored]["failed"]  # of train's: none of the videos carved from it to score
    # the lists each method is fit on: the linear probe's every list but the scored one (train ∪ val where a test
    # list is given), kNN's bank the train list alone (a val list beside a test list is none of its)
    fitted = {"linear": ["train"] if scored == "train" else [split for split in info if split != scored],
              "knn": ["train"]}
    for method in ("linear", "knn"):
        if method in result:
            r = result[method]
            failed = ("" if not n or scored == "train" else f", {n} failed") + "".join(
                f"; {info[split]['failed']} of the {split} list failed" for split in fitted[method]
                if info[split]["failed"])
            chosen = ("; on the split its L2 was chosen on: optimistic, give --test" if method == "linear"
                      and r["evaluated_on"] != "test" else "; on a split carved from train (whole source videos), "
                      "give --test" if r["evaluated_on"] != "test" and r["val_carved_from_train"] else "")
            print(f"{method:>6}: top-1 {100 * r['top1']:6.2f}%  {top5_said(r)}  "
                  f"({r['num_samples']} videos{failed}{chosen})", flush=True)
    then = (f"the figures above are the probe's; its features are kept in {out_dir / 'features'}, so the same "
            f"command writes it without embedding again")
    with writing(out_dir / REPORT, then):
        atomic_write_json(out_dir / REPORT, result)
    print(f"wrote {out_dir / REPORT}", flush=True)
    return result
