"""One LoGra recipe with every fidelity lever as an option, for the accuracy suites.

The levers (issue 12): optimizer-aware gradients (Adam's factored second moment folded into the
projections), the sampled-label (true) Fisher for the fit and the projected Fisher, a mixed
train/query second moment, unit normalisation (mode ``cosine``), damping by a spectral rule, the
loss temperature, and log-odds gradients in place of the cross-entropy's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from valuation import LoGra, LoGraConfig, ProjectedFisher, influence_scores, self_influence
from valuation.combine import checkpoint_weights
from valuation.fisher import mixed_fisher, unrolled_preconditioner
from valuation.loss import ClassifierLogOddsLoss, ClassifierLoss, LMLogOddsLoss, LMLoss, SampledLabelLoss


@dataclass(frozen=True)
class LeverConfig:
    """Which levers a scoring run pulls (defaults: the platform's recipe)."""

    k: int = 16
    init: str = "pca"
    optimizer: bool = False
    fisher: str = "empirical"  # or "sampled"
    mix_alpha: float = 0.0
    mode: str = "if"
    damping: float = 0.1
    damping_rule: str = "mean_ratio"
    # SOURCE-style segment estimate (valuation.fisher.unrolled_filter) in place of the damped inverse:
    # horizon T = horizon × (the segment's share of the run's learning-rate mass) / mean eigenvalue.
    horizon: float = 0.0
    # Loss temperature: every gradient (fit, scored rows, Fisher, queries) of softmax(logits / T).
    temperature: float = 1.0
    # What every gradient is of: "ce" (the cross-entropy, at ``temperature``) or "log_odds"
    # (minus the label's log-odds, valuation.loss.LMLogOddsLoss: memorised tokens keep a gradient).
    output: str = "ce"

    def __post_init__(self) -> None:
        if self.output not in ("ce", "log_odds"):
            raise ValueError(f"output must be 'ce' or 'log_odds', got {self.output!r}")
        if self.output == "log_odds" and (self.temperature != 1.0 or self.fisher != "empirical"):
            raise ValueError("log-odds gradients are measured at temperature 1 with the empirical Fisher")

    def loss(self, kind: str) -> Callable[[nn.Module, Any], torch.Tensor]:
        """The ``loss_fn`` of every gradient (``kind``: "lm" or "classifier")."""
        if self.output == "log_odds":
            return LMLogOddsLoss() if kind == "lm" else ClassifierLogOddsLoss()
        return LMLoss(self.temperature) if kind == "lm" else ClassifierLoss(self.temperature)

    def label(self) -> str:
        parts = [f"LoGra {self.init} k={self.k}"]
        if self.optimizer:
            parts.append("Adam-scaled")
        if self.fisher != "empirical":
            parts.append(f"{self.fisher} Fisher")
        if self.temperature != 1.0:
            parts.append(f"T={self.temperature:g}")
        if self.output == "log_odds":
            parts.append("log-odds")
        if self.mix_alpha:
            parts.append(f"mixed α={self.mix_alpha}")
        if self.mode != "if":
            parts.append(self.mode)
        if self.horizon:
            parts.append(f"unrolled segments c={self.horizon:g}")
        elif self.damping_rule != "mean_ratio" or self.damping != 0.1:
            parts.append(f"damping {self.damping_rule} {self.damping}")
        return ", ".join(parts)


SINGLE_LEVERS = (  # the default, then each lever alone
    LeverConfig(),
    LeverConfig(optimizer=True),
    LeverConfig(fisher="sampled"),
    LeverConfig(mix_alpha=0.1),
    LeverConfig(mix_alpha=0.5),
    LeverConfig(mode="cosine"),
    LeverConfig(damping_rule="effective_rank", damping=0.25),
)


@dataclass
class LeverGradients:
    """What every config with the same :func:`gradient_key` shares: the fitted LoGra, the train
    vectors that are scored, the rows the Fisher is made of, and the query vectors."""

    logra: LoGra
    train: torch.Tensor  # (n_train, dim), the data's labels
    fisher_rows: torch.Tensor  # ``train`` (empirical Fisher) or sampled-label gradients
    query: torch.Tensor  # (n_query, dim)


def gradient_key(cfg: LeverConfig) -> tuple:
    """Configs with equal keys share :func:`lever_gradients` (mode, damping and mixing do not
    change the gradients)."""
    return (cfg.k, cfg.init, cfg.optimizer, cfg.fisher, cfg.temperature, cfg.output)


def lever_gradients(
    model: nn.Module,
    train_batches: Sequence[Any],
    query_batches: Sequence[Any],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    cfg: LeverConfig,
    kind: str,
    include: tuple[str, ...] = ("mlp", "attn"),
    second_moments: Mapping[str, torch.Tensor] | None = None,
    owner: torch.Tensor | None = None,
    n_train: int | None = None,
) -> LeverGradients:
    """Fit LoGra for ``cfg`` and project the train rows and the queries; with ``owner``
    ``(n_rows,)`` train rows (sequences) are summed into ``n_train`` documents, as the LM suite does."""
    logra = LoGra(
        model,
        LoGraConfig(k_in=cfg.k, k_out=cfg.k, init=cfg.init, include=include, seed=0, optimizer_scaling=cfg.optimizer),
    )
    if cfg.optimizer:
        if second_moments is None:
            raise ValueError("the optimizer lever needs the checkpoint's second moments")
        logra.set_optimizer_state(second_moments)
    sampled = cfg.fisher == "sampled"
    t = cfg.temperature
    if t != 1.0 or cfg.output != "ce":
        loss_fn = cfg.loss(kind)
    if cfg.init == "pca":
        logra.fit(train_batches, loss_fn=SampledLabelLoss(0, kind, t) if sampled else loss_fn)

    def rows(batches, fn) -> torch.Tensor:
        g = torch.cat([logra.gradients(b, loss_fn=fn) for b in batches])
        if owner is None:
            return g
        return torch.zeros(n_train, g.shape[1], dtype=g.dtype).index_add_(0, owner, g)

    g = rows(train_batches, loss_fn)
    q = torch.cat([logra.gradients(b, loss_fn=loss_fn) for b in query_batches])
    fisher_rows = rows(train_batches, SampledLabelLoss(1, kind, t)) if sampled else g
    return LeverGradients(logra, g, fisher_rows, q)


def scores_from_gradients(
    grads: LeverGradients,
    cfg: LeverConfig,
    query: torch.Tensor | None = None,
    segment: float = 1.0,
    panel: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(n_query, n_train)`` scores of ``cfg`` from shared gradients (``query``: other query
    vectors of the same LoGra, e.g. answer-only losses, in place of ``grads.query``; ``segment``:
    the share of the run's learning-rate mass in the segment this checkpoint ends, for ``horizon``;
    ``panel``: the query vectors whose second moment ``mix_alpha`` mixes in, the scored queries'
    own by default)."""
    q = grads.query if query is None else query
    g = grads.train
    fisher = ProjectedFisher(grads.logra.layout)
    fisher.update(grads.fisher_rows)
    if cfg.mix_alpha:
        query_fisher = ProjectedFisher(grads.logra.layout)
        query_fisher.update(q if panel is None else panel)
        fisher = mixed_fisher(fisher, query_fisher, cfg.mix_alpha)
    pre = fisher.preconditioner(cfg.damping, rule=cfg.damping_rule)
    if cfg.horizon:
        t = {name: cfg.horizon * segment / max(float(v.mean()), 1e-300) for name, v in pre.eigvals.items()}
        pre = unrolled_preconditioner(pre, t)
    return influence_scores(pre(q), g, cfg.mode, self_influence(g, pre), self_influence(q, pre)).double()


def panel_half_scores(grads: LeverGradients, cfg: LeverConfig) -> torch.Tensor:
    """``(n_query, n_train)`` scores of ``cfg`` with the query side of its mixed second moment from
    a *panel of other queries*: the queries split into halves (even and odd positions), each half
    scored with the other half's second moment mixed in. What a registered query panel gives a
    ledger (a query's credit does not depend on the queries valued with it), measured on a suite
    that has no panel of its own."""
    q = grads.query
    halves = (torch.arange(0, len(q), 2), torch.arange(1, len(q), 2))
    out = torch.zeros(len(q), grads.train.shape[0], dtype=torch.float64)
    for scored, panel in (halves, halves[::-1]):
        out[scored] = scores_from_gradients(grads, cfg, query=q[scored], panel=q[panel])
    return out


def lever_scores(
    model: nn.Module,
    train_batches: Sequence[Any],
    query_batches: Sequence[Any],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    cfg: LeverConfig,
    kind: str,
    include: tuple[str, ...] = ("mlp", "attn"),
    second_moments: Mapping[str, torch.Tensor] | None = None,
    owner: torch.Tensor | None = None,
    n_train: int | None = None,
) -> torch.Tensor:
    """``(n_query, n_train)`` scores; with ``owner`` ``(n_rows,)`` train rows (sequences) are summed
    into ``n_train`` documents before the Fisher and the scores, as the LM suite does."""
    grads = lever_gradients(
        model, train_batches, query_batches, loss_fn, cfg, kind, include, second_moments, owner, n_train
    )
    return scores_from_gradients(grads, cfg)


def checkpoint_set_weights(paths: Sequence[Path], idx: Sequence[int] | None = None) -> list[float]:
    """Learning-rate weights of the checkpoints ``paths[i]``, ``i`` in ``idx`` (all by default): the
    rate summed over the segment each ends (:func:`valuation.combine.checkpoint_weights`), from the
    last checkpoint's ``trainer_state.json``; a checkpoint's step is its ``step-XXXXX`` directory name."""
    steps = [int(Path(paths[i]).name.split("-")[1]) for i in (range(len(paths)) if idx is None else idx)]
    return checkpoint_weights(Path(paths[-1]) / "trainer_state.json", steps)


def sub_trajectories(n: int, base: int) -> dict[int, list[int]]:
    """Evenly spaced sub-sets of ``n`` checkpoints, each ending at the last: ``{size: indices}`` for
    every size that divides ``n`` and is a multiple of ``base`` (the recipe's own set is ``base``)."""
    return {m: [n // m * (i + 1) - 1 for i in range(m)] for m in range(base, n + 1, base) if n % m == 0}


def paired(a: Sequence[float], b: Sequence[float]) -> dict:
    """Mean difference ``a − b`` over paired queries, its standard error, and wins of ``a``."""
    x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    ok = ~(x.isnan() | y.isnan())
    d = (x - y)[ok]
    se = float(d.std() / len(d) ** 0.5) if len(d) > 1 else float("nan")
    return {"diff": float(d.mean()), "se": se, "wins": int((d > 0).sum()), "n": len(d)}
