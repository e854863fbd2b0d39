"""The digits task without the valuation package: data, model, training and measurement.

Separate so that the EKFAC peer (``ekfac_digits.py``, run in its own environment with
``kronfluence``) trains and scores exactly the same model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def load(n_train: int = 1000, n_query: int = 50, seed: int = 0):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16.0
    y = torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    tr, te = order[:n_train], order[n_train : n_train + n_query]
    return x[tr], y[tr], x[te], y[te]


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


def train(x, y, mask: torch.Tensor, seed: int, steps: int = 300) -> nn.Module:
    return train_with_optimizer(x, y, mask, seed, steps)[0]


def train_with_optimizer(x, y, mask: torch.Tensor, seed: int, steps: int = 300) -> tuple[nn.Module, dict]:
    """The model and its Adam ``state_dict`` (whose second moments optimizer-aware influence reads)."""
    _, model, state = trajectory(x, y, mask, seed, steps, every=steps)[-1]
    return model, state


def trajectory(
    x, y, mask: torch.Tensor, seed: int, steps: int = 300, every: int = 30
) -> list[tuple[int, nn.Module, dict]]:
    """``[(step, model, Adam state_dict)]`` after every ``every``-th step of :func:`train`'s run
    (the same run: a snapshot touches no random state, so the last model equals ``train``'s)."""
    torch.manual_seed(seed)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    xs, ys = x[mask], y[mask]
    snapshots = []
    for step in range(1, steps + 1):
        loss = nn.functional.cross_entropy(model(xs), ys)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0:
            snapshots.append((step, copy.deepcopy(model).eval(), copy.deepcopy(opt.state_dict())))
    return snapshots


def margins(model: nn.Module, x, y) -> torch.Tensor:
    with torch.no_grad():
        logits = model(x)
    correct = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(nn.functional.one_hot(y, 10).bool(), float("-inf")).max(1).values
    return correct - other


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y, reduction="sum")
