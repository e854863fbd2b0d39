"""Synthetic gradient tables with the structure that makes an index's recall meaningful.

Real projected gradients are not iid noise: they concentrate in a low-rank subspace, examples of
one source share directions, and their norms spread over orders of magnitude. Each row here is

    g_i = s_i · (t_{topic(p)} + m_p + B (σ ⊙ c_i) + ε_i),   p = provider(i)

with B a ``(dim, rank)`` orthonormal basis and a decaying spectrum σ_j = 1/√(1+j) (shared
structure), t one of ``topics`` topic directions in that subspace (a provider draws one topic),
m_p a provider direction (half in the subspace, half outside), ε isotropic noise holding ~25%
of the energy, and s_i a log-normal norm (σ = 0.5). Providers have Zipf-like sizes. Queries are
drawn the same way from random providers (a query "about" one source's topic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SyntheticSpec:
    dim: int = 4096
    providers: int = 1000
    topics: int = 50
    rank: int = 64
    noise: float = 2.0
    norm_sigma: float = 0.5
    seed: int = 0


class SyntheticGradients:
    """Deterministic rows: chunk ``c`` of a table is the same whatever the table's size."""

    def __init__(self, spec: SyntheticSpec) -> None:
        self.spec = spec
        gen = torch.Generator().manual_seed(spec.seed)
        d, r = spec.dim, spec.rank
        self.basis = torch.linalg.qr(torch.randn(d, r, generator=gen))[0]  # (d, r)
        self.sigma = 1.0 / torch.sqrt(1.0 + torch.arange(r, dtype=torch.float32))
        topic_coef = torch.randn(spec.topics, r, generator=gen) * self.sigma
        self.topic_dirs = topic_coef @ self.basis.T  # (topics, d)
        self.provider_topic = torch.randint(0, spec.topics, (spec.providers,), generator=gen)
        inside = torch.randn(spec.providers, r, generator=gen) * self.sigma @ self.basis.T
        outside = torch.randn(spec.providers, d, generator=gen) / np.sqrt(d)
        self.provider_dirs = 0.5 * inside + 0.5 * outside
        weights = 1.0 / (1.0 + torch.arange(spec.providers, dtype=torch.float64)) ** 0.8
        self.provider_p = weights / weights.sum()

    def rows(self, start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``start .. start+n``: ``(vectors (n, dim) float32, provider codes (n,) int64)``."""
        gen = torch.Generator().manual_seed(self.spec.seed * 1_000_003 + start + 1)
        codes = torch.multinomial(self.provider_p, n, replacement=True, generator=gen)
        return self._draw(codes, gen), codes

    def queries(self, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(10_000_019 + seed)
        codes = torch.multinomial(self.provider_p, n, replacement=True, generator=gen)
        return self._draw(codes, gen), codes

    def _draw(self, codes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        spec, n = self.spec, codes.shape[0]
        shared = (torch.randn(n, spec.rank, generator=gen) * self.sigma) @ self.basis.T
        noise = torch.randn(n, spec.dim, generator=gen) * (spec.noise / np.sqrt(spec.dim))
        g = self.topic_dirs[self.provider_topic[codes]] + self.provider_dirs[codes] + shared + noise
        scale = torch.exp(torch.randn(n, 1, generator=gen) * spec.norm_sigma)
        return g * scale


def bench_layout(dim: int, k: int = 16) -> list[tuple[str, int, int]]:
    """``dim / k²`` modules of ``k × k``: the platform's k=16 layout, scaled to ``dim``."""
    if dim % (k * k):
        raise ValueError(f"dim {dim} is not a multiple of {k * k}")
    return [(f"m{i}", k, k) for i in range(dim // (k * k))]


def bench_preconditioner(layout, seed: int = 0, damping_ratio: float = 0.1):
    """A preconditioner with random rotations and a decaying spectrum per module."""
    from valuation import Preconditioner

    gen = torch.Generator().manual_seed(seed)
    eigvals, eigvecs = {}, {}
    for name, k_out, k_in in layout:
        k = k_out * k_in
        eigvecs[name] = torch.linalg.qr(torch.randn(k, k, generator=gen, dtype=torch.float64))[0]
        eigvals[name] = 1.0 / (1.0 + torch.arange(k, dtype=torch.float64)) ** 1.5
    pre = Preconditioner(layout, eigvals, eigvecs, dict.fromkeys(eigvals, 0.0))
    return pre.with_damping_ratio(damping_ratio)
