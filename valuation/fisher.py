"""The projected (empirical) Fisher per module and its damped inverse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

Layout = Sequence[tuple[str, int, int]]
DAMPING_RULES = ("mean_ratio", "effective_rank", "quantile")


def spectral_damping(eigvals: torch.Tensor, rule: str = "mean_ratio", value: float = 0.1) -> float:
    """A module's damping ``λ`` from the eigenvalues of its ``H`` (no retraining).

    ``mean_ratio``: ``λ = value × mean eigenvalue`` (the default rule).
    ``effective_rank``: ``λ`` with ``Σ_i σ_i / (σ_i + λ) = value × k``: the damped inverse resolves
    that fraction of the ``k`` directions, whatever the spectrum's decay (bisection in ``log λ``).
    ``quantile``: ``λ`` = the ``value`` quantile of the eigenvalues (0.5: the median).
    """
    vals = eigvals.double().clamp_min(0.0)
    if rule == "mean_ratio":
        return value * float(vals.mean())
    if rule == "quantile":
        if not 0 <= value <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {value}")
        return float(torch.quantile(vals, value))
    if rule == "effective_rank":
        positive = int((vals > 0).sum())
        if not 0 < value < 1:
            raise ValueError(f"effective_rank fraction must be in (0, 1), got {value}")
        target = value * len(vals)
        if positive == 0 or target >= positive:  # cannot resolve more directions than carry signal
            return float(vals[vals > 0].min()) if positive else 0.0
        lo, hi = float(vals[vals > 0].min()) * 1e-6, float(vals.max()) * 1e6
        for _ in range(200):
            mid = (lo * hi) ** 0.5
            if float((vals / (vals + mid)).sum()) > target:
                lo = mid
            else:
                hi = mid
        return (lo * hi) ** 0.5
    raise ValueError(f"damping rule must be one of {DAMPING_RULES}, got {rule!r}")


def layout_slices(layout: Layout) -> list[tuple[str, slice]]:
    """``[(module_name, slice of the vector)]`` for a layout ``[(name, k_out, k_in)]``."""
    out, start = [], 0
    for name, k_out, k_in in layout:
        out.append((name, slice(start, start + k_out * k_in)))
        start += k_out * k_in
    return out


def layout_dim(layout: Layout) -> int:
    return sum(k_out * k_in for _, k_out, k_in in layout)


class ProjectedFisher:
    """Mergeable sums ``S_l = Σ_n g_n,l g_n,lᵀ`` and the count ``N``; ``H_l = S_l / N``.

    Rows are buffered and folded ``block_rows`` at a time as matmuls over the upper block
    triangle only (``S_l`` is symmetric: ~40% fewer FLOPs than the full product) into a running
    sum in the rows' dtype, which is added into float64 totals every ``fold_rows`` rows. Shards
    summed in any order therefore agree to float64 rounding of float32 partial sums.
    """

    def __init__(self, layout: Layout, block_rows: int = 256, fold_rows: int = 16384, tile: int = 1024) -> None:
        self.layout = [tuple(entry) for entry in layout]
        self.slices = layout_slices(self.layout)
        self.dim = layout_dim(self.layout)
        self.block_rows = block_rows
        self.fold_rows = fold_rows
        self.tile = tile
        self.count = 0
        self._sums: dict[str, torch.Tensor] = {}  # float64, full symmetric
        self._partial: dict[str, torch.Tensor] = {}  # rows' dtype, upper block triangle only
        self._partial_rows = 0
        self._pending: list[torch.Tensor] = []
        self._pending_rows = 0

    def update(self, g: torch.Tensor) -> None:
        """Add examples ``g`` of shape ``(batch, dim)``."""
        if g.dim() != 2 or g.shape[1] != self.dim:
            raise ValueError(f"expected gradients of shape (batch, {self.dim}), got {tuple(g.shape)}")
        self._pending.append(g.detach())
        self._pending_rows += g.shape[0]
        self.count += g.shape[0]
        if self._pending_rows >= self.block_rows:
            self._accumulate()
            if self._partial_rows >= self.fold_rows:
                self._fold_all()

    def _accumulate(self) -> None:
        if not self._pending:
            return
        rows = torch.cat(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_rows = [], 0
        for name, sl in self.slices:
            block = rows[:, sl]
            k = block.shape[1]
            acc = self._partial.get(name)
            if acc is None or acc.dtype != block.dtype or acc.device != block.device:
                self._fold(name)
                acc = self._partial[name] = block.new_zeros(k, k)
            for i in range(0, k, self.tile):
                left = block[:, i : i + self.tile].T
                for j in range(i, k, self.tile):
                    acc[i : i + self.tile, j : j + self.tile].addmm_(left, block[:, j : j + self.tile])
        self._partial_rows += rows.shape[0]

    def _fold(self, name: str) -> None:
        """Move the partial upper-block sum of ``name`` into the float64 symmetric total."""
        acc = self._partial.pop(name, None)
        if acc is None:
            return
        upper = acc.double()
        k = upper.shape[0]
        for i in range(0, k, self.tile):
            # Blocks below the diagonal were never computed: mirror the strictly upper ones.
            upper[i + self.tile :, i : i + self.tile] = upper[i : i + self.tile, i + self.tile :].T
        if name in self._sums:
            self._sums[name] += upper.to(self._sums[name].device)
        else:
            self._sums[name] = upper

    def _fold_all(self) -> None:
        self._accumulate()
        for name in list(self._partial):
            self._fold(name)
        self._partial_rows = 0

    def merge(self, other: ProjectedFisher) -> ProjectedFisher:
        """Add another shard's sums into this one (exact: sums and counts add)."""
        if list(other.layout) != list(self.layout):
            raise ValueError("cannot merge Fisher sums with different layouts")
        self._fold_all()
        other._fold_all()
        for name, _ in self.slices:
            if name in other._sums:
                theirs = other._sums[name]
                if name in self._sums:
                    self._sums[name] += theirs.to(self._sums[name].device)
                else:
                    self._sums[name] = theirs.clone()
        self.count += other.count
        return self

    def sum(self, name: str) -> torch.Tensor:
        """``S_l`` ``(k_l, k_l)`` float64."""
        self._fold_all()
        k = next(k_out * k_in for n, k_out, k_in in self.layout if n == name)
        return self._sums.get(name, torch.zeros(k, k, dtype=torch.float64))

    def matrix(self, name: str) -> torch.Tensor:
        """``H_l = S_l / N`` ``(k_l, k_l)`` float64."""
        if self.count == 0:
            raise ValueError("the Fisher has seen no examples")
        return self.sum(name) / self.count

    def preconditioner(
        self,
        damping_ratio: float = 0.1,
        damping: Mapping[str, float] | float | None = None,
        rule: str = "mean_ratio",
    ) -> Preconditioner:
        """Per module ``(H_l + λ_l I)^-1`` with ``λ_l = damping_ratio × mean eigenvalue of H_l``.

        ``damping`` overrides ``λ`` (one value for all modules, or per module name); ``rule``
        picks another :func:`spectral_damping` rule, ``damping_ratio`` then being its value.
        """
        eigvals, eigvecs, lambdas = {}, {}, {}
        for name, _ in self.slices:
            vals, vecs = torch.linalg.eigh(self.matrix(name).cpu())
            vals = vals.clamp_min(0.0)  # tiny negative values are rounding
            if damping is None:
                lam = spectral_damping(vals, rule, damping_ratio)
            elif isinstance(damping, Mapping):
                lam = float(damping[name])
            else:
                lam = float(damping)
            if lam <= 0:
                raise ValueError(f"damping of {name} is {lam}: H is zero there (no examples reached it?)")
            eigvals[name], eigvecs[name], lambdas[name] = vals, vecs, lam
        return Preconditioner(self.layout, eigvals, eigvecs, lambdas)

    def state_dict(self) -> dict[str, torch.Tensor]:
        self._fold_all()
        state = {f"{name}/sum": self.sum(name).cpu() for name, _ in self.slices}
        state["count"] = torch.tensor(self.count, dtype=torch.int64)
        return state

    @classmethod
    def from_state_dict(cls, layout: Layout, state: Mapping[str, torch.Tensor]) -> ProjectedFisher:
        fisher = cls(layout)
        fisher.count = int(state["count"])
        fisher._sums = {name: state[f"{name}/sum"].double().clone() for name, _ in fisher.slices}
        return fisher

    @classmethod
    def from_matrices(cls, layout: Layout, matrices: Mapping[str, torch.Tensor]) -> ProjectedFisher:
        """A Fisher whose ``H_l`` are the given ``(k_l, k_l)`` matrices (kept as sums over count 1)."""
        fisher = cls(layout)
        fisher.count = 1
        fisher._sums = {name: matrices[name].double().clone() for name, _ in fisher.slices}
        return fisher


def mixed_fisher(train: ProjectedFisher, query: ProjectedFisher, alpha: float) -> ProjectedFisher:
    """``H_mix,l = (1 - α) H_train,l + α H_query,l`` per module.

    Directions that every query's gradient shares (prompt template, answer format, style) carry
    a large ``H_query``: preconditioning with the mix down-weights them, so queries are matched on
    what distinguishes them (TrackStar's mixed second moment).
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if list(train.layout) != list(query.layout):
        raise ValueError("train and query Fishers have different layouts")
    mats = {name: (1 - alpha) * train.matrix(name) + alpha * query.matrix(name) for name, _ in train.slices}
    return ProjectedFisher.from_matrices(train.layout, mats)


def panel_preconditioner(
    train: Preconditioner,
    panel: torch.Tensor,
    alpha: float,
    damping_ratio: float = 0.1,
    rule: str = "mean_ratio",
) -> Preconditioner:
    """``(H_mix,l + λ_l I)^-1`` with ``H_mix,l = (1 − α) H_train,l + α H_panel,l``: ``H_train`` is
    the one ``train`` inverts (its stored eigendecomposition), ``H_panel`` the second moment of a
    fixed query panel's projected gradients ``panel`` ``(n_panel, dim)`` (:func:`mixed_fisher`);
    ``λ_l`` by ``rule`` on the mixture's eigenvalues. A panel registered in advance, not the
    queries being valued, keeps a query's credit independent of the others valued with it."""
    if panel.dim() != 2 or panel.shape[1] != train.dim or panel.shape[0] == 0:
        raise ValueError(f"expected panel vectors of shape (n>0, {train.dim}), got {tuple(panel.shape)}")
    train_fisher = ProjectedFisher.from_matrices(train.layout, {name: train.matrix(name) for name, _ in train.slices})
    panel_fisher = ProjectedFisher(train.layout)
    panel_fisher.update(panel.double().cpu())
    return mixed_fisher(train_fisher, panel_fisher, alpha).preconditioner(damping_ratio, rule=rule)


def unrolled_filter(eigvals: torch.Tensor, horizon: float) -> torch.Tensor:
    """``(1 − e^{−Tσ}) / σ`` per eigenvalue ``σ`` (``T`` at ``σ = 0``), ``T`` = ``horizon``.

    A segment of gradient descent with learning-rate mass ``T = Σ η_t`` on a loss whose Hessian is
    ``H`` turns a constant gradient ``g`` into the parameter change ``−(I − e^{−TH}) H⁻¹ g``
    (the continuous limit of ``Σ_t (I − ηH)^t η``): SOURCE's per-segment estimate. Directions the
    segment learned (``Tσ ≫ 1``) get the inverse ``1/σ``; the rest keep ``T``, a gradient dot
    product weighted by how much the segment moved, instead of a damping constant.
    """
    if horizon <= 0:
        raise ValueError(f"horizon must be positive, got {horizon}")
    vals = eigvals.double().clamp_min(0.0)
    out = torch.full_like(vals, float(horizon))
    pos = vals * horizon > 1e-12
    out[pos] = -torch.expm1(-horizon * vals[pos]) / vals[pos]
    return out


def unrolled_preconditioner(pre: Preconditioner, horizon: Mapping[str, float] | float) -> Preconditioner:
    """The segment estimate of :func:`unrolled_filter` from ``pre``'s eigendecomposition of ``H``:
    a :class:`Preconditioner` whose inverse is ``V diag((1 − e^{−Tσ})/σ) Vᵀ`` per module (its
    ``power`` and self-influence follow the same matrix). ``horizon``: ``T`` (one, or per module)."""
    eigvals, damping = {}, {}
    for name, vals in pre.eigvals.items():
        t = float(horizon[name]) if isinstance(horizon, Mapping) else float(horizon)
        eigvals[name], damping[name] = 1.0 / unrolled_filter(vals, t), 0.0
    return Preconditioner(pre.layout, eigvals, pre.eigvecs, damping)


class Preconditioner:
    """Applies ``(H_l + λ_l I)^-1`` module by module to ``(batch, dim)`` vectors."""

    def __init__(
        self,
        layout: Layout,
        eigvals: Mapping[str, torch.Tensor],
        eigvecs: Mapping[str, torch.Tensor],
        damping: Mapping[str, float],
    ) -> None:
        self.layout = [tuple(entry) for entry in layout]
        self.slices = layout_slices(self.layout)
        self.dim = layout_dim(self.layout)
        self.eigvals = dict(eigvals)
        # eigh returns column-major vectors: one memory layout, so a preconditioner rebuilt from
        # its state dict computes bit-identical inverses (BLAS sums in layout-dependent order).
        self.eigvecs = {name: vecs.contiguous() for name, vecs in eigvecs.items()}
        self.damping = dict(damping)
        self._inverse: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    def with_damping_ratio(self, damping_ratio: float, rule: str = "mean_ratio") -> Preconditioner:
        """The same eigendecomposition with ``λ_l = damping_ratio × mean eigenvalue of H_l`` (or
        another :func:`spectral_damping` rule with ``damping_ratio`` as its value)."""
        damping = {name: spectral_damping(vals, rule, damping_ratio) for name, vals in self.eigvals.items()}
        return Preconditioner(self.layout, self.eigvals, self.eigvecs, damping)

    def inverse(self, name: str, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
        """``(H_l + λ_l I)^-1`` as ``(k_l, k_l)``, built once per dtype and device."""
        device = torch.device(device or "cpu")
        key = (name, dtype, device)
        if key not in self._inverse:
            vecs, vals = self.eigvecs[name], self.eigvals[name]
            inv = (vecs / (vals + self.damping[name])) @ vecs.T
            self._inverse[key] = inv.to(device=device, dtype=dtype)
        return self._inverse[key]

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        """Preconditioned ``q`` ``(batch, dim)``: the few query vectors, never the many train ones."""
        if q.dim() != 2 or q.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (batch, {self.dim}), got {tuple(q.shape)}")
        out = torch.empty_like(q)
        for name, sl in self.slices:
            # H is symmetric, so q_l @ inv equals (inv @ q_lᵀ)ᵀ.
            out[:, sl] = q[:, sl] @ self.inverse(name, q.dtype, q.device)
        return out

    def power(self, x: torch.Tensor, exponent: float) -> torch.Tensor:
        """``(H_l + λ_l I)^exponent`` applied module by module to ``x`` ``(batch, dim)`` (float64
        maths; ``-1/2`` whitens, ``+1/2`` undoes it: ``(A⁻¹q)·(Ag) = q·g`` for ``A = (H+λI)^-1/2``)."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (batch, {self.dim}), got {tuple(x.shape)}")
        out = torch.empty(x.shape, dtype=torch.float64)
        for name, sl in self.slices:
            vecs, vals = self.eigvecs[name], self.eigvals[name] + self.damping[name]
            out[:, sl] = ((x[:, sl].double().cpu() @ vecs) * vals.clamp_min(0) ** exponent) @ vecs.T
        return out

    def matrix(self, name: str) -> torch.Tensor:
        """The undamped ``H_l`` ``(k_l, k_l)`` (float64) this preconditioner inverts: ``V diag(σ) Vᵀ``."""
        vecs = self.eigvecs[name].double().cpu()
        return (vecs * self.eigvals[name].double().cpu()) @ vecs.T

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {}
        for name, _ in self.slices:
            state[f"{name}/eigvals"] = self.eigvals[name].cpu()
            state[f"{name}/eigvecs"] = self.eigvecs[name].cpu().contiguous()
            state[f"{name}/damping"] = torch.tensor(self.damping[name], dtype=torch.float64)
        return state

    @classmethod
    def from_state_dict(cls, layout: Layout, state: Mapping[str, torch.Tensor]) -> Preconditioner:
        names = [name for name, _, _ in layout]
        return cls(
            layout,
            {n: state[f"{n}/eigvals"].double() for n in names},
            {n: state[f"{n}/eigvecs"].double() for n in names},
            {n: float(state[f"{n}/damping"]) for n in names},
        )
