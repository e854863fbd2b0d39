"""Group sums of influence scores from per-group sum vectors: exact, and independent of the corpus size.

Every mode's score is linear in a per-example weighted train vector,
``s(q, i) = c_q · q̃ᵀ (w_i g_i)`` with ``q̃ = (H + λI)^-1 q`` and

- ``if``:      ``w_i = 1``,                 ``c_q = 1``
- ``relatif``: ``w_i = 1/√(g_iᵀ(H + λI)^-1 g_i)``, ``c_q = 1``
- ``cosine``:  ``w_i`` as relatif,          ``c_q = 1/√(qᵀ(H + λI)^-1 q)``

so ``Σ_{i∈p} s(q, i) = c_q · q̃ᵀ A_p`` with ``A_p = Σ_{i∈p} w_i g_i``. ``A`` is accumulated once per
table (float64) and serves every later query in ``O(P · dim)``. Nothing here does I/O.
"""

from __future__ import annotations

import torch

from valuation.scoring import _EPS, MODES


def example_weights(mode: str, train_self: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """``w_i`` of ``mode`` for ``n`` rows (``None`` means all ones); float64."""
    if mode == "if":
        return None
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if train_self is None or train_self.shape[0] != n:
        raise ValueError(f"mode {mode!r} needs the self-influence of each of the {n} rows")
    return 1.0 / train_self.double().clamp_min(_EPS).sqrt()


class GroupSumAccumulator:
    """Running ``A_{mode}`` ``(num_groups, dim)`` float64 per mode, the rows per group and, when
    self-influence is given, ``Σ √self_i`` per group (``norm_sums``, for :func:`positive_sum_bounds`).

    ``update`` folds a chunk of train vectors ``(n, dim)`` with its group codes ``(n,)`` and, for
    the normalised modes, the rows' self-influence ``(n,)``.
    """

    def __init__(self, num_groups: int, dim: int, modes: tuple[str, ...] = MODES, device=None) -> None:
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            raise ValueError(f"unknown mode(s) {unknown}; expected among {MODES}")
        self.modes = tuple(modes)
        self.sums = {m: torch.zeros(num_groups, dim, dtype=torch.float64, device=device) for m in self.modes}
        self.counts = torch.zeros(num_groups, dtype=torch.int64, device=device)
        self.norm_sums = torch.zeros(num_groups, dtype=torch.float64, device=device)

    def update(self, vectors: torch.Tensor, codes: torch.Tensor, train_self: torch.Tensor | None = None) -> None:
        wide = vectors.to(torch.float64)
        codes = codes.to(device=wide.device, dtype=torch.int64)
        self.counts.index_add_(0, codes, torch.ones_like(codes))
        if train_self is not None:
            self.norm_sums.index_add_(0, codes, train_self.to(wide).clamp_min(0).sqrt())
        weighted = {}
        for mode in self.modes:
            w = example_weights(mode, train_self, wide.shape[0])
            key = "unit" if w is not None else "raw"
            if key not in weighted:  # relatif and cosine share their weighted rows
                weighted[key] = wide if w is None else wide * w.to(wide.device)[:, None]
            self.sums[mode].index_add_(0, codes, weighted[key])


def group_sums_from_aggregates(
    queries_pre: torch.Tensor,
    aggregates: torch.Tensor,
    mode: str = "if",
    query_self: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-group score sums ``(n_query, n_groups)`` float64 from preconditioned queries
    ``(n_query, dim)`` and the mode's group sum vectors ``(n_groups, dim)``.

    Equals ``StreamingScorer(...).result().group_sums`` over the same rows (same self-influence).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if queries_pre.shape[1] != aggregates.shape[1]:
        raise ValueError(f"queries have dim {queries_pre.shape[1]}, aggregates {aggregates.shape[1]}")
    sums = queries_pre.to(torch.float64) @ aggregates.to(device=queries_pre.device, dtype=torch.float64).T
    if mode == "cosine":
        if query_self is None:
            raise ValueError("mode 'cosine' needs the queries' self-influence")
        sums = sums / query_self.to(sums).clamp_min(_EPS).sqrt()[:, None]
    return sums


def positive_sum_bounds(
    group_sums: torch.Tensor,
    mode: str,
    counts: torch.Tensor,
    norm_sums: torch.Tensor,
    query_self: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds ``(lower, upper)`` ``(n_query, n_groups)`` on ``Σ_{i∈g} max(s_i, 0)`` (what
    ``positive_share`` books) from aggregates alone; the exact value needs a scan.

    Lower: ``max(Σ s_i, 0)``. Upper (Cauchy-Schwarz in the damped metric,
    ``|q̃ᵀg_i| ≤ √self_q √self_i``): ``√self_q Σ √self_i`` (``if``), ``√self_q · n_g`` (``relatif``),
    ``n_g`` (``cosine``). ``group_sums`` from :func:`group_sums_from_aggregates`; ``counts`` and
    ``norm_sums`` ``(n_groups,)`` from the accumulator; ``query_self`` ``(n_query,)``.
    """
    root_q = query_self.to(torch.float64).clamp_min(0).sqrt()[:, None]
    if mode == "if":
        upper = root_q * norm_sums.to(torch.float64)[None, :]
    elif mode == "relatif":
        upper = root_q * counts.to(torch.float64)[None, :]
    elif mode == "cosine":
        upper = counts.to(torch.float64)[None, :].expand(query_self.shape[0], -1)
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return group_sums.clamp_min(0.0), upper.clone()
