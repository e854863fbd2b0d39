"""Brute-force float64 references: explicit per-example gradients and explicit projections."""

from __future__ import annotations

import torch

from valuation import lm_loss
from valuation.modules import find_watched_modules


def per_example_weight_grads(model, batch, include=("mlp", "attn"), loss_fn=None) -> list[dict]:
    """For each example, ``{module: DW (n_out, n_in)}`` by autograd on that example's loss alone."""
    modules = find_watched_modules(model, include)
    n = batch["input_ids"].shape[0] if isinstance(batch, dict) and "input_ids" in batch else len(batch[0])
    out = []
    for b in range(n):
        model.zero_grad(set_to_none=True)
        if loss_fn is None:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = lm_loss(logits[b : b + 1], batch["labels"][b : b + 1])
        else:
            loss = loss_fn(model, batch, b)
        loss.backward()
        grads = {}
        for wm in modules:
            g = wm.module.weight.grad
            grads[wm.name] = (g.T if wm.transposed else g).detach().clone()
        out.append(grads)
    model.zero_grad(set_to_none=True)
    return out


def projected(grads: list[dict], projections: dict, names: list[str]) -> torch.Tensor:
    """``(n, D)``: concat over modules of row-major ``P_out @ DW @ P_in.T``, one example at a time."""
    rows = []
    for g in grads:
        parts = []
        for name in names:
            p_in, p_out = projections[name]
            parts.append((p_out @ g[name] @ p_in.T).reshape(-1))
        rows.append(torch.cat(parts))
    return torch.stack(rows)


def damped_inverses(G: torch.Tensor, layout, ratio: float) -> list[torch.Tensor]:
    """Explicit ``(H_l + λ_l I)^-1`` with ``H_l = G_lᵀ G_l / N`` and ``λ_l = ratio · mean eig``."""
    invs, start = [], 0
    for _, k_out, k_in in layout:
        k = k_out * k_in
        block = G[:, start : start + k]
        H = block.T @ block / G.shape[0]
        lam = ratio * torch.linalg.eigvalsh(H).mean()
        invs.append(torch.linalg.inv(H + lam * torch.eye(k, dtype=H.dtype)))
        start += k
    return invs


def explicit_influence(Q: torch.Tensor, G: torch.Tensor, layout, invs) -> torch.Tensor:
    """``Σ_l q_lᵀ (H_l+λ_l I)^-1 g_l`` for all pairs, ``(n_q, n_train)``."""
    out, start = torch.zeros(Q.shape[0], G.shape[0], dtype=torch.float64), 0
    for (_, k_out, k_in), inv in zip(layout, invs, strict=True):
        k = k_out * k_in
        out += Q[:, start : start + k] @ inv @ G[:, start : start + k].T
        start += k
    return out
