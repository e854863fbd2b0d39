"""Optimizer-aware gradients against explicit float64 references: factored 1/sqrt(v), folded into
LoGra's projections, loaded from a Hugging Face Trainer-format optimizer.pt."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from transformers import Trainer

from tests.valuation.conftest import padded_batch, tiny_gpt2
from tests.valuation.reference import per_example_weight_grads, projected
from tests.valuation.test_logra import capture
from valuation import LoGra, LoGraConfig, lm_loss, top_eigenvectors
from valuation.optimizer import (
    OptimizerStateError,
    adam_second_moments,
    factored_scales,
    load_hf_optimizer_state,
)

LENGTHS = [8, 5, 3]


def test_factored_scales_are_exact_for_a_rank_one_second_moment():
    gen = torch.Generator().manual_seed(0)
    u, w = torch.rand(5, generator=gen, dtype=torch.float64) + 0.1, torch.rand(7, generator=gen, dtype=torch.float64)
    v = torch.outer(u, w + 0.1)
    r, c = factored_scales(v, eps=0.0)
    torch.testing.assert_close(torch.outer(r, c), v.rsqrt(), rtol=1e-12, atol=0)


def test_factored_scales_follow_the_adafactor_fit_with_eps():
    v = torch.rand(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = 1e-3
    r, c = factored_scales(v, eps)
    rows, cols = v.sum(1), v.sum(0)
    fit = torch.outer(rows, cols) / rows.sum()  # Adafactor's R Cᵀ / 1ᵀR, written with sums
    a, b = v.mean(1) / v.mean() ** 0.5, v.mean(0) / v.mean() ** 0.5
    torch.testing.assert_close(torch.outer(a, b), fit, rtol=1e-12, atol=0)
    want = torch.outer((a + eps**0.5).rsqrt(), (b + eps**0.5).rsqrt())
    torch.testing.assert_close(torch.outer(r, c), want, rtol=1e-12, atol=0)


def random_second_moments(model, logra: LoGra, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    return {
        f"{wm.name}.weight": torch.rand(params[f"{wm.name}.weight"].shape, generator=gen, dtype=torch.float64)
        for wm in logra.modules
    }


def explicit_scaled(model, batch, logra: LoGra, moments, unit_mean: bool = True) -> torch.Tensor:
    """Per-example DW scaled elementwise by the factored 1/sqrt(v) (rescaled to mean 1 per factor
    unless ``unit_mean`` is False), then projected by the base projections."""
    names = [n for n, _, _ in logra.layout]
    grads = per_example_weight_grads(model, batch)
    transposed = {wm.name: wm.transposed for wm in logra.modules}
    for g in grads:
        for n in names:
            v = moments[f"{n}.weight"]
            r, c = factored_scales(v.T if transposed[n] else v, logra.config.optimizer_eps)
            if unit_mean:
                r, c = r / r.mean(), c / c.mean()
            g[n] = g[n] * torch.outer(r, c)
    return projected(grads, {n: logra._base[n] for n in names}, names)


def test_optimizer_scaled_projection_equals_explicit_scaled_gradient(model):
    batch = padded_batch(LENGTHS)
    logra = LoGra(
        model, LoGraConfig(k_in=3, k_out=4, init="random", seed=3, optimizer_scaling=True, optimizer_eps=1e-4)
    )
    with pytest.raises(RuntimeError, match="set_optimizer_state"):
        capture(logra, model, batch)
    moments = random_second_moments(model, logra)
    logra.set_optimizer_state(moments)
    torch.testing.assert_close(
        capture(logra, model, batch), explicit_scaled(model, batch, logra, moments), rtol=1e-9, atol=1e-12
    )


def test_unit_mean_factors_leave_influence_unchanged(model):
    """Rescaling each module's Adam factors to mean 1 (what keeps early checkpoints inside float16)
    changes no score: a per-module constant cancels in q (H + λI)⁻¹ g with λ relative to H."""
    from valuation import MODES, ProjectedFisher, influence_scores, self_influence

    batch = padded_batch(LENGTHS)
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=4, init="random", seed=3, optimizer_scaling=True))
    moments = {k: v * 1e-6 for k, v in random_second_moments(model, logra).items()}  # early training
    logra.set_optimizer_state(moments)
    scored = {}
    for unit_mean in (True, False):
        g = explicit_scaled(model, batch, logra, moments, unit_mean)
        fisher = ProjectedFisher(logra.layout)
        fisher.update(g)
        pre = fisher.preconditioner(0.1)
        q_self, g_self = self_influence(g[:2], pre), self_influence(g, pre)
        scored[unit_mean] = {m: influence_scores(pre(g[:2]), g, m, g_self, q_self) for m in MODES}
        scored[unit_mean]["peak"] = g.abs().max()
    for m in MODES:
        torch.testing.assert_close(scored[True][m], scored[False][m], rtol=1e-8, atol=1e-10)
    assert scored[True]["peak"] < scored[False]["peak"] / 100


def test_pca_fit_after_scaling_uses_the_scaled_covariances():
    model = tiny_gpt2()
    batch = padded_batch(LENGTHS)
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=2, init="pca", optimizer_scaling=True))
    moments = random_second_moments(model, logra, seed=5)
    logra.set_optimizer_state(moments)
    logra.fit([batch])
    for wm in logra.modules:
        s_in, s_out = logra.optimizer_scales(wm.name)
        c_f, c_b = logra.covariances(wm.name)
        p_in, p_out = logra._base[wm.name]
        torch.testing.assert_close(p_in, top_eigenvectors(c_f * torch.outer(s_in, s_in), 3))
        torch.testing.assert_close(p_out, top_eigenvectors(c_b * torch.outer(s_out, s_out), 2))
    torch.testing.assert_close(
        capture(logra, model, batch), explicit_scaled(model, batch, logra, moments), rtol=1e-9, atol=1e-12
    )
    # The state dict carries the scales: a fresh LoGra captures the same vectors.
    again = LoGra(model, LoGraConfig(k_in=3, k_out=2, init="pca", optimizer_scaling=True))
    again.load_state_dict(logra.state_dict())
    torch.testing.assert_close(capture(again, model, batch), capture(logra, model, batch), rtol=0, atol=0)


def hf_trainer_adamw(model) -> torch.optim.AdamW:
    """AdamW with Hugging Face Trainer's two parameter groups (weight decay, then none)."""
    decay = set(Trainer.get_decay_parameter_names(None, model))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": 0.01},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99))


def test_hf_optimizer_pt_maps_to_module_names(tmp_path):
    model = tiny_gpt2()
    model.train()
    opt = hf_trainer_adamw(model)
    for step in range(3):
        batch = padded_batch(LENGTHS, seed=step)
        loss = lm_loss(
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    torch.save(opt.state_dict(), tmp_path / "optimizer.pt")  # what Trainer._save_optimizer_and_scheduler writes
    moments = load_hf_optimizer_state(model, tmp_path)
    for name, p in model.named_parameters():
        want = opt.state[p]["exp_avg_sq"].double() / (1 - 0.99**3)
        torch.testing.assert_close(moments[name], want, rtol=1e-12, atol=0)
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=3, optimizer_scaling=True)).set_optimizer_state(moments)
    assert logra.optimizer_scales("transformer.h.0.mlp.c_fc")[0].shape == (12,)  # Conv1D: n_in = 12


def test_a_state_of_another_model_is_refused_by_shape(tmp_path):
    model = tiny_gpt2()
    opt = hf_trainer_adamw(model)
    batch = padded_batch(LENGTHS)
    lm_loss(model(input_ids=batch["input_ids"]).logits, batch["labels"]).backward()
    opt.step()
    state = opt.state_dict()
    names = [n for n, _ in model.named_parameters()][::-1]  # a wrong order
    with pytest.raises(OptimizerStateError, match="shape"):
        adam_second_moments(model, state, names)
    with pytest.raises(OptimizerStateError, match="no optimizer state"):
        load_hf_optimizer_state(model, tmp_path)


def test_default_config_fingerprint_is_unchanged_by_the_new_options():
    cfg = LoGraConfig(k_in=16, k_out=16, init="pca")
    old = {"k_in": 16, "k_out": 16, "init": "pca", "include": ["@blocks"], "exclude": [], "seed": 0}
    blob = json.dumps(old, sort_keys=True, separators=(",", ":"))
    assert cfg.fingerprint() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert LoGraConfig(optimizer_scaling=True).fingerprint() != LoGraConfig().fingerprint()
