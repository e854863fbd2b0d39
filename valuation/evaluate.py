"""Counterfactual accuracy of valuation methods: LDS, brittleness and planted facts.

A *method* gives scores ``(n_query, n_train)`` (positive = the train example helps the query).
Ground truth comes from retraining: a user-supplied ``train_fn(mask, seed) -> model`` trains on
the examples where ``mask`` is True and ``measure_fn(model) -> (n_query,)`` measures each query
(higher = better, e.g. the correct-class margin or minus the loss). Retrained measurements are
cached on disk (``cache_dir``) and reused across methods.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

TrainFn = Callable[[torch.Tensor, int], object]
MeasureFn = Callable[[object], torch.Tensor]


def sample_subsets(n_train: int, n_subsets: int, alpha: float = 0.5, seed: int = 0) -> torch.Tensor:
    """``(n_subsets, n_train)`` bool masks, each with exactly ``round(alpha * n_train)`` True."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    gen = torch.Generator().manual_seed(seed)
    size = round(alpha * n_train)
    masks = torch.zeros(n_subsets, n_train, dtype=torch.bool)
    for m in range(n_subsets):
        masks[m, torch.randperm(n_train, generator=gen)[:size]] = True
    return masks


def rank(x: torch.Tensor) -> torch.Tensor:
    """Ranks along the last dim, ties averaged (float64)."""
    x = x.double()
    order = x.argsort(dim=-1)
    ranks = torch.empty_like(x)
    ranks.scatter_(-1, order, torch.arange(x.shape[-1], dtype=torch.float64).expand_as(x).contiguous())
    # average ties: positions with equal values get the mean of their ranks
    flat_x, flat_r = x.reshape(-1, x.shape[-1]), ranks.reshape(-1, x.shape[-1])
    for row in range(flat_x.shape[0]):
        values, inverse, counts = torch.unique(flat_x[row], return_inverse=True, return_counts=True)
        if len(values) < flat_x.shape[1]:
            sums = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, flat_r[row])
            flat_r[row] = (sums / counts)[inverse]
    return flat_r.reshape(x.shape)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation along the last dim; NaN where either side is constant."""
    ra, rb = rank(a), rank(b)
    ra = ra - ra.mean(-1, keepdim=True)
    rb = rb - rb.mean(-1, keepdim=True)
    denom = (ra.square().sum(-1) * rb.square().sum(-1)).sqrt()
    return (ra * rb).sum(-1) / denom


@dataclass
class GroundTruth:
    """Measurements of retrained models: ``(n_subsets, n_seeds, n_query)`` for ``masks``."""

    masks: torch.Tensor  # (n_subsets, n_train) bool
    measurements: torch.Tensor  # (n_subsets, n_seeds, n_query)

    @property
    def mean(self) -> torch.Tensor:
        """``(n_subsets, n_query)`` mean over seeds."""
        return self.measurements.double().mean(1)

    def reliability(self) -> float:
        """Split-half reliability: Spearman between the two seed halves' means, over queries."""
        s = self.measurements.shape[1]
        if s < 2:
            return float("nan")
        a = self.measurements[:, : s // 2].double().mean(1)
        b = self.measurements[:, s // 2 :].double().mean(1)
        return float(torch.nanmean(spearman(a.T, b.T)))


def ground_truth(
    train_fn: TrainFn,
    measure_fn: MeasureFn,
    masks: torch.Tensor,
    seeds: Sequence[int],
    cache_dir: str | Path | None = None,
    key: str = "",
    progress: Callable[[int], None] | None = None,
) -> GroundTruth:
    """Retrain on every subset with every seed (cached under ``cache_dir`` by masks, seeds, key)."""
    digest = hashlib.sha256(masks.numpy().tobytes() + repr(list(seeds)).encode() + key.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"ground-truth-{digest}.pt" if cache_dir else None
    if path is not None and path.exists():
        return GroundTruth(**torch.load(path))
    rows = []
    for m in range(masks.shape[0]):
        per_seed = []
        for seed in seeds:
            per_seed.append(torch.as_tensor(measure_fn(train_fn(masks[m], seed))).double())
            if progress is not None:
                progress(1)
        rows.append(torch.stack(per_seed))
    gt = GroundTruth(masks, torch.stack(rows))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"masks": gt.masks, "measurements": gt.measurements}, path)
    return gt


@dataclass
class LDSResult:
    mean: float
    se: float
    per_query: torch.Tensor
    ceiling: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.se:.3f} (ceiling {self.ceiling:.3f})"


def lds(scores: torch.Tensor, gt: GroundTruth) -> LDSResult:
    """Linear datamodeling score: per query, Spearman over subsets between the summed scores of
    each subset and the retrained measurement; mean and standard error over queries."""
    predicted = gt.masks.double() @ scores.double().T  # (n_subsets, n_query)
    per_query = spearman(predicted.T, gt.mean.T)
    valid = per_query[~per_query.isnan()]
    se = float(valid.std() / math.sqrt(len(valid))) if len(valid) > 1 else float("nan")
    return LDSResult(float(valid.mean()), se, per_query, gt.reliability())


@dataclass
class BrittlenessResult:
    ks: list[int]
    mean_change: list[float]  # mean over queries of (measurement after removal - before)
    flipped: list[int]  # queries whose measurement turned negative (e.g. margin < 0: misclassified)


def brittleness(
    scores: torch.Tensor,
    train_fn: TrainFn,
    measure_fn: MeasureFn,
    ks: Sequence[int],
    seeds: Sequence[int],
    base: torch.Tensor | None = None,
) -> BrittlenessResult:
    """Remove each query's top-k train examples by ``scores``, retrain, measure that query."""
    n_query, n_train = scores.shape
    if base is None:
        full = torch.ones(n_train, dtype=torch.bool)
        base = torch.stack([torch.as_tensor(measure_fn(train_fn(full, s))).double() for s in seeds]).mean(0)
    changes, flips = [], []
    for k in ks:
        after = torch.empty(n_query, dtype=torch.float64)
        for q in range(n_query):
            mask = torch.ones(n_train, dtype=torch.bool)
            mask[scores[q].topk(k).indices] = False
            after[q] = torch.stack([torch.as_tensor(measure_fn(train_fn(mask, s)))[q].double() for s in seeds]).mean()
        changes.append(float((after - base).mean()))
        flips.append(int(((base > 0) & (after <= 0)).sum()))
    return BrittlenessResult(list(ks), changes, flips)


def planted_accuracy(
    provider_scores: torch.Tensor, truth: Sequence[int], learned: Sequence[bool] | None = None
) -> dict:
    """Top-1 provider accuracy of ``(n_query, n_providers)`` scores; also on learned facts only."""
    top = provider_scores.argmax(1)
    hit = top == torch.as_tensor(list(truth))
    out = {"accuracy": float(hit.double().mean()), "queries": len(hit)}
    if learned is not None:
        mask = torch.as_tensor(list(learned), dtype=torch.bool)
        out["accuracy_learned"] = float(hit[mask].double().mean()) if mask.any() else float("nan")
        out["learned"] = int(mask.sum())
    return out
