"""Which layers LoGra watches and how their weights are oriented."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from valuation.config import BLOCKS
from valuation.errors import ConfigurationError

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


def block_index(name: str) -> int | None:
    """Where a module name enters a repeated block (``transformer.h.3.mlp.c_fc`` → the position of
    ``3``), or None outside every block. A block is an integer child of a container
    (``nn.ModuleList``): GPT-2 ``h.N``, GPT-NeoX / Llama / Qwen / Mistral / Phi / Gemma
    ``layers.N``, OPT ``decoder.layers.N``, Falcon ``h.N``."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit() and i > 0:
            return i
    return None


def _selected(name: str, include: tuple[str, ...]) -> bool:
    for pattern in include:
        if pattern == BLOCKS:
            if block_index(name) is not None:
                return True
        elif pattern in name:
            return True
    return False


def block_linear_names(model: nn.Module) -> list[str]:
    """Every supported linear layer inside the repeated blocks (what ``@blocks`` watches)."""
    return [n for n, m in model.named_modules() if n and linear_shape(m) is not None and block_index(n) is not None]


@dataclass(frozen=True)
class Coverage:
    """How much of the blocks' linear layers a selection watches."""

    watched: int  # linear layers watched inside blocks
    total: int  # linear layers inside blocks
    blocks: int
    unwatched: tuple[str, ...]  # per-block names (``mlp.dense_4h_to_h``) left out

    @property
    def per_block(self) -> str:
        if not self.blocks:
            return f"{self.watched} linear layers"
        per, total = self.watched // self.blocks, self.total // self.blocks
        return f"{per} of {total} linear layers per block × {self.blocks} blocks"


def coverage(model: nn.Module, watched: list[WatchedModule]) -> Coverage:
    """Which block linear layers ``watched`` covers (for the operator's warning)."""
    names = block_linear_names(model)
    chosen = {w.name for w in watched}
    blocks = {".".join(n.split(".")[: block_index(n) + 1]) for n in names}
    missing = sorted({".".join(n.split(".")[block_index(n) + 1 :]) for n in names if n not in chosen})
    return Coverage(sum(n in chosen for n in names), len(names), len(blocks), tuple(missing))


def find_watched_modules(
    model: nn.Module, include: tuple[str, ...], exclude: tuple[str, ...] = ()
) -> list[WatchedModule]:
    """Linear layers selected by ``include``, in ``named_modules`` order.

    ``include`` entries are module-name substrings, or :data:`BLOCKS` (``"@blocks"``): every
    ``nn.Linear`` / ``Conv1D`` inside the repeated transformer blocks, whatever the family calls
    them (never embeddings or the LM head). The LM head (``lm_head``) is skipped unless an
    ``include`` entry names it explicitly.
    """
    head_named = any("lm_head" in pattern for pattern in include)
    watched = []
    for name, module in model.named_modules():
        shape = linear_shape(module)
        if shape is None or not name:
            continue
        if not _selected(name, include):
            continue
        if any(pattern and pattern in name for pattern in exclude):
            continue
        if "lm_head" in name and not head_named:
            continue
        n_in, n_out, transposed = shape
        watched.append(WatchedModule(name, module, n_in, n_out, transposed))
    if not watched:
        names = [n for n, m in model.named_modules() if linear_shape(m) is not None]
        raise ConfigurationError(f"no linear layer matches include={include!r}; linear layers are: {names[:20]}")
    return watched
