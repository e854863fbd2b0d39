"""LoGra: low-rank Kronecker gradient projection (Choe et al., 2024, §3.1)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from valuation.capture import GradientCapture
from valuation.config import LoGraConfig
from valuation.hooks import activation_hooks, flatten_tokens
from valuation.loss import default_lm_loss
from valuation.modules import WatchedModule, find_watched_modules
from valuation.optimizer import factored_scales, unit_mean_scales

LossFn = Callable[[nn.Module, Any], torch.Tensor]
Layout = list[tuple[str, int, int]]


def _projection_dtype(module: nn.Module) -> torch.dtype:
    # float64 models (the brute-force tests) keep float64; everything else computes in float32.
    return torch.float64 if module.weight.dtype == torch.float64 else torch.float32


def top_eigenvectors(cov: torch.Tensor, k: int) -> torch.Tensor:
    """Rows = the ``k`` eigenvectors of the symmetric ``cov`` with the largest eigenvalues.

    Signs are fixed (largest-magnitude entry positive) so that the result is reproducible. Large
    matrices try block subspace iteration first (:func:`subspace_top_eigenvectors`): it returns only when every
    Ritz pair's residual is below ``1e-10 · λ_max``, i.e. the eigenvectors ``eigh`` gives to that
    precision, and otherwise falls back to the full ``eigh``. A full ``eigh`` of a 1024 × 1024
    covariance costs 0.3-7 s here (MKL's threads stall on a busy machine), the iteration ~0.1 s.
    """
    cov = cov.double()
    top = None
    if cov.shape[0] >= SUBSPACE_MIN_DIM and cov.shape[0] >= 4 * k:
        top = subspace_top_eigenvectors(cov, k)
    if top is None:
        _, vecs = torch.linalg.eigh(cov)
        top = vecs[:, -k:].flip(1).T.contiguous()  # (k, n), descending eigenvalue
    pivot = top.abs().argmax(dim=1)
    signs = torch.sign(top.gather(1, pivot[:, None]))
    return top * signs


SUBSPACE_MIN_DIM = 512  # below it a full eigh is already cheap


def subspace_top_eigenvectors(
    cov: torch.Tensor, k: int, tol: float = 1e-10, max_iter: int = 150
) -> torch.Tensor | None:
    """``(k, n)`` top eigenvectors by block subspace iteration with Rayleigh-Ritz, or None when
    they do not converge (a spectrum without a gap after the k-th eigenvalue: eigh decides)."""
    n = cov.shape[0]
    block = min(n, 2 * k + 8)
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(n, block, generator=gen, dtype=cov.dtype).to(cov.device))[0]
    checkpoint_resid = None
    for it in range(max_iter):
        image = cov @ basis
        evals, evecs = torch.linalg.eigh(basis.T @ image)
        evals, evecs = evals.flip(0)[:k], evecs.flip(1)[:, :k]
        ritz = basis @ evecs
        resid = (image @ evecs - ritz * evals).norm(dim=0).max()
        scale = evals[0].abs().clamp_min(torch.finfo(cov.dtype).tiny)
        if resid <= tol * scale:
            return ritz.T.contiguous()
        if it == 30:  # slow convergence (a small gap): give up early rather than iterate for long
            checkpoint_resid = resid
        if it == 60 and checkpoint_resid is not None and resid > 1e-3 * checkpoint_resid:
            return None
        basis = torch.linalg.qr(image)[0]
    return None


class _CovarianceAccumulator:
    """KFAC sums ``Σ x xᵀ`` and ``Σ dy dyᵀ`` over counted (non-padding) tokens."""

    def __init__(self, modules: list[WatchedModule]) -> None:
        self.mask: torch.Tensor | None = None
        self.fwd = {wm.name: torch.zeros(wm.n_in, wm.n_in, dtype=torch.float64) for wm in modules}
        self.bwd = {wm.name: torch.zeros(wm.n_out, wm.n_out, dtype=torch.float64) for wm in modules}
        self.tokens = dict.fromkeys(self.fwd, 0)

    def on_forward(self, wm: WatchedModule, x: torch.Tensor) -> torch.Tensor | None:
        rows = flatten_tokens(x.detach(), self.mask)
        with torch.autocast(device_type=x.device.type, enabled=False):
            rows = rows.to(_projection_dtype(wm.module))
            self.fwd[wm.name] += (rows.T @ rows).double().cpu()
        self.tokens[wm.name] += rows.shape[0]
        return self.mask

    def on_backward(self, wm: WatchedModule, mask: torch.Tensor | None, dy: torch.Tensor) -> None:
        rows = flatten_tokens(dy, mask)
        with torch.autocast(device_type=dy.device.type, enabled=False):
            rows = rows.to(_projection_dtype(wm.module))
            self.bwd[wm.name] += (rows.T @ rows).double().cpu()


def token_mask(batch: Any) -> torch.Tensor | None:
    """Boolean ``(batch, tokens)`` of counted tokens, from ``attention_mask`` when present."""
    if isinstance(batch, Mapping) and "attention_mask" in batch:
        mask = batch["attention_mask"]
        if mask is not None:
            return mask.bool()
    return None


class LoGra:
    """Projected per-example gradients of a model's linear layers.

    ``P_in,l`` is ``(k_in, n_in)`` and ``P_out,l`` is ``(k_out, n_out)``; an example's vector is
    ``concat_l vec_rowmajor(P_out,l · DW_l · P_in,lᵀ)`` in :attr:`layout` order, where
    ``DW_l = Σ_t dy_t x_tᵀ`` is the example's gradient of the summed loss w.r.t. ``W_l``.
    """

    def __init__(self, model: nn.Module, config: LoGraConfig | None = None) -> None:
        self.model = model
        self.config = config or LoGraConfig()
        self.modules = find_watched_modules(model, self.config.include, self.config.exclude)
        self._projections: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # what capture uses
        self._base: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # before optimizer scaling
        self._scales: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # (c' (n_in,), r' (n_out,))
        self._covariances: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._tokens_seen = 0
        if self.config.init == "random":
            self._init_random()
        elif self.config.init == "identity":
            self._init_identity()

    # layout ---------------------------------------------------------------------------------
    def _dims(self, wm: WatchedModule) -> tuple[int, int]:
        if self.config.init == "identity":
            return wm.n_out, wm.n_in
        return min(self.config.k_out, wm.n_out), min(self.config.k_in, wm.n_in)

    @property
    def layout(self) -> Layout:
        """``[(module_name, k_out, k_in), ...]`` in vector order."""
        return [(wm.name, *self._dims(wm)) for wm in self.modules]

    @property
    def dim(self) -> int:
        """Length of one example's vector, ``Σ_l k_out,l · k_in,l``."""
        return sum(k_out * k_in for _, k_out, k_in in self.layout)

    # projections ----------------------------------------------------------------------------
    def _place(self, wm: WatchedModule, p_in: torch.Tensor, p_out: torch.Tensor) -> None:
        """Install base projections; the optimizer scaling (when set) folds in as ``P · diag(s)``."""
        w = wm.module.weight
        dtype = _projection_dtype(wm.module)
        self._base[wm.name] = (p_in.detach().double().cpu(), p_out.detach().double().cpu())
        if wm.name in self._scales:
            s_in, s_out = self._scales[wm.name]
            p_in, p_out = p_in.double() * s_in.to(p_in.device), p_out.double() * s_out.to(p_out.device)
        self._projections[wm.name] = (
            p_in.to(device=w.device, dtype=dtype).contiguous(),
            p_out.to(device=w.device, dtype=dtype).contiguous(),
        )

    def set_optimizer_state(self, second_moments: Mapping[str, torch.Tensor]) -> LoGra:
        """Fold Adam's factored ``1/sqrt(v)`` into every watched module's projections.

        ``second_moments`` maps a module's weight parameter name (``"<module>.weight"``, as from
        :func:`valuation.optimizer.load_hf_optimizer_state`) or the module name to its ``v``
        (shaped like the stored weight: ``(n_in, n_out)`` for GPT-2's ``Conv1D``). Captured vectors
        become ``P_out · diag(r') · DW · diag(c') · P_inᵀ`` (:func:`valuation.optimizer.factored_scales`,
        each factor rescaled to mean 1 by :func:`valuation.optimizer.unit_mean_scales`: scores do not
        change, stored values keep the raw gradients' range).
        With ``init='pca'``, a later :meth:`fit` takes the principal directions of the scaled
        covariances ``diag(c') C_F diag(c')`` and ``diag(r') C_B diag(r')``.
        """
        scales = {}
        for wm in self.modules:
            v = second_moments.get(f"{wm.name}.weight", second_moments.get(wm.name))
            if v is None:
                raise KeyError(f"no optimizer second moment for {wm.name}.weight")
            v = v.T if wm.transposed else v
            if tuple(v.shape) != (wm.n_out, wm.n_in):
                raise ValueError(f"{wm.name}: second moment must be ({wm.n_out}, {wm.n_in}), got {tuple(v.shape)}")
            s_out, s_in = unit_mean_scales(*factored_scales(v, self.config.optimizer_eps))
            scales[wm.name] = (s_in, s_out)
        self._scales = scales
        for wm in self.modules:
            if wm.name in self._base:
                self._place(wm, *self._base[wm.name])
        return self

    def optimizer_scales(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(c' (n_in,), r' (n_out,))`` of module ``name``, or None without optimizer scaling."""
        return self._scales.get(name)

    def _init_random(self) -> None:
        for wm in self.modules:
            k_out, k_in = self._dims(wm)
            seed = (self.config.seed * 1_000_003 + zlib.crc32(wm.name.encode())) % (2**63)
            gen = torch.Generator().manual_seed(seed)
            # Scaled so a projection preserves squared norms in expectation (JL).
            p_in = torch.randn(k_in, wm.n_in, generator=gen, dtype=torch.float64) / k_in**0.5
            p_out = torch.randn(k_out, wm.n_out, generator=gen, dtype=torch.float64) / k_out**0.5
            self._place(wm, p_in, p_out)

    def _init_identity(self) -> None:
        for wm in self.modules:
            self._place(wm, torch.eye(wm.n_in, dtype=torch.float64), torch.eye(wm.n_out, dtype=torch.float64))

    def projection(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P_in (k_in, n_in), P_out (k_out, n_out))`` of module ``name``, as capture applies them
        (optimizer scaling folded in)."""
        if name not in self._projections:
            if self.config.init == "pca" and any(wm.name == name for wm in self.modules):
                raise RuntimeError("init='pca' projections exist only after fit()")
            raise KeyError(f"{name!r} is not a watched module; watched: {[wm.name for wm in self.modules]}")
        return self._projections[name]

    def set_projection(self, name: str, p_in: torch.Tensor, p_out: torch.Tensor) -> None:
        """Install given base projections (optimizer scaling, when set, is folded in on top)."""
        wm = self._module(name)
        k_out, k_in = self._dims(wm)
        if tuple(p_in.shape) != (k_in, wm.n_in) or tuple(p_out.shape) != (k_out, wm.n_out):
            raise ValueError(
                f"{name}: projections must be ({k_in}, {wm.n_in}) and ({k_out}, {wm.n_out}), "
                f"got {tuple(p_in.shape)} and {tuple(p_out.shape)}"
            )
        self._place(wm, p_in, p_out)

    def _module(self, name: str) -> WatchedModule:
        for wm in self.modules:
            if wm.name == name:
                return wm
        raise KeyError(f"{name!r} is not a watched module; watched: {[wm.name for wm in self.modules]}")

    # fit ------------------------------------------------------------------------------------
    def fit(
        self,
        batches: Iterable[Any],
        loss_fn: LossFn | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> LoGra:
        """Accumulate KFAC covariances over ``batches``; with ``init='pca'`` set the projections.

        ``C_F = (1/T) Σ_t x_t x_tᵀ`` and ``C_B = (1/T) Σ_t dy_t dy_tᵀ`` (uncentered) over the
        ``T`` counted tokens (``attention_mask`` ones; every row for ``(batch, n)`` inputs).
        ``dy`` is the gradient of the **summed** loss. Calling ``fit`` again adds more batches.
        """
        loss_fn = loss_fn or default_lm_loss
        acc = _CovarianceAccumulator(self.modules)
        if self._covariances:  # continue from earlier sums
            for wm in self.modules:
                c_f, c_b = self._covariances[wm.name]
                acc.fwd[wm.name] += c_f.cpu().double() * self._tokens_seen
                acc.bwd[wm.name] += c_b.cpu().double() * self._tokens_seen
                acc.tokens[wm.name] = self._tokens_seen
        with activation_hooks(self.model, self.modules, acc.on_forward, acc.on_backward):
            for batch in batches:
                acc.mask = token_mask(batch)
                loss = loss_fn(self.model, batch)
                loss.backward()
                if progress is not None:
                    progress(1)
        tokens = max(acc.tokens.values())
        if tokens == 0:
            raise ValueError("fit() saw no tokens: are the batches empty or fully masked?")
        for wm in self.modules:
            n = acc.tokens[wm.name] or 1
            self._covariances[wm.name] = (acc.fwd[wm.name] / n, acc.bwd[wm.name] / n)
        self._tokens_seen = tokens
        if self.config.init == "pca":
            for wm in self.modules:
                k_out, k_in = self._dims(wm)
                c_f, c_b = self._covariances[wm.name]
                if wm.name in self._scales:  # principal directions of the scaled gradients
                    s_in, s_out = self._scales[wm.name]
                    c_f, c_b = c_f * s_in[:, None] * s_in[None], c_b * s_out[:, None] * s_out[None]
                self._place(wm, top_eigenvectors(c_f, k_in), top_eigenvectors(c_b, k_out))
        return self

    def covariances(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(C_F (n_in, n_in), C_B (n_out, n_out))`` in float64, after :meth:`fit`."""
        if name not in self._covariances:
            self._module(name)
            raise RuntimeError("covariances exist only after fit()")
        return self._covariances[name]

    # capture --------------------------------------------------------------------------------
    @contextmanager
    def capture(self) -> Iterator[GradientCapture]:
        """Hooks that project activations; they exist only inside the block.

        Run one forward and ``loss.backward()`` of a **summed** loss inside; then
        ``cap.gradients`` is ``(batch, dim)``. Weights do not require grad inside the block and
        ``p.grad`` is never written.
        """
        missing = [wm.name for wm in self.modules if wm.name not in self._projections]
        if missing:
            raise RuntimeError(f"no projection for {missing[:3]}...: call fit() first (init='pca')")
        if self.config.optimizer_scaling and not self._scales:
            raise RuntimeError("optimizer_scaling is set: call set_optimizer_state() before capturing")
        cap = GradientCapture(self.modules, self._projections)
        with activation_hooks(self.model, self.modules, cap.on_forward, cap.on_backward):
            yield cap

    def gradients(self, batch: Any, loss_fn: LossFn | None = None) -> torch.Tensor:
        """Projected per-example gradients of one batch, ``(batch, dim)``."""
        loss_fn = loss_fn or default_lm_loss
        with self.capture() as cap:
            loss_fn(self.model, batch).backward()
        return cap.gradients

    # persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Projections (and covariances when fitted) as CPU tensors keyed ``<module>/<what>``.

        ``P_in``/``P_out`` are the base projections; with optimizer scaling the factors follow as
        ``S_in``/``S_out`` (float64), so a loaded LoGra captures exactly the same vectors.
        """
        state = {}
        for wm in self.modules:
            if wm.name in self._base:
                dtype = _projection_dtype(wm.module)
                p_in, p_out = self._base[wm.name]
                state[f"{wm.name}/P_in"] = p_in.to(dtype).contiguous()
                state[f"{wm.name}/P_out"] = p_out.to(dtype).contiguous()
            if wm.name in self._scales:
                state[f"{wm.name}/S_in"], state[f"{wm.name}/S_out"] = self._scales[wm.name]
            if wm.name in self._covariances:
                c_f, c_b = self._covariances[wm.name]
                state[f"{wm.name}/C_F"] = c_f.contiguous()
                state[f"{wm.name}/C_B"] = c_b.contiguous()
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Inverse of :meth:`state_dict`."""
        scales = {
            wm.name: (state[f"{wm.name}/S_in"].double(), state[f"{wm.name}/S_out"].double())
            for wm in self.modules
            if f"{wm.name}/S_in" in state
        }
        if scales:
            self._scales = scales
        for wm in self.modules:
            if f"{wm.name}/P_in" in state:
                self.set_projection(wm.name, state[f"{wm.name}/P_in"], state[f"{wm.name}/P_out"])
            if f"{wm.name}/C_F" in state:
                self._covariances[wm.name] = (
                    state[f"{wm.name}/C_F"].double(),
                    state[f"{wm.name}/C_B"].double(),
                )
        missing = [wm.name for wm in self.modules if wm.name not in self._projections]
        if missing:
            raise KeyError(f"state has no projection for {missing[:3]}")
