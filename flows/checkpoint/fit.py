"""Fit: KFAC covariances on a sample of the pinned corpus version → PCA (or random) projections."""

from __future__ import annotations

import hashlib

from flows.checkpoint.context import CheckpointContext
from flows.errors import NotReadyError
from flows.progress import Progress


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def make_logra(ctx: CheckpointContext, optimizer_state: bool = True):
    """A :class:`valuation.LoGra` on the checkpoint's cached model, with the checkpoint's config;
    with optimizer scaling, Adam's second moments from its ``optimizer.pt`` are folded in (unless
    ``optimizer_state`` is False: a stored projection state brings its own factors)."""
    from valuation import LoGra
    from valuation.optimizer import load_hf_optimizer_state

    model, _ = ctx.model()
    logra = LoGra(model, ctx.logra_config())
    if optimizer_state and ctx.optimizer_scaling:
        logra.set_optimizer_state(load_hf_optimizer_state(model, ctx.model_dir))
    return logra


def fit(ctx: CheckpointContext, progress: Progress | None = None) -> str:
    """Saves the ``projections`` artifact (returns its digest); a no-op when it exists."""
    from valuation import default_device

    if ctx.exists("projections"):
        return ctx.digest("projections")
    ctx.ensure_examples()
    if ctx.num_examples() == 0:
        raise NotReadyError("the corpus version of this checkpoint has no examples: run `dataworth ingest FILE` first")
    logra = make_logra(ctx)
    device = default_device()
    s = ctx.app.settings
    batches = (to_device(b, device) for b, _ in ctx.batches(limit=s.fit_examples))
    with ctx.app.model_lock:
        logra.fit(batches, loss_fn=fisher_loss(s), progress=progress.advance if progress else None)
    if progress is not None:
        progress.finish()
    return ctx.save("projections", logra.state_dict(), extra={"layout": logra.layout})


def gradient_loss(settings):
    """The loss of every stored and query gradient: None (the model's own, ``default_lm_loss``) at
    ``temperature = 1``, else :class:`valuation.LMLoss` at the setting's temperature."""
    from valuation.loss import LMLoss

    return None if settings.temperature == 1.0 else LMLoss(settings.temperature)


def fisher_loss(settings, example_ids: list[str] | None = None):
    """The loss whose gradients make the Fisher: :func:`gradient_loss` (the data's labels) for
    ``fisher = "empirical"``; for ``"sampled"`` labels drawn from the model (at the temperature),
    seeded by ``settings.seed`` and, in logging, by the batch's example ids, so a shard logged twice,
    or on another worker, draws the same labels."""
    from valuation.loss import SampledLabelLoss

    if settings.fisher == "empirical":
        return gradient_loss(settings)
    blob = f"{settings.seed}:" + "\n".join(example_ids or [])
    return SampledLabelLoss(int(hashlib.sha256(blob.encode()).hexdigest()[:15], 16), "lm", settings.temperature)


def load_logra(ctx: CheckpointContext):
    """The fitted LoGra of a checkpoint (projections, and optimizer scales when on, loaded)."""
    logra = make_logra(ctx, optimizer_state=False)
    state, _ = ctx.load("projections")
    logra.load_state_dict(state)
    return logra
