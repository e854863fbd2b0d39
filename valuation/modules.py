"""Which layers LoGra watches and how their weights are oriented."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

try:  # transformers' GPT-2 Conv1D stores W transposed: (n_in, n_out).
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover - transformers is a dependency
    Conv1D = None


@dataclass(frozen=True)
class WatchedModule:
    """A linear map ``y = W x`` with ``W`` of shape ``(n_out, n_in)``."""

    name: str
    module: nn.Module
    n_in: int
    n_out: int
    transposed: bool  # True for Conv1D, whose .weight is W.T

    def weight_matrix(self):
        """``W`` as ``(n_out, n_in)`` whatever the storage convention."""
        w = self.module.weight
        return w.T if self.transposed else w


def linear_shape(module: nn.Module) -> tuple[int, int, bool] | None:
    """``(n_in, n_out, transposed)`` for a supported linear layer, else None."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features, False
    if Conv1D is not None and isinstance(module, Conv1D):
        n_in, n_out = module.weight.shape
        return n_in, n_out, True
    return None


def find_watched_modules(
    model: nn.Module, include: tuple[str, ...], exclude: tuple[str, ...] = ()
) -> list[WatchedModule]:
    """Linear layers whose name contains an ``include`` substring, in ``named_modules`` order.

    The LM head (``lm_head``) is skipped unless an ``include`` entry names it explicitly.
    """
    head_named = any("lm_head" in pattern for pattern in include)
    watched = []
    for name, module in model.named_modules():
        shape = linear_shape(module)
        if shape is None or not name:
            continue
        if not any(pattern in name for pattern in include):
            continue
        if any(pattern and pattern in name for pattern in exclude):
            continue
        if "lm_head" in name and not head_named:
            continue
        n_in, n_out, transposed = shape
        watched.append(WatchedModule(name, module, n_in, n_out, transposed))
    if not watched:
        names = [n for n, m in model.named_modules() if linear_shape(m) is not None]
        raise ValueError(f"no linear layer matches include={include!r}; linear layers are: {names[:20]}")
    return watched
