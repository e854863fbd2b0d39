"""Per-example projected gradients, formed inside the hooks."""

from __future__ import annotations

import torch

from valuation.modules import WatchedModule


class GradientCapture:
    """Collects ``G_l = P_out,l · DW_l · P_in,lᵀ`` per example while hooks are installed.

    Inside one ``capture()`` block the gradients of every backward pass are summed per example
    (as ``.grad`` would be), so one block holds one batch. For ``(batch, tokens, n)``
    activations the sum over tokens is one batched matmul of the projected activations,
    ``(batch, k_out, tokens) @ (batch, tokens, k_in)``; no ``(batch, tokens, k_out, k_in)``
    temporary and no full ``DW`` is ever formed.
    """

    def __init__(self, modules: list[WatchedModule], projections: dict[str, tuple]) -> None:
        self._modules = modules
        self._projections = projections
        self._grads: dict[str, torch.Tensor] = {}

    # hook callbacks -------------------------------------------------------------------------
    def on_forward(self, wm: WatchedModule, x: torch.Tensor) -> torch.Tensor:
        p_in, _ = self._projections[wm.name]
        # Projections run in float32 (or float64) even under bf16 autocast: rounding here is
        # what the stored vectors would inherit.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return x.detach().to(p_in.dtype) @ p_in.T

    def on_backward(self, wm: WatchedModule, x_proj: torch.Tensor, dy: torch.Tensor) -> None:
        _, p_out = self._projections[wm.name]
        with torch.autocast(device_type=dy.device.type, enabled=False):
            dy_proj = dy.to(p_out.dtype) @ p_out.T
            if dy_proj.dim() == 3:  # (batch, tokens, k): sum over tokens as one bmm
                g = torch.bmm(dy_proj.transpose(1, 2), x_proj)
            else:  # (batch, k): one token per example
                g = dy_proj.unsqueeze(2) * x_proj.unsqueeze(1)
        prev = self._grads.get(wm.name)
        self._grads[wm.name] = g if prev is None else prev + g

    # results ----------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        if not self._grads:
            raise RuntimeError("no gradient was captured: run a backward pass inside capture()")
        return next(iter(self._grads.values())).shape[0]

    def module_gradients(self) -> dict[str, torch.Tensor]:
        """Per module ``(batch, k_out, k_in)``; zeros for a module the loss did not reach."""
        batch = self.batch_size
        out = {}
        for wm in self._modules:
            g = self._grads.get(wm.name)
            if g is None:
                p_in, p_out = self._projections[wm.name]
                g = p_in.new_zeros(batch, p_out.shape[0], p_in.shape[0])
            elif g.shape[0] != batch:
                raise RuntimeError(
                    f"module {wm.name} saw batch {g.shape[0]}, others {batch}: one capture() block must hold one batch"
                )
            out[wm.name] = g
        return out

    @property
    def gradients(self) -> torch.Tensor:
        """``(batch, Σ_l k_out,l·k_in,l)``: per module, row-major flattening of ``G_l``."""
        grads = self.module_gradients()
        return torch.cat([grads[wm.name].reshape(grads[wm.name].shape[0], -1) for wm in self._modules], 1)
