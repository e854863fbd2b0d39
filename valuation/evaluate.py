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
import multiprocessing
import os
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

    def reliability(self, queries: Sequence[int] | None = None) -> float:
        """Split-half reliability (the LDS ceiling): per query, Spearman over subsets between the
        means of the two seed halves; averaged over queries (``queries`` only, when given)."""
        s = self.measurements.shape[1]
        if s < 2:
            return float("nan")
        m = self.measurements.double()
        if queries is not None:
            m = m[:, :, torch.as_tensor(list(queries), dtype=torch.long)]
        a, b = m[:, : s // 2].mean(1), m[:, s // 2 :].mean(1)
        return float(torch.nanmean(spearman(a.T, b.T)))


def _cache_digest(masks: torch.Tensor, key: str) -> str:
    return hashlib.sha256(masks.numpy().tobytes() + key.encode()).hexdigest()[:16]


def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a killed run never leaves a half-written cache


# Fork workers inherit the job from the parent (closures need no pickling).
_JOB: tuple[TrainFn, MeasureFn, torch.Tensor] | None = None


def _measure_one(cell: tuple[int, int]) -> tuple[int, int, torch.Tensor]:
    assert _JOB is not None
    train_fn, measure_fn, masks = _JOB
    torch.set_num_threads(1)
    m, seed = cell
    return m, seed, torch.as_tensor(measure_fn(train_fn(masks[m], seed))).detach().double().cpu()


def ground_truth(
    train_fn: TrainFn,
    measure_fn: MeasureFn,
    masks: torch.Tensor,
    seeds: Sequence[int],
    cache_dir: str | Path | None = None,
    key: str = "",
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> GroundTruth:
    """Retrain on every subset with every seed: ``measurements`` ``(n_subsets, n_seeds, n_query)``.

    With ``cache_dir`` every finished (subset, seed) cell is saved as it completes, in one file
    per (masks, ``key``): an interrupted run resumes where it stopped, more seeds reuse the cells
    already there, and every method is scored against the same retrained models. ``key`` must
    change whenever ``train_fn`` or ``measure_fn`` do. ``workers > 1`` retrains in forked
    processes (one torch thread each); the functions must then be safe to call after a fork.
    """
    global _JOB
    seeds = list(seeds)
    path = Path(cache_dir) / f"ground-truth-{_cache_digest(masks, key)}.pt" if cache_dir else None
    cells: dict[tuple[int, int], torch.Tensor] = {}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            saved = torch.load(path)
            if not torch.equal(saved["masks"], masks):
                raise ValueError(f"{path}: cached masks differ from the requested ones (digest collision?)")
            cells = saved["cells"]
    todo = [(m, seed) for m in range(masks.shape[0]) for seed in seeds if (m, seed) not in cells]

    def record(m: int, seed: int, value: torch.Tensor) -> None:
        cells[(m, seed)] = value
        if path is not None:
            _atomic_save({"masks": masks, "key": key, "cells": cells}, path)
        if progress is not None:
            progress(1)

    if workers <= 1 or len(todo) <= 1:
        for m, seed in todo:
            record(m, seed, torch.as_tensor(measure_fn(train_fn(masks[m], seed))).detach().double().cpu())
    else:
        _JOB = (train_fn, measure_fn, masks)
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for m, seed, value in pool.imap_unordered(_measure_one, todo):
                    record(m, seed, value)
        finally:
            _JOB = None
    measurements = torch.stack([torch.stack([cells[(m, s)] for s in seeds]) for m in range(masks.shape[0])])
    return GroundTruth(masks, measurements)


def cached_ground_truth(masks: torch.Tensor, seeds: Sequence[int], cache_dir: str | Path, key: str = "") -> GroundTruth:
    """The part of :func:`ground_truth` (same ``masks``, ``cache_dir`` and ``key``) already in its
    cache, retraining nothing: the subsets whose cells exist for every seed, in order (e.g. to
    score against a ground truth another process is still computing, or one stopped early)."""
    seeds = list(seeds)
    path = Path(cache_dir) / f"ground-truth-{_cache_digest(masks, key)}.pt"
    cells: dict[tuple[int, int], torch.Tensor] = {}
    if path.exists():
        saved = torch.load(path)
        if not torch.equal(saved["masks"], masks):
            raise ValueError(f"{path}: cached masks differ from the requested ones (digest collision?)")
        cells = saved["cells"]
    done = [m for m in range(masks.shape[0]) if all((m, s) in cells for s in seeds)]
    if not done:
        return GroundTruth(masks[:0], torch.zeros(0, len(seeds), 0, dtype=torch.float64))
    measurements = torch.stack([torch.stack([cells[(m, s)] for s in seeds]) for m in done])
    return GroundTruth(masks[done], measurements)


@dataclass
class LDSResult:
    mean: float
    se: float
    per_query: torch.Tensor
    ceiling: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.se:.3f} (ceiling {self.ceiling:.3f})"


def lds(scores: torch.Tensor, gt: GroundTruth, queries: Sequence[int] | None = None) -> LDSResult:
    """Linear datamodeling score of ``scores`` ``(n_query, n_train)``: per query, Spearman over
    subsets between the summed scores of each subset and the retrained measurement; mean and
    standard error over queries (only ``queries`` when given: indices into the query axis)."""
    if scores.shape != (gt.measurements.shape[2], gt.masks.shape[1]):
        raise ValueError(
            f"scores must be (n_query, n_train) = {(gt.measurements.shape[2], gt.masks.shape[1])}, "
            f"got {tuple(scores.shape)}"
        )
    predicted = gt.masks.double() @ scores.double().T  # (n_subsets, n_query)
    per_query = spearman(predicted.T, gt.mean.T)
    ceiling = gt.reliability(queries)
    if queries is not None:
        per_query = per_query[torch.as_tensor(list(queries), dtype=torch.long)]
    valid = per_query[~per_query.isnan()]
    if len(valid) == 0:
        return LDSResult(float("nan"), float("nan"), per_query, ceiling)
    se = float(valid.std() / math.sqrt(len(valid))) if len(valid) > 1 else float("nan")
    return LDSResult(float(valid.mean()), se, per_query, ceiling)


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
    cache_dir: str | Path | None = None,
    key: str = "",
    workers: int = 1,
) -> BrittlenessResult:
    """Remove each query's top-k train examples by ``scores`` ``(n_query, n_train)``, retrain
    with every seed, and measure that query; ``base`` ``(n_query,)`` is the full-data
    measurement (retrained here when None). Retrainings go through :func:`ground_truth`, so
    they are cached and parallel in the same way (``key`` names ``train_fn``/``measure_fn``)."""
    n_query, n_train = scores.shape
    if base is None:
        full = torch.ones(1, n_train, dtype=torch.bool)
        base = ground_truth(train_fn, measure_fn, full, seeds, cache_dir, key, None, workers).mean[0]
    masks = torch.ones(len(ks), n_query, n_train, dtype=torch.bool)
    for i, k in enumerate(ks):
        masks[i].scatter_(1, scores.topk(k, dim=1).indices, False)
    gt = ground_truth(train_fn, measure_fn, masks.reshape(-1, n_train), seeds, cache_dir, key, None, workers)
    # row (k, q) of the retrained models, measured on its own query q
    after = gt.mean.reshape(len(ks), n_query, -1).diagonal(dim1=1, dim2=2)  # (len(ks), n_query)
    changes = [float((after[i] - base).mean()) for i in range(len(ks))]
    flips = [int(((base > 0) & (after[i] <= 0)).sum()) for i in range(len(ks))]
    return BrittlenessResult(list(ks), changes, flips)


def provider_credit(
    scores: torch.Tensor, groups: torch.Tensor, n_groups: int, policy: str = "topk_share", topk: int = 10
) -> torch.Tensor:
    """Credit per provider ``(n_query, n_groups)`` from ``scores`` ``(n_query, n_train)``.

    ``groups`` ``(n_train,)`` holds each train example's provider code. Policies: ``sum`` (summed
    scores), ``positive_share`` (summed positive scores) and ``topk_share`` (positive scores of
    each query's ``topk`` best examples, as the ledger's default policy credits them).
    """
    scores = scores.double()
    groups = torch.as_tensor(groups, dtype=torch.long)
    if groups.shape != (scores.shape[1],):
        raise ValueError(f"groups must be (n_train,) = ({scores.shape[1]},), got {tuple(groups.shape)}")
    out = torch.zeros(scores.shape[0], n_groups, dtype=torch.float64)
    if policy == "sum":
        return out.index_add_(1, groups, scores)
    if policy == "positive_share":
        return out.index_add_(1, groups, scores.clamp_min(0))
    if policy == "topk_share":
        top = scores.topk(min(topk, scores.shape[1]), dim=1)
        return out.scatter_add_(1, groups[top.indices], top.values.clamp_min(0))
    raise ValueError(f"policy must be sum, positive_share or topk_share, got {policy!r}")


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


# -------------------------------------------------------------------------------------------
# A whole evaluation: one task, many methods, one cached ground truth.


@dataclass
class EvalTask:
    """What :func:`evaluate_task` needs.

    ``train_fn(mask, seed)`` retrains on the ``(n_train,)`` bool mask; ``measure_fn(model)``
    gives ``(n_query,)`` measurements (higher = better); ``score_methods(names)`` returns
    ``{method name: scores (n_query, n_train)}`` (all methods when ``names`` is None);
    ``query_groups`` names subsets of queries to report separately (indices); ``providers``
    ``(n_train,)`` holds each train example's provider code (for provider Shapley; ``train_fn``
    must then accept an all-False mask).
    """

    name: str
    n_train: int
    train_fn: TrainFn
    measure_fn: MeasureFn
    score_methods: Callable[[Sequence[str] | None], dict[str, torch.Tensor]]
    query_groups: dict[str, list[int]] | None = None
    providers: torch.Tensor | None = None


@dataclass
class LDSArguments:
    """How the ground truth is sampled: ``subsets`` masks of ``alpha × n_train`` examples,
    each retrained with seeds ``0..seeds-1``."""

    subsets: int = 100
    seeds: int = 3
    alpha: float = 0.5
    subset_seed: int = 0
    workers: int = 1
    cache_dir: str | Path | None = None


def evaluate_task(
    task: EvalTask,
    args: LDSArguments,
    methods: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """LDS (mean, s.e., ceiling) of every method on ``task``; JSON-ready."""
    if args.seeds < 1 or args.subsets < 2:
        raise ValueError(f"need at least 2 subsets and 1 seed, got subsets={args.subsets}, seeds={args.seeds}")
    masks = sample_subsets(task.n_train, args.subsets, args.alpha, args.subset_seed)
    gt = ground_truth(
        task.train_fn, task.measure_fn, masks, range(args.seeds), args.cache_dir, task.name, progress, args.workers
    )
    groups = {"all": None, **(task.query_groups or {})}
    report: dict = {
        "task": task.name,
        "subsets": args.subsets,
        "seeds": args.seeds,
        "alpha": args.alpha,
        "ceiling": {g: gt.reliability(q) for g, q in groups.items()},
        "lds": {},
    }
    for name, scores in task.score_methods(methods).items():
        report["lds"][name] = {}
        for g, q in groups.items():
            r = lds(scores, gt, q)
            report["lds"][name][g] = {"mean": r.mean, "se": r.se}
    return report


# -------------------------------------------------------------------------------------------
# Provider-level ground truth: exact Shapley values over coalitions of providers.


def coalition_masks(groups: torch.Tensor, n_providers: int) -> torch.Tensor:
    """``(2^P, n_train)`` bool: coalition ``c`` holds provider ``p`` iff bit ``p`` of ``c`` is set."""
    groups = torch.as_tensor(groups, dtype=torch.long)
    if not 1 <= n_providers <= 8:
        raise ValueError(f"exact provider Shapley needs 1 <= P <= 8 providers, got {n_providers}")
    if groups.numel() and (groups.min() < 0 or groups.max() >= n_providers):
        raise ValueError(f"groups must be provider codes in [0, {n_providers}), got {groups.unique().tolist()}")
    members = (torch.arange(2**n_providers)[:, None] >> torch.arange(n_providers)[None]) & 1  # (2^P, P)
    return members.bool()[:, groups]


def shapley_from_utilities(utilities: torch.Tensor, n_providers: int) -> torch.Tensor:
    """Exact Shapley values ``(n_query, P)`` from ``utilities`` ``(2^P, n_query)`` (row = coalition
    bitmask): ``φ_p = Σ_{S ∌ p} |S|! (P−|S|−1)! / P! · (u(S ∪ {p}) − u(S))``."""
    n_coalitions = 2**n_providers
    if utilities.shape[0] != n_coalitions:
        raise ValueError(f"need one utility row per coalition ({n_coalitions}), got {utilities.shape[0]}")
    u = utilities.double()
    sizes = torch.tensor([bin(c).count("1") for c in range(n_coalitions)])
    fact = [math.factorial(i) for i in range(n_providers + 1)]
    out = torch.zeros(u.shape[1], n_providers, dtype=torch.float64)
    for p in range(n_providers):
        without = torch.tensor([c for c in range(n_coalitions) if not c >> p & 1])
        weight = torch.tensor(
            [fact[int(s)] * fact[n_providers - int(s) - 1] / fact[n_providers] for s in sizes[without]],
            dtype=torch.float64,
        )
        out[:, p] = weight @ (u[without | (1 << p)] - u[without])
    return out


@dataclass
class ShapleyResult:
    """Exact provider Shapley values per query, from retrained coalitions."""

    values: torch.Tensor  # (n_query, P), utilities averaged over seeds
    per_seed: torch.Tensor  # (n_seeds, n_query, P)
    utilities: torch.Tensor  # (2^P, n_seeds, n_query)


def provider_shapley(
    train_fn: TrainFn,
    measure_fn: MeasureFn,
    groups: torch.Tensor,
    n_providers: int,
    seeds: Sequence[int],
    cache_dir: str | Path | None = None,
    key: str = "",
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> ShapleyResult:
    """Retrain on every coalition of providers with every seed; exact Shapley values.

    ``train_fn(mask, seed)`` must accept the empty coalition (an all-False mask: e.g. return the
    untrained model). Utility = ``measure_fn`` (higher = better, e.g. minus the query's response
    loss). Cells are cached and resumable exactly like :func:`ground_truth`'s.
    """
    masks = coalition_masks(groups, n_providers)
    gt = ground_truth(train_fn, measure_fn, masks, seeds, cache_dir, key, progress, workers)
    per_seed = torch.stack([shapley_from_utilities(gt.measurements[:, s], n_providers) for s in range(len(seeds))])
    return ShapleyResult(shapley_from_utilities(gt.mean, n_providers), per_seed, gt.measurements)


def credit_shares(credit: torch.Tensor) -> torch.Tensor:
    """Shares ``(n_query, P)`` of positive credit (what a ledger pays); uniform when none is positive."""
    pos = credit.double().clamp_min(0)
    total = pos.sum(1, keepdim=True)
    uniform = torch.full_like(pos, 1.0 / pos.shape[1])
    return torch.where(total > 0, pos / total.clamp_min(1e-300), uniform)


def pro_rata_credit(groups: torch.Tensor, n_providers: int, n_query: int) -> torch.Tensor:
    """``(n_query, P)``: every query credits providers by their number of train examples."""
    counts = torch.bincount(torch.as_tensor(groups, dtype=torch.long), minlength=n_providers).double()
    return counts.expand(n_query, n_providers).clone()


def shapley_agreement(credit: torch.Tensor, shapley: torch.Tensor, queries: Sequence[int] | None = None) -> dict:
    """How far credit ``(n_query, P)`` is from Shapley values ``(n_query, P)``, per query then
    averaged: L1 distance of the share vectors (0 = identical, 2 = disjoint), top-1 provider
    agreement, Spearman over providers; mean and standard error (JSON-ready)."""
    if credit.shape != shapley.shape:
        raise ValueError(f"credit {tuple(credit.shape)} and Shapley values {tuple(shapley.shape)} differ in shape")
    if queries is not None:
        idx = torch.as_tensor(list(queries), dtype=torch.long)
        credit, shapley = credit[idx], shapley[idx]
    l1 = (credit_shares(credit) - credit_shares(shapley)).abs().sum(1)
    top1 = (credit.double().argmax(1) == shapley.double().argmax(1)).double()
    rho = spearman(credit.double(), shapley.double())

    def stat(x: torch.Tensor) -> dict:
        x = x[~x.isnan()]
        se = float(x.std() / math.sqrt(len(x))) if len(x) > 1 else float("nan")
        return {"mean": float(x.mean()) if len(x) else float("nan"), "se": se}

    return {"l1": stat(l1), "top1": stat(top1), "spearman": stat(rho), "per_query_l1": l1.tolist()}


# -------------------------------------------------------------------------------------------
# Tail-patch: a counterfactual check per query that needs no retraining.


class TailPatcher:
    """Repeated tail-patch steps on one working copy of ``model`` (made once): each :meth:`delta`
    first resets the copy's parameters to the model's, so many steps cost one copy of memory."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, object], torch.Tensor], lr: float):
        import copy

        self.model, self.loss_fn, self.lr = model, loss_fn, lr
        self.patched = copy.deepcopy(model)

    def delta(self, batch: object, measure_fn: MeasureFn) -> torch.Tensor:
        """Change of ``measure_fn`` after one SGD step of size ``lr`` on the summed loss of ``batch``."""
        with torch.no_grad():
            for p, original in zip(self.patched.parameters(), self.model.parameters(), strict=True):
                p.copy_(original)
        params = [p for p in self.patched.parameters() if p.requires_grad]
        grads = torch.autograd.grad(self.loss_fn(self.patched, batch), params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                if g is not None:
                    p.sub_(self.lr * g)
        before = torch.as_tensor(measure_fn(self.model)).double()
        return torch.as_tensor(measure_fn(self.patched)).double() - before


def tail_patch(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, object], torch.Tensor],
    measure_fn: MeasureFn,
    batch: object,
    lr: float,
) -> torch.Tensor:
    """Change of ``measure_fn`` ``(n_query,)`` after one SGD step of size ``lr`` on the summed loss
    of ``batch``, taken on a copy of ``model`` (the model itself is left untouched)."""
    return TailPatcher(model, loss_fn, lr).delta(batch, measure_fn)


@dataclass
class TailPatchResult:
    """Per query: measurement change after a step on its top-k examples and on k random ones."""

    top: torch.Tensor  # (n_query,)
    random: torch.Tensor  # (n_query,)

    @property
    def margin(self) -> torch.Tensor:
        """``top − random`` per query: > 0 when the credited examples move the query more."""
        return self.top - self.random

    def summary(self) -> dict:
        m = self.margin
        se = float(m.std() / math.sqrt(len(m))) if len(m) > 1 else float("nan")
        return {
            "top": float(self.top.mean()),
            "random": float(self.random.mean()),
            "margin": float(m.mean()),
            "se": se,
            "top_wins": int((m > 0).sum()),
            "queries": len(m),
        }


def tail_patch_check(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, object], torch.Tensor],
    measure_fn: MeasureFn,
    scores: torch.Tensor,
    batch_of: Callable[[list[int]], object],
    k: int = 10,
    lr: float = 1e-3,
    seed: int = 0,
) -> TailPatchResult:
    """For each query ``q`` of ``scores`` ``(n_query, n_train)``: one step on its ``k`` highest-
    scored train examples (``batch_of(indices)`` builds their batch) and one on ``k`` examples drawn
    at random (seeded), each measured on ``q`` (e.g. its response log-probability)."""
    gen = torch.Generator().manual_seed(seed)
    n_query, n_train = scores.shape
    top, rand = torch.zeros(n_query, dtype=torch.float64), torch.zeros(n_query, dtype=torch.float64)
    for q in range(n_query):
        best = scores[q].topk(min(k, n_train)).indices.tolist()
        drawn = torch.randperm(n_train, generator=gen)[: min(k, n_train)].tolist()
        top[q] = tail_patch(model, loss_fn, measure_fn, batch_of(best), lr)[q]
        rand[q] = tail_patch(model, loss_fn, measure_fn, batch_of(drawn), lr)[q]
    return TailPatchResult(top, rand)


@dataclass
class ShapleyArguments:
    """Provider Shapley ground truth: every coalition retrained with seeds ``0..seeds-1``; credit
    per method under each crediting ``policy`` (:func:`provider_credit`)."""

    seeds: int = 2
    workers: int = 1
    cache_dir: str | Path | None = None
    policies: tuple[str, ...] = ("topk_share", "positive_share", "sum")
    topk: int = 10


def evaluate_provider_shapley(
    task: EvalTask,
    args: ShapleyArguments,
    methods: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Agreement of every method's provider credit with exact provider Shapley values, beside
    pro-rata credit; per query group; JSON-ready."""
    if task.providers is None:
        raise ValueError(f"task {task.name!r} has no providers: set EvalTask.providers to use provider Shapley")
    providers = torch.as_tensor(task.providers, dtype=torch.long)
    n_providers = int(providers.max()) + 1
    res = provider_shapley(
        task.train_fn,
        task.measure_fn,
        providers,
        n_providers,
        range(args.seeds),
        args.cache_dir,
        f"{task.name}-shapley",
        progress,
        args.workers,
    )
    groups = {"all": None, **(task.query_groups or {})}
    n_query = res.values.shape[0]
    report: dict = {
        "task": task.name,
        "seeds": args.seeds,
        "providers": n_providers,
        "shapley": res.values.tolist(),
        "seed_agreement": shapley_agreement(res.per_seed[0], res.per_seed[-1]) if args.seeds > 1 else None,
        "pro-rata": {
            g: shapley_agreement(pro_rata_credit(providers, n_providers, n_query), res.values, q)
            for g, q in groups.items()
        },
        "methods": {},
    }
    for name, scores in task.score_methods(methods).items():
        report["methods"][name] = {
            policy: {
                g: shapley_agreement(provider_credit(scores, providers, n_providers, policy, args.topk), res.values, q)
                for g, q in groups.items()
            }
            for policy in args.policies
        }
    return report
