"""Forward/backward hooks shared by covariance fitting and gradient capture.

Each watched module gets a forward hook that sees its input ``x`` and a tensor hook on its output
that sees ``dy = dL/dy``. Weights are frozen for the duration, so autograd computes activation
gradients only: no weight gradient is ever formed. Where nothing upstream requires grad (the first
watched layer), the output is made a grad-requiring leaf so that ``dy`` still reaches the hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from valuation.modules import WatchedModule

ForwardFn = Callable[[WatchedModule, torch.Tensor], Any]
BackwardFn = Callable[[WatchedModule, Any, torch.Tensor], None]


@contextmanager
def frozen_weights(model: nn.Module) -> Iterator[None]:
    """Parameters do not require grad inside the block; restored afterwards."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


@contextmanager
def activation_hooks(
    model: nn.Module,
    modules: list[WatchedModule],
    on_forward: ForwardFn,
    on_backward: BackwardFn,
) -> Iterator[None]:
    """Install the hooks on ``modules`` (and freeze ``model``'s weights) for the block.

    ``on_forward(wm, x)`` returns a context object passed to ``on_backward(wm, ctx, dy)``.
    """
    handles = []

    def make_hook(wm: WatchedModule):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor):
            if not torch.is_grad_enabled():
                return None
            ctx = on_forward(wm, args[0])
            replaced = None
            if not output.requires_grad:
                output = output.detach().requires_grad_()
                replaced = output
            output.register_hook(lambda dy: on_backward(wm, ctx, dy))
            return replaced

        return hook

    with frozen_weights(model):
        try:
            for wm in modules:
                handles.append(wm.module.register_forward_hook(make_hook(wm)))
            yield
        finally:
            for handle in handles:
                handle.remove()


def flatten_tokens(t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``(batch, tokens, n)`` → ``(counted tokens, n)`` keeping ``mask`` rows; ``(batch, n)`` as is."""
    if t.dim() == 3:
        if mask is not None and mask.shape == t.shape[:2]:
            return t[mask]
        return t.reshape(-1, t.shape[-1])
    return t.reshape(-1, t.shape[-1])
