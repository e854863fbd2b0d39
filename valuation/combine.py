"""Combining a checkpoint set's scores: per-query normalisation, weights, top-k merge.

A checkpoint set values each query against several checkpoints of one training run. Raw scores
grow over training while the late checkpoints are the least informative (benchmarks/ACCURACY.md),
so each checkpoint's scores for a query can first be divided by their mean absolute value over
the train examples; checkpoints can also be weighted by the learning rate over the segment of
training they end (TracIn's ``Σ_t η_t``), read from Hugging Face's ``trainer_state.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from valuation.errors import DataworthError

TopK = list[tuple[str, str, str, float]]  # (example_id, doc_id, provider_id, score)


class TrainerStateError(DataworthError):
    """A ``trainer_state.json`` without the learning rates a weighting needs."""


def mean_abs_from_sums(group_sums: torch.Tensor, group_positive: torch.Tensor, examples: int) -> torch.Tensor:
    """Per query mean ``|score|`` over ``examples`` train examples ``(n_query,)``, from per-group
    sums of scores and of positive scores (``|s| = 2·max(s, 0) − s``); 1 where undefined."""
    total = (2 * group_positive.double() - group_sums.double()).sum(1)
    if examples <= 0:
        return torch.ones_like(total)
    mean = total / examples
    return torch.where(total > 0, mean, torch.ones_like(mean))


def mean_abs_from_sample(scores: torch.Tensor, population: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query mean ``|score|`` estimated from the scores ``(n_query, m)`` of a uniform sample of
    ``m`` of ``population`` train examples drawn without replacement, and its relative standard
    error ``(n_query,)`` (finite-population corrected: 0 when the sample is the population).
    1 where the mean is undefined, like :func:`mean_abs_from_sums`."""
    a = scores.abs().double()
    m = a.shape[1]
    if m == 0:
        return torch.ones(a.shape[0], dtype=torch.float64), torch.zeros(a.shape[0], dtype=torch.float64)
    mean = a.mean(1)
    exact = m >= population or m < 2
    se = torch.zeros_like(mean) if exact else a.std(1) / m**0.5 * (1 - m / population) ** 0.5
    defined = mean > 0
    rel = torch.where(defined, se / torch.where(defined, mean, torch.ones_like(mean)), torch.zeros_like(mean))
    return torch.where(defined, mean, torch.ones_like(mean)), rel


def combine_checkpoints(
    per_checkpoint_group_sums: Sequence[torch.Tensor],
    per_checkpoint_positive: Sequence[torch.Tensor],
    per_checkpoint_topk: Sequence[Sequence[TopK]],
    examples: Sequence[int],
    weights: Sequence[float] | None = None,
    normalise: bool = True,
    mean_abs: Sequence[torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[TopK]]:
    """Weighted sums of the checkpoints' per-provider sums, and their merged top-k lists.

    Args:
        per_checkpoint_group_sums: per checkpoint ``(n_query, n_groups)`` summed scores.
        per_checkpoint_positive: per checkpoint ``(n_query, n_groups)`` summed positive scores.
        per_checkpoint_topk: per checkpoint, per query, the top-k ``(example_id, doc_id,
            provider_id, score)``.
        examples: per checkpoint, the number of train examples scored.
        weights: per checkpoint (default 1 each).
        normalise: divide each checkpoint's scores for a query by their mean ``|score|`` first.
        mean_abs: per checkpoint ``(n_query,)`` mean ``|score|`` to normalise by, or None to take
            it from the sums (a checkpoint valued without every score: :func:`mean_abs_from_sample`).

    Returns:
        ``(sums (n_query, n_groups), positive (n_query, n_groups), topk per query)``: float64;
        a top-k entry's score is the weighted (normalised) sum over the checkpoints that kept
        it, and each query keeps as many entries as the first checkpoint did.
    """
    n_ck = len(per_checkpoint_group_sums)
    if not (len(per_checkpoint_positive) == len(per_checkpoint_topk) == len(examples) == n_ck):
        raise ValueError("one entry per checkpoint is needed in every argument")
    if n_ck == 0:
        raise ValueError("no checkpoint to combine")
    weights = [1.0] * n_ck if weights is None else [float(w) for w in weights]
    if len(weights) != n_ck:
        raise ValueError(f"{len(weights)} weights for {n_ck} checkpoints")
    n_query = per_checkpoint_group_sums[0].shape[0]
    sums = torch.zeros_like(per_checkpoint_group_sums[0], dtype=torch.float64)
    positive = torch.zeros_like(sums)
    candidates: list[dict[str, list]] = [{} for _ in range(n_query)]
    for c in range(n_ck):
        g_sum, g_pos = per_checkpoint_group_sums[c].double(), per_checkpoint_positive[c].double()
        w = torch.full((n_query,), weights[c], dtype=torch.float64)
        if normalise:
            given = mean_abs[c] if mean_abs is not None else None
            w = w / (given.double() if given is not None else mean_abs_from_sums(g_sum, g_pos, examples[c]))
        sums += w[:, None] * g_sum
        positive += w[:, None] * g_pos
        for q in range(n_query):
            for ex, doc, prov, score in per_checkpoint_topk[c][q]:
                entry = candidates[q].setdefault(ex, [doc, prov, 0.0])
                entry[2] += float(w[q]) * score
    topk = []
    for q in range(n_query):
        k = len(per_checkpoint_topk[0][q])
        best = sorted(candidates[q].items(), key=lambda kv: -kv[1][2])[:k]
        topk.append([(ex, doc, prov, score) for ex, (doc, prov, score) in best])
    return sums, positive, topk


def combine_score_matrices(
    scores: Sequence[torch.Tensor], weights: Sequence[float] | None = None, normalise: bool = True
) -> torch.Tensor:
    """``Σ_c w_c · S_c / mean_abs(S_c)`` over checkpoints of full ``(n_query, n_train)`` score
    matrices (the same maths as :func:`combine_checkpoints`, for evaluation suites)."""
    weights = [1.0] * len(scores) if weights is None else list(weights)
    if len(weights) != len(scores) or not scores:
        raise ValueError(f"{len(weights)} weights for {len(scores)} score matrices")
    out = torch.zeros_like(scores[0], dtype=torch.float64)
    for w, s in zip(weights, scores, strict=True):
        s = s.double()
        if normalise:
            total = s.abs().sum(1, keepdim=True)
            s = torch.where(total > 0, s / (total / s.shape[1]), s)
        out += w * s
    return out


def checkpoint_weights(
    log_history: Sequence[Mapping] | str | Path,
    checkpoint_steps: Sequence[int],
    normalise: bool = True,
) -> list[float]:
    """Weight of each checkpoint = the summed learning rate over the steps of the segment it ends.

    Checkpoint ``i`` saved after step ``s_i`` ends the segment ``(s_{i-1}, s_i]`` (``s_{-1} = 0``);
    its weight is ``Σ_{t in segment} η_t``. ``log_history`` is the list Hugging Face's
    ``trainer_state.json`` keeps (entries with ``step`` and ``learning_rate``; a path to the file
    works too): a logged rate holds from the previous log's step (exclusive) to its own step
    (inclusive), and the last one holds after it. ``normalise`` makes the weights sum to 1.
    """
    source = "log_history"
    if isinstance(log_history, str | Path):
        source = str(log_history)
        try:
            log_history = json.loads(Path(log_history).read_text())["log_history"]
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise TrainerStateError(f"{source}: cannot read log_history ({exc})") from exc
    logged = sorted((int(e["step"]), float(e["learning_rate"])) for e in log_history if "learning_rate" in e)
    if not logged:
        raise TrainerStateError(f"{source}: no entry has a learning_rate")
    steps = [int(s) for s in checkpoint_steps]
    if any(b <= a for a, b in zip([0, *steps], steps, strict=False)):
        raise ValueError(f"checkpoint steps must be positive and increasing, got {steps}")

    def lr_mass(upto: int) -> float:
        """``Σ_{t=1..upto} η_t`` under the piecewise-constant reading of the log."""
        total, prev = 0.0, 0
        for step, lr in logged:
            if prev >= upto:
                break
            total += lr * (min(step, upto) - prev)
            prev = step
        if upto > prev:
            total += logged[-1][1] * (upto - prev)
        return total

    masses = [lr_mass(s) for s in steps]
    weights = [b - a for a, b in zip([0.0, *masses], masses, strict=False)]
    if normalise:
        total = sum(weights)
        if total <= 0:
            raise TrainerStateError(f"{source}: the learning rate is zero over every segment")
        weights = [w / total for w in weights]
    return weights
