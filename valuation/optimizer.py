"""Optimizer-aware gradients: Adam's second moment, factored so it folds into LoGra's projections.

Adam moves weight ``W_ij`` by ``m_ij / (sqrt(v_ij) + eps)``: directions with a large second
moment move less than their raw gradient says. Scaling each per-example gradient elementwise by
``1/sqrt(v)`` (TrackStar, Chang et al. 2025) makes influence follow what the optimizer did. A full
``(n_out, n_in)`` scale does not commute with the Kronecker projection, but the Adafactor-style
rank-one approximation ``v ≈ r cᵀ / mean(r)`` (``r`` row means, ``c`` column means) does:

    DW ⊙ (r' c'ᵀ) = diag(r') · DW · diag(c'),   so   P_out · diag(r') · DW · diag(c') · P_inᵀ,

i.e. the scaled gradient is projected by ``P_out' = P_out · diag(r')`` and ``P_in' = P_in · diag(c')``
at the cost of the plain projection. The loader reads Hugging Face Trainer's ``optimizer.pt``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from valuation.errors import DataworthError


class OptimizerStateError(DataworthError):
    """An optimizer state file that cannot be matched to the model's parameters."""


def factored_scales(v: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column factors ``(r' (n_out,), c' (n_in,))`` with ``r'_i c'_j ≈ 1/sqrt(v_ij + eps)``.

    ``v`` ``(n_out, n_in)`` is a second moment. With row means ``r``, column means ``c`` and
    ``m = mean(r)``, the rank-one fit is ``v̂ = a bᵀ`` where ``a = r/sqrt(m)``, ``b = c/sqrt(m)``
    (exact when ``v`` is rank one), and ``r' = 1/sqrt(a + sqrt(eps))``, ``c' = 1/sqrt(b + sqrt(eps))``:
    ``eps`` is split evenly between the factors so that ``r'_i c'_j = 1/sqrt(v̂_ij)`` when ``eps = 0``.
    Float64.
    """
    if v.dim() != 2:
        raise ValueError(f"v must be (n_out, n_in), got shape {tuple(v.shape)}")
    v = v.double().clamp_min(0.0)
    r, c = v.mean(1), v.mean(0)
    m = float(r.mean())
    if m <= 0:  # a weight that never received a gradient: no information, no scaling
        return torch.ones_like(r), torch.ones_like(c)
    root_eps = eps**0.5
    a, b = r / m**0.5, c / m**0.5
    return (a + root_eps).rsqrt(), (b + root_eps).rsqrt()


def unit_mean_scales(r: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r / mean r, c / mean c)``: the factors of :func:`factored_scales` rescaled to mean 1.

    Influence with a block-diagonal Fisher damped relative to each block's spectrum does not change
    when one module's vectors are multiplied by a constant (``q``, ``g`` by ``a``: ``H`` and ``λ`` by
    ``a²``), so the constant is free; mean 1 keeps stored vectors at the raw gradients' magnitude.
    Adam's ``1/sqrt(v)`` reaches 10³–10⁴ early in training, which put an early checkpoint's vectors
    past float16's range (65504)."""
    return r / r.mean(), c / c.mean()


def parameter_order(model: nn.Module, state: Mapping) -> list[str]:
    """Names of the parameters in the optimizer's index order.

    Torch records ``param_names`` in each group when the optimizer was built from named
    parameters; otherwise the order is Hugging Face Trainer's: the weight-decay group (every
    trainable parameter except biases and norms, in ``named_parameters`` order), then the rest.
    """
    groups = state.get("param_groups", [])
    if groups and all("param_names" in g for g in groups):
        return [name for g in groups for name in g["param_names"]]
    from transformers import Trainer  # its own rule of which parameters decay

    decay = set(Trainer.get_decay_parameter_names(None, model))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [n for n, _ in trainable if n in decay] + [n for n, _ in trainable if n not in decay]


def adam_second_moments(
    model: nn.Module, state: Mapping, names: Sequence[str] | None = None, source: str = "optimizer state"
) -> dict[str, torch.Tensor]:
    """``{parameter name: v}`` from an Adam/AdamW ``state_dict`` (bias-corrected when ``step`` and
    ``betas`` are known: ``v / (1 - β2^step)``), each ``v`` shaped like its parameter."""
    order = list(names) if names is not None else parameter_order(model, state)
    ids = [i for g in state.get("param_groups", []) for i in g["params"]]
    if len(ids) != len(order):
        raise OptimizerStateError(
            f"{source}: {len(ids)} parameters in param_groups but the model has {len(order)} trainable ones"
        )
    beta2 = {i: g.get("betas", (0.9, 0.999))[1] for g in state["param_groups"] for i in g["params"]}
    params = dict(model.named_parameters())
    out = {}
    for idx, name in zip(ids, order, strict=True):
        entry = state["state"].get(idx)
        if entry is None:  # never stepped (e.g. frozen by a zero gradient)
            continue
        if "exp_avg_sq" not in entry:
            raise OptimizerStateError(f"{source}: parameter {idx} ({name}) has no exp_avg_sq: not an Adam state")
        v = entry["exp_avg_sq"].detach().double().cpu()
        if tuple(v.shape) != tuple(params[name].shape):
            raise OptimizerStateError(
                f"{source}: parameter {idx} has shape {tuple(v.shape)} but {name} is {tuple(params[name].shape)}"
            )
        step = float(entry.get("step", 0))
        if step > 0:
            v = v / (1 - beta2[idx] ** step)
        out[name] = v
    return out


def load_hf_optimizer_state(model: nn.Module, path: str | Path) -> dict[str, torch.Tensor]:
    """Second moments from a Hugging Face Trainer checkpoint's ``optimizer.pt`` (or its folder),
    loaded with ``weights_only=True``."""
    path = Path(path)
    if path.is_dir():
        path = path / "optimizer.pt"
    if not path.exists():
        raise OptimizerStateError(f"{path}: no optimizer state (save it with the checkpoint to use optimizer scaling)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or "state" not in state or "param_groups" not in state:
        raise OptimizerStateError(f"{path}: not an optimizer state_dict (keys 'state' and 'param_groups')")
    return adam_second_moments(model, state, source=str(path))
