"""Configuration of the LoGra engine (one dataclass per stage, kronfluence-style)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

from valuation.errors import ConfigurationError

InitName = Literal["random", "pca", "identity"]
BLOCKS = "@blocks"  # include entry: every linear layer inside the model's repeated blocks
MODES: tuple[str, ...] = ("if", "relatif", "cosine")  # scoring modes (valuation/scoring.py)


_LATER_DEFAULTS = {"optimizer_scaling": False, "optimizer_eps": 1e-8}


@dataclass(frozen=True)
class LoGraConfig:
    """How gradients are projected.

    Attributes:
        k_in: rows of the input projection ``P_in`` (``k_in × n_in``); clipped to ``n_in``.
        k_out: rows of the output-gradient projection ``P_out`` (``k_out × n_out``); clipped
            to ``n_out``.
        init: ``"random"`` (seeded Gaussian, scaled by ``1/sqrt(k)``), ``"pca"`` (top
            eigenvectors of the KFAC covariances, needs :meth:`LoGra.fit`) or ``"identity"``
            (``P = I``, the exact gradient; for small models and tests).
        include: ``"@blocks"`` (the default: every ``nn.Linear`` / GPT-2 ``Conv1D`` inside the
            model's repeated transformer blocks, whatever the family names them) or module-name
            substrings; ``("",)`` watches every linear layer.
        exclude: module-name substrings that are never watched (the LM head is excluded unless
            an ``include`` entry names it).
        seed: seed of the random projections (per module, derived from the module name).
        optimizer_scaling: scale gradients by Adam's factored ``1/sqrt(v)`` (folded into the
            projections; :meth:`LoGra.set_optimizer_state` must be called before capturing).
        optimizer_eps: the ``eps`` added to ``v`` for that scaling.
    """

    k_in: int = 64
    k_out: int = 64
    init: InitName = "random"
    include: tuple[str, ...] = ("@blocks",)
    exclude: tuple[str, ...] = ()
    seed: int = 0
    optimizer_scaling: bool = False
    optimizer_eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.k_in < 1 or self.k_out < 1:
            raise ConfigurationError(f"k_in and k_out must be >= 1, got k_in={self.k_in}, k_out={self.k_out}")
        if self.init not in ("random", "pca", "identity"):
            raise ConfigurationError(f"init must be 'random', 'pca' or 'identity', got {self.init!r}")
        # Lists from TOML/JSON become tuples so the config stays hashable.
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def to_dict(self) -> dict:
        out = asdict(self)
        # Options added later stay out at their defaults, so earlier fingerprints still match.
        for name, default in _LATER_DEFAULTS.items():
            if out[name] == default:
                del out[name]
        return out

    def fingerprint(self) -> str:
        """Stable hash of the configuration (hex, 16 chars): keys stored gradients."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
